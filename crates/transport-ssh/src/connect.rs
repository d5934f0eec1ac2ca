//! The plugin's connect function: TCP, the SSH handshake with the host key
//! checked against `known_hosts`, authentication, and [`SshConnection`], the
//! one SSH session per host that every channel shares.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tether_core::{
    BoxFuture, BoxStream, ConnectRequest, Connection, Dialed, Dialer, Error, ErrorKind, FileTransfer, HostConfig,
    Result, Transport, Tunnel,
};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::error::{ssh, timed};
use crate::known_hosts::{self, HostKey, Verdict};
use crate::options::{AuthMethod, HostKeyPolicy, SCP_TABLE, SFTP_TABLE, ScpOptions, SftpOptions, SshOptions, TABLE};
use crate::tunnel::{Forwards, RemoteRoutes};
use tether_core::raw::invalid_option;

/// Default private keys tried for `publickey` when `client_keys` is empty,
/// in OpenSSH's order.
const DEFAULT_KEYS: &[&str] = &["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"];

/// Rounds of keyboard-interactive questions answered before giving up (PAM
/// asks once; a server that keeps asking is not going to accept).
const MAX_KBD_ROUNDS: usize = 5;

/// The russh event handler: checks the host key. Its verdict is also left in
/// `refusal` so the connect error can say why, since russh only reports
/// "unknown key".
pub(crate) struct ClientHandler {
    host_name: String,
    options: SshOptions,
    refusal: Arc<Mutex<Option<Error>>>,
    /// Where connections arriving on our `remote_forwards` go.
    remote_routes: Arc<RemoteRoutes>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = self.verify(server_key).await;
        match verdict {
            Ok(()) => Ok(true),
            Err(err) => {
                if let Ok(mut slot) = self.refusal.lock() {
                    *slot = Some(err);
                }
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        crate::tunnel::accept_forwarded(&self.remote_routes, channel, connected_address, connected_port, reply).await;
        Ok(())
    }

    async fn channel_open_failure(
        &mut self,
        _channel: russh::ChannelId,
        _reason: russh::ChannelOpenFailure,
        description: &str,
        _language: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // russh gives the opener only the reason code; the server's words
        // ("Connection refused") go into the stream's error.
        self.remote_routes.note_open_failure(description);
        Ok(())
    }
}

impl ClientHandler {
    async fn verify(&self, server_key: &PublicKeyOrCertificate) -> Result<()> {
        let refuse = |kind, why: String| Err(Error::new(kind, "connect").with_context(why));
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return refuse(
                    ErrorKind::Unsupported,
                    "the server presented a host certificate; only plain host keys are checked".into(),
                );
            }
        };
        let blob = match key.to_bytes() {
            Ok(blob) => blob,
            Err(e) => return refuse(ErrorKind::Protocol, format!("cannot encode the server's host key: {e}")),
        };
        let key = HostKey { algorithm: key.algorithm().as_str().to_string(), blob };
        let policy = self.options.host_key_policy;
        if policy == HostKeyPolicy::Off {
            tracing::warn!(host = %self.host_name, key = %key.openssh(), "host key not checked (host_key_policy = off)");
            return Ok(());
        }
        let files: Vec<PathBuf> = self.options.known_hosts.iter().map(|f| known_hosts::expand_home(f)).collect();
        let (name, lookup_files, lookup_key) = (self.host_name.clone(), files.clone(), key.clone());
        let verdict = tokio::task::spawn_blocking(move || known_hosts::check(&lookup_files, &name, &lookup_key))
            .await
            .map_err(|_| Error::new(ErrorKind::Io, "connect").with_context("known_hosts lookup was cancelled"))?
            .map_err(|e| Error::io("connect", e).with_context("reading known_hosts"))?;
        let first = files.first().map(|f| f.display().to_string()).unwrap_or_default();
        match verdict {
            Verdict::Trusted => Ok(()),
            Verdict::Mismatch { file, line, revoked } => refuse(
                ErrorKind::HostKeyMismatch,
                format!(
                    "{} host key {} for {} (recorded at {}:{line}); refusing to connect",
                    if revoked { "revoked" } else { "changed" },
                    key.algorithm,
                    self.host_name,
                    file.display()
                ),
            ),
            Verdict::Unknown if policy == HostKeyPolicy::AcceptNew => {
                let Some(file) = files.first().cloned() else {
                    return refuse(
                        ErrorKind::InvalidConfig,
                        "accept-new needs a known_hosts file to record the key in".into(),
                    );
                };
                let (name, new_key) = (self.host_name.clone(), key.clone());
                tokio::task::spawn_blocking(move || known_hosts::append(&file, &name, &new_key))
                    .await
                    .map_err(|_| Error::new(ErrorKind::Io, "connect").with_context("known_hosts update was cancelled"))?
                    .map_err(|e| Error::io("connect", e).with_context(format!("adding the host key to {first}")))?;
                tracing::info!(host = %self.host_name, file = %first, "new host key recorded (accept-new)");
                Ok(())
            }
            Verdict::Unknown => refuse(
                ErrorKind::HostKeyMismatch,
                format!(
                    "unknown host key {} for {} (policy strict; add it to {first} or use host_key_policy=accept-new)",
                    key.openssh(),
                    self.host_name
                ),
            ),
        }
    }
}

