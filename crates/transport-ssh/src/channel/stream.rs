//! The stream over one SSH channel, for tunnels and the SFTP subsystem
//! alike: a pump drains the channel, so the stream notices the connection
//! dying even while its owner only writes.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Bytes a stream holds for a reader that is behind. russh widens a
/// channel's window as data arrives, not as it is read, so the only
/// backpressure is to stop taking the channel's messages, which holds up
/// every channel of the connection; this is how much a reader can leave
/// unread before that happens (as for a command's output).
const STREAM_BUFFER: usize = 8 << 20;

/// How a channel ended, as its pump saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The server closed the channel.
    Closed,
    /// The connection ended under the channel.
    Lost,
}

/// A byte stream over one SSH channel: reads are the channel's data up to
/// its EOF, writes are window-limited channel data, shutdown sends EOF.
/// Dropping it closes the channel.
pub(crate) struct ChannelStream {
    incoming: mpsc::UnboundedReceiver<io::Result<Bytes>>,
    /// Bytes of [`STREAM_BUFFER`] not taken by data waiting in `incoming`.
    credit: Arc<Semaphore>,
    unread: Bytes,
    /// An error that arrived behind data already returned: the next read's.
    failed: Option<io::Error>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    ended: oneshot::Receiver<End>,
    end: Option<End>,
    closer: Option<ChannelWriteHalf<Msg>>,
    what: Arc<str>,
}

impl fmt::Debug for ChannelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelStream").field("to", &self.what).field("end", &self.end).finish_non_exhaustive()
    }
}

impl ChannelStream {
    pub(crate) fn new(channel: russh::Channel<Msg>, what: String) -> Self {
        let what: Arc<str> = what.into();
        let (read, write) = channel.split();
        let (data, incoming) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(STREAM_BUFFER));
        let (end_tx, ended) = oneshot::channel();
        tokio::spawn(pump(read, data, credit.clone(), end_tx, what.clone()));
        ChannelStream {
            incoming,
            credit,
            unread: Bytes::new(),
            failed: None,
            writer: Box::new(write.make_writer()),
            ended,
            end: None,
            closer: Some(write),
            what,
        }
    }

    /// The channel's end if it has come, registering for the wake-up otherwise.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Option<End> {
        if self.end.is_none()
            && let Poll::Ready(end) = Pin::new(&mut self.ended).poll(cx)
        {
            // A pump that vanished without a word was cancelled with the runtime.
            self.end = Some(end.unwrap_or(End::Lost));
        }
        self.end
    }

    fn end_error(&self, end: End) -> io::Error {
        match end {
            End::Closed => io::Error::new(io::ErrorKind::BrokenPipe, format!("{}: the channel was closed", self.what)),
            End::Lost => lost(&self.what),
        }
    }
}

/// The credit one chunk of data takes (a chunk larger than the whole buffer
/// takes all of it).
fn credit_for(chunk: &Bytes) -> u32 {
    u32::try_from(chunk.len().min(STREAM_BUFFER)).unwrap_or(u32::MAX)
}

fn lost(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, format!("{what}: the SSH connection ended"))
}

/// Drains the channel: data to the reader until EOF, then waits for the
/// close. Ends early when the stream is dropped.
async fn pump(
    mut read: ChannelReadHalf,
    data: mpsc::UnboundedSender<io::Result<Bytes>>,
    credit: Arc<Semaphore>,
    mut ended: oneshot::Sender<End>,
    what: Arc<str>,
) {
    let mut data = Some(data);
    let end = loop {
        let message = tokio::select! {
            message = read.wait() => message,
            () = ended.closed() => return,
        };
        match message {
            Some(ChannelMsg::Data { data: bytes }) => {
                // An empty read would look like EOF to the reader.
                let Some(sender) = data.as_ref().filter(|_| !bytes.is_empty()) else { continue };
                tokio::select! {
                    taken = credit.acquire_many(credit_for(&bytes)) => match taken {
                        Ok(taken) => taken.forget(),
                        Err(_) => return,
                    },
                    () = ended.closed() => return,
                }
                if sender.send(Ok(bytes)).is_err() {
                    return;
                }
            }
            Some(ChannelMsg::Eof) => data = None,
            Some(ChannelMsg::Close) => break End::Closed,
            Some(_) => {}
            // russh drops the channel's sender after delivering `Close`, so
            // silence without one means the connection itself is gone.
            None => break End::Lost,
        }
    };
    let _ = ended.send(end);
    if end == End::Lost
        && let Some(sender) = data
    {
        let _ = sender.send(Err(lost(&what)));
    }
}

impl AsyncRead for ChannelStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unread.is_empty() {
            if let Some(err) = this.failed.take() {
                return Poll::Ready(Err(err));
            }
            match ready!(this.incoming.poll_recv(cx)) {
                Some(Ok(bytes)) => {
                    this.credit.add_permits(credit_for(&bytes) as usize);
                    this.unread = bytes;
                }
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => return Poll::Ready(Ok(())),
            }
        }
        // Packets already waiting go out in the same read: one large write
        // downstream instead of one per 32 KiB packet.
        loop {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            if buf.remaining() == 0 || !this.unread.is_empty() {
                break;
            }
            match this.incoming.try_recv() {
                Ok(Ok(bytes)) => {
                    this.credit.add_permits(credit_for(&bytes) as usize);
                    this.unread = bytes;
                }
                Ok(Err(err)) => {
                    this.failed = Some(err);
                    break;
                }
                Err(_) => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ChannelStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Checked first so that a write stuck on a window that will never
        // open again is woken by the pump.
        if let Some(end) = this.poll_end(cx) {
            return Poll::Ready(Err(this.end_error(end)));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut this.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_end(cx) {
            Some(End::Lost) => Poll::Ready(Err(lost(&this.what))),
            _ => Pin::new(&mut this.writer).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_end(cx) {
            Some(End::Lost) => Poll::Ready(Err(lost(&this.what))),
            // Closed by the server: nothing more can be sent, nor needs to be.
            Some(End::Closed) => Poll::Ready(Ok(())),
            None => Pin::new(&mut this.writer).poll_shutdown(cx),
        }
    }
}

impl Drop for ChannelStream {
    fn drop(&mut self) {
        let Some(write) = self.closer.take() else { return };
        if self.end.is_some() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = write.close().await;
            });
        }
    }
}
