//! `shellfs` through the plugin path only: a `Host` connects it from the
//! registry, it borrows the host's `local` connection, and the core
//! conformance suite judges the result.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tether_core::conformance::Subject;
use tether_core::{
    ErrorKind, FileKind, FileTransfer, Host, HostConfig, OptionSource, PutOptions, Registry, StatOptions,
};
// Linked only through their registry entries, as a third-party plugin would be.
use tether_example_shellfs as _;
use tether_transport_local as _;

/// A host whose commands run locally and whose files go through shellfs.
fn host_config() -> HostConfig {
    HostConfig::new("localhost", "local", "shellfs")
}

async fn shellfs_of(host: &Host) -> Arc<dyn FileTransfer> {
    host.files().await.expect("shellfs connects and moves files")
}

async fn shellfs() -> Arc<dyn FileTransfer> {
    let host = Host::new(host_config()).unwrap();
    shellfs_of(&host).await
}

/// A host whose `term` and `transfer` are both `shellfs`, borrowing `local`
/// for its commands, with a scratch directory.
async fn subject() -> Subject {
    let dir = tempfile::tempdir().expect("temporary directory");
    let scratch = dir.path().to_str().expect("UTF-8 temporary path").to_string();
    let mut config = HostConfig::new("localhost", "shellfs", "shellfs");
    config.options.set("shellfs_options", "inner", "local", OptionSource::Api).unwrap();
    let mut subject = Subject::of_host(Arc::new(Host::new(config).unwrap()), scratch).with_local_symlinks();
    subject.guard = Box::new(dir);
    subject
}

tether_core::conformance!(subject);

async fn put(files: &dyn FileTransfer, path: &str, data: &[u8], options: &PutOptions) -> tether_core::Result<u64> {
    let mut reader = data;
    files.put(&mut reader, Path::new(path), options).await
}

async fn get(files: &dyn FileTransfer, path: &str) -> tether_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    files.get(Path::new(path), &mut out).await?;
    Ok(out)
}

