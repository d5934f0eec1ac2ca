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
use tether_core::{
    BoxReader, BoxWriter, Command, Error, ErrorKind, ExitStatus, Process, ProcessControl, Result, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::connect::SshSession;
use crate::error::{ssh, timed};

/// Bytes buffered per pipe between the channel and the caller: enough for a
/// few SSH packets of slack, small enough that a stalled reader stops the flow.
const PIPE_BUFFER: usize = 256 << 10;

/// First pause before retrying a channel open the server refused.
const RETRY_START: Duration = Duration::from_millis(5);

type WriteHalf = russh::ChannelWriteHalf<Msg>;

impl SshSession {
    /// Opens a session channel within the `max_sessions` bound, retrying
    /// refusals (sshd's `MaxSessions` lags behind channel closes) until
    /// `connect_timeout` runs out.
    pub(crate) async fn open_session(&self, limit: Duration) -> Result<(russh::Channel<Msg>, OwnedSemaphorePermit)> {
        let permit = timed("exec", "waiting for a free session slot", limit, async {
            self.sessions.clone().acquire_owned().await.map_err(|_| {
                Error::new(ErrorKind::ConnectionLost, "exec").with_context(format!("{}: closed", self.target))
            })
        })
        .await?;
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
                    pause = (pause * 2).min(Duration::from_millis(200));
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

#[async_trait]
impl Transport for SshSession {
    async fn spawn(&self, command: &Command) -> Result<Process> {
        self.ensure_open("exec")?;
        command.validate()?;
        if command.user.is_some() || command.group.is_some() {
            return Err(Error::new(ErrorKind::Unsupported, "exec")
                .with_context("running as another user or group over ssh (sudo) is not implemented yet"));
        }
        if command.pty.is_some() {
            return Err(Error::new(ErrorKind::Unsupported, "exec")
                .with_context("terminals over ssh are not implemented yet; run the command without `pty`"));
        }
        let limit = self.options.connect_timeout()?;
        let (channel, permit) = self.open_session(limit).await?;
        let (mut reader, writer) = channel.split();
        let writer = Arc::new(writer);
        let line = command.wrapped_shell_line();
        // OpenSSH answers the request before it reads any of the command's
        // output, but anything that arrives first is kept for the pump, not lost.
        let mut early = Vec::new();
        timed("exec", "exec request", limit, async {
            writer.exec(true, line.as_bytes()).await.map_err(|e| ssh("exec", e))?;
            loop {
                match reader.wait().await {
                    Some(ChannelMsg::Success) => return Ok(()),
                    Some(ChannelMsg::Failure) => {
                        return Err(Error::new(ErrorKind::PermissionDenied, "exec")
                            .with_context(format!("{}: the server refused to run the command", self.target)));
                    }
                    Some(other) => early.push(other),
                    None => {
                        return Err(Error::new(ErrorKind::ConnectionLost, "exec")
                            .with_context(format!("{}: channel closed before the command started", self.target)));
                    }
                }
            }
        })
        .await?;
        tracing::debug!(target = %self.target, command = %command, "exec started");

        let (stdin_user, stdin_pump) = tokio::io::duplex(PIPE_BUFFER);
        let (stdout_pump, stdout_user) = tokio::io::duplex(PIPE_BUFFER);
        let (stderr_pump, stderr_user) = tokio::io::duplex(PIPE_BUFFER);
        tokio::spawn(feed_stdin(stdin_pump, writer.clone()));
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(pump_output(early, reader, stdout_pump, stderr_pump, permit, done_tx, self.target.clone()));
        let control = SshProcess { writer, done: Some(done_rx), status: None, target: self.target.clone() };
        Ok(Process::new(
            Some(Box::pin(stdin_user) as BoxWriter),
            Some(Box::pin(stdout_user) as BoxReader),
            Some(Box::pin(stderr_user) as BoxReader),
            Box::new(control),
        ))
    }

    async fn close(&self) -> Result<()> {
        self.shutdown().await
    }
}

/// Copies the caller's stdin into the channel in large chunks, then sends EOF
/// (also when the caller drops stdin without `shutdown`).
async fn feed_stdin(mut from: DuplexStream, to: Arc<WriteHalf>) {
    let mut buf = vec![0u8; PIPE_BUFFER];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.data_bytes(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    // The channel is gone: dropping `from` makes the caller's
                    // next write a broken pipe.
                    return;
                }
            }
        }
    }
    let _ = to.eof().await;
}

/// How a channel ended, as the pump saw it.
type Ending = std::result::Result<ExitStatus, Error>;

/// Routes the channel's messages into the stdout and stderr pipes until the
/// channel closes, then reports the exit status. Holds the session permit
/// until then.
async fn pump_output(
    early: Vec<ChannelMsg>,
    mut reader: russh::ChannelReadHalf,
    mut stdout: DuplexStream,
    mut stderr: DuplexStream,
    permit: OwnedSemaphorePermit,
    done: oneshot::Sender<Ending>,
    target: String,
) {
    let (mut stdout_open, mut stderr_open) = (true, true);
    let mut status = None;
    let mut early = early.into_iter();
    let ending = loop {
        let next = match early.next() {
            Some(message) => Some(message),
            None => reader.wait().await,
        };
        match next {
            Some(ChannelMsg::Data { data }) => {
                // A caller that dropped the pipe does not want the bytes.
                if stdout_open && stdout.write_all(&data).await.is_err() {
                    stdout_open = false;
                }
            }
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                if stderr_open && stderr.write_all(&data).await.is_err() {
                    stderr_open = false;
                }
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                status = Some(ExitStatus::Code(i32::try_from(exit_status).unwrap_or(i32::MAX)));
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                status = Some(ExitStatus::Signal(signal_text(&signal_name)));
            }
            Some(ChannelMsg::Eof) => {
                // End of output: readers see EOF now, not at channel close.
                let _ = stdout.shutdown().await;
                let _ = stderr.shutdown().await;
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
    let _ = stdout.shutdown().await;
    let _ = stderr.shutdown().await;
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
    done: Option<oneshot::Receiver<Ending>>,
    status: Option<ExitStatus>,
    target: String,
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
        if self.status.is_some() || self.done.is_none() {
            return Ok(());
        }
        // The signal reaches the command where sshd supports it; closing the
        // channel frees the session slot either way.
        let _ = self.writer.signal(russh::Sig::KILL).await;
        let _ = self.writer.close().await;
        // The close is confirmed by the server; a dead server must not hang kill.
        if let Some(done) = self.done.take() {
            match tokio::time::timeout(Duration::from_secs(5), done).await {
                Ok(Ok(Ok(status))) => self.status = Some(status),
                _ => self.status = Some(ExitStatus::Signal("KILL".into())),
            }
        }
        Ok(())
    }
}

impl Drop for SshProcess {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // A dropped process releases its channel (and with it the session slot).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let writer = self.writer.clone();
            runtime.spawn(async move {
                let _ = writer.close().await;
            });
        }
    }
}
