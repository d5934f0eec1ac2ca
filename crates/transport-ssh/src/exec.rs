//! Commands on session channels of the shared SSH connection.
//!
//! Each command is one channel: an `exec` request with the command's wrapped
//! shell line (`cd`, `umask` and `env` prefixes), its stdin, stdout and stderr
//! as bounded in-memory pipes, and the exit status or signal when it ends.
//! Channels are bounded by `max_sessions`; an open the server refuses for
//! lack of session slots is retried, since sshd frees a slot only some time
//! after the client sees the channel close.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use russh::ChannelMsg;
use russh::client::Msg;
use std::sync::atomic::Ordering;

use tether_core::{
    BoxReader, BoxWriter, Command, Error, ErrorKind, ExitStatus, Process, ProcessControl, Pty, Result, Transport, quote,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use crate::connect::SshSession;
use crate::error::{ssh, timed};

/// Bytes of stdin buffered between the caller and the channel.
const PIPE_BUFFER: usize = 256 << 10;

/// Bytes of stdout (and of stderr) buffered between the channel and the
/// caller; the buffer only grows this far when the caller falls behind.
/// russh widens a channel's window as data arrives, not as it is read, so
/// the only backpressure is to stop taking the channel's messages, which
/// holds up every channel of the connection. This buffer is how much a
/// caller can leave unread before that happens.
const OUTPUT_BUFFER: usize = 8 << 20;

/// First pause before retrying a channel open the server refused. sshd frees
/// a session slot when it garbage-collects closed channels, at the end of
/// the loop iteration that read our close: an open that arrived in the same
/// read is refused, and one a moment later is not. So the first retry comes
/// almost at once, and only repeated refusals back off (figures in
/// BENCHMARKS.md, "the burst").
const RETRY_START: Duration = Duration::from_micros(200);

/// Longest pause between retries.
const RETRY_MAX: Duration = Duration::from_millis(50);

type WriteHalf = russh::ChannelWriteHalf<Msg>;

/// A session channel with its `max_sessions` permit.
type OpenChannel = (russh::Channel<Msg>, OwnedSemaphorePermit);

/// One session channel opened ahead of the next command, so that a command
/// on a warm connection waits for one round trip (the exec request) instead
/// of two (channel open, then exec); BENCHMARKS.md has the A/B figures.
///
/// The spare holds one of the `max_sessions` slots, so it must never make a
/// command wait: it is only opened in a slot that is free at that moment,
/// and a command waiting for a slot takes the spare as soon as it is ready.
#[derive(Default)]
pub(crate) struct SpareChannel {
    channel: std::sync::Mutex<Option<OpenChannel>>,
    /// Set while a refill is under way, so only one runs.
    refilling: std::sync::atomic::AtomicBool,
    /// Wakes a command waiting for a slot when a spare is stored.
    ready: tokio::sync::Notify,
}

impl SpareChannel {
    fn take(&self) -> Option<OpenChannel> {
        self.channel.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Drops the spare (and so frees its slot).
    pub(crate) fn clear(&self) {
        drop(self.take());
    }
}

type ReadHalf = russh::ChannelReadHalf;

impl SshSession {
    /// A session channel for a command: the spare, a new channel in a free
    /// slot, or whichever of the two comes first; then a new spare is opened
    /// in the background if a slot is free.
    async fn command_channel(&self, limit: Duration) -> Result<OpenChannel> {
        let closed = || Error::new(ErrorKind::ConnectionLost, "exec").with_context(format!("{}: closed", self.target));
        let found = timed("exec", "waiting for a free session slot", limit, async {
            loop {
                // Registered before looking, so a spare stored in between still wakes us.
                let stored = self.spare.ready.notified();
                tokio::pin!(stored);
                stored.as_mut().enable();
                if let Some(channel) = self.spare.take() {
                    return Ok(Ok(channel));
                }
                tokio::select! {
                    permit = self.sessions.clone().acquire_owned() => return permit.map(Err).map_err(|_| closed()),
                    () = &mut stored => {}
                }
            }
        })
        .await?;
        self.refill_spare(limit);
        match found {
            Ok(spare) => Ok(spare),
            Err(permit) => self.open_with_permit(permit, limit).await,
        }
    }

    fn refill_spare(&self, limit: Duration) {
        if self.spare.refilling.swap(true, Ordering::SeqCst) {
            return;
        }
        // Only a slot free right now: never queue ahead of a command.
        let (Some(session), Ok(permit)) = (self.me.upgrade(), self.sessions.clone().try_acquire_owned()) else {
            self.spare.refilling.store(false, Ordering::SeqCst);
            return;
        };
        tokio::spawn(async move {
            let opened = session.open_with_permit(permit, limit).await;
            if let Ok(channel) = opened
                && session.is_alive()
                && let Ok(mut slot) = session.spare.channel.lock()
            {
                *slot = Some(channel);
            }
            session.spare.refilling.store(false, Ordering::SeqCst);
            session.spare.ready.notify_one();
        });
    }

    /// Opens a session channel within the `max_sessions` bound, retrying
    /// refusals (sshd's `MaxSessions` lags behind channel closes) until
    /// `connect_timeout` runs out.
    pub(crate) async fn open_session(&self, limit: Duration) -> Result<OpenChannel> {
        let permit = timed("exec", "waiting for a free session slot", limit, async {
            self.sessions.clone().acquire_owned().await.map_err(|_| {
                Error::new(ErrorKind::ConnectionLost, "exec").with_context(format!("{}: closed", self.target))
            })
        })
        .await?;
        self.open_with_permit(permit, limit).await
    }

    /// Opens a session channel in the slot `permit` holds.
    /// A session channel outside the `max_sessions` count, for a moment's
    /// work while every slot may be taken.
    async fn unmetered_channel(&self, limit: Duration) -> Result<russh::Channel<Msg>> {
        match tokio::time::timeout(limit, self.handle.channel_open_session()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(ssh("exec", e)),
            Err(_) => Err(Error::new(ErrorKind::Timeout, "exec")
                .with_context(format!("{}: no session channel within {limit:?}", self.target))),
        }
    }

    async fn open_with_permit(&self, permit: OwnedSemaphorePermit, limit: Duration) -> Result<OpenChannel> {
        self.ensure_open("exec")?;
        let deadline = tokio::time::Instant::now() + limit;
        let mut pause = RETRY_START;
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.handle.channel_open_session()).await;
            match attempt {
                Ok(Ok(channel)) => return Ok((channel, permit)),
                Ok(Err(russh::Error::ChannelOpenFailure(
                    // OpenSSH answers an open beyond `MaxSessions` with "connect
                    // failed", which means nothing else for a session channel.
                    russh::ChannelOpenFailure::ConnectFailed
                    | russh::ChannelOpenFailure::AdministrativelyProhibited
                    | russh::ChannelOpenFailure::ResourceShortage,
                ))) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(target = %self.target, ?pause, "session channel refused; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Ok(Err(e)) => {
                    let why = e.to_string();
                    return Err(
                        ssh("exec", e).with_context(format!("{}: opening a session channel: {why}", self.target))
                    );
                }
                Err(_) => {
                    return Err(Error::new(ErrorKind::Timeout, "exec")
                        .with_context(format!("{}: no session channel within {limit:?}", self.target)));
                }
            }
        }
    }
}