/// One authenticated SSH session to a host; every command opens a channel on it.
pub struct SshSession {
    pub(crate) handle: client::Handle<ClientHandler>,
    pub(crate) options: SshOptions,
    /// `max_sessions` permits: one per open session channel.
    pub(crate) sessions: Arc<Semaphore>,
    pub(crate) target: String,
    /// Routes for connections arriving on `remote_forwards`.
    pub(crate) remote_routes: Arc<RemoteRoutes>,
    /// The user logged in as (commands for this user need no `sudo`).
    pub(crate) login: String,
    /// Set once the server refused an `env` request: later commands carry
    /// their environment as an `env` prefix without asking again.
    pub(crate) setenv_refused: AtomicBool,
    /// A session channel opened ahead of the next command (see
    /// `exec::SpareChannel`), with its `max_sessions` permit.
    pub(crate) spare: crate::exec::SpareChannel,
    /// This session, for the background task that refills `spare`.
    pub(crate) me: std::sync::Weak<SshSession>,
    closed: AtomicBool,
}

impl fmt::Debug for SshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshSession")
            .field("target", &self.target)
            .field("alive", &self.is_alive())
            .field("free_sessions", &self.sessions.available_permits())
            .finish_non_exhaustive()
    }
}

impl SshSession {
    /// False once closed or once russh's session task ended (disconnect,
    /// keepalive timeout, I/O error).
    pub fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && !self.handle.is_closed()
    }

    pub(crate) fn ensure_open(&self, operation: &str) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(
                Error::new(ErrorKind::ConnectionLost, operation).with_context(format!("{}: closed", self.target))
            );
        }
        if self.handle.is_closed() {
            return Err(Error::new(ErrorKind::ConnectionLost, operation)
                .with_context(format!("{}: the SSH connection ended", self.target)));
        }
        Ok(())
    }

    pub(crate) async fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Waking every queued channel open: they then see the closed flag.
        self.sessions.close();
        self.spare.clear();
        let limit = self.options.connect_timeout().unwrap_or(Duration::from_secs(30));
        let bye = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en");
        match tokio::time::timeout(limit, bye).await {
            // Already gone is as good as closed.
            Ok(Ok(())) | Ok(Err(_)) | Err(_) => Ok(()),
        }
    }
}

/// The connection the registry hands out for `ssh`, `sftp` and `scp`.
#[derive(Debug)]
pub struct SshConnection {
    session: Arc<SshSession>,
    host: Arc<HostConfig>,
    /// The SFTP subsystem, opened on first use and then shared.
    sftp: tokio::sync::OnceCell<Arc<crate::transfer::sftp::SftpFiles>>,
    /// The forwards of `ssh_options`, stopped with the connection.
    forwards: Mutex<Option<Forwards>>,
}

