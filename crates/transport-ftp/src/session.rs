//! One FTP control connection, logged in and in binary mode, and the
//! commands Tether sends on it, each under its time limit.
//!
//! suppaftp has no timeouts of its own: a silent server would hang a call
//! forever. So every call goes through [`Session::step`], which bounds it
//! and marks the session broken when the limit passes or the connection is
//! out of step (a late reply would otherwise answer the next command). A
//! broken session is dropped, never reused.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream, AsyncRustlsStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpResult, Mode, Status};
use tether_core::{Dialer, Endpoint, Error, ErrorKind, Result};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::connect::Shared;
use crate::error::{from_ftp, keeps_session, quote, reply_code};
use crate::listing::{Entry, format_timeval, parse_list_line, parse_mlsx_line, parse_timeval};
use crate::options::{NameEncoding, PassiveCommand};

/// Which listing to read of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// `MLSD` where the server has it (exact facts), else `LIST -a`.
    Facts,
    /// `LIST -a`: links shown as links, with their targets, dangling ones
    /// included (ProFTPD's `MLSD` leaves those out).
    Links,
}

/// A data connection or a download in progress (suppaftp's stream, kept
/// inside this crate).
pub(crate) type DataStream = suppaftp::tokio::TransferStream<AsyncRustlsStream>;

/// How long an upload waits for the server's TLS session ticket before
/// closing (it was sent right after the handshake, so it is there already
/// unless the upload took less than a round trip).
const TICKET_WAIT: Duration = Duration::from_millis(20);

/// Bytes read from a listing's data connection at a time.
const LISTING_CHUNK: usize = 64 * 1024;

/// A logged-in control connection.
pub(crate) struct Session {
    ftp: AsyncRustlsFtpStream,
    /// The server lists `MLST` in `FEAT`: listings read `MLSD` facts, not
    /// `ls -l` (stat reads the parent's `LIST`, which shows links as links:
    /// ProFTPD's `MLST` follows a link and mixes its facts with the target's).
    mlst: bool,
    /// A NUL in a name reaches the server's file system as a newline
    /// (vsftpd), rather than cutting the name short (ProFTPD).
    nul_is_newline: bool,
    /// The server lists `MFMT`: mtimes are set with it, else with a
    /// two-argument `MDTM` (vsftpd, ProFTPD).
    mfmt: bool,
    /// Index into `passive_commands` of the one in use.
    passive: usize,
    /// The login directory, which relative paths start from.
    pub(crate) home: String,
    /// Set once the session is out of step with the server.
    pub(crate) broken: bool,
    /// The session is FTPS: its data connections are TLS too.
    pub(crate) secure: bool,
    data: Arc<DataRoute>,
    /// The forward that carries the control connection through a hop.
    _control: Endpoint,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("home", &self.home).field("broken", &self.broken).finish_non_exhaustive()
    }
}

/// How data connections reach the server: to the control connection's
/// destination, at the port the server named, through the host's dialer.
/// The address in a `PASV` reply is never used, so a server cannot point
/// Tether (or the hop) at another machine.
struct DataRoute {
    dialer: Dialer,
    host: String,
    limit: Duration,
    /// The forward of the data connection in progress (through a hop): it
    /// must outlive the connection it carries, and goes with the next one.
    open: Mutex<Option<Endpoint>>,
    /// Why the last data connection failed, in Tether's words (suppaftp
    /// only carries an `io::Error` out of the stream builder).
    failure: Mutex<Option<Error>>,
}

impl DataRoute {
    async fn dial(self: Arc<Self>, port: u16) -> Result<TcpStream> {
        let endpoint = self.dialer.endpoint(&self.host, port).await?;
        let what = format!("FTP data connection to {}:{port}", self.host);
        let stream = tokio::time::timeout(self.limit, TcpStream::connect((endpoint.host(), endpoint.port())))
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, "connect").with_context(format!("{what}: no answer")))?
            .map_err(|e| Error::io("connect", e).with_context(what))?;
        let _ = stream.set_nodelay(true);
        if let Ok(mut open) = self.open.lock() {
            *open = Some(endpoint);
        }
        Ok(stream)
    }
}

