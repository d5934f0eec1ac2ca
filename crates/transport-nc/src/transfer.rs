//! The `FileTransfer`: the bytes of `put` and `get` over a netcat data
//! connection, everything else (stat, list, the atomic commit) through
//! core's shell-command files on the same command transport.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tether_core::raw::read_full;
use tether_core::raw::shell_files::ShellFiles;
use tether_core::{
    BoxStream, Dialer, DirEntry, Error, ErrorKind, FileTransfer, Metadata, PutOptions, Result, StatOptions, Transport,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OnceCell;

use crate::listener::{Job, Listener, Outcome, Reserved, unexpected_answer};
use crate::options::{NcOptions, Verify};
use crate::probe::{Probe, probe};

/// Bytes per write to (and read from) the data connection.
const CHUNK: usize = 256 << 10;

/// Pause between connects to a listener that refused: the check saw the
/// port listen, yet the address it listens on may take a moment.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Files over netcat, for hosts with a shell and `nc` but no file service.
pub struct NcFiles {
    shell: ShellFiles,
    options: NcOptions,
    dialer: Dialer,
    address: String,
    probe: OnceCell<Probe>,
    reserved: Reserved,
}

impl std::fmt::Debug for NcFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcFiles")
            .field("address", &self.address)
            .field("dialer", &self.dialer)
            .field("flavour", &self.probe.get().map(|p| p.flavour))
            .finish_non_exhaustive()
    }
}

impl NcFiles {
    /// Files moved by netcat on the host whose commands `commands` runs,
    /// reached at `address` through `dialer`. A [`tether_core::Host`] builds
    /// this from its `term` connection; this is for programs that hold a
    /// command transport of their own.
    pub fn new(commands: Arc<dyn Transport>, options: NcOptions, dialer: Dialer, address: impl Into<String>) -> Self {
        NcFiles {
            shell: ShellFiles::new(commands),
            options,
            dialer,
            address: address.into(),
            probe: OnceCell::new(),
            reserved: Reserved::default(),
        }
    }

    /// The host's netcat flavour, asked once.
    pub async fn flavour(&self) -> Result<crate::Flavour> {
        Ok(self.probe().await?.flavour)
    }

    async fn probe(&self) -> Result<&Probe> {
        self.probe.get_or_try_init(|| probe(self.shell.inner(), &self.options)).await
    }

    fn limit(&self) -> Duration {
        self.options.listener_timeout()
    }

