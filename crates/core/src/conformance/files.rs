//! Checks for [`FileTransfer`]: exact round trips, modes, stat, not-found
//! errors, and atomic puts that leave the destination alone on failure.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::{random_bytes, sha256_hex};
use crate::error::ErrorKind;
use crate::files::{FileKind, FileTransfer, PutOptions, StatOptions};

async fn put_bytes(f: &dyn FileTransfer, path: &str, data: &[u8], options: &PutOptions) -> crate::Result<u64> {
    let mut reader = data;
    f.put(&mut reader, path, options).await
}

async fn get_bytes(f: &dyn FileTransfer, path: &str) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    f.get(path, &mut out).await?;
    Ok(out)
}

async fn round_trip(f: &dyn FileTransfer, base: &str, size: usize) {
    let path = format!("{base}/round-trip-{size}");
    let data = random_bytes(size, size as u64);
    let written = put_bytes(f, &path, &data, &PutOptions::default()).await.unwrap();
    assert_eq!(written, size as u64);
    let meta = f.stat(&path, StatOptions::default()).await.unwrap().expect("put file exists");
    assert_eq!((meta.kind, meta.size), (FileKind::File, size as u64));
    let back = get_bytes(f, &path).await.unwrap();
    assert_eq!(back.len(), size);
    assert_eq!(sha256_hex(&back), sha256_hex(&data), "content differs after a round trip");
}

/// A 0-byte file survives a round trip.
pub async fn round_trip_empty(f: &dyn FileTransfer, base: &str) {
    round_trip(f, base, 0).await;
}

/// A 1-byte file survives a round trip.
pub async fn round_trip_one_byte(f: &dyn FileTransfer, base: &str) {
    round_trip(f, base, 1).await;
}

/// A 100 MiB random file survives a round trip, sha256 compared.
pub async fn round_trip_100_mib(f: &dyn FileTransfer, base: &str) {
    round_trip(f, base, 100 << 20).await;
}

/// The mode given to `put` is the file's mode.
pub async fn mode_kept(f: &dyn FileTransfer, base: &str) {
    for mode in [0o600, 0o640, 0o755] {
        let path = format!("{base}/mode-{mode:o}");
        put_bytes(f, &path, b"x", &PutOptions { mode: Some(mode), ..Default::default() }).await.unwrap();
        let meta = f.stat(&path, StatOptions::default()).await.unwrap().unwrap();
        assert_eq!(meta.mode & 0o7777, mode, "mode of {path}");
    }
}

