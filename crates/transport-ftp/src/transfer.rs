//! [`FileTransfer`] over FTP: streaming, atomic puts, resumable gets, and
//! the operations FTP spreads over several commands (stat, nested mkdir).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha512};
use tether_core::raw::{check_expected_size, temporary_sibling, utf8_path};
use tether_core::{DirEntry, Error, ErrorKind, FileKind, FileTransfer, Metadata, PutOptions, Result, StatOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::connect::{FtpHost, Loan, Shared};
use crate::listing::Entry;
use crate::options::NameEncoding;
use crate::session::{DataStream, Listing, Session};
use crate::throttle::Pace;

/// Bytes moved per read or write of a transfer.
const TRANSFER_CHUNK: usize = 256 << 10;

/// Symbolic links followed in a row before a path is called a loop.
const MAX_LINK_DEPTH: usize = 16;

/// A path's parent and last name (`/a/b` → `/a`, `b`; `b` → ``, `b`).
fn split(path: &str) -> (&str, &str) {
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    match trimmed.rfind('/') {
        Some(0) => ("/", &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    }
}

/// Where a link's target is, seen from the link's directory.
fn resolve_link(parent: &str, target: &str) -> String {
    if target.starts_with('/') || parent.is_empty() {
        target.to_string()
    } else if parent.ends_with('/') {
        format!("{parent}{target}")
    } else {
        format!("{parent}/{target}")
    }
}

impl FtpHost {
    /// `path` as text this server can be sent, or the reason it cannot.
    fn text_path<'a>(&self, operation: &str, path: &'a Path) -> Result<&'a str> {
        let text = utf8_path(operation, path)?;
        if text.contains('\0') || text.contains('\r') {
            return Err(Error::new(ErrorKind::InvalidInput, operation.to_string())
                .with_context(format!("{text:?}: FTP cannot carry a NUL or a carriage return in a name")));
        }
        if self.shared.options.encoding == NameEncoding::Latin1 && text.chars().any(|c| u32::from(c) > 0xff) {
            return Err(Error::new(ErrorKind::Unsupported, operation.to_string())
                .with_context(format!("{text:?}: not representable in ftp_options.encoding latin-1")));
        }
        if text.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, operation.to_string()).with_context("an empty path"));
        }
        Ok(text)
    }

    /// Runs `work` on a borrowed session; a session that is still in step
    /// afterwards goes back to the pool, whatever `work` returned.
    async fn with_session<T>(
        &self,
        operation: &str,
        work: impl AsyncFnOnce(&mut Session, &Shared) -> Result<T>,
    ) -> Result<T> {
        let mut loan = self.borrow(operation).await?;
        let result = work(&mut loan.session, &self.shared).await;
        self.give_back(loan);
        result
    }

    /// [`Self::with_session`] under `path_timeout`: listings and stats.
    async fn on_paths<T>(
        &self,
        operation: &str,
        shown: &str,
        work: impl AsyncFnOnce(&mut Session, &Shared) -> Result<T>,
    ) -> Result<T> {
        let limit = self.shared.options.path_limit();
        // A session whose work is cut short is dropped with the future, never reused.
        tokio::time::timeout(limit, self.with_session(operation, work)).await.unwrap_or_else(|_| {
            Err(Error::new(ErrorKind::Timeout, operation.to_string())
                .with_context(format!("{shown}: not done within path_timeout ({:.1} s)", limit.as_secs_f64())))
        })
    }
}

/// The metadata of `path` (following links when asked), or `None` when it
/// does not exist.
async fn stat_on(session: &mut Session, shared: &Shared, path: &str, follow: bool) -> Result<Option<Metadata>> {
    let mut path = path.to_string();
    for _ in 0..MAX_LINK_DEPTH {
        let Some(entry) = entry_of(session, shared, &path).await? else { return Ok(None) };
        match (entry.metadata.kind, entry.link_target, follow) {
            (FileKind::Link, Some(target), true) => path = resolve_link(split(&path).0, &target),
            (FileKind::File, _, _) => {
                let mut metadata = entry.metadata;
                // `ls -l` gives minutes at best; MDTM gives seconds.
                if let Some(exact) = session.mtime(shared, "stat", &path).await? {
                    metadata.mtime = Some(exact);
                }
                return Ok(Some(metadata));
            }
            _ => return Ok(Some(entry.metadata)),
        }
    }
    Err(Error::new(ErrorKind::InvalidInput, "stat").with_context(format!("{path}: too many levels of symbolic links")))
}

