//! The netcat listener on the host: a free port, `nc -l` under a watchdog,
//! the wait until the port listens, and what the script reports at the end.
//!
//! One script does it all on one command channel, so a transfer holds one
//! session of the command transport at a time (on SSH, `max_sessions`
//! counts it, and transfers beyond the bound queue for a slot):
//!
//! 1. for a put, create the private temporary file (`umask 077`, `set -C`);
//! 2. start `nc -l -p PORT` in the background, and a watchdog that kills it
//!    after `listener_timeout`;
//! 3. poll until the port listens (or netcat died: a port in use, …);
//! 4. report `ready`, then wait (in the background) for the word `go` on
//!    stdin, sent once the data connection is up. It disarms the watchdog.
//!    Should stdin end instead, before or during the transfer (the local
//!    side died, or gave up), netcat is killed at once and a partial file
//!    removed: stdin is the lifeline. A terminal has no stdin pipe; there
//!    the watchdog spares a listener whose connection is up, and the
//!    transfer's end ends netcat;
//! 5. report netcat's exit status, then the file's size and SHA-256;
//! 6. wait for the verdict: `keep` on stdin keeps the received file, the
//!    end of stdin without it removes it.
//!
//! Every line the script reports on starts with [`MARK`].

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_core::raw::shell_files::{failed, word};
use tether_core::{BoxReader, BoxWriter, Command, Error, ErrorKind, ExitStatus, Output, Process, Result, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::options::{NcOptions, Strategy};
use crate::probe::{Flavour, MARK, PortTool, Probe, clip};

/// Ports tried before giving up when each one turns out to be taken.
const PORT_ATTEMPTS: usize = 8;

/// Bytes of a reported line kept; longer lines are cut.
const LINE_KEPT: usize = 4096;

/// Bytes of unmarked output (stderr, or a terminal's merged output) kept
/// for error messages.
const CHATTER_KEPT: usize = 64 * 1024;

/// How long a listener whose transfer is over may take to go away before
/// it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The script's exit code when the temporary file cannot be created.
const EXIT_NO_TEMPORARY: i32 = 97;

/// What the listener does with the data connection.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Receive into `temp`, a fresh private file (a put).
    Receive { temp: PathBuf },
    /// Send `file` (a get).
    Send { file: PathBuf },
}

impl Job {
    /// The transfer this listener serves, as errors name it.
    fn operation(&self) -> &'static str {
        match self {
            Job::Receive { .. } => "put",
            Job::Send { .. } => "get",
        }
    }
}

/// What the script reports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// Listening; whether stdin is the lifeline.
    Ready { lifeline: bool },
    /// netcat ended before it listened, with this status.
    Failed(i32),
    /// Another socket listens on the port too; netcat was stopped.
    Shared,
    /// netcat ended after the transfer, with this status.
    Exit(i32),
    /// The file's size in bytes.
    Size(u64),
    /// The file's SHA-256, lower-case hex.
    Sha256(String),
}

impl Event {
    fn parse(line: &str) -> Option<Event> {
        let rest = line.strip_prefix(MARK)?.trim();
        let (word, value) = rest.split_once(' ').unwrap_or((rest, ""));
        let value = value.trim();
        match word {
            "ready" => match value {
                "pipe" => Some(Event::Ready { lifeline: true }),
                "none" => Some(Event::Ready { lifeline: false }),
                _ => None,
            },
            "failed" => value.parse().ok().map(Event::Failed),
            "shared" => Some(Event::Shared),
            "exit" => value.parse().ok().map(Event::Exit),
            "size" => value.parse().ok().map(Event::Size),
            "sha256" => sha256_in(value).map(Event::Sha256),
            _ => None,
        }
    }
}

/// The SHA-256 in a line of `sha256sum` (`HEX  -`) or `openssl dgst`
/// (`SHA2-256(stdin)= HEX`, `(stdin)= HEX`).
fn sha256_in(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == '=')
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// The shell test that succeeds once netcat (pid `$n`) listens on `port`
/// (`$p`); `$i` counts the polls so far. The listening socket must be
/// netcat's own: a port that another transfer's listener took in the
/// meantime must not pass for ours, or its data would go to the wrong file.
fn listening_check(probe: &Probe, options: &NcOptions, port: u16) -> String {
    if options.listener_check == Strategy::Custom {
        let command = options.listener_cmd.as_deref().unwrap_or("false").replace("{port}", &port.to_string());
        return format!("{{ {command}; }} >/dev/null 2>&1");
    }
    match probe.ports {
        PortTool::Ss => "ss -Hltnp 2>/dev/null | grep \":$p[^0-9]\" | grep -q \"pid=$n,\"".to_string(),
        PortTool::Netstat => "netstat -ltnp 2>/dev/null | grep \":$p[^0-9]\" | grep -q \" $n/\"".to_string(),
        // The listening line's inode must be one of netcat's sockets.
        PortTool::ProcNet => format!(
            "( l=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep ':{port:04X} [0-9A-F]*:0000 0A'); \
             [ -n \"$l\" ] && for k in $(ls -l /proc/$n/fd 2>/dev/null | sed -n 's/.*socket:\\[\\([0-9]*\\)\\].*/\\1/p'); \
             do case \"$l\" in *\" $k \"*) exit 0;; esac; done; exit 1 )"
        ),
        // Nothing shows listening ports: netcat alive for 0.2 s has bound.
        PortTool::Probe => "[ $i -ge 4 ]".to_string(),
    }
}

