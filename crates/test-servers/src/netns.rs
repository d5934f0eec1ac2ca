//! The network namespaces of the jump-host tests.
//!
//! `scripts/netns up` (run by `scripts/test`, as root) builds a chain of
//! three namespaces behind the machine's own one, joined by veth pairs, with
//! forwarding off, so each reaches only its neighbours:
//!
//! ```text
//! root          tether-hop1               tether-hop2               tether-target
//! 198.18.1.1 -- 198.18.1.2  198.18.2.1 -- 198.18.2.2  198.18.3.1 -- 198.18.3.2
//! ```
//!
//! The test process stays in the root namespace: it reaches [`HOP1`] directly,
//! while [`HOP2`] and [`TARGET`] fail at once with `EHOSTUNREACH` (the root
//! namespace routes all of 198.18.0.0/15 to `unreachable`), so a transport
//! that dials a far hop directly instead of through the hops fails loudly.
//! [`SshdBuilder::netns`](crate::SshdBuilder::netns) starts a server inside
//! a namespace; [`connect_from`] and [`command_in`] act from inside one.
//!
//! ```no_run
//! use tether_test_servers::{Sshd, netns};
//!
//! netns::require()?;
//! let target = Sshd::builder().netns(&netns::TARGET).start()?;
//! // From hop2, the target's sshd answers.
//! let out = netns::command_in(&netns::HOP2, "ssh")
//!     .args(target.ssh_args())
//!     .arg(target.destination())
//!     .arg("printf ok")
//!     .output()?;
//! assert_eq!(out.stdout, b"ok");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use crate::{HarnessError, programs};

/// Where `ip netns add` keeps the namespaces' handles (iproute2's
/// `NETNS_RUN_DIR`).
const NETNS_DIR: &str = "/run/netns";

/// The test range (RFC 2544) the whole topology lives in; the root namespace
/// routes it to `unreachable`.
const RANGE: &str = "198.18.0.0/15";

/// One network namespace of the hop chain.
///
/// Only the three of `scripts/netns` exist: [`HOP1`], [`HOP2`], [`TARGET`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Namespace {
    name: &'static str,
    addr: Ipv4Addr,
    previous_hop: Ipv4Addr,
    /// Its own end of the link to the next namespace, if there is one;
    /// [`require`] checks it too.
    next_link: Option<Ipv4Addr>,
}

/// The first hop, `tether-hop1`: reachable from the test process at
/// `198.18.1.2`, and the only namespace that is.
pub const HOP1: Namespace = Namespace {
    name: "tether-hop1",
    addr: Ipv4Addr::new(198, 18, 1, 2),
    previous_hop: Ipv4Addr::new(198, 18, 1, 1),
    next_link: Some(Ipv4Addr::new(198, 18, 2, 1)),
};

/// The second hop, `tether-hop2`, at `198.18.2.2`: reachable only from
/// [`HOP1`].
pub const HOP2: Namespace = Namespace {
    name: "tether-hop2",
    addr: Ipv4Addr::new(198, 18, 2, 2),
    previous_hop: Ipv4Addr::new(198, 18, 2, 1),
    next_link: Some(Ipv4Addr::new(198, 18, 3, 1)),
};

/// The end of the chain, `tether-target`, at `198.18.3.2`: reachable only
/// from [`HOP2`].
pub const TARGET: Namespace = Namespace {
    name: "tether-target",
    addr: Ipv4Addr::new(198, 18, 3, 2),
    previous_hop: Ipv4Addr::new(198, 18, 3, 1),
    next_link: None,
};

/// The chain in order, from the test process outwards.
pub const CHAIN: [Namespace; 3] = [HOP1, HOP2, TARGET];

impl Namespace {
    /// The namespace's name for `ip netns`, e.g. `tether-hop1`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Its address on the link towards the test process, where servers
    /// started in it listen, e.g. `198.18.1.2`.
    pub const fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The previous hop's end of that link (`198.18.1.1`, the root
    /// namespace, for [`HOP1`]): the source address of connections from the
    /// previous hop, as the server's log shows them.
    pub const fn previous_hop(&self) -> Ipv4Addr {
        self.previous_hop
    }

    /// The addresses the namespace itself holds.
    fn own_addrs(&self) -> impl Iterator<Item = Ipv4Addr> {
        std::iter::once(self.addr).chain(self.next_link)
    }

    fn handle_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(self.name)
    }
}

/// Checks that the topology of `scripts/netns` is up: the root namespace's
/// `unreachable` route and address, each namespace with its addresses on
/// running interfaces, forwarding off. Hop tests call it first, so a missing
/// topology fails them with [`HarnessError::NetnsMissing`], which names the
/// fix, instead of with a confusing connection error (or a skip).
pub fn require() -> Result<(), HarnessError> {
    let ip = programs::find("ip", "iproute2")?;
    let route = ip_output(&ip, &["-4", "route", "show", "exact", RANGE])?;
    if !route.lines().any(|line| line.starts_with("unreachable ")) {
        return Err(missing(format!("the root namespace has no route `unreachable {RANGE}`")));
    }
    let root_addrs = ip_output(&ip, &["-4", "-o", "addr", "show", "up"])?;
    if !holds(&root_addrs, HOP1.previous_hop) {
        return Err(missing(format!("the root namespace has no address {} on a running link", HOP1.previous_hop)));
    }
    CHAIN.iter().try_for_each(|ns| check(&ip, ns))
}

