//! Deliberately broken transports: each [`Mutant`] wraps a working
//! connection and gets one thing wrong, the way real transports do. The
//! suite's own test runs every check against each and requires a failure;
//! a mutant that passes is a hole in the suite.
//!
//! Wrap any factory in a [`MutantFactory`] and build the [`Subject`](super::Subject)'s
//! host with it.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::command::{Command, ExitStatus, Pty};
use crate::config::HostConfig;
use crate::connection::{ConnectContext, Connection, ConnectionFactory};
use crate::error::{Error, ErrorKind, Result};
use crate::files::{DirEntry, FileTransfer, Metadata, PutOptions, StatOptions};
use crate::process::{Process, ProcessControl};
use crate::registry::Capabilities;
use crate::transport::Transport;
use crate::tunnel::{BoxStream, Tunnel};

/// One way of being broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// `put` ignores the mode it is given.
    PutIgnoresMode,
    /// `rename` refuses to replace an existing file.
    RenameWillNotOverwrite,
    /// Commands' stderr arrives mixed into stdout.
    MergesStderr,
    /// `kill` does nothing.
    KillDoesNothing,
    /// `put` drops the last byte of files over 1 MiB.
    PutDropsLastByte,
    /// `list` leaves out names with a space.
    ListDropsSpacedNames,
    /// Half-closing a stream closes it both ways.
    LosesHalfClose,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 7] = [
        Mutant::PutIgnoresMode,
        Mutant::RenameWillNotOverwrite,
        Mutant::MergesStderr,
        Mutant::KillDoesNothing,
        Mutant::PutDropsLastByte,
        Mutant::ListDropsSpacedNames,
        Mutant::LosesHalfClose,
    ];
}

/// A factory whose connections carry `mutant`.
#[derive(Debug)]
pub struct MutantFactory {
    inner: Arc<dyn ConnectionFactory>,
    mutant: Mutant,
}

impl MutantFactory {
    /// Connections of `inner`, broken by `mutant`.
    pub fn new(inner: Arc<dyn ConnectionFactory>, mutant: Mutant) -> Self {
        MutantFactory { inner, mutant }
    }
}

#[async_trait]
impl ConnectionFactory for MutantFactory {
    fn connection_key(&self, scheme: &str) -> Result<String> {
        self.inner.connection_key(scheme)
    }

    fn capabilities(&self, scheme: &str) -> Result<Capabilities> {
        self.inner.capabilities(scheme)
    }

    async fn connect(
        &self,
        host: Arc<HostConfig>,
        scheme: &str,
        context: ConnectContext,
    ) -> Result<Arc<dyn Connection>> {
        let inner = self.inner.connect(host, scheme, context).await?;
        Ok(Arc::new(MutantConnection { inner, mutant: self.mutant }))
    }
}

#[derive(Debug)]
struct MutantConnection {
    inner: Arc<dyn Connection>,
    mutant: Mutant,
}

#[async_trait]
impl Connection for MutantConnection {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        let inner = self.inner.transport()?;
        Some(Arc::new(MutantTransport { inner, mutant: self.mutant }))
    }

    async fn file_transfer(&self, scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        let inner = self.inner.file_transfer(scheme).await?;
        Ok(Arc::new(MutantFiles { inner, mutant: self.mutant }))
    }

    fn tunnel(&self) -> Option<Arc<dyn Tunnel>> {
        let inner = self.inner.tunnel()?;
        Some(Arc::new(MutantTunnel { inner, mutant: self.mutant }))
    }

    fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

#[derive(Debug)]
struct MutantTransport {
    inner: Arc<dyn Transport>,
    mutant: Mutant,
}

