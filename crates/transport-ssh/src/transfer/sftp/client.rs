//! One SFTP session: the subsystem channel, russh-sftp's request/reply layer
//! on top of it, and the rules every request follows (a time limit, a prompt
//! typed failure when the channel or the connection goes away, SFTP status
//! codes mapped to [`ErrorKind`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::protocol::{FileAttributes, Packet, StatusCode};
use tether_core::{Error, ErrorKind, FileKind, Metadata, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::channel::ChannelStream;
use crate::connect::SshSession;
use crate::error::{ssh, timed};
use crate::options::SftpOptions;

/// The largest SFTP packet accepted from the server, checked by russh-sftp
/// before it allocates: OpenSSH's own client limit (`SFTP_MAX_MSG_LENGTH`).
/// A data reply of the largest request (255 KiB) plus its header fits.
pub(super) const MAX_PACKET: u32 = 256 << 10;

/// Bytes of a write packet besides the data and the handle: length, type,
/// id, handle length, offset, data length.
const WRITE_OVERHEAD: u64 = 4 + 1 + 4 + 4 + 8 + 4;

/// Bytes of a data reply besides the data: length, type, id, data length.
const READ_OVERHEAD: u64 = 4 + 1 + 4 + 4;

/// Files and directories one session keeps open at once (fewer when the
/// server's `limits@openssh.com` says so); more operations queue.
/// russh-sftp reads handles as UTF-8 text, and OpenSSH's are 4-byte numbers
/// counted from 0: beyond 127 open at once they would be mangled.
const MAX_OPEN_HANDLES: usize = 64;

/// The longest server-supplied message kept in an error (they are the
/// server's words, so they are also stripped of control characters).
const MAX_SERVER_MESSAGE: usize = 200;

/// How the SFTP byte stream ended, as the stream adapter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The channel reached end of file: the server or the connection went away.
    Eof,
    /// Reading or writing the channel failed.
    Io,
    /// The stream was dropped without either: russh-sftp stopped reading,
    /// which it does on a malformed or oversized packet.
    Broken,
}

/// The shared "this session is over" signal, set by the stream adapter.
#[derive(Debug)]
pub(super) struct Lost {
    state: watch::Sender<Option<Ending>>,
}

impl Lost {
    fn new() -> Arc<Self> {
        Arc::new(Lost { state: watch::Sender::new(None) })
    }

    /// Records the first ending; later ones add nothing.
    fn mark(&self, ending: Ending) {
        self.state.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(ending);
                true
            } else {
                false
            }
        });
    }

    pub(super) fn ending(&self) -> Option<Ending> {
        *self.state.borrow()
    }

    /// Resolves once the session is over.
    async fn wait(&self) -> Ending {
        let mut watcher = self.state.subscribe();
        match watcher.wait_for(Option::is_some).await {
            Ok(ending) => ending.unwrap_or(Ending::Broken),
            Err(_) => Ending::Broken,
        }
    }
}

/// A watch on the channel stream (a [`ChannelStream`], or a pipe in unit
/// tests) that reports its end to [`Lost`], so that requests fail the
/// moment the channel goes, whatever russh-sftp's reader does.
struct Watched<S> {
    inner: S,
    lost: Arc<Lost>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) if room && buf.filled().len() == before => self.lost.mark(Ending::Eof),
            Poll::Ready(Err(_)) => self.lost.mark(Ending::Io),
            _ => {}
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(_)) = &poll {
            self.lost.mark(Ending::Io);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        self.lost.mark(Ending::Broken);
    }
}

/// Who is at the other end, for errors.
pub(super) struct Peer {
    /// `user@host:port`.
    pub(super) target: String,
    /// The SSH connection the channel rides on (none in unit tests).
    pub(super) session: Option<Arc<SshSession>>,
}

impl Peer {
    /// True once the SSH connection under the channel has ended.
    fn connection_ended(&self) -> bool {
        self.session.as_ref().is_some_and(|session| session.ensure_open("sftp").is_err())
    }
}

