//! Downloads: `read_requests` reads in flight, their data written to the
//! sink in file order.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{Data, StatusCode};
use sha2::{Digest, Sha512};
use tether_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::client::Client;
use super::pipeline::InFlight;

/// One read request: where and how much.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    offset: u64,
    len: u32,
}

/// Streams the open file `handle` into `sink` and returns the byte count.
///
/// `size` is the file's size when it was opened: reads cover exactly that,
/// plus one more request that must find end of file, and a file that shrinks or grows
/// meanwhile is [`ErrorKind::Corrupted`]. A size of 0 may be a pseudo-file
/// (`/proc`) whose size is unknown: then reads go on until end of file, the
/// window opening up as data arrives.
///
/// A read answered with fewer bytes than asked is not the end: the rest is
/// asked for again before anything later is written.
pub(super) async fn download(
    client: &Client,
    operation: &str,
    path: &str,
    handle: &str,
    size: u64,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<u64> {
    let read_size = client.read_size;
    let streaming = size == 0;
    let most = client.read_requests.max(1);
    let mut window = if streaming { 1 } else { most };
    let mut queue: InFlight<'_, (Chunk, Result<Data, SftpError>)> = InFlight::new(most + 1);
    let read = |chunk: Chunk| {
        let request = client.raw.read(handle.to_string(), chunk.offset, chunk.len);
        async move { (chunk, request.await) }
    };
    let mut next = 0u64;
    let mut written = 0u64;
    loop {
        while queue.len() < window && (streaming || next <= size) {
            // The last piece asks for just what is left, so the request that
            // must find end of file goes out with it, not after a short read.
            let len = match size.checked_sub(next) {
                Some(left) if !streaming && left > 0 => u32::try_from(left).unwrap_or(u32::MAX).min(read_size),
                _ => read_size,
            };
            queue.push_back(read(Chunk { offset: next, len })).await;
            next += u64::from(len);
        }
        let Some((chunk, reply)) = client.bounded(operation, path, queue.next()).await? else {
            // Not reached: the last request always reaches past the end, so
            // the queue only empties through end of file or an error.
            return if streaming || written == size {
                Ok(written)
            } else {
                Err(changed(operation, path, size, written))
            };
        };
        debug_assert_eq!(chunk.offset, written, "replies are taken in file order");
        let data = match reply {
            Ok(data) => data.data,
            Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => {
                if !streaming && written != size {
                    return Err(changed(operation, path, size, written));
                }
                return Ok(written);
            }
            Err(err) => return Err(client.error(operation, path, err)),
        };
        let got = data.len();
        if got == 0 || got > chunk.len as usize {
            return Err(Error::new(ErrorKind::Protocol, operation)
                .with_context(format!("{path}: the server answered a read of {} bytes with {got}", chunk.len)));
        }
        let end = chunk.offset + got as u64;
        if !streaming && end > size {
            return Err(changed(operation, path, size, end));
        }
        sink.write_all(&data).await.map_err(|e| Error::io(operation, e).with_context(path.to_string()))?;
        written = end;
        if got < chunk.len as usize {
            let rest = Chunk { offset: end, len: chunk.len - got as u32 };
            queue.push_front(read(rest)).await;
        }
        if streaming {
            window = (window * 2).min(most);
        }
    }
}

fn changed(operation: &str, path: &str, size: u64, seen: u64) -> Error {
    let what = if seen > size {
        format!("grew while it was read ({size} bytes when opened, data at {seen})")
    } else {
        format!("shrank while it was read ({size} bytes when opened, end of file at {seen})")
    };
    Error::new(ErrorKind::Corrupted, operation).with_context(format!("{path}: the file {what}"))
}

/// A sink that only hashes.
#[derive(Default)]
pub(super) struct Hasher(Sha512);

impl Hasher {
    /// Lower-case hex of the digest.
    pub(super) fn hex(self) -> String {
        use std::fmt::Write as _;
        self.0.finalize().iter().fold(String::with_capacity(128), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
    }
}

impl AsyncWrite for Hasher {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.update(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hasher_gives_sha512_hex() {
        let mut hasher = Hasher::default();
        hasher.write_all(b"abc").await.unwrap();
        assert_eq!(
            hasher.hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }
}
