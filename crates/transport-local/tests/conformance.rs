//! The core behaviour suite, run against the `local` transport, and the
//! registry path a program takes to reach it.

use std::sync::Arc;

use tether_core::conformance::FilesFixture;
use tether_core::{Command, FileTransfer, Host, HostConfig, PutOptions, Registry, StatOptions, Transport, Tunnel};
use tether_transport_local::{LocalOptions, local_host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn transport() -> Arc<dyn Transport> {
    local_host(LocalOptions::default())
}

async fn files() -> FilesFixture {
    let dir = tempfile::tempdir().expect("create a scratch directory");
    let base = dir.path().to_str().expect("temporary paths are UTF-8").to_string();
    FilesFixture { files: local_host(LocalOptions::default()), base, guard: Box::new(dir) }
}

/// An echo server on an ephemeral loopback port, stopped with the guard.
async fn tunnel() -> (Arc<dyn Tunnel>, String, u16, Box<dyn std::any::Any + Send>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind an echo port");
    let port = listener.local_addr().expect("local address").port();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    let guard = AbortOnDrop(server);
    (local_host(LocalOptions::default()), "127.0.0.1".to_string(), port, Box::new(guard))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

tether_core::transport_conformance!(transport);
tether_core::files_conformance!(files);
tether_core::tunnel_conformance!(tunnel);

#[test]
fn plugin_is_registered() {
    let plugin = Registry::global().get("local").unwrap();
    assert_eq!(plugin.connection_key, "local");
    assert_eq!(plugin.capabilities.names(), ["exec", "shell", "user-switch", "files", "tunnel"]);
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
    let echo = host.exec(&Command::new("true")).await.unwrap();
    assert!(echo.success());
    Transport::close(&*host).await.unwrap();
    let err = host.exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::ConnectionLost, "{err}");
    let err = FileTransfer::stat(&*host, "/", StatOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::ConnectionLost, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_a_real_connection() {
    let (tunnel, host, port, _guard) = tunnel().await;
    let mut stream = tunnel.open_stream(&host, port).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
}