/// The listing entry of `path`: its line in its parent's `LIST`, which
/// shows a link as a link, with its target.
async fn entry_of(session: &mut Session, shared: &Shared, path: &str) -> Result<Option<Entry>> {
    let (parent, name) = split(path);
    if name.is_empty() || name == "." || name == ".." {
        // The root (or a path that names a directory by itself): all FTP can tell is that it is one.
        return Ok(session.enter(shared, path).await?.then(|| Entry {
            name: path.to_string(),
            metadata: Metadata {
                kind: FileKind::Dir,
                size: 0,
                mode: 0o755,
                uid: None,
                gid: None,
                mtime: None,
                sha512: None,
            },
            link_target: None,
        }));
    }
    let parent = if parent.is_empty() { session.home.clone() } else { parent.to_string() };
    if !session.enter(shared, &parent).await? {
        return Ok(None);
    }
    let entries = session.list_here(shared, &parent, Listing::Links).await?;
    Ok(entries.into_iter().find(|entry| entry.name == name))
}

/// The SHA-512 of a file's content, streamed.
async fn sha512_on(session: &mut Session, shared: &Shared, path: &str) -> Result<String> {
    let mut stream = session.download(shared, path, 0).await?;
    let mut hasher = Sha512::new();
    let mut buffer = vec![0u8; TRANSFER_CHUNK];
    loop {
        let read = read_data(session, shared, &mut stream, &mut buffer, "stat", path).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    session.finish(shared, stream, "stat", path).await?;
    Ok(hex::encode(hasher.finalize()))
}

/// One read of a data connection, within `socket_timeout`; a failure
/// leaves the session broken (the transfer's state is unknown).
async fn read_data(
    session: &mut Session,
    shared: &Shared,
    stream: &mut DataStream,
    buffer: &mut [u8],
    operation: &str,
    path: &str,
) -> Result<usize> {
    let limit = shared.options.socket_limit();
    match tokio::time::timeout(limit, stream.read(buffer)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => {
            session.broken = true;
            Err(Error::io(operation.to_string(), e).with_context(format!("{path}: the data connection failed")))
        }
        Err(_) => {
            session.broken = true;
            Err(Error::new(ErrorKind::Timeout, operation.to_string())
                .with_context(format!("{path}: no data for {:.1} s", limit.as_secs_f64())))
        }
    }
}

/// One write to a data connection, within `socket_timeout`.
async fn write_data(
    session: &mut Session,
    shared: &Shared,
    stream: &mut DataStream,
    bytes: &[u8],
    path: &str,
) -> Result<()> {
    let limit = shared.options.socket_limit();
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            session.broken = true;
            Err(Error::io("put", e).with_context(format!("{path}: the data connection failed")))
        }
        Err(_) => {
            session.broken = true;
            Err(Error::new(ErrorKind::Timeout, "put")
                .with_context(format!("{path}: the server took no data for {:.1} s", limit.as_secs_f64())))
        }
    }
}

/// Why a refused `RETR` or `STOR` was refused: FTP servers answer `550`
/// or `553` for a missing file, a missing directory, a directory, and a
/// permission problem alike, so the path itself is looked at.
async fn explain_refusal(session: &mut Session, shared: &Shared, path: &str, refusal: Error, upload: bool) -> Error {
    if session.broken {
        return refusal;
    }
    let subject = if upload { split(path).0.to_string() } else { path.to_string() };
    let subject = if subject.is_empty() { session.home.clone() } else { subject };
    match stat_on(session, shared, &subject, true).await {
        Ok(None) => Error::new(ErrorKind::NotFound, refusal.operation().to_string())
            .with_context(format!("{subject}: no such file or directory")),
        Ok(Some(meta)) if !upload && meta.kind == FileKind::Dir => {
            Error::new(ErrorKind::InvalidInput, refusal.operation().to_string())
                .with_context(format!("{path} is a directory"))
        }
        Ok(Some(meta)) if upload && meta.kind != FileKind::Dir => {
            Error::new(ErrorKind::NotFound, "put").with_context(format!("{subject} is not a directory"))
        }
        Ok(Some(_)) if refusal.kind() == ErrorKind::NotFound => {
            Error::new(ErrorKind::PermissionDenied, refusal.operation().to_string())
                .with_context(refusal.context().unwrap_or_default().to_string())
        }
        _ => refusal,
    }
}