impl SshConnection {
    /// The shared session (also the [`Transport`]).
    pub fn session(&self) -> Arc<SshSession> {
        self.session.clone()
    }
}

#[async_trait]
impl Connection for SshConnection {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(self.session.clone())
    }

    async fn file_transfer(&self, scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        self.session.ensure_open("open file transfer")?;
        match scheme {
            "sftp" => {
                let files = self
                    .sftp
                    .get_or_try_init(|| async {
                        let options: SftpOptions = self.host.options.table(SFTP_TABLE)?;
                        options.checked()?;
                        crate::transfer::sftp::open(self.session.clone(), options).await
                    })
                    .await?;
                Ok(files.clone())
            }
            "scp" => {
                let options: ScpOptions = self.host.options.table(SCP_TABLE)?;
                crate::transfer::scp::open(self.session.clone(), options)
            }
            other => Err(Error::new(ErrorKind::Unsupported, "open file transfer")
                .with_context(format!("an SSH connection moves files with `sftp` or `scp`, not `{other}`"))),
        }
    }

    fn tunnel(&self) -> Option<Arc<dyn Tunnel>> {
        Some(self.session.clone())
    }

    fn is_alive(&self) -> bool {
        self.session.is_alive()
    }

    async fn close(&self) -> Result<()> {
        if let Ok(mut forwards) = self.forwards.lock() {
            forwards.take();
        }
        if let Some(sftp) = self.sftp.get() {
            sftp.shut().await;
        }
        self.session.shutdown().await
    }
}

pub(crate) fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
    Box::pin(async move {
        let host = request.host.clone();
        let connection =
            connect_shared(host.clone(), request.dialer).await.map_err(|e| e.with_host(host.id.clone()))?;
        Ok(Arc::new(connection) as Arc<dyn Connection>)
    })
}

/// Connects and authenticates to `host` with its `ssh_options`, then starts
/// the forwards they name.
pub async fn connect_host(host: &HostConfig) -> Result<SshConnection> {
    connect_shared(Arc::new(host.clone()), Dialer::direct()).await
}

/// [`connect_host`], reaching the host's address through `dialer` (SSH over
/// a hop's tunnel, for instance).
pub async fn connect_host_via(host: &HostConfig, dialer: Dialer) -> Result<SshConnection> {
    connect_shared(Arc::new(host.clone()), dialer).await
}

async fn connect_shared(host: Arc<HostConfig>, dialer: Dialer) -> Result<SshConnection> {
    let options: SshOptions = host.options.table(TABLE)?;
    options.checked()?;
    let address = host
        .address
        .clone()
        .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "connect").with_context("the host has no address"))?;
    let port = host.port.unwrap_or(options.port);
    let login = match host.login() {
        Some(login) => login.to_string(),
        None => current_user()?,
    };
    let limit = options.connect_timeout()?;
    let target = format!("{login}@{address}:{port}");

    let stream: BoxStream = match dialer.connect(&address, port, limit).await? {
        Dialed::Tcp(stream) => Box::new(QuickAck { inner: stream }),
        // SSH over the hop's SSH channel: the hop's TCP socket is its own.
        Dialed::Tunneled(stream) => stream,
    };
    let config = Arc::new(client_config(&options)?);
    let refusal = Arc::new(Mutex::new(None));
    let remote_routes = Arc::new(RemoteRoutes::default());
    let handler = ClientHandler {
        host_name: known_hosts::lookup_name(&address, port),
        options: options.clone(),
        refusal: refusal.clone(),
        remote_routes: remote_routes.clone(),
    };
    let handshake = timed("connect", &format!("SSH handshake with {address}:{port}"), limit, async {
        client::connect_stream(config, stream, handler).await.map_err(|e| {
            // The handler's own reason beats russh's "unknown key".
            match refusal.lock().ok().and_then(|mut slot| slot.take()) {
                Some(reason) => reason,
                None => ssh("connect", e).with_context(format!("SSH handshake with {address}:{port}")),
            }
        })
    })
    .await;
    let mut handle = handshake?;
    authenticate(&mut handle, &host, &login, &options, limit).await?;
    tracing::debug!(%target, "ssh connected");
    let sessions = Arc::new(Semaphore::new(options.max_sessions as usize));
    let session = Arc::new_cyclic(|me| SshSession {
        handle,
        options: options.clone(),
        sessions,
        target,
        remote_routes,
        login,
        setenv_refused: AtomicBool::new(false),
        spare: Default::default(),
        me: me.clone(),
        closed: AtomicBool::new(false),
    });
    let forwards = match crate::tunnel::apply(&session, &options).await {
        Ok(forwards) => forwards,
        Err(e) => {
            let _ = session.shutdown().await;
            return Err(e);
        }
    };
    Ok(SshConnection { session, host, sftp: tokio::sync::OnceCell::new(), forwards: Mutex::new(Some(forwards)) })
}