/// One open SFTP session on its own session channel.
pub(super) struct Client {
    pub(super) raw: RawSftpSession,
    lost: Arc<Lost>,
    peer: Peer,
    /// How long any one reply may take (`connect_timeout`).
    pub(super) limit: Duration,
    /// Bytes per read request, within the server's limits.
    pub(super) read_size: u32,
    /// Bytes per write request, within the server's limits.
    pub(super) write_size: u32,
    /// Read requests kept in flight by a get.
    pub(super) read_requests: usize,
    /// Write requests kept in flight by a put.
    pub(super) write_requests: usize,
    /// The server offers `posix-rename@openssh.com` (rename replacing the target atomically).
    pub(super) posix_rename: bool,
    /// The server offers `statvfs@openssh.com` (free space, to tell a full disk).
    pub(super) statvfs: bool,
    /// The `max_sessions` slot of the channel, given back when the session ends.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Slots for open handles (see [`MAX_OPEN_HANDLES`]).
    handles: Arc<Semaphore>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.peer.target)
            .field("lost", &self.lost.ending())
            .field("read_size", &self.read_size)
            .field("write_size", &self.write_size)
            .field("posix_rename", &self.posix_rename)
            .finish_non_exhaustive()
    }
}

/// Waits for the reply to a channel request (`env`, `subsystem`): true for
/// success, false for failure. Nothing but window adjustments can come
/// before it on a channel whose subsystem has not started.
async fn channel_reply(channel: &mut russh::Channel<russh::client::Msg>, target: &str, what: &str) -> Result<bool> {
    let gone = || {
        Error::new(ErrorKind::ConnectionLost, "open sftp")
            .with_context(format!("{target}: the channel closed before the {what} request was answered"))
    };
    crate::channel::reply(channel, &mut Vec::new(), gone).await
}

impl Client {
    /// Opens a session channel, sends the environment, starts the `sftp`
    /// subsystem and runs the version handshake.
    pub(super) async fn start(session: Arc<SshSession>, options: &SftpOptions) -> Result<Client> {
        const OP: &str = "open sftp";
        session.ensure_open(OP)?;
        let limit = session.options.connect_timeout()?;
        let target = session.target.clone();
        let (mut channel, permit) = session.open_session(limit).await.map_err(|e| rename_op(e, OP))?;
        let started = timed(OP, "starting the sftp subsystem", limit, async {
            for (name, value) in options.environment() {
                channel.set_env(true, name.as_str(), value).await.map_err(|e| ssh(OP, e))?;
                if !channel_reply(&mut channel, &target, "env").await? {
                    // The value may be a secret: only the name is logged.
                    tracing::warn!(
                        %target,
                        variable = %name,
                        "the server refused to set an environment variable for the SFTP server \
                         (sshd's AcceptEnv does not list it); going on without it"
                    );
                }
            }
            channel.request_subsystem(true, "sftp").await.map_err(|e| ssh(OP, e))?;
            if !channel_reply(&mut channel, &target, "subsystem").await? {
                return Err(Error::new(ErrorKind::Unsupported, OP)
                    .with_context(format!("{target}: the server refused the `sftp` subsystem")));
            }
            Ok(())
        })
        .await;
        if let Err(err) = started {
            let _ = channel.close().await;
            return Err(err);
        }

        let stream = ChannelStream::new(channel, format!("{target} (sftp)"));
        let peer = Peer { target, session: Some(session) };
        Client::over(stream, peer, options, limit, Some(permit)).await
    }

