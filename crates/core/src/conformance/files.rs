//! Checks for [`FileTransfer`]: exact round trips, modes, mtimes and owners
//! as asked, stat with and without following links, not-found and
//! not-empty errors, renames over files, hostile and long names, a 256 MiB
//! file streamed with flat memory, and puts that fail or are abandoned
//! leaving the destination as it was and no temporary file behind.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{HEAVY, StalledSource, Subject, random_bytes, sha256_hex, within};
use crate::error::ErrorKind;
use crate::files::{FileKind, FileTransfer, PutOptions, StatOptions};

async fn put_bytes(
    f: &dyn FileTransfer,
    path: impl AsRef<Path>,
    data: &[u8],
    options: &PutOptions,
) -> crate::Result<u64> {
    let (path, mut reader) = (path.as_ref(), data);
    within(&format!("put {path:?}"), f.put(&mut reader, path, options)).await
}

async fn get_bytes(f: &dyn FileTransfer, path: impl AsRef<Path>) -> crate::Result<Vec<u8>> {
    let (path, mut out) = (path.as_ref(), Vec::new());
    within(&format!("get {path:?}"), f.get(path, &mut out)).await?;
    Ok(out)
}

async fn names(f: &dyn FileTransfer, dir: impl AsRef<Path>) -> Vec<OsString> {
    let dir = dir.as_ref();
    let listing = within(&format!("list {dir:?}"), f.list(dir)).await;
    listing.unwrap_or_else(|e| panic!("list {dir:?}: {e}")).into_iter().map(|e| e.name).collect()
}

async fn round_trip(s: &Subject, size: usize) {
    let Some(f) = s.files().await else { return };
    let path = format!("{}/round-trip-{size}", s.scratch);
    let data = random_bytes(size, size as u64);
    let written = put_bytes(&*f, &path, &data, &PutOptions::default()).await.unwrap();
    assert_eq!(written, size as u64);
    let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().expect("put file exists");
    assert_eq!((meta.kind, meta.size), (FileKind::File, size as u64));
    let back = get_bytes(&*f, &path).await.unwrap();
    assert_eq!(back.len(), size);
    assert_eq!(sha256_hex(&back), sha256_hex(&data), "content differs after a round trip");
}

/// A 0-byte file survives a round trip.
pub async fn round_trip_empty(s: &Subject) {
    round_trip(s, 0).await;
}

/// A 1-byte file survives a round trip.
pub async fn round_trip_one_byte(s: &Subject) {
    round_trip(s, 1).await;
}

/// A 100 MiB random file survives a round trip, sha256 compared.
pub async fn round_trip_100_mib(s: &Subject) {
    let _heavy = HEAVY.lock().await;
    round_trip(s, 100 << 20).await;
}

/// The mode given to `put` is the file's mode. The set-id and sticky bits
/// may be refused where the server will not set them (vsftpd never does),
/// but then with [`ErrorKind::Unsupported`] and no file: never silently
/// dropped.
pub async fn mode_kept(s: &Subject) {
    let Some(f) = s.files().await else { return };
    for mode in [0o600, 0o640, 0o755, 0o4750] {
        let path = format!("{}/mode-{mode:o}", s.scratch);
        let put = put_bytes(&*f, &path, b"x", &PutOptions { mode: Some(mode), ..Default::default() }).await;
        if mode & 0o7000 != 0
            && let Err(err) = &put
        {
            assert_eq!(err.kind(), ErrorKind::Unsupported, "put with mode {mode:o}: {err}");
            assert_eq!(
                f.stat(Path::new(&path), StatOptions::default()).await.unwrap(),
                None,
                "a refused put left {path}"
            );
            continue;
        }
        put.unwrap_or_else(|e| panic!("put with mode {mode:o}: {e}"));
        let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
        assert_eq!(meta.mode & 0o7777, mode, "mode of {path}");
    }
}

