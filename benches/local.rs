//! The `local` transport against what a Rust program or a shell user does
//! without Tether: `std::process::Command` for commands, `cp` for files.
//!
//! `cargo bench --bench local` runs the real sizes (about 25 s on 2 cores);
//! `cargo test --benches`, `--quick` or `TETHER_BENCH_QUICK=1` run a smoke
//! pass in a few seconds; `TETHER_BENCH_FILE_MIB` changes the file size.
//! Results go to BENCHMARKS.md.

mod support;

use std::error::Error;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::{Better, Mode, Samples, Stat, Table};
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
    let rows = [
        ("exec `true` (argv)", tether_argv, "std::process `sh -c true`", std_shell, Stat::Median),
        ("exec `true` (argv)", tether_argv, "std::process `sh -c true`", std_shell, Stat::P90),
        ("exec `true` (argv)", tether_argv, "std::process `true` (no shell)", std_direct, Stat::Median),
        ("exec `true` (argv)", tether_argv, "std::process `true` (no shell)", std_direct, Stat::P90),
        ("exec `true` (Command::shell)", tether_shell, "std::process `sh -c true`", std_shell, Stat::Median),
    ];
    for (metric, tether, tool, reference, stat) in rows {
        let (t, r) = (tether.stat(stat), reference.stat(stat));
        table.row(
            &format!("{metric}, {}", stat.label()),
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

fn copy_once(rt: &Runtime, host: &Arc<LocalHost>, way: CopyWay, src: &Path, dst: &Path) -> BenchResult<Duration> {
    let src_str = src.to_str().ok_or("non-UTF-8 temp path")?;
    let dst_str = dst.to_str().ok_or("non-UTF-8 temp path")?;
    let time = match way {
        CopyWay::TetherPut => {
            let (n, time) = rt.block_on(support::time_async(put_file(
                &**host,
                src,
                Path::new(dst_str),
                &PutOptions::default(),
                false,
                None,
            )));
            n?;
            time
        }
        CopyWay::TetherGet => {
            let (n, time) = rt.block_on(support::time_async(get_file(&**host, Path::new(src_str), dst, None)));
            n?;
            time
        }
        CopyWay::Cp => {
            let (done, time) = support::time(|| support::run_tool("cp", &[src.as_os_str(), dst.as_os_str()]));
            done?;
            time
        }
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
    // Overridable so the streaming claim can be checked at other sizes: the
    // peak RSS must not grow with the file.
    let size_mib = std::env::var("TETHER_BENCH_FILE_MIB").ok().and_then(|v| v.parse().ok());
    let size = size_mib.unwrap_or(mode.pick(512, 8)) * support::MIB;
    let rounds = mode.pick(5, 2);
    let src = dir.join("source.bin");
    let dst = dir.join("copy.bin");
    println!(
        "files: {} MiB of pseudo-random bytes, {rounds} rounds of each way (each an untimed + a timed copy), same directory",
        size / support::MIB
    );
    support::write_random_file(&src, size, 0x7e7e_7e7e)?;
    let src_hash = support::sha256_file(&src)?;

    let mut samples: Vec<Samples> = COPY_WAYS.iter().map(|_| Samples::new()).collect();
    // Peak RSS of the whole bench process per way, over all rounds. The
    // baseline is taken before any transfer: afterwards the allocator keeps
    // freed transfer buffers, so "RSS before" would already include them.
    let mut peak_kib = [0u64; COPY_WAYS.len()];
    let baseline_kib = support::rss_kib().unwrap_or(0);
    let peak_resettable = support::reset_peak_rss();
    let remove_copy = || match std::fs::remove_file(&dst) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    };
    for round in 0..rounds {
        // The starting way rotates, so drift over the run spreads over all
        // ways alike.
        for k in 0..COPY_WAYS.len() {
            let index = (round + k) % COPY_WAYS.len();
            let way = COPY_WAYS[index];
            // An untimed run of the same way right before the timed one. On
            // this VM (virtio-balloon free page reporting) memory freed a
            // few seconds earlier has gone back to the host and a copy pays
            // for faulting it in again: cp of 512 MiB took 0.16 s right after
            // deleting the previous copy and 0.55 s three seconds later.
            // The warm-up run leaves exactly the pages the timed run will
            // reuse. (Touching a large anonymous buffer instead made it worse.)
            remove_copy()?;
            copy_once(rt, host, way, &src, &dst)?;
            // Once per way is enough to prove the copy is the file, and
            // hashing every round would double the run time.
            if round == 0 && support::sha256_file(&dst)? != src_hash {
                return Err(format!("{way:?}: the copy differs from the source").into());
            }
            // Every timed run writes a fresh file (cp would otherwise
            // overwrite in place while put renames over), and starts with no
            // dirty pages of the warm-up left to flush.
            remove_copy()?;
            support::sync_filesystems()?;
            support::reset_peak_rss();
            let time = copy_once(rt, host, way, &src, &dst)?;
            peak_kib[index] = peak_kib[index].max(support::peak_rss_kib().unwrap_or(0));
            let copied = std::fs::metadata(&dst)?.len();
            if copied != size {
                return Err(format!("{way:?} copied {copied} of {size} bytes").into());
            }
            samples[index].push(time);
        }
    }

    // A handful of rounds make a median, not a distribution: show every
    // round so a reader can see whether the spread swamps the ratio.
    for (way, s) in COPY_WAYS.iter().zip(&samples) {
        let rounds: Vec<String> = s.all().iter().map(|t| format!("{:.0}", support::mib_per_s(size, *t))).collect();
        println!("  {way:?}: {} MiB/s", rounds.join(", "));
    }
    let [put, get, cp, cp_fsync] = [0, 1, 2, 3].map(|i| &samples[i]);
    let mib = size / support::MIB;
    // Interference (another VM, the host reclaiming guest memory) only ever
    // slows a copy down, so the best round is the closest to what the code
    // itself costs; the median is what a user should expect.
    let rows = [
        ("put_file", put, "cp", cp, Stat::Median),
        ("put_file", put, "cp", cp, Stat::Best),
        ("get_file", get, "cp", cp, Stat::Median),
        ("get_file", get, "cp + fsync", cp_fsync, Stat::Median),
        ("get_file", get, "cp", cp, Stat::Best),
        ("get_file", get, "cp + fsync", cp_fsync, Stat::Best),
    ];
    for (metric, tether, tool, reference, stat) in rows {
        let (t, r) = (tether.mib_s(stat, size), reference.mib_s(stat, size));
        table.row(
            &format!("{metric} {mib} MiB, {}", stat.label()),
            format!("{t:.0} MiB/s"),
            tool,
            format!("{r:.0} MiB/s"),
            support::fmt_ratio(support::ratio(t, r), Better::Higher),
        );
    }

    // cp's own peak, measured once outside the timed runs.
    let cp_peak = support::tool_peak_rss_kib("cp", &[src.as_os_str(), dst.as_os_str()]);
    remove_copy()?;
    let cp_peak = cp_peak.map(support::fmt_kib).unwrap_or_else(|| "n/a (no /usr/bin/time)".into());
    let scope = if peak_resettable { "" } else { " (VmHWM not resettable: whole run)" };
    for (label, peak) in [("put_file", peak_kib[0]), ("get_file", peak_kib[1])] {
        table.row(
            &format!("peak RSS during {label} {mib} MiB{scope}"),
            format!("{} ({} before any transfer)", support::fmt_kib(peak), support::fmt_kib(baseline_kib)),
            "cp",
            cp_peak.clone(),
            String::new(),
        );
    }
    Ok(())
}