/// The shell test that succeeds when something besides netcat (pid `$n`)
/// listens on `port` too. OpenBSD's netcat binds with `SO_REUSEPORT`, so
/// two of them (two transfers that picked the same port at once) both
/// listen, and the kernel would hand our data connection to either.
fn others_check(probe: &Probe, options: &NcOptions, port: u16) -> String {
    if options.listener_check == Strategy::Custom {
        return "false".to_string();
    }
    match probe.ports {
        PortTool::Ss => "ss -Hltnp 2>/dev/null | grep \":$p[^0-9]\" | grep -qv \"pid=$n,\"".to_string(),
        PortTool::Netstat => "netstat -ltnp 2>/dev/null | grep \":$p[^0-9]\" | grep -qv \" $n/\"".to_string(),
        // More listening lines for the port than netcat has sockets among them.
        PortTool::ProcNet => format!(
            "( l=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep ':{port:04X} [0-9A-F]*:0000 0A'); \
             t=$(printf '%s\\n' \"$l\" | grep -c .); o=0; \
             for k in $(ls -l /proc/$n/fd 2>/dev/null | sed -n 's/.*socket:\\[\\([0-9]*\\)\\].*/\\1/p'); \
             do case \"$l\" in *\" $k \"*) o=$((o+1));; esac; done; [ \"$t\" -gt \"$o\" ] )"
        ),
        PortTool::Probe => "false".to_string(),
    }
}

/// The shell test that succeeds while a connection to `port` is up: the
/// watchdog spares a listener whose transfer is under way (a console has no
/// lifeline to disarm it through).
fn connected_check(probe: &Probe, port: u16) -> String {
    match probe.ports {
        PortTool::Ss => "ss -Htn state established 2>/dev/null | grep -q \":$p[^0-9]\"".to_string(),
        PortTool::Netstat => "netstat -tn 2>/dev/null | grep \":$p[^0-9]\" | grep -q ESTABLISHED".to_string(),
        PortTool::ProcNet => {
            format!("grep -q ':{port:04X} [0-9A-F]*:[0-9A-F]* 01' /proc/net/tcp /proc/net/tcp6 2>/dev/null")
        }
        PortTool::Probe => "false".to_string(),
    }
}

/// netcat's arguments to listen on `$p`, bound to `bind` where the flavour
/// can bind an address (busybox's cannot: it listens on every address).
fn listen_words(flavour: Flavour, bind: Option<IpAddr>) -> String {
    match (flavour, bind) {
        (Flavour::OpenBsd, Some(addr)) => format!("-l -s {addr} -p $p"),
        (Flavour::Traditional, Some(addr)) => format!("-l -p $p -s {addr}"),
        (Flavour::Ncat, Some(addr)) => format!("-l {addr} $p"),
        _ => "-l -p $p".to_string(),
    }
}