/// Replacing a file without naming a mode keeps the old file's mode.
pub async fn overwrite_keeps_mode(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let path = format!("{}/keeps-mode", s.scratch);
    put_bytes(&*f, &path, b"old", &PutOptions { mode: Some(0o750), ..Default::default() }).await.unwrap();
    put_bytes(&*f, &path, b"new!", &PutOptions::default()).await.unwrap();
    let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((meta.mode & 0o7777, meta.size), (0o750, 4));
}

/// The modification time given to `put` is the file's.
pub async fn mtime_kept(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let path = format!("{}/dated", s.scratch);
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    put_bytes(&*f, &path, b"abc", &PutOptions { mtime: Some(mtime), ..Default::default() }).await.unwrap();
    let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!(meta.mtime, Some(mtime), "mtime of {path}");
}

/// The owner and group given to `put` are the file's: the scratch
/// directory's own, and as root another user's (65534, `nobody`).
pub async fn owner_kept(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let dir =
        f.stat(Path::new(&s.scratch), StatOptions::default()).await.unwrap().expect("the scratch directory exists");
    let (Some(uid), Some(gid)) = (dir.uid, dir.gid) else {
        // A transport that cannot tell owners cannot be held to them.
        return;
    };
    let mut owners = vec![(uid, gid)];
    if uid == 0 {
        owners.push((65534, 65534));
    }
    for (uid, gid) in owners {
        let path = format!("{}/owned-{uid}", s.scratch);
        let options = PutOptions { owner: Some(uid.to_string()), group: Some(gid.to_string()), ..Default::default() };
        put_bytes(&*f, &path, b"mine", &options).await.unwrap_or_else(|e| panic!("put owned by {uid}:{gid}: {e}"));
        let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
        assert_eq!((meta.uid, meta.gid), (Some(uid), Some(gid)), "owner of {path}");
    }
}

/// `stat` tells files from directories, gives sizes, and `None` for a missing path.
pub async fn stat_describes(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let dir = f.stat(Path::new(&s.scratch), StatOptions::default()).await.unwrap().expect("base exists");
    assert_eq!(dir.kind, FileKind::Dir);
    let path = format!("{}/stat-me", s.scratch);
    put_bytes(&*f, &path, b"12345", &PutOptions::default()).await.unwrap();
    let file = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((file.kind, file.size, file.sha512.as_deref()), (FileKind::File, 5, None));
    assert!(file.mtime.is_some(), "mtime is reported");
    assert_eq!(f.stat(Path::new(&format!("{}/absent", s.scratch)), StatOptions::default()).await.unwrap(), None);
}

/// SHA-512("abc"), FIPS 180-2 appendix C.1.
const ABC_SHA512: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                          2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

/// `stat` with `sha512` gives the content's SHA-512.
pub async fn stat_sha512(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let path = format!("{}/digest-me", s.scratch);
    put_bytes(&*f, &path, b"abc", &PutOptions::default()).await.unwrap();
    let meta = f.stat(Path::new(&path), StatOptions { sha512: true, follow_links: true }).await.unwrap().unwrap();
    assert_eq!(meta.sha512.as_deref(), Some(ABC_SHA512));
}

/// `stat` describes a link itself, or with `follow_links` its target; a
/// dangling link followed is missing.
pub async fn stat_links(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let Some(symlink) = &s.symlink else { return };
    let target = format!("{}/link-target", s.scratch);
    put_bytes(&*f, &target, b"abc", &PutOptions::default()).await.unwrap();
    let link = format!("{}/link", s.scratch);
    symlink("link-target", &link);
    let own =
        f.stat(Path::new(&link), StatOptions { follow_links: false, sha512: true }).await.unwrap().expect("the link");
    assert_eq!((own.kind, own.sha512), (FileKind::Link, None));
    let followed =
        f.stat(Path::new(&link), StatOptions { follow_links: true, sha512: true }).await.unwrap().expect("its target");
    assert_eq!((followed.kind, followed.size, followed.sha512.as_deref()), (FileKind::File, 3, Some(ABC_SHA512)));

    let dangling = format!("{}/dangling", s.scratch);
    symlink("nowhere", &dangling);
    let own = f.stat(Path::new(&dangling), StatOptions::default()).await.unwrap();
    assert_eq!(own.map(|m| m.kind), Some(FileKind::Link));
    assert_eq!(f.stat(Path::new(&dangling), StatOptions { follow_links: true, sha512: false }).await.unwrap(), None);
    assert_eq!(get_bytes(&*f, &dangling).await.unwrap_err().kind(), ErrorKind::NotFound);
}

