//! Recursive transfers through any [`FileTransfer`]: [`put_tree`] and
//! [`get_tree`] (their docs hold the rules, as this module is private and
//! they are what the crate shows).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::files::{FileKind, FileTransfer, Progress, PutOptions, StatOptions, get_file, put_file};

/// How many directory levels below the source a tree may have. A remote
/// listing is the server's word, so [`get_tree`] needs some bound against a
/// server inventing directories forever; [`put_tree`] keeps the same one, so
/// that whatever goes up can come back down, and so that copying a tree into
/// itself (same file system, destination inside the source) stops.
pub const MAX_TREE_DEPTH: usize = 64;

/// How [`put_tree`] writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeOptions {
    /// Give each file the local file's mode and modification time, as
    /// `put_file`'s `preserve` does (directories keep the default mode).
    pub preserve: bool,
}

/// What a tree transfer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeSummary {
    /// Regular files transferred.
    pub files: u64,
    /// Directories created or entered, the top one included.
    pub directories: u64,
    /// Bytes of file content moved.
    pub bytes: u64,
    /// Links, devices, pipes and sockets left out.
    pub skipped: u64,
}

/// What the source's last component says about where, inside an existing
/// destination directory, the tree goes.
enum Landing<'a> {
    /// Under this name (bytes, as a local name need not be text).
    Named(&'a [u8]),
    /// Into the destination itself (the source ended in `.`).
    Here,
    /// Nowhere: the source has no name to give (`/`, `..`).
    Unnamed,
}

fn landing(path: &[u8]) -> Landing<'_> {
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let trimmed = &path[..end];
    let name = trimmed.rsplit(|&b| b == b'/').next().unwrap_or_default();
    match name {
        b"." => Landing::Here,
        b"" | b".." => Landing::Unnamed,
        name => Landing::Named(name),
    }
}

/// Adds the path to errors that do not already name one, so the caller
/// learns where the walk stopped.
fn at(err: Error, path: &Path) -> Error {
    if err.context().is_none() { err.with_context(path.display().to_string()) } else { err }
}

fn too_deep(operation: &str, path: &Path) -> Error {
    Error::new(ErrorKind::Unsupported, operation)
        .with_context(format!("{}: more than {MAX_TREE_DEPTH} directory levels below the source", path.display()))
}

