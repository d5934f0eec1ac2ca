//! The `nc` scheme against a raw netcat pipe, in the same run, both timed
//! as whole processes. The host is this machine: its `term` is `local`, so
//! the bench needs neither sshd nor root, only OpenBSD's netcat as `nc`.
//!
//! - **put**: `tether --hosts hosts.json put box LOCAL REMOTE` vs the pipe
//!   `nc -l -p P > REMOTE` (the far side, started first and waited for
//!   until it listens) fed by `nc -N 127.0.0.1 P < LOCAL` (the near side);
//! - **get**: `tether … get box REMOTE LOCAL` vs `nc -N -l -p P < REMOTE`
//!   (far) read by `nc 127.0.0.1 P > LOCAL` (near). `-N` makes the sending
//!   netcat shut the connection down at the end of its input: OpenBSD's
//!   netcat otherwise keeps it open and neither side ever exits;
//! - each with `nc_options.verify` at `sha256` (the default: both ends hash
//!   the bytes, the host after the transfer) and at `size` (byte counts
//!   only). The host `box` is `{"term": "local", "transfer": "nc",
//!   "nc_options": {"verify": …}}`, one hosts file per setting;
//! - a tether run is timed from spawn to exit of the `tether` process, which
//!   starts, drives and reaps the host side (shell, `nc -l`, the hash)
//!   itself. A pipe run is timed from spawn of the near side until both
//!   netcats have exited; the far side's start and the wait until it
//!   listens come before the clock (tether pays for its listener's start);
//! - the CPU time (user + system) of every timed run: `cutime`/`cstime` of
//!   this process around the reaping, so tether's figure includes the
//!   host-side processes it reaped, and the pipe's both netcats;
//! - the peak RSS (`VmHWM`) of the tether process and of the near netcat,
//!   sampled every few milliseconds while they run, and exactly (GNU time's
//!   `%M`) in an untimed warm-up run of each when `/usr/bin/time` exists.
//!   The bench fails when a tether process peaks above 200 MiB;
//! - what the host-side hash costs on its own: `openssl dgst -sha256 FILE`
//!   (the hasher the transport picks first) and `sha256sum FILE`, no ratio.
//!
//! All files are in one directory under `/dev/shm` when it has room, else
//! under `TMPDIR`. Every transfer, timed or not, is checked afterwards by
//! size and SHA-256 against the source, so a fast wrong result cannot win,
//! and then removed; before every run the destination is removed and the
//! filesystems synced. Runs come in pairs whose order alternates (tether
//! first in pairs 1, 3, 5; the pipe first in 2 and 4: ABBA…), after one
//! untimed warm-up run of each. A ratio is the pipe's time over tether's:
//! ≥ 1.00 means tether is as fast. The goal (≥ 0.90, checksum included) is
//! judged on the median of the pairs' ratios.
//!
//! `cargo bench --bench nc` runs 1 GiB, 5 pairs; `cargo test --benches`,
//! `--quick` or `TETHER_BENCH_QUICK=1` a smoke pass (4 MiB, 1 pair).
//! `TETHER_BENCH_FILE_MIB` changes the size, `TETHER_BENCH_PAIRS` the pair
//! count, `TETHER_BENCH_ONLY` picks parts (comma-separated: `put`, `get`,
//! `sha256`, `size`; an axis none of whose parts is named runs whole);
//! `TETHER_BENCH_WRAP='strace -f -c -o FILE'` (or `perf record …`) runs each
//! timed tether process under a profiler (its cost then lands in tether's
//! times). Results go to BENCHMARKS.md.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{
    BenchResult, Mode, PeakSampler, Run, SAMPLE_EVERY, Samples, Stat, Table, first_line, load_average, timed,
};

/// The host's id in the bench's hosts files.
const HOST: &str = "box";

/// The goal for the pipe's time over tether's.
const GOAL: f64 = 0.90;

/// How long a pipe's far side may take to listen.
const LISTEN_WITHIN: Duration = Duration::from_secs(10);

/// How often the far side is looked for among the listening sockets.
const LISTEN_POLL: Duration = Duration::from_millis(1);

/// The netcat both sides of the pipe run, as the host's `nc` is.
const NC: &str = "nc";