/// What a session channel is asked to start.
enum Start<'a> {
    /// A command line, with its environment (sent as `env` requests when the
    /// server accepts them) and an optional terminal; `reapable` when
    /// `kill` may send the reaper after it (not for the reaper itself).
    Exec { command: &'a Command, pty: Option<&'a Pty>, reapable: bool },
    /// The login shell on a terminal.
    Shell { pty: &'a Pty },
}

#[async_trait]
impl Transport for SshSession {
    async fn spawn(&self, command: &Command) -> Result<Process> {
        command.validate()?;
        self.start(Start::Exec { command, pty: command.pty.as_ref(), reapable: true }).await
    }

    async fn shell(&self, pty: &Pty) -> Result<Process> {
        self.start(Start::Shell { pty }).await
    }
}

impl SshSession {
    /// Opens a channel, asks for a terminal and environment if wanted, starts
    /// the command or shell, and wires the channel to a [`Process`].
    async fn start(&self, what: Start<'_>) -> Result<Process> {
        self.ensure_open("exec")?;
        let limit = self.options.connect_timeout()?;
        let token = run_token();
        let (channel, permit) = match what {
            // The reaper takes no `max_sessions` slot: the command it ends
            // may hold the last one, and it lives for a moment only.
            Start::Exec { reapable: false, .. } => (self.unmetered_channel(KILL_GRACE).await?, None),
            _ => {
                let (channel, permit) = self.command_channel(limit).await?;
                (channel, Some(permit))
            }
        };
        let (mut reader, writer) = channel.split();
        let writer = Arc::new(writer);
        // Replies to channel requests arrive in order, but output may come
        // before the last one: it is kept for the pump, not lost.
        let mut early = Vec::new();
        let pty = match &what {
            Start::Exec { pty, .. } => *pty,
            Start::Shell { pty } => Some(*pty),
        };
        timed("exec", "starting the command", limit, async {
            if let Some(pty) = pty {
                writer
                    .request_pty(true, &pty.term, pty.cols.into(), pty.rows.into(), 0, 0, &[])
                    .await
                    .map_err(|e| ssh("exec", e))?;
                self.reply(&mut reader, &mut early, "a terminal").await?;
            }
            match &what {
                Start::Exec { command, .. } => {
                    let line = self.command_line(command, &token, &writer, &mut reader, &mut early).await?;
                    // The reply is left to the pump: stdin and EOF go out
                    // without waiting a round trip for it (two through a hop).
                    writer.exec(true, line.as_bytes()).await.map_err(|e| ssh("exec", e))
                }
                Start::Shell { .. } => {
                    writer.request_shell(true).await.map_err(|e| ssh("exec", e))?;
                    self.reply(&mut reader, &mut early, "a shell").await
                }
            }
        })
        .await?;
        match &what {
            Start::Exec { command, .. } => tracing::debug!(target = %self.target, command = %command, "exec started"),
            Start::Shell { .. } => tracing::debug!(target = %self.target, "shell started"),
        }

        let (stdin_user, stdin_pump) = tokio::io::duplex(PIPE_BUFFER);
        let (stdout_pump, stdout_user) = tokio::io::duplex(OUTPUT_BUFFER);
        // A terminal merges stderr into its output.
        let (stderr_pump, stderr_user) = match pty {
            None => {
                let (pump, user) = tokio::io::duplex(OUTPUT_BUFFER);
                (Some(pump), Some(Box::pin(user) as BoxReader))
            }
            Some(_) => (None, None),
        };
        let (ended_tx, ended_rx) = watch::channel(false);
        tokio::spawn(feed_stdin(stdin_pump, writer.clone(), ended_rx));
        let (done_tx, done_rx) = oneshot::channel();
        let exec_reply_by = match what {
            Start::Exec { .. } => Some(tokio::time::Instant::now() + limit),
            Start::Shell { .. } => None,
        };
        let channel = ChannelPipes { reader, stdout: stdout_pump, stderr: stderr_pump, ended: ended_tx };
        let pump = tokio::spawn(pump_output(early, channel, exec_reply_by, permit, done_tx, self.target.clone()));
        let reaper = match what {
            Start::Exec { reapable: true, .. } => Some(Reaper { session: self.me.clone(), token }),
            _ => None,
        };
        let control = SshProcess {
            writer,
            pump,
            done: Some(done_rx),
            status: None,
            target: self.target.clone(),
            terminal: pty.is_some(),
            reaper,
        };
        Ok(Process::new(
            Some(Box::pin(stdin_user) as BoxWriter),
            Some(Box::pin(stdout_user) as BoxReader),
            stderr_user,
            Box::new(control),
        ))
    }

