//! Moving files: the [`FileTransfer`] trait, its options and results, and the
//! `put_file` / `get_file` conveniences that work with local paths.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::Future;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::{Error, ErrorKind, Result};

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only when links are not followed).
    Link,
    /// A character device.
    Chr,
    /// A block device.
    Blk,
    /// A named pipe.
    Fifo,
    /// A socket.
    Sock,
    /// Anything else.
    Other,
}

/// What `stat` knows about a path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Metadata {
    /// What the path is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Owner's numeric id, when the transport tells.
    pub uid: Option<u32>,
    /// Group's numeric id, when the transport tells.
    pub gid: Option<u32>,
    /// Last modification, when the transport tells.
    #[serde(serialize_with = "serialize_unix_time")]
    pub mtime: Option<SystemTime>,
    /// SHA-512 of the content, lower-case hex, when asked for and the path is a file.
    pub sha512: Option<String>,
}

fn serialize_unix_time<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn serialize_lossy<S: serde::Serializer>(name: &OsString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&name.to_string_lossy())
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirEntry {
    /// The entry's name (no directory part): any bytes but `/` and NUL, as
    /// POSIX file names are. Serialized as text, invalid UTF-8 replaced.
    #[serde(serialize_with = "serialize_lossy")]
    pub name: OsString,
    /// Its metadata, without checksum.
    pub metadata: Metadata,
}

/// How to `stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatOptions {
    /// Describe the link's target instead of the link.
    pub follow_links: bool,
    /// Compute the SHA-512 of a regular file.
    pub sha512: bool,
}

/// How to `put`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Permission bits of the new file. Without it, an existing destination
    /// keeps its mode and a new file gets `0o644`.
    pub mode: Option<u32>,
    /// Owner (name or numeric id).
    pub owner: Option<String>,
    /// Group (name or numeric id).
    pub group: Option<String>,
    /// Modification time to set (`put_file` with `preserve` fills it in).
    pub mtime: Option<SystemTime>,
    /// The number of bytes the source will give, when known: the transfer
    /// fails, leaving the destination as it was, if a different count arrives.
    pub expected_size: Option<u64>,
}

/// Moves files to and from a host.
///
/// Remote paths are [`Path`]s: on the Unix systems Tether runs on, a `Path`
/// holds any bytes, as a remote POSIX file name may, and `&str`, `String`
/// and `OsStr` all turn into one with `.as_ref()` or `Path::new`. A
/// transport reads them as `/`-separated bytes; one that can only carry
/// UTF-8 names leaves [`crate::Capabilities::byte_names`] unset and answers
/// a name that is not UTF-8 with [`ErrorKind::Unsupported`].
///
/// Every `put` is atomic: the data goes to a temporary sibling of the
/// destination, its size is checked, and only then is it renamed over the
/// destination. A failed `put` leaves the destination exactly as it was.
#[async_trait]
pub trait FileTransfer: Send + Sync + fmt::Debug {
    /// Streams `source` into the file `remote`; returns the bytes written.
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64>;

    /// Streams the file `remote` into `sink`; returns the bytes read.
    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64>;

    /// Describes `path`; `None` when it does not exist.
    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>>;

    /// Lists a directory, sorted by name, without `.` and `..`.
    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>>;

    /// Creates a directory; with `parents`, its missing parents too, and an
    /// existing directory is then no error.
    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()>;

    /// Removes a file, a link or an empty directory.
    async fn remove(&self, path: &Path) -> Result<()>;

    /// Renames `from` to `to`, replacing a file at `to`.
    async fn rename(&self, from: &Path, to: &Path) -> Result<()>;
}

/// The longest file name most filesystems take, in bytes.
const NAME_MAX: usize = 255;

/// A name for the temporary sibling of `path` that `put` writes first:
/// same directory (so the rename is atomic), hidden, unique, and no longer
/// than a file name may be (a long name is shortened to leave room for the
/// marks; a UTF-8 name keeps whole characters).
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    let (dir, name) = match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => (&bytes[..=i], &bytes[i + 1..]),
        None => (&b""[..], bytes),
    };
    let nonce: u64 = {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded per process and per instance: unique enough for
        // a name that is also created exclusively.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.finish()
    };
    let marks = format!(".tether-{nonce:016x}.tmp");
    let room = NAME_MAX - 1 - marks.len();
    let mut end = name.len().min(room);
    if let Ok(text) = std::str::from_utf8(name) {
        while !text.is_char_boundary(end) {
            end -= 1;
        }
    }
    let mut sibling = Vec::with_capacity(dir.len() + 1 + end + marks.len());
    sibling.extend_from_slice(dir);
    sibling.push(b'.');
    sibling.extend_from_slice(&name[..end]);
    sibling.extend_from_slice(marks.as_bytes());
    PathBuf::from(OsString::from_vec(sibling))
}

