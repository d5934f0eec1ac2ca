//! The hop topology of `scripts/netns`, with a real sshd in each namespace:
//! every hop reaches its neighbours and nothing further, and unreachable
//! addresses fail at once rather than by timeout.
//!
//! Needs root and `scripts/netns up` (scripts/test runs it); without the
//! topology every test fails with the command to run, never skips.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tether_test_servers::Sshd;
use tether_test_servers::netns::{self, HOP1, HOP2, Namespace, TARGET};

/// Connect timeout of the probes: long enough that a reachable server always
/// answers, and far above [`FAST`], so a probe that fails by timing out
/// (packets sent into the void) cannot pass as unreachable.
const TIMEOUT: Duration = Duration::from_secs(3);

/// An unreachable address must fail within this: the kernel answers from its
/// routing table, without sending a packet.
const FAST: Duration = Duration::from_secs(1);

fn require() {
    if let Err(e) = netns::require() {
        panic!("{e}");
    }
}

fn start_in(ns: &Namespace) -> Sshd {
    Sshd::builder().netns(ns).start().unwrap_or_else(|e| panic!("start sshd in {}: {e}", ns.name()))
}

/// One sshd per namespace, started side by side: [HOP1, HOP2, TARGET].
fn start_chain() -> [Sshd; 3] {
    thread::scope(|scope| {
        let handles = netns::CHAIN.map(|ns| scope.spawn(move || start_in(&ns)));
        handles.map(|handle| handle.join().expect("starting sshd panicked"))
    })
}

/// Where a connection is made from: the test process's own namespace, or
/// inside a hop.
#[derive(Clone, Copy)]
enum Origin {
    Root,
    Ns(Namespace),
}

impl Origin {
    fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        match self {
            Origin::Root => TcpStream::connect_timeout(&addr, TIMEOUT),
            Origin::Ns(ns) => netns::connect_from(&ns, addr, TIMEOUT),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Origin::Root => "the root namespace",
            Origin::Ns(ns) => ns.name(),
        }
    }
}

fn read_banner(mut stream: TcpStream) -> io::Result<String> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner)?;
    Ok(String::from_utf8_lossy(&banner).into_owned())
}

fn assert_reaches(from: Origin, sshd: &Sshd) {
    let banner = from.connect(sshd.addr()).and_then(read_banner);
    match banner {
        Ok(banner) => assert_eq!(banner, "SSH-2.0-", "{} → {}", from.name(), sshd.addr()),
        Err(e) => panic!("{} should reach the sshd at {}: {e}\nsshd log:\n{}", from.name(), sshd.addr(), sshd.log()),
    }
}

/// `addr` is unreachable from `from`, with this error, decided locally.
fn assert_unreachable(from: Origin, addr: SocketAddr, expected: ErrorKind) {
    let started = Instant::now();
    let result = from.connect(addr);
    let elapsed = started.elapsed();
    match result {
        Ok(_) => panic!("{} reached {addr}, which should be unreachable from there", from.name()),
        Err(e) => {
            assert_eq!(e.kind(), expected, "{} → {addr}: {e}", from.name());
            assert!(elapsed < FAST, "{} → {addr} failed only after {elapsed:?} ({e})", from.name());
        }
    }
}

/// In the root namespace the unreachable route answers `EHOSTUNREACH`; in a
/// hop, having no route at all gives `ENETUNREACH`.
#[test]
fn each_hop_reaches_only_its_neighbours() {
    require();
    let [hop1, hop2, target] = start_chain();
    for (sshd, ns) in [(&hop1, HOP1), (&hop2, HOP2), (&target, TARGET)] {
        assert_eq!(sshd.addr().ip(), ns.addr());
        assert_eq!(sshd.netns(), Some(&ns));
    }

    assert_reaches(Origin::Root, &hop1);
    assert_unreachable(Origin::Root, hop2.addr(), ErrorKind::HostUnreachable);
    assert_unreachable(Origin::Root, target.addr(), ErrorKind::HostUnreachable);

    assert_reaches(Origin::Ns(HOP1), &hop2);
    assert_unreachable(Origin::Ns(HOP1), target.addr(), ErrorKind::NetworkUnreachable);

    assert_reaches(Origin::Ns(HOP2), &target);
    // Nothing routes back past the previous hop either.
    assert_unreachable(Origin::Ns(HOP2), hop1.addr(), ErrorKind::NetworkUnreachable);
    assert_unreachable(Origin::Ns(TARGET), hop2.addr(), ErrorKind::NetworkUnreachable);
    assert_unreachable(Origin::Ns(TARGET), hop1.addr(), ErrorKind::NetworkUnreachable);
}

