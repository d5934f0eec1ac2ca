//! The `telnet` transport against a Python `telnetlib3` client
//! (`telnet/telnetlib3_client.py`) doing the same work on the same server, in
//! the same run: one private busybox `telnetd` on loopback that asks for
//! root's login (`tether_test_servers::Telnetd`, the password in a private
//! copy of `/etc/shadow`).
//!
//! - **warm**: commands per second on one logged-in session. Tether: one
//!   [`Host`] (term `telnet`), `Host::exec(printf x)`, connected and logged
//!   in by a first command outside the timing. telnetlib3: logs in and
//!   prepares the shell as Tether does (`stty -echo -opost -icanon`, `exec
//!   sh`), runs one command untimed, then times the same number of commands,
//!   each time reading the exact output and the exit status between
//!   markers; on the same session, twice: with the very line Tether sends
//!   (`sh -c` between a begin and an end marker: the same work for the
//!   server; the goal's comparison), then with a minimal framing (`{ printf
//!   x; } </dev/null 2>&1; printf END$?`, no `sh -c`: what a hand-written
//!   script might send). Every output and status is checked on both sides.
//! - **stream**: `cat` of a file of pseudo-random bytes (64 MiB) through
//!   `Host::spawn`, stdout read as it arrives, vs telnetlib3 reading the same
//!   `cat` a chunk at a time, and vs a raw socket reader on the Python
//!   client's session (no telnet decoding at all: what the server can send,
//!   the ceiling for any client). Both sides' bytes are SHA-256-checked.
//!   This process's peak RSS (`VmHWM`, reset before each transfer) and the
//!   Python process's `ru_maxrss`.
//! - **cli**: the `tether` binary as a user runs it, `tether exec
//!   telnet://root:PASSWORD@127.0.0.1:PORT -- printf x`, vs the Python client
//!   run as a process for one command: connect, login and all.
//!
//! Tether runs on a current-thread runtime, as the `tether` CLI does. The
//! Python side runs the `sys.executable` of `python3` (not a pyenv shim,
//! which is a shell script) and times itself from after its login, as
//! Tether's in-process figures do; rounds alternate which side goes first.
//! `cargo bench --bench telnet` runs the real sizes; `cargo test --benches`,
//! `--quick` or `TETHER_BENCH_QUICK=1` a smoke pass; `TETHER_BENCH_FILE_MIB`
//! changes the `cat` size, `TETHER_BENCH_COMMANDS` the warm count,
//! `TETHER_BENCH_ONLY=warm,stream,cli` picks parts. Needs root (the
//! server's private `/etc/shadow`), busybox-static and `pip3 install
//! telnetlib3==5.0.1`. Results go to BENCHMARKS.md.

mod support;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::{Better, Mode, Samples, Stat, Table};
use tether_core::{Command, Credential, Host, HostConfig};
use tether_test_servers::{Telnetd, TelnetdKind};
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;

// Linked, so the registry knows `telnet`.
use tether::telnet as _;

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// root's password inside the server's private `/etc/shadow`.
const PASSWORD: &str = "tether-telnet-bench";

/// The reference client, written to the bench directory.
const CLIENT: &str = include_str!("telnet/telnetlib3_client.py");

/// The command of the warm and CLI runs, and what it prints.
const COMMAND: &str = "printf x";
const EXPECTED: &[u8] = b"x";

fn main() -> BenchResult<()> {
    let mode = Mode::from_env();
    let dir = tempfile::Builder::new().prefix("tether-bench-telnet-").tempdir()?;
    println!("# telnet transport benchmark ({mode:?} mode)\n");
    print!("{}", support::machine_description(dir.path()));
    let python = python_executable()?;
    let busybox = std::process::Command::new("busybox").output()?;
    let busybox =
        String::from_utf8_lossy(&busybox.stdout).lines().next().unwrap_or("?").replace(" multi-call binary.", "");
    println!("server: {busybox} telnetd, login as root");
    println!("reference: {} with telnetlib3 {}", python.display(), telnetlib3_version(&python)?);
    println!("runtime: tokio current_thread\n");

    let client = dir.path().join("telnetlib3_client.py");
    std::fs::write(&client, CLIENT)?;
    let telnetd = Telnetd::builder(TelnetdKind::Busybox).login("root", PASSWORD).start()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let host = Arc::new(Host::new(host_config(&telnetd))?);
    let bench = Bench { telnetd, rt, host, dir: dir.path().to_path_buf(), mode, python, client };
    let mut table = Table::new();
    let result = bench.run(&mut table);
    // What was measured before a failure is still worth seeing.
    println!("\n{}", table.render());
    result
}

