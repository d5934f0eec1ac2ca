//! The `sftp` scheme against a real OpenSSH sshd and its sftp-server: the
//! files conformance suite, plus what it does not cover (the environment,
//! owners, times, a server dying mid-transfer).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use tether_core::conformance::{random_bytes, sha256_hex};
use tether_core::{
    Connection, ErrorKind, FileKind, FileTransfer, HostConfig, OptionSource, PutOptions, StatOptions, get_file,
    put_file,
};
use tether_test_servers::{Sshd, SshdBuilder};
use tokio::io::{AsyncRead, ReadBuf};

/// Longest a test waits for a transfer that must fail once its server is gone.
const FAILS_WITHIN: Duration = Duration::from_secs(30);

/// A private sshd, a connection to it and its SFTP transport.
struct Server {
    sshd: Sshd,
    connection: Arc<dyn Connection>,
    files: Arc<dyn FileTransfer>,
    /// Scratch directory on the server (the same machine).
    dir: tempfile::TempDir,
    _known_hosts: tempfile::TempDir,
}

impl Server {
    fn base(&self) -> String {
        self.dir.path().to_str().expect("temporary paths are UTF-8").to_string()
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.base())
    }
}

async fn server_with(builder: SshdBuilder, configure: impl FnOnce(&mut HostConfig)) -> Server {
    let sshd = common::start(builder).await;
    let known = tempfile::tempdir().unwrap();
    let known_hosts = known.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let mut host = common::host_for(&sshd, &known_hosts);
    configure(&mut host);
    let connection = common::connect(host).await.expect("connect");
    let files = connection.file_transfer("sftp").await.expect("open sftp");
    let dir = tempfile::tempdir().unwrap();
    Server { sshd, connection, files, dir, _known_hosts: known }
}

async fn server() -> Server {
    server_with(Sshd::builder(), |_| {}).await
}

async fn put_bytes(
    files: &dyn FileTransfer,
    path: &str,
    data: &[u8],
    options: &PutOptions,
) -> tether_core::Result<u64> {
    let mut reader = data;
    files.put(&mut reader, Path::new(path), options).await
}

