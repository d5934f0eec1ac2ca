//! Files on the local filesystem.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use nix::unistd::{Gid, Uid, fchown, geteuid};
use sha2::{Digest, Sha512};
use tether_core::raw::{check_expected_size, temporary_sibling};
use tether_core::{DirEntry, Error, ErrorKind, FileKind, FileTransfer, Metadata, PutOptions, Result, StatOptions};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::connect::LocalHost;
use crate::error::{at, blocking, errno, join};
use crate::exec::{resolve_group, resolve_user};

/// Bytes per read and per write when streaming a file. Each chunk costs a
/// hop to the blocking pool, so chunks are large; two alternate so the disk
/// and the other side of the copy work at the same time.
const CHUNK: usize = 4 << 20;

/// The temporary sibling a put writes; removed unless the put completed, also
/// when the put's future is dropped midway.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// The file now lives under its final name: nothing to clean up.
    fn persist(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep
            && let Err(err) = fs::remove_file(&self.path)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %err, "could not remove a failed put's temporary file");
        }
    }
}

/// Owner and group to give a put file.
#[derive(Debug, Clone, Copy, Default)]
struct Ownership {
    uid: Option<Uid>,
    gid: Option<Gid>,
}

/// Resolves a put's `owner` and `group`. Blocking.
fn plan_ownership(remote: &Path, owner: Option<&str>, group: Option<&str>) -> Result<Ownership> {
    let euid = geteuid();
    let uid = match owner {
        None => None,
        Some(name) => {
            let uid = resolve_user("put", name)?.uid;
            if !euid.is_root() && uid != euid {
                return Err(Error::new(ErrorKind::PermissionDenied, "put").with_context(format!(
                    "{}: giving the file to `{name}` needs root; tether runs as uid {euid}",
                    remote.display()
                )));
            }
            Some(uid)
        }
    };
    let gid = group.map(|name| resolve_group("put", name)).transpose()?;
    Ok(Ownership { uid, gid })
}