/// The listener script (see the module's documentation), one line long so
/// that a console runs it as well.
fn script(probe: &Probe, options: &NcOptions, job: &Job, port: u16, bind: Option<IpAddr>) -> String {
    let seconds = options.listener_timeout().as_secs_f64().ceil().max(1.0) as u64;
    let (setup, redirect, cleanup) = match job {
        Job::Receive { temp } => (
            format!("t={}; umask 077; set -C; : > \"$t\" || exit {EXIT_NO_TEMPORARY}; set +C; ", word(temp)),
            "</dev/null >>\"$t\"",
            "rm -f \"$t\"; ",
        ),
        Job::Send { file } => (format!("t={}; ", word(file)), "<\"$t\" >/dev/null", ""),
    };
    let check = listening_check(probe, options, port);
    // fd 3 keeps the script's stdin: a background job's stdin is /dev/null.
    let mut script = format!("exec 3<&0; l=; {setup}");
    let listen = listen_words(probe.flavour, bind);
    script.push_str(&format!("p={port}; {} {listen} {redirect} & n=$!; ", probe.nc));
    let connected = connected_check(probe, port);
    script.push_str(&format!(
        "( trap 'kill $z 2>/dev/null; exit 0' TERM; sleep {seconds} & z=$!; wait $z; \
         {connected} || kill $n 2>/dev/null ) >/dev/null 2>&1 & w=$!; "
    ));
    let others = others_check(probe, options, port);
    script.push_str(&format!(
        "i=0; while :; do if ! kill -0 $n 2>/dev/null; then wait $n; s=$?; kill $w 2>/dev/null; {cleanup}\
         echo \"{MARK} failed $s\"; exit 0; fi; if {check}; then if {others}; then kill $n 2>/dev/null; \
         wait $n; kill $w 2>/dev/null; {cleanup}echo \"{MARK} shared\"; exit 0; fi; break; fi; i=$((i+1)); \
         sleep 0.05 2>/dev/null || sleep 1; done; "
    ));
    // The lifeline: a reader of stdin in the background. The word `go`
    // disarms the watchdog; the end of stdin, before or after it, kills
    // netcat. Its output goes nowhere, so the script's own end is seen.
    script.push_str(&format!(
        "if [ -p /dev/stdin ] || [ -S /dev/stdin ]; then echo \"{MARK} ready pipe\"; \
         ( if read g && [ \"$g\" = go ]; then kill $w; if read v && [ \"$v\" = keep ]; then exit 0; fi; fi; \
         kill $n; {cleanup}) <&3 >/dev/null 2>&1 & l=$!; else echo \"{MARK} ready none\"; fi; "
    ));
    // A file being sent is hashed while netcat sends it, on another core
    // (reading it twice costs nothing more than the page cache); a file
    // being received can only be hashed once it is complete.
    let (early_hash, late_hash) = match (probe.hasher, job) {
        (Some(hasher), Job::Send { .. }) => {
            (format!("( echo \"{MARK} sha256 $({hasher} <\"$t\")\" ) & h=$!; "), "; wait $h".to_string())
        }
        (Some(hasher), Job::Receive { .. }) => (String::new(), format!("; echo \"{MARK} sha256 $({hasher} <\"$t\")\"")),
        (None, _) => (String::new(), String::new()),
    };
    script.push_str(&format!(
        "h=; {early_hash}wait $n; s=$?; kill $w 2>/dev/null; echo \"{MARK} exit $s\"; \
         if [ $s = 0 ]; then echo \"{MARK} size $(wc -c <\"$t\")\"{late_hash}; \
         else [ -z \"$h\" ] || kill $h 2>/dev/null"
    ));
    // The verdict: the lifeline keeps or removes the file, then the script ends.
    script.push_str("; fi; [ -z \"$l\" ] || wait $l");
    script
}

/// Ports this process's transfers hold, so two of them never pick the same
/// one (on one host or several: a port is a port of this machine too, when
/// hosts share it through `local` or loopback). Transfers of other
/// processes are told apart by the listener check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reserved(&'static Mutex<HashSet<u16>>);

impl Default for Reserved {
    fn default() -> Self {
        static HELD: std::sync::OnceLock<Mutex<HashSet<u16>>> = std::sync::OnceLock::new();
        Reserved(HELD.get_or_init(|| Mutex::new(HashSet::new())))
    }
}

/// A port held in [`Reserved`] until dropped.
struct Hold {
    reserved: Reserved,
    port: u16,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.reserved.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.port);
    }
}

impl Reserved {
    /// Holds the first port from `from` that is neither in `used` nor held.
    fn hold_first(&self, from: u16, used: &HashSet<u16>) -> Option<Hold> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let port = (from..=u16::MAX).find(|p| !used.contains(p) && !held.contains(p))?;
        held.insert(port);
        Some(Hold { reserved: *self, port })
    }
}

/// The ports in use on the host, as `ss -ltn`, `netstat -ltn` or
/// `/proc/net/tcp` show them. Over-inclusive is harmless: a port skipped
/// for nothing costs nothing.
fn listening_ports(tool: PortTool, text: &str) -> HashSet<u16> {
    let mut ports = HashSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match tool {
            PortTool::ProcNet => {
                if fields.get(3) == Some(&"0A")
                    && let Some(port) = fields.get(1).and_then(|a| a.rsplit(':').next())
                    && let Ok(port) = u16::from_str_radix(port, 16)
                {
                    ports.insert(port);
                }
            }
            _ => {
                for field in fields {
                    if let Some((_, port)) = field.rsplit_once(':')
                        && let Ok(port) = port.parse()
                    {
                        ports.insert(port);
                    }
                }
            }
        }
    }
    ports
}