fn main() -> BenchResult<()> {
    let mode = Mode::from_env();
    let Some(tether) = option_env!("CARGO_BIN_EXE_tether") else {
        return Err("the `tether` binary is not built (feature `cli`)".into());
    };
    let size = support::transfer_size(mode);
    let pairs = support::pair_count(mode);
    // The source and at most two copies at once (each is removed once checked).
    let dir = support::scratch_dir("tether-bench-nc-", 3 * size + 64 * support::MIB)?;

    println!("# nc transport benchmark ({mode:?} mode)\n");
    print!("{}", support::machine_description(dir.path()));
    let nc_path = first_line("sh", &["-c", &format!("readlink -f \"$(command -v {NC})\"")]);
    println!("netcat: {nc_path}: {}", first_line("sh", &["-c", &format!("{NC} -h 2>&1")]));
    println!("hashers: {}; {}", first_line("openssl", &["version"]), first_line("sha256sum", &["--version"]));
    println!("tether: {tether}");
    let time = Path::new("/usr/bin/time").exists();
    println!(
        "peak RSS: VmHWM sampled every {} ms in every timed run{}\n",
        SAMPLE_EVERY.as_millis(),
        if time { "; exact (GNU time %M) in the warm-up runs" } else { "; /usr/bin/time missing, no exact figure" }
    );

    let source = dir.path().join("source.bin");
    support::write_random_file(&source, size, 0x0e7c_0013)?;
    let hash = support::sha256_file(&source)?;
    let mut hosts = Vec::new();
    for verify in Verify::ALL {
        let path = dir.path().join(format!("hosts-{}.json", verify.name()));
        let inventory = serde_json::json!({
            HOST: { "term": "local", "transfer": "nc", "nc_options": { "verify": verify.name() } }
        });
        std::fs::write(&path, inventory.to_string())?;
        hosts.push(path);
    }

    let bench = Bench {
        tether: PathBuf::from(tether),
        hosts,
        dir: dir.path().to_path_buf(),
        source,
        size,
        hash,
        pairs,
        time,
        mode,
        tmpfs: support::filesystem_of(dir.path()).is_some_and(|fs| fs.starts_with("tmpfs")),
    };
    let mut table = Table::new();
    println!("load average before: {}", load_average());
    let result = bench.run(&mut table);
    println!("load average after: {}", load_average());
    // What was measured before a failure is still worth seeing.
    println!("\n{}", table.render());
    result
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Put,
    Get,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Put => "put",
            Direction::Get => "get",
        }
    }
}

/// `nc_options.verify`, the two settings measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Sha256,
    Size,
}

impl Verify {
    const ALL: [Verify; 2] = [Verify::Sha256, Verify::Size];

    fn name(self) -> &'static str {
        match self {
            Verify::Sha256 => "sha256",
            Verify::Size => "size",
        }
    }
}

/// The contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Tether,
    /// The raw netcat pipe.
    Pipe,
}

struct Bench {
    tether: PathBuf,
    /// The hosts file of each [`Verify`], in [`Verify::ALL`]'s order.
    hosts: Vec<PathBuf>,
    dir: PathBuf,
    source: PathBuf,
    size: u64,
    hash: String,
    pairs: usize,
    /// Whether GNU time is at `/usr/bin/time`.
    time: bool,
    mode: Mode,
    /// Whether the files are on tmpfs.
    tmpfs: bool,
}

impl Bench {
    fn run(&self, table: &mut Table) -> BenchResult<()> {
        let only = support::only_parts();
        // An axis (direction, verify) none of whose values is named runs whole.
        let wanted = |part: &str, axis: &[&str]| {
            !only.iter().any(|p| axis.contains(&p.as_str())) || only.iter().any(|p| p == part)
        };
        let (directions, verifies) = (["put", "get"], ["sha256", "size"]);
        let mut over_limit = Vec::new();
        let mut hashed = false;
        for direction in [Direction::Put, Direction::Get] {
            for verify in Verify::ALL {
                if wanted(direction.name(), &directions) && wanted(verify.name(), &verifies) {
                    over_limit.extend(self.case(direction, verify, table)?);
                    hashed |= verify == Verify::Sha256;
                }
            }
        }
        if hashed {
            self.hashers(table)?;
        }
        if !over_limit.is_empty() {
            return Err(format!("memory is not flat: {}", over_limit.join("; ")).into());
        }
        Ok(())
    }

    /// The warm-up, the timed pairs and the table rows of one direction and
    /// verify setting; gives the tether peaks above [`RSS_LIMIT_KIB`],
    /// described.
    fn case(&self, direction: Direction, verify: Verify, table: &mut Table) -> BenchResult<Vec<String>> {
        let mib = self.size / support::MIB;
        let label = format!("{} {mib} MiB, verify {}", direction.name(), verify.name());
        let reference_tool = match (direction, self.tmpfs) {
            (Direction::Put, true) => "nc -N < FILE → nc -l > FILE (tmpfs)",
            (Direction::Put, false) => "nc -N < FILE → nc -l > FILE",
            (Direction::Get, true) => "nc -N -l < FILE → nc > FILE (tmpfs)",
            (Direction::Get, false) => "nc -N -l < FILE → nc > FILE",
        };
        let case = support::PairedCase {
            label: &label,
            size: self.size,
            pairs: self.pairs,
            mode: self.mode,
            goal: GOAL,
            reference: "nc pipe",
            reference_tool,
            cpu_of: "of all its processes",
            cpu_reference: "both netcats",
            rss_reference: "nc, near side",
        };
        let over = support::paired(&case, self.time, table, |pipe, exact| {
            self.once(direction, verify, if pipe { Tool::Pipe } else { Tool::Tether }, exact)
        })?;
        Ok(over.into_iter().collect())
    }