#[test]
fn registry_lists_shellfs_and_local() {
    let registry = Registry::global();
    let schemes: Vec<&str> = registry.plugins().map(|p| p.scheme).collect();
    assert!(schemes.contains(&"shellfs") && schemes.contains(&"local"), "{schemes:?}");
    let plugin = registry.get("shellfs").unwrap();
    assert_eq!(plugin.connection_key, "shellfs");
    assert_eq!(plugin.capabilities.to_string(), "exec,files,byte-names");
    assert_eq!(plugin.options.map(|o| o.table), Some("shellfs_options"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_puts_and_gets_through_shellfs() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("source.bin");
    let data = tether_core::conformance::random_bytes(3 << 20, 42);
    std::fs::write(&local, &data).unwrap();
    let remote = dir.path().join("remote copy.bin");
    let remote = remote.to_str().unwrap();

    let host = Host::new(host_config()).unwrap();
    let sent = host.put_file(&local, remote, &PutOptions::default(), false, None).await.unwrap();
    assert_eq!(sent, data.len() as u64);
    let meta = host.stat(remote, StatOptions { follow_links: true, sha512: true }).await.unwrap().unwrap();
    assert_eq!((meta.kind, meta.size, meta.mode), (FileKind::File, data.len() as u64, 0o644));

    let back = dir.path().join("back.bin");
    assert_eq!(host.get_file(remote, &back, None).await.unwrap(), data.len() as u64);
    assert!(std::fs::read(&back).unwrap() == data, "content differs after put_file / get_file");
    let out = host.exec(&tether_core::Command::argv(["printf", "%s", "term is local"])).await.unwrap();
    assert_eq!(out.stdout, b"term is local");
    host.close().await.unwrap();
}

#[tokio::test]
async fn inner_scheme_is_checked() {
    let cases = [
        ("shellfs", "`shellfs` would build on its own connection: shellfs -> shellfs"),
        ("no-such-scheme", "registered: "),
    ];
    for (inner, needle) in cases {
        let mut config = host_config();
        config.options.set("shellfs_options", "inner", inner, OptionSource::Api).unwrap();
        let err = Host::new(config).unwrap().files().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    // A host whose term is shellfs, with no inner scheme named, would run its
    // commands through itself.
    let err = Host::new(HostConfig::new("loop", "shellfs", "shellfs")).unwrap().files().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("shellfs -> shellfs"), "{err}");

    let mut config = host_config();
    config.options.set("shellfs_options", "typo", 1, OptionSource::Api).unwrap();
    let err = Host::new(config).unwrap().files().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("typo"), "{err}");
}

/// Outside a `Host` there is no connection to borrow: a clear configuration
/// error, not a second connection of the plugin's own.
#[tokio::test]
async fn a_plugin_connected_by_hand_has_nothing_to_borrow() {
    let plugin = Registry::global().get("shellfs").unwrap();
    let request = tether_core::ConnectRequest::direct(Arc::new(host_config()), plugin.scheme);
    let err = (plugin.connect)(request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("no host lends its `local` connection"), "{err}");
}

/// shellfs borrows the very connection the host's `term` uses: one connect
/// of the command scheme serves both, and it stays shared after a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrows_the_hosts_own_command_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/one-connection", dir.path().to_str().unwrap());
    let host = Host::new(host_config()).unwrap();
    let term = host.connection("local").await.unwrap();
    put(&*shellfs_of(&host).await, &path, b"shared", &PutOptions::default()).await.unwrap();
    let after = host.connection("local").await.unwrap();
    assert!(Arc::ptr_eq(&term, &after), "shellfs opened a second command connection");
    // Closed with the host, and opened again together on next use.
    host.close().await.unwrap();
    assert_eq!(get(&*shellfs_of(&host).await, &path).await.unwrap(), b"shared");
    let reopened = host.connection("local").await.unwrap();
    assert!(!Arc::ptr_eq(&term, &reopened), "the closed connection was handed out again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_survive() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap();
    let files = shellfs().await;
    let names = ["-rf", "it's $HOME", "new\nline", "pipe|name", ".hidden", "..dots", "ü*?"];
    for name in names {
        let path = format!("{base}/{name}");
        put(&*files, &path, name.as_bytes(), &PutOptions::default()).await.unwrap();
        assert_eq!(get(&*files, &path).await.unwrap(), name.as_bytes(), "{name:?}");
    }
    let listed: Vec<String> =
        files.list(Path::new(base)).await.unwrap().into_iter().map(|e| e.name.into_string().unwrap()).collect();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // A relative path starting with `-` is a file name, never an option.
    assert_eq!(files.stat(Path::new("-rf"), StatOptions::default()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_sets_mtime_and_links_are_described() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap();
    let files = shellfs().await;
    let path = format!("{base}/dated");
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    let options = PutOptions { mode: Some(0o4750), mtime: Some(mtime), ..Default::default() };
    put(&*files, &path, b"abc", &options).await.unwrap();
    let meta = files.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((meta.mode, meta.mtime), (0o4750, Some(mtime)));

    std::os::unix::fs::symlink("dated", dir.path().join("link")).unwrap();
    let link = format!("{base}/link");
    let meta = files.stat(Path::new(&link), StatOptions { follow_links: false, sha512: true }).await.unwrap().unwrap();
    assert_eq!((meta.kind, meta.sha512), (FileKind::Link, None));
    let meta = files.stat(Path::new(&link), StatOptions { follow_links: true, sha512: true }).await.unwrap().unwrap();
    assert_eq!((meta.kind, meta.size), (FileKind::File, 3));
    assert!(meta.sha512.is_some_and(|d| d.starts_with("ddaf35a1")));

    std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
    let dangling = format!("{base}/dangling");
    assert_eq!(
        files.stat(Path::new(&dangling), StatOptions::default()).await.unwrap().map(|m| m.kind),
        Some(FileKind::Link)
    );
    let followed = StatOptions { follow_links: true, sha512: false };
    assert_eq!(files.stat(Path::new(&dangling), followed).await.unwrap(), None);
    assert_eq!(get(&*files, &dangling).await.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap();
    let files = shellfs().await;
    let err = put(&*files, base, b"x", &PutOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "put onto a directory: {err}");
    let err = get(&*files, base).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "get of a directory: {err}");
    let file = format!("{base}/file");
    put(&*files, &file, b"x", &PutOptions::default()).await.unwrap();
    let err = files.list(Path::new(&file)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "list of a file: {err}");
    let err = files.mkdir(Path::new(&file), true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "mkdir -p over a file: {err}");
    let err = files.rename(Path::new(&format!("{base}/absent")), Path::new(&file)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "rename of a missing path: {err}");
    let options = PutOptions { owner: Some("tether-no-such-user".into()), ..Default::default() };
    let err = put(&*files, &file, b"new", &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "unknown owner: {err}");
    assert_eq!(get(&*files, &file).await.unwrap(), b"x", "a failed put keeps the destination");
    assert_eq!(files.list(Path::new(base)).await.unwrap().len(), 1, "no temporary file is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_put_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap();
    let files = shellfs().await;
    let path = format!("{base}/never");
    let mut source = tether_core::conformance::StalledSource::default();
    let options = PutOptions::default();
    let put = files.put(&mut source, Path::new(&path), &options);
    assert!(tokio::time::timeout(Duration::from_millis(500), put).await.is_err(), "the put cannot finish");
    for _ in 0..100 {
        if files.list(Path::new(base)).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the temporary file of an abandoned put is still there: {:?}", files.list(Path::new(base)).await.unwrap());
}