/// Removes an upload's temporary file when the upload is abandoned (its
/// future dropped): the removal runs on a fresh session in the background.
struct TemporaryUpload {
    host: Arc<FtpHost>,
    path: Option<String>,
}

impl TemporaryUpload {
    fn done(mut self) {
        self.path = None;
    }
}

impl Drop for TemporaryUpload {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let host = self.host.clone();
        runtime.spawn(async move {
            let removed =
                host.with_session("put", async |session, shared| session.remove_file(shared, &path).await).await;
            if let Err(err) = removed {
                tracing::warn!(%err, path, "could not remove an abandoned upload's temporary file");
            }
        });
    }
}

impl FtpHost {
    async fn put_inner(
        &self,
        loan: &mut Loan,
        source: &mut (dyn AsyncRead + Send + Unpin),
        path: &str,
        temp: &str,
        options: &PutOptions,
    ) -> Result<u64> {
        let shared = &self.shared;
        let session = &mut loan.session;
        let mode = match options.mode {
            Some(mode) => Some(mode),
            // An existing destination keeps its mode.
            None => stat_on(session, shared, path, true).await?.filter(|m| m.kind == FileKind::File).map(|m| m.mode),
        };
        let mut stream = match session.upload(shared, temp).await {
            Ok(stream) => stream,
            Err(refusal) => return Err(explain_refusal(session, shared, temp, refusal, true).await),
        };
        let mut pace = Pace::new(shared.options.write_speed_limit);
        let mut buffer = vec![0u8; TRANSFER_CHUNK];
        let mut written: u64 = 0;
        loop {
            let want = pace.chunk(buffer.len());
            let read = match source.read(&mut buffer[..want]).await {
                Ok(n) => n,
                Err(e) => {
                    // The data connection is closed with the session, not with ABOR.
                    session.broken = true;
                    return Err(Error::io("put", e).with_context(format!("{path}: reading the source")));
                }
            };
            if read == 0 {
                break;
            }
            write_data(session, shared, &mut stream, &buffer[..read], path).await?;
            written += read as u64;
            pace.moved(read).await;
        }
        session.collect_tickets(&mut stream).await;
        session.finish(shared, stream, "put", path).await?;
        check_expected_size("put", Path::new(path), options.expected_size, written)?;
        let stored = session.size(shared, "put", temp).await?;
        if stored.is_some_and(|stored| stored != written) {
            return Err(Error::new(ErrorKind::Corrupted, "put").with_context(format!(
                "{path}: sent {written} bytes, the server stored {}",
                stored.unwrap_or_default()
            )));
        }
        if let Some(mode) = mode {
            session.chmod(shared, temp, mode).await?;
            // Servers may drop the set-id and sticky bits on purpose
            // (vsftpd does, always): then the put fails rather than
            // leaving a file with less than was asked.
            if mode & 0o7000 != 0 {
                let applied = stat_on(session, shared, temp, false).await?.map(|m| m.mode & 0o7777);
                if applied != Some(mode) {
                    return Err(Error::new(ErrorKind::Unsupported, "put").with_context(format!(
                        "{path}: the server set mode {:o} when asked for {mode:o} (it does not set the set-id or sticky bits)",
                        applied.unwrap_or_default()
                    )));
                }
            }
        }
        if let Some(mtime) = options.mtime {
            session.set_mtime(shared, temp, mtime).await?;
        }
        session.rename(shared, temp, path).await?;
        Ok(written)
    }

