//! Jump hosts: Tether through one hop (`hop1` → `hop2`'s sshd) and two hops
//! (`hop1` → `hop2` → `target`) against OpenSSH's `ssh -J`/`ProxyJump`, in
//! the network namespaces of `scripts/netns` (see
//! `tether_test_servers::netns`: this process reaches only `hop1`), one
//! private sshd in each, with the same cipher (`aes128-gcm@openssh.com`) and
//! key exchange (`curve25519-sha256`) on every connection of both sides:
//!
//! - exec `true` on a warm connection (`Host::exec` on a connected host of a
//!   [`Lab`]) vs `ssh` through a ControlMaster whose connection runs through
//!   the jump(s); goal through one hop: ≤ 0.3× (median and p90);
//! - SFTP put and get (`Host::put_file`/`get_file`, transfer `sftp`) vs
//!   `sftp -b` through the jump(s); goal through one hop ≥ 1.0×;
//! - this process's peak RSS during the Tether transfers; goal ≤ 64 MiB.
//!
//! Two hops get the same rows, reported without a goal.
//!
//! OpenSSH reads an `ssh_config` written to the bench directory: one `Host`
//! block per hop (address, port, user, that server's key and known_hosts,
//! strict host key checking, the algorithms, `ProxyJump` to the previous
//! hop), so the jump connections get exactly the options of the last one
//! (`-J` does not pass `-o` options on to the jumps; `ProxyJump` passes
//! `-F`). Each `sftp -b` run, like each `sftp` a user starts, connects afresh
//! through the jump(s); the bench prints what that costs (`fresh ssh`), which
//! matters little at 1 GiB. Tether's host is connected before the timing, as
//! a program that already used it. Transfers alternate which tool goes first
//! each round, so neither always gets the page cache the other warmed, and
//! every result is checked by size (and by SHA-256 in the first round).
//!
//! Tether runs on a current-thread runtime, as the `tether` CLI does.
//! `cargo bench --bench hops` runs the real sizes (1 GiB); `cargo test
//! --benches`, `--quick` or `TETHER_BENCH_QUICK=1` a smoke pass;
//! `TETHER_BENCH_FILE_MIB` changes the file size; `TETHER_BENCH_ONLY` picks
//! parts (`warm`, `sftp`) and chains (`one`, `two`), e.g. `sftp,one`; a
//! category left out means all of it. Needs the namespaces: `scripts/netns up`.

mod support;

use std::error::Error;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use support::{Better, Mode, Samples, Stat, Table};
use tether::options::{Inventory, Resolver, Settings};
use tether::{Command, Lab, PutOptions, Registry};
use tether_test_servers::Sshd;
use tether_test_servers::netns::{self, HOP1, HOP2, Namespace, TARGET};
use tokio::runtime::Runtime;

type BenchResult<T> = Result<T, Box<dyn Error>>;

const CIPHER: &str = "aes128-gcm@openssh.com";
const KEX: &str = "curve25519-sha256";

/// The chain, nearest first; each host is reached through the one before.
const CHAIN: [Namespace; 3] = [HOP1, HOP2, TARGET];

/// The inventory id (and `ssh_config` host alias) of the host in `ns`.
fn id_of(ns: &Namespace) -> &'static str {
    ns.name().trim_start_matches("tether-")
}

/// One measured route: its far host and how the table names it.
#[derive(Debug, Clone, Copy)]
struct Route {
    /// `one` or `two`, for `TETHER_BENCH_ONLY`.
    part: &'static str,
    /// The host at the end of the route.
    id: &'static str,
    /// Prefix of the table rows.
    label: &'static str,
    /// Whether the issue sets goals for this route.
    goals: bool,
}

const ROUTES: [Route; 2] = [
    Route { part: "one", id: "hop2", label: "1 hop", goals: true },
    Route { part: "two", id: "target", label: "2 hops", goals: false },
];

