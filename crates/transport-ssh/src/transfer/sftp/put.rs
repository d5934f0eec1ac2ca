//! Uploads: a temporary sibling created exclusively, `write_requests` writes
//! in flight, size checks, owner, mode and mtime, then a rename over the
//! destination. Whatever fails, or when the caller gives up, the temporary
//! file goes and the destination stays as it was.

use std::path::Path;
use std::sync::Arc;

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tether_core::raw::{check_expected_size, temporary_sibling};
use tether_core::{Error, ErrorKind, PutOptions, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use super::client::{Client, protocol_time};
use super::pipeline::{InFlight, both};

const OP: &str = "put";

/// Numeric owner and group to give the new file.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ownership {
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
}

/// What a failed or abandoned operation leaves to undo on the server: an
/// open handle, a temporary file. Undone inline by [`Cleanup::run`] on
/// failure, or by a background task when the operation's future is dropped.
pub(super) struct Cleanup {
    client: Arc<Client>,
    operation: &'static str,
    /// Taken before the handle is closed, so it is never closed twice (the
    /// server may hand the same handle out again).
    pub(super) handle: Option<String>,
    pub(super) temp: Option<String>,
    /// The handle's slot, given back once it is closed.
    slot: Option<OwnedSemaphorePermit>,
}

impl Cleanup {
    pub(super) fn new(
        client: Arc<Client>,
        operation: &'static str,
        handle: String,
        temp: Option<String>,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Cleanup { client, operation, handle: Some(handle), temp, slot: Some(slot) }
    }

    /// Undoes what is left, now.
    pub(super) async fn run(&mut self) {
        let (handle, temp) = (self.handle.take(), self.temp.take());
        discard(&self.client, self.operation, handle, temp).await;
        self.slot.take();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (handle, temp) = (self.handle.take(), self.temp.take());
        if handle.is_none() && temp.is_none() {
            return;
        }
        let (client, operation, slot) = (self.client.clone(), self.operation, self.slot.take());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    discard(&client, operation, handle, temp).await;
                    drop(slot);
                });
            }
            Err(_) => {
                if let Some(temp) = temp {
                    tracing::warn!(path = %temp, "an abandoned put's temporary file could not be removed (no runtime)");
                }
            }
        }
    }
}

/// Closes `handle` and removes `temp`, reporting only what stays behind.
async fn discard(client: &Client, operation: &str, handle: Option<String>, temp: Option<String>) {
    if client.is_lost() {
        if let Some(temp) = temp {
            tracing::warn!(path = %temp, "the SFTP session ended: a failed {operation}'s temporary file stays behind");
        }
        return;
    }
    if let Some(handle) = handle {
        // The server handles requests in order: writes still in flight land
        // before this close, and the file is removed after it.
        let _ = client.call(operation, "closing a handle", client.raw.close(handle)).await;
    }
    if let Some(temp) = temp
        && let Err(err) = client.call(operation, &temp, client.raw.remove(temp.clone())).await
        && err.kind() != ErrorKind::NotFound
    {
        tracing::warn!(path = %temp, %err, "could not remove a failed {operation}'s temporary file");
    }
}

/// Uploads `source` to `remote` atomically; returns the bytes written.
pub(super) async fn upload(
    client: Arc<Client>,
    source: &mut (dyn AsyncRead + Send + Unpin),
    remote: &str,
    options: &PutOptions,
    owner: Ownership,
) -> Result<u64> {
    let mtime = options.mtime.map(|time| protocol_time(OP, remote, time)).transpose()?;
    // Lossless: the sibling of a UTF-8 name keeps whole characters.
    let temp = temporary_sibling(Path::new(remote)).to_string_lossy().into_owned();
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
    let private = FileAttributes { permissions: Some(0o600), ..Default::default() };
    let slot = client.handle_slot(OP, remote).await?;
    // From the moment the open goes out the file may exist: a put abandoned
    // before the answer still removes it.
    let mut cleanup =
        Cleanup { client: client.clone(), operation: OP, handle: None, temp: Some(temp.clone()), slot: Some(slot) };
    match client.call(OP, remote, client.raw.open(temp, flags, private)).await {
        Ok(opened) => cleanup.handle = Some(opened.handle),
        Err(err) => {
            // Refused: nothing was created (and a file of that name, however
            // unlikely, is not ours). Unanswered: it may have been.
            if err.kind() != ErrorKind::Timeout {
                cleanup.temp = None;
            }
            cleanup.run().await;
            return Err(err);
        }
    }
    let result = complete(&client, &mut cleanup, source, remote, options, owner, mtime).await;
    if result.is_err() {
        cleanup.run().await;
    }
    result
}

