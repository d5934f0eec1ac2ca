//! The `ssh`, `sftp` and `scp` schemes against OpenSSH's own clients, on one
//! private sshd on loopback, in the same run, with the same cipher
//! (`aes128-gcm@openssh.com`) and key exchange (`curve25519-sha256`) on both
//! sides:
//!
//! - exec on a warm connection vs `ssh` through a ControlMaster;
//! - 1,000 execs requested 100 at a time on one connection (Tether only:
//!   zero failures and commands per second are the figures);
//! - warm exec and the burst again against a server that forks nothing
//!   (`ssh/null_server.rs`), vs `ssh` through a ControlMaster (100 processes
//!   at a time for the burst): each client's own cost, without sshd's fork
//!   and `bash -c` per command;
//! - fresh connect + auth + exec vs a fresh `ssh host true`;
//! - bytes through an exec channel, up (`cat > /dev/null`) and down
//!   (`cat FILE`), vs `ssh host …` with the same redirections;
//! - SFTP put/get vs `sftp -b`, SCP put/get vs `scp -O`;
//! - this process's peak RSS during each transfer.
//!
//! Tether runs on a current-thread runtime, as the `tether` CLI does.
//! `cargo bench --bench ssh` runs the real sizes (1 GiB); `cargo test
//! --benches`, `--quick` or `TETHER_BENCH_QUICK=1` a smoke pass;
//! `TETHER_BENCH_FILE_MIB` changes the file size; `TETHER_BENCH_ONLY=warm,burst,
//! null,fresh,stream,sftp,scp` picks parts; `TETHER_BENCH_MAX_SESSIONS` sets
//! another channel limit. Results go to BENCHMARKS.md.

#[path = "ssh/null_server.rs"]
mod null_server;
mod support;

use std::error::Error;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Better, Mode, Samples, Stat, Table};
use tether_core::{
    Command, Connection, FileTransfer, HostConfig, OptionSource, PutOptions, Transport, get_file, put_file,
};
use tether_test_servers::Sshd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

type BenchResult<T> = Result<T, Box<dyn Error>>;

const CIPHER: &str = "aes128-gcm@openssh.com";
const KEX: &str = "curve25519-sha256";

fn main() -> BenchResult<()> {
    // `RUST_LOG=tether_transport_ssh=debug` shows retries and timings while profiling.
    #[cfg(feature = "cli")]
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let mode = Mode::from_env();
    let dir = tempfile::Builder::new().prefix("tether-bench-ssh-").tempdir()?;
    println!("# ssh transport benchmark ({mode:?} mode)\n");
    print!("{}", support::machine_description(dir.path()));
    let version = std::process::Command::new("ssh").arg("-V").output()?;
    println!("openssh: {}", String::from_utf8_lossy(&version.stderr).trim());
    println!("cipher: {CIPHER}, kex: {KEX}, runtime: tokio current_thread\n");

    let sshd = Sshd::start()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bench = Bench { sshd, rt, dir: dir.path().to_path_buf(), mode };
    let mut table = Table::new();
    let result = bench.run(&mut table);
    // What was measured before a failure is still worth seeing.
    println!("\n{}", table.render());
    result
}

struct Bench {
    sshd: Sshd,
    rt: Runtime,
    dir: PathBuf,
    mode: Mode,
}

impl Bench {
    fn run(&self, table: &mut Table) -> BenchResult<()> {
        let connection = self.connect()?;
        let transport = connection.transport().ok_or("ssh runs commands")?;
        // `TETHER_BENCH_ONLY=warm,burst` runs a subset, for profiling one part.
        let only = std::env::var("TETHER_BENCH_ONLY").unwrap_or_default();
        let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
        if wanted("warm") {
            self.warm_exec(&transport, table)?;
        }
        if wanted("burst") {
            self.burst(&transport, table)?;
        }
        if wanted("null") {
            self.without_server_cost(table)?;
        }
        if wanted("fresh") {
            self.fresh_connect(table)?;
        }
        if wanted("stream") {
            self.streams(&transport, table)?;
        }
        for scheme in ["sftp", "scp"] {
            if wanted(scheme) {
                let files = self.rt.block_on(connection.file_transfer(scheme))?;
                self.files(scheme, &files, table)?;
            }
        }
        self.rt.block_on(connection.close())?;
        Ok(())
    }