    /// The data connection to the listener, retrying refusals until
    /// `listener_timeout` runs out.
    async fn dial(&self, port: u16) -> Result<BoxStream> {
        let deadline = tokio::time::Instant::now() + self.limit();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.dialer.connect(&self.address, port, left.max(Duration::from_millis(1))).await {
                Ok(dialed) => return Ok(dialed.boxed()),
                Err(err)
                    if err.kind() == ErrorKind::ConnectFailed
                        && tokio::time::Instant::now() + RECONNECT_PAUSE < deadline =>
                {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn listen(&self, job: &Job, shown: &Path) -> Result<(Listener, BoxStream)> {
        let probe = self.probe().await?;
        // Bound to the address the host is reached at, where netcat can
        // bind one: nobody on another network of the host can connect.
        let bind = self.address.parse().ok();
        let mut listener =
            Listener::start(self.shell.inner(), probe, &self.options, &self.reserved, job, bind, shown).await?;
        let stream = self.dial(listener.port()).await?;
        listener.arm().await?;
        Ok((listener, stream))
    }

    /// Streams `source` into the fresh temporary file `temp`; returns the
    /// bytes sent once the host's copy is verified.
    async fn receive(&self, source: &mut (dyn AsyncRead + Send + Unpin), temp: &Path, remote: &Path) -> Result<u64> {
        let shown = remote.display();
        let limit = self.limit();
        let (mut listener, mut stream) = self.listen(&Job::Receive { temp: temp.to_path_buf() }, remote).await?;
        let mut hasher = (self.options.verify == Verify::Sha256).then(Hashing::start);
        let mut buffer = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = read_full(source, &mut buffer)
                .await
                .map_err(|e| Error::io("put", e).with_context(format!("{shown}: reading the source")))?;
            if n == 0 {
                break;
            }
            match tokio::time::timeout(limit, stream.write_all(&buffer[..n])).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.broken("put", &mut listener, remote, e.to_string()).await),
                Err(_) => return Err(stalled("put", remote, limit)),
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&buffer[..n]).await;
            }
            sent += n as u64;
        }
        match tokio::time::timeout(limit, stream.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.broken("put", &mut listener, remote, e.to_string()).await),
            Err(_) => return Err(stalled("put", remote, limit)),
        }
        let answered = unexpected_answer(&mut stream, limit).await?;
        drop(stream);
        let outcome = listener.finish(limit).await?;
        self.check_exit("put", &mut listener, &outcome, remote).await?;
        if answered > 0 {
            return Err(Error::new(ErrorKind::Protocol, "put").with_context(format!(
                "{shown}: the listener on port {} sent {answered} bytes back: it is not netcat receiving",
                listener.port()
            )));
        }
        let ours = match hasher {
            Some(hasher) => Some(hasher.finish().await?),
            None => None,
        };
        verify("put", remote, sent, outcome.size, ours, outcome.sha256.as_deref(), self.options.verify)?;
        listener.keep().await;
        Ok(sent)
    }

    /// The error for a data connection that broke: netcat's own word when
    /// it has one (killed, failed), else the connection's.
    async fn broken(&self, operation: &str, listener: &mut Listener, remote: &Path, why: String) -> Error {
        let outcome = listener.finish(Duration::from_secs(2)).await.unwrap_or_default();
        let chatter = listener.chatter_text().await;
        let status = outcome.status.map(|s| format!(", netcat's status {s}")).unwrap_or_default();
        Error::new(ErrorKind::ConnectionLost, operation).with_context(format!(
            "{}: the data connection to port {} broke ({why}{status}) {}",
            remote.display(),
            listener.port(),
            crate::probe::clip(chatter.trim())
        ))
    }

    async fn check_exit(
        &self,
        operation: &str,
        listener: &mut Listener,
        outcome: &Outcome,
        remote: &Path,
    ) -> Result<()> {
        match outcome.status {
            Some(0) => Ok(()),
            status => {
                let chatter = listener.chatter_text().await;
                let status = status.map_or("no status".to_string(), |s| format!("status {s}"));
                Err(Error::new(ErrorKind::ConnectionLost, operation).with_context(format!(
                    "{}: netcat on port {} ended with {status}: {}",
                    remote.display(),
                    listener.port(),
                    crate::probe::clip(chatter.trim())
                )))
            }
        }
    }
}

/// A SHA-256 computed on a thread of its own while the data flows, so the
/// copy loop only hands chunks over: the hash costs this process no time
/// where a core is free.
struct Hashing {
    chunks: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    digest: tokio::task::JoinHandle<String>,
}

impl Hashing {
    fn start() -> Self {
        let (chunks, mut arriving) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = arriving.blocking_recv() {
                hasher.update(&chunk);
            }
            hex::encode(hasher.finalize())
        });
        Hashing { chunks: Some(chunks), digest }
    }

    async fn update(&mut self, data: &[u8]) {
        if let Some(chunks) = &self.chunks {
            // The thread only ends when `chunks` is dropped: a send cannot fail.
            let _ = chunks.send(bytes::Bytes::copy_from_slice(data)).await;
        }
    }

    async fn finish(mut self) -> Result<String> {
        self.chunks.take();
        (&mut self.digest).await.map_err(|e| Error::new(ErrorKind::Io, "nc").with_context(format!("hashing: {e}")))
    }
}

