//! The core behaviour suite, run against the `local` transport through the
//! registry path a program takes to reach it, and what the suite does not
//! cover.

use std::path::Path;
use std::sync::Arc;

use tether_core::conformance::{LoopbackServices, Subject};
use tether_core::{Command, FileTransfer, Host, HostConfig, PutOptions, Registry, StatOptions, Transport};
use tether_transport_local::{LocalOptions, local_host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// This machine as a host from the registry, a scratch directory, and
/// services on loopback for the tunnel checks.
async fn subject() -> Subject {
    let dir = tempfile::tempdir().expect("create a scratch directory");
    let scratch = dir.path().to_str().expect("temporary paths are UTF-8").to_string();
    let host = Arc::new(Host::new(HostConfig::new("local", "local", "local")).unwrap());
    let mut subject = Subject::of_host(host, scratch).with_local_symlinks();
    subject.services = Some(Arc::new(LoopbackServices::default()));
    subject.guard = Box::new(dir);
    subject
}

tether_core::conformance!(subject);

#[test]
fn plugin_is_registered() {
    let plugin = Registry::global().get("local").unwrap();
    assert_eq!(plugin.connection_key, "local");
    assert_eq!(plugin.capabilities.names(), ["exec", "shell", "user-switch", "files", "tunnel", "byte-names"]);
    assert_eq!(plugin.options.map(|spec| spec.table), Some("local_options"));
    let defaults = serde_json::to_value(plugin.options.unwrap().defaults()).unwrap();
    assert_eq!(defaults, serde_json::json!({"shell": "/bin/sh", "connect_timeout": 30.0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_runs_commands_and_moves_files() {
    let host = Host::new(HostConfig::new("local", "local", "local")).unwrap();
    let out = host.exec(&Command::new("true").check(true)).await.unwrap();
    assert!(out.success());

    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::write(&source, b"through the registry").unwrap();
    let remote = dir.path().join("remote").to_str().unwrap().to_string();
    let sent = host.put_file(&source, &remote, &PutOptions::default(), false, None).await.unwrap();
    assert_eq!(sent, 20);
    let back = dir.path().join("back");
    assert_eq!(host.get_file(&remote, &back, None).await.unwrap(), 20);
    assert_eq!(std::fs::read(&back).unwrap(), b"through the registry");
    let meta = host.stat(&remote, StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((meta.size, meta.mode), (20, 0o644));
    host.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_options_reach_the_transport() {
    let mut config = HostConfig::new("local", "local", "local");
    config.options.set("local_options", "shell", "/bin/bash", tether_core::OptionSource::Api).unwrap();
    let host = Host::new(config).unwrap();
    let out = host.exec(&Command::shell("printf %s \"$BASH_VERSION\" | head -c 1")).await.unwrap();
    assert!(!out.stdout.is_empty(), "the line ran in bash: {out:?}");

    let mut config = HostConfig::new("local", "local", "local");
    config.options.set("local_options", "shel", "/bin/bash", tether_core::OptionSource::Api).unwrap();
    let err = Host::new(config).unwrap().exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("shel"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_host_refuses_work() {
    let host = local_host(LocalOptions::default());
    let connection = host.clone().into_connection();
    let echo = host.exec(&Command::new("true")).await.unwrap();
    assert!(echo.success());
    assert!(connection.is_alive());
    connection.close().await.unwrap();
    assert!(!connection.is_alive());
    let err = host.exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::ConnectionLost, "{err}");
    let err = FileTransfer::stat(&*host, Path::new("/"), StatOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::ConnectionLost, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_a_real_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (mut reader, mut writer) = stream.split();
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    });
    let tunnel = local_host(LocalOptions::default());
    let mut stream = tether_core::Tunnel::open_stream(&*tunnel, "127.0.0.1", port).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
}
