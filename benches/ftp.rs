//! The `ftp` scheme against curl, on one private vsftpd on loopback (plain
//! FTP, `tether_test_servers::Vsftpd`), in the same run, both timed as whole
//! processes from spawn to exit:
//!
//! - **get**: `tether --hosts hosts.json get box REMOTE LOCAL` vs `curl -sS
//!   -o LOCAL ftp://USER:PASSWORD@127.0.0.1:PORT/%2FREMOTE`, both into a
//!   file on tmpfs (`/dev/shm` when it has room, else a tempdir);
//! - **put**: `tether … put box LOCAL REMOTE` vs `curl -sS -T LOCAL
//!   ftp://…/%2FREMOTE`, from the same local file;
//! - the CPU time (user + system) of every timed process, from this
//!   process's `cutime`/`cstime` around its reaping (10 ms ticks): what a
//!   client costs, which the load of a busy machine does not change much;
//! - the peak RSS (`VmHWM`) of every timed process, sampled from
//!   `/proc/PID/status` every few milliseconds while it runs, and exactly
//!   (GNU time's `%M`, the kernel's `ru_maxrss`) in an untimed warm-up run of
//!   each when `/usr/bin/time` exists. The bench fails when a tether process
//!   peaks above 200 MiB;
//! - after the gets, the server's ceiling: `curl -o /dev/null` (vsftpd
//!   sends with `sendfile`, nothing is written locally), no ratio.
//!
//! The file the server sends lives in the server's `scratch_dir()` (a real
//! path here: no chroot), so both tools download the very same file; puts go
//! to two other names in that directory, each removed (and the filesystems
//! synced) before every timed run. The server's home is under `TMPDIR`:
//! `TMPDIR=/dev/shm` puts the server's files on tmpfs too, so a put measures
//! the clients rather than the disk. Every transfer, timed or not, is checked
//! afterwards by size and SHA-256 against the source, so a fast wrong result
//! cannot win. Runs come in pairs whose order alternates (tether first in
//! pairs 1, 3, 5; curl first in 2 and 4: ABBA…), after one untimed warm-up
//! run of each. A ratio is curl's time over tether's (tether's MiB/s over
//! curl's): ≥ 1.00 means tether is as fast or faster. The table gives the
//! ratio of the medians and the median of the five pairs' ratios; the goal
//! (≥ 1.00) is judged on the latter, each pair's runs having seen the same
//! machine.
//!
//! `cargo bench --bench ftp` runs 1 GiB, 5 pairs; `cargo test --benches`,
//! `--quick` or `TETHER_BENCH_QUICK=1` a smoke pass (4 MiB, 1 pair).
//! `TETHER_BENCH_FILE_MIB` changes the size, `TETHER_BENCH_PAIRS` the pair
//! count, `TETHER_BENCH_ONLY=get` or `put` picks one direction;
//! `TETHER_BENCH_WRAP='strace -f -c -o FILE'` (or `perf record …`) runs each
//! timed tether process under a profiler (its cost then lands in tether's
//! times). Needs root (the harness's private login), vsftpd and curl.
//! Results go to BENCHMARKS.md.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{BenchResult, Mode, Run, SAMPLE_EVERY, Samples, Stat, TMPFS, Table, first_line, load_average, timed};
use tether_test_servers::Vsftpd;

/// The host's id in the bench's `hosts.json`.
const HOST: &str = "box";

