//! Jump hosts, proved with network namespaces (see
//! `tether_test_servers::netns`): the test process reaches only `hop1`;
//! `hop2` answers only to `hop1` and `target` only to `hop2`. Each runs its
//! own OpenSSH sshd, and every host here comes from a `hosts.json` with
//! `hop` entries, through [`Lab`], as a user's would.
//!
//! The conformance suites of `ssh`, `sftp` and `scp` run against `hop2`
//! through one hop and against `target` through two; then what they do not
//! cover: the direct route really is closed, hops are shared, a wrong hop
//! key is refused, a hop dying mid-transfer fails cleanly, and the `tether`
//! binary needs no extra flag.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde_json::json;
use tether::options::{Inventory, Overrides, Resolver, Settings};
use tether::{Command, ErrorKind, Host, Lab, PutOptions, Registry};
use tether_core::conformance::{Subject, random_bytes};
use tether_test_servers::netns::{self, HOP1, HOP2, Namespace, TARGET};
use tether_test_servers::{Sshd, Telnetd, TelnetdKind, Vsftpd};
use tokio::io::{AsyncBufReadExt, AsyncRead, ReadBuf};
// Files over the host's own SSH connection, through its hops.
use tether_example_shellfs as _;

mod support;
use support::{tether, tether_command};

/// Longest a transfer may take to fail once a hop is gone.
const FAILS_WITHIN: Duration = Duration::from_secs(30);

/// The inventory id of the host in `ns` (`tether-hop1` is `hop1`).
fn id_of(ns: &Namespace) -> &'static str {
    ns.name().trim_start_matches("tether-")
}

/// sshds in `namespaces` (nearest first) and a lab whose inventory puts
/// each one behind the previous. Dropping it stops every server.
struct Chain {
    lab: Lab,
    sshds: Vec<Sshd>,
    dir: tempfile::TempDir,
    /// The id of the host at the end of the chain.
    last: &'static str,
}

impl Chain {
    async fn start(namespaces: &[Namespace]) -> Chain {
        netns::require().expect("the hop tests need their network namespaces");
        let mut sshds = Vec::new();
        for ns in namespaces {
            let ns = *ns;
            let sshd = tokio::task::spawn_blocking(move || Sshd::builder().netns(&ns).start())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("start sshd in {}: {e}", ns.name()));
            sshds.push(sshd);
        }
        let dir = tempfile::tempdir().unwrap();
        let mut inventory = serde_json::Map::new();
        for (index, (ns, sshd)) in namespaces.iter().zip(&sshds).enumerate() {
            let id = id_of(ns);
            // Each host's key is checked under its own name, in its own file.
            let mut entry = sshd.inventory_entry();
            if index > 0 {
                entry["hop"] = json!(id_of(&namespaces[index - 1]));
            }
            inventory.insert(id.to_string(), entry);
        }
        let hosts_file = dir.path().join("hosts.json");
        std::fs::write(&hosts_file, serde_json::Value::Object(inventory).to_string()).unwrap();
        let inventory = Inventory::load(&[hosts_file]).unwrap();
        let resolver = Resolver::new(Registry::global(), inventory, Settings::default()).unwrap();
        let last = id_of(namespaces.last().expect("a chain has hosts"));
        Chain { lab: Lab::new(resolver), sshds, dir, last }
    }

    fn hosts_file(&self) -> PathBuf {
        self.dir.path().join("hosts.json")
    }

    /// Edits `hosts.json` and starts a new lab over it (the old one's
    /// connections close as it drops).
    fn edit_inventory(&mut self, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut inventory: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.hosts_file()).unwrap()).unwrap();
        edit(&mut inventory);
        std::fs::write(self.hosts_file(), inventory.to_string()).unwrap();
        let inventory = Inventory::load(&[self.hosts_file()]).unwrap();
        self.lab = Lab::new(Resolver::new(Registry::global(), inventory, Settings::default()).unwrap());
    }

    /// A scratch directory on the far host (all namespaces share the file system).
    fn scratch(&self) -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
}