/// A local directory's entries, sorted by name (the order of the walk is
/// then the same every time), with their own kinds: links are not followed.
async fn read_local_dir(dir: &Path) -> Result<Vec<(OsString, std::fs::FileType)>> {
    let shown = || dir.display().to_string();
    let mut reader = tokio::fs::read_dir(dir).await.map_err(|e| Error::io("put", e).with_context(shown()))?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry().await.map_err(|e| Error::io("put", e).with_context(shown()))? {
        let kind = entry.file_type().await.map_err(|e| Error::io("put", e).with_context(shown()))?;
        entries.push((entry.file_name(), kind));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Uploads the local directory `local` and everything below it to `remote`,
/// through any [`FileTransfer`]: each remote directory is made with
/// `mkdir(…, parents = true)`, each regular file uploaded with the atomic
/// [`put_file`] (written to a temporary sibling, renamed into place).
/// `progress` gets the bytes sent so far across the whole tree.
///
/// # Where the tree lands
///
/// One rule, the one of `cp -r` and `scp -r`, and [`get_tree`] follows it too:
///
/// - when the destination does not exist, it is created (with its missing
///   parents) and receives the source's contents: `put_tree(…, "./site",
///   "/srv/www", …)` gives `/srv/www/index.html`;
/// - when it is a directory, the tree goes inside it under the source's own
///   name: with `/srv` existing, `put_tree(…, "./site", "/srv", …)` gives
///   `/srv/site/index.html`. A source whose last component is `.`
///   (`site/.`) has its contents put into the destination itself, as with
///   `cp -r site/. /srv`; a source without a usable name (`/`, `…/..`) is
///   refused then, as there is nothing to name the copy after;
/// - anything else at the destination is an error, before anything moves.
///
/// Trailing slashes make no difference.
///
/// # What is copied
///
/// Directories and regular files. Below the source, links are never followed
/// (one could loop, or lead out of the tree to what the caller never named):
/// they are skipped with a warning and counted in [`TreeSummary::skipped`],
/// as are devices, pipes and sockets. The source itself may be a link to a
/// directory: the caller named it. No tree may be deeper than
/// [`MAX_TREE_DEPTH`].
///
/// With [`TreeOptions::preserve`] each file keeps its mode and modification
/// time; directories get the destination's default mode either way, as
/// [`FileTransfer`] has no way to set one.
///
/// # Failures
///
/// The first failure stops the walk and is returned, naming the path. Files
/// transferred until then stay, each one complete; the one that failed
/// leaves nothing behind, as [`put_file`] guarantees.
pub async fn put_tree(
    files: &dyn FileTransfer,
    local: &Path,
    remote: &Path,
    options: &TreeOptions,
    progress: Option<Progress<'_>>,
) -> Result<TreeSummary> {
    let shown = local.display().to_string();
    let meta = tokio::fs::metadata(local).await.map_err(|e| Error::io("put", e).with_context(shown.clone()))?;
    if !meta.is_dir() {
        return Err(Error::new(ErrorKind::InvalidInput, "put").with_context(format!("{shown}: not a directory")));
    }
    let root = match files.stat(remote, StatOptions { follow_links: true, sha512: false }).await {
        Err(err) => return Err(at(err, remote)),
        Ok(None) => remote.to_path_buf(),
        Ok(Some(meta)) if meta.kind == FileKind::Dir => match landing(local.as_os_str().as_bytes()) {
            Landing::Here => remote.to_path_buf(),
            Landing::Named(name) => remote.join(OsStr::from_bytes(name)),
            Landing::Unnamed => {
                return Err(Error::new(ErrorKind::InvalidInput, "put").with_context(format!(
                    "{shown}: no directory name to create inside {}; name the source by its name",
                    remote.display()
                )));
            }
        },
        Ok(Some(_)) => {
            return Err(Error::new(ErrorKind::InvalidInput, "put")
                .with_context(format!("{}: exists and is not a directory", remote.display())));
        }
    };

    let mut summary = TreeSummary::default();
    let mut pending = vec![(local.to_path_buf(), root, 0usize)];
    while let Some((dir, target, depth)) = pending.pop() {
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep("put", &dir));
        }
        let entries = read_local_dir(&dir).await?;
        files.mkdir(&target, true).await.map_err(|e| at(e, &target))?;
        summary.directories += 1;
        let mut subdirectories = Vec::new();
        for (name, kind) in entries {
            let path = dir.join(&name);
            if kind.is_dir() {
                subdirectories.push((target.join(&name), path));
            } else if kind.is_file() {
                let destination = target.join(&name);
                let before = summary.bytes;
                let overall = move |n: u64| {
                    if let Some(progress) = progress {
                        progress(before + n);
                    }
                };
                let sent =
                    put_file(files, &path, &destination, &PutOptions::default(), options.preserve, Some(&overall))
                        .await
                        .map_err(|e| at(e, &destination))?;
                summary.files += 1;
                summary.bytes += sent;
            } else {
                let what = if kind.is_symlink() { "a link is not followed" } else { "not a regular file" };
                tracing::warn!(path = %path.display(), "put: skipped, {what}");
                summary.skipped += 1;
            }
        }
        // Reversed onto the stack, so they are walked in name order.
        pending.extend(subdirectories.into_iter().rev().map(|(target, path)| (path, target, depth + 1)));
    }
    Ok(summary)
}

/// Fails unless a listed name is one path component, so that joining it to
/// a local directory stays inside that directory.
fn check_listed_name(dir: &Path, name: &OsStr) -> Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(Error::new(ErrorKind::Protocol, "get")
            .with_context(format!("{}: the server listed {name:?}, which is not a single file name", dir.display())));
    }
    Ok(())
}

/// Creates the local directory `path`, or accepts an existing one. Below the
/// caller's destination (`parents` false) an existing one must be a real
/// directory: one that is a link would lead writes out of the tree.
async fn make_local_dir(path: &Path, parents: bool) -> Result<()> {
    let shown = || path.display().to_string();
    let made = if parents { tokio::fs::create_dir_all(path).await } else { tokio::fs::create_dir(path).await };
    match made {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => match tokio::fs::symlink_metadata(path).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(Error::new(ErrorKind::AlreadyExists, "get")
                .with_context(format!("{}: exists and is not a directory (links are not followed)", shown()))),
            Err(err) => Err(Error::io("get", err).with_context(shown())),
        },
        Err(err) => Err(Error::io("get", err).with_context(shown())),
    }
}