/// The path as text, for a transport that can only carry UTF-8 names (one
/// that does not declare [`crate::Capabilities::byte_names`]); any other
/// name is refused with [`ErrorKind::Unsupported`] before anything is sent.
pub fn utf8_path<'a>(operation: &str, path: &'a Path) -> Result<&'a str> {
    path.to_str().ok_or_else(|| {
        Error::new(ErrorKind::Unsupported, operation)
            .with_context(format!("{}: this transport carries UTF-8 names only", path.display()))
    })
}

/// Fails unless `actual` matches the caller's expected size.
pub fn check_expected_size(operation: &str, path: &Path, expected: Option<u64>, actual: u64) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(Error::new(ErrorKind::Corrupted, operation)
            .with_context(format!("{}: expected {expected} bytes, got {actual}", path.display()))),
        _ => Ok(()),
    }
}

/// Reads until `buffer` is full or the source ends; returns the bytes read.
/// Transports use it to send large, even chunks whatever sizes the source
/// hands out.
pub async fn read_full(source: &mut (dyn AsyncRead + Send + Unpin), buffer: &mut [u8]) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Called with the running byte count during `put_file` / `get_file`.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Wraps a reader and reports how many bytes went through it.
struct Counting<'a, R> {
    inner: R,
    total: u64,
    progress: Option<Progress<'a>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<'_, R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.total += read;
            if let Some(progress) = self.progress {
                progress(self.total);
            }
        }
        poll
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.total += n as u64;
            if let Some(progress) = self.progress {
                progress(self.total);
            }
        }
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes moved per read when a local file is streamed.
const LOCAL_BUFFER: usize = 256 << 10;

/// Bytes `get_file` writes between two background syncs of the file's data:
/// the disk works while the transfer goes on, and the final fsync only waits
/// for the tail (on a 1 GiB download that wait alone was 0.4–0.6 s, a tenth
/// of the transfer, which tools that do not fsync never pay).
const WRITEBACK_EVERY: u64 = 64 << 20;

