//! The filesystem of a [`MemoryHost`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{MemoryHost, lock};
use crate::error::{Error, ErrorKind, Result};
use crate::files::{
    DirEntry, FileKind, FileTransfer, Metadata, PutOptions, StatOptions, check_expected_size, utf8_path,
};

#[derive(Debug, Clone)]
enum Node {
    File { data: Bytes, mode: u32, uid: u32, gid: u32, mtime: SystemTime },
    Dir { mode: u32, mtime: SystemTime },
    Link { target: String },
}

/// Paths are kept normalized and absolute: `/`, `/a`, `/a/b`.
#[derive(Debug)]
pub(super) struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Default for Tree {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), Node::Dir { mode: 0o755, mtime: SystemTime::now() });
        Tree { nodes }
    }
}

fn error(kind: ErrorKind, operation: &str, path: &str) -> Error {
    Error::new(kind, operation).with_context(path.to_string())
}

/// Resolves `.` and `..`; relative paths are taken from `/`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

fn child_prefix(dir: &str) -> String {
    if dir == "/" { "/".to_string() } else { format!("{dir}/") }
}

impl Tree {
    /// Follows links (at most 40, like Linux) to the final path.
    fn resolve(&self, path: &str, operation: &str) -> Result<String> {
        let mut path = normalize(path);
        for _ in 0..40 {
            match self.nodes.get(&path) {
                Some(Node::Link { target }) => {
                    path = if target.starts_with('/') {
                        normalize(target)
                    } else {
                        normalize(&format!("{}/{target}", parent(&path).unwrap_or("/")))
                    };
                }
                _ => return Ok(path),
            }
        }
        Err(error(ErrorKind::InvalidInput, operation, &path).with_source("too many levels of symbolic links"))
    }

    fn require_dir(&self, path: &str, operation: &str) -> Result<()> {
        match self.nodes.get(path) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(_) => Err(error(ErrorKind::InvalidInput, operation, path).with_source("not a directory")),
            None => Err(error(ErrorKind::NotFound, operation, path)),
        }
    }

    fn metadata(&self, path: &str, sha512: bool) -> Option<Metadata> {
        Some(match self.nodes.get(path)? {
            Node::File { data, mode, uid, gid, mtime } => Metadata {
                kind: FileKind::File,
                size: data.len() as u64,
                mode: *mode,
                uid: Some(*uid),
                gid: Some(*gid),
                mtime: Some(*mtime),
                sha512: sha512.then(|| hex::encode(Sha512::digest(data))),
            },
            Node::Dir { mode, mtime } => Metadata {
                kind: FileKind::Dir,
                size: 0,
                mode: *mode,
                uid: Some(0),
                gid: Some(0),
                mtime: Some(*mtime),
                sha512: None,
            },
            Node::Link { target } => Metadata {
                kind: FileKind::Link,
                size: target.len() as u64,
                mode: 0o777,
                uid: Some(0),
                gid: Some(0),
                mtime: None,
                sha512: None,
            },
        })
    }

    fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = child_prefix(dir);
        let len = prefix.len();
        self.nodes
            .range(prefix.clone()..)
            .map(|(path, _)| path.as_str())
            .take_while(move |path| path.starts_with(&prefix))
            .filter(move |path| path.len() > len && !path[len..].contains('/'))
    }
}

impl MemoryHost {
    /// Writes a file directly (test set-up), creating parent directories.
    pub fn write_file(&self, path: &str, data: impl Into<Bytes>, mode: u32) {
        let path = normalize(path);
        let mut tree = lock(&self.shared.fs);
        let mut dir = parent(&path).map(str::to_string);
        let mut missing = Vec::new();
        while let Some(d) = dir {
            if tree.nodes.contains_key(&d) {
                break;
            }
            dir = parent(&d).map(str::to_string);
            missing.push(d);
        }
        for d in missing {
            tree.nodes.insert(d, Node::Dir { mode: 0o755, mtime: SystemTime::now() });
        }
        let node = Node::File { data: data.into(), mode, uid: 0, gid: 0, mtime: SystemTime::now() };
        tree.nodes.insert(path, node);
    }