/// The TCP stream, acknowledging every segment at once. OpenSSH sends small
/// packets back to back without `TCP_NODELAY` (debug messages after a
/// publickey login, then the channel confirmation; and a hop's sshd writes
/// each message it forwards on its own: exit-status, then EOF and close), so
/// the later ones wait for the ACK of the first, which Linux delays by
/// 40 ms (most of a connect's time, and one exec in five through a hop;
/// BENCHMARKS.md has the figures). `TCP_QUICKACK` is not sticky (the kernel drops back to
/// delayed ACKs on its own), so it is set again after every read; the
/// syscall costs about a microsecond, under 1% of a bulk transfer's reads.
struct QuickAck {
    inner: TcpStream,
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) {
            // Best effort: a failure only costs the delay this avoids.
            let _ = socket2::SockRef::from(&this.inner).set_tcp_quickack(true);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn current_user() -> Result<String> {
    ["USER", "LOGNAME"].iter().find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty())).ok_or_else(|| {
        Error::new(ErrorKind::InvalidConfig, "connect")
            .with_context("no login: the host names no user and USER/LOGNAME are unset")
    })
}

/// russh's configuration from the options: keepalives, algorithm lists.
fn client_config(options: &SshOptions) -> Result<client::Config> {
    let mut config = client::Config {
        keepalive_interval: options.keepalive_interval()?,
        keepalive_max: options.keepalive_count_max as usize,
        // The socket is set up by us (see `connect_host`).
        nodelay: true,
        ..Default::default()
    };
    let mut preferred = russh::Preferred::default();
    if !options.encryption_algs.is_empty() {
        preferred.cipher =
            names(&options.encryption_algs, "encryption_algs", |n| russh::cipher::Name::try_from(n).ok())?.into();
    }
    if !options.kex_algs.is_empty() {
        let mut kex = names(&options.kex_algs, "kex_algs", |n| russh::kex::Name::try_from(n).ok())?;
        // The extension markers ride in the kex list: without them a custom
        // list would silently turn off strict KEX (the Terrapin fix) and
        // ext-info (server-sig-algs, so RSA keys get SHA-2 signatures).
        for marker in [russh::kex::EXTENSION_SUPPORT_AS_CLIENT, russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT] {
            if !kex.contains(&marker) {
                kex.push(marker);
            }
        }
        preferred.kex = kex.into();
    }
    if !options.server_host_key_algs.is_empty() {
        preferred.key =
            names(&options.server_host_key_algs, "server_host_key_algs", |n| russh::keys::Algorithm::new(n).ok())?
                .into();
    }
    if !options.compression_algs.is_empty() {
        preferred.compression =
            names(&options.compression_algs, "compression_algs", |n| russh::compression::Name::try_from(n).ok())?
                .into();
    }
    config.preferred = preferred;
    Ok(config)
}

fn names<T>(list: &[String], key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    list.iter()
        .map(|name| {
            parse(name)
                .ok_or_else(|| invalid_option(TABLE, &format!("{key}: `{name}` is not supported by this client")))
        })
        .collect()
}

