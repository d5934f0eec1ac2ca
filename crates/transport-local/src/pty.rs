//! Terminals for local commands: a pseudo-terminal pair whose slave becomes
//! the child's stdin, stdout, stderr and controlling terminal, and whose
//! master the caller reads and writes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{Winsize, openpty};
use tether_core::{Error, Pty, Result};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::errno;

/// The caller's side of a terminal, shared by its reader and writer halves
/// and by the process control (for resizes).
pub(crate) type Master = Arc<AsyncFd<OwnedFd>>;

/// An open terminal pair; the slave goes to the child.
pub(crate) struct Terminal {
    pub(crate) master: Master,
    slave: OwnedFd,
}

fn window(cols: u16, rows: u16) -> Winsize {
    Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

impl Terminal {
    /// Opens a terminal of `pty`'s size.
    pub(crate) fn open(pty: &Pty) -> Result<Terminal> {
        let pair = openpty(Some(&window(pty.cols, pty.rows)), None).map_err(|e| errno("open terminal", e))?;
        // The master is polled by tokio, so it must never block.
        let flags = fcntl(pair.master.as_fd(), FcntlArg::F_GETFL).map_err(|e| errno("open terminal", e))?;
        fcntl(pair.master.as_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
            .map_err(|e| errno("open terminal", e))?;
        let master = register(pair.master)?;
        Ok(Terminal { master: Arc::new(master), slave: pair.slave })
    }

    /// A handle on the slave for one of the child's standard streams.
    pub(crate) fn slave_stdio(&self) -> Result<Stdio> {
        let fd = self.slave.try_clone().map_err(|e| Error::io("open terminal", e))?;
        Ok(Stdio::from(fd))
    }
}

#[allow(unsafe_code)]
fn register(master: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is open and keeps the same descriptor until it is
    // dropped, and the `AsyncFd` owns it for its whole life.
    unsafe { AsyncFd::register(master) }.map_err(|e| Error::io("open terminal", io::Error::other(e.to_string())))
}

/// Tells the terminal (and so the program on it) its new size.
#[allow(unsafe_code)]
pub(crate) fn resize(master: &Master, cols: u16, rows: u16) -> Result<()> {
    let size = window(cols, rows);
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which
    // points at a live, properly laid out value for the whole call.
    let rc = unsafe { libc::ioctl(master.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &size as *const Winsize) };
    if rc == -1 {
        return Err(Error::io("resize", io::Error::last_os_error()));
    }
    Ok(())
}

/// Reads what the program writes to its terminal.
pub(crate) struct MasterReader(pub(crate) Master);

/// Writes what the program reads from its terminal.
pub(crate) struct MasterWriter(pub(crate) Master);

impl AsyncRead for MasterReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Linux answers EIO once the last slave descriptor is closed:
                // the program is gone, which is the end of its output.
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for MasterWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A terminal has no half-close; the program sees end of input when
        // it reads the EOF character, which the caller sends as data (^D).
        Poll::Ready(Ok(()))
    }
}
