//! `Host`: lazy connection, reuse, replacement of a dead connection, close,
//! and an injected factory in place of the registry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tether_core::memory::MemoryHost;
use tether_core::{
    Command, ConnectContext, Connection, ConnectionFactory, ErrorKind, ExitStatus, Host, HostConfig, Output, Registry,
    RegistryFactory, Result,
};

/// Hands out connections to one memory host, counts them and records how
/// each was dialed.
#[derive(Debug)]
struct CountingFactory {
    host: MemoryHost,
    connects: AtomicUsize,
    /// `(host id, hop dialed through)` of every connect, in order.
    dialed: Mutex<Vec<(String, Option<String>)>>,
}

#[async_trait]
impl ConnectionFactory for CountingFactory {
    fn connection_key(&self, scheme: &str) -> Result<String> {
        // `mem-files` shares the connection of `mem`, as sftp shares ssh's.
        Ok(scheme.trim_end_matches("-files").to_string())
    }

    async fn connect(
        &self,
        host: Arc<HostConfig>,
        _scheme: &str,
        context: ConnectContext,
    ) -> Result<Arc<dyn Connection>> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        self.dialed.lock().unwrap().push((host.id.clone(), context.dialer.hop().map(str::to_string)));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok(Arc::new(self.host.connect()))
    }
}

fn host() -> (Host, Arc<CountingFactory>) {
    let memory = MemoryHost::new();
    memory.respond("true", Output { stdout: vec![], stderr: vec![], status: ExitStatus::Code(0) });
    let factory = Arc::new(CountingFactory { host: memory, connects: AtomicUsize::new(0), dialed: Mutex::default() });
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
    // mem's own `false` runs now: exit code 1, as anywhere.
    assert!(err.to_string().starts_with("exec on dut: command failed: `false` exited with code 1"), "{err}");
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

#[tokio::test]
async fn duplicate_scheme_breaks_only_that_scheme() {
    let mut registry = Registry::empty();
    registry.register(tether_core::memory::PLUGIN).unwrap();
    let other = tether_core::Plugin::new("mem-too", tether_core::memory::PLUGIN.connect)
        .with_capabilities(tether_core::Capabilities::NONE.with_files());
    registry.register(other).unwrap();
    let err = registry.register(tether_core::memory::PLUGIN).unwrap_err();
    assert_eq!(err.to_string(), "register: invalid configuration: scheme `mem` is registered twice");
    // An explicitly built registry works like the global one: the scheme
    // claimed twice gives its error when used, the other one still connects.
    let factory = Arc::new(RegistryFactory::new(registry));
    let err = factory.connection_key("mem").unwrap_err();
    assert!(err.to_string().contains("scheme `mem` is unusable: scheme `mem` is registered twice"), "{err}");
    let host = Host::with_factory(HostConfig::new("x", "mem", "mem-too"), factory.clone());
    let err = host.exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(host.files().await.is_ok(), "the other scheme is still usable");
}

/// `name` behind `hop` (if any), on the shared counting factory.
fn chained(factory: &Arc<CountingFactory>, name: &str, hop: Option<&Arc<Host>>) -> Arc<Host> {
    let mut config = HostConfig::new(name, "mem", "mem-files");
    config.hop = hop.map(|h| h.id().to_string());
    let host = Host::with_factory(config, factory.clone());
    Arc::new(match hop {
        Some(hop) => host.with_hop(hop.clone()).unwrap(),
        None => host,
    })
}

#[tokio::test]
async fn hops_connect_first_and_are_shared_and_outlive_their_users() {
    let (_, factory) = host();
    let hop1 = chained(&factory, "hop1", None);
    let hop2 = chained(&factory, "hop2", Some(&hop1));
    let board_a = chained(&factory, "board-a", Some(&hop2));
    let board_b = chained(&factory, "board-b", Some(&hop2));
    assert!(board_a.has_tunnel() && hop2.has_tunnel() && !hop1.has_tunnel());
    assert_eq!(board_a.chain(), ["hop1", "hop2"]);
    assert!(hop1.chain().is_empty());

    board_a.exec(&Command::new("true")).await.unwrap();
    board_b.exec(&Command::new("true")).await.unwrap();
    let dialed = factory.dialed.lock().unwrap().clone();
    let expected = [
        ("hop1", None),
        ("hop2", Some("hop1")),
        ("board-a", Some("hop2")),
        // board-b reuses the connections to both hops.
        ("board-b", Some("hop2")),
    ];
    let dialed: Vec<(&str, Option<&str>)> = dialed.iter().map(|(h, via)| (h.as_str(), via.as_deref())).collect();
    assert_eq!(dialed, expected);

    // Closing one board leaves the hops to the other.
    board_a.close().await.unwrap();
    assert!(!board_a.is_connected());
    assert!(hop1.is_connected() && hop2.is_connected() && board_b.is_connected());
    board_b.exec(&Command::new("true")).await.unwrap();
    assert_eq!(factory.connects.load(Ordering::SeqCst), 4, "nothing reconnected");
}

#[tokio::test]
async fn a_hop_named_but_not_attached_never_dials_directly() {
    let (_, factory) = host();
    let mut config = HostConfig::new("board", "mem", "mem-files");
    config.hop = Some("jump".into());
    let host = Host::with_factory(config, factory.clone());
    let err = host.exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("reached through hop `jump`, but no hop host is attached"), "{err}");
    assert_eq!(factory.connects.load(Ordering::SeqCst), 0);

    // Attaching the wrong host is refused too.
    let other = chained(&factory, "other", None);
    let mut config = HostConfig::new("board", "mem", "mem-files");
    config.hop = Some("jump".into());
    let err = Host::with_factory(config, factory.clone()).with_hop(other).unwrap_err();
    assert!(err.to_string().contains("names hop `jump`, not `other`"), "{err}");
}

