//! The `scp` scheme against a real OpenSSH sshd: the file conformance suite,
//! preserved times and modes, paths the shell must not interpret, a server
//! killed mid-transfer, and a remote `scp` replaced by a hostile script.
//!
//! The server runs on this machine, so a remote path is also a local path:
//! the tests look at the files directly where the transport cannot tell.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tether_core::conformance::{random_bytes, sha256_hex};
use tether_core::{Connection, ErrorKind, FileKind, FileTransfer, OptionSource, PutOptions, StatOptions};
use tether_test_servers::Sshd;

/// A private sshd, the `scp` file transport on it, and a scratch directory.
struct Remote {
    files: Arc<dyn FileTransfer>,
    _connection: Arc<dyn Connection>,
    /// An empty directory for the test, as a remote path (and a local one).
    base: String,
    /// What `scp` the server ran, one line of arguments per run, when the
    /// server's `scp` is the logging wrapper.
    log: PathBuf,
    sshd: Arc<Mutex<Sshd>>,
    dir: tempfile::TempDir,
}

impl Remote {
    fn scp_runs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Where the real `scp` is on this machine.
fn real_scp() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("scp"))
        .find(|candidate| candidate.is_file())
        .expect("scp is installed (openssh-client)")
}

/// How the server's `scp` behaves.
enum Scp<'a> {
    /// The real one, behind a wrapper that logs its arguments.
    Logged,
    /// This `sh` script body; `$REAL` is the real scp.
    Script(&'a str),
}

/// Starts sshd with `scp` on its users' `PATH` replaced as `scp` says, and
/// connects the `scp` scheme with `ssh_options.connect_timeout` set.
async fn remote(scp: Scp<'_>, connect_timeout: f64) -> Remote {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("scp.log");
    let body = match scp {
        Scp::Logged => format!("printf '%s\\n' \"$*\" >> '{}'\nexec \"$REAL\" \"$@\"\n", log.display()),
        Scp::Script(body) => body.to_string(),
    };
    let script = format!("#!/bin/sh\nREAL='{}'\n{body}", real_scp().display());
    std::fs::write(bin.join("scp"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("scp"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // sshd keeps the first top-level SetEnv (the harness's), but a Match
    // block's replaces it; SHLVL=1 is the harness's, kept.
    let builder = Sshd::builder()
        .config_line("Match all")
        .config_line(format!("SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin SHLVL=1", bin.display()));
    let sshd = common::start(builder).await;
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let mut host = common::host_for(&sshd, &known_hosts);
    host.transfer = "scp".into();
    host.options.set("ssh_options", "connect_timeout", connect_timeout, OptionSource::Api).unwrap();
    let connection = common::connect(host).await.expect("connect");
    let files = connection.file_transfer("scp").await.expect("scp moves files");
    let base = dir.path().join("scratch");
    std::fs::create_dir(&base).unwrap();
    let base = base.to_str().expect("UTF-8 temporary directory").to_string();
    Remote { files, _connection: connection, base, log, sshd: Arc::new(Mutex::new(sshd)), dir }
}

/// Puts `data` announcing its size, as `put_file` does, so the bytes go
/// through `scp -t`.
async fn put_sized(
    files: &dyn FileTransfer,
    path: &str,
    data: &[u8],
    options: &PutOptions,
) -> tether_core::Result<u64> {
    let options = PutOptions { expected_size: Some(data.len() as u64), ..options.clone() };
    files.put(&mut &data[..], Path::new(path), &options).await
}

async fn get(files: &dyn FileTransfer, path: &str) -> tether_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    files.get(Path::new(path), &mut out).await?;
    Ok(out)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_travel_through_scp_exactly() {
    let remote = remote(Scp::Logged, 30.0).await;
    let local = remote.dir.path().join("source.bin");
    let data = random_bytes(32 << 20, 7);
    std::fs::write(&local, &data).unwrap();
    let path = format!("{}/copy.bin", remote.base);

    let sent = tether_core::put_file(&*remote.files, &local, Path::new(&path), &PutOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!(sent, data.len() as u64);
    assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), sha256_hex(&data), "remote content");
    let meta = remote.files.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((meta.kind, meta.size, meta.mode), (FileKind::File, data.len() as u64, 0o644));

    let back = remote.dir.path().join("back.bin");
    assert_eq!(tether_core::get_file(&*remote.files, Path::new(&path), &back, None).await.unwrap(), data.len() as u64);
    assert_eq!(sha256_hex(&std::fs::read(&back).unwrap()), sha256_hex(&data), "content after the round trip");

    let runs = remote.scp_runs();
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 2, "{runs}");
    assert!(lines[0].starts_with("-t ") && lines[0].contains("/scratch/.copy.bin.tether-"), "{runs}");
    assert_eq!(lines[1], format!("-f {path}"), "{runs}");
    assert_eq!(names_in(Path::new(&remote.base)), ["copy.bin"], "no temporary file is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_keeps_mtime_and_mode() {
    let remote = remote(Scp::Logged, 30.0).await;
    let local = remote.dir.path().join("dated");
    std::fs::write(&local, b"old news\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o751)).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    let file = std::fs::File::options().write(true).open(&local).unwrap();
    file.set_times(std::fs::FileTimes::new().set_modified(mtime)).unwrap();
    drop(file);

    let path = format!("{}/dated", remote.base);
    tether_core::put_file(&*remote.files, &local, Path::new(&path), &PutOptions::default(), true, None).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o751);
    assert_eq!(meta.modified().unwrap(), mtime, "mtime to the nanosecond");
    let stat = remote.files.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!((stat.mode, stat.mtime), (0o751, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))));
    assert!(remote.scp_runs().starts_with("-p -t "), "scp -p carries the times: {}", remote.scp_runs());

    // Without preserve, a replaced file keeps the destination's mode and gets a new mtime.
    tether_core::put_file(&*remote.files, &local, Path::new(&path), &PutOptions::default(), false, None).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o751);
    assert!(meta.modified().unwrap() > mtime + Duration::from_secs(3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_paths_are_not_interpreted() {
    let remote = remote(Scp::Logged, 30.0).await;
    let marker = format!("tether-pwned-{}", std::process::id());
    let names = [
        "with space".to_string(),
        "it's".to_string(),
        format!("$(touch {marker})"),
        format!("`touch {marker}`"),
        format!("x; touch {marker} &"),
        "-rf".to_string(),
        "new\nline".to_string(),
        "star*?[a]".to_string(),
        "ü \\ \"q\"".to_string(),
    ];
    for name in &names {
        let path = format!("{}/{name}", remote.base);
        put_sized(&*remote.files, &path, name.as_bytes(), &PutOptions::default()).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), name.as_bytes(), "{name:?} on the server");
        assert_eq!(get(&*remote.files, &path).await.unwrap(), name.as_bytes(), "{name:?} back");
    }
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(names_in(Path::new(&remote.base)), expected);
    let listed: Vec<String> = remote
        .files
        .list(Path::new(&remote.base))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .collect();
    assert_eq!(listed, expected);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for dir in [Path::new(&remote.base), Path::new(&home), Path::new("/")] {
        assert!(!dir.join(&marker).exists(), "a name was run as a command ({})", dir.display());
    }
    // A name with a newline spreads its run over two lines of the log.
    let runs = remote.scp_runs();
    let runs = runs.lines().filter(|l| l.starts_with("-t ") || l.starts_with("-f ")).count();
    assert_eq!(runs, 2 * names.len(), "every transfer used scp");
}