    /// Runs the version handshake over `stream`, a started subsystem.
    pub(super) async fn over<S>(
        stream: S,
        peer: Peer,
        options: &SftpOptions,
        limit: Duration,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Client>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        const OP: &str = "open sftp";
        let target = peer.target.clone();
        let lost = Lost::new();
        let stream = Watched { inner: stream, lost: lost.clone() };
        let config = russh_sftp::client::Config {
            max_packet_len: MAX_PACKET,
            // Our own limits apply (see `call`): russh-sftp's per-request
            // timer would start when a request is queued, which fails long
            // pipelines on slow links. A deadline past the end of time is
            // "none" to it.
            request_timeout_secs: u64::MAX,
            ..Default::default()
        };
        let raw = RawSftpSession::new_with_config(stream, config);
        let handshake = async {
            let version = tokio::select! {
                version = raw.init() => version.map_err(|e| map_error(OP, &target, e, None))?,
                ending = lost.wait() => return Err(lost_error(OP, "SFTP handshake", &peer, ending)),
            };
            if version.version < 3 {
                return Err(Error::new(ErrorKind::Unsupported, OP)
                    .with_context(format!("{target}: SFTP version {} (3 is needed)", version.version)));
            }
            let offers = |name: &str, revision: &str| version.extensions.get(name).is_some_and(|v| v == revision);
            let limits = if offers("limits@openssh.com", "1") {
                let limits = tokio::select! {
                    limits = raw.limits() => limits.map_err(|e| map_error(OP, &target, e, None))?,
                    ending = lost.wait() => return Err(lost_error(OP, "SFTP handshake", &peer, ending)),
                };
                Limits::from(limits)
            } else {
                Limits::default()
            };
            Ok((offers("posix-rename@openssh.com", "1"), offers("statvfs@openssh.com", "2"), limits))
        };
        let (posix_rename, statvfs, limits) = timed(OP, "SFTP version handshake", limit, handshake).await?;
        // The limits size the requests and the handle slots here; russh-sftp
        // is not told, so it never refuses a request on its own.
        let (read_size, write_size) = request_sizes(options.request_size, &limits);
        let handles = limits.open_handles.map_or(MAX_OPEN_HANDLES, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let handles = handles.clamp(1, MAX_OPEN_HANDLES);
        tracing::debug!(%target, read_size, write_size, posix_rename, "sftp session started");
        Ok(Client {
            raw,
            lost,
            peer,
            limit,
            read_size,
            write_size,
            read_requests: options.read_requests as usize,
            write_requests: options.write_requests as usize,
            posix_rename,
            statvfs,
            permit: Mutex::new(permit),
            handles: Arc::new(Semaphore::new(handles)),
        })
    }

    /// True once the channel has ended.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.ending().is_some() || self.peer.connection_ended()
    }

    /// Ends the session: the server sees end of file and exits, and the
    /// session slot is given back.
    pub(super) fn shut(&self) {
        let _ = self.raw.close_session();
        if let Ok(mut permit) = self.permit.lock() {
            permit.take();
        }
    }

    /// Waits for a free handle slot; held until the handle is closed.
    pub(super) async fn handle_slot(&self, operation: &str, path: &str) -> Result<OwnedSemaphorePermit> {
        tokio::select! {
            slot = self.handles.clone().acquire_owned() => {
                slot.map_err(|_| lost_error(operation, path, &self.peer, Ending::Broken))
            }
            ending = self.lost.wait() => Err(lost_error(operation, path, &self.peer, ending)),
        }
    }

    /// Runs one request under the time limit; a channel that ends meanwhile
    /// fails it at once with [`ErrorKind::ConnectionLost`].
    pub(super) async fn call<T>(
        &self,
        operation: &str,
        path: &str,
        request: impl Future<Output = Result<T, SftpError>>,
    ) -> Result<T> {
        self.bounded(operation, path, request).await?.map_err(|e| self.error(operation, path, e))
    }

    /// Waits for `work` (a reply, or the next of a pipeline's replies) under
    /// the time limit, failing at once when the channel ends.
    pub(super) async fn bounded<T>(&self, operation: &str, path: &str, work: impl Future<Output = T>) -> Result<T> {
        tokio::select! {
            biased;
            done = tokio::time::timeout(self.limit, work) => done.map_err(|_| {
                Error::new(ErrorKind::Timeout, operation)
                    .with_context(format!("{path}: no answer from the SFTP server within {:?}", self.limit))
            }),
            ending = self.lost.wait() => Err(lost_error(operation, path, &self.peer, ending)),
        }
    }

    /// Maps a russh-sftp error, telling a lost channel apart from a refusal.
    pub(super) fn error(&self, operation: &str, path: &str, err: SftpError) -> Error {
        map_error(operation, path, err, self.lost.ending().map(|ending| (&self.peer, ending)))
    }

    /// `posix-rename@openssh.com`: rename replacing `to` atomically.
    pub(super) async fn posix_rename(&self, operation: &str, from: &str, to: &str) -> Result<()> {
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        for path in [from, to] {
            data.extend_from_slice(&u32::try_from(path.len()).unwrap_or(u32::MAX).to_be_bytes());
            data.extend_from_slice(path.as_bytes());
        }
        let shown = format!("{from} -> {to}");
        match self.call(operation, &shown, self.raw.extended("posix-rename@openssh.com", data)).await? {
            Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(status) => Err(self.error(operation, &shown, SftpError::Status(status))),
            _ => Err(Error::new(ErrorKind::Protocol, operation)
                .with_context(format!("{shown}: unexpected reply to posix-rename@openssh.com"))),
        }
    }