/// Downloads the remote directory `remote` and everything below it to
/// `local`, through any [`FileTransfer`]: directories are listed with
/// [`FileTransfer::list`], each regular file is downloaded with the atomic
/// [`get_file`] (written to a temporary sibling, renamed into place).
/// `progress` gets the bytes received so far across the whole tree.
///
/// The tree lands where [`put_tree`] would put it, mirrored: a missing
/// `local` is created and receives the contents, an existing directory
/// receives `local/<name of remote>`. Remote links, devices, pipes and
/// sockets are skipped with a warning and counted, never followed; only the
/// file contents are kept (the local umask decides modes). The first
/// failure stops the walk, as for [`put_tree`].
///
/// # A hostile server
///
/// Nothing a server lists is trusted. Every name must be one path component
/// (not empty, `.` or `..`, without `/` or NUL), or the whole listing is
/// refused with [`ErrorKind::Protocol`] naming the entry, before anything is
/// written for it. Directories that already exist below `local` must be real
/// directories, and a file may only replace a file, never a link: so nothing
/// is ever written outside `local`. A tree deeper than [`MAX_TREE_DEPTH`]
/// fails with [`ErrorKind::Unsupported`], so a server cannot keep the walk
/// going forever.
pub async fn get_tree(
    files: &dyn FileTransfer,
    remote: &Path,
    local: &Path,
    progress: Option<Progress<'_>>,
) -> Result<TreeSummary> {
    match files.stat(remote, StatOptions { follow_links: true, sha512: false }).await {
        Err(err) => return Err(at(err, remote)),
        Ok(None) => return Err(Error::new(ErrorKind::NotFound, "get").with_context(remote.display().to_string())),
        Ok(Some(meta)) if meta.kind == FileKind::Dir => {}
        Ok(Some(_)) => {
            return Err(Error::new(ErrorKind::InvalidInput, "get")
                .with_context(format!("{}: not a directory", remote.display())));
        }
    }
    let shown = local.display().to_string();
    // The caller's own path may be, or pass through, a link: it was named on purpose.
    let (root, root_named_by_caller) = match tokio::fs::metadata(local).await {
        Ok(meta) if meta.is_dir() => match landing(remote.as_os_str().as_bytes()) {
            Landing::Here => (local.to_path_buf(), true),
            Landing::Named(name) => {
                let name = OsStr::from_bytes(name);
                check_listed_name(remote, name)?;
                (local.join(name), false)
            }
            Landing::Unnamed => {
                return Err(Error::new(ErrorKind::InvalidInput, "get").with_context(format!(
                    "{}: no directory name to create inside {shown}; name the source by its name",
                    remote.display()
                )));
            }
        },
        Ok(_) => {
            return Err(Error::new(ErrorKind::InvalidInput, "get")
                .with_context(format!("{shown}: exists and is not a directory")));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => (local.to_path_buf(), true),
        Err(err) => return Err(Error::io("get", err).with_context(shown)),
    };

    let mut summary = TreeSummary::default();
    let mut pending: Vec<(PathBuf, PathBuf, usize)> = vec![(remote.to_path_buf(), root, 0)];
    while let Some((dir, target, depth)) = pending.pop() {
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep("get", &dir));
        }
        let entries = files.list(&dir).await.map_err(|e| at(e, &dir))?;
        // The whole listing is checked before anything is made for it.
        for entry in &entries {
            check_listed_name(&dir, &entry.name)?;
        }
        make_local_dir(&target, depth == 0 && root_named_by_caller).await?;
        summary.directories += 1;
        let mut subdirectories = Vec::new();
        for entry in entries {
            let source = dir.join(&entry.name);
            let destination = target.join(&entry.name);
            match entry.metadata.kind {
                FileKind::Dir => subdirectories.push((source, destination)),
                FileKind::File => {
                    // get_file would write *into* a directory, or through a
                    // link, found at the destination: only a file may be replaced.
                    match tokio::fs::symlink_metadata(&destination).await {
                        Ok(meta) if !meta.is_file() => {
                            return Err(Error::new(ErrorKind::AlreadyExists, "get").with_context(format!(
                                "{}: exists and is not a regular file (links are not followed)",
                                destination.display()
                            )));
                        }
                        _ => {}
                    }
                    let before = summary.bytes;
                    let overall = move |n: u64| {
                        if let Some(progress) = progress {
                            progress(before + n);
                        }
                    };
                    let got =
                        get_file(files, &source, &destination, Some(&overall)).await.map_err(|e| at(e, &source))?;
                    summary.files += 1;
                    summary.bytes += got;
                }
                kind => {
                    let what = if kind == FileKind::Link { "a link is not followed" } else { "not a regular file" };
                    tracing::warn!(path = %source.display(), "get: skipped, {what}");
                    summary.skipped += 1;
                }
            }
        }
        // Reversed onto the stack, so they are walked in name order.
        pending.extend(subdirectories.into_iter().rev().map(|(source, target)| (source, target, depth + 1)));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_component_decides_the_landing() {
        assert!(matches!(landing(b"a/dir"), Landing::Named(b"dir")));
        assert!(matches!(landing(b"/a/dir//"), Landing::Named(b"dir")));
        assert!(matches!(landing(b"dir"), Landing::Named(b"dir")));
        assert!(matches!(landing(b"dir/."), Landing::Here));
        assert!(matches!(landing(b"."), Landing::Here));
        assert!(matches!(landing(b"./"), Landing::Here));
        assert!(matches!(landing(b"/"), Landing::Unnamed));
        assert!(matches!(landing(b"a/.."), Landing::Unnamed));
        assert!(matches!(landing(b""), Landing::Unnamed));
    }

    #[test]
    fn joins_remote_paths() {
        let join = |dir: &str, name: &str| Path::new(dir).join(name).into_os_string().into_string().unwrap();
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/x", "a"), "/x/a");
        assert_eq!(join("/x/", "a"), "/x/a");
        assert_eq!(join("", "a"), "a");
    }
}
