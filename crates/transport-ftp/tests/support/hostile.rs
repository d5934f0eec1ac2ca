//! A scripted FTP server that misbehaves on cue, for what no real server
//! stages on demand: a greeting that never comes, a passive reply naming
//! another host, a data port that never answers, a 421 in the middle of a
//! transfer, a reply that never ends, a reply that drips.
//!
//! Until its misbehaviour strikes it is a small, well-behaved server over an
//! in-memory store, so a test can take the transport through login, listing
//! and transfers before the trap springs. Passive mode only: each transfer
//! takes one data connection on the listener the last EPSV or PASV opened.
//!
//! The store behaves like a disk: STOR truncates its target when the data
//! connection opens and appends as bytes arrive, so an upload that dies
//! leaves a partial file behind, as it would on a real server.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The host PASV names under [`Misbehaviour::PasvElsewhere`]. It lies in the
/// benchmarking range that the test machine's root namespace routes to
/// `unreachable` (`scripts/netns up`), so a client that trusts it fails.
pub const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(198, 19, 77, 1);

/// The modification time MDTM reports for every file (LIST shows the same).
pub const MDTM: &str = "20240102030405";

/// The longest command line read; a client that never sends a line end ends
/// its session instead of growing the buffer without bound.
const MAX_LINE: usize = 8192;

/// How long a transfer waits for its data connection, so that a client
/// which never opens one does not pin the session for ever.
const DATA_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server breaks the protocol, once the well-behaved part has run up
/// to the point where the misbehaviour strikes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// None: a well-behaved server.
    None,
    /// Accepts the TCP connection and never sends the 220 greeting; what the
    /// client sends is recorded and never answered.
    SilentGreeting,
    /// EPSV is answered `500 not understood`, and PASV names [`ELSEWHERE`]
    /// with the port of a data listener that really listens on 127.0.0.1:
    /// a client that dials the control connection's peer instead succeeds.
    PasvElsewhere,
    /// EPSV and PASV name a port that accepts, but a transfer command (RETR,
    /// STOR, APPE, LIST) makes the server go silent: data connections are
    /// accepted and held without a byte either way, and no reply (not even
    /// 150) ever comes on the control connection.
    NoDataConnection,
    /// RETR sends `after` bytes of the file (STOR and APPE read up to `after`
    /// bytes), then the server closes the data connection, replies `421` and
    /// closes the control connection. A transfer of fewer than `after` bytes
    /// (what is left of a file after REST, an upload that ends sooner) has no
    /// middle to strike in, and completes normally.
    Reply421MidTransfer {
        /// Bytes of data that pass before the server gives up.
        after: usize,
    },
    /// Like `Reply421MidTransfer` for downloads, and the file then grows by
    /// `after` bytes before the client can come back, as a log being
    /// written does: a resume must notice that the file changed.
    Reply421ThenGrow {
        /// Bytes of data that pass before the server gives up.
        after: usize,
    },
    /// The reply to the first command after a successful PASS is `211-`
    /// followed by continuation lines without end, as fast as the client
    /// reads them.
    EndlessMultiline,
    /// After the 230 of PASS, every byte of every reply and of every
    /// download waits `every` before it is sent, alone.
    SlowDrip {
        /// The pause before each byte.
        every: Duration,
    },
    /// As [`Misbehaviour::SlowDrip`], but from the reply to the first
    /// `command` (a verb, such as `SIZE`) on: the connect's own exchanges
    /// run at full speed, so a client can be caught in a later step.
    SlowDripFrom {
        /// The pause before each byte.
        every: Duration,
        /// The verb whose reply starts the drip.
        command: &'static str,
    },
}

/// What all sessions share: the store and what the tests inspect.
#[derive(Debug, Default)]
struct State {
    /// File contents by absolute path (`/dir/name`).
    files: BTreeMap<String, Vec<u8>>,
    /// Directories made by MKD; those holding files exist implicitly.
    dirs: BTreeSet<String>,
    /// Every command line received, PASS masked.
    commands: Vec<String>,
    /// Data connections accepted.
    data_connections: usize,
}

type Shared = Arc<Mutex<State>>;