    /// Waits for the server's answer to the last channel request; a refusal
    /// is an error.
    async fn reply(&self, reader: &mut ReadHalf, early: &mut Vec<ChannelMsg>, what: &str) -> Result<()> {
        let gone = || {
            Error::new(ErrorKind::ConnectionLost, "exec")
                .with_context(format!("{}: channel closed before {what} started", self.target))
        };
        if crate::channel::reply(reader, early, gone).await? {
            return Ok(());
        }
        Err(Error::new(ErrorKind::PermissionDenied, "exec")
            .with_context(format!("{}: the server refused to start {what}", self.target)))
    }

    /// The line sent in the `exec` request. The environment goes as `env`
    /// requests where the server accepts them (OpenSSH's `AcceptEnv`);
    /// once a server refuses one, this and later commands carry it as an
    /// `env` prefix instead. Another user or group means a `sudo` wrapper,
    /// and the environment then has to be inside it, since sudo resets it.
    async fn command_line(
        &self,
        command: &Command,
        token: &str,
        writer: &WriteHalf,
        reader: &mut ReadHalf,
        early: &mut Vec<ChannelMsg>,
    ) -> Result<String> {
        let switch = self.switch_prefix(command);
        if command.env.is_empty() || switch.is_some() || self.setenv_refused.load(Ordering::Relaxed) {
            let line = tagged(token, &command.wrapped_shell_line());
            return Ok(match switch {
                Some(prefix) => format!("{prefix} sh -c {}", quote(&line)),
                None => line,
            });
        }
        for (name, value) in &command.env {
            writer.set_env(true, name.as_str(), value.as_str()).await.map_err(|e| ssh("exec", e))?;
        }
        let mut refused = false;
        for _ in 0..command.env.len() {
            let gone = || {
                Error::new(ErrorKind::ConnectionLost, "exec")
                    .with_context(format!("{}: channel closed while setting the environment", self.target))
            };
            refused |= !crate::channel::reply(reader, early, gone).await?;
        }
        if refused {
            tracing::debug!(target = %self.target, "server refused env requests; using an env prefix from now on");
            self.setenv_refused.store(true, Ordering::Relaxed);
            return Ok(tagged(token, &command.wrapped_shell_line()));
        }
        let mut bare = command.clone();
        bare.env.clear();
        Ok(tagged(token, &bare.wrapped_shell_line()))
    }