    async fn get_inner(&self, loan: &mut Loan, path: &str, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        let shared = &self.shared;
        let expected = loan.session.size(shared, "get", path).await?;
        let mtime = match expected {
            Some(_) => loan.session.mtime(shared, "get", path).await?,
            None => None,
        };
        let mut stream = match loan.session.download(shared, path, 0).await {
            Ok(stream) => stream,
            Err(refusal) => return Err(explain_refusal(&mut loan.session, shared, path, refusal, false).await),
        };
        let mut pace = Pace::new(shared.options.read_speed_limit);
        let mut buffer = vec![0u8; TRANSFER_CHUNK];
        let mut received: u64 = 0;
        let mut resumes = 0;
        loop {
            let failure = loop {
                let want = pace.chunk(buffer.len());
                match read_data(&mut loan.session, shared, &mut stream, &mut buffer[..want], "get", path).await {
                    Ok(0) => break None,
                    Ok(read) => {
                        sink.write_all(&buffer[..read]).await.map_err(|e| {
                            Error::io("get", e).with_context(format!("{path}: writing the destination"))
                        })?;
                        received += read as u64;
                        pace.moved(read).await;
                    }
                    Err(err) => break Some(err),
                }
            };
            let failure = match failure {
                None => match loan.session.finish(shared, stream, "get", path).await {
                    Ok(()) if expected.is_none_or(|size| size == received) => return Ok(received),
                    Ok(()) => Error::new(ErrorKind::Corrupted, "get").with_context(format!(
                        "{path}: the server sent {received} of {} bytes",
                        expected.unwrap_or_default()
                    )),
                    Err(err) => err,
                },
                Some(err) => {
                    drop(stream);
                    loan.session.forget_data_route();
                    err
                }
            };
            let Some(size) = expected else { return Err(failure) };
            if resumes >= shared.options.extra.resume_attempts
                || received >= size
                || failure.kind() == ErrorKind::Corrupted
            {
                return Err(failure);
            }
            resumes += 1;
            tracing::info!(path, received, size, %failure, "resuming the download");
            stream = self.resume(loan, path, size, mtime, received).await.map_err(|err| {
                Error::new(err.kind(), "get").with_context(format!("{failure}; resuming failed: {err}"))
            })?;
        }
    }

    /// Opens a fresh session and asks for `path` from `offset`, once its
    /// size and modification time show it is the same file.
    async fn resume(
        &self,
        loan: &mut Loan,
        path: &str,
        size: u64,
        mtime: Option<std::time::SystemTime>,
        offset: u64,
    ) -> Result<DataStream> {
        let shared = &self.shared;
        let fresh = Session::open(shared).await?;
        let old = std::mem::replace(&mut loan.session, fresh);
        drop(old);
        let now_size = loan.session.size(shared, "get", path).await?;
        let now_mtime = match mtime {
            Some(_) => loan.session.mtime(shared, "get", path).await?,
            None => None,
        };
        if now_size != Some(size) || now_mtime != mtime {
            return Err(Error::new(ErrorKind::Corrupted, "get")
                .with_context(format!("{path} changed on the server during the download")));
        }
        loan.session.download(shared, path, offset).await
    }
}

