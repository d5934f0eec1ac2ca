//! The `sftp` scheme: [`FileTransfer`] over the SFTP subsystem (protocol
//! version 3, as OpenSSH speaks it), on a session channel of the host's one
//! SSH connection.
//!
//! - **Session**: one channel, holding a `max_sessions` slot while it lives.
//!   `sftp_options.env` and `send_env` go out as `env` requests before the
//!   subsystem starts; a variable the server refuses (OpenSSH: not in
//!   `AcceptEnv`) is logged as a warning by name and skipped. A channel that
//!   ends while the SSH connection lives is reopened on next use.
//! - **Every request** waits at most `connect_timeout` for its reply (in a
//!   pipeline: for the next reply), and fails at once with
//!   [`ErrorKind::ConnectionLost`] when the channel or the connection goes.
//!   Packets from the server longer than 256 KiB are refused before anything
//!   is allocated for them.
//! - **put**: `write_requests` writes of `request_size` in flight into a
//!   temporary sibling created exclusively (mode 0600); then the size check
//!   (`expected_size` and the server's fstat), owner and group (numeric ids;
//!   names are resolved with `id -u` / `getent group` on the host), mode
//!   (given, else the replaced file's, else 0644), mtime, close, and a rename
//!   over the destination with `posix-rename@openssh.com`. A server without
//!   that extension gets remove-then-rename, which is not atomic. A failed or
//!   abandoned put removes its temporary file (unless the server is gone).
//! - **get**: `read_requests` reads of `request_size` in flight, written in
//!   order; short reads are completed; the byte count must match the size
//!   the file had when opened.
//! - **stat** with `sha512` streams the file through SHA-512 on this side.
//! - Operations share the session; at most 64 files are open at once (more
//!   wait their turn), since russh-sftp reads handles as text and OpenSSH's
//!   become invalid UTF-8 beyond 127.
//!
//! Limits of the protocol: modification times are whole seconds from 1970
//! to 2106; names that are not UTF-8 are shown lossily.