/// Replacing a file without naming a mode keeps the old file's mode.
pub async fn overwrite_keeps_mode(f: &dyn FileTransfer, base: &str) {
    let path = format!("{base}/keeps-mode");
    put_bytes(f, &path, b"old", &PutOptions { mode: Some(0o750), ..Default::default() }).await.unwrap();
    put_bytes(f, &path, b"new!", &PutOptions::default()).await.unwrap();
    let meta = f.stat(&path, StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((meta.mode & 0o7777, meta.size), (0o750, 4));
}

/// `stat` tells files from directories, gives sizes, and `None` for a missing path.
pub async fn stat_describes(f: &dyn FileTransfer, base: &str) {
    let dir = f.stat(base, StatOptions::default()).await.unwrap().expect("base exists");
    assert_eq!(dir.kind, FileKind::Dir);
    let path = format!("{base}/stat-me");
    put_bytes(f, &path, b"12345", &PutOptions::default()).await.unwrap();
    let file = f.stat(&path, StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((file.kind, file.size, file.sha512.as_deref()), (FileKind::File, 5, None));
    assert!(file.mtime.is_some(), "mtime is reported");
    assert_eq!(f.stat(&format!("{base}/absent"), StatOptions::default()).await.unwrap(), None);
}

/// `stat` with `sha512` gives the content's SHA-512.
pub async fn stat_sha512(f: &dyn FileTransfer, base: &str) {
    let path = format!("{base}/digest-me");
    put_bytes(f, &path, b"abc", &PutOptions::default()).await.unwrap();
    let meta = f.stat(&path, StatOptions { sha512: true, follow_links: true }).await.unwrap().unwrap();
    // SHA-512("abc"), FIPS 180-2 appendix C.1.
    assert_eq!(
        meta.sha512.as_deref(),
        Some(
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        )
    );
}

/// Reading, listing or removing a missing path is a not-found error.
pub async fn missing_path_not_found(f: &dyn FileTransfer, base: &str) {
    let missing = format!("{base}/no/such/file");
    let err = get_bytes(f, &missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "get: {err}");
    let err = f.list(&missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "list: {err}");
    let err = f.remove(&missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "remove: {err}");
}

/// `put` into a directory that does not exist fails with not-found.
pub async fn put_into_missing_dir_fails(f: &dyn FileTransfer, base: &str) {
    let err = put_bytes(f, &format!("{base}/missing-dir/file"), b"x", &PutOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// A reader that gives `remaining` bytes, then fails.
struct FailingReader {
    remaining: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.remaining == 0 {
            return Poll::Ready(Err(io::Error::other("source failed on purpose")));
        }
        let n = self.remaining.min(buf.remaining()).min(64 * 1024);
        buf.put_slice(&vec![b'z'; n]);
        self.remaining -= n;
        Poll::Ready(Ok(()))
    }
}

async fn assert_only_file(f: &dyn FileTransfer, dir: &str, name: &str, content: &[u8]) {
    let names: Vec<String> = f.list(dir).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![name.to_string()], "a failed put left files behind");
    assert_eq!(get_bytes(f, &format!("{dir}/{name}")).await.unwrap(), content, "destination changed");
}

/// A put whose source fails midway leaves the old destination intact and no
/// temporary file behind.
pub async fn failed_put_keeps_destination(f: &dyn FileTransfer, base: &str) {
    let dir = format!("{base}/atomic");
    f.mkdir(&dir, false).await.unwrap();
    let path = format!("{dir}/precious");
    put_bytes(f, &path, b"old content", &PutOptions::default()).await.unwrap();
    let mut failing = FailingReader { remaining: 3 << 20 };
    let err = f.put(&mut failing, &path, &PutOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("source failed on purpose"), "the cause is kept: {err}");
    assert_only_file(f, &dir, "precious", b"old content").await;
}

/// A put that delivers fewer bytes than announced leaves the old destination
/// intact.
pub async fn short_put_keeps_destination(f: &dyn FileTransfer, base: &str) {
    let dir = format!("{base}/short");
    f.mkdir(&dir, false).await.unwrap();
    let path = format!("{dir}/precious");
    put_bytes(f, &path, b"old content", &PutOptions::default()).await.unwrap();
    let options = PutOptions { expected_size: Some(1000), ..Default::default() };
    let err = put_bytes(f, &path, b"only 17 bytes....", &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert_only_file(f, &dir, "precious", b"old content").await;
}

/// `mkdir` (with and without parents), sorted `list`, `rename` and `remove`.
pub async fn directories(f: &dyn FileTransfer, base: &str) {
    let deep = format!("{base}/a/b/c");
    let err = f.mkdir(&deep, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "mkdir without parents: {err}");
    f.mkdir(&deep, true).await.unwrap();
    f.mkdir(&deep, true).await.expect("mkdir -p of an existing directory is fine");
    let err = f.mkdir(&deep, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

    for name in ["zeta", "alpha", "mid"] {
        put_bytes(f, &format!("{base}/a/{name}"), name.as_bytes(), &PutOptions::default()).await.unwrap();
    }
    let listing = f.list(&format!("{base}/a")).await.unwrap();
    let names: Vec<&str> = listing.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["alpha", "b", "mid", "zeta"]);
    assert_eq!(listing[1].metadata.kind, FileKind::Dir);
    assert_eq!((listing[0].metadata.kind, listing[0].metadata.size), (FileKind::File, 5));

    f.rename(&format!("{base}/a/alpha"), &format!("{base}/a/omega")).await.unwrap();
    assert_eq!(get_bytes(f, &format!("{base}/a/omega")).await.unwrap(), b"alpha");
    assert!(f.stat(&format!("{base}/a/alpha"), StatOptions::default()).await.unwrap().is_none());

    let err = f.remove(&format!("{base}/a/b")).await.unwrap_err();
    assert_ne!(err.kind(), ErrorKind::NotFound, "removing a non-empty directory must fail: {err}");
    f.remove(&deep).await.unwrap();
    f.remove(&format!("{base}/a/b")).await.unwrap();
    f.remove(&format!("{base}/a/omega")).await.unwrap();
    let names: Vec<String> = f.list(&format!("{base}/a")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["mid", "zeta"]);
}