/// Each hop reaches its previous hop's end of the link: a listener there
/// accepts a connection from the hop, with the hop's address as source.
#[test]
fn each_hop_reaches_back_to_its_previous_hop() {
    require();
    let pairs = [(Origin::Root, HOP1), (Origin::Ns(HOP1), HOP2), (Origin::Ns(HOP2), TARGET)];
    for (previous, hop) in pairs {
        let bind = SocketAddr::V4(SocketAddrV4::new(hop.previous_hop(), 0));
        let listener = match previous {
            Origin::Root => TcpListener::bind(bind),
            Origin::Ns(ns) => netns::run_in(&ns, || TcpListener::bind(bind)),
        }
        .unwrap_or_else(|e| panic!("listen on {bind} in {}: {e}", previous.name()));
        let addr = listener.local_addr().unwrap();
        let _client = netns::connect_from(&hop, addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("{} → {addr} ({}): {e}", hop.name(), previous.name()));
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(hop.addr()), "{} connects from its own address", hop.name());
    }
}

/// `timeout 5 bash -c` opening `/dev/tcp/ADDR/PORT` inside `ns`: what any
/// program started there with [`netns::command_in`] sees.
fn bash_probe(ns: &Namespace, addr: SocketAddr) -> Output {
    netns::command_in(ns, "timeout")
        .args(["5", "bash", "-c", r#"exec 3<>"/dev/tcp/$0/$1" && head -c 8 <&3"#])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run ip netns exec (apt-get install iproute2)")
}

#[test]
fn programs_in_a_namespace_see_the_same_rules() {
    require();
    let hop2 = start_in(&HOP2);
    let target = start_in(&TARGET);

    let out = bash_probe(&HOP1, hop2.addr());
    assert_eq!(out.stdout, b"SSH-2.0-", "hop1 → hop2: {}", String::from_utf8_lossy(&out.stderr));

    let started = Instant::now();
    let out = bash_probe(&HOP1, target.addr());
    assert!(started.elapsed() < FAST, "hop1 → target took {:?}", started.elapsed());
    // 124 would be `timeout` killing a hanging connect.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Network is unreachable"), "hop1 → target: {stderr}");
}

/// The OpenSSH client logs in hop by hop, and through the whole chain with
/// `ProxyJump`, which is what the jump-host tests of the transports do.
#[test]
fn openssh_jumps_through_the_chain() {
    require();
    let [hop1, hop2, target] = start_chain();
    assert!(hop2.known_hosts_line().starts_with(&format!("[198.18.2.2]:{} ssh-ed25519 ", hop2.port())));

    let out = hop1.ssh_command("printf ok").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.stdout, b"ok", "root → hop1: {}", hop1.explain(&out));
    let out = netns::command_in(&HOP1, "ssh")
        .args(hop2.ssh_args())
        .arg(hop2.destination())
        .arg("printf ok")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"ok", "hop1 → hop2: {}", hop2.explain(&out));

    // Each server has its own client key and known_hosts file, so each hop
    // gets its own `Host` block.
    let mut config = String::from("StrictHostKeyChecking yes\nBatchMode yes\nIdentitiesOnly yes\n");
    for (alias, sshd, jump) in [("hop1", &hop1, None), ("hop2", &hop2, Some("hop1")), ("target", &target, Some("hop2"))]
    {
        let addr = sshd.addr();
        writeln!(config, "Host {alias}\n  HostName {}\n  Port {}\n  User {}", addr.ip(), addr.port(), sshd.user())
            .unwrap();
        writeln!(config, "  IdentityFile {}", sshd.client_key_path().display()).unwrap();
        writeln!(config, "  UserKnownHostsFile {}", sshd.known_hosts_path().display()).unwrap();
        if let Some(jump) = jump {
            writeln!(config, "  ProxyJump {jump}").unwrap();
        }
    }
    let config_path = target.dir().join("ssh_config");
    fs::write(&config_path, config).unwrap();
    let out = Command::new("ssh").arg("-F").arg(&config_path).args(["target", "printf ok"]).output().unwrap();
    assert_eq!(out.stdout, b"ok", "root → hop1 → hop2 → target: {}", target.explain(&out));
    // The target saw the connection come from hop2, its only neighbour.
    let accepted = format!("Accepted publickey for {} from {} port", target.user(), TARGET.previous_hop());
    assert!(target.log().contains(&accepted), "expected {accepted:?} in:\n{}", target.log());
}