/// Where the port search starts, and the ports known to be taken.
async fn port_survey(inner: &Arc<dyn Transport>, probe: &Probe, options: &NcOptions) -> Result<(u16, HashSet<u16>)> {
    let limit = options.listener_timeout();
    if options.port_strategy == Strategy::Custom {
        let line = options.port_cmd.as_deref().unwrap_or("false");
        let output = inner.exec(&Command::shell(line).timeout(limit).check(true)).await.map_err(|e| {
            Error::new(e.kind(), "nc").with_context(format!("nc_options.port_cmd `{line}` failed: {e}"))
        })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let port = text.split_whitespace().next().and_then(|w| w.parse::<u16>().ok()).filter(|p| *p > 0);
        return match port {
            Some(port) => Ok((port, HashSet::new())),
            None => Err(Error::new(ErrorKind::InvalidConfig, "nc")
                .with_context(format!("nc_options.port_cmd `{line}` printed no port: {:?}", clip(&text)))),
        };
    }
    let listing = match probe.ports {
        PortTool::Ss => "ss -ltn",
        PortTool::Netstat => "netstat -ltn",
        PortTool::ProcNet => "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true",
        PortTool::Probe => return Ok((options.port, HashSet::new())),
    };
    let output = inner.exec(&Command::shell(listing).env("LC_ALL", "C").timeout(limit).check(true)).await?;
    Ok((options.port, listening_ports(probe.ports, &String::from_utf8_lossy(&output.stdout))))
}

/// A running listener script.
pub(crate) struct Listener {
    process: Option<Process>,
    stdin: Option<BoxWriter>,
    events: mpsc::Receiver<Event>,
    chatter: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    lifeline: bool,
    expects_sha256: bool,
    hold: Hold,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("port", &self.hold.port).finish_non_exhaustive()
    }
}

/// What the script reported once netcat ended.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub status: Option<i32>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

/// Reads `pipe` line by line: marked lines become events, the rest is kept
/// as chatter for error messages.
fn read_lines(pipe: BoxReader, events: Option<mpsc::Sender<Event>>, chatter: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            // Bounded: a line longer than LINE_KEPT is cut, the rest skipped.
            match (&mut reader).take(LINE_KEPT as u64).read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") && line.len() >= LINE_KEPT {
                let mut rest = Vec::new();
                let _ = (&mut reader).take(u64::MAX).read_until(b'\n', &mut rest).await;
            }
            let text = String::from_utf8_lossy(&line);
            match (Event::parse(text.trim_end()), &events) {
                (Some(event), Some(events)) => {
                    if events.send(event).await.is_err() {
                        break;
                    }
                }
                _ => {
                    let mut kept = chatter.lock().unwrap_or_else(|p| p.into_inner());
                    let room = CHATTER_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&line[..line.len().min(room)]);
                }
            }
        }
    })
}

/// True when netcat's complaint says the port is taken (every flavour
/// says "in use": "Address already in use", busybox's "Address in use").
fn port_taken(chatter: &str) -> bool {
    chatter.to_ascii_lowercase().contains("in use")
}

/// True when netcat could not bind the address it was given: the host is
/// reached at an address it does not hold (a NAT, a forwarded port).
fn address_unavailable(chatter: &str) -> bool {
    chatter.to_ascii_lowercase().contains("assign requested address")
}

/// How one attempt to start a listener ended, short of an error.
enum Attempt {
    Listening(Listener),
    /// The port was taken; try another.
    Taken(u16),
    /// The address could not be bound; try again on every address.
    Unbindable,
}

impl Listener {
    /// Starts a listener for `job` on a free port, trying the next port when
    /// one turns out to be taken.
    pub(crate) async fn start(
        inner: &Arc<dyn Transport>,
        probe: &Probe,
        options: &NcOptions,
        reserved: &Reserved,
        job: &Job,
        bind: Option<IpAddr>,
        shown: &Path,
    ) -> Result<Listener> {
        let (mut from, mut used) = port_survey(inner, probe, options).await?;
        let mut taken = Vec::new();
        let mut bind = bind;
        for _ in 0..PORT_ATTEMPTS {
            let Some(hold) = reserved.hold_first(from, &used) else { break };
            match Listener::start_on(inner, probe, options, job, hold, bind, shown).await? {
                Attempt::Listening(listener) => return Ok(listener),
                Attempt::Taken(port) => {
                    tracing::debug!(port, "port taken on the host; trying another");
                    taken.push(port);
                    used.insert(port);
                    from = port.saturating_add(1).max(1);
                }
                Attempt::Unbindable => {
                    tracing::debug!(?bind, "the host does not hold its address; listening on every address");
                    bind = None;
                }
            }
        }
        Err(Error::new(ErrorKind::AlreadyExists, "nc")
            .with_context(format!("{}: no free port for a listener (taken: {taken:?})", shown.display())))
    }