/// Reads until `buf` is full or the file ends. Blocking.
fn read_full_blocking(mut file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Streams `source` into `file`: the next chunk is read while the previous
/// one is written.
async fn write_stream(source: &mut (dyn AsyncRead + Send + Unpin), file: &Arc<File>, remote: &Path) -> Result<u64> {
    let mut spare: Option<Vec<u8>> = None;
    let mut writing: Option<tokio::task::JoinHandle<io::Result<Vec<u8>>>> = None;
    let mut total = 0u64;
    loop {
        let mut buf = spare.take().unwrap_or_else(|| vec![0; CHUNK]);
        let read = tether_core::raw::read_full(source, &mut buf).await;
        if let Some(task) = writing.take() {
            spare = Some(task.await.map_err(|e| join("put", e))?.map_err(|e| at("put", remote, e))?);
        }
        let n = read.map_err(|e| at("put", remote, e))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        let file = file.clone();
        let last = n < buf.len();
        let task = tokio::task::spawn_blocking(move || (&*file).write_all(&buf[..n]).map(|()| buf));
        if last {
            task.await.map_err(|e| join("put", e))?.map_err(|e| at("put", remote, e))?;
            return Ok(total);
        }
        writing = Some(task);
    }
}

/// Checks the written size and applies owner, mode and mtime to the
/// temporary file, then renames it over the destination. Blocking.
fn finish(
    file: &File,
    temp: &TempFile,
    remote: &Path,
    written: u64,
    options: &PutOptions,
    owner: Ownership,
) -> Result<()> {
    let on_disk = file.metadata().map_err(|e| at("put", remote, e))?.len();
    if on_disk != written {
        return Err(Error::new(ErrorKind::Corrupted, "put").with_context(format!(
            "{}: sent {written} bytes but the temporary file holds {on_disk}",
            remote.display()
        )));
    }
    let existing = match fs::metadata(remote) {
        Ok(meta) if meta.is_file() => Some(meta),
        _ => None,
    };
    let mut owner = owner;
    if geteuid().is_root()
        && let Some(old) = &existing
    {
        // As root the replacement would otherwise belong to root, taking the
        // file away from whoever owned it (cp over a file keeps its owner too).
        owner.uid.get_or_insert(Uid::from_raw(old.uid()));
        owner.gid.get_or_insert(Gid::from_raw(old.gid()));
    }
    // chown clears the set-id bits, so it goes before chmod.
    if owner.uid.is_some() || owner.gid.is_some() {
        fchown(file, owner.uid, owner.gid)
            .map_err(|e| errno("put", e).with_context(format!("{}: chown", remote.display())))?;
    }
    let mode = options.mode.or(existing.as_ref().map(|m| m.mode())).unwrap_or(0o644) & 0o7777;
    file.set_permissions(Permissions::from_mode(mode)).map_err(|e| at("put", remote, e))?;
    if let Some(mtime) = options.mtime {
        file.set_modified(mtime).map_err(|e| at("put", remote, e))?;
    }
    fs::rename(&temp.path, remote).map_err(|e| at("put", remote, e))
}

fn is_absent(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn kind_of(file_type: fs::FileType) -> FileKind {
    if file_type.is_file() {
        FileKind::File
    } else if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_symlink() {
        FileKind::Link
    } else if file_type.is_char_device() {
        FileKind::Chr
    } else if file_type.is_block_device() {
        FileKind::Blk
    } else if file_type.is_fifo() {
        FileKind::Fifo
    } else if file_type.is_socket() {
        FileKind::Sock
    } else {
        FileKind::Other
    }
}

fn metadata_of(meta: &fs::Metadata) -> Metadata {
    Metadata {
        kind: kind_of(meta.file_type()),
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        mtime: meta.modified().ok(),
        sha512: None,
    }
}

/// Blocking `stat`.
fn stat_path(path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
    let found = if options.follow_links { fs::metadata(path) } else { fs::symlink_metadata(path) };
    let meta = match found {
        Ok(meta) => meta,
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => return Err(at("stat", path, err)),
    };
    if !(options.sha512 && meta.is_file()) {
        return Ok(Some(metadata_of(&meta)));
    }
    // Hash what the descriptor points at and describe that same file, so a
    // path replaced in between cannot pair one file's size with another's digest.
    let no_follow = if options.follow_links { 0 } else { libc::O_NOFOLLOW };
    let file = match fs::OpenOptions::new().read(true).custom_flags(no_follow | libc::O_NONBLOCK).open(path) {
        Ok(file) => file,
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => return Err(at("stat", path, err)),
    };
    let meta = file.metadata().map_err(|e| at("stat", path, e))?;
    let mut described = metadata_of(&meta);
    if meta.is_file() {
        described.sha512 = Some(sha512_of(&file).map_err(|e| at("stat", path, e))?);
    }
    Ok(Some(described))
}

fn sha512_of(file: &File) -> io::Result<String> {
    let mut hasher = Sha512::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        match read_full_blocking(file, &mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Blocking `list`.
fn list_dir(path: &Path) -> Result<Vec<DirEntry>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| at("list", path, e))? {
        let entry = entry.map_err(|e| at("list", path, e))?;
        let name = entry.file_name();
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Removed since the directory was read: it is no longer there to list.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(at("list", entry.path(), err)),
        };
        entries.push(DirEntry { name, metadata: metadata_of(&meta) });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Blocking `remove`.
fn remove_path(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| at("remove", path, e))?;
    let removed = if meta.is_dir() { fs::remove_dir(path) } else { fs::remove_file(path) };
    removed.map_err(|e| at("remove", path, e))
}

/// Opens `remote` for `get`, refusing a directory with a clear error. Blocking.
fn open_for_get(remote: &Path) -> Result<File> {
    let file = File::open(remote).map_err(|e| at("get", remote, e))?;
    let meta = file.metadata().map_err(|e| at("get", remote, e))?;
    if meta.is_dir() {
        return Err(
            Error::new(ErrorKind::InvalidInput, "get").with_context(format!("{} is a directory", remote.display()))
        );
    }
    Ok(file)
}

#[async_trait]
impl FileTransfer for LocalHost {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        self.ensure_open("put")?;
        let owner = match (&options.owner, &options.group) {
            (None, None) => Ownership::default(),
            (owner, group) => {
                let (path, owner, group) = (remote.to_path_buf(), owner.clone(), group.clone());
                blocking("put", move || plan_ownership(&path, owner.as_deref(), group.as_deref())).await?
            }
        };
        let temp_path = temporary_sibling(remote);
        let file = {
            let (temp_path, path) = (temp_path.clone(), remote.to_path_buf());
            blocking("put", move || {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp_path)
                    .map_err(|e| at("put", &path, e))
            })
            .await?
        };
        let mut temp = TempFile { path: temp_path, keep: false };
        let file = Arc::new(file);
        let written = write_stream(source, &file, remote).await?;
        check_expected_size("put", remote, options.expected_size, written)?;
        let (path, options) = (remote.to_path_buf(), options.clone());
        blocking("put", move || {
            finish(&file, &temp, &path, written, &options, owner)?;
            temp.persist();
            Ok(())
        })
        .await?;
        Ok(written)
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        self.ensure_open("get")?;
        let path = remote.to_path_buf();
        let file = Arc::new(blocking("get", move || open_for_get(&path)).await?);
        let read_chunk = |file: Arc<File>, mut buf: Vec<u8>| {
            tokio::task::spawn_blocking(move || read_full_blocking(&file, &mut buf).map(|n| (buf, n)))
        };
        let mut reading = Some(read_chunk(file.clone(), vec![0; CHUNK]));
        let mut spare = None;
        let mut total = 0u64;
        while let Some(task) = reading.take() {
            let (buf, n) = task.await.map_err(|e| join("get", e))?.map_err(|e| at("get", remote, e))?;
            if n == 0 {
                break;
            }
            if n == buf.len() {
                reading = Some(read_chunk(file.clone(), spare.take().unwrap_or_else(|| vec![0; CHUNK])));
            }
            sink.write_all(&buf[..n]).await.map_err(|e| at("get", remote, e))?;
            total += n as u64;
            spare = Some(buf);
        }
        sink.flush().await.map_err(|e| at("get", remote, e))?;
        Ok(total)
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        self.ensure_open("stat")?;
        let path = path.to_path_buf();
        blocking("stat", move || stat_path(&path, options)).await
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        self.ensure_open("list")?;
        let path = path.to_path_buf();
        blocking("list", move || list_dir(&path)).await
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        self.ensure_open("mkdir")?;
        let path = path.to_path_buf();
        blocking("mkdir", move || {
            let made = if parents { fs::create_dir_all(&path) } else { fs::create_dir(&path) };
            made.map_err(|e| at("mkdir", &path, e))
        })
        .await
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.ensure_open("remove")?;
        let path = path.to_path_buf();
        blocking("remove", move || remove_path(&path)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.ensure_open("rename")?;
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        blocking("rename", move || {
            fs::rename(&from, &to).map_err(|e| at("rename", format!("{} -> {}", from.display(), to.display()), e))
        })
        .await
    }
}