mod client;
mod get;
#[cfg(test)]
mod hostile;
mod pipeline;
mod put;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tether_core::raw::utf8_path;
use tether_core::{
    Command, DirEntry, Error, ErrorKind, FileKind, FileTransfer, Metadata, PutOptions, Result, StatOptions, Transport,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::connect::SshSession;
use crate::options::SftpOptions;
use client::{Client, metadata, rename_op};
use put::{Cleanup, Ownership};

/// Directory entries accepted from one listing: a server that never ends a
/// listing must not exhaust memory.
const MAX_ENTRIES: usize = 1 << 20;

/// Opens the SFTP subsystem on a channel of `session`.
pub(crate) async fn open(session: Arc<SshSession>, options: SftpOptions) -> Result<Arc<SftpFiles>> {
    let client = Client::start(session.clone(), &options).await?;
    Ok(Arc::new(SftpFiles {
        session,
        options,
        client: tokio::sync::Mutex::new(Some(Arc::new(client))),
        closed: AtomicBool::new(false),
    }))
}

/// Files over SFTP on one SSH connection.
pub(crate) struct SftpFiles {
    session: Arc<SshSession>,
    options: SftpOptions,
    /// The current SFTP session; replaced when its channel ended.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    closed: AtomicBool,
}

impl fmt::Debug for SftpFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpFiles")
            .field("target", &self.session.target)
            .field("closed", &self.closed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// Which id `resolve_id` looks up.
#[derive(Debug, Clone, Copy)]
enum Principal {
    User,
    Group,
}

impl SftpFiles {
    /// The live SFTP session, reopened if its channel ended while the
    /// connection lives on.
    async fn client(&self, operation: &str) -> Result<Arc<Client>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::ConnectionLost, operation)
                .with_context(format!("{}: the SFTP session was closed", self.session.target)));
        }
        self.session.ensure_open(operation)?;
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            if !client.is_lost() {
                return Ok(client.clone());
            }
            // Its session slot is needed for the new channel.
            client.shut();
            tracing::debug!(target = %self.session.target, "the SFTP channel ended; opening another");
        }
        *slot = None;
        let started = Client::start(self.session.clone(), &self.options).await;
        let client = Arc::new(started.map_err(|e| rename_op(e, operation))?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Owner and group of a put as numeric ids.
    async fn ownership(&self, remote: &str, options: &PutOptions) -> Result<Ownership> {
        let uid = match options.owner.as_deref() {
            None => None,
            Some(owner) => Some(self.resolve_id(remote, Principal::User, owner).await?),
        };
        let gid = match options.group.as_deref() {
            None => None,
            Some(group) => Some(self.resolve_id(remote, Principal::Group, group).await?),
        };
        Ok(Ownership { uid, gid })
    }

    /// A numeric id as is; a name through `id -u NAME` or `getent group
    /// NAME` on the host, since SFTP v3 only carries numbers.
    async fn resolve_id(&self, remote: &str, principal: Principal, name: &str) -> Result<u32> {
        if let Ok(id) = name.parse::<u32>() {
            return Ok(id);
        }
        let what = match principal {
            Principal::User => "user",
            Principal::Group => "group",
        };
        if name.is_empty() || name.starts_with('-') || name.contains(['\0', '\n', ':']) {
            return Err(Error::new(ErrorKind::InvalidInput, "put")
                .with_context(format!("{remote}: `{name}` is not a {what} name")));
        }
        let limit = self.session.options.connect_timeout()?;
        let command = match principal {
            Principal::User => Command::new("id").args(["-u", name]),
            Principal::Group => Command::new("getent").args(["group", name]),
        }
        .timeout(limit);
        let unsupported = |why: String| {
            Error::new(ErrorKind::Unsupported, "put").with_context(format!(
                "{remote}: SFTP sets owners by numeric id, and the {what} name `{name}` could not be looked up on \
                 the host ({why}); give the numeric id instead"
            ))
        };
        let output = match Transport::exec(&*self.session, &command).await {
            Ok(output) => output,
            Err(err) => return Err(unsupported(err.to_string())),
        };
        let text = output.stdout_lossy();
        let parsed = match principal {
            Principal::User => text.trim().parse::<u32>().ok(),
            Principal::Group => {
                text.lines().next().and_then(|line| line.split(':').nth(2)).and_then(|id| id.parse().ok())
            }
        };
        match (output.status.code(), parsed) {
            (Some(0), Some(id)) => Ok(id),
            // `id` and `getent` both exit 1 or 2 for an unknown name.
            (Some(1 | 2), _) => Err(Error::new(ErrorKind::NotFound, "put")
                .with_context(format!("{remote}: no {what} named `{name}` on the host"))),
            (code, _) => Err(unsupported(format!("`{command}` exited with {code:?}"))),
        }
    }

    /// `stat` or `lstat`; `None` when the path does not exist.
    async fn attributes(&self, client: &Client, path: &str, follow: bool) -> Result<Option<FileAttributes>> {
        let reply = if follow {
            client.bounded("stat", path, client.raw.stat(path.to_string())).await?
        } else {
            client.bounded("stat", path, client.raw.lstat(path.to_string())).await?
        }
        .map(|attrs| attrs.attrs);
        match reply {
            Ok(attrs) => Ok(Some(attrs)),
            Err(SftpError::Status(status)) if status.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(err) => Err(client.error("stat", path, err)),
        }
    }

    /// Metadata of the file `path` describes, with its SHA-512: hashed from
    /// one open handle, and described from that same handle.
    async fn digest(&self, client: &Arc<Client>, path: &str) -> Result<Option<Metadata>> {
        let slot = client.handle_slot("stat", path).await?;
        let opened = client.bounded("stat", path, client.raw.open(path.to_string(), OpenFlags::READ, empty())).await?;
        let handle = match opened {
            Ok(handle) => handle.handle,
            Err(SftpError::Status(status)) if status.status_code == StatusCode::NoSuchFile => return Ok(None),
            Err(err) => return Err(client.error("stat", path, err)),
        };
        let mut cleanup = Cleanup::new(client.clone(), "stat", handle.clone(), None, slot);
        let result = async {
            let attrs = client.call("stat", path, client.raw.fstat(handle.clone())).await?.attrs;
            let mut described = metadata(&attrs);
            if described.kind == FileKind::File {
                let mut hasher = get::Hasher::default();
                get::download(client, "stat", path, &handle, described.size, &mut hasher).await?;
                described.sha512 = Some(hasher.hex());
            }
            cleanup.handle = None;
            client.call("stat", path, client.raw.close(handle.clone())).await?;
            Ok(Some(described))
        }
        .await;
        if result.is_err() {
            cleanup.run().await;
        }
        result
    }

    /// One `mkdir`; an existing path is [`ErrorKind::AlreadyExists`] (OpenSSH
    /// reports EEXIST only as a generic failure, so the path is looked at).
    async fn make_dir(&self, client: &Client, path: &str) -> Result<()> {
        let made = client.bounded("mkdir", path, client.raw.mkdir(path.to_string(), empty())).await?;
        match made {
            Ok(_) => Ok(()),
            Err(SftpError::Status(status)) if status.status_code == StatusCode::Failure => {
                match self.attributes(client, path, false).await {
                    Ok(Some(_)) => Err(Error::new(ErrorKind::AlreadyExists, "mkdir").with_context(path.to_string())),
                    _ => Err(client.error("mkdir", path, SftpError::Status(status))),
                }
            }
            Err(err) => Err(client.error("mkdir", path, err)),
        }
    }
}

fn empty() -> FileAttributes {
    FileAttributes::empty()
}

/// The parent of `path`, `None` above the first component of a relative path.
fn parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(trimmed[..i].trim_end_matches('/')).filter(|p| !p.is_empty()).or(Some("/")),
        None => None,
    }
}