    /// One attempt on the port `hold` holds.
    async fn start_on(
        inner: &Arc<dyn Transport>,
        probe: &Probe,
        options: &NcOptions,
        job: &Job,
        hold: Hold,
        bind: Option<IpAddr>,
        shown: &Path,
    ) -> Result<Attempt> {
        let port = hold.port;
        let script = script(probe, options, job, port, bind);
        let command = Command::shell(&script).env("LC_ALL", "C");
        let mut process = inner.spawn(&command).await?;
        let (send, events) = mpsc::channel(8);
        let chatter = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(stdout) = process.stdout.take() {
            readers.push(read_lines(stdout, Some(send), chatter.clone()));
        }
        if let Some(stderr) = process.stderr.take() {
            readers.push(read_lines(stderr, None, chatter.clone()));
        }
        let stdin = process.stdin.take();
        let mut listener = Listener {
            process: Some(process),
            stdin,
            events,
            chatter,
            readers,
            lifeline: false,
            expects_sha256: probe.hasher.is_some(),
            hold,
        };
        let limit = options.listener_timeout();
        match tokio::time::timeout(limit, listener.events.recv()).await {
            Ok(Some(Event::Ready { lifeline })) => {
                listener.lifeline = lifeline && listener.stdin.is_some();
                Ok(Attempt::Listening(listener))
            }
            Ok(Some(Event::Shared)) => Ok(Attempt::Taken(port)),
            Ok(Some(Event::Failed(status))) => {
                let chatter = listener.chatter_text().await;
                if port_taken(&chatter) {
                    return Ok(Attempt::Taken(port));
                }
                if bind.is_some() && address_unavailable(&chatter) {
                    return Ok(Attempt::Unbindable);
                }
                Err(Error::new(ErrorKind::CommandFailed, "nc").with_context(format!(
                    "{}: `{} -l -p {port}` exited with status {status} before it listened: {}",
                    shown.display(),
                    options.exec_name,
                    clip(chatter.trim())
                )))
            }
            Ok(Some(other)) => Err(Error::new(ErrorKind::Protocol, "nc")
                .with_context(format!("{}: the listener reported {other:?} before it was ready", shown.display()))),
            Ok(None) => {
                // The script ended without a word: it could not start (the
                // temporary file, a shell error). Its status and stderr say why.
                let status = listener.wait().await;
                let chatter = listener.chatter_text().await;
                let output = Output { status, stdout: Vec::new(), stderr: chatter.into_bytes() };
                Err(failed(job.operation(), shown.display(), output))
            }
            Err(_) => Err(Error::new(ErrorKind::Timeout, "nc").with_context(format!(
                "{}: port {port} did not listen within {:.1} s (listener_timeout)",
                shown.display(),
                limit.as_secs_f64()
            ))),
        }
    }

    /// The port listened on.
    pub(crate) fn port(&self) -> u16 {
        self.hold.port
    }

    /// The data connection is up: disarms the watchdog through the
    /// lifeline. A terminal has none: there the watchdog, when its time
    /// comes, spares a listener whose connection is up.
    pub(crate) async fn arm(&mut self) -> Result<()> {
        if self.lifeline
            && let Some(stdin) = self.stdin.as_mut()
        {
            stdin.write_all(b"go\n").await.map_err(|e| Error::io("nc", e).with_context("telling the listener"))?;
            stdin.flush().await.map_err(|e| Error::io("nc", e).with_context("telling the listener"))?;
        }
        Ok(())
    }

    /// Waits, `limit` per step, for netcat's exit and the script's report:
    /// the status, then (after a success) the size and the SHA-256.
    pub(crate) async fn finish(&mut self, limit: Duration) -> Result<Outcome> {
        let mut outcome = Outcome::default();
        loop {
            let complete = match outcome.status {
                Some(0) => outcome.size.is_some() && (!self.expects_sha256 || outcome.sha256.is_some()),
                Some(_) => true,
                None => false,
            };
            if complete {
                return Ok(outcome);
            }
            match tokio::time::timeout(limit, self.events.recv()).await {
                Ok(Some(Event::Exit(status))) => outcome.status = Some(status),
                Ok(Some(Event::Size(size))) => outcome.size = Some(size),
                Ok(Some(Event::Sha256(digest))) => outcome.sha256 = Some(digest),
                Ok(Some(_)) => {}
                // The script ended early: what it said is all there is.
                Ok(None) => return Ok(outcome),
                Err(_) => {
                    return Err(Error::new(ErrorKind::Timeout, "nc").with_context(format!(
                        "the listener on port {} did not finish within {:.1} s",
                        self.port(),
                        limit.as_secs_f64()
                    )));
                }
            }
        }
    }

    /// The transfer checked out: tells the script to keep the file it
    /// received, and waits for it to end. Without this (an error, a drop),
    /// the script removes the file itself, even if this process dies.
    pub(crate) async fn keep(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"keep\n").await;
            let _ = stdin.flush().await;
        }
        self.wait().await;
    }

    /// What netcat and the script said besides their reports. A failure's
    /// verdict: the script is told nothing more (its stdin ends) and
    /// cleans up, and its output is read to the end.
    pub(crate) async fn chatter_text(&mut self) -> String {
        self.stdin.take();
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(EXIT_GRACE, reader).await;
        }
        String::from_utf8_lossy(&self.chatter.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    async fn wait(&mut self) -> ExitStatus {
        let Some(mut process) = self.process.take() else { return ExitStatus::Code(-1) };
        match tokio::time::timeout(EXIT_GRACE, process.wait()).await {
            Ok(Ok(status)) => status,
            _ => {
                let _ = process.kill().await;
                ExitStatus::Code(-1)
            }
        }
    }
}