fn main() -> BenchResult<()> {
    let mode = Mode::from_env();
    let Some(tether) = option_env!("CARGO_BIN_EXE_tether") else {
        return Err("the `tether` binary is not built (feature `cli`)".into());
    };
    let size = support::transfer_size(mode);
    let pairs = support::pair_count(mode);
    // The local source and the two downloads.
    let dir = support::scratch_dir("tether-bench-ftp-", 3 * size + 64 * support::MIB)?;

    println!("# ftp transport benchmark ({mode:?} mode)\n");
    print!("{}", support::machine_description(dir.path()));
    println!("server: {}", first_line("sh", &["-c", "vsftpd -v 0>&1"]));
    println!("reference: {}", first_line("curl", &["--version"]));
    println!("tether: {tether}");

    let vsftpd = Vsftpd::start()?;
    let scratch = vsftpd.scratch_dir();
    let fs = support::filesystem_of(&scratch).unwrap_or_else(|| "unknown".into());
    println!("server files: {} ({fs})", scratch.display());
    if !fs.starts_with("tmpfs") {
        println!("  (not tmpfs: puts also measure this disk; TMPDIR={TMPFS} moves the server's home to tmpfs)");
    }
    let time = Path::new("/usr/bin/time").exists();
    println!(
        "peak RSS: VmHWM sampled every {} ms in every timed run{}\n",
        SAMPLE_EVERY.as_millis(),
        if time { "; exact (GNU time %M) in the warm-up runs" } else { "; /usr/bin/time missing, no exact figure" }
    );

    let local_source = dir.path().join("source.bin");
    support::write_random_file(&local_source, size, 0xf7f7_0012)?;
    let remote_source = scratch.join("source.bin");
    std::fs::copy(&local_source, &remote_source)?;
    std::fs::File::open(&remote_source)?.sync_all()?;
    let hash = support::sha256_file(&local_source)?;
    let hosts = dir.path().join("hosts.json");
    let inventory = serde_json::json!({
        HOST: {
            "ip": vsftpd.ip().to_string(),
            "creds": { vsftpd.user(): vsftpd.password() },
            "term": "ftp",
            "transfer": "ftp",
            "ftp_options": { "port": vsftpd.port() },
        }
    });
    std::fs::write(&hosts, inventory.to_string())?;

    let bench = Bench {
        tether: PathBuf::from(tether),
        hosts,
        dir: dir.path().to_path_buf(),
        url: format!("ftp://{}:{}@{}:{}", vsftpd.user(), vsftpd.password(), vsftpd.ip(), vsftpd.port()),
        local_source,
        remote_source,
        remote_tether: scratch.join("put-tether.bin"),
        remote_curl: scratch.join("put-curl.bin"),
        size,
        hash,
        pairs,
        time,
        mode,
        local_tmpfs: support::filesystem_of(dir.path()).is_some_and(|fs| fs.starts_with("tmpfs")),
    };
    let mut table = Table::new();
    println!("load average before: {}", load_average());
    let result = bench.run(&mut table);
    println!("load average after: {}", load_average());
    // What was measured before a failure is still worth seeing.
    println!("\n{}", table.render());
    if result.is_err() {
        // The server's side of a failure: its last replies and transfers.
        let log = vsftpd.log();
        let lines: Vec<&str> = log.lines().collect();
        println!("vsftpd's log, last lines:\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
    }
    drop(vsftpd);
    result
}

/// `path` as an FTP URL path after `/%2F`: every byte but unreserved ones
/// and `/` percent-encoded.
fn url_path(path: &Path) -> BenchResult<String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let relative = bytes.strip_prefix(b"/").ok_or("an absolute server path")?;
    let mut out = String::new();
    for &b in relative {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Get,
    Put,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Get => "get",
            Direction::Put => "put",
        }
    }
}

/// The contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Tether,
    Curl,
}

struct Bench {
    tether: PathBuf,
    hosts: PathBuf,
    dir: PathBuf,
    /// `ftp://USER:PASSWORD@IP:PORT`, no path.
    url: String,
    local_source: PathBuf,
    remote_source: PathBuf,
    remote_tether: PathBuf,
    remote_curl: PathBuf,
    size: u64,
    hash: String,
    pairs: usize,
    /// Whether GNU time is at `/usr/bin/time`.
    time: bool,
    mode: Mode,
    /// Whether the local files are on tmpfs.
    local_tmpfs: bool,
}

impl Bench {
    fn run(&self, table: &mut Table) -> BenchResult<()> {
        let only = support::only_parts();
        let wanted = |part: &str| only.is_empty() || only.iter().any(|p| p == part);
        let mut over_limit = Vec::new();
        for direction in [Direction::Get, Direction::Put] {
            if wanted(direction.name()) {
                over_limit.extend(self.direction(direction, table)?);
            }
        }
        if !over_limit.is_empty() {
            return Err(format!("memory is not flat: {}", over_limit.join("; ")).into());
        }
        Ok(())
    }

    /// The warm-up, the timed pairs and the table rows of one direction;
    /// gives the tether peaks above [`RSS_LIMIT_KIB`], described.
    fn direction(&self, direction: Direction, table: &mut Table) -> BenchResult<Vec<String>> {
        let mib = self.size / support::MIB;
        let label = format!("{} {mib} MiB", direction.name());
        let tool = match direction {
            Direction::Get if self.local_tmpfs => "curl -o FILE (tmpfs)",
            Direction::Get => "curl -o FILE",
            Direction::Put => "curl -T FILE",
        };
        let case = support::PairedCase {
            label: &label,
            size: self.size,
            pairs: self.pairs,
            mode: self.mode,
            goal: 1.0,
            reference: "curl",
            reference_tool: tool,
            cpu_of: "of the process",
            cpu_reference: tool,
            rss_reference: "curl",
        };
        let over = support::paired(&case, self.time, table, |curl, exact| {
            self.once(direction, if curl { Tool::Curl } else { Tool::Tether }, exact)
        })?;
        if direction == Direction::Get {
            self.ceiling(table)?;
        }
        Ok(over.into_iter().collect())
    }