/// Locks the state; a test that panicked while holding it must not turn
/// every later look into a second panic.
fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running server; stopped, with all its sessions, when dropped.
#[derive(Debug)]
pub struct HostileFtp {
    addr: SocketAddr,
    shared: Shared,
    accept: JoinHandle<()>,
}

impl Drop for HostileFtp {
    fn drop(&mut self) {
        // The accept task owns the sessions' JoinSet: aborting it aborts them.
        self.accept.abort();
    }
}

impl HostileFtp {
    /// Starts a server on 127.0.0.1 at a free port.
    pub async fn start(misbehaviour: Misbehaviour) -> HostileFtp {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind the control listener");
        let addr = listener.local_addr().expect("the control listener's address");
        let shared = Shared::default();
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut sessions = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    while sessions.try_join_next().is_some() {}
                    let session = Session::new(stream, misbehaviour.clone(), shared.clone());
                    // A client that goes away (or errs) just ends its session.
                    sessions.spawn(async move { _ = session.run().await });
                }
            }
        });
        HostileFtp { addr, shared, accept }
    }

    /// The control connection's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control connection's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Seeds the store with a file at `path` (`/dir/name`); its directories
    /// exist as long as it does.
    pub fn put_file(&self, path: &str, data: Vec<u8>) {
        lock(&self.shared).files.insert(resolve("/", path), data);
    }

    /// The contents of the file at `path`, if it exists.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.shared).files.get(&resolve("/", path)).cloned()
    }

    /// Every file's path, sorted (directories are not listed).
    pub fn paths(&self) -> Vec<String> {
        lock(&self.shared).files.keys().cloned().collect()
    }

    /// Every command line received on any connection, in order, with the
    /// password replaced: `PASS ****`.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared).commands.clone()
    }

    /// Data connections accepted so far.
    pub fn data_connections(&self) -> usize {
        lock(&self.shared).data_connections
    }
}

/// Whether the session goes on after a command.
enum Flow {
    Continue,
    Close,
}

/// One control connection.
struct Session {
    misbehaviour: Misbehaviour,
    shared: Shared,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    /// Bytes read but not yet split into lines; kept across reads so that
    /// reading stays cancel-safe inside `select!`.
    pending: Vec<u8>,
    cwd: String,
    /// Set once 230 is out: where EndlessMultiline and SlowDrip start.
    logged_in: bool,
    /// Set once the command that starts SlowDripFrom has arrived.
    dripping: bool,
    /// The offset REST set for the next transfer.
    rest: u64,
    /// The listener the last EPSV or PASV opened, for the next transfer.
    passive: Option<TcpListener>,
    /// The path RNFR named, for RNTO.
    rename_from: Option<String>,
}

impl Session {
    fn new(stream: TcpStream, misbehaviour: Misbehaviour, shared: Shared) -> Session {
        // Without it, Nagle's algorithm would merge dripped bytes.
        _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Session {
            misbehaviour,
            shared,
            reader,
            writer,
            pending: Vec::new(),
            cwd: "/".into(),
            logged_in: false,
            dripping: false,
            rest: 0,
            passive: None,
            rename_from: None,
        }
    }

    async fn run(mut self) -> io::Result<()> {
        if self.misbehaviour == Misbehaviour::SilentGreeting {
            return self.hang().await;
        }
        self.say("220 hostile test server").await?;
        while let Some(line) = self.read_line().await? {
            self.record(&line);
            let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let (verb, arg) = (verb.to_ascii_uppercase(), arg.trim());
            if let Misbehaviour::SlowDripFrom { command, .. } = self.misbehaviour {
                // A verb (`SIZE`) or the start of a line (`CWD /dir`).
                self.dripping |= line.to_ascii_uppercase().starts_with(&command.to_ascii_uppercase());
            }
            if self.logged_in && self.misbehaviour == Misbehaviour::EndlessMultiline {
                return self.endless().await;
            }
            if self.misbehaviour == Misbehaviour::NoDataConnection
                && matches!(verb.as_str(), "RETR" | "STOR" | "APPE" | "LIST")
            {
                return self.hang().await;
            }
            let flow = match verb.as_str() {
                "PWD" | "CWD" | "CDUP" => self.navigate(&verb, arg).await?,
                "EPSV" | "PASV" => self.passive(&verb).await?,
                "REST" | "RETR" | "STOR" | "APPE" | "LIST" => self.transfer(&verb, arg).await?,
                "SIZE" | "MDTM" => self.inspect(&verb, arg).await?,
                "DELE" | "MKD" | "RMD" | "RNFR" | "RNTO" | "SITE" => self.modify(&verb, arg).await?,
                _ => self.converse(&verb, arg).await?,
            };
            if let Flow::Close = flow {
                break;
            }
        }
        Ok(())
    }