/// The conformance subject for `scheme` on the last host of a chain through
/// `namespaces`: its `term` and `transfer` are the scheme (`shellfs` borrows
/// the host's SSH connection). The scratch directory is on the shared
/// filesystem; the tunnel's far end is the target's network, out of this
/// process's reach, so the tunnel checks are left to the tests below.
async fn subject_through(namespaces: &[Namespace], scheme: &str) -> Subject {
    let chain = Chain::start(namespaces).await;
    let mut overrides = Overrides { term: Some(scheme.into()), transfer: Some(scheme.into()), ..Default::default() };
    if scheme == "shellfs" {
        overrides.options.push(("shellfs_options".into(), "inner".into(), json!("ssh")));
    }
    let host = Arc::new(chain.lab.host_with(chain.last, &overrides).unwrap());
    assert!(host.has_tunnel());
    let scratch = chain.scratch();
    let base = scratch.path().to_str().unwrap().to_string();
    let mut subject = Subject::of_host(host, base).with_local_symlinks();
    subject.guard = Box::new((chain, scratch));
    subject
}

/// The whole suite through two hops, for every scheme that reaches a host
/// over SSH.
mod two_hops {
    use super::*;

    mod ssh {
        async fn subject() -> super::Subject {
            super::subject_through(&[super::HOP1, super::HOP2, super::TARGET], "ssh").await
        }
        tether_core::conformance!(subject);
    }

    mod sftp {
        async fn subject() -> super::Subject {
            super::subject_through(&[super::HOP1, super::HOP2, super::TARGET], "sftp").await
        }
        tether_core::conformance!(subject);
    }

    mod scp {
        async fn subject() -> super::Subject {
            super::subject_through(&[super::HOP1, super::HOP2, super::TARGET], "scp").await
        }
        tether_core::conformance!(subject);
    }

    mod shellfs {
        async fn subject() -> super::Subject {
            super::subject_through(&[super::HOP1, super::HOP2, super::TARGET], "shellfs").await
        }
        tether_core::conformance!(subject);
    }
}

/// `nc`'s file checks on the target through two hops: commands over the
/// target's SSH connection, the data to its netcat through hop2's tunnel.
mod nc_two_hops {
    async fn subject() -> super::Subject {
        let chain = super::Chain::start(&[super::HOP1, super::HOP2, super::TARGET]).await;
        let overrides = super::Overrides { transfer: Some("nc".into()), ..Default::default() };
        let host = std::sync::Arc::new(chain.lab.host_with("target", &overrides).unwrap());
        let scratch = chain.scratch();
        let base = scratch.path().to_str().unwrap().to_string();
        let mut subject = super::Subject::of_host(host, base).with_local_symlinks();
        subject.guard = Box::new((chain, scratch));
        subject
    }
    tether_core::conformance_files!(subject);
}