/// Tries each method of `preferred_auth` in order; the error lists what was
/// tried and why each failed.
async fn authenticate(
    handle: &mut client::Handle<ClientHandler>,
    host: &HostConfig,
    login: &str,
    options: &SshOptions,
    limit: Duration,
) -> Result<()> {
    let mut tried: Vec<String> = Vec::new();
    let password = host.password();
    for method in &options.preferred_auth {
        match method {
            AuthMethod::Publickey => {
                if publickey_files(handle, login, options, limit, &mut tried).await?
                    || publickey_agent(handle, login, options, limit, &mut tried).await?
                {
                    return Ok(());
                }
            }
            AuthMethod::Password => match password {
                None => tried.push("password (no password for this login)".into()),
                Some(password) => {
                    let result = timed("connect", "password authentication", limit, async {
                        handle.authenticate_password(login, password).await.map_err(|e| ssh("connect", e))
                    })
                    .await?;
                    if result.success() {
                        return Ok(());
                    }
                    tried.push("password (rejected)".into());
                }
            },
            AuthMethod::KeyboardInteractive => match password {
                None => tried.push("keyboard-interactive (no password to answer with)".into()),
                Some(password) => {
                    if keyboard_interactive(handle, login, password, limit).await? {
                        return Ok(());
                    }
                    tried.push("keyboard-interactive (rejected)".into());
                }
            },
        }
    }
    Err(Error::new(ErrorKind::AuthFailed, "connect").with_context(format!("as `{login}`: tried {}", tried.join(", "))))
}

/// `publickey` with the key files of `client_keys` (or the default ones).
async fn publickey_files(
    handle: &mut client::Handle<ClientHandler>,
    login: &str,
    options: &SshOptions,
    limit: Duration,
    tried: &mut Vec<String>,
) -> Result<bool> {
    let keys = key_paths(options);
    if keys.is_empty() {
        tried.push("publickey (no key file)".into());
    }
    for path in keys {
        let shown = path.display().to_string();
        let key = match tokio::task::spawn_blocking(move || russh::keys::load_secret_key(&path, None)).await {
            Ok(Ok(key)) => Arc::new(key),
            Ok(Err(e)) => {
                // An encrypted or unreadable key is skipped, as ssh does in batch mode.
                tried.push(format!("publickey {shown} (unusable: {e})"));
                continue;
            }
            Err(_) => continue,
        };
        let hash = rsa_hash(handle, key.algorithm().is_rsa(), limit).await?;
        let result = timed("connect", "publickey authentication", limit, async {
            handle
                .authenticate_publickey(login, PrivateKeyWithHashAlg::new(key, hash))
                .await
                .map_err(|e| ssh("connect", e))
        })
        .await?;
        if result.success() {
            return Ok(true);
        }
        tried.push(format!("publickey {shown} (rejected)"));
    }
    Ok(false)
}