    /// Login, session settings, and the answers that never touch the store.
    async fn converse(&mut self, verb: &str, arg: &str) -> io::Result<Flow> {
        let text = match verb {
            "USER" => "331 Password required.",
            "PASS" => {
                self.say("230 Logged in.").await?;
                self.logged_in = true;
                return Ok(Flow::Continue);
            }
            "SYST" => "215 UNIX Type: L8",
            "FEAT" => "211-Features:\r\n EPSV\r\n PASV\r\n SIZE\r\n MDTM\r\n REST STREAM\r\n UTF8\r\n211 End",
            "OPTS" if arg.eq_ignore_ascii_case("UTF8 ON") => "200 Always in UTF8 mode.",
            "OPTS" => "501 Option not understood.",
            "TYPE" if matches!(arg.to_ascii_uppercase().as_str(), "I" | "A" | "A N" | "L 8") => "200 Type set.",
            "TYPE" => "504 Type not supported.",
            "NOOP" => "200 NOOP ok.",
            // No machine-readable listings: clients must cope with `ls -l`.
            "MLSD" | "MLST" => "500 Unknown command.",
            "QUIT" => {
                self.say("221 Goodbye.").await?;
                self.writer.shutdown().await?;
                return Ok(Flow::Close);
            }
            // AUTH too: no TLS here.
            _ => "502 Command not implemented.",
        };
        self.say(text).await
    }

    async fn navigate(&mut self, verb: &str, arg: &str) -> io::Result<Flow> {
        if verb == "PWD" {
            let text = format!("257 \"{}\"", self.cwd);
            return self.say(&text).await;
        }
        let path = resolve(&self.cwd, if verb == "CDUP" { ".." } else { arg });
        if !lock(&self.shared).is_dir(&path) {
            return self.say("550 No such directory.").await;
        }
        self.cwd = path;
        self.say("250 Directory changed.").await
    }