/// [`require`]'s checks of one namespace (also run before an sshd starts in
/// it).
pub(crate) fn check(ip: &Path, ns: &Namespace) -> Result<(), HarnessError> {
    if !ns.handle_path().exists() {
        return Err(missing(format!("namespace {} does not exist", ns.name)));
    }
    let addrs = ip_output(ip, &["-n", ns.name, "-4", "-o", "addr", "show", "up"])?;
    if let Some(addr) = ns.own_addrs().find(|&addr| !holds(&addrs, addr)) {
        return Err(missing(format!("namespace {} has no address {addr} on a running link", ns.name)));
    }
    // /proc/sys/net shows the namespace of the thread that opens it.
    let forwarding = run_in(ns, || fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))
        .map_err(|e| HarnessError::io(format!("reading net.ipv4.ip_forward in {}", ns.name), e))?;
    if forwarding.trim() != "0" {
        return Err(missing(format!("forwarding is on in namespace {} (it would route past the next hop)", ns.name)));
    }
    Ok(())
}

/// Whether `ip -o addr` output lists `addr` (as `inet ADDR/PREFIX`).
fn holds(ip_addr_output: &str, addr: Ipv4Addr) -> bool {
    let needle = format!(" inet {addr}/");
    ip_addr_output.lines().any(|line| line.contains(&needle))
}

fn missing(detail: String) -> HarnessError {
    HarnessError::NetnsMissing { detail }
}

/// Runs `ip ARGS`, returning its stdout. A failure of `ip -n NAME` means the
/// namespace is unusable, which is the topology's fault, not the harness's.
fn ip_output(ip: &Path, args: &[&str]) -> Result<String, HarnessError> {
    let out = Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("running {}", ip.display()), e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(match args {
            ["-n", name, ..] => missing(format!("`ip -n {name}` failed: {stderr}")),
            _ => HarnessError::Helper { program: ip.to_path_buf(), status: out.status, stderr },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec NAME program`: a command that runs inside `ns` (add its
/// arguments with [`Command::arg`]). `ip` execs the program, so the child's
/// pid is the program's own.
///
/// The program also gets a private mount namespace, where `ip` remounts
/// `/sys` for the network namespace; files elsewhere are shared. If `ip` is
/// not installed, spawning fails with [`io::ErrorKind::NotFound`];
/// [`require`] reports that with the package to install.
pub fn command_in(ns: &Namespace, program: impl AsRef<OsStr>) -> Command {
    let ip = programs::find("ip", "iproute2").unwrap_or_else(|_| PathBuf::from("ip"));
    let mut command = Command::new(ip);
    command.args(["netns", "exec", ns.name]).arg(program);
    command
}

/// Runs `f` on a thread that has joined `ns`'s network namespace, and
/// returns its result.
///
/// Sockets belong to the namespace they were created in, so a `TcpStream`
/// or `TcpListener` made by `f` keeps living there after the thread ends
/// and can be used from any thread; this is how the test process acts from
/// inside a hop without a helper process. Only the network namespace
/// changes: files, pids and the rest are the test process's. Needs root
/// (`CAP_SYS_ADMIN`), as `ip netns exec` does.
pub fn run_in<T, F>(ns: &Namespace, f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send,
    T: Send,
{
    let path = ns.handle_path();
    let handle = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening network namespace {}: {e}", path.display())))?;
    // A fresh thread, because setns(2) moves only the calling thread and
    // there is no way back that could not fail; the thread ends with `f`.
    let joined = thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&handle, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io::Error::new(io::Error::from(e).kind(), format!("entering network namespace {}: {e}", ns.name))
                })?;
                f()
            })
            .join()
    });
    joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A TCP connection to `addr` made from inside `ns`, as a process running in
/// that namespace would make it (same routes, same errors).
pub fn connect_from(ns: &Namespace, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    run_in(ns, || TcpStream::connect_timeout(&addr, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_listing_is_matched_exactly() {
        let out = "5: tth-h1-r    inet 198.18.1.2/24 scope global tth-h1-r\\       valid_lft forever\n";
        assert!(holds(out, Ipv4Addr::new(198, 18, 1, 2)));
        // Not a prefix match: 198.18.1.2 must not count as 198.18.1.20's.
        assert!(!holds(out, Ipv4Addr::new(198, 18, 1, 20)));
    }

    #[test]
    fn each_namespace_holds_its_address_and_its_link_onwards() {
        let owned: Vec<Vec<Ipv4Addr>> = CHAIN.iter().map(|ns| ns.own_addrs().collect()).collect();
        assert_eq!(owned[0], [Ipv4Addr::new(198, 18, 1, 2), Ipv4Addr::new(198, 18, 2, 1)]);
        assert_eq!(owned[2], [Ipv4Addr::new(198, 18, 3, 2)]);
        // Each hop's previous-hop address is held by the hop before it.
        for pair in CHAIN.windows(2) {
            assert_eq!(pair[0].next_link, Some(pair[1].previous_hop));
        }
    }

    #[test]
    fn the_missing_topology_error_names_the_fix() {
        let text = missing("namespace tether-hop2 does not exist".into()).to_string();
        assert!(
            text.starts_with(
                "network namespaces for the hop tests are missing: run `scripts/netns up` as root (scripts/test does this)"
            ),
            "{text}"
        );
        assert!(text.ends_with("namespace tether-hop2 does not exist"), "{text}");
    }
}