/// `ip netns exec` execs sshd, so the pid the handle holds is sshd's own and
/// kill, freeze and thaw act on the server, as on loopback.
#[test]
fn a_server_in_a_namespace_can_be_frozen_thawed_and_killed() {
    require();
    let mut target = start_in(&TARGET);
    let pid = target.pid().expect("running");
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sshd", "the child is sshd itself, not `ip`");
    let from = Origin::Ns(HOP2);

    target.freeze().unwrap();
    // The kernel still completes the handshake; the banner never comes.
    let mut frozen = from.connect(target.addr()).expect("a frozen server's port still accepts");
    frozen.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let err = frozen.read(&mut [0u8; 8]).expect_err("a frozen server sent something");
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
    target.thaw().unwrap();
    // The connection made while frozen is served once thawed.
    frozen.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut banner = [0u8; 8];
    frozen.read_exact(&mut banner).expect("banner after thaw");
    assert_eq!(&banner, b"SSH-2.0-");

    target.kill().unwrap();
    assert_eq!(target.pid(), None);
    assert!(proc_is_gone(pid), "sshd {pid} survived the kill");
    // Ports are per namespace and nothing else listens in the target's, so
    // refused is the only possible answer.
    let err = from.connect(target.addr()).expect_err("the killed sshd still accepts");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    let dir = target.dir().to_path_buf();
    target.stop().unwrap();
    assert!(!dir.exists());
}

/// A reaped pid may be reused at once by an unrelated process; it is not
/// sshd's if its command is different.
fn proc_is_gone(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |comm| comm.trim() != "sshd")
}

#[test]
fn password_auth_works_in_a_namespace() {
    require();
    let shadow_before = fs::read("/etc/shadow").ok();
    let sshd = Sshd::builder()
        .netns(&HOP1)
        .password_auth("root", "tether-hop-secret")
        .start()
        .expect("start sshd with password auth in hop1");
    let askpass = sshd.dir().join("askpass");
    fs::write(&askpass, "#!/bin/sh\nprintf '%s\\n' tether-hop-secret\n").unwrap();
    fs::set_permissions(&askpass, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "NumberOfPasswordPrompts=1"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts_path().display()))
        .args(["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-p"])
        .arg(sshd.port().to_string())
        .arg(format!("root@{}", HOP1.addr()))
        .arg("printf ok")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"ok", "{}", sshd.explain(&out));
    assert!(sshd.log().contains(&format!("Accepted password for root from {}", HOP1.previous_hop())), "{}", sshd.log());
    drop(sshd);
    assert_eq!(fs::read("/etc/shadow").ok(), shadow_before, "the system's shadow file changed");
}

#[test]
fn the_chain_addresses_are_the_documented_ones() {
    let addrs: Vec<(&str, Ipv4Addr, Ipv4Addr)> =
        netns::CHAIN.iter().map(|ns| (ns.name(), ns.addr(), ns.previous_hop())).collect();
    assert_eq!(
        addrs,
        [
            ("tether-hop1", Ipv4Addr::new(198, 18, 1, 2), Ipv4Addr::new(198, 18, 1, 1)),
            ("tether-hop2", Ipv4Addr::new(198, 18, 2, 2), Ipv4Addr::new(198, 18, 2, 1)),
            ("tether-target", Ipv4Addr::new(198, 18, 3, 2), Ipv4Addr::new(198, 18, 3, 1)),
        ]
    );
}
