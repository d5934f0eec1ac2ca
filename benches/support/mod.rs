//! Helpers shared by the benchmarks in `benches/`: each runs Tether side by
//! side with the tool a user would otherwise pick, in the same process and the
//! same run, and prints one table of ratios.
//!
//! Plain binaries (`harness = false`), no criterion: the comparisons involve
//! external processes and large files, where a statistics framework adds
//! little beyond median and tail, and its warm-up and sample counts would make
//! a 512 MiB transfer run for minutes.

// Every bench binary compiles its own copy of this module and uses a subset.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A mebibyte, the unit every throughput is reported in.
pub const MIB: u64 = 1 << 20;

/// How hard to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench`: the real sizes and iteration counts.
    Full,
    /// `cargo test --benches`/`--all-targets`, `--quick`, or `TETHER_BENCH_QUICK=1`:
    /// tiny sizes so CI proves the bench still runs in a few seconds.
    Quick,
}

impl Mode {
    /// `cargo bench` passes `--bench` to a `harness = false` target and
    /// `cargo test` passes nothing (the criterion convention), so the real
    /// run needs `--bench`; anything else is a smoke run.
    pub fn from_env() -> Mode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let forced_quick = std::env::var_os("TETHER_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
        let asked_quick = args.iter().any(|a| a == "--quick" || a == "--test");
        if forced_quick || asked_quick || !args.iter().any(|a| a == "--bench") { Mode::Quick } else { Mode::Full }
    }

    /// `full` in a real run, `quick` in a smoke run.
    pub fn pick<T>(self, full: T, quick: T) -> T {
        match self {
            Mode::Full => full,
            Mode::Quick => quick,
        }
    }
}

/// Which summary of [`Samples`] a table row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Median,
    P90,
    /// The fastest run.
    Best,
}

impl Stat {
    pub fn label(self) -> &'static str {
        match self {
            Stat::Median => "median",
            Stat::P90 => "p90",
            Stat::Best => "best",
        }
    }
}

/// Durations of repeated runs of one operation.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    times: Vec<Duration>,
}

impl Samples {
    pub fn new() -> Self {
        Samples::default()
    }

    pub fn push(&mut self, time: Duration) {
        self.times.push(time);
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Every sample in run order, for printing the spread behind a median.
    pub fn all(&self) -> &[Duration] {
        &self.times
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut sorted = self.times.clone();
        sorted.sort_unstable();
        sorted
    }

    /// The middle sample (mean of the two middle ones for an even count).
    pub fn median(&self) -> Duration {
        let sorted = self.sorted();
        assert!(!sorted.is_empty(), "median of no samples");
        let mid = sorted.len() / 2;
        if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2 }
    }

    /// Nearest-rank percentile, `p` in 0..=100: no interpolation, so the
    /// value is one that was actually measured.
    pub fn percentile(&self, p: f64) -> Duration {
        let sorted = self.sorted();
        assert!(!sorted.is_empty(), "percentile of no samples");
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// The fastest sample.
    pub fn min(&self) -> Duration {
        *self.times.iter().min().expect("min of no samples")
    }

    pub fn stat(&self, stat: Stat) -> Duration {
        match stat {
            Stat::Median => self.median(),
            Stat::P90 => self.percentile(90.0),
            Stat::Best => self.min(),
        }
    }

    /// Throughput by `stat` when every sample moved `bytes`.
    pub fn mib_s(&self, stat: Stat, bytes: u64) -> f64 {
        mib_per_s(bytes, self.stat(stat))
    }
}

/// Times one run of `f`.
pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// Times one run of the future `f`.
pub async fn time_async<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let value = f.await;
    (value, start.elapsed())
}

pub fn mib_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / MIB as f64 / time.as_secs_f64()
}

/// A duration in the unit that keeps it readable.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Which way a ratio is good, printed next to it so nobody has to guess.
#[derive(Debug, Clone, Copy)]
pub enum Better {
    Lower,
    Higher,
}

