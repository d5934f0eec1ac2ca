//! The TCP stream a [`crate::Dialer`] hands out, acknowledging every
//! segment at once.

use tokio::net::TcpStream;

/// A TCP stream that acknowledges every segment at once. Servers write small
/// segments back to back without `TCP_NODELAY`: OpenSSH (debug messages after
/// a publickey login, then the channel confirmation; a hop's sshd writes each
/// message it forwards on its own), busybox `telnetd` (a command's output
/// after the echo of its line). The later segment then waits for the ACK of
/// the first, which Linux delays by 40 ms: most of a connect's time, one SSH
/// exec in five through a hop, and every telnet command (23 commands/s
/// instead of hundreds; BENCHMARKS.md has the figures). `TCP_QUICKACK` is
/// not sticky (the kernel drops back to delayed ACKs on its own), so it is
/// set again after every read; the syscall costs about a microsecond, under
/// 1% of a bulk transfer's reads.
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