#[async_trait]
impl FileTransfer for SftpFiles {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        let remote = utf8_path("put", remote)?;
        let client = self.client("put").await?;
        let owner = self.ownership(remote, options).await?;
        put::upload(client, source, remote, options, owner).await
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        const OP: &str = "get";
        let remote = utf8_path(OP, remote)?;
        let client = self.client(OP).await?;
        let slot = client.handle_slot(OP, remote).await?;
        let handle = client.call(OP, remote, client.raw.open(remote.to_string(), OpenFlags::READ, empty())).await?;
        let handle = handle.handle;
        let mut cleanup = Cleanup::new(client.clone(), OP, handle.clone(), None, slot);
        let result = async {
            let attrs = client.call(OP, remote, client.raw.fstat(handle.clone())).await?.attrs;
            if attrs.is_dir() {
                return Err(Error::new(ErrorKind::InvalidInput, OP).with_context(format!("{remote} is a directory")));
            }
            let got = get::download(&client, OP, remote, &handle, attrs.size.unwrap_or(0), sink).await?;
            cleanup.handle = None;
            client.call(OP, remote, client.raw.close(handle.clone())).await?;
            sink.flush().await.map_err(|e| Error::io(OP, e).with_context(remote.to_string()))?;
            Ok(got)
        }
        .await;
        if result.is_err() {
            cleanup.run().await;
        }
        result
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        let path = utf8_path("stat", path)?;
        let client = self.client("stat").await?;
        let Some(attrs) = self.attributes(&client, path, options.follow_links).await? else {
            return Ok(None);
        };
        let described = metadata(&attrs);
        if options.sha512 && described.kind == FileKind::File {
            return self.digest(&client, path).await;
        }
        Ok(Some(described))
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        const OP: &str = "list";
        let path = utf8_path(OP, path)?;
        let client = self.client(OP).await?;
        let slot = client.handle_slot(OP, path).await?;
        let handle = client.call(OP, path, client.raw.opendir(path.to_string())).await?.handle;
        let mut cleanup = Cleanup::new(client.clone(), OP, handle.clone(), None, slot);
        let mut entries = Vec::new();
        let mut batches = 0usize;
        loop {
            let batch = match client.bounded(OP, path, client.raw.readdir(handle.clone())).await? {
                Ok(batch) => batch,
                Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => break,
                Err(err) => {
                    cleanup.run().await;
                    return Err(client.error(OP, path, err));
                }
            };
            batches += 1;
            for file in batch.files {
                if file.filename != "." && file.filename != ".." {
                    entries.push(DirEntry { name: file.filename.into(), metadata: metadata(&file.attrs) });
                }
            }
            if entries.len() > MAX_ENTRIES || batches > MAX_ENTRIES {
                cleanup.run().await;
                return Err(Error::new(ErrorKind::Protocol, OP)
                    .with_context(format!("{path}: the server listed more than {MAX_ENTRIES} entries")));
            }
        }
        cleanup.handle = None;
        // Everything was read: a failed close changes nothing for the caller.
        let _ = client.call(OP, path, client.raw.close(handle)).await;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        let path = utf8_path("mkdir", path)?;
        let client = self.client("mkdir").await?;
        if !parents {
            return self.make_dir(&client, path).await;
        }
        // Up to the deepest existing ancestor, then down creating the rest.
        let mut missing = Vec::new();
        let mut current = Some(path);
        while let Some(dir) = current {
            match self.attributes(&client, dir, true).await? {
                Some(attrs) if attrs.is_dir() => break,
                Some(_) => {
                    return Err(Error::new(ErrorKind::AlreadyExists, "mkdir")
                        .with_context(format!("{dir} exists and is not a directory")));
                }
                None => {
                    missing.push(dir);
                    current = parent(dir);
                }
            }
        }
        for dir in missing.into_iter().rev() {
            match self.make_dir(&client, dir).await {
                Ok(()) => {}
                // Made by someone else meanwhile: as good.
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                    if !self.attributes(&client, dir, true).await?.is_some_and(|attrs| attrs.is_dir()) {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        const OP: &str = "remove";
        let path = utf8_path(OP, path)?;
        let client = self.client(OP).await?;
        let attrs = client.call(OP, path, client.raw.lstat(path.to_string())).await?.attrs;
        if attrs.is_dir() {
            if let Err(err) = client.call(OP, path, client.raw.rmdir(path.to_string())).await {
                // SFTP v3 has no status for "not empty" (OpenSSH's server
                // answers a bare Failure): a directory with entries is why.
                if err.kind() == ErrorKind::Io && !self.list(Path::new(path)).await.unwrap_or_default().is_empty() {
                    return Err(Error::new(ErrorKind::DirectoryNotEmpty, OP).with_context(path.to_string()));
                }
                return Err(err);
            }
        } else {
            client.call(OP, path, client.raw.remove(path.to_string())).await?;
        }
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (from, to) = (utf8_path("rename", from)?, utf8_path("rename", to)?);
        let client = self.client("rename").await?;
        put::rename_over(&client, "rename", from, to).await
    }
}

impl SftpFiles {
    /// Ends the SFTP subsystem; later calls fail. Its connection's `close`
    /// calls this.
    pub(crate) async fn shut(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(client) = self.client.lock().await.take() {
            client.shut();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(parent("/a/b/c/"), Some("/a/b"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("a//b"), Some("a"));
        assert_eq!(parent("a"), None);
        assert_eq!(parent("/"), None);
    }
}