    /// Opens a fresh data listener on 127.0.0.1 for the next transfer.
    async fn passive(&mut self, verb: &str) -> io::Result<Flow> {
        let elsewhere = self.misbehaviour == Misbehaviour::PasvElsewhere;
        if verb == "EPSV" && elsewhere {
            // Leaves the client PASV, whose reply can name another host.
            return self.say("500 not understood").await;
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        self.passive = Some(listener);
        let text = if verb == "EPSV" {
            format!("229 Entering Extended Passive Mode (|||{port}|)")
        } else {
            let [a, b, c, d] = if elsewhere { ELSEWHERE } else { Ipv4Addr::LOCALHOST }.octets();
            format!("227 Entering Passive Mode ({a},{b},{c},{d},{},{})", port >> 8, port & 0xff)
        };
        self.say(&text).await
    }

    async fn transfer(&mut self, verb: &str, arg: &str) -> io::Result<Flow> {
        match verb {
            "REST" => match arg.parse() {
                Ok(offset) => {
                    self.rest = offset;
                    self.say(&format!("350 Restarting at {offset}.")).await
                }
                Err(_) => self.say("501 Bad offset.").await,
            },
            "RETR" => self.retrieve(arg).await,
            "LIST" => self.list(arg).await,
            _ => self.store(arg, verb == "APPE").await,
        }
    }

    async fn retrieve(&mut self, arg: &str) -> io::Result<Flow> {
        let offset = usize::try_from(std::mem::take(&mut self.rest)).unwrap_or(usize::MAX);
        let body = lock(&self.shared).files.get(&resolve(&self.cwd, arg)).cloned();
        let Some(body) = body else {
            return self.say("550 No such file.").await;
        };
        let Some(mut data) = self.open_data().await? else {
            return Ok(Flow::Continue);
        };
        let body = &body[offset.min(body.len())..];
        if let Misbehaviour::Reply421MidTransfer { after } | Misbehaviour::Reply421ThenGrow { after } =
            self.misbehaviour
            && body.len() >= after
        {
            _ = data.write_all(&body[..after]).await;
            if let Misbehaviour::Reply421ThenGrow { .. } = self.misbehaviour {
                let path = resolve(&self.cwd, arg);
                lock(&self.shared).files.entry(path).or_default().extend(std::iter::repeat_n(b'+', after));
            }
            return self.give_up(data).await;
        }
        let sent = send(&mut data, body, self.drip()).await;
        self.finish(data, sent).await
    }

    async fn store(&mut self, arg: &str, append: bool) -> io::Result<Flow> {
        let offset = usize::try_from(std::mem::take(&mut self.rest)).unwrap_or(usize::MAX);
        let path = resolve(&self.cwd, arg);
        let refused = {
            let state = lock(&self.shared);
            if state.is_dir(&path) {
                Some("550 Is a directory.")
            } else if !state.is_dir(parent(&path)) {
                Some("553 No such directory.")
            } else {
                None
            }
        };
        if let Some(text) = refused {
            return self.say(text).await;
        }
        let Some(mut data) = self.open_data().await? else {
            return Ok(Flow::Continue);
        };
        {
            let mut state = lock(&self.shared);
            let mut kept = state.files.remove(&path).unwrap_or_default();
            if !append {
                kept.truncate(offset);
            }
            state.files.insert(path.clone(), kept);
        }
        let limit = match self.misbehaviour {
            Misbehaviour::Reply421MidTransfer { after } => Some(after),
            _ => None,
        };
        let mut buf = vec![0; 64 * 1024];
        let mut received = 0;
        let outcome = loop {
            let want = limit.map_or(buf.len(), |limit| (limit - received).min(buf.len()));
            match data.read(&mut buf[..want]).await {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    received += n;
                    lock(&self.shared).files.entry(path.clone()).or_default().extend_from_slice(&buf[..n]);
                }
                Err(error) => break Err(error),
            }
        };
        if limit.is_some_and(|limit| received >= limit) {
            return self.give_up(data).await;
        }
        self.finish(data, outcome).await
    }

    async fn list(&mut self, arg: &str) -> io::Result<Flow> {
        // `LIST -la /dir`: options are ignored, the last operand is the path.
        let operand = arg.split_whitespace().rfind(|word| !word.starts_with('-'));
        let path = operand.map_or_else(|| self.cwd.clone(), |operand| resolve(&self.cwd, operand));
        let listing = lock(&self.shared).listing(&path);
        let Some(listing) = listing else {
            return self.say("550 No such file or directory.").await;
        };
        let Some(mut data) = self.open_data().await? else {
            return Ok(Flow::Continue);
        };
        let sent = send(&mut data, listing.as_bytes(), self.drip()).await;
        self.finish(data, sent).await
    }

    async fn inspect(&mut self, verb: &str, arg: &str) -> io::Result<Flow> {
        let size = lock(&self.shared).files.get(&resolve(&self.cwd, arg)).map(Vec::len);
        let text = match size {
            None => "550 No such file.".to_string(),
            Some(size) if verb == "SIZE" => format!("213 {size}"),
            Some(_) => format!("213 {MDTM}"),
        };
        self.say(&text).await
    }

    async fn modify(&mut self, verb: &str, arg: &str) -> io::Result<Flow> {
        let path = resolve(&self.cwd, arg);
        let text = {
            let mut state = lock(&self.shared);
            match verb {
                "DELE" if state.files.remove(&path).is_some() => "250 Deleted.".to_string(),
                "MKD" if state.files.contains_key(&path) || state.is_dir(&path) => "550 Already exists.".into(),
                "MKD" if state.is_dir(parent(&path)) => {
                    state.dirs.insert(path.clone());
                    format!("257 \"{path}\" created.")
                }
                "RMD" if path != "/" && state.is_dir(&path) => {
                    let prefix = dir_prefix(&path);
                    if state.files.keys().chain(&state.dirs).any(|inner| inner.starts_with(&prefix)) {
                        "550 Directory not empty.".into()
                    } else {
                        state.dirs.remove(&path);
                        "250 Removed.".into()
                    }
                }
                "RNFR" if state.files.contains_key(&path) || (path != "/" && state.is_dir(&path)) => {
                    self.rename_from = Some(path);
                    "350 Ready for RNTO.".into()
                }
                "RNTO" => match self.rename_from.take() {
                    Some(from) if state.rename(&from, &path) => "250 Renamed.".into(),
                    Some(_) => "550 Rename failed.".into(),
                    None => "503 RNFR first.".into(),
                },
                "SITE" if arg.to_ascii_uppercase().starts_with("CHMOD ") => "200 SITE CHMOD ok.".into(),
                "SITE" => "502 SITE command not implemented.".into(),
                _ => "550 No such file or directory.".into(),
            }
        };
        self.say(&text).await
    }