/// The interpreter `python3` runs: a pyenv shim is a shell script that
/// would add its own start-up to every process of the CLI comparison.
fn python_executable() -> BenchResult<PathBuf> {
    let out = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output()?;
    if !out.status.success() {
        return Err("python3 does not run".into());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn telnetlib3_version(python: &Path) -> BenchResult<String> {
    let script = "import importlib.metadata as m; print(m.version('telnetlib3'))";
    let out = std::process::Command::new(python).args(["-c", script]).output()?;
    if !out.status.success() {
        return Err(format!(
            "telnetlib3 is missing (pip3 install telnetlib3==5.0.1): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// The host as a program builds it: address, port, root's password.
fn host_config(telnetd: &Telnetd) -> HostConfig {
    let mut config = HostConfig::new("bench", "telnet", "telnet");
    config.address = Some(telnetd.ip().to_string());
    config.port = Some(telnetd.port());
    config.credentials.push(Credential { login: "root".into(), password: PASSWORD.to_string().into() });
    config
}

struct Bench {
    telnetd: Telnetd,
    rt: Runtime,
    host: Arc<Host>,
    dir: PathBuf,
    mode: Mode,
    python: PathBuf,
    client: PathBuf,
}

impl Bench {
    fn run(&self, table: &mut Table) -> BenchResult<()> {
        // `TETHER_BENCH_ONLY=warm,stream` runs a subset, for profiling one part.
        let only = std::env::var("TETHER_BENCH_ONLY").unwrap_or_default();
        let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
        // Connects and logs in, outside every timing.
        self.tether_exec()?;
        if wanted("warm") {
            self.warm(table)?;
        }
        if wanted("stream") {
            self.stream(table)?;
        }
        if wanted("cli") {
            self.cli(table)?;
        }
        Ok(())
    }

    /// One `printf x` on the warm host, checked.
    fn tether_exec(&self) -> BenchResult<()> {
        let out = self.rt.block_on(self.host.exec(&Command::argv(["printf", "x"])))?;
        if !out.success() || out.stdout != EXPECTED {
            return Err(format!("tether printf x: {:?} {:?}", out.status, out.stdout).into());
        }
        Ok(())
    }

    /// The reference client with `args` after host, port and user; its
    /// stdout, failing when it fails.
    fn python(&self, args: &[&str]) -> BenchResult<Vec<u8>> {
        let out = self.python_command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            return Err(format!(
                "telnetlib3 client {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(out.stdout)
    }

    fn python_command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.python);
        command
            .arg(&self.client)
            .arg(self.telnetd.ip().to_string())
            .arg(self.telnetd.port().to_string())
            .arg("root")
            .args(args)
            .env("TETHER_BENCH_PASSWORD", PASSWORD)
            .stdin(Stdio::null());
        command
    }

    /// The reference client's JSON report.
    fn python_json(&self, args: &[&str]) -> BenchResult<serde_json::Value> {
        Ok(serde_json::from_slice(&self.python(args)?)?)
    }

    fn rounds(&self) -> usize {
        self.mode.pick(3, 1)
    }

    fn warm(&self, table: &mut Table) -> BenchResult<()> {
        let count: usize =
            std::env::var("TETHER_BENCH_COMMANDS").ok().and_then(|v| v.parse().ok()).unwrap_or(self.mode.pick(200, 5));
        let rounds = self.rounds();
        println!("warm: {count} timed commands of `{COMMAND}` per round, {rounds} rounds, each side on one session");
        let (mut tether, mut same, mut minimal) = (Samples::new(), Samples::new(), Samples::new());
        for round in 0..rounds {
            let tether_round = || -> BenchResult<Duration> {
                let (done, t) = support::time(|| (0..count).try_for_each(|_| self.tether_exec()));
                done?;
                Ok(t)
            };
            // One session, both framings: the same line as Tether, then the minimal one.
            let python_round = || -> BenchResult<(Duration, Duration)> {
                let report = self.python_json(&["warm", &count.to_string(), COMMAND])?;
                let mut times = Vec::new();
                for framing in ["tether", "minimal"] {
                    // The client checks every output against the first; this checks the first.
                    if report[framing]["output"].as_str().map(str::as_bytes) != Some(EXPECTED) {
                        return Err(format!("telnetlib3 {framing}: {report}").into());
                    }
                    let seconds = report[framing]["seconds"].as_f64().ok_or("no seconds in the client's report")?;
                    times.push(Duration::from_secs_f64(seconds));
                }
                Ok((times[0], times[1]))
            };
            let (t, (s, m)) = if round % 2 == 1 {
                let python = python_round()?;
                (tether_round()?, python)
            } else {
                let t = tether_round()?;
                (t, python_round()?)
            };
            tether.push(t);
            same.push(s);
            minimal.push(m);
        }
        let show = |samples: &Samples| {
            samples
                .all()
                .iter()
                .map(|t| format!("{:.0}", count as f64 / t.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("  tether: {} commands/s", show(&tether));
        println!("  telnetlib3, same line: {} commands/s", show(&same));
        println!("  telnetlib3, minimal framing: {} commands/s", show(&minimal));
        // The median round by time is the median rate.
        let per_s = |samples: &Samples| count as f64 / samples.median().as_secs_f64();
        let t = per_s(&tether);
        for (tool, samples, goal) in [
            ("telnetlib3, same line (`sh -c` between markers)", &same, true),
            ("telnetlib3, minimal framing (no `sh -c`)", &minimal, false),
        ] {
            let o = per_s(samples);
            let ratio = support::ratio(t, o);
            let verdict = match (goal, ratio >= 3.0) {
                (false, _) => "",
                (true, true) => ", goal ≥ 3.00x: met",
                (true, false) => ", goal ≥ 3.00x: MISSED",
            };
            table.row(
                &format!("warm commands/s, `{COMMAND}`, median of {rounds}"),
                format!("{t:.0} commands/s"),
                tool,
                format!("{o:.0} commands/s"),
                format!("{}{verdict}", support::fmt_ratio(ratio, Better::Higher)),
            );
        }
        Ok(())
    }

    fn stream(&self, table: &mut Table) -> BenchResult<()> {
        let mib =
            std::env::var("TETHER_BENCH_FILE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(self.mode.pick(64, 1));
        let size: u64 = mib * support::MIB;
        let source = self.dir.join("source.bin");
        support::write_random_file(&source, size, 0x7e1e_7e1e)?;
        let source_hash = support::sha256_file(&source)?;
        let remote = source.to_str().ok_or("a UTF-8 bench directory")?.to_string();
        let rounds = self.rounds();
        // A real run checks every byte in an untimed round first; a smoke
        // run checks them in its one (timed) round.
        let checked_apart = self.mode == Mode::Full;
        println!(
            "stream: `cat` of {mib} MiB of pseudo-random bytes through one session, {}{rounds} timed rounds",
            if checked_apart { "an untimed SHA-256-checked round, then " } else { "SHA-256-checked, " }
        );
        let tether_cat = |hash: bool| -> BenchResult<Duration> {
            let (result, t) = self.rt.block_on(support::time_async(stream_cat(&self.host, &remote, hash)));
            let (got, sha256) = result?;
            if got != size || (hash && sha256.as_deref() != Some(source_hash.as_str())) {
                return Err(format!("tether cat: {got} bytes of {size}, sha256 {sha256:?}").into());
            }
            Ok(t)
        };
        // The telnetlib3 client's time, its peak RSS, and the raw reader's time.
        let python_cat = |hash: bool| -> BenchResult<(Duration, u64, Duration)> {
            let report = self.python_json(&["cat", &remote, if hash { "1" } else { "0" }])?;
            if report["bytes"].as_u64() != Some(size)
                || (hash && report["sha256"].as_str() != Some(source_hash.as_str()))
            {
                return Err(format!("telnetlib3 cat: {report}").into());
            }
            let seconds = |key: &str| report[key].as_f64().map(Duration::from_secs_f64).ok_or("an incomplete report");
            Ok((seconds("seconds")?, report["maxrss_kib"].as_u64().unwrap_or(0), seconds("raw_seconds")?))
        };
        if checked_apart {
            tether_cat(true)?;
            python_cat(true)?;
        }
        let (mut tether, mut python, mut raw) = (Samples::new(), Samples::new(), Samples::new());
        let (mut before, mut peak, mut python_peak) = (u64::MAX, 0, 0);
        let mut tether_round = || -> BenchResult<Duration> {
            before = before.min(support::rss_kib().unwrap_or(0));
            support::reset_peak_rss();
            let t = tether_cat(!checked_apart)?;
            peak = peak.max(support::peak_rss_kib().unwrap_or(0));
            Ok(t)
        };
        for round in 0..rounds {
            let ((p, p_peak, r), t) = if round % 2 == 1 {
                let python = python_cat(!checked_apart)?;
                (python, tether_round()?)
            } else {
                let t = tether_round()?;
                (python_cat(!checked_apart)?, t)
            };
            tether.push(t);
            python.push(p);
            raw.push(r);
            python_peak = python_peak.max(p_peak);
        }
        let show = |samples: &Samples| {
            samples.all().iter().map(|t| format!("{:.1}", support::mib_per_s(size, *t))).collect::<Vec<_>>().join(", ")
        };
        println!(
            "  tether: {} MiB/s; telnetlib3: {} MiB/s; raw socket reader: {} MiB/s",
            show(&tether),
            show(&python),
            show(&raw)
        );
        let t = tether.mib_s(Stat::Median, size);
        for (tool, samples) in
            [("telnetlib3, read a chunk at a time", &python), ("(ceiling) raw socket reader, no telnet decoding", &raw)]
        {
            let o = samples.mib_s(Stat::Median, size);
            table.row(
                &format!("`cat` {mib} MiB through spawn, median of {rounds}"),
                format!("{t:.1} MiB/s"),
                tool,
                format!("{o:.1} MiB/s"),
                support::fmt_ratio(support::ratio(t, o), Better::Higher),
            );
        }
        table.row(
            &format!("peak RSS during `cat` {mib} MiB"),
            format!(
                "{} (+{} over {} before)",
                support::fmt_kib(peak),
                support::fmt_kib(peak.saturating_sub(before)),
                support::fmt_kib(before)
            ),
            "telnetlib3 process, ru_maxrss",
            support::fmt_kib(python_peak),
            String::new(),
        );
        Ok(())
    }

    fn cli(&self, table: &mut Table) -> BenchResult<()> {
        let Some(tether) = option_env!("CARGO_BIN_EXE_tether") else {
            println!("cli: skipped, the `tether` binary is not built (feature `cli`)");
            return Ok(());
        };
        let runs = self.mode.pick(20, 1);
        println!("cli: {runs} runs of each as a process (connect, login, `{COMMAND}`), interleaved");
        let url = format!("telnet://root:{PASSWORD}@{}:{}", self.telnetd.ip(), self.telnetd.port());
        let (mut t_samples, mut p_samples) = (Samples::new(), Samples::new());
        for run in 0..runs {
            let tether_run = || -> BenchResult<Duration> {
                let mut command = std::process::Command::new(tether);
                command
                    .args(["exec", &url, "--", "printf", "x"])
                    .env_remove("TETHER_HOSTS")
                    .env_remove("RUST_LOG")
                    .current_dir(&self.dir)
                    .stdin(Stdio::null());
                let (out, t) = support::time(|| command.output());
                let out = out?;
                if !out.status.success() || out.stdout != EXPECTED {
                    return Err(format!(
                        "tether exec: {}: {:?} {}",
                        out.status,
                        out.stdout,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                    .into());
                }
                Ok(t)
            };
            let python_run = || -> BenchResult<Duration> {
                let (out, t) = support::time(|| self.python(&["once", COMMAND]));
                if out? != EXPECTED {
                    return Err("telnetlib3 once: wrong output".into());
                }
                Ok(t)
            };
            if run % 2 == 1 {
                p_samples.push(python_run()?);
                t_samples.push(tether_run()?);
            } else {
                t_samples.push(tether_run()?);
                p_samples.push(python_run()?);
            }
        }
        for stat in [Stat::Median, Stat::P90] {
            let (t, o) = (t_samples.stat(stat), p_samples.stat(stat));
            table.row(
                &format!("process: connect + login + `{COMMAND}`, {}", stat.label()),
                support::fmt_duration(t),
                "python3 telnetlib3_client.py once",
                support::fmt_duration(o),
                support::fmt_ratio(support::ratio(t.as_secs_f64(), o.as_secs_f64()), Better::Lower),
            );
        }
        Ok(())
    }
}

/// Runs `cat REMOTE` on the host through `spawn`, reading stdout as it
/// arrives; gives the byte count, and the SHA-256 when `hash`.
async fn stream_cat(host: &Host, remote: &str, hash: bool) -> tether_core::Result<(u64, Option<String>)> {
    let mut process = host.spawn(&Command::argv(["cat", remote])).await?;
    let mut stdout = process.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    let mut hasher = hash.then(Sha256::new);
    loop {
        let n = stdout.read(&mut buf).await.map_err(|e| tether_core::Error::io("bench", e))?;
        if n == 0 {
            break;
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&buf[..n]);
        }
        got += n as u64;
    }
    let status = process.wait().await?;
    if !status.success() {
        return Err(tether_core::Error::new(tether_core::ErrorKind::CommandFailed, "bench"));
    }
    Ok((got, hasher.map(|h| hex::encode(h.finalize()))))
}