/// `tether / reference`.
pub fn ratio(tether: f64, reference: f64) -> f64 {
    tether / reference
}

pub fn fmt_ratio(ratio: f64, better: Better) -> String {
    let hint = match better {
        Better::Lower => "lower is better",
        Better::Higher => "higher is better",
    };
    format!("{ratio:.2}x ({hint})")
}

/// The result table: one row per comparison.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    pub fn new() -> Self {
        Table::default()
    }

    /// `reference` names the tool and its value, e.g. `cp: 1830 MiB/s`;
    /// `ratio` is already formatted (see [`fmt_ratio`]) or empty.
    pub fn row(&mut self, metric: &str, tether: String, reference_tool: &str, reference: String, ratio: String) {
        self.rows.push([metric.to_string(), tether, reference_tool.to_string(), reference, ratio]);
    }

    /// A Markdown table, so the output pastes straight into BENCHMARKS.md.
    pub fn render(&self) -> String {
        let header = ["metric", "tether", "reference tool", "reference", "ratio tether/reference"];
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (cell, width) in cells.iter().zip(&widths) {
                let pad = width - cell.chars().count();
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
            out
        };
        let mut out = line(&header.map(String::from));
        out.push_str(&line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// One line per fact about the machine, for the top of the output and of
/// each BENCHMARKS.md section.
pub fn machine_description(bench_dir: &Path) -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or_else(|_| "?".into());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, v)| v.trim()))
        .unwrap_or("unknown")
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = status_kib(&meminfo, "MemTotal:").map(|kib| kib as f64 / (1024.0 * 1024.0)).unwrap_or(0.0);
    let fs = filesystem_of(bench_dir).unwrap_or_else(|| "unknown".into());
    format!(
        "nproc: {cpus}\ncpu: {model}\nkernel: {kernel}\nmemory: {mem_gib:.1} GiB\nbench dir: {} ({fs})\n",
        bench_dir.display()
    )
}

/// Filesystem type and device of `path`, as `df -T` reports them.
pub fn filesystem_of(path: &Path) -> Option<String> {
    let out = Command::new("df").args(["--output=fstype,source"]).arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.lines().nth(1)?.split_whitespace();
    Some(format!("{} on {}", fields.next()?, fields.next()?))
}

fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// This process's resident set, KiB (`VmRSS`).
pub fn rss_kib() -> Option<u64> {
    status_kib(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:")
}

/// This process's peak resident set, KiB (`VmHWM`), since start or the last
/// [`reset_peak_rss`].
pub fn peak_rss_kib() -> Option<u64> {
    status_kib(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM:")
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0), so a peak can be
/// attributed to one operation instead of the whole run (generating the
/// source file, earlier benches). False when the kernel refuses; the peak is
/// then the process lifetime's, an upper bound.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Size of the file a transfer benchmark moves: `TETHER_BENCH_FILE_MIB`
/// MiB if set, else 1 GiB in a real run and 8 MiB in a smoke run.
pub fn file_size(mode: Mode) -> u64 {
    let size_mib = std::env::var("TETHER_BENCH_FILE_MIB").ok().and_then(|v| v.parse().ok());
    size_mib.unwrap_or(mode.pick(1024, 8)) * MIB
}

/// `dir/source.bin` holding `size` pseudo-random bytes, written on first use.
pub fn source_file(dir: &Path, size: u64) -> io::Result<PathBuf> {
    let source = dir.join("source.bin");
    if !source.exists() {
        write_random_file(&source, size, 0x55aa_55aa)?;
    }
    Ok(source)
}

/// Writes `size` pseudo-random bytes to `path` in 1 MiB pieces (so the
/// generator's memory does not inflate the peak RSS measured later), then
/// syncs it so later timings do not pay for its writeback. splitmix64 rather
/// than /dev/urandom: incompressible is all that matters, and it is ten times
/// faster than the kernel's CSPRNG.
pub fn write_random_file(path: &Path, size: u64, seed: u64) -> io::Result<()> {
    let mut file = File::create(path)?;
    let mut state = seed;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// SHA-256 of a file, lower-case hex: proves each contender really copied.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Runs a reference tool to completion and fails on a non-zero exit, so a
/// broken reference never shows up as a fast one.
pub fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> io::Result<()> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Starts an OpenSSH ControlMaster, `ssh ARGS… -M -N -f DESTINATION`, which
/// backgrounds once authenticated, and waits for its socket at `control`.
/// Gives the `ControlPath=…` option that reaches it. The master's stderr goes
/// to `control` plus `.log` (a backgrounded master would hold a pipe open)
/// and is quoted if it fails. `ControlPersist=120` lets a master that a
/// crashed bench left behind go away by itself.
pub fn start_control_master(args: &[std::ffi::OsString], destination: &str, control: &Path) -> io::Result<String> {
    let control_opt = format!("ControlPath={}", control.display());
    let mut log_path = control.as_os_str().to_owned();
    log_path.push(".log");
    let status = Command::new("ssh")
        .args(args)
        .args(["-M", "-N", "-f", "-o", &control_opt, "-o", "ControlPersist=120"])
        .arg(destination)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log_path)?)
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !control.exists() {
        if !status.success() || Instant::now() > deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(io::Error::other(format!(
                "the ControlMaster for {destination} did not start ({status}): {log}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(control_opt)
}

/// Flushes dirty pages between timed runs (outside the timing), so one
/// contender's writeback does not land in the next one's measurement.
pub fn sync_filesystems() -> io::Result<()> {
    run_tool("sync", &[])
}

/// Peak RSS (KiB) of one run of a reference tool, via GNU time's `%M`;
/// `None` where `/usr/bin/time` is missing. Run it outside any timing: the
/// wrapper adds a fork and exec of its own.
pub fn tool_peak_rss_kib(program: &str, args: &[&std::ffi::OsStr]) -> Option<u64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "--"])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stderr).lines().last()?.trim().parse().ok()
}

pub fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// What the whole-process transfer benches (`ftp`, `nc`) share: they run
// the release `tether` binary and a reference tool as child processes,
// timing each from spawn to exit and watching its memory while it runs.

/// The `main` and the fallible steps of a bench.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The most a tether process may hold at once in a transfer bench, whatever
/// the file size: the issues' "memory stays flat".
pub const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// How often a running process's `VmHWM` is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Where the transfer benches put their files when it has room for them.
pub const TMPFS: &str = "/dev/shm";

/// The prefix that runs a command under GNU time, which then prints the
/// command's peak RSS in KiB (`%M`, the kernel's `ru_maxrss`) as the last
/// line of stderr: see [`gnu_time_peak_kib`].
pub const GNU_TIME_PEAK: [&str; 4] = ["/usr/bin/time", "-f", "%M", "--"];

/// The figure a [`GNU_TIME_PEAK`]-wrapped command's stderr ends with.
pub fn gnu_time_peak_kib(stderr: &str) -> Option<u64> {
    stderr.lines().last().and_then(|l| l.trim().parse().ok())
}

/// The environment variable `name` parsed, if set and well-formed.
pub fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Size of the file a whole-process transfer bench moves:
/// `TETHER_BENCH_FILE_MIB` MiB if set, else 1 GiB in a real run and 4 MiB
/// in a smoke run.
pub fn transfer_size(mode: Mode) -> u64 {
    env_number::<u64>("TETHER_BENCH_FILE_MIB").unwrap_or(mode.pick(1024, 4)) * MIB
}

/// How many timed pairs: `TETHER_BENCH_PAIRS` if set, else 5 in a real run
/// and 1 in a smoke run; at least 1.
pub fn pair_count(mode: Mode) -> usize {
    env_number("TETHER_BENCH_PAIRS").unwrap_or(mode.pick(5, 1)).max(1)
}

/// The parts `TETHER_BENCH_ONLY` names (comma-separated), empty when it is
/// unset: then every part runs.
pub fn only_parts() -> Vec<String> {
    std::env::var("TETHER_BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The middle value (mean of the two middle ones for an even count), e.g.
/// of the pairs' ratios.
pub fn median_f64(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

/// A directory for a bench's files: on [`TMPFS`] when it has `need` bytes
/// free, else in the default temporary directory (`TMPDIR`), which the
/// output then says.
pub fn scratch_dir(prefix: &str, need: u64) -> BenchResult<tempfile::TempDir> {
    let builder = || {
        let mut builder = tempfile::Builder::new();
        builder.prefix(prefix);
        builder
    };
    let free = Command::new("df")
        .args(["--output=avail", "-B1", TMPFS])
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse::<u64>().ok());
    match free {
        Some(free) if free >= need => Ok(builder().tempdir_in(TMPFS)?),
        _ => {
            println!("{TMPFS} has less than {} MiB free: local files go to the temporary directory", need >> 20);
            Ok(builder().tempdir()?)
        }
    }
}

/// The first line `program ARGS` prints on stdout, for the header.
pub fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{program}: unknown version"))
}

/// `/proc/loadavg`'s three averages.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// One timed run of one or more processes: wall time (spawn to exit), CPU
/// time and peak RSS.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub time: Duration,
    /// User and system CPU time of the processes (and of the children they
    /// reaped), to the clock tick (10 ms).
    pub user: Duration,
    pub system: Duration,
    /// The highest `VmHWM` sampled, KiB.
    pub sampled_kib: u64,
}

impl Run {
    /// `1.234 s = 830 MiB/s (cpu 0.10 user + 0.90 sys), peak 12.3 MiB` for
    /// a run that moved `bytes`.
    pub fn describe(&self, bytes: u64) -> String {
        format!(
            "{:.3} s = {:.0} MiB/s (cpu {:.2} user + {:.2} sys), peak {}",
            self.time.as_secs_f64(),
            mib_per_s(bytes, self.time),
            self.user.as_secs_f64(),
            self.system.as_secs_f64(),
            fmt_kib(self.sampled_kib)
        )
    }
}

/// A thread that samples one process's `VmHWM` every [`SAMPLE_EVERY`] until
/// it is gone (or a zombie, which has no memory) or the sampler is
/// finished. It starts before the process so that starting it costs the
/// timed run nothing; [`PeakSampler::watch`] gives it the pid.
#[derive(Debug)]
pub struct PeakSampler {
    pid: Option<std::sync::mpsc::Sender<u32>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl PeakSampler {
    pub fn start() -> PeakSampler {
        let (send, pid) = std::sync::mpsc::channel::<u32>();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let done = done.clone();
            std::thread::spawn(move || {
                let Ok(pid) = pid.recv() else { return 0 };
                let status = PathBuf::from(format!("/proc/{pid}/status"));
                let mut peak = 0;
                while let Some(kib) = vm_hwm_kib(&status) {
                    peak = peak.max(kib);
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
                peak
            })
        };
        PeakSampler { pid: Some(send), done, thread }
    }

    /// Starts sampling process `pid`.
    pub fn watch(&mut self, pid: u32) {
        if let Some(send) = self.pid.take() {
            let _ = send.send(pid);
        }
    }

    /// Stops sampling; the highest `VmHWM` seen, KiB (0 if none was).
    pub fn finish(self) -> BenchResult<u64> {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(self.pid);
        Ok(self.thread.join().map_err(|_| "the RSS sampler panicked")?)
    }
}

/// Runs `command` to completion (stdin from `/dev/null`, stdout and stderr
/// captured), timing it from spawn to exit while a [`PeakSampler`] watches
/// it; fails when it fails. Gives its stdout and stderr too.
pub fn timed(label: &str, command: &mut Command) -> BenchResult<(Run, String, String)> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut sampler = PeakSampler::start();
    let children_before = children_cpu();
    let started = Instant::now();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = sampler.finish();
            return Err(format!("{label}: starting {}: {e}", command.get_program().display()).into());
        }
    };
    sampler.watch(child.id());
    let out = child.wait_with_output();
    let time = started.elapsed();
    // Only this child was reaped in between.
    let (user, system) = cpu_since(children_before);
    let sampled_kib = sampler.finish()?;
    let out = out?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("{label}: {}: {}", out.status, stderr.trim()).into());
    }
    Ok((Run { time, user, system, sampled_kib }, String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
}

/// The user and system CPU time of this process's reaped children
/// (`cutime`, `cstime` of `/proc/self/stat`), at USER_HZ = 100.
pub fn children_cpu() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses: state is field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok().map(|t| Duration::from_millis(t * 10));
    Some((ticks(16)?, ticks(17)?))
}

