//! The `local` transport against what a Rust program or a shell user does
//! without Tether: `std::process::Command` for commands, `cp` for files.
//!
//! `cargo bench --bench local` runs the real sizes (about a minute);
//! `cargo test --benches`, `--quick` or `TETHER_BENCH_QUICK=1` run a smoke
//! pass in a few seconds. Results go to BENCHMARKS.md.

mod support;

use std::error::Error;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::{Better, Mode, Samples, Table};
use tether_core::{Command, PutOptions, Transport, get_file, put_file};
use tether_transport_local::{LocalHost, LocalOptions, local_host};
use tokio::runtime::Runtime;

type BenchResult<T> = Result<T, Box<dyn Error>>;

fn main() -> BenchResult<()> {
    let mode = Mode::from_env();
    let dir = tempfile::Builder::new().prefix("tether-bench-local-").tempdir()?;
    println!("# local transport benchmark ({mode:?} mode)\n");
    print!("{}", support::machine_description(dir.path()));
    println!("sh: {}\n", std::fs::canonicalize("/bin/sh").map(|p| p.display().to_string()).unwrap_or_default());

    // What `#[tokio::main]` gives a program: a multi-threaded runtime with a
    // worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let host = local_host(LocalOptions::default());
    let mut table = Table::new();
    exec_latency(&rt, &host, mode, &mut table)?;
    transfers(&rt, &host, mode, dir.path(), &mut table)?;
    println!("\n{}", table.render());
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum ExecWay {
    TetherArgv,
    TetherShell,
    StdShell,
    StdDirect,
}

const EXEC_WAYS: [ExecWay; 4] = [ExecWay::TetherArgv, ExecWay::TetherShell, ExecWay::StdShell, ExecWay::StdDirect];

/// One run of `true`, the cheapest command there is, so the time is the
/// machinery around it: fork/exec, pipes, reaping, and for Tether the async
/// plumbing on top.
fn exec_once(rt: &Runtime, host: &LocalHost, way: ExecWay) -> BenchResult<Duration> {
    let (ok, time) = match way {
        ExecWay::TetherArgv => {
            let cmd = Command::new("true");
            let (out, time) = rt.block_on(support::time_async(host.exec(&cmd)));
            (out?.success(), time)
        }
        ExecWay::TetherShell => {
            let cmd = Command::shell("true");
            let (out, time) = rt.block_on(support::time_async(host.exec(&cmd)));
            (out?.success(), time)
        }
        // `.output()`, not `.status()`: Tether captures stdout and stderr, so
        // the reference pays for the same two pipes.
        ExecWay::StdShell => {
            let (out, time) = support::time(|| std::process::Command::new("sh").args(["-c", "true"]).output());
            (out?.status.success(), time)
        }
        ExecWay::StdDirect => {
            let (out, time) = support::time(|| std::process::Command::new("true").output());
            (out?.status.success(), time)
        }
    };
    if !ok {
        return Err(format!("{way:?}: `true` did not succeed").into());
    }
    Ok(time)
}

fn exec_latency(rt: &Runtime, host: &LocalHost, mode: Mode, table: &mut Table) -> BenchResult<()> {
    let warmup = mode.pick(30, 3);
    let iterations = mode.pick(300, 20);
    println!("exec: {warmup} warm-up + {iterations} timed runs of each way, interleaved");
    let mut samples: Vec<Samples> = EXEC_WAYS.iter().map(|_| Samples::new()).collect();
    for i in 0..warmup + iterations {
        // Interleaved, and the starting way rotates, so drift (page cache,
        // frequency scaling, a noisy neighbour) spreads over all ways alike.
        for k in 0..EXEC_WAYS.len() {
            let index = (i + k) % EXEC_WAYS.len();
            let time = exec_once(rt, host, EXEC_WAYS[index])?;
            if i >= warmup {
                samples[index].push(time);
            }
        }
    }
    let [tether_argv, tether_shell, std_shell, std_direct] = [0, 1, 2, 3].map(|i| &samples[i]);
    let median = |s: &Samples| s.median();
    let p90 = |s: &Samples| s.percentile(90.0);
    let rows: [(&str, &Samples, &str, &Samples, &dyn Fn(&Samples) -> Duration); 5] = [
        ("exec `true` (argv), median", tether_argv, "std::process `sh -c true`", std_shell, &median),
        ("exec `true` (argv), p90", tether_argv, "std::process `sh -c true`", std_shell, &p90),
        ("exec `true` (argv), median", tether_argv, "std::process `true` (no shell)", std_direct, &median),
        ("exec `true` (argv), p90", tether_argv, "std::process `true` (no shell)", std_direct, &p90),
        ("exec `true` (Command::shell), median", tether_shell, "std::process `sh -c true`", std_shell, &median),
    ];
    for (metric, tether, tool, reference, stat) in rows {
        let (t, r) = (stat(tether), stat(reference));
        table.row(
            metric,
            support::fmt_duration(t),
            tool,
            support::fmt_duration(r),
            support::fmt_ratio(support::ratio(t.as_secs_f64(), r.as_secs_f64()), Better::Lower),
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum CopyWay {
    TetherPut,
    TetherGet,
    Cp,
    /// `cp` then an fsync of the copy: `get_file` syncs its result before
    /// renaming it into place, so this is the reference with equal durability.
    CpFsync,
}

const COPY_WAYS: [CopyWay; 4] = [CopyWay::TetherPut, CopyWay::TetherGet, CopyWay::Cp, CopyWay::CpFsync];

/// Peak RSS over the rounds of one way, and the largest rise over the RSS
/// its transfer started from (what the transfer itself allocated).
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    peak_kib: u64,
    rise_kib: u64,
}

fn copy_once(rt: &Runtime, host: &Arc<LocalHost>, way: CopyWay, src: &Path, dst: &Path) -> BenchResult<Duration> {
    let src_str = src.to_str().ok_or("non-UTF-8 temp path")?;
    let dst_str = dst.to_str().ok_or("non-UTF-8 temp path")?;
    let time = match way {
        CopyWay::TetherPut => {
            let (n, time) =
                rt.block_on(support::time_async(put_file(&**host, src, dst_str, &PutOptions::default(), false, None)));
            n?;
            time
        }
        CopyWay::TetherGet => {
            let (n, time) = rt.block_on(support::time_async(get_file(&**host, src_str, dst, None)));
            n?;
            time
        }
        CopyWay::Cp => support::time(|| support::run_tool("cp", &[src.as_os_str(), dst.as_os_str()])).1,
        CopyWay::CpFsync => {
            let (done, time) = support::time(|| -> std::io::Result<()> {
                support::run_tool("cp", &[src.as_os_str(), dst.as_os_str()])?;
                File::open(dst)?.sync_all()
            });
            done?;
            time
        }
    };
    Ok(time)
}

fn transfers(rt: &Runtime, host: &Arc<LocalHost>, mode: Mode, dir: &Path, table: &mut Table) -> BenchResult<()> {
    let size = mode.pick(512, 8) * support::MIB;
    let rounds = mode.pick(5, 2);
    let src = dir.join("source.bin");
    let dst = dir.join("copy.bin");
    println!("files: {} MiB of pseudo-random bytes, {rounds} rounds of each way, same directory", size / support::MIB);
    support::write_random_file(&src, size, 0x7e7e_7e7e)?;
    let src_hash = support::sha256_file(&src)?;

    let mut samples: Vec<Samples> = COPY_WAYS.iter().map(|_| Samples::new()).collect();
    let mut memory: Vec<Memory> = COPY_WAYS.iter().map(|_| Memory::default()).collect();
    let peak_resettable = support::reset_peak_rss();
    for round in 0..rounds {
        for k in 0..COPY_WAYS.len() {
            let index = (round + k) % COPY_WAYS.len();
            let way = COPY_WAYS[index];
            // Every way writes a fresh file (cp would otherwise overwrite in
            // place while put renames over), and starts with no dirty pages
            // of the previous way left to flush.
            if dst.exists() {
                std::fs::remove_file(&dst)?;
            }
            support::sync_filesystems()?;
            support::reset_peak_rss();
            let before = support::rss_kib().unwrap_or(0);
            let time = copy_once(rt, host, way, &src, &dst)?;
            let peak = support::peak_rss_kib().unwrap_or(0);
            let seen = &mut memory[index];
            seen.peak_kib = seen.peak_kib.max(peak);
            seen.rise_kib = seen.rise_kib.max(peak.saturating_sub(before));
            let copied = std::fs::metadata(&dst)?.len();
            if copied != size {
                return Err(format!("{way:?} copied {copied} of {size} bytes").into());
            }
            // Once per way is enough to prove the copy is the file, and
            // hashing every round would double the run time.
            if round == 0 && support::sha256_file(&dst)? != src_hash {
                return Err(format!("{way:?}: the copy differs from the source").into());
            }
            samples[index].push(time);
        }
    }

    let [put, get, cp, cp_fsync] = [0, 1, 2, 3].map(|i| &samples[i]);
    let mib = size / support::MIB;
    let rate = |s: &Samples| s.median_mib_s(size);
    let fmt = |r: f64| format!("{r:.0} MiB/s");
    table.row(
        &format!("put_file {mib} MiB, median"),
        fmt(rate(put)),
        "cp",
        fmt(rate(cp)),
        support::fmt_ratio(support::ratio(rate(put), rate(cp)), Better::Higher),
    );
    table.row(
        &format!("get_file {mib} MiB, median"),
        fmt(rate(get)),
        "cp",
        fmt(rate(cp)),
        support::fmt_ratio(support::ratio(rate(get), rate(cp)), Better::Higher),
    );
    table.row(
        &format!("get_file {mib} MiB, median"),
        fmt(rate(get)),
        "cp + fsync",
        fmt(rate(cp_fsync)),
        support::fmt_ratio(support::ratio(rate(get), rate(cp_fsync)), Better::Higher),
    );

    // cp's own peak, measured once outside the timed runs.
    let cp_peak = support::tool_peak_rss_kib("cp", &[src.as_os_str(), dst.as_os_str()]);
    std::fs::remove_file(&dst)?;
    let cp_peak = cp_peak.map(support::fmt_kib).unwrap_or_else(|| "n/a (no /usr/bin/time)".into());
    let scope = if peak_resettable { "" } else { " (VmHWM not resettable: whole run)" };
    for (label, m) in [("put_file", memory[0]), ("get_file", memory[1])] {
        table.row(
            &format!("peak RSS during {label} {mib} MiB{scope}"),
            format!("{} (+{} over start)", support::fmt_kib(m.peak_kib), support::fmt_kib(m.rise_kib)),
            "cp",
            cp_peak.clone(),
            String::new(),
        );
    }
    Ok(())
}