    /// The host as Tether sees it: the generated key, the server's
    /// known_hosts line, the benchmark's cipher and key exchange.
    fn host(&self) -> BenchResult<HostConfig> {
        let mut host = HostConfig::new("bench", "ssh", "sftp");
        host.address = Some("127.0.0.1".into());
        host.port = Some(self.sshd.port());
        host.user = Some(self.sshd.user().to_string());
        let set = |host: &mut HostConfig, key: &str, value: serde_json::Value| {
            host.options.set("ssh_options", key, value, OptionSource::Api)
        };
        set(&mut host, "client_keys", serde_json::json!([self.sshd.client_key_path()]))?;
        set(&mut host, "known_hosts", serde_json::json!([self.sshd.known_hosts_path()]))?;
        set(&mut host, "encryption_algs", serde_json::json!([CIPHER]))?;
        set(&mut host, "kex_algs", serde_json::json!([KEX]))?;
        set(&mut host, "use_agent", serde_json::json!(false))?;
        // `TETHER_BENCH_MAX_SESSIONS=5` tries another channel limit (profiling the burst).
        if let Some(limit) = std::env::var("TETHER_BENCH_MAX_SESSIONS").ok().and_then(|v| v.parse::<u32>().ok()) {
            set(&mut host, "max_sessions", serde_json::json!(limit))?;
        }
        Ok(host)
    }

    fn connect(&self) -> BenchResult<Arc<dyn Connection>> {
        let host = self.host()?;
        let connection = self.rt.block_on(tether_transport_ssh::connect_host(&host))?;
        Ok(Arc::new(connection))
    }

