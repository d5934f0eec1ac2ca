//! `put_tree` / `get_tree` against the in-memory host: round trips, where a
//! tree lands, what is skipped, and a hostile server that lists names
//! meant to escape the destination or a tree that never ends.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tether_core::conformance::{LocalEntry, local_tree};
use tether_core::memory::MemoryHost;
use tether_core::{
    DirEntry, Error, ErrorKind, FileKind, FileTransfer, MAX_TREE_DEPTH, Metadata, PutOptions, Result, StatOptions,
    TreeOptions, TreeSummary, get_tree, put_tree,
};
use tokio::io::{AsyncRead, AsyncWrite};

/// A scratch directory, removed when dropped (core has no `tempfile`).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!(
            "tether-tree-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir(&path).unwrap();
        Scratch(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BIG: usize = 3 << 20;

/// A tree with nested and empty directories, an empty file, a 3 MiB file,
/// distinct modes, and two links (one to a directory outside the tree).
fn make_tree(root: &Path) -> Vec<u8> {
    let big: Vec<u8> = (0..BIG).map(|_| fastrand::u8(..)).collect();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("zero"), b"").unwrap();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("a/one.txt"), b"one\n").unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep\n").unwrap();
    std::fs::write(root.join("a/b/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("a/b/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("a/one.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("zero", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/", root.join("a/escape")).unwrap();
    big
}

/// Files of the tree by relative path, and its directories; a link or
/// other special file fails the test (none may arrive).
fn snapshot(root: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut dirs = Vec::new();
    for (path, entry) in local_tree(root) {
        match entry {
            LocalEntry::File(bytes) => {
                files.insert(path, bytes);
            }
            LocalEntry::Dir => dirs.push(path),
            LocalEntry::Other => panic!("{path}: a link or special file arrived"),
        }
    }
    (files, dirs)
}

fn expected_files(big: &[u8]) -> BTreeMap<String, Vec<u8>> {
    [
        ("a/b/c/deep.txt", b"deep\n".to_vec()),
        ("a/b/run.sh", b"#!/bin/sh\necho hi\n".to_vec()),
        ("a/one.txt", b"one\n".to_vec()),
        ("big.bin", big.to_vec()),
        ("zero", Vec::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn stat(host: &MemoryHost, path: &str) -> Option<Metadata> {
    host.stat(Path::new(path), StatOptions::default()).await.unwrap()
}

fn total_bytes(big: &[u8]) -> u64 {
    (big.len() + 4 + 5 + 18) as u64
}

#[tokio::test]
async fn a_tree_goes_up_and_comes_back_identical() {
    let scratch = Scratch::new();
    let source = scratch.path().join("src");
    let big = make_tree(&source);
    let host = MemoryHost::new();

    let seen = Mutex::new(Vec::new());
    let progress = |n: u64| seen.lock().unwrap().push(n);
    let options = TreeOptions { preserve: true };
    let summary = put_tree(&host, &source, Path::new("/up/load"), &options, Some(&progress)).await.unwrap();
    let total = total_bytes(&big);
    assert_eq!(summary, TreeSummary { files: 5, directories: 5, bytes: total, skipped: 2 });
    let seen = seen.into_inner().unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress is overall and never goes back");
    assert_eq!(seen.last(), Some(&total));

    // Missing destination: created, with the contents directly in it.
    assert_eq!(host.read_file("/up/load/big.bin").unwrap().as_ref(), &big[..]);
    assert_eq!(host.read_file("/up/load/a/b/c/deep.txt").unwrap().as_ref(), b"deep\n");
    assert_eq!(host.read_file("/up/load/zero").unwrap().len(), 0);
    assert_eq!(stat(&host, "/up/load/empty").await.unwrap().kind, FileKind::Dir);
    // Links are neither followed nor copied.
    assert!(stat(&host, "/up/load/link").await.is_none());
    assert!(stat(&host, "/up/load/a/escape").await.is_none());
    // preserve keeps modes and mtimes.
    assert_eq!(stat(&host, "/up/load/a/b/run.sh").await.unwrap().mode, 0o755);
    assert_eq!(stat(&host, "/up/load/a/one.txt").await.unwrap().mode, 0o600);
    let local_mtime = std::fs::metadata(source.join("big.bin")).unwrap().modified().unwrap();
    assert_eq!(stat(&host, "/up/load/big.bin").await.unwrap().mtime, Some(local_mtime));
    // No temporary sibling is left anywhere.
    let listed = host.list(Path::new("/up/load")).await.unwrap();
    assert!(listed.iter().all(|e| !e.name.to_string_lossy().contains(".tether-")), "{listed:?}");

    let back = scratch.path().join("back/here");
    let seen = Mutex::new(0u64);
    let progress = |n: u64| {
        let mut last = seen.lock().unwrap();
        assert!(n >= *last);
        *last = n;
    };
    let summary = get_tree(&host, Path::new("/up/load"), &back, Some(&progress)).await.unwrap();
    assert_eq!(summary, TreeSummary { files: 5, directories: 5, bytes: total, skipped: 0 });
    assert_eq!(*seen.lock().unwrap(), total);
    let (files, dirs) = snapshot(&back);
    assert_eq!(files, expected_files(&big));
    assert_eq!(dirs, ["a", "a/b", "a/b/c", "empty"]);
}

#[tokio::test]
async fn without_preserve_new_files_get_the_default_mode() {
    let scratch = Scratch::new();
    let source = scratch.path().join("src");
    make_tree(&source);
    let host = MemoryHost::new();
    put_tree(&host, &source, Path::new("/plain"), &TreeOptions::default(), None).await.unwrap();
    assert_eq!(stat(&host, "/plain/a/b/run.sh").await.unwrap().mode, 0o644);
}

#[tokio::test]
async fn put_into_an_existing_directory_lands_under_the_source_name() {
    let scratch = Scratch::new();
    let source = scratch.path().join("site");
    std::fs::create_dir_all(source.join("css")).unwrap();
    std::fs::write(source.join("index.html"), b"<html>").unwrap();
    std::fs::write(source.join("css/main.css"), b"body{}").unwrap();
    let host = MemoryHost::new();
    host.mkdir(Path::new("/srv"), true).await.unwrap();

    put_tree(&host, &source, Path::new("/srv"), &TreeOptions::default(), None).await.unwrap();
    assert_eq!(host.read_file("/srv/site/index.html").unwrap().as_ref(), b"<html>");
    assert_eq!(host.read_file("/srv/site/css/main.css").unwrap().as_ref(), b"body{}");
    assert!(stat(&host, "/srv/index.html").await.is_none());

    // Trailing slashes change nothing; a second copy merges into the first.
    let with_slash = PathBuf::from(format!("{}/", source.display()));
    put_tree(&host, &with_slash, Path::new("/srv/"), &TreeOptions::default(), None).await.unwrap();
    assert!(stat(&host, "/srv/site/site").await.is_none());

    // `dir/.` puts the contents into the destination itself, as `cp -r dir/. dest`.
    put_tree(&host, &source.join("."), Path::new("/srv"), &TreeOptions::default(), None).await.unwrap();
    assert_eq!(host.read_file("/srv/index.html").unwrap().as_ref(), b"<html>");
    assert_eq!(host.read_file("/srv/css/main.css").unwrap().as_ref(), b"body{}");

    // Nothing to name the copy after.
    let err =
        put_tree(&host, &source.join("css/.."), Path::new("/srv"), &TreeOptions::default(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // A file at the destination is refused before anything moves.
    host.write_file("/file", "x", 0o644);
    let err = put_tree(&host, &source, Path::new("/file"), &TreeOptions::default(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("/file"), "{err}");

    // The source must be a directory.
    let err = put_tree(&host, &source.join("index.html"), Path::new("/other"), &TreeOptions::default(), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(stat(&host, "/other").await.is_none());
}

fn remote_site(host: &MemoryHost) {
    host.write_file("/srv/site/index.html", "<html>", 0o644);
    host.write_file("/srv/site/css/main.css", "body{}", 0o644);
}

#[tokio::test]
async fn get_into_an_existing_directory_lands_under_the_source_name() {
    let scratch = Scratch::new();
    let host = MemoryHost::new();
    remote_site(&host);
    host.symlink("/etc", "/srv/site/etc");

    let missing = scratch.path().join("fresh");
    let summary = get_tree(&host, Path::new("/srv/site"), &missing, None).await.unwrap();
    assert_eq!(summary, TreeSummary { files: 2, directories: 2, bytes: 12, skipped: 1 });
    assert_eq!(std::fs::read(missing.join("index.html")).unwrap(), b"<html>");
    assert!(std::fs::symlink_metadata(missing.join("etc")).is_err(), "remote links are not followed");

    let existing = scratch.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    get_tree(&host, Path::new("/srv/site/"), &existing, None).await.unwrap();
    assert_eq!(std::fs::read(existing.join("site/css/main.css")).unwrap(), b"body{}");
    assert!(!existing.join("index.html").exists());

    get_tree(&host, Path::new("/srv/site/."), &existing, None).await.unwrap();
    assert_eq!(std::fs::read(existing.join("index.html")).unwrap(), b"<html>");

    let err = get_tree(&host, Path::new("/"), &existing, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let file = scratch.path().join("file");
    std::fs::write(&file, b"keep").unwrap();
    let err = get_tree(&host, Path::new("/srv/site"), &file, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");

    let err = get_tree(&host, Path::new("/srv/site/index.html"), &scratch.path().join("x"), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = get_tree(&host, Path::new("/nowhere"), &scratch.path().join("x"), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!scratch.path().join("x").exists());
}

#[tokio::test]
async fn local_links_in_the_destination_are_not_written_through() {
    let scratch = Scratch::new();
    let outside = scratch.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let host = MemoryHost::new();
    remote_site(&host);

    // An existing directory link where the server has a directory.
    let target = scratch.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("css")).unwrap();
    let err = get_tree(&host, Path::new("/srv/site/."), &target, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("css"), "{err}");

    // An existing link where the server has a file.
    std::fs::remove_file(target.join("css")).unwrap();
    std::fs::remove_file(target.join("index.html")).unwrap();
    std::os::unix::fs::symlink(outside.join("index.html"), target.join("index.html")).unwrap();
    let err = get_tree(&host, Path::new("/srv/site/."), &target, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("index.html"), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written through a link");
}

/// What a hostile server does to its listings.
#[derive(Debug, Clone)]
enum Trick {
    /// Adds an entry with this name and kind to the listing of `in_dir`.
    Inject { in_dir: &'static str, name: &'static str, kind: FileKind },
    /// Every directory holds one more directory, forever.
    Endless,
    /// `get` of this path fails halfway through.
    FailGet(&'static str),
}

/// A `MemoryHost` behind a server that lies.
#[derive(Debug)]
struct Hostile {
    inner: MemoryHost,
    trick: Trick,
}

fn entry(name: &str, kind: FileKind) -> DirEntry {
    let metadata = Metadata { kind, size: 4, mode: 0o644, uid: None, gid: None, mtime: None, sha512: None };
    DirEntry { name: name.into(), metadata }
}

#[async_trait]
impl FileTransfer for Hostile {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        self.inner.put(source, remote, options).await
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        if let Trick::FailGet(path) = self.trick
            && remote == Path::new(path)
        {
            use tokio::io::AsyncWriteExt;
            sink.write_all(b"half").await.unwrap();
            return Err(Error::new(ErrorKind::ConnectionLost, "get").with_context(remote.display().to_string()));
        }
        self.inner.get(remote, sink).await
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        match self.trick {
            Trick::Endless => Ok(Some(entry("", FileKind::Dir).metadata)),
            _ => self.inner.stat(path, options).await,
        }
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        match &self.trick {
            Trick::Endless => Ok(vec![entry("d", FileKind::Dir)]),
            Trick::Inject { in_dir, name, kind } if path == Path::new(in_dir) => {
                let mut entries = self.inner.list(path).await?;
                entries.push(entry(name, *kind));
                Ok(entries)
            }
            _ => self.inner.list(path).await,
        }
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        self.inner.mkdir(path, parents).await
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.inner.remove(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to).await
    }
}

/// Every path below `root`, relative, sorted.
fn everything(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            found.push(entry.path().strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn names_that_are_not_one_component_are_refused_before_anything_is_written() {
    let evil = ["..", ".", "", "a/b", "../escape", "/etc/passwd", "nul\0byte", "trailing/"];
    for name in evil {
        for kind in [FileKind::File, FileKind::Dir] {
            for in_dir in ["/srv/site", "/srv/site/css"] {
                let scratch = Scratch::new();
                let inner = MemoryHost::new();
                remote_site(&inner);
                // Something the server would love to get written.
                inner.write_file("/srv/site/escape", "pwned", 0o644);
                inner.write_file("/srv/site/a/b", "pwned", 0o644);
                let hostile = Hostile { inner, trick: Trick::Inject { in_dir, name, kind } };
                let target = scratch.path().join("jail/target");
                std::fs::create_dir_all(scratch.path().join("jail")).unwrap();

                let err = get_tree(&hostile, Path::new("/srv/site"), &target, None).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Protocol, "{name:?} {kind:?} in {in_dir}: {err}");
                assert!(err.to_string().contains(&format!("{name:?}")), "the entry is named: {err}");

                let written = everything(scratch.path());
                if in_dir == "/srv/site" {
                    // The top listing is refused before the top directory is made.
                    assert_eq!(written, ["jail"], "{name:?}");
                } else {
                    // What was listed honestly before css; nothing for css.
                    let expected = [
                        "jail",
                        "jail/target",
                        "jail/target/a",
                        "jail/target/a/b",
                        "jail/target/escape",
                        "jail/target/index.html",
                    ];
                    assert_eq!(written, expected, "{name:?}");
                    assert_eq!(std::fs::read(target.join("escape")).unwrap(), b"pwned");
                }
            }
        }
    }
}

#[tokio::test]
async fn an_endless_tree_stops_at_the_depth_limit() {
    let scratch = Scratch::new();
    let hostile = Hostile { inner: MemoryHost::new(), trick: Trick::Endless };
    let target = scratch.path().join("target");
    let err = get_tree(&hostile, Path::new("/abyss"), &target, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains(&MAX_TREE_DEPTH.to_string()), "{err}");
    let deepest = everything(&target).iter().map(|p| p.split('/').count()).max().unwrap();
    assert_eq!(deepest, MAX_TREE_DEPTH);
}

#[tokio::test]
async fn a_failure_stops_the_walk_and_keeps_what_was_complete() {
    let scratch = Scratch::new();
    let inner = MemoryHost::new();
    for name in ["a", "b", "c"] {
        inner.write_file(&format!("/t/{name}"), format!("file {name}"), 0o644);
    }
    inner.write_file("/t/z/later", "later", 0o644);
    let hostile = Hostile { inner, trick: Trick::FailGet("/t/b") };
    let target = scratch.path().join("target");
    let err = get_tree(&hostile, Path::new("/t"), &target, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(err.to_string().contains("/t/b"), "{err}");
    // a is whole; b left no partial or temporary file; c and z never started.
    assert_eq!(everything(&target), ["a"]);
    assert_eq!(std::fs::read(target.join("a")).unwrap(), b"file a");
}

#[tokio::test]
async fn put_stops_at_the_first_failure() {
    let scratch = Scratch::new();
    let source = scratch.path().join("src");
    std::fs::create_dir_all(&source).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(source.join(name), name).unwrap();
    }
    let host = MemoryHost::new();
    // A directory where b should go: its put fails.
    host.mkdir(Path::new("/dst/b"), true).await.unwrap();
    // /dst exists, so this tree lands in /dst/src where nothing is in the way…
    put_tree(&host, &source, Path::new("/dst"), &TreeOptions::default(), None).await.unwrap();
    // …and this one in /dst itself, where b is a directory.
    let err = put_tree(&host, &source.join("."), Path::new("/dst"), &TreeOptions::default(), None).await.unwrap_err();
    assert!(err.to_string().contains("/dst/b"), "{err}");
    assert_eq!(host.read_file("/dst/a").unwrap().as_ref(), b"a");
    assert!(stat(&host, "/dst/c").await.is_none());
    let names: Vec<OsString> = host.list(Path::new("/dst")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a", "b", "src"]);
}
