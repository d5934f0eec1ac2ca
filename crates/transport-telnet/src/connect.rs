//! The plugin's connect function and [`TelnetConnection`]: a pool of logged-in
//! sessions (one by default), each a Telnet connection opened through the
//! host's dialer, so a host behind SSH jump hosts is reached the same way.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use regex::bytes::Regex;
use tether_core::{
    BoxFuture, ConnectRequest, Connection, Dialer, Error, ErrorKind, FileTransfer, HostConfig, Result, Transport,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::login::{Login, log_in, prepare_shell, wait_for_prompt};
use crate::options::{TABLE, TelnetOptions};
use crate::terminal::{Setup, Terminal};

/// A logged-in session, ready for a command.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) terminal: Terminal,
}

/// What every session of one host shares.
pub struct TelnetHost {
    pub(crate) host: Arc<HostConfig>,
    pub(crate) options: TelnetOptions,
    dialer: Dialer,
    /// Sessions free for the next command.
    idle: std::sync::Mutex<Vec<Session>>,
    /// `max_sessions` permits: one per session in use or being opened.
    permits: Arc<Semaphore>,
    pub(crate) prompt: Regex,
    /// Makes every marker of this process unique.
    counter: AtomicU64,
    closed: AtomicBool,
    /// Set once a session could not be reached at all (the host is gone).
    broken: AtomicBool,
    pub(crate) what: String,
    /// This host, for the task that reads a command's output.
    pub(crate) me: std::sync::Weak<TelnetHost>,
}

impl fmt::Debug for TelnetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelnetHost")
            .field("target", &self.what)
            .field("free_sessions", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// A session on loan to one command, with its `max_sessions` permit; it
/// goes back to the pool with [`TelnetHost::give_back`].
#[derive(Debug)]
pub(crate) struct Loan {
    pub(crate) session: Session,
    permit: OwnedSemaphorePermit,
}

impl TelnetHost {
    /// A fresh token for markers: unique in this process, unguessable enough
    /// that a command's output does not contain it by chance.
    pub(crate) fn token(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("T{:x}{:016x}", n, rand_u64())
    }

    pub(crate) fn ensure_open(&self, operation: &str) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::ConnectionLost, operation.to_string())
                .with_context(format!("{}: closed", self.what)));
        }
        Ok(())
    }

    /// A session for one command: an idle one, or a new one while fewer
    /// than `max_sessions` are open; otherwise waits its turn.
    pub(crate) async fn borrow(&self, operation: &str) -> Result<Loan> {
        self.ensure_open(operation)?;
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| {
            Error::new(ErrorKind::ConnectionLost, operation.to_string()).with_context(format!("{}: closed", self.what))
        })?;
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match idle {
                Some(session) if !session.terminal.has_ended() => return Ok(Loan { session, permit }),
                // A session the host hung up on is dropped; try the next.
                Some(_) => continue,
                None => break,
            }
        }
        let session = self.open_session().await?;
        Ok(Loan { session, permit })
    }

    /// Returns a healthy session to the pool (a broken one is dropped, which
    /// closes its socket).
    pub(crate) fn give_back(&self, loan: Loan) {
        let Loan { session, permit } = loan;
        if !session.terminal.has_ended()
            && !self.closed.load(Ordering::SeqCst)
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(session);
        }
        drop(permit);
    }

    /// Dials, negotiates, logs in and prepares the shell.
    async fn open_session(&self) -> Result<Session> {
        let terminal = self.open_terminal(Setup {
            term: "dumb".into(),
            cols: self.options.cols,
            rows: self.options.rows,
            server_echo: false,
            pacing: self.options.pacing(),
            what: self.what.clone(),
        });
        let mut terminal = terminal.await?;
        let deadline = Instant::now() + self.options.connect_limit();
        if self.options.posix_shell {
            prepare_shell(&mut terminal, &self.token(), deadline).await?;
        } else {
            wait_for_prompt(&mut terminal, &self.prompt, deadline).await?;
        }
        Ok(Session { terminal })
    }

    /// A logged-in terminal (for commands, or for an interactive shell).
    pub(crate) async fn open_terminal(&self, setup: Setup) -> Result<Terminal> {
        let limit = self.options.connect_limit();
        let address = self.host.address.as_deref().ok_or_else(|| {
            Error::new(ErrorKind::InvalidConfig, "connect").with_context("a telnet host needs an address")
        })?;
        let port = self.host.port.unwrap_or(self.options.port);
        let stream = match self.dialer.connect(address, port, limit).await {
            Ok(dialed) => dialed.boxed(),
            Err(err) => {
                self.broken.store(true, Ordering::SeqCst);
                return Err(err);
            }
        };
        let mut terminal = Terminal::start(stream, setup).await?;
        terminal.settle(self.options.negotiation_limit()).await;
        if self.options.login {
            let login = Login { user: self.host.login(), password: self.host.password() };
            log_in(&mut terminal, &self.options, &login, Instant::now() + limit).await?;
        }
        Ok(terminal)
    }

    fn shut(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// A pseudo-random number from the standard library's hasher seeds, which
/// are random per process: enough to keep markers out of real output.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish()
}

/// The connection the registry hands out for `telnet`.
#[derive(Debug)]
pub struct TelnetConnection {
    host: Arc<TelnetHost>,
}

impl TelnetConnection {
    /// The shared host state (also the [`Transport`]).
    pub fn host(&self) -> Arc<TelnetHost> {
        self.host.clone()
    }
}

#[async_trait]
impl Connection for TelnetConnection {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(self.host.clone())
    }

    async fn file_transfer(&self, scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        Err(Error::new(ErrorKind::Unsupported, "open file transfer").with_context(format!(
            "telnet moves no files itself: make `{scheme}` a scheme that builds on the host's telnet term (shellfs)"
        )))
    }

    fn is_alive(&self) -> bool {
        !self.host.closed.load(Ordering::SeqCst) && !self.host.broken.load(Ordering::SeqCst)
    }

    async fn close(&self) -> Result<()> {
        self.host.shut();
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

/// Connects to `host` with its `telnet_options`, reaching its address
/// through `dialer`, and logs the first session in (so a wrong password
/// fails here, not at the first command).
pub async fn connect_via(host: Arc<HostConfig>, dialer: Dialer) -> Result<TelnetConnection> {
    let options: TelnetOptions = host.options.table(TABLE)?;
    options.checked()?;
    let prompt = Regex::new(&options.prompt)
        .map_err(|e| Error::new(ErrorKind::InvalidConfig, "connect").with_context(format!("{TABLE}.prompt: {e}")))?;
    let address = host.address.clone().unwrap_or_default();
    let what = format!("{address}:{}", host.port.unwrap_or(options.port));
    let telnet = Arc::new_cyclic(|me| TelnetHost {
        permits: Arc::new(Semaphore::new(options.sessions())),
        host,
        options,
        dialer,
        idle: std::sync::Mutex::new(Vec::new()),
        prompt,
        counter: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        broken: AtomicBool::new(false),
        what,
        me: me.clone(),
    });
    let first = telnet.borrow("connect").await?;
    telnet.give_back(first);
    Ok(TelnetConnection { host: telnet })
}
