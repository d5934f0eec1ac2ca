//! The plugin's connect function and [`FtpConnection`]: a pool of logged-in
//! control connections (`extra.max_sessions`, 4 by default), each carrying
//! one transfer at a time, all reached through the host's dialer so a host
//! behind SSH jump hosts works like one next door.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tether_core::{BoxFuture, ConnectRequest, Connection, Dialer, Error, ErrorKind, FileTransfer, HostConfig, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::options::{FtpOptions, TABLE};
use crate::session::Session;

/// What every session of one host needs to open and run.
pub(crate) struct Shared {
    pub(crate) options: FtpOptions,
    /// The control connection's destination (also the data connections').
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) dialer: Dialer,
    /// With `ssl`: the TLS client configuration, shared so that data
    /// connections resume the control connection's TLS session.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) login: String,
    password: Option<SecretString>,
    /// `address:port`, for messages.
    pub(crate) what: String,
}

impl Shared {
    /// The password, for the `PASS` command only.
    pub(crate) fn password(&self) -> &str {
        self.password.as_ref().map_or("", |p| p.expose_secret())
    }
}

/// One host's FTP sessions; it is also the host's [`FileTransfer`].
pub struct FtpHost {
    pub(crate) shared: Shared,
    idle: std::sync::Mutex<Vec<Session>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
    /// This host, for the task that removes an abandoned upload's
    /// temporary file.
    pub(crate) me: Weak<FtpHost>,
}

impl fmt::Debug for FtpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpHost")
            .field("target", &self.shared.what)
            .field("login", &self.shared.login)
            .field("ssl", &self.shared.options.ssl)
            .field("free_sessions", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// A session on loan to one operation, with its permit. Dropping a loan
/// (an error, a cancelled future) closes the session's connection; only
/// [`FtpHost::give_back`] returns a healthy one to the pool.
#[derive(Debug)]
pub(crate) struct Loan {
    pub(crate) session: Session,
    _permit: OwnedSemaphorePermit,
}

impl FtpHost {
    fn closed_error(&self, operation: &str) -> Error {
        Error::new(ErrorKind::ConnectionLost, operation.to_string())
            .with_context(format!("{}: the FTP connection was closed", self.shared.what))
    }

    /// A session for one operation: an idle one, or a new one while fewer
    /// than `max_sessions` are open; otherwise waits its turn.
    pub(crate) async fn borrow(&self, operation: &str) -> Result<Loan> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(self.closed_error(operation));
        }
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| self.closed_error(operation))?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let session = match idle {
            Some(session) => session,
            None => Session::open(&self.shared).await?,
        };
        Ok(Loan { session, _permit: permit })
    }

    /// Returns a session to the pool, unless it is out of step with the
    /// server or the connection was closed meanwhile.
    pub(crate) fn give_back(&self, loan: Loan) {
        let Loan { session, _permit } = loan;
        if !session.broken
            && !self.closed.load(Ordering::SeqCst)
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(session);
        }
    }

    async fn shut(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        let sessions: Vec<Session> = self.idle.lock().map(|mut idle| idle.drain(..).collect()).unwrap_or_default();
        for session in sessions {
            session.quit().await;
        }
    }
}

/// The connection the registry hands out for `ftp`.
#[derive(Debug)]
pub struct FtpConnection {
    host: Arc<FtpHost>,
}

impl FtpConnection {
    /// The host's sessions, which are also its [`FileTransfer`].
    pub fn host(&self) -> Arc<FtpHost> {
        self.host.clone()
    }
}

#[async_trait]
impl Connection for FtpConnection {
    async fn file_transfer(&self, _scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        if self.host.closed.load(Ordering::SeqCst) {
            return Err(self.host.closed_error("open file transfer"));
        }
        Ok(self.host.clone())
    }

    fn is_alive(&self) -> bool {
        !self.host.closed.load(Ordering::SeqCst)
    }

    async fn close(&self) -> Result<()> {
        self.host.shut().await;
        Ok(())
    }
}

pub(crate) fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
    Box::pin(async move {
        let id = request.host.id.clone();
        let connection = connect_via(request.host, request.dialer).await.map_err(|e| e.with_host(id))?;
        Ok(Arc::new(connection) as Arc<dyn Connection>)
    })
}

/// Connects to `host` with its `ftp_options`, reaching its address through
/// `dialer`, and logs the first session in, so a wrong password or a
/// certificate that does not verify fails here rather than at the first
/// transfer. A host without a login logs in as `anonymous`.
pub async fn connect_via(host: Arc<HostConfig>, dialer: Dialer) -> Result<FtpConnection> {
    let options: FtpOptions = host.options.table(TABLE)?;
    options.checked()?;
    let address = host
        .address
        .clone()
        .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "connect").with_context("an ftp host needs an address"))?;
    let port = host.port.unwrap_or(options.port);
    let tls = match options.ssl {
        true => Some(crate::tls::client_config(&options.extra, &address)?),
        false => None,
    };
    let (login, password) = match host.login() {
        Some(login) => (login.to_string(), host.password().map(|p| SecretString::from(p.to_string()))),
        None => ("anonymous".to_string(), Some(SecretString::from("anonymous@".to_string()))),
    };
    let what = format!("{address}:{port}");
    let sessions = options.extra.max_sessions;
    let ftp = Arc::new_cyclic(|me| FtpHost {
        shared: Shared { options, address, port, dialer, tls, login, password, what },
        idle: std::sync::Mutex::new(Vec::new()),
        permits: Arc::new(Semaphore::new(sessions)),
        closed: AtomicBool::new(false),
        me: me.clone(),
    });
    let first = ftp.borrow("connect").await?;
    ftp.give_back(first);
    Ok(FtpConnection { host: ftp })
}
