//! `Host`: lazy connection, reuse, replacement of a dead connection, close,
//! and an injected factory in place of the registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tether_core::memory::MemoryHost;
use tether_core::{
    Command, Connection, ConnectionFactory, ErrorKind, ExitStatus, Host, HostConfig, Output, Registry, RegistryFactory,
    Result,
};

/// Hands out connections to one memory host and counts them.
#[derive(Debug)]
struct CountingFactory {
    host: MemoryHost,
    connects: AtomicUsize,
}

#[async_trait]
impl ConnectionFactory for CountingFactory {
    fn connection_key(&self, scheme: &str) -> Result<String> {
        // `mem-files` shares the connection of `mem`, as sftp shares ssh's.
        Ok(scheme.trim_end_matches("-files").to_string())
    }

    async fn connect(&self, _host: Arc<HostConfig>, _scheme: &str) -> Result<Arc<dyn Connection>> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok(Arc::new(self.host.connect()))
    }
}

fn host() -> (Host, Arc<CountingFactory>) {
    let memory = MemoryHost::new();
    memory.respond("true", Output { stdout: vec![], stderr: vec![], status: ExitStatus::Code(0) });
    let factory = Arc::new(CountingFactory { host: memory, connects: AtomicUsize::new(0) });
    (Host::with_factory(HostConfig::new("dut", "mem", "mem-files"), factory.clone()), factory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_lazily_once_and_shares_by_key() {
    let (host, factory) = host();
    let host = Arc::new(host);
    assert!(!host.is_connected());
    assert_eq!(factory.connects.load(Ordering::SeqCst), 0, "nothing connects before first use");
    // Ten first uses at once: the slow connect makes them overlap.
    let runs: Vec<_> = (0..10)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.exec(&Command::new("true")).await })
        })
        .collect();
    for run in runs {
        assert!(run.await.unwrap().unwrap().success());
    }
    host.stat("/", Default::default()).await.unwrap();
    assert_eq!(factory.connects.load(Ordering::SeqCst), 1, "concurrent first uses share one connect");
    assert!(host.is_connected());
}

#[tokio::test]
async fn dead_connection_is_replaced_on_next_use() {
    let (host, factory) = host();
    host.exec(&Command::new("true")).await.unwrap();
    factory.host.drop_connections();
    assert!(!host.is_connected());
    host.exec(&Command::new("true")).await.unwrap();
    assert_eq!(factory.connects.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn close_releases_and_next_use_reconnects() {
    let (host, factory) = host();
    host.exec(&Command::new("true")).await.unwrap();
    host.close().await.unwrap();
    assert!(!host.is_connected());
    host.exec(&Command::new("true")).await.unwrap();
    assert_eq!(factory.connects.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn errors_name_the_host() {
    let (host, _) = host();
    let err = host.exec(&Command::new("false").check(true)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandFailed);
    assert!(err.to_string().starts_with("exec on dut: command failed: `false` exited with code 127"), "{err}");
}

#[tokio::test]
async fn registry_factory_connects_mem_by_name() {
    let board = MemoryHost::named("host-test-board");
    board.write_file("/etc/issue", "Board OS\n", 0o644);
    let mut config = HostConfig::new("board", "mem", "mem");
    config.address = Some("host-test-board".into());
    let host = Host::new(config).unwrap();
    let dir = std::env::temp_dir().join(format!("tether-host-test-{}", std::process::id()));
    host.get_file("/etc/issue", &dir, None).await.unwrap();
    assert_eq!(std::fs::read(&dir).unwrap(), b"Board OS\n");
    std::fs::remove_file(&dir).unwrap();
}

#[tokio::test]
async fn unknown_scheme_error_lists_registered() {
    let host = Host::new(HostConfig::new("x", "telnet", "mem")).unwrap();
    let err = host.exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.to_string(), "lookup scheme on x: invalid configuration: unknown scheme `telnet` (registered: mem)");
}

#[test]
fn duplicate_scheme_is_refused() {
    let mut registry = Registry::empty();
    registry.register(tether_core::memory::PLUGIN).unwrap();
    let err = registry.register(tether_core::memory::PLUGIN).unwrap_err();
    assert_eq!(err.to_string(), "register: invalid configuration: scheme `mem` is registered twice");
    // An explicitly built registry works like the global one.
    let factory = RegistryFactory::new(registry);
    assert_eq!(factory.connection_key("mem").unwrap(), "mem");
}