/// Everything after the open; leaves in `cleanup` what a failure must undo.
async fn complete(
    client: &Client,
    cleanup: &mut Cleanup,
    source: &mut (dyn AsyncRead + Send + Unpin),
    remote: &str,
    options: &PutOptions,
    owner: Ownership,
    mtime: Option<u32>,
) -> Result<u64> {
    let (Some(handle), Some(temp)) = (cleanup.handle.clone(), cleanup.temp.clone()) else {
        return Err(Error::new(ErrorKind::Io, OP).with_context(format!("{remote}: no temporary file")));
    };
    let written = send(client, source, &handle, remote).await?;
    check_expected_size(OP, Path::new(remote), options.expected_size, written)?;
    // The temporary file and the destination, asked together.
    let (attrs, existing) = both(
        client.call(OP, remote, client.raw.fstat(handle.clone())),
        client.bounded(OP, remote, client.raw.stat(remote.to_string())),
    )
    .await;
    let attrs = attrs?.attrs;
    if let Some(on_server) = attrs.size
        && on_server != written
    {
        return Err(Error::new(ErrorKind::Corrupted, OP)
            .with_context(format!("{remote}: sent {written} bytes but the temporary file holds {on_server}")));
    }
    let existing = match existing? {
        Ok(old) if old.attrs.is_regular() => Some(old.attrs),
        Ok(_) | Err(SftpError::Status(_)) => None,
        Err(err) => return Err(client.error(OP, remote, err)),
    };

    let mut owner = owner;
    if attrs.uid == Some(0)
        && let Some(old) = &existing
    {
        // As root the replacement would otherwise belong to root, taking the
        // file away from whoever owned it (cp over a file keeps its owner too).
        owner.uid = owner.uid.or(old.uid);
        owner.gid = owner.gid.or(old.gid);
    }
    // A chown clears the set-id bits, so it goes first, in a request of its
    // own (OpenSSH's server applies the mode before the owner otherwise).
    let chown = (owner.uid.is_some() || owner.gid.is_some()).then(|| FileAttributes {
        // The half not asked for stays as it is; (uid_t)-1 means "unchanged"
        // to chown where the server did not say.
        uid: Some(owner.uid.or(attrs.uid).unwrap_or(u32::MAX)),
        gid: Some(owner.gid.or(attrs.gid).unwrap_or(u32::MAX)),
        ..Default::default()
    });
    let mode = options.mode.or(existing.as_ref().and_then(|old| old.permissions)).unwrap_or(0o644) & 0o7777;
    let mut chmod = FileAttributes { permissions: Some(mode), ..Default::default() };
    if let Some(mtime) = mtime {
        // v3 sets both times at once; the access time stays what it is.
        chmod.atime = Some(attrs.atime.unwrap_or(mtime));
        chmod.mtime = Some(mtime);
    }
    // Owner, mode and close go out together: the server applies them in
    // order, and if one fails the file is removed, never renamed.
    let shown = format!("{remote}: chown");
    let chown = async {
        match chown {
            Some(change) => client.call(OP, &shown, client.raw.fsetstat(handle.clone(), change)).await.map(drop),
            None => Ok(()),
        }
    };
    let chmod = client.call(OP, remote, client.raw.fsetstat(handle.clone(), chmod));
    cleanup.handle = None;
    let close = client.call(OP, remote, client.raw.close(handle.clone()));
    let ((chown, chmod), close) = both(both(chown, chmod), close).await;
    chown?;
    chmod?;
    close?;
    rename_over(client, OP, &temp, remote).await?;
    cleanup.temp = None;
    Ok(written)
}

/// Streams `source` into the open file with `write_requests` writes in flight.
async fn send(client: &Client, source: &mut (dyn AsyncRead + Send + Unpin), handle: &str, remote: &str) -> Result<u64> {
    let size = client.write_size as usize;
    let most = client.write_requests.max(1);
    let mut queue = InFlight::new(most);
    let mut offset = 0u64;
    let mut end = false;
    loop {
        while !end && queue.len() < most {
            let chunk = fill(source, size).await.map_err(|e| Error::io(OP, e).with_context(remote.to_string()))?;
            end = chunk.len() < size;
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len() as u64;
            queue.push_back(client.raw.write(handle.to_string(), offset, chunk)).await;
            offset += len;
        }
        match client.bounded(OP, remote, queue.next()).await? {
            None => return Ok(offset),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(write_error(client, remote, err).await),
        }
    }
}

/// Reads up to `size` bytes, fewer only at the end of the source, straight
/// into a buffer the write request then owns.
async fn fill(source: &mut (dyn AsyncRead + Send + Unpin), size: usize) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(size);
    // Into the spare capacity: no zeroing, no copy.
    while chunk.len() < size {
        if source.read_buf(&mut chunk).await? == 0 {
            break;
        }
    }
    Ok(chunk)
}

/// A refused write, told apart as a full disk when the server can say so
/// (OpenSSH reports ENOSPC and EDQUOT only as a generic failure).
async fn write_error(client: &Client, remote: &str, err: SftpError) -> Error {
    let generic = matches!(&err, SftpError::Status(status) if status.status_code == StatusCode::Failure);
    let mapped = client.error(OP, remote, err);
    if !generic {
        return mapped;
    }
    let dir = match remote.rfind('/') {
        Some(0) => "/",
        Some(i) => &remote[..i],
        None => ".",
    };
    match client.free_space(dir).await {
        Some(free) if free < u64::from(client.write_size) => Error::new(ErrorKind::StorageFull, OP)
            .with_context(format!("{remote}: no space left on the server ({free} bytes free)")),
        _ => mapped,
    }
}

/// Renames `from` over `to`: atomically with `posix-rename@openssh.com`;
/// otherwise with a plain SFTP rename, which refuses an existing target on
/// OpenSSH, so the target is removed first (not atomic: for a moment `to`
/// does not exist).
pub(super) async fn rename_over(client: &Client, operation: &str, from: &str, to: &str) -> Result<()> {
    if client.posix_rename {
        return client.posix_rename(operation, from, to).await;
    }
    let shown = format!("{from} -> {to}");
    let refused = match client.call(operation, &shown, client.raw.rename(from.to_string(), to.to_string())).await {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    let target = client.bounded(operation, to, client.raw.lstat(to.to_string())).await?;
    match target {
        Ok(attrs) if !attrs.attrs.is_dir() => {
            tracing::debug!(%to, "no posix-rename@openssh.com: replacing the target by remove and rename");
            client.call(operation, to, client.raw.remove(to.to_string())).await?;
            client.call(operation, &shown, client.raw.rename(from.to_string(), to.to_string())).await?;
            Ok(())
        }
        _ => Err(refused),
    }
}