    /// One run of `tool` from a clean start (destination removed,
    /// filesystems synced), checked by size and SHA-256, then its copy
    /// removed. With `exact`, untimed under GNU time: the second value is
    /// its `%M`.
    fn once(&self, direction: Direction, verify: Verify, tool: Tool, exact: bool) -> BenchResult<(Run, Option<u64>)> {
        let who = match tool {
            Tool::Tether => "tether",
            Tool::Pipe => "nc",
        };
        let destination = self.dir.join(format!("{}-{who}.bin", direction.name()));
        support::remove_if_present(&destination)?;
        support::sync_filesystems()?;
        let label = match tool {
            Tool::Tether => format!("tether {} (verify {})", direction.name(), verify.name()),
            Tool::Pipe => format!("nc pipe {}", direction.name()),
        };
        let (run, exact_kib) = match tool {
            Tool::Tether => self.tether(direction, verify, &destination, &label, exact)?,
            Tool::Pipe => self.pipe(direction, &destination, &label, exact)?,
        };
        support::check_file(&label, &destination, self.size, &self.hash)?;
        std::fs::remove_file(&destination)?;
        Ok((run, exact_kib))
    }

    /// `tether --hosts FILE put box SOURCE DESTINATION` (or `get box …`).
    fn tether(
        &self,
        direction: Direction,
        verify: Verify,
        destination: &Path,
        label: &str,
        exact: bool,
    ) -> BenchResult<(Run, Option<u64>)> {
        let hosts = &self.hosts[Verify::ALL.iter().position(|v| *v == verify).unwrap_or(0)];
        let mut command = Command::new(&self.tether);
        command
            .arg("--hosts")
            .arg(hosts)
            .arg(direction.name())
            .arg(HOST)
            .arg(&self.source)
            .arg(destination)
            // Only the bench's inventory; no settings (the bench directory has no .tether/).
            .env_remove("TETHER_SETTINGS")
            .env_remove("TETHER_HOSTS")
            .env_remove("RUST_LOG")
            .current_dir(&self.dir);
        Ok(if exact {
            let (run, _, stderr) = timed(label, &mut support::wrap(&support::GNU_TIME_PEAK, &command))?;
            (run, support::gnu_time_peak_kib(&stderr))
        } else if let Ok(profiler) = std::env::var("TETHER_BENCH_WRAP")
            && !profiler.trim().is_empty()
        {
            // Profiling only: the wrapper's cost lands in tether's times.
            let words: Vec<&str> = profiler.split_whitespace().collect();
            (timed(label, &mut support::wrap(&words, &command))?.0, None)
        } else {
            (timed(label, &mut command)?.0, None)
        })
    }

    /// The raw pipe: the far side started and listening first, then the
    /// near side timed from its spawn until both have exited. Its peak RSS
    /// is the near side's (GNU time's process in an `exact` run).
    fn pipe(
        &self,
        direction: Direction,
        destination: &Path,
        label: &str,
        exact: bool,
    ) -> BenchResult<(Run, Option<u64>)> {
        let port = free_port()?;
        let far_log = self.dir.join("nc-far.log");
        let near_log = self.dir.join("nc-near.log");
        let (far_in, far_out, near_in, near_out) = match direction {
            Direction::Put => (
                Stdio::null(),
                Stdio::from(File::create(destination)?),
                Stdio::from(File::open(&self.source)?),
                Stdio::null(),
            ),
            Direction::Get => (
                Stdio::from(File::open(&self.source)?),
                Stdio::null(),
                Stdio::null(),
                Stdio::from(File::create(destination)?),
            ),
        };
        let mut far = Command::new(NC);
        if direction == Direction::Get {
            far.arg("-N");
        }
        far.args(["-l", "-p", &port.to_string()]);
        let far = far.stdin(far_in).stdout(far_out).stderr(File::create(&far_log)?).spawn()?;
        let mut far = Reaped(Some(far));
        wait_listening(port, far.child(), &far_log)?;

        let mut near = Command::new(NC);
        if direction == Direction::Put {
            near.arg("-N");
        }
        near.args(["127.0.0.1", &port.to_string()]);
        if exact {
            near = support::wrap(&support::GNU_TIME_PEAK, &near);
        }
        near.stdin(near_in).stdout(near_out).stderr(File::create(&near_log)?);
        // Both must be gone long before this; else both are killed.
        let limit = Duration::from_secs(60) + Duration::from_secs(self.size / (10 * support::MIB));

        let mut sampler = PeakSampler::start();
        let children_before = support::children_cpu();
        let started = Instant::now();
        let near = match near.spawn() {
            Ok(near) => near,
            Err(e) => {
                let _ = sampler.finish();
                return Err(format!("{label}: starting the near side: {e}").into());
            }
        };
        sampler.watch(near.id());
        let mut near = Reaped(Some(near));
        let watchdog = Watchdog::start(&[near.child().id(), far.child().id()], limit);
        let near_status = near.wait();
        let far_status = far.wait();
        let time = started.elapsed();
        // Only these two were reaped in between.
        let (user, system) = support::cpu_since(children_before);
        let fired = watchdog.stop();
        let sampled_kib = sampler.finish()?;
        let (near_status, far_status) = (near_status?, far_status?);
        let near_said = std::fs::read_to_string(&near_log).unwrap_or_default();
        if fired {
            return Err(format!("{label}: not done within {} s; both sides were killed", limit.as_secs()).into());
        }
        for (side, status, log) in [("near", near_status, &near_log), ("far", far_status, &far_log)] {
            if !status.success() {
                let said = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{label}: the {side} side failed ({status}): {}", said.trim()).into());
            }
        }
        let exact_kib = if exact { support::gnu_time_peak_kib(&near_said) } else { None };
        Ok((Run { time, user, system, sampled_kib }, exact_kib))
    }