/// Through one hop, the commands: the first hop's own tunnel carries the
/// connection (the two-hop suite covers the rest).
mod one_hop {
    async fn subject() -> super::Subject {
        super::subject_through(&[super::HOP1, super::HOP2], "ssh").await
    }
    tether_core::conformance!(subject);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shellfs_over_ssh_behind_two_hops_uses_the_one_connection() {
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let overrides = Overrides { transfer: Some("shellfs".into()), ..Default::default() };
    let host = chain.lab.host_with("target", &overrides).unwrap();
    assert_eq!(host.config().term, "ssh");
    // Commands first: the connection it will share is the target's own.
    assert_eq!(namespace_of(&host).await, "tether-target");
    assert_eq!(logins(&chain.sshds[2]), 1, "{}", chain.sshds[2].log());

    let scratch = chain.scratch();
    let local = scratch.path().join("source");
    let data = random_bytes(3 << 20, 77);
    std::fs::write(&local, &data).unwrap();
    let remote = scratch.path().join("moved by shellfs");
    let remote = remote.to_str().unwrap();
    let options = PutOptions { mode: Some(0o640), ..Default::default() };
    assert_eq!(host.put_file(&local, remote, &options, false, None).await.unwrap(), data.len() as u64);
    let back = scratch.path().join("back");
    assert_eq!(host.get_file(remote, &back, None).await.unwrap(), data.len() as u64);
    assert!(std::fs::read(&back).unwrap() == data, "content differs after a round trip over shellfs");
    // The transfer's commands ran on the target, as its SSH user, in its namespace.
    let listed = host.exec(&Command::argv(["stat", "-c", "%a %s", remote]).check(true)).await.unwrap();
    assert_eq!(listed.stdout_lossy(), format!("640 {}\n", data.len()));

    // Exec and files together made exactly one login on the target, and one on each hop.
    for (index, sshd) in chain.sshds.iter().enumerate() {
        assert_eq!(logins(sshd), 1, "host {index} of the chain: {}", sshd.log());
    }
    chain.lab.close().await.unwrap();
}

/// The password of the target's telnet login.
const TELNET_PASSWORD: &str = "tether-telnet-hops";

/// sshds in `hop1` and `hop2`, and a busybox telnetd with a login in
/// `target`, whose inventory entry reaches it through both hops with
/// `term: telnet` and files over that telnet session (`shellfs`).
async fn telnet_behind_two_hops() -> (Chain, Telnetd) {
    let mut chain = Chain::start(&[HOP1, HOP2]).await;
    let telnetd = tokio::task::spawn_blocking(|| {
        Telnetd::builder(TelnetdKind::Busybox).login("root", TELNET_PASSWORD).netns(TARGET).start()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("start telnetd in {}: {e}", TARGET.name()));
    let port = telnetd.port();
    chain.edit_inventory(|inventory| {
        inventory["target"] = json!({
            "ip": TARGET.addr().to_string(),
            "hop": "hop2",
            "term": "telnet",
            "transfer": "shellfs",
            "creds": {"root": TELNET_PASSWORD},
            "telnet_options": {"port": port, "connect_timeout": 10.0, "max_sessions": 2},
        });
    });
    chain.last = "target";
    (chain, telnetd)
}

/// The exec part of the suite over telnet, to the target through two SSH
/// hops (files and tunnels are refused, as `telnet` declares neither).
mod telnet_two_hops {
    async fn subject() -> super::Subject {
        let (chain, telnetd) = super::telnet_behind_two_hops().await;
        let overrides = super::Overrides { transfer: Some("telnet".into()), ..Default::default() };
        let host = std::sync::Arc::new(chain.lab.host_with("target", &overrides).unwrap());
        let scratch = chain.scratch();
        let base = scratch.path().to_str().unwrap().to_string();
        let mut subject = super::Subject::of_host(host, base);
        subject.guard = Box::new((chain, telnetd, scratch));
        subject
    }
    tether_core::conformance!(subject);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnet_behind_two_hops_runs_commands_and_moves_files_over_its_session() {
    let (chain, _telnetd) = telnet_behind_two_hops().await;
    let host = chain.lab.host_with("target", &Overrides::default()).unwrap();
    assert_eq!((host.config().term.as_str(), host.config().transfer.as_str()), ("telnet", "shellfs"));
    // The commands run in the target's namespace, reached only through the hops.
    assert_eq!(namespace_of(&host).await, "tether-target");
    let out = host.exec(&Command::shell("printf 'a\\000b'; exit 4")).await.unwrap();
    assert_eq!((out.stdout.as_slice(), out.status.code()), (&b"a\0b"[..], Some(4)));

    // Files over the same telnet session (shellfs borrows the host's term).
    let scratch = chain.scratch();
    let local = scratch.path().join("source");
    let data = random_bytes(300 << 10, 78);
    std::fs::write(&local, &data).unwrap();
    let remote = scratch.path().join("moved over telnet");
    let options = PutOptions { mode: Some(0o600), ..Default::default() };
    assert_eq!(host.put_file(&local, &remote, &options, false, None).await.unwrap(), data.len() as u64);
    let back = scratch.path().join("back");
    assert_eq!(host.get_file(&remote, &back, None).await.unwrap(), data.len() as u64);
    assert!(std::fs::read(&back).unwrap() == data, "content differs after a round trip over telnet");
    let meta = std::fs::metadata(&remote).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    chain.lab.close().await.unwrap();
}

/// A byte-exact round trip with `nc` to the target through two SSH hops:
/// the listener runs in the target's namespace, which this process cannot
/// reach, so the data went through the tunnel; and the commands rode the
/// target's one SSH login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nc_behind_two_hops_goes_through_the_tunnel() {
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let target_addr = chain.sshds[2].addr();
    let err = std::net::TcpStream::connect_timeout(&target_addr, Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "the direct route must be closed: {err}");

    let overrides = Overrides { transfer: Some("nc".into()), ..Default::default() };
    let host = chain.lab.host_with("target", &overrides).unwrap();
    assert_eq!(namespace_of(&host).await, "tether-target");
    let scratch = chain.scratch();
    let local = scratch.path().join("source");
    let data = random_bytes(8 << 20, 79);
    std::fs::write(&local, &data).unwrap();
    let remote = scratch.path().join("moved by nc");
    let options = PutOptions { mode: Some(0o640), ..Default::default() };
    assert_eq!(host.put_file(&local, &remote, &options, false, None).await.unwrap(), data.len() as u64);
    let back = scratch.path().join("back");
    assert_eq!(host.get_file(&remote, &back, None).await.unwrap(), data.len() as u64);
    assert!(std::fs::read(&back).unwrap() == data, "content differs after a round trip over nc");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&remote).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o640);
    for (index, sshd) in chain.sshds.iter().enumerate() {
        assert_eq!(logins(sshd), 1, "host {index} of the chain: {}", sshd.log());
    }
    chain.lab.close().await.unwrap();
}