/// Reading, listing or removing a missing path is a not-found error.
pub async fn missing_path_not_found(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let missing = format!("{}/no/such/file", s.scratch);
    let err = get_bytes(&*f, &missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "get: {err}");
    let err = f.list(Path::new(&missing)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "list: {err}");
    let err = f.remove(Path::new(&missing)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "remove: {err}");
    let err = f.rename(Path::new(&missing), Path::new(&format!("{}/elsewhere", s.scratch))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "rename: {err}");
}

/// `put` into a directory that does not exist fails with not-found.
pub async fn put_into_missing_dir_fails(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let path = format!("{}/missing-dir/file", s.scratch);
    let err = put_bytes(&*f, &path, b"x", &PutOptions::default()).await.unwrap_err();
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

/// `dir` holds exactly `name`, with `content`.
async fn assert_only_file(f: &dyn FileTransfer, dir: &str, name: &str, content: &[u8]) {
    assert_eq!(names(f, dir).await, [name], "a failed put left files behind");
    assert_eq!(get_bytes(f, &format!("{dir}/{name}")).await.unwrap(), content, "destination changed");
}

/// A directory with one file, `precious`, holding `old content`.
async fn precious(f: &dyn FileTransfer, s: &Subject, dir: &str) -> (String, String) {
    let dir = format!("{}/{dir}", s.scratch);
    f.mkdir(Path::new(&dir), false).await.unwrap();
    let path = format!("{dir}/precious");
    put_bytes(f, &path, b"old content", &PutOptions::default()).await.unwrap();
    (dir, path)
}

/// A put whose source fails midway leaves the old destination intact and no
/// temporary file behind.
pub async fn failed_put_keeps_destination(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let (dir, path) = precious(&*f, s, "atomic").await;
    let mut failing = FailingReader { remaining: 3 << 20 };
    let err = within("a failing put", f.put(&mut failing, Path::new(&path), &PutOptions::default())).await.unwrap_err();
    assert!(err.to_string().contains("source failed on purpose"), "the cause is kept: {err}");
    assert_only_file(&*f, &dir, "precious", b"old content").await;
}

/// A put that delivers fewer bytes than announced leaves the old destination
/// intact.
pub async fn short_put_keeps_destination(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let (dir, path) = precious(&*f, s, "short").await;
    let options = PutOptions { expected_size: Some(1000), ..Default::default() };
    let err = put_bytes(&*f, &path, b"only 17 bytes....", &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert_only_file(&*f, &dir, "precious", b"old content").await;
}

/// A put abandoned midway (its future dropped) leaves the old destination
/// intact, and its temporary file goes away within seconds.
pub async fn abandoned_put_leaves_nothing(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let (dir, path) = precious(&*f, s, "abandoned").await;
    let mut source = StalledSource::default();
    let options = PutOptions::default();
    let put = f.put(&mut source, Path::new(&path), &options);
    assert!(tokio::time::timeout(Duration::from_millis(500), put).await.is_err(), "the put cannot finish");
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(&*f, &dir).await != ["precious"] {
        assert!(Instant::now() < deadline, "an abandoned put left {:?}", names(&*f, &dir).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_bytes(&*f, &path).await.unwrap(), b"old content");
}

/// `mkdir` (with and without parents), sorted `list`, `rename` and `remove`.
pub async fn directories(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let base = &s.scratch;
    let deep = format!("{base}/a/b/c");
    let err = f.mkdir(Path::new(&deep), false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "mkdir without parents: {err}");
    f.mkdir(Path::new(&deep), true).await.unwrap();
    f.mkdir(Path::new(&deep), true).await.expect("mkdir -p of an existing directory is fine");
    let err = f.mkdir(Path::new(&deep), false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

    for name in ["zeta", "alpha", "mid"] {
        put_bytes(&*f, &format!("{base}/a/{name}"), name.as_bytes(), &PutOptions::default()).await.unwrap();
    }
    let listing = f.list(Path::new(&format!("{base}/a"))).await.unwrap();
    let listed: Vec<&OsStr> = listing.iter().map(|e| e.name.as_os_str()).collect();
    assert_eq!(listed, ["alpha", "b", "mid", "zeta"]);
    assert_eq!(listing[1].metadata.kind, FileKind::Dir);
    assert_eq!((listing[0].metadata.kind, listing[0].metadata.size), (FileKind::File, 5));

    f.rename(Path::new(&format!("{base}/a/alpha")), Path::new(&format!("{base}/a/omega"))).await.unwrap();
    assert_eq!(get_bytes(&*f, &format!("{base}/a/omega")).await.unwrap(), b"alpha");
    assert!(f.stat(Path::new(&format!("{base}/a/alpha")), StatOptions::default()).await.unwrap().is_none());

    f.remove(Path::new(&deep)).await.unwrap();
    f.remove(Path::new(&format!("{base}/a/b"))).await.unwrap();
    f.remove(Path::new(&format!("{base}/a/omega"))).await.unwrap();
    assert_eq!(names(&*f, &format!("{base}/a")).await, ["mid", "zeta"]);
}

/// `mkdir` with parents makes every level of a deep path.
pub async fn nested_mkdir(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let levels = ["one", "two", "three", "four", "five"];
    let deep = format!("{}/{}", s.scratch, levels.join("/"));
    f.mkdir(Path::new(&deep), true).await.unwrap();
    let mut path = s.scratch.clone();
    for level in levels {
        path = format!("{path}/{level}");
        let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap();
        assert_eq!(meta.map(|m| m.kind), Some(FileKind::Dir), "{path}");
    }
}

/// `rename` onto an existing file replaces it.
pub async fn rename_replaces(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let (from, to) = (format!("{}/from", s.scratch), format!("{}/to", s.scratch));
    put_bytes(&*f, &from, b"the new one", &PutOptions::default()).await.unwrap();
    put_bytes(&*f, &to, b"the old one", &PutOptions::default()).await.unwrap();
    f.rename(Path::new(&from), Path::new(&to)).await.unwrap_or_else(|e| panic!("rename over an existing file: {e}"));
    assert_eq!(get_bytes(&*f, &to).await.unwrap(), b"the new one");
    assert_eq!(f.stat(Path::new(&from), StatOptions::default()).await.unwrap(), None);
}

/// Removing a directory that still has entries fails with
/// [`ErrorKind::DirectoryNotEmpty`] and removes nothing.
pub async fn remove_non_empty_dir(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let dir = format!("{}/full", s.scratch);
    f.mkdir(Path::new(&dir), false).await.unwrap();
    put_bytes(&*f, &format!("{dir}/inside"), b"x", &PutOptions::default()).await.unwrap();
    let err = f.remove(Path::new(&dir)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DirectoryNotEmpty, "{err}");
    assert_eq!(names(&*f, &dir).await, ["inside"]);
}

/// File names that break shell-, SCP- and FTP-based transports.
pub const HOSTILE_NAMES: &[&str] = &[
    "with space",
    " leading space",
    "trailing space ",
    "it's",
    "double\"quote",
    "dollar$HOME",
    "${PATH}",
    "star*",
    "question?",
    "[bracket]",
    "back\\slash",
    "-leading-dash",
    "--",
    "new\nline",
    "tab\tname",
    "semi;colon",
    "pipe|name",
    "amp&name",
    "less<more>",
    "paren(x)",
    "brace{x}",
    "hash#",
    "~tilde",
    "`tick`",
    "$(id)",
    "percent%s%n",
    "colon:name",
    ".hidden",
    "..dots",
    "ü-umlaut",
    "日本語",
    "emoji-🙂",
];

/// Names that are not UTF-8: a POSIX file name is any bytes but `/` and
/// NUL. Latin-1 text, stray continuation bytes, and the worst a shell could
/// meet: a leading dash and a trailing newline around such bytes.
pub const BYTE_NAMES: &[&[u8]] = &[b"caf\xe9", b"\xff\xfe", b"-\x80 x\n", b"a\xc3"];

/// Put, get, stat, list, rename and remove each hostile name in `names`.
async fn exercise_names(f: &dyn FileTransfer, s: &Subject, dir: &str, names_to_try: &[OsString]) {
    let dir = Path::new(&s.scratch).join(dir);
    f.mkdir(&dir, false).await.unwrap();
    for name in names_to_try {
        let path = dir.join(name);
        let content = format!("content of {}", name.to_string_lossy());
        put_bytes(f, &path, content.as_bytes(), &PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
        assert_eq!(get_bytes(f, &path).await.unwrap_or_else(|e| panic!("get {name:?}: {e}")), content.as_bytes());
        let meta = f.stat(&path, StatOptions::default()).await.unwrap_or_else(|e| panic!("stat {name:?}: {e}"));
        assert_eq!(meta.map(|m| (m.kind, m.size)), Some((FileKind::File, content.len() as u64)), "stat {name:?}");
    }
    let mut expected = names_to_try.to_vec();
    expected.sort();
    assert_eq!(names(f, &dir).await, expected, "list of the hostile names");
    for name in names_to_try {
        let path = dir.join(name);
        let mut moved = name.clone();
        moved.push(".moved");
        let moved = dir.join(moved);
        f.rename(&path, &moved).await.unwrap_or_else(|e| panic!("rename {name:?}: {e}"));
        assert_eq!(f.stat(&path, StatOptions::default()).await.unwrap(), None, "{name:?} after its rename");
        f.remove(&moved).await.unwrap_or_else(|e| panic!("remove {name:?}.moved: {e}"));
    }
    assert!(names(f, &dir).await.is_empty(), "everything was removed");
    // A directory with such a name, too.
    let sub = dir.join(&names_to_try[0]);
    f.mkdir(&sub, false).await.unwrap_or_else(|e| panic!("mkdir {sub:?}: {e}"));
    put_bytes(f, sub.join(&names_to_try[names_to_try.len() - 1]), b"deep", &PutOptions::default()).await.unwrap();
    assert_eq!(names(f, &sub).await.len(), 1);
}

/// Hostile names survive every file operation.
pub async fn hostile_names(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let all: Vec<OsString> = HOSTILE_NAMES.iter().map(OsString::from).collect();
    exercise_names(&*f, s, "hostile", &all).await;
}

/// Names that are not UTF-8 survive every file operation, where the scheme
/// declares [`crate::Capabilities::byte_names`]; elsewhere each operation
/// refuses them with [`ErrorKind::Unsupported`] and nothing is created.
pub async fn byte_names(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let all: Vec<OsString> = BYTE_NAMES.iter().map(|b| OsString::from_vec(b.to_vec())).collect();
    if s.capabilities.byte_names {
        exercise_names(&*f, s, "bytes", &all).await;
        return;
    }
    let dir = Path::new(&s.scratch).join("bytes");
    f.mkdir(&dir, false).await.unwrap();
    for name in &all {
        let path = dir.join(name);
        let unsupported = |what: &str, result: crate::Result<()>| match result {
            Err(err) if err.kind() == ErrorKind::Unsupported => {}
            other => panic!("{what} {name:?} without byte_names: {other:?}, expected Unsupported"),
        };
        unsupported("put", put_bytes(&*f, &path, b"x", &PutOptions::default()).await.map(drop));
        unsupported("get", get_bytes(&*f, &path).await.map(drop));
        unsupported("stat", f.stat(&path, StatOptions::default()).await.map(drop));
        unsupported("mkdir", f.mkdir(&path, false).await);
        unsupported("remove", f.remove(&path).await);
        unsupported("rename", f.rename(&dir, &path).await);
    }
    assert!(names(&*f, &dir).await.is_empty(), "nothing was created");
}

/// 255-byte names, ASCII and multi-byte, survive every file operation.
pub async fn long_and_unicode_names(s: &Subject) {
    let Some(f) = s.files().await else { return };
    // `.moved` is appended by the rename step, so these stay under 255 - 6
    // bytes; the first one is tried at the limit on its own below.
    let long_ascii = "n".repeat(249);
    let long_multibyte = format!("{}x", "ü".repeat(124));
    exercise_names(&*f, s, "long", &[long_ascii.into(), long_multibyte.into()]).await;
    let limit = format!("{}/{}", s.scratch, "m".repeat(255));
    put_bytes(&*f, &limit, b"255", &PutOptions::default()).await.unwrap_or_else(|e| panic!("a 255-byte name: {e}"));
    assert_eq!(get_bytes(&*f, &limit).await.unwrap(), b"255");
}

/// Bytes in the streaming check: 256 MiB.
pub const STREAMED_FILE: u64 = 256 << 20;

/// How much a streamed file may add to this process's memory, where the
/// transport is meant to stream (a transport that buffers the file takes
/// at least its size).
pub const STREAMING_MEMORY_LIMIT: u64 = 160 << 20;

/// A 256 MiB file goes up and comes back with flat memory: this process's
/// resident memory grows by well under the file's size.
pub async fn large_file_streams(s: &Subject) {
    let Some(f) = s.files().await else { return };
    let _heavy = HEAVY.lock().await;
    let path = format!("{}/streamed", s.scratch);
    let sampler = MemorySampler::start();
    let mut source = Pattern { left: STREAMED_FILE, offset: 0 };
    let written = within("a 256 MiB put", f.put(&mut source, Path::new(&path), &PutOptions::default())).await.unwrap();
    assert_eq!(written, STREAMED_FILE);
    let mut sink = PatternCheck { offset: 0, mismatch: None };
    within("a 256 MiB get", f.get(Path::new(&path), &mut sink)).await.unwrap();
    assert_eq!((sink.offset, sink.mismatch), (STREAMED_FILE, None), "the bytes that came back");
    let grown = sampler.stop();
    if s.files_in_memory {
        return;
    }
    assert!(grown < STREAMING_MEMORY_LIMIT, "memory grew by {} MiB moving a 256 MiB file: not streamed", grown >> 20);
}

/// The byte at `offset` of the streamed file.
fn pattern_byte(offset: u64) -> u8 {
    (offset.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// A source of [`STREAMED_FILE`] bytes that holds none of them.
struct Pattern {
    left: u64,
    offset: u64,
}

impl AsyncRead for Pattern {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(256 << 10) as usize;
        let start = self.offset;
        let chunk: Vec<u8> = (0..n as u64).map(|i| pattern_byte(start + i)).collect();
        buf.put_slice(&chunk);
        self.offset += n as u64;
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// A sink that checks the streamed bytes as they arrive and keeps none.
struct PatternCheck {
    offset: u64,
    mismatch: Option<u64>,
}

impl AsyncWrite for PatternCheck {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.mismatch.is_none()
            && let Some(i) = buf.iter().enumerate().position(|(i, b)| *b != pattern_byte(self.offset + i as u64))
        {
            self.mismatch = Some(self.offset + i as u64);
        }
        self.offset += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Samples this process's resident memory every 20 ms on a thread of its
/// own, so the figure is right whatever the runtime is busy with.
struct MemorySampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl MemorySampler {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let base = resident_bytes();
            let mut peak = base;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(resident_bytes());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(resident_bytes()).saturating_sub(base)
        });
        MemorySampler { stop, thread }
    }

    /// How far the resident memory rose above where it started.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap_or(0)
    }
}

/// This process's resident memory, from `/proc/self/statm` (0 elsewhere).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}