/// What a bounded call came to.
enum Outcome<T> {
    Done(T),
    Failed(FtpError),
    TimedOut,
}

async fn bounded<T>(limit: Duration, call: impl Future<Output = FtpResult<T>>) -> Outcome<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Outcome::Done(value),
        Ok(Err(err)) => Outcome::Failed(err),
        Err(_) => Outcome::TimedOut,
    }
}

/// `call` (one exchange of the connect) within `limit`, or a timeout that
/// names the exchange.
async fn reply<T>(
    limit: Duration,
    what: &str,
    exchange: &str,
    call: impl Future<Output = FtpResult<T>>,
) -> Result<FtpResult<T>> {
    tokio::time::timeout(limit, call).await.map_err(|_| {
        Error::new(ErrorKind::Timeout, "connect").with_context(format!(
            "{what}: no answer to {exchange} within {:.1} s (socket_timeout)",
            limit.as_secs_f64()
        ))
    })
}

/// ISO-8859-1 names, for `encoding = "latin-1"`.
#[derive(Debug)]
struct Latin1;

impl suppaftp::Encoding for Latin1 {
    fn decode(&self, bytes: &[u8]) -> String {
        bytes.iter().map(|&b| char::from(b)).collect()
    }

    fn encode(&self, text: &str) -> std::io::Result<Vec<u8>> {
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a character outside latin-1"))
    }
}

impl Session {
    /// Connects, reads the greeting, secures the connection (with `ssl`),
    /// logs in, and sets binary mode, all within `connection_timeout`.
    pub(crate) async fn open(shared: &Shared) -> Result<Session> {
        let limit = shared.options.connection_limit();
        let what = shared.what.clone();
        tokio::time::timeout(limit, Session::open_unbounded(shared)).await.unwrap_or_else(|_| {
            Err(Error::new(ErrorKind::Timeout, "connect")
                .with_context(format!("{what}: no FTP session after {:.1} s", limit.as_secs_f64())))
        })
    }