/// The user and system CPU time of the children reaped since `before` (a
/// [`children_cpu`] reading); zero when either reading failed.
pub fn cpu_since(before: Option<(Duration, Duration)>) -> (Duration, Duration) {
    match (before, children_cpu()) {
        (Some((u0, s0)), Some((u1, s1))) => (u1.saturating_sub(u0), s1.saturating_sub(s0)),
        _ => (Duration::ZERO, Duration::ZERO),
    }
}

/// `PREFIX… PROGRAM ARGS…` with `command`'s directory and environment.
pub fn wrap(prefix: &[&str], command: &Command) -> Command {
    let mut wrapped = Command::new(prefix[0]);
    wrapped.args(&prefix[1..]).arg(command.get_program()).args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// `VmHWM` from a `/proc/PID/status`, KiB.
pub fn vm_hwm_kib(status: &Path) -> Option<u64> {
    status_kib(&std::fs::read_to_string(status).ok()?, "VmHWM:")
}

/// Fails unless `path` holds exactly the source: `size` bytes, SHA-256
/// `hash`. `label` names the run in the error.
pub fn check_file(label: &str, path: &Path, size: u64, hash: &str) -> BenchResult<()> {
    let len = std::fs::metadata(path).map_err(|e| format!("{label}: {}: {e}", path.display()))?.len();
    if len != size {
        return Err(format!("{label}: {} has {len} bytes, the source {size}", path.display()).into());
    }
    let got = sha256_file(path)?;
    if got != hash {
        return Err(format!("{label}: {} differs from the source (sha256 {got})", path.display()).into());
    }
    Ok(())
}

/// Removes `path`; a file already absent is fine.
pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What a side-by-side case of whole processes compares, as the table and
/// the pair lines name it.
pub struct PairedCase<'a> {
    /// The case, as the rows begin: `get 1024 MiB`, `put 1024 MiB, verify size`.
    pub label: &'a str,
    /// Bytes each run moves.
    pub size: u64,
    pub pairs: usize,
    pub mode: Mode,
    /// The pairs' median ratio (reference time over tether's) to reach.
    pub goal: f64,
    /// The other side in the pair lines: `curl`, `nc pipe`.
    pub reference: &'a str,
    /// The other side in the time rows: `curl -o FILE (tmpfs)`, …
    pub reference_tool: &'a str,
    /// What the CPU row measures: `of the process`, `of all its processes`.
    pub cpu_of: &'a str,
    /// The other side in the CPU row.
    pub cpu_reference: &'a str,
    /// The other side in the memory row.
    pub rss_reference: &'a str,
}