    /// Reads a file directly (test assertions).
    pub fn read_file(&self, path: &str) -> Option<Bytes> {
        let tree = lock(&self.shared.fs);
        match tree.nodes.get(&tree.resolve(path, "read").ok()?)? {
            Node::File { data, .. } => Some(data.clone()),
            _ => None,
        }
    }

    /// Creates a symbolic link directly (test set-up).
    pub fn symlink(&self, target: &str, path: &str) {
        lock(&self.shared.fs).nodes.insert(normalize(path), Node::Link { target: target.to_string() });
    }
}

fn numeric_id(operation: &str, what: &str, value: &Option<String>) -> Result<Option<u32>> {
    match value.as_deref() {
        None => Ok(None),
        Some("root") => Ok(Some(0)),
        Some(id) => id.parse().map(Some).map_err(|_| {
            Error::new(ErrorKind::NotFound, operation)
                .with_context(format!("{what} `{id}` (mem knows root and numeric ids)"))
        }),
    }
}

#[async_trait]
impl FileTransfer for MemoryHost {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        self.ensure_alive("put")?;
        let remote = utf8_path("put", remote)?;
        let uid = numeric_id("put", "user", &options.owner)?;
        let gid = numeric_id("put", "group", &options.group)?;
        let path = {
            let tree = lock(&self.shared.fs);
            let path = tree.resolve(remote, "put")?;
            tree.require_dir(parent(&path).unwrap_or("/"), "put")?;
            if matches!(tree.nodes.get(&path), Some(Node::Dir { .. })) {
                return Err(error(ErrorKind::InvalidInput, "put", remote).with_source("is a directory"));
            }
            path
        };
        // The data is collected aside and only then swapped in, so a failed
        // read leaves the old file untouched: the memory equivalent of the
        // temporary sibling real transports write.
        let mut data = BytesMut::new();
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = source.read(&mut chunk).await.map_err(|e| Error::io("put", e).with_context(remote.to_string()))?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&chunk[..n]);
            self.ensure_alive("put")?;
        }
        let size = data.len() as u64;
        check_expected_size("put", Path::new(remote), options.expected_size, size)?;
        let mut tree = lock(&self.shared.fs);
        let (old_mode, old_uid, old_gid) = match tree.nodes.get(&path) {
            Some(Node::File { mode, uid, gid, .. }) => (Some(*mode), *uid, *gid),
            _ => (None, 0, 0),
        };
        let node = Node::File {
            data: data.freeze(),
            mode: options.mode.or(old_mode).unwrap_or(0o644) & 0o7777,
            uid: uid.unwrap_or(old_uid),
            gid: gid.unwrap_or(old_gid),
            mtime: options.mtime.unwrap_or_else(SystemTime::now),
        };
        tree.nodes.insert(path, node);
        Ok(size)
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        self.ensure_alive("get")?;
        let remote = utf8_path("get", remote)?;
        let data = {
            let tree = lock(&self.shared.fs);
            let path = tree.resolve(remote, "get")?;
            match tree.nodes.get(&path) {
                Some(Node::File { data, .. }) => data.clone(),
                Some(_) => return Err(error(ErrorKind::InvalidInput, "get", remote).with_source("not a regular file")),
                None => return Err(error(ErrorKind::NotFound, "get", remote)),
            }
        };
        for chunk in data.chunks(256 * 1024) {
            sink.write_all(chunk).await.map_err(|e| Error::io("get", e).with_context(remote.to_string()))?;
            self.ensure_alive("get")?;
        }
        sink.flush().await.map_err(|e| Error::io("get", e).with_context(remote.to_string()))?;
        Ok(data.len() as u64)
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        self.ensure_alive("stat")?;
        let path = utf8_path("stat", path)?;
        let tree = lock(&self.shared.fs);
        let path = if options.follow_links { tree.resolve(path, "stat")? } else { normalize(path) };
        Ok(tree.metadata(&path, options.sha512))
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        self.ensure_alive("list")?;
        let path = utf8_path("list", path)?;
        let tree = lock(&self.shared.fs);
        let dir = tree.resolve(path, "list")?;
        tree.require_dir(&dir, "list")?;
        let prefix_len = child_prefix(&dir).len();
        Ok(tree
            .children(&dir)
            .filter_map(|child| {
                let metadata = tree.metadata(child, false)?;
                Some(DirEntry { name: child[prefix_len..].into(), metadata })
            })
            .collect())
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        self.ensure_alive("mkdir")?;
        let path = utf8_path("mkdir", path)?;
        let mut tree = lock(&self.shared.fs);
        let path = normalize(path);
        match tree.nodes.get(&path) {
            Some(Node::Dir { .. }) if parents => return Ok(()),
            Some(_) => return Err(error(ErrorKind::AlreadyExists, "mkdir", &path)),
            None => {}
        }
        let mut chain = vec![path.clone()];
        let mut dir = parent(&path).map(str::to_string);
        while let Some(d) = dir {
            match tree.nodes.get(&d) {
                Some(Node::Dir { .. }) => break,
                Some(_) => return Err(error(ErrorKind::InvalidInput, "mkdir", &d).with_source("not a directory")),
                None if parents => {
                    dir = parent(&d).map(str::to_string);
                    chain.push(d);
                }
                None => return Err(error(ErrorKind::NotFound, "mkdir", &d)),
            }
        }
        for d in chain {
            tree.nodes.insert(d, Node::Dir { mode: 0o755, mtime: SystemTime::now() });
        }
        Ok(())
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.ensure_alive("remove")?;
        let path = utf8_path("remove", path)?;
        let mut tree = lock(&self.shared.fs);
        let path = normalize(path);
        match tree.nodes.get(&path) {
            None => return Err(error(ErrorKind::NotFound, "remove", &path)),
            Some(Node::Dir { .. }) if path == "/" => {
                return Err(error(ErrorKind::PermissionDenied, "remove", &path));
            }
            Some(Node::Dir { .. }) if tree.children(&path).next().is_some() => {
                return Err(error(ErrorKind::DirectoryNotEmpty, "remove", &path));
            }
            Some(_) => {}
        }
        tree.nodes.remove(&path);
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.ensure_alive("rename")?;
        let (from, to) = (utf8_path("rename", from)?, utf8_path("rename", to)?);
        let mut tree = lock(&self.shared.fs);
        let (from, to) = (normalize(from), normalize(to));
        if !tree.nodes.contains_key(&from) {
            return Err(error(ErrorKind::NotFound, "rename", &from));
        }
        tree.require_dir(parent(&to).unwrap_or("/"), "rename")?;
        if matches!(tree.nodes.get(&to), Some(Node::Dir { .. })) {
            return Err(error(ErrorKind::AlreadyExists, "rename", &to));
        }
        // Move the node and, for a directory, everything below it.
        let below = child_prefix(&from);
        let moved: Vec<String> =
            tree.nodes.range(below.clone()..).map(|(p, _)| p.clone()).take_while(|p| p.starts_with(&below)).collect();
        let Some(node) = tree.nodes.remove(&from) else {
            return Err(error(ErrorKind::NotFound, "rename", &from));
        };
        tree.nodes.insert(to.clone(), node);
        for old in moved {
            if let Some(node) = tree.nodes.remove(&old) {
                tree.nodes.insert(format!("{}{}", child_prefix(&to), &old[below.len()..]), node);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("a/./b/../c"), "/a/c");
        assert_eq!(normalize("/../.."), "/");
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/"), None);
    }
}