/// Kills the server from a progress callback once `after` bytes went by.
fn killer(sshd: Arc<Mutex<Sshd>>, after: u64, killed_at: Arc<Mutex<Option<Instant>>>) -> impl Fn(u64) + Send + Sync {
    let fired = AtomicBool::new(false);
    move |total| {
        if total >= after && !fired.swap(true, Ordering::SeqCst) {
            // Synchronous on purpose: the transfer cannot finish first.
            sshd.lock().unwrap().kill().expect("kill sshd");
            *killed_at.lock().unwrap() = Some(Instant::now());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_put() {
    let remote = remote(Scp::Logged, 30.0).await;
    let path = format!("{}/precious", remote.base);
    put_sized(&*remote.files, &path, b"old content", &PutOptions::default()).await.unwrap();
    let local = remote.dir.path().join("big.bin");
    std::fs::write(&local, random_bytes(64 << 20, 1)).unwrap();

    let killed_at = Arc::new(Mutex::new(None));
    let progress = killer(remote.sshd.clone(), 8 << 20, killed_at.clone());
    let options = PutOptions::default();
    let err = tether_core::put_file(&*remote.files, &local, Path::new(&path), &options, false, Some(&progress))
        .await
        .unwrap_err();
    let waited = killed_at.lock().unwrap().expect("the server was killed").elapsed();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(waited < Duration::from_secs(10), "failed {waited:?} after the kill");
    assert_eq!(std::fs::read(&path).unwrap(), b"old content", "the destination is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_get() {
    let remote = remote(Scp::Logged, 30.0).await;
    let path = format!("{}/big.bin", remote.base);
    std::fs::write(&path, random_bytes(64 << 20, 2)).unwrap();
    let out = remote.dir.path().join("downloads");
    std::fs::create_dir(&out).unwrap();

    let killed_at = Arc::new(Mutex::new(None));
    let progress = killer(remote.sshd.clone(), 8 << 20, killed_at.clone());
    let err = tether_core::get_file(&*remote.files, Path::new(&path), &out.join("big.bin"), Some(&progress))
        .await
        .unwrap_err();
    let waited = killed_at.lock().unwrap().expect("the server was killed").elapsed();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(waited < Duration::from_secs(10), "failed {waited:?} after the kill");
    assert_eq!(names_in(&out), Vec::<String>::new(), "no partial local file");
}

/// A remote `scp -f` that answers with crafted records, chosen by the
/// requested file's name; anything else is the real scp.
const HOSTILE_SOURCE: &str = r#"
eval "target=\${$#}"
[ "$1" = -f ] || exec "$REAL" "$@"
case "${target##*/}" in
  dotdot|slash|bigger|overflow|mode|twice|dir|long|short|fatal|silent) head -c 1 >/dev/null ;;
  *) exec "$REAL" "$@" ;;
esac
case "$target" in
  */dotdot) printf 'C0644 5 ../escaped\nhello\000' ;;
  */slash) printf 'C0644 5 a/escaped\nhello\000' ;;
  */bigger) printf 'C0644 6 bigger\nhello!\000' ;;
  */overflow) printf 'C0644 99999999999999999999999 overflow\nhello\000' ;;
  */mode) printf 'C9644 5 mode\nhello\000' ;;
  */twice) printf 'C0644 5 twice\nhello\000'; head -c 2 >/dev/null; printf 'C0644 5 escaped\nhello\000' ;;
  */dir) printf 'D0755 0 dir\nC0644 5 escaped\nhello\000E\n' ;;
  */long) head -c 100000 /dev/zero | tr '\000' a ;;
  */short) printf 'C0644 5 short\nhel'; exit 0 ;;
  */fatal) printf '\002scp: fatal trouble here\n' ;;
  */silent) sleep 60 ;;