    /// One run of `tool` in `direction` from a clean start (destination
    /// removed, filesystems synced), checked by size and SHA-256. With
    /// `exact`, untimed under GNU time: the second value is its `%M`.
    fn once(&self, direction: Direction, tool: Tool, exact: bool) -> BenchResult<(Run, Option<u64>)> {
        let destination = match (direction, tool) {
            (Direction::Get, Tool::Tether) => self.dir.join("got-tether.bin"),
            (Direction::Get, Tool::Curl) => self.dir.join("got-curl.bin"),
            (Direction::Put, Tool::Tether) => self.remote_tether.clone(),
            (Direction::Put, Tool::Curl) => self.remote_curl.clone(),
        };
        support::remove_if_present(&destination)?;
        support::sync_filesystems()?;
        let mut command = match tool {
            Tool::Tether => {
                let mut command = Command::new(&self.tether);
                command
                    .arg("--hosts")
                    .arg(&self.hosts)
                    .arg(direction.name())
                    .arg(HOST)
                    // Only the bench's inventory; no settings (the bench directory has no .tether/).
                    .env_remove("TETHER_SETTINGS")
                    .env_remove("TETHER_HOSTS")
                    .env_remove("RUST_LOG")
                    .current_dir(&self.dir);
                match direction {
                    Direction::Get => command.arg(&self.remote_source).arg(&destination),
                    Direction::Put => command.arg(&self.local_source).arg(&destination),
                };
                command
            }
            Tool::Curl => {
                let mut command = Command::new("curl");
                command.arg("-sS");
                match direction {
                    Direction::Get => {
                        command.arg("-o").arg(&destination).arg(self.url_of(&self.remote_source)?);
                    }
                    Direction::Put => {
                        command.arg("-T").arg(&self.local_source).arg(self.url_of(&destination)?);
                    }
                }
                command
            }
        };
        let label = format!("{tool:?} {}", direction.name()).to_lowercase();
        let (run, exact_kib) = if exact {
            let mut wrapped = support::wrap(&support::GNU_TIME_PEAK, &command);
            let (run, _, stderr) = timed(&label, &mut wrapped)?;
            (run, support::gnu_time_peak_kib(&stderr))
        } else if tool == Tool::Tether
            && let Ok(profiler) = std::env::var("TETHER_BENCH_WRAP")
            && !profiler.trim().is_empty()
        {
            // Profiling only: the wrapper's cost lands in tether's times.
            let words: Vec<&str> = profiler.split_whitespace().collect();
            (timed(&label, &mut support::wrap(&words, &command))?.0, None)
        } else {
            (timed(&label, &mut command)?.0, None)
        };
        support::check_file(&label, &destination, self.size, &self.hash)?;
        Ok((run, exact_kib))
    }

    /// The server's ceiling for a get: `curl -o /dev/null` (vsftpd sends
    /// with `sendfile`, nothing is written locally), checked by byte count.
    fn ceiling(&self, table: &mut Table) -> BenchResult<()> {
        let mut times = Samples::new();
        for _ in 0..self.pairs {
            support::sync_filesystems()?;
            let mut command = Command::new("curl");
            command.args(["-sS", "-o", "/dev/null", "-w", "%{size_download}"]).arg(self.url_of(&self.remote_source)?);
            let (run, stdout, _) = timed("curl get to /dev/null", &mut command)?;
            if stdout.trim() != self.size.to_string() {
                return Err(format!("curl get to /dev/null: {} bytes, not {}", stdout.trim(), self.size).into());
            }
            times.push(run.time);
        }
        let all: Vec<String> =
            times.all().iter().map(|t| format!("{:.0}", support::mib_per_s(self.size, *t))).collect();
        println!("  ceiling, curl -o /dev/null: {} MiB/s", all.join(", "));
        table.row(
            &format!(
                "(ceiling) get {} MiB, nothing written locally, median of {}",
                self.size / support::MIB,
                self.pairs
            ),
            String::new(),
            "curl -o /dev/null",
            format!("{:.0} MiB/s", times.mib_s(Stat::Median, self.size)),
            String::new(),
        );
        Ok(())
    }

    fn url_of(&self, path: &Path) -> BenchResult<String> {
        Ok(format!("{}/%2F{}", self.url, url_path(path)?))
    }
}
