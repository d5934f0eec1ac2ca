//! [`ChannelWire`]: the remote `scp` on its own session channel, driven
//! directly rather than through [`tether_core::Process`] pipes, so file
//! bytes go from the source's buffer into channel messages (and from
//! channel messages into the sink) without being copied on the way.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use russh::ChannelMsg;
use russh::client::Msg;
use tether_core::{Error, ErrorKind, ExitStatus, Output, Result};
use tokio::sync::OwnedSemaphorePermit;

use super::protocol::{Sent, Wire};
use crate::connect::SshSession;
use crate::error::{ssh, timed};

/// How much of the remote scp's stderr is kept for the error message.
const STDERR_KEPT: usize = 16 * 1024;

/// How long a stopped remote command may take to end (and the server to
/// close its channel) before the client closes the channel itself and
/// gives the session slot back.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The channel's halves and its `max_sessions` permit; gone once closed.
struct Parts {
    reader: russh::ChannelReadHalf,
    writer: russh::ChannelWriteHalf<Msg>,
    permit: OwnedSemaphorePermit,
}

/// One remote command on its own session channel: stdout as [`Wire::recv`],
/// stdin as [`Wire::send`], stderr and the exit status kept for the error.
pub(crate) struct ChannelWire {
    parts: Option<Parts>,
    state: State,
}

/// What the server said besides stdout data, and where the channel stands.
struct State {
    /// Output that arrived while something else was awaited.
    inbox: VecDeque<Bytes>,
    stderr: Vec<u8>,
    status: Option<ExitStatus>,
    /// The remote command's output ended (EOF or close).
    ended: bool,
    /// The channel is closed (or the connection ended).
    closed: bool,
    /// The longest silence accepted from the server.
    limit: Duration,
    /// For errors: the operation (`put`, `get`), and what it moves on which host.
    operation: String,
    subject: String,
}

impl std::fmt::Debug for ChannelWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelWire").field("subject", &self.state.subject).field("status", &self.state.status).finish()
    }
}

impl State {
    /// Takes in a message; returns it if it is stdout data.
    fn absorb(&mut self, message: ChannelMsg) -> Option<Bytes> {
        match message {
            ChannelMsg::Data { data } => return Some(data),
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let room = STDERR_KEPT.saturating_sub(self.stderr.len());
                self.stderr.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::ExitStatus { exit_status } => {
                self.status = Some(ExitStatus::Code(i32::try_from(exit_status).unwrap_or(i32::MAX)));
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                self.status = Some(ExitStatus::Signal(format!("{signal_name:?}")));
            }
            ChannelMsg::Eof => self.ended = true,
            ChannelMsg::Close => {
                self.ended = true;
                self.closed = true;
            }
            _ => {}
        }
        None
    }

    /// The channel ended without a close: the connection is gone, unless
    /// the command had already reported its exit.
    fn lost(&mut self) -> Result<()> {
        self.ended = true;
        self.closed = true;
        if self.status.is_some() {
            return Ok(());
        }
        Err(Error::new(ErrorKind::ConnectionLost, self.operation.as_str())
            .with_context(format!("{}: the connection ended during the transfer", self.subject)))
    }

    fn silent(&self, waiting_for: &str) -> Error {
        Error::new(ErrorKind::Timeout, self.operation.as_str())
            .with_context(format!("{}: no {waiting_for} from the server within {:?}", self.subject, self.limit))
    }
}

impl ChannelWire {
    /// Opens a session channel (within `max_sessions`) and runs `line` on
    /// it, for `operation` on `path` (both only name things in errors).
    pub(crate) async fn start(session: &SshSession, operation: &str, path: &Path, line: &str) -> Result<Self> {
        session.ensure_open(operation)?;
        let limit = session.options.connect_timeout()?;
        let (channel, permit) = session.open_session(limit).await?;
        let (mut reader, writer) = channel.split();
        let mut state = State {
            inbox: VecDeque::new(),
            stderr: Vec::new(),
            status: None,
            ended: false,
            closed: false,
            limit,
            operation: operation.to_string(),
            subject: format!("{}: {}", session.target, path.display()),
        };
        timed(operation, "exec request", limit, async {
            writer.exec(true, line.as_bytes()).await.map_err(|e| ssh(operation, e))?;
            loop {
                match reader.wait().await {
                    Some(ChannelMsg::Success) => return Ok(()),
                    Some(ChannelMsg::Failure) => {
                        return Err(Error::new(ErrorKind::PermissionDenied, operation)
                            .with_context(format!("{}: the server refused to run `{line}`", state.subject)));
                    }
                    Some(other) => {
                        // Output may come before the reply; it is kept, not lost.
                        if let Some(data) = state.absorb(other) {
                            state.inbox.push_back(data);
                        }
                    }
                    None => {
                        return Err(Error::new(ErrorKind::ConnectionLost, operation)
                            .with_context(format!("{}: the channel closed before `{line}` started", state.subject)));
                    }
                }
            }
        })
        .await?;
        Ok(ChannelWire { parts: Some(Parts { reader, writer, permit }), state })
    }