    /// `ssh` options for the reference: the harness's (no config file, this
    /// key only, strict host key check) plus the same algorithms.
    fn ssh_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = self.sshd.ssh_args().into_iter().map(OsString::from).collect();
        args.extend(["-c", CIPHER, "-o", &format!("KexAlgorithms={KEX}")].map(OsString::from));
        args
    }

    /// The same for `sftp` and `scp`, which spell the port `-P`.
    fn copy_args(&self) -> Vec<OsString> {
        self.ssh_args().into_iter().map(|a| if a == "-p" { OsString::from("-P") } else { a }).collect()
    }

    fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.sshd.user())
    }

    /// Runs `ssh ARGS… user@host REMOTE`, stdin and stdout as given.
    fn ssh(&self, extra: &[&str], remote: &str, stdin: Stdio, stdout: Stdio) -> BenchResult<()> {
        self.ssh_with(&self.ssh_args(), extra, remote, stdin, stdout)
    }

    /// [`ssh`](Self::ssh) with other options before `extra`.
    fn ssh_with(
        &self,
        args: &[OsString],
        extra: &[&str],
        remote: &str,
        stdin: Stdio,
        stdout: Stdio,
    ) -> BenchResult<()> {
        let status = std::process::Command::new("ssh")
            .args(args)
            .args(extra)
            .arg(self.destination())
            .arg(remote)
            .stdin(stdin)
            .stdout(stdout)
            .status()?;
        if !status.success() {
            return Err(format!("ssh {remote}: {status}").into());
        }
        Ok(())
    }

    fn warm_exec(&self, transport: &Arc<dyn Transport>, table: &mut Table) -> BenchResult<()> {
        let args = self.ssh_args();
        let control_opt = support::start_control_master(&args, &self.destination(), &self.dir.join("control"))?;
        let compared = self.warm_compare(transport, &args, &control_opt, "", table);
        let _ = self.ssh_with(&args, &["-o", &control_opt, "-O", "exit"], "", Stdio::null(), Stdio::null());
        compared
    }

    /// Warm exec of `true`, Tether on `transport` and `ssh ARGS` through the
    /// ControlMaster at `control_opt`, interleaved; a median and a p90 row
    /// whose labels end with `label_suffix`.
    fn warm_compare(
        &self,
        transport: &Arc<dyn Transport>,
        args: &[OsString],
        control_opt: &str,
        label_suffix: &str,
        table: &mut Table,
    ) -> BenchResult<()> {
        let warmup = self.mode.pick(20, 2);
        let iterations = self.mode.pick(200, 10);
        println!("warm exec{label_suffix}: {warmup} warm-up + {iterations} timed runs of each, interleaved");
        let command = Command::argv(["true"]);
        let (mut tether, mut openssh) = (Samples::new(), Samples::new());
        for i in 0..warmup + iterations {
            let (out, t) = self.rt.block_on(support::time_async(transport.exec(&command)));
            if !out?.success() {
                return Err("tether exec true failed".into());
            }
            let (done, o) =
                support::time(|| self.ssh_with(args, &["-o", control_opt], "true", Stdio::null(), Stdio::null()));
            done?;
            if i >= warmup {
                tether.push(t);
                openssh.push(o);
            }
        }
        for stat in [Stat::Median, Stat::P90] {
            let (t, o) = (tether.stat(stat), openssh.stat(stat));
            table.row(
                &format!("warm exec `true`, {}{label_suffix}", stat.label()),
                support::fmt_duration(t),
                "ssh via ControlMaster",
                support::fmt_duration(o),
                support::fmt_ratio(support::ratio(t.as_secs_f64(), o.as_secs_f64()), Better::Lower),
            );
        }
        Ok(())
    }

    fn burst(&self, transport: &Arc<dyn Transport>, table: &mut Table) -> BenchResult<()> {
        let (total, at_once) = (self.mode.pick(1000, 100), 100);
        println!("burst: {total} execs of `echo N`, {at_once} requested at a time");
        let (rate, failures) = self.tether_burst(transport, total, at_once);
        table.row(
            &format!("{total} execs, {at_once} at a time"),
            format!("{rate:.0} commands/s, {failures} failed"),
            "(goal)",
            "≥ 1000 commands/s, 0 failed".into(),
            String::new(),
        );
        Ok(())
    }

    /// Runs `total` execs of `echo N`, `at_once` at a time, checking every
    /// output; gives commands per second and how many failed.
    fn tether_burst(&self, transport: &Arc<dyn Transport>, total: usize, at_once: usize) -> (f64, usize) {
        let started = Instant::now();
        let failures = self.rt.block_on(async {
            let mut failures = Vec::new();
            let mut next = 0;
            while next < total {
                let wave: Vec<_> = (next..(next + at_once).min(total))
                    .map(|i| {
                        let transport = transport.clone();
                        tokio::spawn(async move {
                            let out = transport.exec(&Command::argv(["echo", &i.to_string()])).await;
                            match out {
                                Ok(out) if out.success() && out.stdout == format!("{i}\n").as_bytes() => Ok(()),
                                Ok(out) => Err(format!("exec {i}: {:?} {:?}", out.status, out.stdout)),
                                Err(e) => Err(format!("exec {i}: {e}")),
                            }
                        })
                    })
                    .collect();
                for run in wave {
                    if let Err(e) = run.await.map_err(|e| e.to_string()).and_then(|r| r) {
                        failures.push(e);
                    }
                }
                next += at_once;
            }
            failures
        });
        let rate = total as f64 / started.elapsed().as_secs_f64();
        if let Some(first) = failures.first() {
            println!("  first failure: {first}");
        }
        (rate, failures.len())
    }

    /// Warm exec and the burst against [`null_server`], where a command
    /// costs the server no fork: Tether on one connection vs `ssh` through
    /// one ControlMaster (for the burst, 100 processes at a time).
    fn without_server_cost(&self, table: &mut Table) -> BenchResult<()> {
        let server = null_server::start(&self.dir, CIPHER)?;
        let known_hosts = self.dir.join("null_known_hosts");
        std::fs::write(&known_hosts, format!("{}\n", server.known_hosts_line))?;
        let mut host = self.host()?;
        host.port = Some(server.addr.port());
        host.options.set("ssh_options", "known_hosts", serde_json::json!([known_hosts]), OptionSource::Api)?;
        let connection = self.rt.block_on(tether_transport_ssh::connect_host(&host))?;
        let transport: Arc<dyn Transport> = connection.session();

        // The harness's ssh options, pointed at the null server.
        let mut args: Vec<OsString> = Vec::new();
        let mut given = self.ssh_args().into_iter();
        while let Some(arg) = given.next() {
            let value = given.next().ok_or("ssh_args come in pairs")?;
            let value = match (arg.to_str(), value.to_str()) {
                (Some("-p"), _) => server.addr.port().to_string().into(),
                (Some("-o"), Some(v)) if v.starts_with("UserKnownHostsFile=") => {
                    format!("UserKnownHostsFile={}", known_hosts.display()).into()
                }
                _ => value,
            };
            args.extend([arg, value]);
        }
        let control_opt = support::start_control_master(&args, &self.destination(), &self.dir.join("null_control"))?;
        let measured =
            self.warm_compare(&transport, &args, &control_opt, ", server forks nothing", table).and_then(|()| {
                let (total, at_once) = (self.mode.pick(1000, 100), 100);
                println!("burst, server forks nothing: {total} execs of `echo N`, {at_once} at a time, each client");
                let (rate, failures) = self.tether_burst(&transport, total, at_once);
                let (openssh_rate, openssh_failures) = self.openssh_burst(&args, &control_opt, total, at_once)?;
                table.row(
                    &format!("{total} execs, {at_once} at a time, server forks nothing"),
                    format!("{rate:.0} commands/s, {failures} failed"),
                    "ssh via ControlMaster, 100 processes at a time",
                    format!("{openssh_rate:.0} commands/s, {openssh_failures} failed"),
                    support::fmt_ratio(support::ratio(rate, openssh_rate), Better::Higher),
                );
                Ok(())
            });
        let _ = self.ssh_with(&args, &["-o", &control_opt, "-O", "exit"], "", Stdio::null(), Stdio::null());
        self.rt.block_on(connection.close())?;
        measured
    }

    /// `total` `ssh … echo N` processes through the ControlMaster at
    /// `control_opt`, `at_once` at a time, each output checked; gives
    /// commands per second and how many failed.
    fn openssh_burst(
        &self,
        args: &[OsString],
        control_opt: &str,
        total: usize,
        at_once: usize,
    ) -> BenchResult<(f64, usize)> {
        let started = Instant::now();
        let mut failures = 0;
        let mut next = 0;
        while next < total {
            let wave: Vec<_> = (next..(next + at_once).min(total))
                .map(|i| {
                    std::process::Command::new("ssh")
                        .args(args)
                        .args(["-o", control_opt])
                        .arg(self.destination())
                        .arg(format!("echo {i}"))
                        .stdin(Stdio::null())
                        .stderr(Stdio::null())
                        .stdout(Stdio::piped())
                        .spawn()
                        .map(|child| (i, child))
                })
                .collect::<Result<_, _>>()?;
            for (i, child) in wave {
                let out = child.wait_with_output()?;
                if !out.status.success() || out.stdout != format!("{i}\n").as_bytes() {
                    failures += 1;
                }
            }
            next += at_once;
        }
        Ok((total as f64 / started.elapsed().as_secs_f64(), failures))
    }

    fn fresh_connect(&self, table: &mut Table) -> BenchResult<()> {
        let iterations = self.mode.pick(20, 3);
        println!("fresh connect: {iterations} runs of each, interleaved");
        let host = self.host()?;
        let (mut tether, mut openssh) = (Samples::new(), Samples::new());
        for _ in 0..iterations {
            let (out, t) = self.rt.block_on(support::time_async(async {
                let connection = tether_transport_ssh::connect_host(&host).await?;
                let out = connection.session().exec(&Command::argv(["true"])).await?;
                connection.close().await?;
                Ok::<_, tether_core::Error>(out)
            }));
            if !out?.success() {
                return Err("tether fresh exec failed".into());
            }
            let (done, o) = support::time(|| self.ssh(&[], "true", Stdio::null(), Stdio::null()));
            done?;
            tether.push(t);
            openssh.push(o);
        }
        let (t, o) = (tether.median(), openssh.median());
        table.row(
            "fresh connect + auth + exec `true`, median",
            support::fmt_duration(t),
            "ssh host true",
            support::fmt_duration(o),
            support::fmt_ratio(support::ratio(t.as_secs_f64(), o.as_secs_f64()), Better::Lower),
        );
        Ok(())
    }

    fn size(&self) -> u64 {
        support::file_size(self.mode)
    }

    fn rounds(&self) -> usize {
        self.mode.pick(3, 1)
    }

    fn source(&self) -> BenchResult<PathBuf> {
        Ok(support::source_file(&self.dir, self.size())?)
    }

    fn streams(&self, transport: &Arc<dyn Transport>, table: &mut Table) -> BenchResult<()> {
        let source = self.source()?;
        let size = self.size();
        let rounds = self.rounds();
        println!("exec channel: {} MiB each way, {rounds} rounds", size / support::MIB);
        let remote_source = source.display().to_string();
        let (mut up_t, mut up_o, mut down_t, mut down_o) =
            (Samples::new(), Samples::new(), Samples::new(), Samples::new());
        let mut peak = 0;
        for round in 0..rounds {
            let openssh_first = round % 2 == 1;
            let tether_up = || -> BenchResult<Duration> {
                support::reset_peak_rss();
                let (sent, t) = self.rt.block_on(support::time_async(stream_up(transport, &source)));
                if sent? != size {
                    return Err("exec upload moved the wrong byte count".into());
                }
                Ok(t)
            };
            let openssh_up = || -> BenchResult<Duration> {
                let file = std::fs::File::open(&source)?;
                let (done, o) = support::time(|| self.ssh(&[], "cat > /dev/null", file.into(), Stdio::null()));
                done?;
                Ok(o)
            };
            let (t, o) = in_order(openssh_first, tether_up, openssh_up)?;
            peak = peak.max(support::peak_rss_kib().unwrap_or(0));
            up_t.push(t);
            up_o.push(o);

            let tether_down = || -> BenchResult<Duration> {
                support::reset_peak_rss();
                let (got, t) = self.rt.block_on(support::time_async(stream_down(transport, &remote_source)));
                if got? != size {
                    return Err("exec download moved the wrong byte count".into());
                }
                Ok(t)
            };
            let openssh_down = || -> BenchResult<Duration> {
                let (done, o) = support::time(|| {
                    self.ssh(&[], &format!("cat {}", tether_core::quote(&remote_source)), Stdio::null(), Stdio::null())
                });
                done?;
                Ok(o)
            };
            let (t, o) = in_order(openssh_first, tether_down, openssh_down)?;
            peak = peak.max(support::peak_rss_kib().unwrap_or(0));
            down_t.push(t);
            down_o.push(o);
        }
        let mib = size / support::MIB;
        for (label, t, o, tool) in [
            ("exec channel up", &up_t, &up_o, "ssh host 'cat > /dev/null' < file"),
            ("exec channel down", &down_t, &down_o, "ssh host cat file > /dev/null"),
        ] {
            throughput_row(table, &format!("{label} {mib} MiB"), t, o, tool, size);
        }
        table.row(
            &format!("peak RSS during exec channel {mib} MiB"),
            support::fmt_kib(peak),
            "(goal)",
            "≤ 64 MiB".into(),
            String::new(),
        );
        Ok(())
    }

    fn files(&self, scheme: &str, files: &Arc<dyn FileTransfer>, table: &mut Table) -> BenchResult<()> {
        let source = self.source()?;
        let size = self.size();
        let rounds = self.rounds();
        let remote_dir = self.dir.join(format!("remote-{scheme}"));
        std::fs::create_dir_all(&remote_dir)?;
        let remote = remote_dir.join("put.bin");
        let remote_str = remote.display().to_string();
        let local_copy = self.dir.join(format!("got-{scheme}.bin"));
        let openssh_copy = self.dir.join(format!("openssh-{scheme}.bin"));
        let source_hash = support::sha256_file(&source)?;
        println!("{scheme}: {} MiB put and get, {rounds} rounds", size / support::MIB);
        let (mut put_t, mut put_o, mut get_t, mut get_o) =
            (Samples::new(), Samples::new(), Samples::new(), Samples::new());
        let (mut put_peak, mut get_peak) = (0, 0);
        let tool = match scheme {
            "sftp" => "sftp -b",
            _ => "scp -O",
        };
        for round in 0..rounds {
            // Odd rounds run OpenSSH first, so neither side always gets the
            // page cache the other one warmed.
            let openssh_first = round % 2 == 1;
            let tether_put = || -> BenchResult<Duration> {
                let _ = std::fs::remove_file(&remote);
                support::sync_filesystems()?;
                support::reset_peak_rss();
                let (n, t) = self.rt.block_on(support::time_async(put_file(
                    &**files,
                    &source,
                    Path::new(&remote_str),
                    &PutOptions::default(),
                    false,
                    None,
                )));
                n?;
                if round == 0 && support::sha256_file(&remote)? != source_hash {
                    return Err(format!("{scheme} put: the copy differs").into());
                }
                Ok(t)
            };
            let openssh_put = || -> BenchResult<Duration> {
                let _ = std::fs::remove_file(&remote);
                support::sync_filesystems()?;
                let (done, o) = support::time(|| self.openssh_copy(scheme, &source, &remote, true));
                done?;
                Ok(o)
            };
            let (t, o) = in_order(openssh_first, tether_put, openssh_put)?;
            put_peak = put_peak.max(support::peak_rss_kib().unwrap_or(0));
            put_t.push(t);
            put_o.push(o);

            let tether_get = || -> BenchResult<Duration> {
                let _ = std::fs::remove_file(&local_copy);
                support::sync_filesystems()?;
                support::reset_peak_rss();
                let (n, t) = self.rt.block_on(support::time_async(get_file(
                    &**files,
                    Path::new(&remote_str),
                    &local_copy,
                    None,
                )));
                n?;
                if round == 0 && support::sha256_file(&local_copy)? != source_hash {
                    return Err(format!("{scheme} get: the copy differs").into());
                }
                Ok(t)
            };
            let openssh_get = || -> BenchResult<Duration> {
                let _ = std::fs::remove_file(&openssh_copy);
                support::sync_filesystems()?;
                let (done, o) = support::time(|| self.openssh_copy(scheme, &openssh_copy, &remote, false));
                done?;
                Ok(o)
            };
            let (t, o) = in_order(openssh_first, tether_get, openssh_get)?;
            get_peak = get_peak.max(support::peak_rss_kib().unwrap_or(0));
            get_t.push(t);
            get_o.push(o);
        }
        let mib = size / support::MIB;
        throughput_row(table, &format!("{scheme} put {mib} MiB"), &put_t, &put_o, tool, size);
        throughput_row(table, &format!("{scheme} get {mib} MiB"), &get_t, &get_o, tool, size);
        for (label, peak) in [("put", put_peak), ("get", get_peak)] {
            table.row(
                &format!("peak RSS during {scheme} {label} {mib} MiB"),
                support::fmt_kib(peak),
                "(goal)",
                "≤ 64 MiB".into(),
                String::new(),
            );
        }
        let _ = std::fs::remove_file(&remote);
        let _ = std::fs::remove_file(&local_copy);
        let _ = std::fs::remove_file(&openssh_copy);
        Ok(())
    }

    /// One OpenSSH copy: `put` from `local` to `remote`, or get `remote` into `local`.
    fn openssh_copy(&self, scheme: &str, local: &Path, remote: &Path, put: bool) -> BenchResult<()> {
        let remote_spec = format!("{}:{}", self.destination(), remote.display());
        let mut command = std::process::Command::new(scheme);
        command.args(self.copy_args());
        match scheme {
            "sftp" => {
                let batch = self.dir.join("batch");
                let line = if put {
                    format!("put {} {}\n", local.display(), remote.display())
                } else {
                    format!("get {} {}\n", remote.display(), local.display())
                };
                std::fs::write(&batch, line)?;
                command.arg("-b").arg(&batch).arg(self.destination());
            }
            _ => {
                command.arg("-O").arg("-q");
                if put {
                    command.arg(local).arg(&remote_spec);
                } else {
                    command.arg(&remote_spec).arg(local);
                }
            }
        }
        let out = command.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(format!("{scheme}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }
}

/// Runs both contenders of a round, OpenSSH first when `openssh_first`, and
/// gives their times as `(tether, openssh)`.
fn in_order<T, O>(openssh_first: bool, tether: T, openssh: O) -> BenchResult<(Duration, Duration)>
where
    T: FnOnce() -> BenchResult<Duration>,
    O: FnOnce() -> BenchResult<Duration>,
{
    if openssh_first {
        let o = openssh()?;
        Ok((tether()?, o))
    } else {
        let t = tether()?;
        Ok((t, openssh()?))
    }
}

fn throughput_row(table: &mut Table, label: &str, tether: &Samples, openssh: &Samples, tool: &str, size: u64) {
    let rounds: Vec<String> = tether.all().iter().map(|t| format!("{:.0}", support::mib_per_s(size, *t))).collect();
    let reference: Vec<String> = openssh.all().iter().map(|t| format!("{:.0}", support::mib_per_s(size, *t))).collect();
    println!("  {label}: tether {} MiB/s, {tool} {} MiB/s", rounds.join(", "), reference.join(", "));
    let (t, o) = (tether.mib_s(Stat::Median, size), openssh.mib_s(Stat::Median, size));
    table.row(
        &format!("{label}, median"),
        format!("{t:.0} MiB/s"),
        tool,
        format!("{o:.0} MiB/s"),
        support::fmt_ratio(support::ratio(t, o), Better::Higher),
    );
}

/// Streams `source` into `cat > /dev/null` on the host; returns the bytes sent.
async fn stream_up(transport: &Arc<dyn Transport>, source: &Path) -> tether_core::Result<u64> {
    let mut process = transport.spawn(&Command::shell("cat > /dev/null")).await?;
    let mut stdin = process.stdin.take().expect("stdin");
    let mut file = tokio::fs::File::open(source).await.map_err(|e| tether_core::Error::io("bench", e))?;
    let mut buf = vec![0u8; 256 << 10];
    let mut sent = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(|e| tether_core::Error::io("bench", e))?;
        if n == 0 {
            break;
        }
        stdin.write_all(&buf[..n]).await.map_err(|e| tether_core::Error::io("bench", e))?;
        sent += n as u64;
    }
    stdin.shutdown().await.map_err(|e| tether_core::Error::io("bench", e))?;
    drop(stdin);
    let status = process.wait().await?;
    if !status.success() {
        return Err(tether_core::Error::new(tether_core::ErrorKind::CommandFailed, "bench"));
    }
    Ok(sent)
}

/// Reads `cat FILE` from the host to the end; returns the bytes received.
async fn stream_down(transport: &Arc<dyn Transport>, remote: &str) -> tether_core::Result<u64> {
    let mut process = transport.spawn(&Command::argv(["cat", remote])).await?;
    let mut stdout = process.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    loop {
        let n = stdout.read(&mut buf).await.map_err(|e| tether_core::Error::io("bench", e))?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let status = process.wait().await?;
    if !status.success() {
        return Err(tether_core::Error::new(tether_core::ErrorKind::CommandFailed, "bench"));
    }
    Ok(got)
}