/// A writer into a local file that starts the file's writeback every
/// [`WRITEBACK_EVERY`] bytes, one `fdatasync` at a time on a blocking thread.
/// A failed sync fails the next write or the flush: the kernel reports a
/// writeback error to one sync only, so the final one may not see it.
struct Writeback<W> {
    inner: W,
    /// The same open file, for the syncs; `None` when it could not be shared.
    file: Option<Arc<std::fs::File>>,
    since: u64,
    syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl<W> Writeback<W> {
    /// The background sync's outcome, once it is done.
    fn poll_sync(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(task) = self.syncing.as_mut() else { return Poll::Ready(Ok(())) };
        let done = ready!(Pin::new(task).poll(cx));
        self.syncing = None;
        Poll::Ready(done.unwrap_or_else(|e| Err(std::io::Error::other(e))))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Writeback<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.syncing.as_ref().is_some_and(|task| task.is_finished())
            && let Poll::Ready(Err(err)) = self.poll_sync(cx)
        {
            return Poll::Ready(Err(err));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.since += n as u64;
            if self.since >= WRITEBACK_EVERY
                && self.syncing.is_none()
                && let Some(file) = self.file.clone()
            {
                self.since = 0;
                self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            }
        }
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.poll_sync(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Uploads the local file `local` to `remote`. With `preserve`, the local
/// file's mode and modification time are applied unless `options` sets them.
pub async fn put_file(
    files: &dyn FileTransfer,
    local: &Path,
    remote: &Path,
    options: &PutOptions,
    preserve: bool,
    progress: Option<Progress<'_>>,
) -> Result<u64> {
    let shown = local.display().to_string();
    let file = tokio::fs::File::open(local).await.map_err(|e| Error::io("put", e).with_context(shown.clone()))?;
    let meta = file.metadata().await.map_err(|e| Error::io("put", e).with_context(shown.clone()))?;
    if meta.is_dir() {
        return Err(Error::new(ErrorKind::InvalidInput, "put").with_context(format!("{shown} is a directory")));
    }
    let mut options = options.clone();
    options.expected_size.get_or_insert(meta.len());
    if preserve {
        use std::os::unix::fs::PermissionsExt;
        options.mode.get_or_insert(meta.permissions().mode() & 0o7777);
        if let Ok(mtime) = meta.modified() {
            options.mtime.get_or_insert(mtime);
        }
    }
    let reader = tokio::io::BufReader::with_capacity(LOCAL_BUFFER, file);
    let mut counting = Counting { inner: reader, total: 0, progress };
    files.put(&mut counting, remote, &options).await
}

/// Downloads `remote` to the local file `local`, atomically: the bytes go to
/// a temporary sibling, which replaces `local` only once the size matches the
/// remote file's.
pub async fn get_file(
    files: &dyn FileTransfer,
    remote: &Path,
    local: &Path,
    progress: Option<Progress<'_>>,
) -> Result<u64> {
    let shown = local.display().to_string();
    let expected = match files.stat(remote, StatOptions { follow_links: true, sha512: false }).await? {
        None => return Err(Error::new(ErrorKind::NotFound, "get").with_context(remote.display().to_string())),
        Some(meta) if meta.kind == FileKind::Dir => {
            return Err(
                Error::new(ErrorKind::InvalidInput, "get").with_context(format!("{} is a directory", remote.display()))
            );
        }
        Some(meta) => meta.size,
    };
    let local_path = match tokio::fs::metadata(local).await {
        Ok(m) if m.is_dir() => {
            let bytes = remote.as_os_str().as_bytes();
            let name = bytes.rsplit(|&b| b == b'/').next().filter(|n| !n.is_empty() && *n != b"..");
            local.join(name.map_or_else(|| OsStr::new("download"), OsStr::from_bytes))
        }
        _ => local.to_path_buf(),
    };
    let temp = temporary_sibling(&local_path);
    let result = async {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .map_err(|e| Error::io("get", e).with_context(shown.clone()))?;
        let shared = match file.try_clone().await {
            Ok(clone) => Some(Arc::new(clone.into_std().await)),
            Err(_) => None,
        };
        let writer = tokio::io::BufWriter::with_capacity(LOCAL_BUFFER, file);
        let writer = Writeback { inner: writer, file: shared, since: 0, syncing: None };
        let mut counting = Counting { inner: writer, total: 0, progress };
        let got = files.get(remote, &mut counting).await?;
        counting.flush().await.map_err(|e| Error::io("get", e).with_context(shown.clone()))?;
        let file = counting.inner.inner.into_inner();
        file.sync_all().await.map_err(|e| Error::io("get", e).with_context(shown.clone()))?;
        let written = file.metadata().await.map_err(|e| Error::io("get", e).with_context(shown.clone()))?.len();
        check_expected_size("get", remote, Some(expected), got)?;
        check_expected_size("get", local, Some(got), written)?;
        tokio::fs::rename(&temp, &local_path).await.map_err(|e| Error::io("get", e).with_context(shown.clone()))?;
        Ok(got)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_sibling_stays_in_the_directory() {
        let t = temporary_sibling(Path::new("/a/b/file.txt")).into_os_string().into_string().unwrap();
        assert!(t.starts_with("/a/b/.file.txt.tether-"), "{t}");
        assert!(t.ends_with(".tmp"));
        assert_ne!(temporary_sibling(Path::new("x")), temporary_sibling(Path::new("x")));
        assert!(temporary_sibling(Path::new("x")).as_os_str().as_bytes().starts_with(b".x.tether-"));
    }

    #[test]
    fn temporary_sibling_of_a_long_name_fits_a_file_name() {
        for name in ["n".repeat(255), "ü".repeat(127), format!("{}x", "日".repeat(80))] {
            let t = temporary_sibling(Path::new(&format!("/dir/{name}"))).into_os_string().into_string().unwrap();
            let sibling = t.strip_prefix("/dir/").unwrap();
            assert!(sibling.len() <= 255, "{} bytes", sibling.len());
            assert!(sibling.ends_with(".tmp") && sibling.starts_with('.'));
            assert!(name.starts_with(&sibling[1..sibling.find(".tether-").unwrap()]));
        }
    }

    #[test]
    fn temporary_sibling_keeps_bytes_that_are_not_utf8() {
        let name = OsStr::from_bytes(b"/d/caf\xe9 \xff");
        let t = temporary_sibling(Path::new(name));
        assert!(t.as_os_str().as_bytes().starts_with(b"/d/.caf\xe9 \xff.tether-"), "{t:?}");
        let long = OsString::from_vec(vec![0xff; 300]);
        let t = temporary_sibling(&Path::new("/d").join(long));
        assert!(t.file_name().unwrap().len() <= 255);
    }
}
