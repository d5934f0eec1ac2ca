//! The plugin's connect function: TCP, the SSH handshake with the host key
//! checked against `known_hosts`, authentication, and [`SshConnection`], the
//! one SSH session per host that every channel shares.
//!
//! The steps live apart: `algorithms` (russh's configuration), `handler`
//! (the host-key policy and forwarded connections) and `auth` (the methods
//! of `preferred_auth`). The TCP stream is the dialer's (quick ACKs
//! included).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client;
use tether_core::{
    BoxFuture, BoxStream, ConnectRequest, Connection, Dialer, Error, ErrorKind, FileTransfer, HostConfig, Result,
    Transport, Tunnel,
};
use tokio::sync::Semaphore;

use crate::error::{ssh, timed};
use crate::known_hosts;
use crate::options::{SCP_TABLE, SFTP_TABLE, ScpOptions, SftpOptions, SshOptions, TABLE};
use crate::tunnel::{Forwards, RemoteRoutes};

mod algorithms;
mod auth;
mod handler;

use algorithms::client_config;
use auth::authenticate;
pub(crate) use handler::ClientHandler;

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
    /// Session slots (`max_sessions`) free right now. A session channel
    /// opened ahead of the next command holds one while it waits.
    pub fn free_sessions(&self) -> usize {
        self.sessions.available_permits()
    }

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

    let stream: BoxStream = dialer.connect(&address, port, limit).await?.boxed();
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

fn current_user() -> Result<String> {
    ["USER", "LOGNAME"].iter().find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty())).ok_or_else(|| {
        Error::new(ErrorKind::InvalidConfig, "connect")
            .with_context("no login: the host names no user and USER/LOGNAME are unset")
    })
}