    /// Bytes available to an unprivileged user on the filesystem of `path`,
    /// when the server tells (`statvfs@openssh.com`).
    pub(super) async fn free_space(&self, path: &str) -> Option<u64> {
        if !self.statvfs {
            return None;
        }
        let work = self.raw.statvfs(path.to_string());
        match tokio::time::timeout(self.limit, work).await {
            Ok(Ok(fs)) => Some(fs.blocks_avail.saturating_mul(fs.fragment_size)),
            _ => None,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Request sizes within what the user asked and the server's
/// `limits@openssh.com` (read, write and packet lengths).
fn request_sizes(requested: u32, limits: &Limits) -> (u32, u32) {
    let requested = u64::from(requested);
    let packet = limits.packet_len.unwrap_or(u64::MAX);
    let read = requested.min(limits.read_len.unwrap_or(u64::MAX)).min(packet.saturating_sub(READ_OVERHEAD));
    // OpenSSH's handles are 4 bytes; leave room for longer ones.
    let write = requested.min(limits.write_len.unwrap_or(u64::MAX)).min(packet.saturating_sub(WRITE_OVERHEAD + 256));
    let clamp = |n: u64| u32::try_from(n.max(1024)).unwrap_or(u32::MAX);
    (clamp(read), clamp(write))
}

/// An operation's error carries its own name, not the step's.
pub(super) fn rename_op(err: Error, operation: &str) -> Error {
    let context = err.context().map(str::to_string);
    let renamed = Error::new(err.kind(), operation);
    match context {
        Some(context) => renamed.with_context(context),
        None => renamed.with_context(err.to_string()),
    }
}

fn lost_error(operation: &str, path: &str, peer: &Peer, ending: Ending) -> Error {
    let target = &peer.target;
    let (kind, why) = if peer.connection_ended() {
        (ErrorKind::ConnectionLost, "the SSH connection ended")
    } else {
        match ending {
            Ending::Eof => (ErrorKind::ConnectionLost, "the SFTP server closed the channel"),
            Ending::Io => (ErrorKind::ConnectionLost, "the SFTP channel failed"),
            Ending::Broken => {
                (ErrorKind::Protocol, "the SFTP session ended on a malformed or oversized packet from the server")
            }
        }
    };
    Error::new(kind, operation).with_context(format!("{path}: {target}: {why}"))
}

/// The server's own words, made safe to print in one line.
fn server_message(message: &str) -> String {
    message.chars().filter(|c| !c.is_control()).take(MAX_SERVER_MESSAGE).collect()
}

/// Maps a russh-sftp error; `lost` says the channel has ended, in which case
/// a failed request is a lost connection rather than the server's refusal.
fn map_error(operation: &str, path: &str, err: SftpError, lost: Option<(&Peer, Ending)>) -> Error {
    let (kind, why) = match err {
        SftpError::Status(status) => {
            let kind = match status.status_code {
                StatusCode::NoSuchFile => ErrorKind::NotFound,
                StatusCode::PermissionDenied => ErrorKind::PermissionDenied,
                StatusCode::OpUnsupported => ErrorKind::Unsupported,
                // OpenSSH's sftp-server answers EINVAL and ENAMETOOLONG so.
                StatusCode::BadMessage => ErrorKind::InvalidInput,
                StatusCode::NoConnection | StatusCode::ConnectionLost => ErrorKind::ConnectionLost,
                StatusCode::Eof => ErrorKind::Protocol,
                // Everything else, from a full disk to a non-empty directory.
                StatusCode::Ok | StatusCode::Failure => ErrorKind::Io,
            };
            let message = server_message(&status.error_message);
            let why = if message.is_empty() { status.status_code.to_string() } else { message };
            (kind, format!("the SFTP server says: {why}"))
        }
        other => {
            if let Some((peer, ending)) = lost {
                return lost_error(operation, path, peer, ending);
            }
            let kind = match &other {
                SftpError::Timeout => ErrorKind::Timeout,
                SftpError::IO(_) => ErrorKind::Io,
                SftpError::Limited(_) => ErrorKind::InvalidInput,
                SftpError::UnexpectedPacket | SftpError::UnexpectedBehavior(_) | SftpError::Status(_) => {
                    ErrorKind::Protocol
                }
            };
            (kind, other.to_string())
        }
    };
    Error::new(kind, operation).with_context(format!("{path}: {why}"))
}

/// `stat` attributes as core's [`Metadata`].
pub(super) fn metadata(attrs: &FileAttributes) -> Metadata {
    let bits = attrs.permissions.unwrap_or(0);
    let kind = match bits & 0o170_000 {
        0o100_000 => FileKind::File,
        0o040_000 => FileKind::Dir,
        0o120_000 => FileKind::Link,
        0o020_000 => FileKind::Chr,
        0o060_000 => FileKind::Blk,
        0o010_000 => FileKind::Fifo,
        0o140_000 => FileKind::Sock,
        _ => FileKind::Other,
    };
    Metadata {
        kind,
        size: attrs.size.unwrap_or(0),
        mode: bits & 0o7777,
        uid: attrs.uid,
        gid: attrs.gid,
        mtime: attrs.mtime.map(|secs| UNIX_EPOCH + Duration::from_secs(u64::from(secs))),
        sha512: None,
    }
}

/// A modification time as SFTP v3 carries it: whole seconds in 32 bits.
pub(super) fn protocol_time(operation: &str, path: &str, time: SystemTime) -> Result<u32> {
    time.duration_since(UNIX_EPOCH).ok().and_then(|d| u32::try_from(d.as_secs()).ok()).ok_or_else(|| {
        Error::new(ErrorKind::InvalidInput, operation)
            .with_context(format!("{path}: SFTP v3 carries modification times from 1970 to 2106 only"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_server_limits() {
        let openssh = Limits {
            packet_len: Some(256 << 10),
            read_len: Some(255 << 10),
            write_len: Some(255 << 10),
            open_handles: Some(1024),
        };
        assert_eq!(request_sizes(255 << 10, &openssh), (255 << 10, 255 << 10));
        assert_eq!(request_sizes(32 << 10, &openssh), (32 << 10, 32 << 10));
        let small = Limits { packet_len: Some(34000), read_len: Some(32768), write_len: None, open_handles: None };
        let (read, write) = request_sizes(255 << 10, &small);
        assert_eq!(read, 32768);
        assert!(u64::from(write) + WRITE_OVERHEAD + 4 <= 34000, "{write}");
        assert_eq!(request_sizes(255 << 10, &Limits::default()), (255 << 10, 255 << 10));
    }

    #[test]
    fn statuses_map_to_kinds() {
        let status = |code, message: &str| {
            SftpError::Status(russh_sftp::protocol::Status {
                id: 1,
                status_code: code,
                error_message: message.into(),
                language_tag: "en".into(),
            })
        };
        let err = map_error("get", "/x", status(StatusCode::NoSuchFile, "No such file"), None);
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("/x"), "{err}");
        let err = map_error("put", "/x", status(StatusCode::PermissionDenied, "nope\n\x1b[31m"), None);
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(!err.to_string().contains('\x1b'), "control characters are dropped: {err:?}");
        assert_eq!(map_error("x", "/", status(StatusCode::OpUnsupported, ""), None).kind(), ErrorKind::Unsupported);
        assert_eq!(map_error("x", "/", status(StatusCode::Failure, "Failure"), None).kind(), ErrorKind::Io);
        assert_eq!(map_error("x", "/", SftpError::Timeout, None).kind(), ErrorKind::Timeout);
        assert_eq!(map_error("x", "/", SftpError::UnexpectedPacket, None).kind(), ErrorKind::Protocol);
    }

    #[test]
    fn kinds_and_modes_from_attributes() {
        let attrs =
            FileAttributes { permissions: Some(0o100_640), size: Some(5), mtime: Some(7), ..Default::default() };
        let meta = metadata(&attrs);
        assert_eq!((meta.kind, meta.mode, meta.size), (FileKind::File, 0o640, 5));
        assert_eq!(meta.mtime, Some(UNIX_EPOCH + Duration::from_secs(7)));
        let dir = FileAttributes { permissions: Some(0o041_777), ..Default::default() };
        assert_eq!((metadata(&dir).kind, metadata(&dir).mode), (FileKind::Dir, 0o1777));
        assert_eq!(
            metadata(&FileAttributes { permissions: Some(0o120_777), ..Default::default() }).kind,
            FileKind::Link
        );
    }

    #[test]
    fn times_outside_v3_are_refused() {
        assert_eq!(protocol_time("put", "/x", UNIX_EPOCH + Duration::from_secs(5)).unwrap(), 5);
        let err = protocol_time("put", "/x", UNIX_EPOCH - Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(protocol_time("put", "/x", UNIX_EPOCH + Duration::from_secs(1 << 33)).is_err());
    }
}