    /// Waits for the next message from the server; `None` once the channel
    /// is gone.
    async fn next(&mut self, waiting_for: &str) -> Result<Option<ChannelMsg>> {
        let Some(parts) = self.parts.as_mut().filter(|_| !self.state.closed) else { return Ok(None) };
        match tokio::time::timeout(self.state.limit, parts.reader.wait()).await {
            Ok(Some(message)) => Ok(Some(message)),
            Ok(None) => self.state.lost().map(|()| None),
            Err(_) => Err(self.state.silent(waiting_for)),
        }
    }

    /// Sends EOF and waits for the command's exit; returns what it left:
    /// its stderr and exit status (stdout not yet read is dropped).
    pub(crate) async fn finish(&mut self) -> Result<Output> {
        if let Some(parts) = &self.parts
            && !self.state.closed
        {
            let _ = parts.writer.eof().await;
        }
        while let Some(message) = self.next("exit status").await? {
            drop(self.state.absorb(message));
        }
        self.parts = None;
        Ok(Output {
            stdout: Vec::new(),
            stderr: std::mem::take(&mut self.state.stderr),
            status: self.state.status.clone().unwrap_or(ExitStatus::Unknown),
        })
    }

    /// Stops the remote command and waits, bounded, until it is gone, so
    /// that it no longer writes when the caller cleans up after it. Returns
    /// its stderr.
    pub(crate) async fn abort(&mut self) -> Vec<u8> {
        if let Some(mut parts) = self.parts.take()
            && !self.state.closed
        {
            let grace = self.state.limit.min(CLOSE_GRACE);
            let state = &mut self.state;
            stop(&mut parts, grace, |message| drop(state.absorb(message))).await;
        }
        self.state.closed = true;
        std::mem::take(&mut self.state.stderr)
    }
}

/// Stops a remote command: KILL to its process group and EOF on its stdin
/// (either ends an scp), then waits up to `grace` for the server to close
/// the channel once the command is gone, handing other messages to
/// `absorb`. The close is left to the server because russh forgets a
/// channel the client closes and drops the server's reply, so a client
/// close could not be waited for; it is sent only when the server stays
/// silent.
async fn stop(parts: &mut Parts, grace: Duration, mut absorb: impl FnMut(ChannelMsg)) {
    let _ = parts.writer.signal(russh::Sig::KILL).await;
    let _ = parts.writer.eof().await;
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match tokio::time::timeout_at(deadline, parts.reader.wait()).await {
            Ok(None | Some(ChannelMsg::Close)) => return,
            Ok(Some(message)) => absorb(message),
            Err(_) => {
                let _ = parts.writer.close().await;
                return;
            }
        }
    }
}

impl Drop for ChannelWire {
    fn drop(&mut self) {
        // A transfer abandoned midway: stop the command in the background,
        // keeping the session slot until the channel is gone.
        if let Some(mut parts) = self.parts.take()
            && !self.state.closed
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let grace = self.state.limit.min(CLOSE_GRACE);
            runtime.spawn(async move {
                stop(&mut parts, grace, drop).await;
                drop(parts.permit);
            });
        }
    }
}

#[async_trait]
impl Wire for ChannelWire {
    async fn send(&mut self, data: Bytes) -> Result<Sent> {
        let state = &mut self.state;
        let Some(parts) = self.parts.as_mut().filter(|_| !state.ended && state.inbox.is_empty()) else {
            return Ok(Sent::Interrupted);
        };
        let send = parts.writer.data_bytes(data);
        tokio::pin!(send);
        // Per message: a large one on a slow link is fine as long as the
        // window keeps opening.
        let deadline = tokio::time::sleep(state.limit);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                // A failed send means the channel is gone: the reader says why.
                sent = &mut send => return Ok(if sent.is_ok() { Sent::Done } else { Sent::Interrupted }),
                message = parts.reader.wait() => match message {
                    None => {
                        state.lost()?;
                        return Ok(Sent::Interrupted);
                    }
                    Some(message) => {
                        if let Some(data) = state.absorb(message) {
                            state.inbox.push_back(data);
                        }
                        if state.ended || !state.inbox.is_empty() {
                            return Ok(Sent::Interrupted);
                        }
                    }
                },
                () = &mut deadline => return Err(state.silent("window space")),
            }
        }
    }

    async fn recv(&mut self) -> Result<Option<Bytes>> {
        if let Some(data) = self.state.inbox.pop_front() {
            return Ok(Some(data));
        }
        while !self.state.ended {
            let Some(message) = self.next("data").await? else { break };
            if let Some(data) = self.state.absorb(message) {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}