esac
cat >/dev/null
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scp_source_is_refused() {
    let remote = remote(Scp::Script(HOSTILE_SOURCE), 3.0).await;
    let out = remote.dir.path().join("downloads");
    std::fs::create_dir(&out).unwrap();
    let cases = [
        ("dotdot", ErrorKind::Protocol),
        ("slash", ErrorKind::Protocol),
        ("bigger", ErrorKind::Protocol),
        ("overflow", ErrorKind::Protocol),
        ("mode", ErrorKind::Protocol),
        ("twice", ErrorKind::Protocol),
        ("dir", ErrorKind::Protocol),
        ("long", ErrorKind::Protocol),
        ("short", ErrorKind::Protocol),
        ("fatal", ErrorKind::CommandFailed),
        ("silent", ErrorKind::Timeout),
    ];
    for (name, kind) in cases {
        let path = format!("{}/{name}", remote.base);
        // stat says 5 bytes; the records say otherwise.
        std::fs::write(&path, b"hello").unwrap();
        let started = Instant::now();
        let err = tether_core::get_file(&*remote.files, Path::new(&path), &out.join(name), None).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{name}: took {:?}", started.elapsed());
        if name == "fatal" {
            assert!(err.to_string().contains("scp: fatal trouble here"), "the server's message is kept: {err}");
        }
        assert_eq!(names_in(&out), Vec::<String>::new(), "{name}: nothing is written locally");
    }
    for dir in [remote.dir.path(), Path::new(&remote.base), &out] {
        assert!(!dir.join("escaped").exists(), "a hostile name escaped into {}", dir.display());
    }

    // The real scp still serves the same host.
    let path = format!("{}/honest", remote.base);
    std::fs::write(&path, b"fine").unwrap();
    assert_eq!(get(&*remote.files, &path).await.unwrap(), b"fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_scp_failures_are_typed() {
    // A sink that cannot create its file, and a host without scp.
    let script = r#"
eval "target=\${$#}"
case "$target" in
  */denied/*) printf '\000'; head -c 1 >/dev/null; printf '\001scp: %s: Permission denied\n' "$target"; exit 1 ;;
  */missing/*) echo "sh: 1: scp: not found" >&2; exit 127 ;;
esac
exec "$REAL" "$@"
"#;
    let remote = remote(Scp::Script(script), 30.0).await;
    for (dir, kind) in [("denied", ErrorKind::PermissionDenied), ("missing", ErrorKind::Unsupported)] {
        std::fs::create_dir(format!("{}/{dir}", remote.base)).unwrap();
        let path = format!("{}/{dir}/file", remote.base);
        let err = put_sized(&*remote.files, &path, b"data", &PutOptions::default()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(names_in(Path::new(&format!("{}/{dir}", remote.base))), Vec::<String>::new(), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_put_cleans_up() {
    let remote = remote(Scp::Logged, 30.0).await;
    let path = format!("{}/never", remote.base);
    let mut source = tether_core::conformance::StalledSource::default();
    let options = PutOptions { expected_size: Some(1 << 20), ..PutOptions::default() };
    let put = remote.files.put(&mut source, Path::new(&path), &options);
    assert!(tokio::time::timeout(Duration::from_millis(500), put).await.is_err(), "the put cannot finish");
    assert!(remote.scp_runs().starts_with("-t "), "the data was going through scp");
    for _ in 0..100 {
        if names_in(Path::new(&remote.base)).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the temporary file of an abandoned put is still there: {:?}", names_in(Path::new(&remote.base)));
}