    /// `sudo -n -u USER -g GROUP --` when the command asks for a user or
    /// group other than the login's own.
    fn switch_prefix(&self, command: &Command) -> Option<String> {
        let user = command.user.as_deref().filter(|user| *user != self.login);
        if user.is_none() && command.group.is_none() {
            return None;
        }
        // `-n`: a sudo that wants a password fails at once instead of waiting
        // for an answer nobody will type.
        let mut prefix = String::from("exec sudo -n");
        if let Some(user) = user {
            prefix.push_str(&format!(" -u {}", quote(user)));
        }
        if let Some(group) = &command.group {
            prefix.push_str(&format!(" -g {}", quote(group)));
        }
        prefix.push_str(" --");
        Some(prefix)
    }
}

/// Copies the caller's stdin into the channel in large chunks, then sends EOF
/// (also when the caller drops stdin without `shutdown`). It stops as soon
/// as the command has ended (`ended`): a server stops widening the window
/// of a finished command's stdin, so a caller still writing would wait
/// forever; dropping `from` makes its next write a broken pipe instead.
async fn feed_stdin(mut from: DuplexStream, to: Arc<WriteHalf>, mut ended: watch::Receiver<bool>) {
    let feed = async {
        let mut buf = vec![0u8; PIPE_BUFFER];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.data_bytes(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        // The channel is gone.
                        return;
                    }
                }
            }
        }
        let _ = to.eof().await;
    };
    tokio::select! {
        () = feed => {}
        _ = ended.wait_for(|ended| *ended) => {}
    }
}

/// How a channel ended, as the pump saw it.
type Ending = std::result::Result<ExitStatus, Error>;

/// A channel's read half and the pipes its output goes to.
struct ChannelPipes {
    reader: russh::ChannelReadHalf,
    /// Told once the command has ended, so its stdin stops being fed.
    ended: watch::Sender<bool>,
    stdout: DuplexStream,
    stderr: Option<DuplexStream>,
}

