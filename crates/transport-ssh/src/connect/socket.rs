//! The TCP socket under an SSH connection.

use tokio::net::TcpStream;

/// The TCP stream, acknowledging every segment at once. OpenSSH sends small
/// packets back to back without `TCP_NODELAY` (debug messages after a
/// publickey login, then the channel confirmation; and a hop's sshd writes
/// each message it forwards on its own: exit-status, then EOF and close), so
/// the later ones wait for the ACK of the first, which Linux delays by
/// 40 ms (most of a connect's time, and one exec in five through a hop;
/// BENCHMARKS.md has the figures). `TCP_QUICKACK` is not sticky (the kernel drops back to
/// delayed ACKs on its own), so it is set again after every read; the
/// syscall costs about a microsecond, under 1% of a bulk transfer's reads.
pub(super) struct QuickAck {
    pub(super) inner: TcpStream,
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) {
            // Best effort: a failure only costs the delay this avoids.
            let _ = socket2::SockRef::from(&this.inner).set_tcp_quickack(true);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