#[async_trait]
impl FileTransfer for FtpHost {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        let path = self.text_path("put", remote)?;
        if options.owner.is_some() || options.group.is_some() {
            return Err(Error::new(ErrorKind::Unsupported, "put")
                .with_context(format!("{path}: FTP cannot set a file's owner or group")));
        }
        let temp = temporary_sibling(remote);
        let temp = self.text_path("put", &temp)?.to_string();
        let mut loan = self.borrow("put").await?;
        let host = self.me.upgrade().ok_or_else(|| Error::new(ErrorKind::ConnectionLost, "put"))?;
        let pending = TemporaryUpload { host, path: Some(temp.clone()) };
        let result = self.put_inner(&mut loan, source, path, &temp, options).await;
        match &result {
            Ok(_) => pending.done(),
            Err(_) => {
                // Clean up now, on this session if it is still in step.
                pending.done();
                let cleanup = if loan.session.broken {
                    drop(loan);
                    self.with_session("put", async |session, shared| session.remove_file(shared, &temp).await).await
                } else {
                    let removed = loan.session.remove_file(&self.shared, &temp).await;
                    self.give_back(loan);
                    removed
                };
                if let Err(err) = cleanup
                    && err.kind() != ErrorKind::NotFound
                {
                    tracing::warn!(%err, temp, "could not remove a failed upload's temporary file");
                }
                return result;
            }
        }
        self.give_back(loan);
        result
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        let path = self.text_path("get", remote)?;
        let mut loan = self.borrow("get").await?;
        let result = self.get_inner(&mut loan, path, sink).await;
        self.give_back(loan);
        result
    }

    async fn stat(&self, remote: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        let path = self.text_path("stat", remote)?;
        let metadata = self
            .on_paths("stat", path, async |session, shared| stat_on(session, shared, path, options.follow_links).await)
            .await?;
        match metadata {
            Some(mut metadata) if options.sha512 && metadata.kind == FileKind::File => {
                let digest =
                    self.with_session("stat", async |session, shared| sha512_on(session, shared, path).await).await?;
                metadata.sha512 = Some(digest);
                Ok(Some(metadata))
            }
            other => Ok(other),
        }
    }

    async fn list(&self, remote: &Path) -> Result<Vec<DirEntry>> {
        let path = self.text_path("list", remote)?;
        let entries = self
            .on_paths("list", path, async |session, shared| {
                if !session.enter(shared, path).await? {
                    return Err(match stat_on(session, shared, path, true).await? {
                        Some(_) => Error::new(ErrorKind::InvalidInput, "list")
                            .with_context(format!("{path} is not a directory")),
                        None => {
                            Error::new(ErrorKind::NotFound, "list").with_context(format!("{path}: no such directory"))
                        }
                    });
                }
                session.list_here(shared, path, Listing::Facts).await
            })
            .await?;
        let mut listing: Vec<DirEntry> =
            entries.into_iter().map(|entry| DirEntry { name: entry.name.into(), metadata: entry.metadata }).collect();
        listing.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    async fn mkdir(&self, remote: &Path, parents: bool) -> Result<()> {
        let path = self.text_path("mkdir", remote)?;
        self.on_paths("mkdir", path, async |session, shared| {
            if !parents {
                return match session.make_dir(shared, path).await {
                    Ok(()) => Ok(()),
                    Err(refusal) if session.broken => Err(refusal),
                    Err(refusal) => Err(match stat_on(session, shared, path, false).await? {
                        Some(_) => Error::new(ErrorKind::AlreadyExists, "mkdir").with_context(path.to_string()),
                        None => explain_refusal(session, shared, path, refusal, true).await,
                    }),
                };
            }
            let absolute = session.wire(path)?.replace('\0', "\n");
            let mut prefix = String::new();
            for part in absolute.split('/').filter(|p| !p.is_empty()) {
                prefix.push('/');
                prefix.push_str(part);
                if session.enter(shared, &prefix).await? {
                    continue;
                }
                if let Err(refusal) = session.make_dir(shared, &prefix).await {
                    // Made meanwhile by someone else is fine; anything else is not.
                    if session.broken || !session.enter(shared, &prefix).await? {
                        return Err(match stat_on(session, shared, &prefix, true).await? {
                            Some(_) => Error::new(ErrorKind::AlreadyExists, "mkdir")
                                .with_context(format!("{prefix} exists and is not a directory")),
                            None => refusal,
                        });
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn remove(&self, remote: &Path) -> Result<()> {
        let path = self.text_path("remove", remote)?;
        self.on_paths("remove", path, async |session, shared| {
            let Some(metadata) = stat_on(session, shared, path, false).await? else {
                return Err(Error::new(ErrorKind::NotFound, "remove")
                    .with_context(format!("{path}: no such file or directory")));
            };
            if metadata.kind != FileKind::Dir {
                return session.remove_file(shared, path).await;
            }
            match session.remove_dir(shared, path).await {
                Ok(()) => Ok(()),
                Err(refusal) if session.broken => Err(refusal),
                Err(refusal) => {
                    let occupied = session.enter(shared, path).await?
                        && !session.list_here(shared, path, Listing::Facts).await?.is_empty();
                    Err(if occupied {
                        Error::new(ErrorKind::DirectoryNotEmpty, "remove").with_context(path.to_string())
                    } else {
                        refusal
                    })
                }
            }
        })
        .await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let from = self.text_path("rename", from)?;
        let to = self.text_path("rename", to)?;
        self.on_paths("rename", from, async |session, shared| session.rename(shared, from, to).await).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_parent_and_name() {
        assert_eq!(split("/a/b"), ("/a", "b"));
        assert_eq!(split("/a"), ("/", "a"));
        assert_eq!(split("/a/b/"), ("/a", "b"));
        assert_eq!(split("b"), ("", "b"));
        assert_eq!(split("/"), ("/", ""));
        assert_eq!(resolve_link("/d", "t"), "/d/t");
        assert_eq!(resolve_link("/d", "/abs"), "/abs");
        assert_eq!(resolve_link("/", "t"), "/t");
    }
}