impl Drop for Listener {
    /// A listener given up on: closing stdin makes the script kill netcat;
    /// the process is reaped (or killed) in the background.
    fn drop(&mut self) {
        self.stdin.take();
        for reader in self.readers.drain(..) {
            reader.abort();
        }
        if let Some(mut process) = self.process.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let lifeline = self.lifeline;
            runtime.spawn(async move {
                if lifeline && tokio::time::timeout(EXIT_GRACE, process.wait()).await.is_ok() {
                    return;
                }
                let _ = process.kill().await;
                let _ = tokio::time::timeout(EXIT_GRACE, process.wait()).await;
            });
        }
    }
}

/// Reads what a listener sends before the data flows, or after the put's
/// data: netcat receiving a file sends nothing, so any byte means the
/// connection reached something else.
pub(crate) async fn unexpected_answer(stream: &mut tether_core::BoxStream, limit: Duration) -> Result<usize> {
    let mut buffer = [0u8; 64];
    let mut total = 0;
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(total),
            Ok(Ok(n)) => {
                total += n;
                if total >= buffer.len() {
                    return Ok(total);
                }
            }
            Err(_) => {
                return Err(Error::new(ErrorKind::Timeout, "nc").with_context(format!(
                    "the listener did not close the data connection within {:.1} s",
                    limit.as_secs_f64()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_junk_is_not_an_event() {
        assert_eq!(Event::parse("tether-nc: ready pipe"), Some(Event::Ready { lifeline: true }));
        assert_eq!(Event::parse("tether-nc: ready none"), Some(Event::Ready { lifeline: false }));
        assert_eq!(Event::parse("tether-nc: exit 143"), Some(Event::Exit(143)));
        assert_eq!(Event::parse("tether-nc: size       42"), Some(Event::Size(42)));
        let hex = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14";
        for line in [format!("{hex}  -"), format!("SHA2-256(stdin)= {hex}"), format!("(stdin)= {}", hex.to_uppercase())]
        {
            assert_eq!(Event::parse(&format!("tether-nc: sha256 {line}")), Some(Event::Sha256(hex.into())), "{line}");
        }
        for junk in ["tether-nc: sha256 ", "tether-nc: size x", "nc: Address already in use", "tether-nc: ready"] {
            assert_eq!(Event::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn ports_are_read_from_each_tool() {
        let ss = "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n\
                  LISTEN 0      128          0.0.0.0:22        0.0.0.0:*\n\
                  LISTEN 0      1               [::]:20001        [::]:*\n";
        let ports = listening_ports(PortTool::Ss, ss);
        assert!(ports.contains(&22) && ports.contains(&20001), "{ports:?}");
        let proc = "  sl  local_address rem_address   st\n\
                    0: 00000000:4E20 00000000:0000 0A 00000000:00000000\n\
                    1: 0100007F:4E21 0100007F:9C40 01 00000000:00000000\n";
        assert_eq!(listening_ports(PortTool::ProcNet, proc), HashSet::from([0x4E20]));
    }

    #[test]
    fn held_ports_are_skipped() {
        let reserved = Reserved::default();
        let first = reserved.hold_first(20000, &HashSet::from([20000])).unwrap();
        assert_eq!(first.port, 20001);
        assert_eq!(reserved.hold_first(20000, &HashSet::from([20000])).unwrap().port, 20002);
        drop(first);
        assert_eq!(reserved.hold_first(20001, &HashSet::new()).unwrap().port, 20001);
        assert!(reserved.hold_first(u16::MAX, &HashSet::from([u16::MAX])).is_none());
    }

    /// Each flavour that can bind an address is told the host's, in its
    /// own words, and really listens there alone; one the host does not
    /// hold fails with the words that send the transport back to every
    /// address.
    #[test]
    fn listeners_bind_the_hosts_address() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        for (flavour, nc) in
            [(Flavour::OpenBsd, "nc.openbsd"), (Flavour::Traditional, "nc.traditional"), (Flavour::Ncat, "ncat")]
        {
            let port = free_port();
            let listen = listen_words(flavour, Some(loopback));
            let run = format!("p={port}; {nc} {listen} </dev/null >/dev/null & n=$!; sleep 0.3; ss -Hltn; kill $n");
            let out = std::process::Command::new("sh").args(["-c", &run]).output().unwrap();
            let listening: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    l.split_whitespace().nth(3).filter(|a| a.ends_with(&format!(":{port}"))).map(String::from)
                })
                .collect();
            assert_eq!(listening, [format!("127.0.0.1:{port}")], "{nc} {listen}");

            let elsewhere = listen_words(flavour, Some("192.0.2.1".parse().unwrap()));
            let run = format!("p={port}; {nc} {elsewhere} </dev/null >/dev/null");
            let out = std::process::Command::new("sh").args(["-c", &run]).output().unwrap();
            assert!(address_unavailable(&String::from_utf8_lossy(&out.stderr)), "{nc}: {out:?}");
        }
        assert_eq!(listen_words(Flavour::Busybox, Some(loopback)), "-l -p $p");
    }

    #[test]
    fn taken_ports_in_every_flavours_words() {
        for message in [
            "nc: Address already in use",
            "Can't grab 0.0.0.0:20000 with bind : Address already in use",
            "Ncat: bind to 0.0.0.0:20000: Address already in use. QUITTING.",
            "nc: bind: Address in use",
        ] {
            assert!(port_taken(message), "{message}");
        }
        assert!(!port_taken("nc: Permission denied"));
    }

    #[test]
    fn the_script_is_one_line_and_quotes_the_file() {
        let probe =
            Probe { flavour: Flavour::OpenBsd, ports: PortTool::Ss, hasher: Some("sha256sum"), nc: "nc".into() };
        let job = Job::Receive { temp: PathBuf::from("/tmp/it's\nnew") };
        let script = script(&probe, &NcOptions::default(), &job, 20000, None);
        assert!(!script.contains("\n\n"), "{script}");
        assert!(script.contains("nc -l -p $p"), "{script}");
        assert!(script.contains("sleep 30 "), "{script}");
        assert!(script.contains("umask 077; set -C"), "{script}");
    }

    /// The listener script run by `sh` here, with OpenBSD's netcat.
    fn run_script(job: &Job, options: &NcOptions, ports: PortTool, stdin: std::process::Stdio) -> std::process::Child {
        run_script_on(free_port(), job, options, ports, stdin)
    }

    fn run_script_on(
        port: u16,
        job: &Job,
        options: &NcOptions,
        ports: PortTool,
        stdin: std::process::Stdio,
    ) -> std::process::Child {
        let probe = Probe { flavour: Flavour::OpenBsd, ports, hasher: Some("sha256sum"), nc: "nc.openbsd".into() };
        std::process::Command::new("sh")
            .args(["-c", &script(&probe, options, job, port, None)])
            .stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh")
    }

    /// A put's verdict: `keep` keeps the received file; stdin ending
    /// without it (the local side died mid-transfer) kills netcat and
    /// removes the partial file, on the host, with nobody to ask.
    #[test]
    fn the_verdict_keeps_or_removes_the_received_file() {
        use std::io::{BufRead, Read, Write};
        for keep in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let temp = dir.path().join("incoming");
            let port = free_port();
            let job = Job::Receive { temp: temp.clone() };
            let mut child =
                run_script_on(port, &job, &NcOptions::default(), PortTool::Ss, std::process::Stdio::piped());
            let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert!(line.contains("ready") && line.trim_end().ends_with("pipe"), "{line}");
            let mut data = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"go\n").unwrap();
            data.write_all(b"partial").unwrap();
            if keep {
                data.shutdown(std::net::Shutdown::Write).unwrap();
                let mut reports = Vec::new();
                for _ in 0..3 {
                    let mut line = String::new();
                    stdout.read_line(&mut line).unwrap();
                    reports.push(line.trim().to_string());
                }
                assert_eq!(reports[..2], ["tether-nc: exit 0", "tether-nc: size 7"]);
                stdin.write_all(b"keep\n").unwrap();
                drop(stdin);
            } else {
                std::thread::sleep(Duration::from_millis(100));
                drop(stdin);
            }
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            child.wait().unwrap();
            if keep {
                assert_eq!(std::fs::read(&temp).unwrap(), b"partial");
            } else {
                assert_eq!(rest.trim(), "tether-nc: exit 143");
                assert!(!temp.exists(), "the partial file is still there");
            }
        }
    }

    /// OpenBSD's netcat binds with `SO_REUSEPORT`: a second one on the same
    /// port is seen by every tool, and a lone one is not taken for two.
    #[test]
    fn a_shared_port_is_seen() {
        for tool in [PortTool::Ss, PortTool::Netstat, PortTool::ProcNet] {
            let probe = Probe { flavour: Flavour::OpenBsd, ports: tool, hasher: None, nc: "nc.openbsd".into() };
            let port = free_port();
            let others = others_check(&probe, &NcOptions::default(), port);
            let script = format!(
                "p={port}; nc.openbsd -l -p $p </dev/null >/dev/null & n=$!; sleep 0.3; \
                 if {others}; then echo shared; else echo alone; fi; \
                 nc.openbsd -l -p $p </dev/null >/dev/null & m=$!; sleep 0.3; \
                 if {others}; then echo shared; else echo alone; fi; kill $n $m"
            );
            let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "alone\nshared\n", "{tool:?}: {others}");
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// The script's report lines but the digest (a file being sent is
    /// hashed alongside, and its line comes whenever the hash is done).
    fn lines_of(child: std::process::Child) -> (Vec<String>, Duration) {
        let started = std::time::Instant::now();
        let out = child.wait_with_output().unwrap();
        (without_digest(&String::from_utf8_lossy(&out.stdout)), started.elapsed())
    }

    fn without_digest(text: &str) -> Vec<String> {
        text.lines().filter(|l| !l.starts_with("tether-nc: sha256 ")).map(str::to_string).collect()
    }

    fn sent_file() -> (tempfile::TempDir, Job) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sent");
        std::fs::write(&file, b"data").unwrap();
        (dir, Job::Send { file })
    }

    /// No stdin pipe (a terminal): the watchdog ends a listener nobody
    /// connects to after `listener_timeout`.
    #[test]
    fn the_watchdog_ends_an_unconnected_listener() {
        let (_dir, job) = sent_file();
        let options = NcOptions { listener_timeout: 1.0, ..Default::default() };
        let child = run_script(&job, &options, PortTool::Ss, std::process::Stdio::null());
        let (lines, took) = lines_of(child);
        assert!(lines[0].starts_with("tether-nc: ready ") && lines[0].ends_with(" none"), "{lines:?}");
        assert_eq!(lines[1], "tether-nc: exit 143", "{lines:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    /// No lifeline either, but a connection is up when the watchdog's time
    /// comes: the listener is spared, and the transfer ends normally.
    #[test]
    fn the_watchdog_spares_a_connected_listener() {
        use std::io::{BufRead, Read};
        let (_dir, job) = sent_file();
        let options = NcOptions { listener_timeout: 1.0, ..Default::default() };
        let port = free_port();
        let mut child = run_script_on(port, &job, &options, PortTool::Ss, std::process::Stdio::null());
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "tether-nc: ready none");
        let mut data = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        let mut got = [0u8; 4];
        data.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"data");
        drop(data);
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        child.wait().unwrap();
        assert_eq!(without_digest(&rest), ["tether-nc: exit 0", "tether-nc: size 4"], "{rest}");
    }

    /// Each SHA-256 tool the probe may pick reports a digest the script's
    /// reader understands, and the right one.
    #[test]
    fn every_hasher_reports_the_digest() {
        use std::io::{BufRead, Read};
        let (_dir, job) = sent_file();
        let want = "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7";
        for hasher in ["openssl dgst -sha256", "sha256sum", "busybox sha256sum"] {
            let probe =
                Probe { flavour: Flavour::OpenBsd, ports: PortTool::Ss, hasher: Some(hasher), nc: "nc.openbsd".into() };
            let port = free_port();
            let mut child = std::process::Command::new("sh")
                .args(["-c", &script(&probe, &NcOptions::default(), &job, port, None)])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut ready = String::new();
            stdout.read_line(&mut ready).unwrap();
            let mut data = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut got = [0u8; 4];
            data.read_exact(&mut got).unwrap();
            drop(data);
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            child.wait().unwrap();
            let digest = rest.lines().filter_map(Event::parse).find_map(|e| match e {
                Event::Sha256(digest) => Some(digest),
                _ => None,
            });
            assert_eq!(digest.as_deref(), Some(want), "{hasher}: {rest}");
        }
    }

    /// With a stdin pipe, its end (the local side gone) kills netcat at
    /// once, long before the watchdog would.
    #[test]
    fn the_lifeline_kills_netcat_when_stdin_ends() {
        use std::io::BufRead;
        let (_dir, job) = sent_file();
        let options = NcOptions { listener_timeout: 60.0, ..Default::default() };
        let mut child = run_script(&job, &options, PortTool::Ss, std::process::Stdio::piped());
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert!(ready.starts_with("tether-nc: ready ") && ready.trim_end().ends_with(" pipe"), "{ready}");
        let started = std::time::Instant::now();
        drop(child.stdin.take());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        child.wait().unwrap();
        assert_eq!(without_digest(&rest), ["tether-nc: exit 143"], "{rest}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    /// Every way of seeing the port accepts netcat's own listener, and none
    /// takes another process's listener on the port for it.
    #[test]
    fn each_check_knows_netcats_own_socket() {
        for tool in [PortTool::Ss, PortTool::Netstat, PortTool::ProcNet] {
            let probe = Probe { flavour: Flavour::OpenBsd, ports: tool, hasher: None, nc: "nc.openbsd".into() };
            let port = free_port();
            let check = listening_check(&probe, &NcOptions::default(), port);
            let ours = format!(
                "p={port}; i=0; nc.openbsd -l -p $p </dev/null >/dev/null & n=$!; sleep 0.3; \
                 if {check}; then echo yes; else echo no; fi; kill $n"
            );
            let out = std::process::Command::new("sh").args(["-c", &ours]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes", "{tool:?}: {check}");

            let foreign = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
            let theirs =
                format!("p={port}; i=0; sleep 30 & n=$!; if {check}; then echo yes; else echo no; fi; kill $n");
            let out = std::process::Command::new("sh").args(["-c", &theirs]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no", "{tool:?}: {check}");
            drop(foreign);
        }
    }
}