    /// Announces the transfer (150 first: a client may wait for it before
    /// it connects), then takes the data connection on the passive listener.
    async fn open_data(&mut self) -> io::Result<Option<TcpStream>> {
        let Some(listener) = self.passive.take() else {
            self.say("425 Use PASV or EPSV first.").await?;
            return Ok(None);
        };
        self.say("150 Opening data connection.").await?;
        match tokio::time::timeout(DATA_ACCEPT_TIMEOUT, listener.accept()).await {
            Ok(Ok((stream, _))) => {
                _ = stream.set_nodelay(true);
                lock(&self.shared).data_connections += 1;
                Ok(Some(stream))
            }
            _ => {
                self.say("425 Can't open data connection.").await?;
                Ok(None)
            }
        }
    }

    /// Closes the data connection (its end marks the end of a download),
    /// then reports how the transfer went.
    async fn finish(&mut self, mut data: TcpStream, outcome: io::Result<()>) -> io::Result<Flow> {
        _ = data.shutdown().await;
        drop(data);
        match outcome {
            Ok(()) => self.say("226 Transfer complete.").await,
            Err(_) => self.say("426 Connection closed; transfer aborted.").await,
        }
    }

    /// Goes down the way a server being shut down does: data connection
    /// gone, 421, control connection gone.
    async fn give_up(&mut self, data: TcpStream) -> io::Result<Flow> {
        drop(data);
        self.say("421 Service not available, closing control connection.").await?;
        self.writer.shutdown().await?;
        Ok(Flow::Close)
    }

    /// Never finishes the reply it starts; continuation lines in both forms
    /// (` text` and `211-text`), none of which can end it.
    async fn endless(&mut self) -> io::Result<()> {
        self.writer.write_all(b"211-Status of the hostile test server:\r\n").await?;
        let mut batch = String::new();
        for line in 0u64.. {
            if line % 2 == 0 {
                _ = write!(batch, " {line} and the reply goes on\r\n");
            } else {
                _ = write!(batch, "211-{line} and on\r\n");
            }
            if batch.len() >= 4096 {
                // Blocks while the client is not reading: as fast as it reads.
                self.writer.write_all(batch.as_bytes()).await?;
                batch.clear();
            }
        }
        Ok(())
    }

    /// Stops answering: records what the client sends, accepts data
    /// connections only to hold them silent, until the client closes.
    async fn hang(&mut self) -> io::Result<()> {
        let listener = self.passive.take();
        let mut held = Vec::new();
        loop {
            tokio::select! {
                line = self.read_line() => match line? {
                    Some(line) => self.record(&line),
                    None => return Ok(()),
                },
                Ok((stream, _)) = accept(listener.as_ref()) => {
                    lock(&self.shared).data_connections += 1;
                    held.push(stream);
                }
            }
        }
    }

    /// The next command line, without its line end; `None` at end of stream.
    async fn read_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string()));
            }
            if self.pending.len() > MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "command line too long"));
            }
            if self.reader.read_buf(&mut self.pending).await? == 0 {
                return Ok(None);
            }
        }
    }

    fn record(&self, line: &str) {
        let verb = line.split(' ').next().unwrap_or_default();
        let line = if verb.eq_ignore_ascii_case("PASS") { "PASS ****".to_string() } else { line.to_string() };
        lock(&self.shared).commands.push(line);
    }

    /// Sends a reply (lines joined by CRLF, the last CRLF added here).
    async fn say(&mut self, text: &str) -> io::Result<Flow> {
        let drip = self.drip();
        send(&mut self.writer, format!("{text}\r\n").as_bytes(), drip).await?;
        Ok(Flow::Continue)
    }

    fn drip(&self) -> Option<Duration> {
        match self.misbehaviour {
            Misbehaviour::SlowDrip { every } if self.logged_in => Some(every),
            Misbehaviour::SlowDripFrom { every, .. } if self.dripping => Some(every),
            _ => None,
        }
    }
}