/// Runs a case: one untimed warm-up of each side (under GNU time when
/// `exact`, for its exact peak), then `pairs` pairs in alternating order
/// (ABBA), printing each; then adds the time, best, CPU and memory rows.
/// `once(reference, exact)` runs one side from a clean start and checks
/// its result. Gives the tether peak, described, when it is over
/// [`RSS_LIMIT_KIB`].
pub fn paired(
    case: &PairedCase,
    exact: bool,
    table: &mut Table,
    mut once: impl FnMut(bool, bool) -> BenchResult<(Run, Option<u64>)>,
) -> BenchResult<Option<String>> {
    let label = case.label;
    println!("{label}: 1 untimed warm-up run of each, then {} timed pair(s)", case.pairs);
    let warm_tether = once(false, exact)?.1;
    let warm_reference = once(true, exact)?.1;
    let (mut tether, mut reference) = (Samples::new(), Samples::new());
    let (mut tether_cpu, mut reference_cpu) = (Samples::new(), Samples::new());
    let (mut tether_peak, mut reference_peak) = (0, 0);
    let mut pair_ratios = Vec::new();
    for pair in 0..case.pairs {
        let reference_first = pair % 2 == 1;
        let (first, second) = (once(reference_first, false)?.0, once(!reference_first, false)?.0);
        let (t, r) = if reference_first { (second, first) } else { (first, second) };
        let ratio = r.time.as_secs_f64() / t.time.as_secs_f64();
        println!(
            "  pair {} ({} first): tether {}; {} {}; {}/tether time {ratio:.2}",
            pair + 1,
            if reference_first { case.reference } else { "tether" },
            t.describe(case.size),
            case.reference,
            r.describe(case.size),
            case.reference,
        );
        tether.push(t.time);
        reference.push(r.time);
        tether_cpu.push(t.user + t.system);
        reference_cpu.push(r.user + r.system);
        tether_peak = tether_peak.max(t.sampled_kib);
        reference_peak = reference_peak.max(r.sampled_kib);
        pair_ratios.push(ratio);
    }
    let median_ratio = median_f64(&pair_ratios);
    println!(
        "  {label}: median of the pair ratios {median_ratio:.2} (pairs: {})",
        pair_ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
    );
    // The goal is judged on the pairs (each pair's two runs saw the same
    // machine), not on medians taken apart.
    let goal = case.goal;
    let verdict = match case.mode {
        Mode::Quick => format!("pairs' median {median_ratio:.2}, smoke run: no verdict"),
        Mode::Full if median_ratio >= goal => format!("pairs' median {median_ratio:.2}, goal ≥ {goal:.2}: met"),
        Mode::Full => format!("pairs' median {median_ratio:.2}, goal ≥ {goal:.2}: MISSED"),
    };
    let (t, r) = (tether.mib_s(Stat::Median, case.size), reference.mib_s(Stat::Median, case.size));
    table.row(
        &format!("{label}, whole process, median of {}", case.pairs),
        format!("{t:.0} MiB/s"),
        case.reference_tool,
        format!("{r:.0} MiB/s"),
        format!("{}, {verdict}", fmt_ratio(ratio(t, r), Better::Higher)),
    );
    let (tb, rb) = (tether.mib_s(Stat::Best, case.size), reference.mib_s(Stat::Best, case.size));
    table.row(
        &format!("{label}, whole process, best of {}", case.pairs),
        format!("{tb:.0} MiB/s"),
        case.reference_tool,
        format!("{rb:.0} MiB/s"),
        fmt_ratio(ratio(tb, rb), Better::Higher),
    );
    let (tc, rc) = (tether_cpu.median(), reference_cpu.median());
    table.row(
        &format!("{label}, CPU time {} (user + sys), median", case.cpu_of),
        format!("{:.2} s", tc.as_secs_f64()),
        case.cpu_reference,
        format!("{:.2} s", rc.as_secs_f64()),
        fmt_ratio(ratio(tc.as_secs_f64(), rc.as_secs_f64()), Better::Lower),
    );
    let show = |sampled: u64, exact: Option<u64>| match exact {
        Some(exact) => format!("{} ({} exact, warm-up)", fmt_kib(sampled), fmt_kib(exact)),
        None => fmt_kib(sampled),
    };
    let tether_max = tether_peak.max(warm_tether.unwrap_or(0));
    table.row(
        &format!("peak RSS of the process, {label} (goal ≤ 200 MiB)"),
        show(tether_peak, warm_tether),
        case.rss_reference,
        show(reference_peak, warm_reference),
        if tether_max <= RSS_LIMIT_KIB { "goal: met".into() } else { "goal: MISSED".into() },
    );
    Ok((tether_max > RSS_LIMIT_KIB).then(|| format!("tether {label} peaked at {}", fmt_kib(tether_max))))
}