#[async_trait]
impl Transport for MutantTransport {
    async fn spawn(&self, command: &Command) -> Result<Process> {
        let mut process = self.inner.spawn(command).await?;
        match self.mutant {
            Mutant::MergesStderr => {
                let (writer, reader) = tokio::io::duplex(64 << 10);
                let (stdout, stderr) = (process.stdout.take(), process.stderr.take());
                tokio::spawn(async move {
                    let writer = tokio::sync::Mutex::new(writer);
                    let pump = |source: Option<crate::BoxReader>| {
                        let writer = &writer;
                        async move {
                            let Some(mut source) = source else { return };
                            let mut buf = vec![0u8; 16 << 10];
                            while let Ok(n @ 1..) = source.read(&mut buf).await {
                                if writer.lock().await.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    };
                    tokio::join!(pump(stdout), pump(stderr));
                });
                Ok(Process::new(
                    process.stdin.take(),
                    Some(Box::pin(reader)),
                    Some(Box::pin(tokio::io::empty())),
                    Box::new(Deaf { inner: process, kills: true }),
                ))
            }
            Mutant::KillDoesNothing => {
                let (stdin, stdout, stderr) = (process.stdin.take(), process.stdout.take(), process.stderr.take());
                Ok(Process::new(stdin, stdout, stderr, Box::new(Deaf { inner: process, kills: false })))
            }
            _ => Ok(process),
        }
    }

    async fn shell(&self, pty: &Pty) -> Result<Process> {
        self.inner.shell(pty).await
    }
}

/// The control of a wrapped process; with `kills` false, `kill` is a no-op.
#[derive(Debug)]
struct Deaf {
    inner: Process,
    kills: bool,
}

#[async_trait]
impl ProcessControl for Deaf {
    async fn wait(&mut self) -> Result<ExitStatus> {
        self.inner.wait().await
    }

    async fn kill(&mut self) -> Result<()> {
        if self.kills { self.inner.kill().await } else { Ok(()) }
    }
}

#[derive(Debug)]
struct MutantFiles {
    inner: Arc<dyn FileTransfer>,
    mutant: Mutant,
}

#[async_trait]
impl FileTransfer for MutantFiles {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        let mut options = options.clone();
        match self.mutant {
            Mutant::PutIgnoresMode => {
                options.mode = None;
                self.inner.put(source, remote, &options).await
            }
            Mutant::PutDropsLastByte => {
                options.expected_size = None;
                let mut short = DropsLastByte { inner: source, total: 0, held: None, done: false };
                self.inner.put(&mut short, remote, &options).await
            }
            _ => self.inner.put(source, remote, &options).await,
        }
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        self.inner.get(remote, sink).await
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        self.inner.stat(path, options).await
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        let mut entries = self.inner.list(path).await?;
        if self.mutant == Mutant::ListDropsSpacedNames {
            entries.retain(|e| !e.name.as_encoded_bytes().contains(&b' '));
        }
        Ok(entries)
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        self.inner.mkdir(path, parents).await
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.inner.remove(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        if self.mutant == Mutant::RenameWillNotOverwrite && self.inner.stat(to, StatOptions::default()).await?.is_some()
        {
            return Err(Error::new(ErrorKind::AlreadyExists, "rename").with_context(to.display().to_string()));
        }
        self.inner.rename(from, to).await
    }
}

/// A source that withholds its last byte when it gave more than 1 MiB.
struct DropsLastByte<'a> {
    inner: &'a mut (dyn AsyncRead + Send + Unpin),
    total: u64,
    held: Option<u8>,
    done: bool,
}

impl AsyncRead for DropsLastByte<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let mut scratch = vec![0u8; buf.remaining().max(2)];
        let mut inner_buf = ReadBuf::new(&mut scratch[..buf.remaining().max(1)]);
        std::task::ready!(Pin::new(&mut *self.inner).poll_read(cx, &mut inner_buf))?;
        let got = inner_buf.filled().to_vec();
        if got.is_empty() {
            self.done = true;
            // End of input: the held byte is the last one; drop it from large files.
            if let Some(last) = self.held.take()
                && self.total <= 1 << 20
            {
                buf.put_slice(&[last]);
            }
            return Poll::Ready(Ok(()));
        }
        self.total += got.len() as u64;
        let mut out = Vec::with_capacity(got.len());
        out.extend(self.held.take());
        out.extend_from_slice(&got);
        self.held = out.pop();
        buf.put_slice(&out);
        if out.is_empty() {
            // Nothing to hand out yet: ask again rather than signal end of input.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug)]
struct MutantTunnel {
    inner: Arc<dyn Tunnel>,
    mutant: Mutant,
}

#[async_trait]
impl Tunnel for MutantTunnel {
    async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream> {
        let stream = self.inner.open_stream(host, port).await?;
        if self.mutant == Mutant::LosesHalfClose {
            return Ok(Box::new(ClosesBothWays { inner: stream, shut: false }));
        }
        Ok(stream)
    }
}

/// A stream whose half-close also ends its reading side.
struct ClosesBothWays {
    inner: BoxStream,
    shut: bool,
}

impl AsyncRead for ClosesBothWays {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosesBothWays {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.shut = true;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