#[tokio::test]
async fn a_hop_that_fails_is_named_in_the_error() {
    // A hop whose term runs no tunnel-capable scheme.
    let hop = Arc::new(Host::new(HostConfig::new("jump", "telnet", "mem")).unwrap());
    let mut config = HostConfig::new("board", "mem", "mem");
    config.hop = Some("jump".into());
    let board = Host::new(config).unwrap().with_hop(hop).unwrap();
    let err = board.exec(&Command::new("true")).await.unwrap_err();
    assert!(err.to_string().starts_with("lookup scheme on jump:"), "{err}");
}

/// Two plugins that each build on the other's scheme, first used at once:
/// each holds its own slot while asking for the other's. Both uses must
/// fail with the circle named, neither may hang.
mod mutual_borrowers {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tether_core::{BoxFuture, ConnectRequest, Connection, ErrorKind, Host, HostConfig, Plugin, Registry};

    use super::*;

    /// Lets the first two connects meet, so both hold their slot before
    /// either asks for the other's.
    fn meeting() -> &'static tokio::sync::Barrier {
        static BARRIER: OnceLock<tokio::sync::Barrier> = OnceLock::new();
        BARRIER.get_or_init(|| tokio::sync::Barrier::new(2))
    }

    static CONNECTS: AtomicUsize = AtomicUsize::new(0);

    fn borrow(request: ConnectRequest, other: &'static str) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
        Box::pin(async move {
            if CONNECTS.fetch_add(1, Ordering::SeqCst) < 2 {
                meeting().wait().await;
            }
            request.connections.connection(other).await
        })
    }

    fn ping(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
        borrow(request, "pong")
    }

    fn pong(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
        borrow(request, "ping")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_fail_naming_the_circle_instead_of_waiting_for_ever() {
        let mut registry = Registry::empty();
        registry.register(Plugin::new("ping", ping)).unwrap();
        registry.register(Plugin::new("pong", pong)).unwrap();
        let factory = Arc::new(RegistryFactory::new(registry));
        let host = Host::with_factory(HostConfig::new("dut", "ping", "pong"), factory);
        let both = async { tokio::join!(host.connection("ping"), host.connection("pong")) };
        let (first, second) = tokio::time::timeout(std::time::Duration::from_secs(10), both)
            .await
            .expect("two plugins borrowing each other must not wait for ever");
        for result in [first, second] {
            let err = result.expect_err("a circle of borrowed connections cannot connect");
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            assert!(
                err.to_string().contains("ping -> pong -> ping") || err.to_string().contains("pong -> ping -> pong"),
                "{err}"
            );
        }
        assert_eq!(CONNECTS.load(Ordering::SeqCst), 3, "both connects met, then one retried");
    }
}