/// `nc` over a telnet term (a console has no stdin pipe: the listener's
/// watchdog is disarmed by a command of its own), behind two hops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nc_over_telnet_behind_two_hops() {
    let (chain, _telnetd) = telnet_behind_two_hops().await;
    let overrides = Overrides { transfer: Some("nc".into()), ..Default::default() };
    let host = chain.lab.host_with("target", &overrides).unwrap();
    assert_eq!((host.config().term.as_str(), host.config().transfer.as_str()), ("telnet", "nc"));
    assert_eq!(namespace_of(&host).await, "tether-target");
    let scratch = chain.scratch();
    let local = scratch.path().join("source");
    let data = random_bytes(4 << 20, 80);
    std::fs::write(&local, &data).unwrap();
    let remote = scratch.path().join("moved by nc over telnet");
    assert_eq!(host.put_file(&local, &remote, &PutOptions::default(), false, None).await.unwrap(), data.len() as u64);
    let back = scratch.path().join("back");
    assert_eq!(host.get_file(&remote, &back, None).await.unwrap(), data.len() as u64);
    assert!(std::fs::read(&back).unwrap() == data, "content differs after a round trip over nc and telnet");
    chain.lab.close().await.unwrap();
}

/// The same `hostname`-like proof from every host: which namespace a
/// command ran in (`ip netns identify` names the caller's namespace).
async fn namespace_of(host: &Host) -> String {
    let out = host.exec(&Command::shell("ip netns identify $$").check(true)).await.unwrap();
    out.stdout_lossy().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_is_reached_only_through_its_hops() {
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let target_addr = chain.sshds[2].addr();

    // Straight from here, the target's address fails at once.
    let started = Instant::now();
    let err = std::net::TcpStream::connect_timeout(&target_addr, Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "unreachable must fail fast, not time out");

    // So does a host for it that names no hop: the error is typed and named.
    let mut direct = chain.lab.config("target", &Overrides::default()).unwrap();
    direct.hop = None;
    let err = Host::new(direct).unwrap().exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");
    assert!(err.to_string().contains(&format!("{}:{}", TARGET.addr(), target_addr.port())), "{err}");

    // Through the hops, each command runs in its host's own namespace.
    let target = chain.lab.host("target").unwrap();
    assert_eq!(target.chain(), ["hop1", "hop2"]);
    assert_eq!(namespace_of(&target).await, "tether-target");
    assert_eq!(namespace_of(&chain.lab.host("hop2").unwrap()).await, "tether-hop2");
    assert_eq!(namespace_of(&chain.lab.host("hop1").unwrap()).await, "tether-hop1");
    // The target's sshd saw its client come from hop2's side of the link.
    let log = chain.sshds[2].log();
    assert!(log.contains(&format!("from {}", TARGET.previous_hop())), "{log}");
    chain.lab.close().await.unwrap();
}

/// How many logins `sshd` accepted so far.
fn logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_behind_one_hop_share_its_connection() {
    // Two hosts behind hop1: hop2's sshd, and a second sshd in hop2.
    let mut chain = Chain::start(&[HOP1, HOP2]).await;
    let second = tokio::task::spawn_blocking(|| Sshd::builder().netns(&HOP2).start()).await.unwrap().unwrap();
    chain.edit_inventory(|inventory| {
        inventory["second"] = second.inventory_entry();
        inventory["second"]["hop"] = json!("hop1");
    });

    let (first, other) = (chain.lab.host("hop2").unwrap(), chain.lab.host("second").unwrap());
    let true_ = Command::new("true");
    let (a, b) = tokio::join!(first.exec(&true_), other.exec(&true_));
    a.unwrap();
    b.unwrap();
    assert_eq!(logins(&chain.sshds[0]), 1, "one connection to the hop: {}", chain.sshds[0].log());
    let hop = chain.lab.host("hop1").unwrap();
    assert!(Arc::ptr_eq(first.hop().unwrap(), &hop) && Arc::ptr_eq(other.hop().unwrap(), &hop));

    // Closing one host leaves the hop to the other.
    first.close().await.unwrap();
    assert!(hop.is_connected());
    other.exec(&Command::new("true").check(true)).await.unwrap();
    assert_eq!(logins(&chain.sshds[0]), 1);
    // A per-call host (with overrides) rides on the same hop connection too.
    let overrides = Overrides { transfer: Some("scp".into()), ..Default::default() };
    let per_call = chain.lab.host_with("hop2", &overrides).unwrap();
    per_call.exec(&Command::new("true").check(true)).await.unwrap();
    assert_eq!(logins(&chain.sshds[0]), 1);
    chain.lab.close().await.unwrap();
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_key_on_a_hop_is_refused() {
    // hop1's known_hosts holds hop2's key under hop1's name.
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let hop1_known = chain.sshds[0].known_hosts_path();
    let wrong = format!("[{}]:{} {}\n", HOP1.addr(), chain.sshds[0].port(), chain.sshds[1].host_key_public());
    std::fs::write(hop1_known, wrong).unwrap();

    let err = chain.lab.host("target").unwrap().exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{err}");
    // The error names the hop whose key was wrong, and its file.
    assert!(err.to_string().starts_with("connect on hop1:"), "{err}");
    assert!(err.to_string().contains(hop1_known.to_str().unwrap()), "{err}");
    assert_eq!(logins(&chain.sshds[2]), 0, "nothing reached the target");

    // A wrong key on the second hop is refused the same way, under its name.
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let hop2_known = chain.sshds[1].known_hosts_path();
    let wrong = format!("[{}]:{} {}\n", HOP2.addr(), chain.sshds[1].port(), chain.sshds[0].host_key_public());
    std::fs::write(hop2_known, wrong).unwrap();
    let err = chain.lab.host("target").unwrap().exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{err}");
    assert!(err.to_string().starts_with("connect on hop2:"), "{err}");
    assert_eq!(logins(&chain.sshds[2]), 0);
}

/// An endless source that hands out 64 KiB at a time, slowly after the first
/// few MiB, and counts what it gave.
struct Endless {
    given: Arc<AtomicU64>,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Endless {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.given.load(Ordering::SeqCst) > 4 << 20 {
            let delay = self.delay.get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(5))));
            if delay.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.delay = None;
        }
        let n = buf.remaining().min(64 << 10);
        buf.put_slice(&vec![0x5a; n]);
        self.given.fetch_add(n as u64, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

async fn wait_for(given: &AtomicU64, bytes: u64) {
    let deadline = Instant::now() + FAILS_WITHIN;
    while given.load(Ordering::SeqCst) < bytes {
        assert!(Instant::now() < deadline, "the transfer never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_dying_mid_put_fails_typed_and_keeps_the_destination() {
    for scheme in ["sftp", "scp"] {
        let mut chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
        let overrides = Overrides { transfer: Some(scheme.into()), ..Default::default() };
        let host = chain.lab.host_with("target", &overrides).unwrap();
        let files = host.files().await.unwrap();
        let scratch = chain.scratch();
        let dest = scratch.path().join("kept");
        std::fs::write(&dest, b"the old contents").unwrap();

        let given = Arc::new(AtomicU64::new(0));
        let source = Endless { given: given.clone(), delay: None };
        let remote = dest.to_str().unwrap().to_string();
        let put = tokio::spawn(async move {
            let started = Instant::now();
            let mut source = source;
            let result = files.put(&mut source, Path::new(&remote), &PutOptions::default()).await;
            (result, started)
        });
        wait_for(&given, 8 << 20).await;
        // The middle hop goes away: its sshd and every session it carried.
        chain.sshds[1].kill().unwrap();
        let killed = Instant::now();
        let (result, _) = tokio::time::timeout(FAILS_WITHIN, put).await.expect("the put must fail, not hang").unwrap();
        let err = result.expect_err("a put through a dead hop cannot succeed");
        assert!(
            matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::Io | ErrorKind::Protocol),
            "{scheme}: untyped failure: {err}"
        );
        assert!(killed.elapsed() < FAILS_WITHIN, "{scheme}: took {:?}", killed.elapsed());
        assert_eq!(std::fs::read(&dest).unwrap(), b"the old contents", "{scheme}: destination changed");
        let names: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| n == "kept" || n.to_string_lossy().starts_with('.')), "{scheme}: {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_dying_mid_get_fails_typed_and_leaves_no_local_file() {
    for scheme in ["sftp", "scp"] {
        let mut chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
        let overrides = Overrides { transfer: Some(scheme.into()), ..Default::default() };
        let host = chain.lab.host_with("target", &overrides).unwrap();
        let scratch = chain.scratch();
        // Big enough that the get is still running when the hop dies.
        let source = scratch.path().join("big");
        std::fs::write(&source, random_bytes(256 << 20, 7)).unwrap();
        let local_dir = tempfile::tempdir().unwrap();
        let local = local_dir.path().join("copy");
        std::fs::write(&local, b"the old copy").unwrap();

        let counted = Arc::new(AtomicU64::new(0));
        let progress_count = counted.clone();
        let (remote, local_path) = (source.to_str().unwrap().to_string(), local.clone());
        let get = tokio::spawn(async move {
            let progress = move |done: u64| progress_count.store(done, Ordering::SeqCst);
            host.get_file(&remote, &local_path, Some(&progress)).await
        });
        wait_for(&counted, 8 << 20).await;
        chain.sshds[0].kill().unwrap();
        let err = tokio::time::timeout(FAILS_WITHIN, get)
            .await
            .expect("the get must fail, not hang")
            .unwrap()
            .expect_err("a get through a dead hop cannot succeed");
        assert!(matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::Io | ErrorKind::Protocol), "{err}");
        assert_eq!(std::fs::read(&local).unwrap(), b"the old copy", "{scheme}: local file changed");
        let names: Vec<_> = std::fs::read_dir(local_dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["copy"], "{scheme}: a partial file was left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_host_behind_two_hops_with_no_extra_flags() {
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let hosts = chain.hosts_file();
    let out = tether(&hosts, &["exec", "target", "--", "sh", "-c", "ip netns identify $$"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tether-target");

    let scratch = chain.scratch();
    let local = scratch.path().join("up");
    let data = random_bytes(3 << 20, 11);
    std::fs::write(&local, &data).unwrap();
    let remote = scratch.path().join("remote");
    for scheme in ["sftp", "scp"] {
        let out =
            tether(&hosts, &["--transfer", scheme, "put", "target", local.to_str().unwrap(), remote.to_str().unwrap()]);
        assert!(out.status.success(), "{scheme} put: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&remote).unwrap(), data);
        let back = scratch.path().join(format!("back-{scheme}"));
        let out =
            tether(&hosts, &["--transfer", scheme, "get", "target", remote.to_str().unwrap(), back.to_str().unwrap()]);
        assert!(out.status.success(), "{scheme} get: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&back).unwrap(), data);
        std::fs::remove_file(&remote).unwrap();
    }

    let out = tether(&hosts, &["config", "target"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.split_whitespace().take(6).eq(["chain", "hop1", "->", "hop2", "->", "target"])),
        "{text}"
    );
}

/// `tether shell` through two hops: the interactive session runs in the
/// target's namespace and its exit code comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_opens_a_shell_behind_two_hops() {
    use std::io::Write;
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let mut child = tether_command(&chain.hosts_file(), &["shell", "target"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the tether binary runs");
    // The PTY echoes the input line; only the shell's expansion reads `ns=tether-target`.
    child.stdin.take().unwrap().write_all(b"echo ns=$(ip netns identify $$)\nexit 7\n").unwrap();
    let waited =
        tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || child.wait_with_output()));
    let out = waited.await.expect("the shell ends after `exit`").unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ns=tether-target"), "{stdout}");
}

/// `tether shell` on a telnet host behind two hops: what is typed runs in
/// the target's namespace, and `exit` ends the session (telnet carries no
/// status: the CLI exits 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_opens_a_telnet_shell_behind_two_hops() {
    use std::io::Write;
    let (mut chain, _telnetd) = telnet_behind_two_hops().await;
    // The binary links no shellfs (an example plugin).
    chain.edit_inventory(|inventory| inventory["target"]["transfer"] = json!("telnet"));
    let mut child = tether_command(&chain.hosts_file(), &["shell", "target"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the tether binary runs");
    let mut keys = child.stdin.take().unwrap();
    keys.write_all(b"echo ns=$(ip netns identify $$)\rexit\r").unwrap();
    let waited =
        tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || child.wait_with_output()));
    let out = waited.await.expect("the shell ends after `exit`").unwrap().unwrap();
    drop(keys);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ns=tether-target"), "{stdout}");
}

/// The telnet password goes over the wire and nowhere else: not in a trace
/// log of a whole login and command, nor in the error of a refused login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telnet_password_stays_out_of_logs_and_errors() {
    let (mut chain, _telnetd) = telnet_behind_two_hops().await;
    chain.edit_inventory(|inventory| inventory["target"]["transfer"] = json!("telnet"));
    let out = tether_command(&chain.hosts_file(), &["-vv", "exec", "target", "--", "printf", "in"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(0), &b"in"[..]), "{stderr}");
    assert!(stderr.len() > 1000, "the trace log is not on: {stderr}");
    assert!(!stderr.contains(TELNET_PASSWORD), "the password is in the log");

    chain.edit_inventory(|inventory| inventory["target"]["creds"] = json!({"root": "wrong-password-here"}));
    let out = tether_command(&chain.hosts_file(), &["exec", "target", "--", "true"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authentication"), "{stderr}");
    assert!(!stderr.contains("wrong-password-here"), "{stderr}");
}

/// sshds in `hop1` and `hop2`, and a vsftpd in `target` (explicit FTPS
/// with `tls`), whose inventory entry reaches it through both hops with
/// `transfer: ftp`: the control connection and every data connection are
/// forwarded through the hops' SSH connections.
async fn ftp_behind_two_hops(tls: bool) -> (Chain, Vsftpd) {
    let mut chain = Chain::start(&[HOP1, HOP2]).await;
    let vsftpd = tokio::task::spawn_blocking(move || {
        let builder = Vsftpd::builder().netns(TARGET);
        if tls { builder.tls() } else { builder }.start()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("start vsftpd in {}: {e}", TARGET.name()));
    let mut options = json!({"port": vsftpd.port(), "connection_timeout": 10.0, "socket_timeout": 10.0});
    if let Some(ca_file) = vsftpd.ca_file() {
        options["ssl"] = json!(true);
        options["extra"] = json!({"ca_file": ca_file});
    }
    let (user, password) = (vsftpd.user().to_string(), vsftpd.password().to_string());
    chain.edit_inventory(|inventory| {
        inventory["target"] = json!({
            "ip": TARGET.addr().to_string(),
            "hop": "hop2",
            "term": "ftp",
            "transfer": "ftp",
            "creds": {user: password},
            "ftp_options": options,
        });
    });
    chain.last = "target";
    (chain, vsftpd)
}

/// The file part of the suite over FTP and FTPS, to a vsftpd reached only
/// through two SSH hops.
mod ftp_two_hops {
    async fn subject(tls: bool) -> super::Subject {
        let (chain, vsftpd) = super::ftp_behind_two_hops(tls).await;
        let host = std::sync::Arc::new(chain.lab.host_with("target", &super::Overrides::default()).unwrap());
        let scratch = vsftpd.scratch_dir().to_str().unwrap().to_string();
        let mut subject = super::Subject::of_host(host, scratch).with_local_symlinks();
        subject.guard = Box::new((chain, vsftpd));
        subject
    }

    mod plain {
        async fn subject() -> super::super::Subject {
            super::subject(false).await
        }
        tether_core::conformance!(subject);
    }

    mod ftps {
        async fn subject() -> super::super::Subject {
            super::subject(true).await
        }
        tether_core::conformance!(subject);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_behind_two_hops_moves_files_byte_exact_and_every_connection_comes_from_the_last_hop() {
    for tls in [false, true] {
        let (chain, vsftpd) = ftp_behind_two_hops(tls).await;
        let host = chain.lab.host_with("target", &Overrides::default()).unwrap();
        let scratch = vsftpd.scratch_dir();
        let local_dir = tempfile::tempdir().unwrap();
        let local = local_dir.path().join("source");
        let data = random_bytes(3 << 20, 79);
        std::fs::write(&local, &data).unwrap();
        let remote = scratch.join("moved over ftp");
        host.put_file(&local, &remote, &PutOptions::default(), false, None).await.unwrap();
        assert_eq!(std::fs::read(&remote).unwrap(), data, "tls {tls}: the bytes on the target");
        let back = local_dir.path().join("back");
        host.get_file(&remote, &back, None).await.unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), data, "tls {tls}: the bytes that came back");
        // vsftpd saw every connection come from hop2, the target's only neighbour.
        let log = vsftpd.log();
        let hop2 = TARGET.previous_hop().to_string();
        let connects: Vec<&str> = log.lines().filter(|l| l.contains("CONNECT: Client")).collect();
        // The first is the harness's readiness probe, from inside the target's namespace.
        let target = TARGET.addr().to_string();
        assert!(connects.len() > 1 && connects[0].contains(&format!("\"{target}\"")), "{log}");
        assert!(connects[1..].iter().all(|l| l.contains(&format!("\"{hop2}\""))), "tls {tls}: {connects:?}");
        assert!(log.contains("OK UPLOAD") && log.contains("OK DOWNLOAD"), "tls {tls}:\n{log}");
    }
}

/// The FTP password goes over the wire and nowhere else: not in a `-vvv`
/// trace (suppaftp logs `PASS` at trace level), not with `RUST_LOG` asking
/// for suppaftp's trace, not in the error of a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ftp_password_stays_out_of_logs_and_errors() {
    let (mut chain, vsftpd) = ftp_behind_two_hops(false).await;
    let scratch = vsftpd.scratch_dir();
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("canary");
    std::fs::write(&local, b"canary file").unwrap();
    let remote = scratch.join("canary");
    let (remote_arg, local_arg) = (remote.to_str().unwrap(), local.to_str().unwrap());
    for rust_log in [None, Some("trace"), Some("suppaftp=trace")] {
        let mut command = tether_command(&chain.hosts_file(), &["-vvv", "put", "target", local_arg, remote_arg]);
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let out = command.stdin(std::process::Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "RUST_LOG {rust_log:?}: {stderr}");
        // The precondition: suppaftp's own records are in this log.
        assert!(stderr.contains("Login OK"), "RUST_LOG {rust_log:?}: suppaftp's debug records are missing:\n{stderr}");
        assert!(!stderr.contains(vsftpd.password()), "RUST_LOG {rust_log:?}: the password is in the log");
        assert_eq!(std::fs::read(&remote).unwrap(), b"canary file");
        std::fs::remove_file(&remote).unwrap();
    }

    let canary = "Wrong-Canary-Password-271828";
    let user = vsftpd.user().to_string();
    chain.edit_inventory(|inventory| inventory["target"]["creds"] = json!({user: canary}));
    let out = tether_command(&chain.hosts_file(), &["-vvv", "stat", "target", remote_arg])
        .env("RUST_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("authentication"), "{stderr}");
    assert!(!stderr.contains(canary), "{stderr}");
}

/// `tether forward` through two hops: the printed local port reaches the
/// target's sshd, an address the test process has no route to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_forwards_a_port_behind_two_hops() {
    use std::io::{BufRead, BufReader};
    let chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let destination = chain.sshds[2].addr().to_string();
    let mut child = tether_command(&chain.hosts_file(), &["forward", "target", &destination])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the tether binary runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(port, _)| port.parse::<u16>().ok());
    let Some(port) = port else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("unexpected first line {line:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    assert!(line.trim_end().ends_with(&format!("→ {destination} through target")), "{line}");

    let banner = tokio::task::spawn_blocking(move || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut banner = String::new();
        BufReader::new(stream).read_line(&mut banner).unwrap();
        banner
    })
    .await
    .unwrap();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "the target's sshd should answer: {banner:?}");

    let interrupted = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let waited =
        tokio::time::timeout(Duration::from_secs(10), tokio::task::spawn_blocking(move || child.wait_with_output()));
    let out = waited.await.expect("tether forward stops on Ctrl-C").unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_refuses_behind_live_hops_is_a_typed_error_naming_the_hop() {
    let mut chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    let port = chain.sshds[2].port();
    chain.sshds[2].kill().unwrap();
    let started = Instant::now();
    let err = chain.lab.host("target").unwrap().exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");
    let text = err.to_string();
    assert!(text.starts_with("connect on target:"), "{text}");
    assert!(text.contains(&format!("{}:{port} through hop hop2", TARGET.addr())), "{text}");
    // The hop's own reason is kept.
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // The hops themselves stay usable.
    chain.lab.host("hop2").unwrap().exec(&Command::new("true").check(true)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_hop_fails_pending_work_within_the_keepalive_window() {
    let mut chain = Chain::start(&[HOP1, HOP2, TARGET]).await;
    chain.edit_inventory(|inventory| {
        for id in ["hop1", "hop2", "target"] {
            inventory[id]["ssh_options"]["keepalive_interval"] = json!(1.0);
            inventory[id]["ssh_options"]["keepalive_count_max"] = json!(2);
        }
    });
    let target = chain.lab.host("target").unwrap();
    target.exec(&Command::new("true").check(true)).await.unwrap();
    // The command is running on the target once it says so.
    let mut process = target.spawn(&Command::shell("echo started; exec sleep 60")).await.unwrap();
    let mut started = String::new();
    tokio::io::BufReader::new(process.stdout.take().unwrap()).read_line(&mut started).await.unwrap();
    assert_eq!(started, "started\n");
    let pending = tokio::spawn(async move { process.wait().await });
    // hop1 stops answering without closing anything, like a pulled cable.
    chain.sshds[0].freeze().unwrap();
    let frozen = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), pending).await;
    chain.sshds[0].thaw().unwrap();
    let err = result.expect("the pending command must fail, not hang").unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(frozen.elapsed() < Duration::from_secs(10), "took {:?}", frozen.elapsed());
    // Once the hop answers again, the next use reconnects the whole chain.
    assert_eq!(namespace_of(&target).await, "tether-target");
}