fn main() -> BenchResult<()> {
    // `RUST_LOG=tether_transport_ssh=debug` shows retries and timings while profiling.
    #[cfg(feature = "cli")]
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let mode = Mode::from_env();
    netns::require()?;
    let dir = tempfile::Builder::new().prefix("tether-bench-hops-").tempdir()?;
    println!("# jump host benchmark ({mode:?} mode)\n");
    print!("{}", support::machine_description(dir.path()));
    let version = std::process::Command::new("ssh").arg("-V").output()?;
    println!("openssh: {}", String::from_utf8_lossy(&version.stderr).trim());
    println!("cipher: {CIPHER}, kex: {KEX}, runtime: tokio current_thread");
    println!(
        "chain: here -> hop1 ({}) -> hop2 ({}) -> target ({}), one sshd per network namespace\n",
        HOP1.addr(),
        HOP2.addr(),
        TARGET.addr()
    );

    let mut sshds = Vec::new();
    for ns in &CHAIN {
        sshds.push(Sshd::builder().netns(ns).start()?);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let lab = Lab::new(Resolver::new(
        Registry::global(),
        Inventory::load(&[write_inventory(dir.path(), &sshds)?])?,
        Settings::default(),
    )?);
    let ssh_config = write_ssh_config(dir.path(), &sshds)?;
    let bench = Bench { lab, sshds, rt, dir: dir.path().to_path_buf(), ssh_config, mode };
    let mut table = Table::new();
    let result = bench.run(&mut table);
    // What was measured before a failure is still worth seeing.
    println!("\n{}", table.render());
    let closed = bench.rt.block_on(bench.lab.close());
    drop(bench.sshds);
    result?;
    closed?;
    Ok(())
}

/// `hosts.json` for the chain, as in `tests/hops.rs`, plus the bench's
/// algorithms and no agent.
fn write_inventory(dir: &Path, sshds: &[Sshd]) -> BenchResult<PathBuf> {
    let mut inventory = serde_json::Map::new();
    for (index, (ns, sshd)) in CHAIN.iter().zip(sshds).enumerate() {
        let id = id_of(ns);
        let mut entry = sshd.inventory_entry();
        let options = &mut entry["ssh_options"];
        options["encryption_algs"] = json!([CIPHER]);
        options["kex_algs"] = json!([KEX]);
        options["use_agent"] = json!(false);
        if index > 0 {
            entry["hop"] = json!(id_of(&CHAIN[index - 1]));
        }
        inventory.insert(id.to_string(), entry);
    }
    let path = dir.join("hosts.json");
    std::fs::write(&path, serde_json::Value::Object(inventory).to_string())?;
    Ok(path)
}

/// The `ssh_config` OpenSSH's clients get with `-F`: the same hosts, each
/// behind the previous one by `ProxyJump`, each checked against its own
/// known_hosts with its own key.
fn write_ssh_config(dir: &Path, sshds: &[Sshd]) -> BenchResult<PathBuf> {
    let mut config = String::new();
    for (index, (ns, sshd)) in CHAIN.iter().zip(sshds).enumerate() {
        writeln!(config, "Host {}", id_of(ns))?;
        writeln!(config, "  HostName {}", ns.addr())?;
        writeln!(config, "  Port {}", sshd.port())?;
        writeln!(config, "  User {}", sshd.user())?;
        writeln!(config, "  IdentityFile \"{}\"", sshd.client_key_path().display())?;
        writeln!(config, "  UserKnownHostsFile \"{}\"", sshd.known_hosts_path().display())?;
        if index > 0 {
            writeln!(config, "  ProxyJump {}", id_of(&CHAIN[index - 1]))?;
        }
    }
    writeln!(config, "Host *")?;
    for line in [
        "GlobalKnownHostsFile /dev/null",
        "StrictHostKeyChecking yes",
        "UpdateHostKeys no",
        "BatchMode yes",
        "IdentitiesOnly yes",
        "IdentityAgent none",
        "PreferredAuthentications publickey",
        "ConnectTimeout 10",
        "LogLevel ERROR",
    ] {
        writeln!(config, "  {line}")?;
    }
    writeln!(config, "  Ciphers {CIPHER}")?;
    writeln!(config, "  KexAlgorithms {KEX}")?;
    let path = dir.join("ssh_config");
    std::fs::write(&path, config)?;
    Ok(path)
}

struct Bench {
    lab: Lab,
    sshds: Vec<Sshd>,
    rt: Runtime,
    dir: PathBuf,
    ssh_config: PathBuf,
    mode: Mode,
}

impl Bench {
    fn run(&self, table: &mut Table) -> BenchResult<()> {
        let only = std::env::var("TETHER_BENCH_ONLY").unwrap_or_default();
        let picked: Vec<&str> = only.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        // A category (parts, routes) the list names nothing of runs whole.
        let wanted =
            |part: &str, category: &[&str]| !picked.iter().any(|p| category.contains(p)) || picked.contains(&part);
        const PARTS: &[&str] = &["warm", "sftp"];
        const CHAINS: &[&str] = &["one", "two"];
        if let Some(unknown) = picked.iter().find(|p| !PARTS.contains(p) && !CHAINS.contains(p)) {
            return Err(
                format!("TETHER_BENCH_ONLY: unknown part `{unknown}` (parts: warm, sftp; chains: one, two)").into()
            );
        }
        let routes: Vec<Route> = ROUTES.into_iter().filter(|r| wanted(r.part, CHAINS)).collect();
        for route in &routes {
            // Connected before any timing: the rows are about a warm host.
            let host = self.lab.host(route.id)?;
            let (out, t) = self.rt.block_on(support::time_async(host.exec(&Command::new("true"))));
            if !out?.success() {
                return Err(format!("{}: tether exec true failed", route.id).into());
            }
            println!(
                "{}: tether connected through {} in {}",
                route.id,
                host.chain().join(" -> "),
                support::fmt_duration(t)
            );
        }
        if wanted("warm", PARTS) {
            for route in &routes {
                self.warm_exec(route, table)?;
            }
        }
        if wanted("sftp", PARTS) {
            for route in &routes {
                self.sftp(route, table)?;
            }
        }
        Ok(())
    }

    /// `ssh -F ssh_config ARGS… ID REMOTE…`, stdin from /dev/null, output
    /// dropped; a failure carries its stderr.
    fn ssh(&self, args: &[&str], id: &str, remote: &[&str]) -> BenchResult<()> {
        let out = std::process::Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .args(args)
            .arg(id)
            .args(remote)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !out.status.success() {
            return Err(format!("ssh {id} {remote:?}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }

    fn warm_exec(&self, route: &Route, table: &mut Table) -> BenchResult<()> {
        let host = self.lab.host(route.id)?;
        let args = [OsString::from("-F"), self.ssh_config.clone().into_os_string()];
        // Its jumps run as its ProxyJump children for as long as it lives.
        let control_opt = support::start_control_master(&args, route.id, &self.dir.join(format!("cm-{}", route.id)))?;
        let warmup = self.mode.pick(20, 2);
        let iterations = self.mode.pick(200, 10);
        println!(
            "{} warm exec: {warmup} warm-up + {iterations} timed runs of each, interleaved, alternating which goes first",
            route.label
        );
        let command = Command::new("true");
        let (mut tether, mut openssh) = (Samples::new(), Samples::new());
        let result = (|| -> BenchResult<()> {
            for i in 0..warmup + iterations {
                let run_tether = || -> BenchResult<Duration> {
                    let (out, t) = self.rt.block_on(support::time_async(host.exec(&command)));
                    if !out?.success() {
                        return Err("tether exec true failed".into());
                    }
                    Ok(t)
                };
                let run_openssh = || -> BenchResult<Duration> {
                    let (done, o) = support::time(|| self.ssh(&["-o", &control_opt], route.id, &["true"]));
                    done?;
                    Ok(o)
                };
                let (t, o) = if i % 2 == 0 {
                    let t = run_tether()?;
                    (t, run_openssh()?)
                } else {
                    let o = run_openssh()?;
                    (run_tether()?, o)
                };
                if i >= warmup {
                    tether.push(t);
                    openssh.push(o);
                }
            }
            Ok(())
        })();
        let _ = self.ssh(&["-o", &control_opt, "-O", "exit"], route.id, &[]);
        result?;
        // The spread, since a median hides a bimodal distribution (a 40 ms
        // delayed ACK in some runs shows as p90 ≫ median).
        for (who, samples) in [("tether", &tether), ("ssh", &openssh)] {
            println!(
                "  {who}: min {}, median {}, p90 {}, max {}",
                support::fmt_duration(samples.min()),
                support::fmt_duration(samples.median()),
                support::fmt_duration(samples.percentile(90.0)),
                support::fmt_duration(samples.percentile(100.0)),
            );
        }
        for stat in [Stat::Median, Stat::P90] {
            let (t, o) = (tether.stat(stat), openssh.stat(stat));
            let ratio = support::ratio(t.as_secs_f64(), o.as_secs_f64());
            table.row(
                &format!("{}: warm exec `true`, {}", route.label, stat.label()),
                support::fmt_duration(t),
                "ssh -J via ControlMaster",
                support::fmt_duration(o),
                with_goal(support::fmt_ratio(ratio, Better::Lower), route.goals.then_some("≤ 0.30x"), ratio <= 0.3),
            );
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        support::file_size(self.mode)
    }

    /// Even, so each tool goes first in half of them.
    fn rounds(&self) -> usize {
        self.mode.pick(4, 2)
    }

    fn source(&self) -> BenchResult<PathBuf> {
        Ok(support::source_file(&self.dir, self.size())?)
    }

    /// One `sftp -b` run through the jump(s): `put` from `local` to
    /// `remote`, or get `remote` into `local`.
    fn openssh_sftp(&self, id: &str, local: &Path, remote: &Path, put: bool) -> BenchResult<()> {
        let batch = self.dir.join("batch");
        let line = if put {
            format!("put \"{}\" \"{}\"\n", local.display(), remote.display())
        } else {
            format!("get \"{}\" \"{}\"\n", remote.display(), local.display())
        };
        std::fs::write(&batch, line)?;
        let out = std::process::Command::new("sftp")
            .arg("-F")
            .arg(&self.ssh_config)
            .arg("-q")
            .arg("-b")
            .arg(&batch)
            .arg(id)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(format!("sftp {id}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }

    fn sftp(&self, route: &Route, table: &mut Table) -> BenchResult<()> {
        let host = self.lab.host(route.id)?;
        let source = self.source()?;
        let size = self.size();
        let mib = size / support::MIB;
        let rounds = self.rounds();
        let remote_dir = self.dir.join(format!("remote-{}", route.id));
        std::fs::create_dir_all(&remote_dir)?;
        let remote = remote_dir.join("put.bin");
        let remote_str = remote.to_str().ok_or("non-UTF-8 temporary directory")?.to_string();
        let tether_copy = self.dir.join("got-tether.bin");
        let openssh_copy = self.dir.join("got-openssh.bin");
        let source_hash = support::sha256_file(&source)?;

        // What each `sftp -b` run pays before its first byte: a fresh
        // connection through the jump(s).
        let mut fresh = Samples::new();
        for _ in 0..self.mode.pick(5, 1) {
            let (done, o) = support::time(|| self.ssh(&[], route.id, &["true"]));
            done?;
            fresh.push(o);
        }

        println!("{} sftp: {mib} MiB put and get, {rounds} rounds, alternating which tool goes first", route.label);
        let (mut put_t, mut put_o, mut get_t, mut get_o) =
            (Samples::new(), Samples::new(), Samples::new(), Samples::new());
        let (mut put_peak, mut get_peak, mut before) = (0, 0, 0);
        for round in 0..rounds {
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for tether in order {
                let _ = std::fs::remove_file(&remote);
                support::sync_filesystems()?;
                if tether {
                    before = before.max(support::rss_kib().unwrap_or(0));
                    support::reset_peak_rss();
                    let (n, t) = self.rt.block_on(support::time_async(host.put_file(
                        &source,
                        &remote_str,
                        &PutOptions::default(),
                        false,
                        None,
                    )));
                    n?;
                    put_peak = put_peak.max(support::peak_rss_kib().unwrap_or(0));
                    put_t.push(t);
                } else {
                    let (done, o) = support::time(|| self.openssh_sftp(route.id, &source, &remote, true));
                    done?;
                    put_o.push(o);
                }
                let who = if tether { "tether" } else { "sftp -b" };
                check_copy(&remote, size, (round == 0).then_some(&source_hash), &format!("{who} put"))?;
            }
            // The remote file is now a checked copy of the source.
            for tether in order {
                let local = if tether { &tether_copy } else { &openssh_copy };
                let _ = std::fs::remove_file(local);
                support::sync_filesystems()?;
                if tether {
                    support::reset_peak_rss();
                    let (n, t) = self.rt.block_on(support::time_async(host.get_file(&remote_str, local, None)));
                    n?;
                    get_peak = get_peak.max(support::peak_rss_kib().unwrap_or(0));
                    get_t.push(t);
                } else {
                    let (done, o) = support::time(|| self.openssh_sftp(route.id, local, &remote, false));
                    done?;
                    get_o.push(o);
                }
                let who = if tether { "tether" } else { "sftp -b" };
                check_copy(local, size, (round == 0).then_some(&source_hash), &format!("{who} get"))?;
                let _ = std::fs::remove_file(local);
            }
        }
        let goal = route.goals.then_some("≥ 1.00x");
        let label = route.label;
        throughput_row(table, &format!("{label}: sftp put {mib} MiB"), &put_t, &put_o, size, goal);
        throughput_row(table, &format!("{label}: sftp get {mib} MiB"), &get_t, &get_o, size, goal);
        for (what, peak) in [("put", put_peak), ("get", get_peak)] {
            let value = format!("{} ({} before)", support::fmt_kib(peak), support::fmt_kib(before));
            let metric = format!("{label}: peak RSS during tether sftp {what} {mib} MiB");
            if route.goals {
                let verdict = if peak <= 64 * 1024 { "met" } else { "MISSED" };
                table.row(&metric, value, "(goal)", "≤ 64 MiB".into(), format!("goal {verdict}"));
            } else {
                table.row(&metric, value, "", String::new(), String::new());
            }
        }
        table.row(
            &format!("{label}: fresh connect + exec `true`, median (part of each sftp -b run)"),
            String::new(),
            "ssh -J, no ControlMaster",
            support::fmt_duration(fresh.median()),
            String::new(),
        );
        let _ = std::fs::remove_file(&remote);
        Ok(())
    }
}

/// Proves a transfer really happened: the size always, the content when a
/// hash is given.
fn check_copy(path: &Path, size: u64, hash: Option<&String>, what: &str) -> BenchResult<()> {
    let got = std::fs::metadata(path).map_err(|e| format!("{what}: {}: {e}", path.display()))?.len();
    if got != size {
        return Err(format!("{what}: {} has {got} bytes, not {size}", path.display()).into());
    }
    if let Some(hash) = hash
        && support::sha256_file(path)? != *hash
    {
        return Err(format!("{what}: {} differs from the source", path.display()).into());
    }
    Ok(())
}

/// `ratio` followed by the goal and whether it was met, when there is one.
fn with_goal(ratio: String, goal: Option<&str>, met: bool) -> String {
    match goal {
        Some(goal) => format!("{ratio}, goal {goal}: {}", if met { "met" } else { "MISSED" }),
        None => ratio,
    }
}

fn throughput_row(table: &mut Table, label: &str, tether: &Samples, openssh: &Samples, size: u64, goal: Option<&str>) {
    let tool = "sftp -b through ProxyJump";
    let rounds: Vec<String> = tether.all().iter().map(|t| format!("{:.0}", support::mib_per_s(size, *t))).collect();
    let reference: Vec<String> = openssh.all().iter().map(|t| format!("{:.0}", support::mib_per_s(size, *t))).collect();
    println!("  {label}: tether {} MiB/s, sftp -b {} MiB/s", rounds.join(", "), reference.join(", "));
    let (t, o) = (tether.mib_s(Stat::Median, size), openssh.mib_s(Stat::Median, size));
    let ratio = support::ratio(t, o);
    table.row(
        &format!("{label}, median"),
        format!("{t:.0} MiB/s"),
        tool,
        format!("{o:.0} MiB/s"),
        with_goal(support::fmt_ratio(ratio, Better::Higher), goal, ratio >= 1.0),
    );
}