impl Drop for Hashing {
    fn drop(&mut self) {
        // Ends the thread (its channel closes); the digest is not wanted.
        self.chunks.take();
    }
}

/// The error for a data connection that did not move for `limit`.
fn stalled(operation: &str, remote: &Path, limit: Duration) -> Error {
    Error::new(ErrorKind::Timeout, operation).with_context(format!(
        "{}: the data connection stalled for {:.1} s (listener_timeout)",
        remote.display(),
        limit.as_secs_f64()
    ))
}

/// Compares what this side counted and hashed with what the host reported.
fn verify(
    operation: &str,
    remote: &Path,
    here: u64,
    there: Option<u64>,
    ours: Option<String>,
    digest: Option<&str>,
    how: Verify,
) -> Result<()> {
    let corrupted = |what: String| {
        Err(Error::new(ErrorKind::Corrupted, operation).with_context(format!("{}: {what}", remote.display())))
    };
    if how != Verify::None {
        match there {
            Some(there) if there == here => {}
            Some(there) => return corrupted(format!("{here} bytes here, {there} on the host")),
            None => return corrupted("the host reported no size".to_string()),
        }
    }
    if let Some(ours) = ours {
        match digest {
            Some(theirs) if theirs == ours => {}
            Some(theirs) => return corrupted(format!("SHA-256 differs: {ours} here, {theirs} on the host")),
            None => return corrupted("the host reported no SHA-256".to_string()),
        }
    }
    Ok(())
}

#[async_trait]
impl FileTransfer for NcFiles {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        // Before anything is staged: a host without a usable netcat fails
        // with nothing to clean up.
        self.probe().await?;
        let staged = self.shell.stage_put(remote, options).await?;
        let upload = self.receive(source, staged.temporary(), staged.path()).await;
        staged.finish(upload).await
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        self.probe().await?;
        let expected = self.shell.regular_file_size("get", remote).await?;
        let shown = remote.display();
        let limit = self.limit();
        let (mut listener, mut stream) = self.listen(&Job::Send { file: remote.to_path_buf() }, remote).await?;
        let mut hasher = (self.options.verify == Verify::Sha256).then(Hashing::start);
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0u64;
        // Exactly the size stat gave: OpenBSD's and the traditional netcat
        // keep the connection open after the file's end, until we close it.
        while received < expected {
            let want = buffer.len().min((expected - received) as usize);
            let n = match tokio::time::timeout(limit, stream.read(&mut buffer[..want])).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(self.broken("get", &mut listener, remote, e.to_string()).await),
                Err(_) => return Err(stalled("get", remote, limit)),
            };
            sink.write_all(&buffer[..n])
                .await
                .map_err(|e| Error::io("get", e).with_context(format!("{shown}: writing the sink")))?;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&buffer[..n]).await;
            }
            received += n as u64;
        }
        drop(stream);
        let outcome = listener.finish(limit).await?;
        self.check_exit("get", &mut listener, &outcome, remote).await?;
        if received != expected {
            return Err(Error::new(ErrorKind::Corrupted, "get")
                .with_context(format!("{shown}: {received} bytes arrived, the file has {expected}")));
        }
        let ours = match hasher {
            Some(hasher) => Some(hasher.finish().await?),
            None => None,
        };
        verify("get", remote, received, outcome.size, ours, outcome.sha256.as_deref(), self.options.verify)?;
        listener.keep().await;
        sink.flush().await.map_err(|e| Error::io("get", e).with_context(format!("{shown}: flushing the sink")))?;
        Ok(received)
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        self.shell.stat(path, options).await
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        self.shell.list(path).await
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        self.shell.mkdir(path, parents).await
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.shell.remove(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.shell.rename(from, to).await
    }
}

impl NcFiles {
    /// The shell-command files underneath (stat, list, …).
    pub fn shell(&self) -> &ShellFiles {
        &self.shell
    }
}