/// Routes the channel's messages into the stdout and stderr pipes until the
/// channel closes, then reports the exit status. Holds the session permit
/// until then. With `exec_reply_by`, the server's answer to the `exec`
/// request is still due by then: a refusal or no answer ends the command
/// with an error.
async fn pump_output(
    early: Vec<ChannelMsg>,
    channel: ChannelPipes,
    mut exec_reply_by: Option<tokio::time::Instant>,
    permit: Option<OwnedSemaphorePermit>,
    done: oneshot::Sender<Ending>,
    target: String,
) {
    let ChannelPipes { mut reader, mut stdout, mut stderr, ended } = channel;
    let (mut stdout_open, mut stderr_open) = (true, true);
    let mut status = None;
    let mut early = early.into_iter();
    let ending = loop {
        let next = match (early.next(), exec_reply_by) {
            (Some(message), _) => Some(message),
            (None, None) => reader.wait().await,
            (None, Some(deadline)) => match tokio::time::timeout_at(deadline, reader.wait()).await {
                Ok(message) => message,
                Err(_) => {
                    break Err(Error::new(ErrorKind::Timeout, "exec")
                        .with_context(format!("{target}: the server did not answer the exec request")));
                }
            },
        };
        match next {
            Some(ChannelMsg::Success) if exec_reply_by.is_some() => exec_reply_by = None,
            Some(ChannelMsg::Failure) if exec_reply_by.is_some() => {
                break Err(Error::new(ErrorKind::PermissionDenied, "exec")
                    .with_context(format!("{target}: the server refused to start the command")));
            }
            Some(ChannelMsg::Close) if exec_reply_by.is_some() => {
                break Err(Error::new(ErrorKind::ConnectionLost, "exec")
                    .with_context(format!("{target}: channel closed before the command started")));
            }
            Some(ChannelMsg::Data { data }) => {
                // A caller that dropped the pipe does not want the bytes.
                if stdout_open && stdout.write_all(&data).await.is_err() {
                    stdout_open = false;
                }
            }
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                if let Some(pipe) = stderr.as_mut().filter(|_| stderr_open)
                    && pipe.write_all(&data).await.is_err()
                {
                    stderr_open = false;
                }
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                status = Some(ExitStatus::Code(i32::try_from(exit_status).unwrap_or(i32::MAX)));
                let _ = ended.send(true);
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                status = Some(ExitStatus::Signal(signal_text(&signal_name)));
                let _ = ended.send(true);
            }
            Some(ChannelMsg::Eof) => {
                // End of output: readers see EOF now, not at channel close.
                let _ = stdout.shutdown().await;
                if let Some(pipe) = stderr.as_mut() {
                    let _ = pipe.shutdown().await;
                }
            }
            Some(ChannelMsg::Close) => break Ok(status.take().unwrap_or(ExitStatus::Unknown)),
            Some(_) => {}
            None => {
                // The channel ended without a close: the connection went away.
                break match status.take() {
                    Some(status) => Ok(status),
                    None => Err(Error::new(ErrorKind::ConnectionLost, "exec")
                        .with_context(format!("{target}: the connection ended while the command ran"))),
                };
            }
        }
    };
    let _ = ended.send(true);
    let _ = stdout.shutdown().await;
    if let Some(pipe) = stderr.as_mut() {
        let _ = pipe.shutdown().await;
    }
    drop(permit);
    let _ = done.send(ending);
}

/// OpenSSH's signal names are POSIX names without `SIG`, as [`ExitStatus`] wants.
fn signal_text(signal: &russh::Sig) -> String {
    use russh::Sig;
    match signal {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    }
    .to_string()
}

/// Waiting for and stopping one remote command.
struct SshProcess {
    writer: Arc<WriteHalf>,
    /// The task routing the channel's output; it holds the session slot.
    pump: tokio::task::JoinHandle<()>,
    done: Option<oneshot::Receiver<Ending>>,
    status: Option<ExitStatus>,
    target: String,
    /// Whether the channel has a terminal (and so a window size).
    terminal: bool,
    /// Ends the command's processes when the server ignores the signal.
    reaper: Option<Reaper>,
}

impl std::fmt::Debug for SshProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshProcess").field("target", &self.target).field("status", &self.status).finish()
    }
}