    async fn open_unbounded(shared: &Shared) -> Result<Session> {
        let options = &shared.options;
        let what = &shared.what;
        // The greeting has all of connection_timeout; each later reply of
        // the connect is held to socket_timeout as well.
        let reply_limit = options.socket_limit();
        let control = shared.dialer.endpoint(&shared.address, shared.port).await?;
        let stream = TcpStream::connect((control.host(), control.port()))
            .await
            .map_err(|e| Error::io("connect", e).with_context(what.clone()))?;
        let _ = stream.set_nodelay(true);
        let data = Arc::new(DataRoute {
            dialer: shared.dialer.clone(),
            host: shared.address.clone(),
            limit: options.socket_limit(),
            open: Mutex::new(None),
            failure: Mutex::new(None),
        });
        let route = data.clone();
        let greeted =
            AsyncRustlsFtpStream::connect_with_stream(stream).await.map_err(|e| from_ftp(&e, "connect", what))?;
        let mut ftp = greeted.passive_stream_builder(move |named: SocketAddr| {
            // Only the port of the server's answer is used (see DataRoute).
            let dial = tokio::spawn(route.clone().dial(named.port()));
            let route = route.clone();
            Box::pin(async move {
                let result = dial
                    .await
                    .unwrap_or_else(|e| Err(Error::new(ErrorKind::Io, "connect").with_context(e.to_string())));
                result.map_err(|err| {
                    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, err.to_string());
                    if let Ok(mut failure) = route.failure.lock() {
                        *failure = Some(err);
                    }
                    FtpError::ConnectionError(io)
                })
            }) as Pin<Box<dyn Future<Output = FtpResult<TcpStream>> + Send + Sync>>
        });
        ftp.set_passive_nat_workaround(true);
        if let Some(tls) = &shared.tls {
            // A session cache of this session's own: vsftpd's session
            // processes each have their own tickets, so a data connection
            // can only resume its own control connection's TLS session.
            let mut config = (**tls).clone();
            config.resumption = rustls::client::Resumption::in_memory_sessions(8);
            let connector = AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(Arc::new(config)));
            let name = options.extra.server_name.clone().unwrap_or_else(|| shared.address.clone());
            ftp = reply(reply_limit, what, "AUTH TLS", ftp.into_secure(connector, &name))
                .await?
                .map_err(|e| from_ftp(&e, "connect", what))?;
        }
        let user = shared.login.clone();
        let password = shared.password();
        reply(reply_limit, what, "the login", ftp.login(user.as_str(), password)).await?.map_err(|e| {
            // The reply is the server's; it is still kept clear of the password.
            let err = from_ftp(&e, "login", &format!("{what} as {user}"));
            let mut context = err.context().unwrap_or_default().to_string();
            if !password.is_empty() {
                context = context.replace(password, "****");
            }
            let kind =
                if reply_code(&e).is_some_and(|c| c == 530 || c == 430) { ErrorKind::AuthFailed } else { err.kind() };
            Error::new(kind, "login").with_context(context)
        })?;
        reply(reply_limit, what, "TYPE I", ftp.transfer_type(FileType::Binary))
            .await?
            .map_err(|e| from_ftp(&e, "connect", what))?;
        let features = match reply(reply_limit, what, "FEAT", ftp.feat()).await? {
            Ok(features) => features,
            Err(e) if keeps_session(&e) => Default::default(),
            Err(e) => return Err(from_ftp(&e, "connect", what)),
        };
        let has = |name: &str| features.keys().any(|k| k.eq_ignore_ascii_case(name));
        match options.encoding {
            NameEncoding::Utf8 if has("UTF8") => {
                // Servers that list UTF8 may still want to be told; a refusal changes nothing.
                let told = ftp.custom_command("OPTS UTF8 ON", &[Status::CommandOk, Status::File]);
                if let Err(e) = reply(reply_limit, what, "OPTS UTF8", told).await?
                    && !keeps_session(&e)
                {
                    return Err(from_ftp(&e, "connect", what));
                }
            }
            NameEncoding::Utf8 => {}
            NameEncoding::Latin1 => ftp.set_encoding(Latin1).await,
        }
        let home = match reply(reply_limit, what, "PWD", ftp.pwd()).await? {
            Ok(home) => home,
            Err(e) if keeps_session(&e) => "/".to_string(),
            Err(e) => return Err(from_ftp(&e, "connect", what)),
        };
        // A directory that cannot exist, behind a NUL: a server that cuts
        // the name there enters `home` instead (250).
        let probe = format!("CWD {}/\0tether-newline-probe", home.trim_end_matches('/'));
        let cut = reply(reply_limit, what, "CWD", ftp.custom_command(probe, &[Status::RequestedFileActionOk])).await?;
        let nul_is_newline = match cut {
            Ok(_) => false,
            Err(e) if keeps_session(&e) => true,
            Err(e) => return Err(from_ftp(&e, "connect", what)),
        };
        let mut session = Session {
            ftp,
            nul_is_newline,
            mlst: has("MLST"),
            mfmt: has("MFMT"),
            passive: 0,
            home,
            broken: false,
            secure: shared.tls.is_some(),
            data,
            _control: control,
        };
        session.apply_passive(shared);
        Ok(session)
    }

    fn apply_passive(&mut self, shared: &Shared) {
        let mode = match shared.options.passive_commands.get(self.passive) {
            Some(PassiveCommand::Pasv) => Mode::Passive,
            _ => Mode::ExtendedPassive,
        };
        self.ftp.set_mode(mode);
    }

    /// Settles a bounded call: a timeout or a broken exchange marks the
    /// session broken, and every failure becomes Tether's error.
    fn settle<T>(&mut self, outcome: Outcome<T>, limit: Duration, operation: &str, subject: &str) -> Result<T> {
        match outcome {
            Outcome::Done(value) => Ok(value),
            Outcome::TimedOut => {
                self.broken = true;
                Err(Error::new(ErrorKind::Timeout, operation.to_string())
                    .with_context(format!("{subject}: no answer from the server within {:.1} s", limit.as_secs_f64())))
            }
            Outcome::Failed(err) => {
                if !keeps_session(&err) {
                    self.broken = true;
                }
                let data_failure = self.data.failure.lock().ok().and_then(|mut f| f.take());
                match (data_failure, &err) {
                    (Some(failure), FtpError::ConnectionError(_)) => Err(failure),
                    _ => Err(from_ftp(&err, operation, subject)),
                }
            }
        }
    }

    /// `path` as the server should read it: absolute (relative paths start
    /// at the login directory), with the RFC 959 convention that a newline
    /// in a name travels as NUL, since the line would otherwise end there.
    /// A server that cuts names at a NUL instead (ProFTPD) would act on a
    /// shorter name, another file: there such names are refused.
    pub(crate) fn wire(&self, path: &str) -> Result<String> {
        if path.contains('\n') && !self.nul_is_newline {
            return Err(Error::new(ErrorKind::Unsupported, "ftp").with_context(format!(
                "{path:?}: this server cuts names at the NUL that stands for a newline, so a name with a newline would name another file"
            )));
        }
        let absolute = if path.starts_with('/') {
            path.to_string()
        } else if self.home.ends_with('/') {
            format!("{}{path}", self.home)
        } else {
            format!("{}/{path}", self.home)
        };
        Ok(absolute.replace('\n', "\0"))
    }

    /// A control command with its expected replies, bounded by `socket_timeout`.
    async fn command(
        &mut self,
        shared: &Shared,
        line: String,
        expect: &[Status],
        operation: &str,
        subject: &str,
    ) -> Result<()> {
        let limit = shared.options.socket_limit();
        let outcome = bounded(limit, self.ftp.custom_command(line, expect)).await;
        self.settle(outcome, limit, operation, subject).map(drop)
    }

    /// `SIZE`: the size in bytes, or `None` when the server refuses (a
    /// missing path, a directory).
    pub(crate) async fn size(&mut self, shared: &Shared, operation: &str, path: &str) -> Result<Option<u64>> {
        let limit = shared.options.socket_limit();
        let wire = self.wire(path)?;
        let outcome = bounded(limit, self.ftp.size(wire)).await;
        match self.settle(outcome, limit, operation, path) {
            Ok(size) => Ok(Some(size as u64)),
            Err(err) if !self.broken && err.kind() != ErrorKind::Timeout => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `MDTM`: the modification time, when the server tells.
    pub(crate) async fn mtime(&mut self, shared: &Shared, operation: &str, path: &str) -> Result<Option<SystemTime>> {
        let limit = shared.options.socket_limit();
        let line = format!("MDTM {}", self.wire(path)?);
        let outcome = bounded(limit, self.ftp.custom_command(line, &[Status::File])).await;
        match self.settle(outcome, limit, operation, path) {
            Ok(reply) => {
                let text = String::from_utf8_lossy(&reply.body).to_string();
                Ok(text.get(4..).and_then(parse_timeval))
            }
            Err(err) if !self.broken => {
                tracing::debug!(%err, "no MDTM");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Sets the modification time, with `MFMT` or a two-argument `MDTM`.
    pub(crate) async fn set_mtime(&mut self, shared: &Shared, path: &str, time: SystemTime) -> Result<()> {
        let Some(stamp) = format_timeval(time) else {
            return Err(
                Error::new(ErrorKind::InvalidInput, "put").with_context("an mtime before 1970 cannot be set over FTP")
            );
        };
        let line = if self.mfmt {
            format!("MFMT {stamp} {}", self.wire(path)?)
        } else {
            format!("MDTM {stamp} {}", self.wire(path)?)
        };
        self.command(shared, line, &[Status::File, Status::CommandOk, Status::RequestedFileActionOk], "set mtime", path)
            .await
    }

    /// `SITE CHMOD`.
    pub(crate) async fn chmod(&mut self, shared: &Shared, path: &str, mode: u32) -> Result<()> {
        let line = format!("SITE CHMOD {mode:o} {}", self.wire(path)?);
        self.command(shared, line, &[Status::CommandOk], "chmod", path).await
    }

    /// `CWD`: true when `path` is a directory the session can enter.
    pub(crate) async fn enter(&mut self, shared: &Shared, path: &str) -> Result<bool> {
        let line = format!("CWD {}", self.wire(path)?);
        match self.command(shared, line, &[Status::RequestedFileActionOk, Status::CommandOk], "cd", path).await {
            Ok(()) => Ok(true),
            Err(_) if !self.broken => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `MKD`.
    pub(crate) async fn make_dir(&mut self, shared: &Shared, path: &str) -> Result<()> {
        let line = format!("MKD {}", self.wire(path)?);
        self.command(shared, line, &[Status::PathCreated, Status::CommandOk], "mkdir", path).await
    }

    /// `RMD`.
    pub(crate) async fn remove_dir(&mut self, shared: &Shared, path: &str) -> Result<()> {
        let line = format!("RMD {}", self.wire(path)?);
        self.command(shared, line, &[Status::RequestedFileActionOk, Status::CommandOk], "remove", path).await
    }

    /// `DELE`.
    pub(crate) async fn remove_file(&mut self, shared: &Shared, path: &str) -> Result<()> {
        let line = format!("DELE {}", self.wire(path)?);
        self.command(shared, line, &[Status::RequestedFileActionOk, Status::CommandOk], "remove", path).await
    }

    /// `RNFR` and `RNTO`.
    pub(crate) async fn rename(&mut self, shared: &Shared, from: &str, to: &str) -> Result<()> {
        let line = format!("RNFR {}", self.wire(from)?);
        self.command(shared, line, &[Status::RequestFilePending], "rename", from).await?;
        let line = format!("RNTO {}", self.wire(to)?);
        self.command(shared, line, &[Status::RequestedFileActionOk, Status::CommandOk], "rename", to).await
    }

    /// Opens a data connection for `command` (a transfer or a listing),
    /// falling back to the next of `passive_commands` when the server
    /// refuses the current one (`500`/`502` to `EPSV`).
    async fn open_data(
        &mut self,
        shared: &Shared,
        command: String,
        operation: &str,
        subject: &str,
    ) -> Result<DataStream> {
        let limit = shared.options.socket_limit();
        loop {
            let outcome = bounded(
                limit,
                self.ftp.custom_data_command(command.clone(), &[Status::AboutToSend, Status::AlreadyOpen]),
            )
            .await;
            if let Outcome::Failed(err) = &outcome
                && matches!(reply_code(err), Some(500 | 502))
                && self.passive + 1 < shared.options.passive_commands.len()
            {
                tracing::debug!(refused = %quote(&err.to_string()), "the server refused the passive command; trying the next");
                self.passive += 1;
                self.apply_passive(shared);
                continue;
            }
            return self.settle(outcome, limit, operation, subject).map(|(_, stream)| stream);
        }
    }

    /// `RETR`, from `offset` (with `REST`) when it is not 0.
    pub(crate) async fn download(&mut self, shared: &Shared, path: &str, offset: u64) -> Result<DataStream> {
        if offset > 0 {
            let line = format!("REST {offset}");
            self.command(shared, line, &[Status::RequestFilePending], "get", path).await?;
        }
        let command = format!("RETR {}", self.wire(path)?);
        self.open_data(shared, command, "get", path).await
    }

    /// `STOR`.
    pub(crate) async fn upload(&mut self, shared: &Shared, path: &str) -> Result<DataStream> {
        let command = format!("STOR {}", self.wire(path)?);
        self.open_data(shared, command, "put", path).await
    }

    /// Before an upload's data connection closes: lets its TLS layer read
    /// what the server sent meanwhile, the TLS 1.3 session ticket above
    /// all. A download reads it anyway; an upload would close without it,
    /// and each upload would use up one of the control connection's
    /// tickets until the next data connection cannot resume the TLS
    /// session, which vsftpd then refuses (`522 session reuse required`).
    pub(crate) async fn collect_tickets(&self, stream: &mut DataStream) {
        if !self.secure {
            return;
        }
        let mut nothing_expected = [0u8; 1];
        let _ = tokio::time::timeout(TICKET_WAIT, stream.read(&mut nothing_expected)).await;
    }

    /// Closes a transfer's data connection and reads the server's verdict
    /// (`226`), within `socket_timeout`.
    pub(crate) async fn finish(
        &mut self,
        shared: &Shared,
        stream: DataStream,
        operation: &str,
        subject: &str,
    ) -> Result<()> {
        let limit = shared.options.socket_limit();
        let outcome = bounded(limit, stream.finish()).await;
        self.forget_data_route();
        self.settle(outcome, limit, operation, subject)
    }

    /// Drops the forward of the last data connection (the transfer is over).
    pub(crate) fn forget_data_route(&self) {
        if let Ok(mut open) = self.data.open.lock() {
            open.take();
        }
    }

    /// The entries of the directory the session is in (`MLSD`, or
    /// `LIST -a` parsed), with `.` and `..` left out; at most
    /// `max_listing_bytes` of listing are read.
    pub(crate) async fn list_here(&mut self, shared: &Shared, shown: &str, listing: Listing) -> Result<Vec<Entry>> {
        let machine = self.mlst && listing == Listing::Facts;
        let command = if machine { "MLSD".to_string() } else { "LIST -a".to_string() };
        let mut stream = self.open_data(shared, command, "list", shown).await?;
        let limit = shared.options.socket_limit();
        let cap = shared.options.extra.max_listing_bytes;
        let mut text = Vec::new();
        let mut chunk = vec![0u8; LISTING_CHUNK];
        loop {
            let read = match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    self.broken = true;
                    return Err(Error::io("list", e).with_context(shown.to_string()));
                }
                Err(_) => {
                    self.broken = true;
                    return Err(Error::new(ErrorKind::Timeout, "list")
                        .with_context(format!("{shown}: the listing stalled for {:.1} s", limit.as_secs_f64())));
                }
            };
            if read == 0 {
                break;
            }
            if (text.len() + read) as u64 > cap {
                self.broken = true;
                return Err(Error::new(ErrorKind::Protocol, "list").with_context(format!(
                    "{shown}: the listing is longer than {cap} bytes (ftp_options.extra.max_listing_bytes)"
                )));
            }
            text.extend_from_slice(&chunk[..read]);
        }
        self.finish(shared, stream, "list", shown).await?;
        let text = match shared.options.encoding {
            NameEncoding::Utf8 => String::from_utf8_lossy(&text).into_owned(),
            NameEncoding::Latin1 => text.iter().map(|&b| char::from(b)).collect(),
        };
        let now = SystemTime::now();
        // Lines end in CRLF; a bare LF may be part of a name.
        let entries = text
            .split("\r\n")
            .filter(|line| !line.is_empty())
            .filter_map(|line| if machine { parse_mlsx_line(line) } else { parse_list_line(line, now) })
            .map(|mut entry| {
                entry.name = entry.name.replace('\0', "\n");
                entry
            })
            .collect();
        Ok(entries)
    }

    /// Sends `QUIT` (briefly bounded): a polite end, so the server logs a
    /// clean logout instead of a dropped connection.
    pub(crate) async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.ftp.quit()).await;
    }
}