    /// What the host-side hash of a put or get costs on its own: each tool
    /// the transport may pick, over the source file, `pairs` times.
    fn hashers(&self, table: &mut Table) -> BenchResult<()> {
        let mib = self.size / support::MIB;
        for (tool, program, args) in
            [("openssl dgst -sha256", "openssl", &["dgst", "-sha256"][..]), ("sha256sum", "sha256sum", &[][..])]
        {
            let mut times = Samples::new();
            for _ in 0..self.pairs {
                let mut command = Command::new(program);
                command.args(args).arg(&self.source);
                let (run, stdout, _) = timed(tool, &mut command)?;
                if !stdout.to_ascii_lowercase().contains(&self.hash) {
                    return Err(format!("{tool}: printed {:?}, not the source's SHA-256", stdout.trim()).into());
                }
                times.push(run.time);
            }
            let all: Vec<String> =
                times.all().iter().map(|t| format!("{:.0}", support::mib_per_s(self.size, *t))).collect();
            println!("(host-side hash) {tool} over the {mib} MiB file: {} MiB/s", all.join(", "));
            table.row(
                &format!("(host-side hash alone) {mib} MiB, whole process, median of {}", self.pairs),
                String::new(),
                tool,
                format!("{:.0} MiB/s = {:.2} s", times.mib_s(Stat::Median, self.size), times.median().as_secs_f64()),
                String::new(),
            );
        }
        Ok(())
    }
}

/// A port nothing listens on now: the kernel's pick for a socket bound to
/// port 0, released at once. Ephemeral, so apart from the ports from 20000
/// up where the transport's own search starts.
fn free_port() -> BenchResult<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until a socket listens on `port` (`/proc/net/tcp` or `tcp6`
/// shows it in state `0A`), failing if the far side `far` ends first or
/// [`LISTEN_WITHIN`] passes. A test connection would not do: netcat takes
/// the first connection it accepts for the transfer.
fn wait_listening(port: u16, far: &mut Child, log: &Path) -> BenchResult<()> {
    let needle = format!(":{port:04X}");
    let deadline = Instant::now() + LISTEN_WITHIN;
    loop {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            let listening = text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1).is_some_and(|local| local.ends_with(&needle)) && fields.get(3) == Some(&"0A")
            });
            if listening {
                return Ok(());
            }
        }
        if let Some(status) = far.try_wait()? {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("`{NC} -l -p {port}` ended ({status}) before it listened: {}", said.trim()).into());
        }
        if Instant::now() > deadline {
            return Err(format!("`{NC} -l -p {port}` did not listen within {} s", LISTEN_WITHIN.as_secs()).into());
        }
        std::thread::sleep(LISTEN_POLL);
    }
}

/// A child killed and reaped when dropped before it was waited for, so a
/// failing run leaves no netcat behind.
struct Reaped(Option<Child>);

impl Reaped {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("a child not yet reaped")
    }

    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let mut child = self.0.take().expect("a child not yet reaped");
        child.wait()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills the pipe's processes when they are not done by a deadline, so a
/// pipe that never closes fails the bench instead of hanging it. The waits
/// stay blocking (no polling in the timed part).
struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(pids: &[u32], limit: Duration) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let thread = std::thread::spawn(move || match stopped.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = Command::new("kill").arg("-KILL").args(&pids).stderr(Stdio::null()).status();
                true
            }
            _ => false,
        });
        Watchdog { stop, thread }
    }

    /// Whether it fired.
    fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or(true)
    }
}