#[async_trait]
impl ProcessControl for SshProcess {
    async fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = &self.status {
            return Ok(status.clone());
        }
        let Some(done) = self.done.take() else {
            return Err(
                Error::new(ErrorKind::ConnectionLost, "wait").with_context(format!("{}: channel gone", self.target))
            );
        };
        let ending = done.await.unwrap_or_else(|_| {
            Err(Error::new(ErrorKind::ConnectionLost, "wait")
                .with_context(format!("{}: channel task ended", self.target)))
        })?;
        self.status = Some(ending.clone());
        Ok(ending)
    }

    async fn kill(&mut self) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        let Some(done) = self.done.take() else { return Ok(()) };
        let status = stop_channel(self.writer.clone(), self.pump.abort_handle(), done, self.reaper.take()).await;
        self.status = Some(status);
        Ok(())
    }

    async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        if !self.terminal {
            return Err(Error::new(ErrorKind::Unsupported, "resize").with_context("the command has no terminal"));
        }
        self.writer.window_change(cols.into(), rows.into(), 0, 0).await.map_err(|e| ssh("resize", e))
    }
}

impl Drop for SshProcess {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // A dropped process releases its channel (and with it the session slot).
        let Some(done) = self.done.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(stop_channel(self.writer.clone(), self.pump.abort_handle(), done, self.reaper.take()));
        } else {
            self.pump.abort();
        }
    }
}

/// How long a stopped command gets to end its channel itself.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// How long the KILL signal gets before the reaper is sent.
const SIGNAL_GRACE: Duration = Duration::from_millis(300);

/// The variable every command's shell exports, so its processes can be
/// found and ended where the server ignores the KILL signal.
const RUN_TOKEN_VAR: &str = "TETHER_RUN";

/// `line`, run with [`RUN_TOKEN_VAR`] set to `token` in its environment
/// (and that of everything it starts).
fn tagged(token: &str, line: &str) -> String {
    format!("export {RUN_TOKEN_VAR}={token}; {line}")
}

/// A token no other command of this program carries.
fn run_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Ends a command's processes by the token in their environment: OpenSSH
/// refuses the KILL signal for root logins ("session signalling requires
/// privilege separation"), and closing the channel ends nothing that does
/// not write, so `kill` would otherwise leave the command running.
struct Reaper {
    session: std::sync::Weak<SshSession>,
    token: String,
}

impl Reaper {
    /// Kills every process of the host whose environment holds the token,
    /// on a channel of its own; errors are left to the caller's close.
    async fn reap(self) {
        let Some(session) = self.session.upgrade() else { return };
        let line = format!(
            "grep -lsxzF {var}={token} /proc/[0-9]*/environ | while read -r f; do p=${{f#/proc/}}; kill -KILL \"${{p%/environ}}\"; done",
            var = RUN_TOKEN_VAR,
            token = self.token
        );
        // The reaper carries a token of its own, so it never matches.
        let reaper = Command::shell(line);
        let started = session.start(Start::Exec { command: &reaper, pty: None, reapable: false }).await;
        match started {
            Ok(process) => {
                if let Err(err) = process.collect(None, Some(KILL_GRACE)).await {
                    tracing::debug!(target = %session.target, %err, "the reaper did not finish");
                }
            }
            Err(err) => tracing::debug!(target = %session.target, %err, "could not start the reaper"),
        }
    }
}

/// Stops a command: the KILL signal (where sshd honours it) and EOF on its
/// stdin, then, if the command is still there, the reaper, then the
/// server's close. The client does not close first, since russh 0.65
/// ignores the server's answer to a close the client sent, so the channel
/// would never report its end; only when the server stays silent is the
/// channel closed from here and its pump (which holds the session slot)
/// dropped.
async fn stop_channel(
    writer: Arc<WriteHalf>,
    pump: tokio::task::AbortHandle,
    mut done: oneshot::Receiver<Ending>,
    reaper: Option<Reaper>,
) -> ExitStatus {
    let _ = writer.signal(russh::Sig::KILL).await;
    let _ = writer.eof().await;
    if let Some(reaper) = reaper {
        match tokio::time::timeout(SIGNAL_GRACE, &mut done).await {
            Ok(Ok(Ok(status))) => return status,
            Ok(_) => {}
            Err(_) => reaper.reap().await,
        }
    }
    match tokio::time::timeout(KILL_GRACE, done).await {
        Ok(Ok(Ok(status))) => status,
        _ => {
            let _ = writer.close().await;
            pump.abort();
            ExitStatus::Signal("KILL".into())
        }
    }
}