/// `publickey` with each identity of the ssh-agent (`agent_socket`, else
/// `SSH_AUTH_SOCK`); the agent signs, the key never leaves it.
async fn publickey_agent(
    handle: &mut client::Handle<ClientHandler>,
    login: &str,
    options: &SshOptions,
    limit: Duration,
    tried: &mut Vec<String>,
) -> Result<bool> {
    use russh::keys::agent::{AgentIdentity, client::AgentClient};
    let Some(socket) = options.agent_socket() else {
        return Ok(false);
    };
    let shown = socket.display().to_string();
    let agent = tokio::time::timeout(limit, AgentClient::connect_uds(&socket)).await;
    let mut agent = match agent {
        Ok(Ok(agent)) => agent,
        Ok(Err(e)) => {
            tried.push(format!("agent {shown} (unreachable: {e})"));
            return Ok(false);
        }
        Err(_) => {
            tried.push(format!("agent {shown} (no answer within {limit:?})"));
            return Ok(false);
        }
    };
    let identities = match tokio::time::timeout(limit, agent.request_identities()).await {
        Ok(Ok(identities)) => identities,
        Ok(Err(e)) => {
            tried.push(format!("agent {shown} (listing keys failed: {e})"));
            return Ok(false);
        }
        Err(_) => {
            tried.push(format!("agent {shown} (no key list within {limit:?})"));
            return Ok(false);
        }
    };
    if identities.is_empty() {
        tried.push(format!("agent {shown} (holds no key)"));
    }
    for identity in identities {
        // Certificates would need the server's CA trust; plain keys are what agents hold here.
        let AgentIdentity::PublicKey { key, comment } = identity else {
            continue;
        };
        let hash = rsa_hash(handle, key.algorithm().is_rsa(), limit).await?;
        let attempt =
            tokio::time::timeout(limit, handle.authenticate_publickey_with(login, key, hash, &mut agent)).await;
        match attempt {
            Ok(Ok(result)) if result.success() => return Ok(true),
            Ok(Ok(_)) => tried.push(format!("agent key {comment} (rejected)")),
            Ok(Err(e)) => tried.push(format!("agent key {comment} (signing failed: {e})")),
            Err(_) => {
                return Err(Error::new(ErrorKind::Timeout, "connect")
                    .with_context(format!("agent publickey authentication took over {limit:?}")));
            }
        }
    }
    Ok(false)
}

/// The RSA signature hash the server prefers (`None` for other key types).
async fn rsa_hash(
    handle: &mut client::Handle<ClientHandler>,
    is_rsa: bool,
    limit: Duration,
) -> Result<Option<russh::keys::HashAlg>> {
    if !is_rsa {
        return Ok(None);
    }
    Ok(timed("connect", "RSA hash negotiation", limit, async {
        handle.best_supported_rsa_hash().await.map_err(|e| ssh("connect", e))
    })
    .await?
    .flatten())
}

/// Answers every prompt with the password (PAM's "Password:" prompt).
async fn keyboard_interactive(
    handle: &mut client::Handle<ClientHandler>,
    login: &str,
    password: &str,
    limit: Duration,
) -> Result<bool> {
    use client::KeyboardInteractiveAuthResponse as Reply;
    let mut reply = timed("connect", "keyboard-interactive authentication", limit, async {
        handle.authenticate_keyboard_interactive_start(login, None::<String>).await.map_err(|e| ssh("connect", e))
    })
    .await?;
    for _ in 0..MAX_KBD_ROUNDS {
        match reply {
            Reply::Success => return Ok(true),
            Reply::Failure { .. } => return Ok(false),
            Reply::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| password.to_string()).collect();
                reply = timed("connect", "keyboard-interactive authentication", limit, async {
                    handle.authenticate_keyboard_interactive_respond(answers).await.map_err(|e| ssh("connect", e))
                })
                .await?;
            }
        }
    }
    Ok(matches!(reply, Reply::Success))
}

/// `client_keys`, or the default key files that exist.
fn key_paths(options: &SshOptions) -> Vec<PathBuf> {
    if !options.client_keys.is_empty() {
        return options.client_keys.iter().map(|k| known_hosts::expand_home(k)).collect();
    }
    DEFAULT_KEYS.iter().map(|k| known_hosts::expand_home(k)).filter(|p| p.is_file()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_kex_stays_on_with_a_custom_kex_list() {
        let defaults = client_config(&SshOptions::default()).unwrap();
        assert!(defaults.preferred.kex.contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT));
        let options = SshOptions { kex_algs: vec!["curve25519-sha256".into()], ..Default::default() };
        let custom = client_config(&options).unwrap();
        assert_eq!(custom.preferred.kex[0], russh::kex::Name::try_from("curve25519-sha256").unwrap());
        assert!(custom.preferred.kex.contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT));
        assert!(custom.preferred.kex.contains(&russh::kex::EXTENSION_SUPPORT_AS_CLIENT));
        let err = client_config(&SshOptions { kex_algs: vec!["nope".into()], ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("kex_algs"), "{err}");
    }
}