/// Writes `bytes`; when dripping, each byte alone after a pause of `drip`,
/// so no two bytes ever leave closer together than that.
async fn send(out: &mut (impl AsyncWrite + Unpin), bytes: &[u8], drip: Option<Duration>) -> io::Result<()> {
    let Some(every) = drip else {
        return out.write_all(bytes).await;
    };
    for byte in bytes {
        tokio::time::sleep(every).await;
        out.write_all(std::slice::from_ref(byte)).await?;
    }
    Ok(())
}

/// Accepts on `listener`, or waits for ever when there is none.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

impl State {
    fn is_dir(&self, path: &str) -> bool {
        let prefix = dir_prefix(path);
        path == "/" || self.dirs.contains(path) || self.files.keys().any(|file| file.starts_with(&prefix))
    }

    /// `ls -l` of a file or a directory's entries; `None` if neither exists.
    fn listing(&self, path: &str) -> Option<String> {
        if let Some(data) = self.files.get(path) {
            return Some(ls_line(path.rsplit('/').next().unwrap_or_default(), Some(data.len())));
        }
        if !self.is_dir(path) {
            return None;
        }
        let prefix = dir_prefix(path);
        // Name → size; `None` for a directory.
        let mut entries = BTreeMap::new();
        for (file, data) in &self.files {
            if let Some(rest) = file.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((dir, _)) => entries.insert(dir, None),
                    None => entries.insert(rest, Some(data.len())),
                };
            }
        }
        for dir in &self.dirs {
            if let Some(rest) = dir.strip_prefix(&prefix) {
                entries.entry(rest.split('/').next().unwrap_or_default()).or_insert(None);
            }
        }
        Some(entries.into_iter().map(|(name, size)| ls_line(name, size)).collect())
    }

    /// Moves a file, or a directory with everything under it.
    fn rename(&mut self, from: &str, to: &str) -> bool {
        if let Some(data) = self.files.remove(from) {
            self.files.insert(to.to_string(), data);
            return true;
        }
        if from == "/" || !self.is_dir(from) || !self.is_dir(parent(to)) {
            return false;
        }
        let files: Vec<String> = self.files.keys().filter(|file| within(file, from).is_some()).cloned().collect();
        for file in files {
            if let (Some(data), Some(rest)) = (self.files.remove(&file), within(&file, from)) {
                self.files.insert(format!("{to}{rest}"), data);
            }
        }
        let dirs: Vec<String> = self.dirs.iter().filter(|dir| within(dir, from).is_some()).cloned().collect();
        for dir in dirs {
            self.dirs.remove(&dir);
            self.dirs.insert(format!("{to}{}", within(&dir, from).unwrap_or_default()));
        }
        true
    }
}

/// One line of a Unix `ls -l`; `size` is `None` for a directory.
fn ls_line(name: &str, size: Option<usize>) -> String {
    let (mode, size) = match size {
        Some(size) => ("-rw-r--r--", size),
        None => ("drwxr-xr-x", 4096),
    };
    format!("{mode}    1 1000     1000 {size:>12} Jan 02 03:04 {name}\r\n")
}

/// `arg` made absolute against `cwd`, with `.`, `..` and doubled slashes
/// resolved, as the server's own paths (`/`, `/dir/name`).
fn resolve(cwd: &str, arg: &str) -> String {
    let joined = if arg.starts_with('/') { arg.to_string() } else { format!("{cwd}/{arg}") };
    let mut parts = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => _ = parts.pop(),
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(end) => &path[..end],
    }
}

/// What follows `dir` in `path` (`""` or `/…`), if `path` is `dir` or lies
/// inside it.
fn within<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir).filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What every path inside the directory `path` starts with.
fn dir_prefix(path: &str) -> String {
    if path == "/" { "/".into() } else { format!("{path}/") }
}