async fn get_bytes(files: &dyn FileTransfer, path: &str) -> tether_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    files.get(Path::new(path), &mut out).await?;
    Ok(out)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_reaches_the_sftp_server() {
    // sshd runs a forced command instead of the subsystem's program, with the
    // subsystem's command line in SSH_ORIGINAL_COMMAND: a wrapper records the
    // environment the SFTP server gets, then becomes the SFTP server.
    let scripts = tempfile::tempdir().unwrap();
    let record = scripts.path().join("env.out");
    let wrapper = scripts.path().join("sftp-wrapper");
    std::fs::write(&wrapper, format!("#!/bin/sh\nenv > '{}'\nexec $SSH_ORIGINAL_COMMAND\n", record.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(scripts.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let builder = Sshd::builder().config_line(format!("ForceCommand {}", wrapper.display()));
    let server = server_with(builder, |host| {
        let env = serde_json::json!({"TETHER_SFTP_PROBE": "it arrived", "LC_TETHER": "x y", "NOT_ACCEPTED": "no"});
        host.options.set("sftp_options", "env", env, OptionSource::Api).unwrap();
    })
    .await;
    // The session works although sshd refused NOT_ACCEPTED.
    let path = server.path("hello");
    put_bytes(&*server.files, &path, b"hello", &PutOptions::default()).await.unwrap();
    assert_eq!(get_bytes(&*server.files, &path).await.unwrap(), b"hello");
    let seen = std::fs::read_to_string(&record).expect("the wrapper ran");
    let lines: Vec<&str> = seen.lines().collect();
    assert!(lines.contains(&"TETHER_SFTP_PROBE=it arrived"), "{seen}");
    assert!(lines.contains(&"LC_TETHER=x y"), "{seen}");
    assert!(!seen.contains("NOT_ACCEPTED"), "sshd's AcceptEnv refuses it: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_listing_rename_and_remove() {
    let server = server().await;
    let f = &*server.files;
    let deep = server.path("x/y/z");
    f.mkdir(Path::new(&deep), true).await.unwrap();
    f.mkdir(Path::new(&deep), true).await.expect("an existing directory is fine with parents");
    f.mkdir(Path::new(&format!("{deep}/")), true).await.expect("a trailing slash too");
    assert_eq!(f.mkdir(Path::new(&deep), false).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(f.mkdir(Path::new(&server.path("nope/x")), false).await.unwrap_err().kind(), ErrorKind::NotFound);
    put_bytes(f, &server.path("x/file"), b"data", &PutOptions::default()).await.unwrap();
    let err = f.mkdir(Path::new(&server.path("x/file/sub")), true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "a file in the way: {err}");

    std::os::unix::fs::symlink("file", server.dir.path().join("x/link")).unwrap();
    let listing = f.list(Path::new(&server.path("x"))).await.unwrap();
    let seen: Vec<(&str, FileKind)> = listing.iter().map(|e| (e.name.to_str().unwrap(), e.metadata.kind)).collect();
    assert_eq!(seen, [("file", FileKind::File), ("link", FileKind::Link), ("y", FileKind::Dir)]);
    assert_eq!(listing[0].metadata.size, 4);
    let link = f.stat(Path::new(&server.path("x/link")), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!(link.kind, FileKind::Link);
    let target =
        f.stat(Path::new(&server.path("x/link")), StatOptions { follow_links: true, sha512: false }).await.unwrap();
    assert_eq!(target.map(|m| (m.kind, m.size)), Some((FileKind::File, 4)));

    // Rename over an existing file replaces it.
    let old = random_bytes(300_000, 1);
    let new = random_bytes(200_000, 2);
    put_bytes(f, &server.path("x/old"), &old, &PutOptions::default()).await.unwrap();
    put_bytes(f, &server.path("x/new"), &new, &PutOptions::default()).await.unwrap();
    f.rename(server.path("x/new").as_ref(), server.path("x/old").as_ref()).await.unwrap();
    assert_eq!(sha256_hex(&get_bytes(f, &server.path("x/old")).await.unwrap()), sha256_hex(&new));
    assert!(f.stat(Path::new(&server.path("x/new")), StatOptions::default()).await.unwrap().is_none());
    let err = f.rename(server.path("x/absent").as_ref(), server.path("x/old").as_ref()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // Remove takes a file, a link (not its target) and an empty directory.
    f.remove(Path::new(&server.path("x/link"))).await.unwrap();
    assert!(server.dir.path().join("x/file").exists());
    f.remove(Path::new(&server.path("x/file"))).await.unwrap();
    f.remove(Path::new(&deep)).await.unwrap();
    assert_ne!(f.remove(Path::new(&server.path("x"))).await.unwrap_err().kind(), ErrorKind::NotFound, "not empty");
    f.remove(Path::new(&server.path("x/y"))).await.unwrap();
    f.remove(Path::new(&server.path("x/old"))).await.unwrap();
    assert!(f.list(Path::new(&server.path("x"))).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_are_not_found() {
    let server = server().await;
    let f = &*server.files;
    let missing = server.path("missing/file");
    assert_eq!(f.stat(Path::new(&missing), StatOptions { follow_links: true, sha512: true }).await.unwrap(), None);
    assert_eq!(get_bytes(f, &missing).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(f.list(Path::new(&missing)).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(f.remove(Path::new(&missing)).await.unwrap_err().kind(), ErrorKind::NotFound);
    let err = put_bytes(f, &missing, b"x", &PutOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("missing/file"), "the error names the path: {err}");
    let err = get_bytes(f, &server.base()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "get of a directory: {err}");
    assert!(names(server.dir.path()).is_empty(), "nothing left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_and_group_by_id_and_name() {
    let server = server().await;
    let f = &*server.files;
    let path = server.path("owned");
    let as_root = std::fs::metadata(server.dir.path()).unwrap().uid() == 0;
    let options = PutOptions { owner: Some("1".into()), group: Some("2".into()), ..Default::default() };
    let result = put_bytes(f, &path, b"owned", &options).await;
    if !as_root {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::PermissionDenied);
        return;
    }
    result.unwrap();
    let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((meta.uid, meta.gid, meta.mode), (Some(1), Some(2), 0o644));
    // As root, a replacement keeps the replaced file's owner, as cp does.
    put_bytes(f, &path, b"again", &PutOptions::default()).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1, 2));
    // Only the group: the owner stays.
    put_bytes(f, &path, b"group", &PutOptions { group: Some("3".into()), ..Default::default() }).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1, 3));
    // Names are looked up on the host.
    let options = PutOptions { owner: Some("root".into()), group: Some("root".into()), ..Default::default() };
    put_bytes(f, &path, b"named", &options).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    let options = PutOptions { owner: Some("no-such-user-tether".into()), ..Default::default() };
    let err = put_bytes(f, &path, b"nobody", &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"named", "a refused put changes nothing");
    assert_eq!(names(server.dir.path()), ["owned"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtime_and_mode_kept() {
    let server = server().await;
    let f = &*server.files;
    let path = server.path("dated");
    let mtime = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let options = PutOptions { mtime: Some(mtime), mode: Some(0o600), ..Default::default() };
    put_bytes(f, &path, b"dated", &options).await.unwrap();
    let meta = f.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((meta.mtime, meta.mode), (Some(mtime), 0o600));

    // put_file's `preserve` carries the local file's mode and time.
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source");
    let data = random_bytes(1 << 20, 3);
    std::fs::write(&source, &data).unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o751)).unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    std::fs::File::options().write(true).open(&source).unwrap().set_modified(when).unwrap();
    let copy = server.path("preserved");
    put_file(f, &source, Path::new(&copy), &PutOptions::default(), true, None).await.unwrap();
    let meta = f.stat(Path::new(&copy), StatOptions { follow_links: false, sha512: true }).await.unwrap().unwrap();
    assert_eq!((meta.mtime, meta.mode, meta.size), (Some(when), 0o751, 1 << 20));
    let local_digest = {
        use sha2::Digest;
        hex(&sha2::Sha512::digest(&data))
    };
    assert_eq!(meta.sha512.as_deref(), Some(local_digest.as_str()));

    let err = put_bytes(f, &path, b"x", &PutOptions { mtime: Some(UNIX_EPOCH - Duration::from_secs(1)), ..options })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An endless source that says when `after` bytes went through.
struct Endless {
    sent: Arc<AtomicU64>,
    after: u64,
    reached: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AsyncRead for Endless {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(64 << 10);
        buf.put_slice(&vec![b'q'; n]);
        let total = self.sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if total >= self.after
            && let Some(reached) = self.reached.take()
        {
            let _ = reached.send(());
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_put() {
    let mut server = server().await;
    let path = server.path("precious");
    std::fs::write(&path, b"old content").unwrap();
    let (reached, killed) = tokio::sync::oneshot::channel();
    let files = server.files.clone();
    let target = path.clone();
    let put = tokio::spawn(async move {
        let mut source = Endless { sent: Arc::default(), after: 8 << 20, reached: Some(reached) };
        files.put(&mut source, Path::new(&target), &PutOptions::default()).await
    });
    killed.await.expect("the put got going");
    server.sshd.kill().unwrap();
    let result = tokio::time::timeout(FAILS_WITHIN, put).await.expect("the put fails promptly").unwrap();
    let err = result.unwrap_err();
    eprintln!("put: {err}");
    assert!(matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::Io), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old content", "the destination is untouched");
    // The server died with the temporary file open: nobody is left to remove
    // it, but it is hidden and never took the destination's name.
    for name in names(server.dir.path()) {
        assert!(name == "precious" || (name.starts_with(".precious.tether-") && name.ends_with(".tmp")), "{name}");
    }
    // Later requests fail at once too.
    let err = server.files.stat(Path::new(&path), StatOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_get() {
    let server = server().await;
    let remote = server.path("big");
    std::fs::write(&remote, random_bytes(100 << 20, 4)).unwrap();
    let local = tempfile::tempdir().unwrap();
    let destination = local.path().join("copy");
    let started = Arc::new(tokio::sync::Notify::new());
    let Server { sshd, files, dir: _dir, connection: _connection, .. } = server;
    let killer = {
        let started = started.clone();
        tokio::spawn(async move {
            started.notified().await;
            let mut sshd = sshd;
            sshd.kill().unwrap();
            sshd
        })
    };
    let signalled = AtomicBool::new(false);
    let progress = |_: u64| {
        if !signalled.swap(true, Ordering::SeqCst) {
            started.notify_one();
        } else {
            // Slow enough that the kill lands before the last byte.
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let result =
        tokio::time::timeout(FAILS_WITHIN, get_file(&*files, Path::new(&remote), &destination, Some(&progress)))
            .await
            .expect("the get fails promptly");
    let err = result.unwrap_err();
    eprintln!("get: {err}");
    assert!(matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::Io), "{err:?}");
    assert!(names(local.path()).is_empty(), "no partial local file: {:?}", names(local.path()));
    drop(killer.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_put_leaves_nothing() {
    let server = server().await;
    let path = server.path("precious");
    std::fs::write(&path, b"old content").unwrap();
    let (reached, going) = tokio::sync::oneshot::channel();
    let mut source = Endless { sent: Arc::default(), after: 4 << 20, reached: Some(reached) };
    let options = PutOptions::default();
    let put = server.files.put(&mut source, Path::new(&path), &options);
    tokio::select! {
        result = put => panic!("an endless put ended: {result:?}"),
        _ = going => {}
    }
    // The clean-up runs in the background: wait for it, boundedly.
    let deadline = tokio::time::Instant::now() + FAILS_WITHIN;
    while names(server.dir.path()) != ["precious"] {
        assert!(tokio::time::Instant::now() < deadline, "left behind: {:?}", names(server.dir.path()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"old content");
    // The session is still good.
    put_bytes(&*server.files, &path, b"new", &PutOptions::default()).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_and_windows() {
    let server = server_with(Sshd::builder(), |host| {
        for (key, value) in [("request_size", 1024), ("write_requests", 1), ("read_requests", 3)] {
            host.options.set("sftp_options", key, value, OptionSource::Api).unwrap();
        }
    })
    .await;
    for size in [0usize, 1, 1023, 1024, 1025, 3 * 1024, 100_000] {
        let data = random_bytes(size, size as u64);
        let path = server.path(&format!("small-{size}"));
        assert_eq!(put_bytes(&*server.files, &path, &data, &PutOptions::default()).await.unwrap(), size as u64);
        assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), sha256_hex(&data));
        let back = get_bytes(&*server.files, &path).await.unwrap();
        assert_eq!(sha256_hex(&back), sha256_hex(&data), "size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudo_files_read_to_the_end() {
    // /proc files report size 0 yet have content.
    let server = server().await;
    let back = get_bytes(&*server.files, "/proc/self/status").await.unwrap();
    let text = String::from_utf8_lossy(&back);
    assert!(text.contains("Name:") && text.contains("Pid:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_reopens_while_the_connection_lives() {
    let server = server().await;
    let path = server.path("file");
    put_bytes(&*server.files, &path, b"one", &PutOptions::default()).await.unwrap();
    // Kill only the sftp-server process: the SSH connection stays up.
    let sftp_servers = children_named(server.sshd.pid().unwrap(), "sftp-server");
    assert!(!sftp_servers.is_empty(), "an sftp-server runs under sshd");
    for pid in sftp_servers {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    let err = get_bytes(&*server.files, &path).await;
    // The first request may find the channel already gone and reopen it, or
    // be the one that notices.
    if let Err(err) = err {
        eprintln!("get: {err}");
        assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err:?}");
    }
    assert_eq!(get_bytes(&*server.files, &path).await.unwrap(), b"one");
    assert!(server.connection.is_alive());
}

/// Descendants of `pid` whose command name is `name`.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
            // pid (comm) state ppid …
            let Some(close) = stat.rfind(')') else { continue };
            let comm = &stat[stat.find('(').map_or(0, |i| i + 1)..close];
            let ppid = stat[close + 2..].split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                parents.push(child);
                if comm == name {
                    found.push(child);
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_transfers_at_once_share_the_session() {
    // More than OpenSSH's 4-byte handles survive as text (128): the session
    // queues them instead of failing.
    let server = server().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let (files, path) = (server.files.clone(), server.path(&format!("f{i}")));
        tasks.spawn(async move {
            let data = random_bytes(20_000 + i as usize, i);
            put_bytes(&*files, &path, &data, &PutOptions::default()).await.unwrap();
            let back = get_bytes(&*files, &path).await.unwrap();
            assert_eq!(sha256_hex(&back), sha256_hex(&data), "{path}");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(server.files.list(Path::new(&server.base())).await.unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_file_and_get_file_100_mib() {
    let server = server().await;
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source");
    let data = random_bytes(100 << 20, 5);
    std::fs::write(&source, &data).unwrap();
    let remote = server.path("big");
    let sent = AtomicU64::new(0);
    let progress = |n: u64| sent.store(n, Ordering::SeqCst);
    put_file(&*server.files, &source, Path::new(&remote), &PutOptions::default(), false, Some(&progress))
        .await
        .unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), 100 << 20);
    let back = local.path().join("back");
    let got = AtomicU64::new(0);
    let progress = |n: u64| got.store(n, Ordering::SeqCst);
    assert_eq!(get_file(&*server.files, Path::new(&remote), &back, Some(&progress)).await.unwrap(), 100 << 20);
    assert_eq!(got.load(Ordering::SeqCst), 100 << 20);
    assert_eq!(sha256_hex(&std::fs::read(&back).unwrap()), sha256_hex(&data));
    assert_eq!(names(local.path()), ["back", "source"], "no temporary file left");
}
