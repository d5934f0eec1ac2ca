//! The `ftp` transport against a server that misbehaves on cue (the
//! in-process [`HostileFtp`]): a greeting that never comes, a passive reply
//! naming another host, a transfer that never starts, a `421` in the middle
//! of a transfer, a reply that never ends, replies that drip. Each must end
//! in a typed error within the limit that governs it (never a hang), with
//! the destination as it was and no temporary file left behind; and a
//! session that timed out must never answer the next command.
//!
//! Every test is bounded from outside ([`bounded`]), so a hang fails
//! instead of blocking; every duration is measured and held to the limit
//! that should have ended it, plus [`MARGIN`].

mod support;

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::hostile::{HostileFtp, Misbehaviour};
use tether_core::conformance::StalledSource;
use tether_core::{
    Credential, Error, ErrorKind, FileTransfer, Host, HostConfig, OptionSource, PutOptions, StatOptions, get_file,
};

// Linked, so the registry knows `ftp`.
use tether_transport_ftp as _;

/// How long any one test may run before it counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

/// What an error may take beyond the limit that should have ended it:
/// scheduling on a busy two-core machine, and the reconnect and `DELE` of a
/// failed put's clean-up, all on loopback.
const MARGIN: Duration = Duration::from_millis(750);

/// Runs `test`, failing it if it takes longer than [`LIMIT`].
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, test).await {
        Ok(value) => value,
        Err(_) => panic!("the test did not finish within {LIMIT:?}"),
    }
}

/// Runs `work` and measures it.
async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let value = work.await;
    (value, started.elapsed())
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// A host for `server`, logging in as `tester`, with these `ftp_options`.
fn host_for(server: &HostileFtp, options: &[(&str, serde_json::Value)]) -> Host {
    let mut config = HostConfig::new("ftpbox", "ftp", "ftp");
    config.address = Some(server.addr().ip().to_string());
    config.port = Some(server.port());
    config.credentials.push(Credential { login: "tester".into(), password: "s3cret".to_string().into() });
    for (key, value) in options {
        config.options.set("ftp_options", key, value, OptionSource::Default).unwrap();
    }
    Host::new(config).unwrap()
}

/// The error of `result`, which must be of `kind`.
fn failure<T: std::fmt::Debug>(result: tether_core::Result<T>, kind: ErrorKind, what: &str) -> Error {
    match result {
        Ok(value) => panic!("{what} succeeded ({value:?}); expected {kind}"),
        Err(err) => {
            eprintln!("{what}: {err}");
            assert_eq!(err.kind(), kind, "{what}: {err}");
            err
        }
    }
}

/// Asserts that `took` lies in `[limit, limit + MARGIN]`: the error came
/// from that limit, not an earlier one, and not much later.
fn assert_ended_by(took: Duration, limit: Duration, what: &str) {
    eprintln!("{what}: {took:?} (limit {limit:?})");
    assert!(took >= limit, "{what} ended after {took:?}, before its limit of {limit:?}");
    assert!(took <= limit + MARGIN, "{what} ended after {took:?}, beyond its limit of {limit:?} + {MARGIN:?}");
}

/// Asserts that `took` is under `bound`: what needs no waiting did not wait.
fn assert_quick(took: Duration, bound: Duration, what: &str) {
    eprintln!("{what}: {took:?} (bound {bound:?})");
    assert!(took < bound, "{what} took {took:?}, more than {bound:?}");
}

/// Bytes that show where in a file a piece came from.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Whether `path` is one of Tether's temporary upload files
/// (`.name.tether-XXXX.tmp`).
fn is_temporary(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|name| name.contains(".tether-") && name.ends_with(".tmp"))
}

/// Waits (up to 5 s) until the server's store holds no temporary upload
/// file, and returns its paths; fails the test if one stays.
async fn no_temporary_left(server: &HostileFtp) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let paths = server.paths();
        if !paths.iter().any(|path| is_temporary(path)) {
            return paths;
        }
        assert!(Instant::now() < deadline, "a temporary upload file stayed on the server: {paths:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The names in a local directory, sorted.
fn local_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// A local directory holding `dest.bin` with old content.
fn local_destination() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest.bin");
    std::fs::write(&dest, b"old local content").unwrap();
    (dir, dest)
}

/// Asserts that the local destination kept its old content and that no
/// temporary sibling is left next to it.
fn assert_local_untouched(dir: &Path, dest: &Path) {
    assert_eq!(std::fs::read(dest).unwrap(), b"old local content", "the local destination changed");
    assert_eq!(local_names(dir), ["dest.bin"], "something was left next to the local destination");
}

/// How many control connections logged in.
fn logins(commands: &[String]) -> usize {
    commands.iter().filter(|command| command.starts_with("USER ")).count()
}

async fn get_bytes(files: &dyn FileTransfer, path: &str) -> tether_core::Result<Vec<u8>> {
    let mut sink = Vec::new();
    files.get(Path::new(path), &mut sink).await.map(|_| sink)
}

async fn put_bytes(
    files: &dyn FileTransfer,
    path: &str,
    data: &[u8],
    options: &PutOptions,
) -> tether_core::Result<u64> {
    files.put(&mut &data[..], Path::new(path), options).await
}

/// A put that goes straight to `STOR` (an explicit mode skips the stat of
/// the destination, which reads a listing).
fn with_mode() -> PutOptions {
    PutOptions { mode: Some(0o644), ..PutOptions::default() }
}

// 1. A greeting that never comes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_greeting_times_out_at_connection_timeout() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::SilentGreeting).await;
        // socket_timeout longer, so only connection_timeout can end it.
        let host = host_for(&server, &[("connection_timeout", json!(1.5)), ("socket_timeout", json!(20))]);
        let (result, took) = timed(host.files()).await;
        let err = failure(result, ErrorKind::Timeout, "a connect without a greeting");
        assert_ended_by(took, secs(1.5), "the connect");
        assert!(err.to_string().contains("1.5 s"), "the error names the limit: {err}");
        assert!(server.commands().is_empty(), "the client spoke before the greeting: {:?}", server.commands());
    })
    .await;
}

// 2. A passive reply naming another host.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_address_elsewhere_is_never_dialled_and_data_goes_to_the_control_peer() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::PasvElsewhere).await;
        let remote = pattern(100_000);
        server.put_file("/dir/remote.bin", remote.clone());
        server.put_file("/dir/dest.bin", b"old".to_vec());
        let host = host_for(&server, &[("socket_timeout", json!(5))]);
        let files = host.files().await.unwrap();

        // Were 198.19.77.1 dialled, these would fail: the data listener
        // listens on 127.0.0.1 only.
        assert_eq!(get_bytes(&*files, "/dir/remote.bin").await.unwrap(), remote);
        let upload = pattern(70_000);
        assert_eq!(put_bytes(&*files, "/dir/dest.bin", &upload, &PutOptions::default()).await.unwrap(), 70_000);
        assert_eq!(server.file("/dir/dest.bin").unwrap(), upload);
        assert_eq!(server.file("/dir/remote.bin").unwrap(), remote);
        assert_eq!(no_temporary_left(&server).await, ["/dir/dest.bin", "/dir/remote.bin"]);

        // EPSV was refused once, then PASV opened every data connection.
        let commands = server.commands();
        let epsv: Vec<usize> = (0..commands.len()).filter(|&i| commands[i] == "EPSV").collect();
        assert_eq!(epsv.len(), 1, "EPSV is tried once per session: {commands:?}");
        assert_eq!(commands[epsv[0] + 1], "PASV", "PASV follows the refused EPSV: {commands:?}");
        let transfers: Vec<usize> = (0..commands.len())
            .filter(|&i| ["RETR", "STOR", "APPE", "LIST"].iter().any(|verb| commands[i].starts_with(verb)))
            .collect();
        assert!(transfers.len() >= 2, "{commands:?}");
        for &i in &transfers {
            assert_eq!(commands[i - 1], "PASV", "{} came without PASV: {commands:?}", commands[i]);
        }
        assert_eq!(server.data_connections(), transfers.len(), "every data connection reached 127.0.0.1");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_epsv_without_pasv_allowed_is_unsupported_at_once() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::PasvElsewhere).await;
        server.put_file("/f", pattern(10_000));
        server.put_file("/dest.bin", b"old".to_vec());
        let host = host_for(&server, &[("socket_timeout", json!(5)), ("passive_commands", json!(["epsv"]))]);
        let files = host.files().await.unwrap();

        let (result, took) = timed(get_bytes(&*files, "/f")).await;
        failure(result, ErrorKind::Unsupported, "a get with EPSV refused");
        assert_quick(took, Duration::from_secs(1), "the get (EPSV refused)");

        let (result, took) = timed(put_bytes(&*files, "/dest.bin", b"new", &with_mode())).await;
        failure(result, ErrorKind::Unsupported, "a put with EPSV refused");
        assert_quick(took, Duration::from_secs(1), "the put (EPSV refused)");
        assert_eq!(server.file("/dest.bin").unwrap(), b"old");
        assert_eq!(no_temporary_left(&server).await, ["/dest.bin", "/f"]);

        let commands = server.commands();
        assert!(commands.iter().any(|command| command == "EPSV"), "{commands:?}");
        assert!(!commands.iter().any(|command| command == "PASV"), "PASV was not allowed: {commands:?}");
        assert_eq!(server.data_connections(), 0);
    })
    .await;
}

// 3. A data connection that never carries anything, and no reply.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_connection_times_a_get_out_at_socket_timeout_and_keeps_the_destination() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::NoDataConnection).await;
        server.put_file("/f", pattern(10_000));
        let host = host_for(&server, &[("socket_timeout", json!(1.5)), ("path_timeout", json!(20))]);
        let files = host.files().await.unwrap();

        // get_file stats first, which reads the parent's listing: LIST hangs.
        let (dir, dest) = local_destination();
        let (result, took) = timed(get_file(&*files, Path::new("/f"), &dest, None)).await;
        failure(result, ErrorKind::Timeout, "get_file from a server that never transfers");
        assert_ended_by(took, secs(1.5), "get_file");
        assert_local_untouched(dir.path(), &dest);

        // A get straight away: SIZE and MDTM answer, RETR hangs.
        let mut sink = Vec::new();
        let (result, took) = timed(files.get(Path::new("/f"), &mut sink)).await;
        failure(result, ErrorKind::Timeout, "a get from a server that never transfers");
        assert_ended_by(took, secs(1.5), "the get");
        assert!(sink.is_empty(), "{} bytes arrived from nowhere", sink.len());
        assert!(server.commands().iter().any(|command| command == "RETR /f"), "{:?}", server.commands());
        assert_eq!(server.paths(), ["/f"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_connection_times_a_put_out_at_socket_timeout_and_keeps_the_destination() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::NoDataConnection).await;
        server.put_file("/dir/dest.bin", b"old".to_vec());
        let host = host_for(&server, &[("socket_timeout", json!(1.5)), ("path_timeout", json!(20))]);
        let files = host.files().await.unwrap();

        // Without a mode, the put stats the destination first (LIST hangs).
        let (result, took) = timed(put_bytes(&*files, "/dir/dest.bin", &pattern(50_000), &PutOptions::default())).await;
        failure(result, ErrorKind::Timeout, "a put that stats first");
        assert_ended_by(took, secs(1.5), "the put (stat)");
        assert_eq!(no_temporary_left(&server).await, ["/dir/dest.bin"]);

        // With a mode, straight to STOR, which hangs.
        let (result, took) = timed(put_bytes(&*files, "/dir/dest.bin", &pattern(50_000), &with_mode())).await;
        failure(result, ErrorKind::Timeout, "a put whose STOR hangs");
        assert_ended_by(took, secs(1.5), "the put (STOR)");
        let commands = server.commands();
        assert!(
            commands.iter().any(|command| command.starts_with("STOR ") && is_temporary(command)),
            "the put never reached STOR: {commands:?}"
        );
        assert_eq!(no_temporary_left(&server).await, ["/dir/dest.bin"]);
        assert_eq!(server.file("/dir/dest.bin").unwrap(), b"old");
        assert!(!commands.iter().any(|command| command.starts_with("RNFR")), "{commands:?}");
    })
    .await;
}

// 4. A 421 in the middle of a transfer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_mid_download_without_resumes_is_connection_lost_and_keeps_the_destination() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::Reply421MidTransfer { after: 1000 }).await;
        server.put_file("/big.bin", pattern(100_000));
        let host = host_for(&server, &[("socket_timeout", json!(10)), ("extra", json!({ "resume_attempts": 0 }))]);
        let files = host.files().await.unwrap();

        let (dir, dest) = local_destination();
        let (result, took) = timed(get_file(&*files, Path::new("/big.bin"), &dest, None)).await;
        failure(result, ErrorKind::ConnectionLost, "a get cut by 421");
        assert_quick(took, Duration::from_secs(1), "the get cut by 421");
        assert_local_untouched(dir.path(), &dest);
        let commands = server.commands();
        assert!(!commands.iter().any(|command| command.starts_with("REST")), "resumed: {commands:?}");
        assert_eq!(logins(&commands), 1, "{commands:?}");
    })
    .await;
}

/// Asserts that every `REST` was preceded, on its own control connection
/// (after the last `USER`), by `SIZE` and `MDTM` of `path`: the offset was
/// verified on the file as it is now.
fn assert_resumes_verified(commands: &[String], path: &str, offsets: &[u64]) {
    let rests: Vec<usize> = (0..commands.len()).filter(|&i| commands[i].starts_with("REST ")).collect();
    let named: Vec<String> = rests.iter().map(|&i| commands[i].clone()).collect();
    let expected: Vec<String> = offsets.iter().map(|offset| format!("REST {offset}")).collect();
    assert_eq!(named, expected, "{commands:?}");
    for &rest in &rests {
        let login = (0..rest).rev().find(|&i| commands[i].starts_with("USER ")).unwrap();
        let session = &commands[login..rest];
        for verb in ["SIZE", "MDTM"] {
            assert!(
                session.contains(&format!("{verb} {path}")),
                "{} without {verb} on its session first: {session:?}",
                commands[rest]
            );
        }
        assert!(commands[rest + 1..].iter().take(2).any(|c| c == &format!("RETR {path}")), "{commands:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_mid_download_resumes_from_verified_offsets() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::Reply421MidTransfer { after: 1000 }).await;
        let remote = pattern(3500);
        server.put_file("/f.bin", remote.clone());
        let host = host_for(&server, &[("socket_timeout", json!(10))]);
        let files = host.files().await.unwrap();

        let (dir, dest) = local_destination();
        let (result, took) = timed(get_file(&*files, Path::new("/f.bin"), &dest, None)).await;
        assert_eq!(result.unwrap(), 3500);
        assert_quick(took, Duration::from_secs(3), "the resumed get");
        assert_eq!(std::fs::read(&dest).unwrap(), remote);
        assert_eq!(local_names(dir.path()), ["dest.bin"]);

        let commands = server.commands();
        assert_resumes_verified(&commands, "/f.bin", &[1000, 2000, 3000]);
        // The first session, and one fresh session per resume.
        assert_eq!(logins(&commands), 4, "{commands:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_mid_download_fails_after_its_resumes_and_keeps_the_destination() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::Reply421MidTransfer { after: 1000 }).await;
        server.put_file("/f.bin", pattern(10_000));
        let host = host_for(&server, &[("socket_timeout", json!(10)), ("extra", json!({ "resume_attempts": 3 }))]);
        let files = host.files().await.unwrap();

        let (dir, dest) = local_destination();
        let (result, took) = timed(get_file(&*files, Path::new("/f.bin"), &dest, None)).await;
        failure(result, ErrorKind::ConnectionLost, "a get cut by 421 four times");
        assert_quick(took, Duration::from_secs(3), "the get resumed 3 times");
        assert_local_untouched(dir.path(), &dest);
        let commands = server.commands();
        assert_resumes_verified(&commands, "/f.bin", &[1000, 2000, 3000]);
        assert_eq!(logins(&commands), 4, "{commands:?}");
    })
    .await;
}

/// A file that changed while the download was cut is not resumed: the
/// bytes already written belong to another version of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changed_before_the_resume_is_corrupted_not_spliced() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::Reply421ThenGrow { after: 1000 }).await;
        server.put_file("/growing.log", pattern(3500));
        let host = host_for(&server, &[("socket_timeout", json!(10))]);
        let files = host.files().await.unwrap();

        let (dir, dest) = local_destination();
        let (result, took) = timed(get_file(&*files, Path::new("/growing.log"), &dest, None)).await;
        let err = failure(result, ErrorKind::Corrupted, "a get whose file grew before the resume");
        assert!(err.to_string().contains("changed"), "{err}");
        assert_quick(took, Duration::from_secs(3), "the refused resume");
        assert_local_untouched(dir.path(), &dest);
        let commands = server.commands();
        assert!(!commands.iter().any(|command| command.starts_with("REST")), "resumed a changed file: {commands:?}");
        assert_eq!(logins(&commands), 2, "the resume's fresh session saw the change: {commands:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_mid_upload_fails_keeps_the_destination_and_removes_the_temporary_file() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::Reply421MidTransfer { after: 1000 }).await;
        server.put_file("/dir/dest.bin", b"old".to_vec());
        let host = host_for(&server, &[("socket_timeout", json!(10))]);
        let files = host.files().await.unwrap();

        let (result, took) =
            timed(put_bytes(&*files, "/dir/dest.bin", &pattern(100_000), &PutOptions::default())).await;
        // The 421 is read when the data connection closes (or the write
        // meets the closed connection first): a lost connection either way.
        failure(result, ErrorKind::ConnectionLost, "a put cut by 421");
        assert_quick(took, Duration::from_secs(3), "the put cut by 421");
        assert_eq!(no_temporary_left(&server).await, ["/dir/dest.bin"]);
        assert_eq!(server.file("/dir/dest.bin").unwrap(), b"old");

        // The temporary file was removed from a fresh session, with DELE.
        let commands = server.commands();
        let stor = commands.iter().position(|c| c.starts_with("STOR ") && is_temporary(c)).expect("a STOR");
        let temp = commands[stor].strip_prefix("STOR ").unwrap();
        let dele = commands.iter().position(|c| c == &format!("DELE {temp}")).expect("a DELE of the temporary file");
        assert!(commands[stor..dele].iter().any(|c| c.starts_with("USER ")), "DELE on the dead session: {commands:?}");
        assert!(!commands.iter().any(|c| c.starts_with("RNFR")), "{commands:?}");
    })
    .await;
}

// 5. A reply that never ends.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_multiline_reply_is_a_protocol_error_long_before_any_limit() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::EndlessMultiline).await;
        server.put_file("/f", b"x".to_vec());
        let limits = [("connection_timeout", json!(10)), ("socket_timeout", json!(10)), ("path_timeout", json!(10))];
        let host = host_for(&server, &limits);
        // The first command after the login (binary mode, while connecting)
        // gets the endless reply.
        let (result, took) = timed(async {
            let files = host.files().await?;
            files.stat(Path::new("/f"), StatOptions::default()).await
        })
        .await;
        let err = failure(result, ErrorKind::Protocol, "a stat answered without end");
        assert_quick(took, Duration::from_secs(3), "the endless reply");
        assert!(err.to_string().contains("larger than"), "the error tells why: {err}");
        assert!(!server.commands().iter().any(|c| c == "QUIT"), "{:?}", server.commands());
    })
    .await;
}

// 6. Replies that drip.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_listing_is_cut_at_path_timeout() {
    bounded(async {
        // 10 ms a byte: each reply comes within socket_timeout, and so does
        // each byte of the listing, which as a whole would take 20 s.
        let server = HostileFtp::start(Misbehaviour::SlowDrip { every: Duration::from_millis(10) }).await;
        for i in 0..30 {
            server.put_file(&format!("/dir/file-{i:02}"), vec![0; i]);
        }
        let limits = [("connection_timeout", json!(10)), ("socket_timeout", json!(1.0)), ("path_timeout", json!(2.0))];
        let host = host_for(&server, &limits);
        let files = host.files().await.unwrap();

        let (result, took) = timed(files.list(Path::new("/dir"))).await;
        let err = failure(result, ErrorKind::Timeout, "a dripping listing");
        assert_ended_by(took, secs(2.0), "the listing");
        assert!(err.to_string().contains("path_timeout"), "the error names the limit: {err}");

        // A stat reads the same listing: the same limit, reconnect included.
        let (result, took) = timed(files.stat(Path::new("/dir/file-29"), StatOptions::default())).await;
        failure(result, ErrorKind::Timeout, "a stat through a dripping listing");
        assert_ended_by(took, secs(2.0), "the stat");
    })
    .await;
}

/// Limits against a server dripping 200 ms a byte: every reply it drips
/// (the shortest, `213 10000`, is 11 bytes) takes 2 s or more.
const DRIP_LIMITS: [(&str, f64); 3] = [("connection_timeout", 10.0), ("socket_timeout", 1.0), ("path_timeout", 2.0)];

fn drip_limits() -> Vec<(&'static str, serde_json::Value)> {
    DRIP_LIMITS.iter().map(|(key, value)| (*key, json!(value))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_reply_times_a_list_out_at_socket_timeout() {
    bounded(async {
        // The connect runs at full speed; from `CWD /dir` on, every byte of every
        // reply comes 200 ms after the last: `250 Directory changed.` would
        // take 4.8 s. Bytes keep arriving all along: the limit is on the
        // whole reply, not on a silence.
        let every = Duration::from_millis(200);
        let server = HostileFtp::start(Misbehaviour::SlowDripFrom { every, command: "CWD /dir" }).await;
        server.put_file("/dir/f.bin", pattern(10_000));
        let host = host_for(&server, &drip_limits());
        let files = host.files().await.unwrap();
        let (result, took) = timed(files.list(Path::new("/dir"))).await;
        failure(result, ErrorKind::Timeout, "a list on a dripping server");
        // socket_timeout ends it, within path_timeout.
        assert_ended_by(took, secs(1.0), "the list");
        assert!(took <= secs(2.0) + MARGIN);
        assert!(server.commands().iter().any(|c| c == "CWD /dir"), "{:?}", server.commands());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_reply_times_a_get_out_at_socket_timeout() {
    bounded(async {
        // From SIZE on, replies drip: `213 10000` takes 2.2 s, so the get
        // ends after socket_timeout, with nothing written.
        let every = Duration::from_millis(200);
        let server = HostileFtp::start(Misbehaviour::SlowDripFrom { every, command: "SIZE" }).await;
        server.put_file("/f.bin", pattern(10_000));
        let host = host_for(&server, &drip_limits());
        let files = host.files().await.unwrap();
        let (dir, dest) = local_destination();
        let (result, took) = timed(async {
            let mut sink = Vec::new();
            files.get(Path::new("/f.bin"), &mut sink).await.map(|_| sink)
        })
        .await;
        failure(result, ErrorKind::Timeout, "a get on a dripping server");
        assert_ended_by(took, secs(1.0), "the get");
        assert_eq!(server.commands().last().map(String::as_str), Some("SIZE /f.bin"));
        // Through get_file, on a new session: its stat (CWD, LIST, MDTM)
        // runs at full speed, the temporary file is opened, SIZE drips.
        let (result, took) = timed(get_file(&*files, Path::new("/f.bin"), &dest, None)).await;
        failure(result, ErrorKind::Timeout, "get_file on a dripping server");
        assert_ended_by(took, secs(1.0), "get_file");
        assert_local_untouched(dir.path(), &dest);
        assert_eq!(server.paths(), ["/f.bin"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_reply_during_the_connect_times_out_at_socket_timeout() {
    bounded(async {
        // The greeting and the login come at full speed; the reply to TYPE I,
        // the first command after them, drips (15 bytes, 3 s), and so do
        // those to FEAT, OPTS and PWD. "Every control reply: socket_timeout"
        // holds for them as for any other, so the list (its connect
        // included) ends after socket_timeout, not connection_timeout.
        let server = HostileFtp::start(Misbehaviour::SlowDrip { every: Duration::from_millis(200) }).await;
        let host = host_for(&server, &drip_limits());
        let (result, took) = timed(async {
            let files = host.files().await?;
            files.list(Path::new("/")).await
        })
        .await;
        failure(result, ErrorKind::Timeout, "a list on a dripping server");
        assert_ended_by(took, secs(1.0), "the connect and list");
    })
    .await;
}

// 7. A session that timed out is never used again.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_timed_out_is_dropped_and_the_next_use_reconnects() {
    bounded(async {
        // A transfer that never answers: the hung session would swallow the
        // next command.
        let server = HostileFtp::start(Misbehaviour::NoDataConnection).await;
        server.put_file("/f", pattern(100));
        let host = host_for(&server, &[("socket_timeout", json!(1.0))]);
        let files = host.files().await.unwrap();
        failure(get_bytes(&*files, "/f").await, ErrorKind::Timeout, "a get that hangs");
        assert_eq!(logins(&server.commands()), 1);
        let (result, took) = timed(files.mkdir(Path::new("/made"), false)).await;
        result.expect("mkdir after a timeout");
        assert_quick(took, Duration::from_secs(1), "mkdir after the timeout");
        let commands = server.commands();
        assert_eq!(logins(&commands), 2, "{commands:?}");
        let second_login = commands.iter().rposition(|c| c.starts_with("USER ")).unwrap();
        let mkd = commands.iter().position(|c| c == "MKD /made").unwrap();
        assert!(mkd > second_login, "MKD went to the dead session: {commands:?}");

        // A reply that is late, not missing: the listing goes on dripping
        // on the old connection after path_timeout cut it short.
        let server = HostileFtp::start(Misbehaviour::SlowDrip { every: Duration::from_millis(10) }).await;
        for i in 0..30 {
            server.put_file(&format!("/dir/file-{i:02}"), vec![0; i]);
        }
        let limits = [("connection_timeout", json!(10)), ("socket_timeout", json!(1.0)), ("path_timeout", json!(2.0))];
        let host = host_for(&server, &limits);
        let files = host.files().await.unwrap();
        failure(files.list(Path::new("/dir")).await, ErrorKind::Timeout, "a dripping listing");
        assert_eq!(logins(&server.commands()), 1);
        files.mkdir(Path::new("/dir/made"), false).await.expect("mkdir after a timeout");
        let commands = server.commands();
        assert_eq!(logins(&commands), 2, "{commands:?}");
        let second_login = commands.iter().rposition(|c| c.starts_with("USER ")).unwrap();
        let mkd = commands.iter().position(|c| c == "MKD /dir/made").unwrap();
        assert!(mkd > second_login, "MKD went to the timed-out session: {commands:?}");
    })
    .await;
}

// 8. A cancelled transfer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_put_closes_its_data_connection_without_abor_and_removes_its_temporary_file() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::None).await;
        server.put_file("/dir/dest.bin", b"old".to_vec());
        server.put_file("/dir/other.bin", pattern(20_000));
        let host = host_for(&server, &[("socket_timeout", json!(10))]);
        let files: Arc<dyn FileTransfer> = host.files().await.unwrap();

        let mut source = StalledSource::default();
        let options = PutOptions::default();
        let put = files.put(&mut source, Path::new("/dir/dest.bin"), &options);
        assert!(tokio::time::timeout(Duration::from_millis(300), put).await.is_err(), "a stalled put finished");
        let commands = server.commands();
        assert!(
            commands.iter().any(|c| c.starts_with("STOR ") && is_temporary(c)),
            "cancelled before STOR: {commands:?}"
        );

        assert_eq!(no_temporary_left(&server).await, ["/dir/dest.bin", "/dir/other.bin"]);
        assert_eq!(server.file("/dir/dest.bin").unwrap(), b"old");
        assert_eq!(get_bytes(&*files, "/dir/other.bin").await.unwrap(), pattern(20_000));
        let commands = server.commands();
        // The temporary file went with DELE, from a new session: the
        // cancelled one (its data connection half-way) was closed.
        let stor = commands.iter().position(|c| c.starts_with("STOR ") && is_temporary(c)).unwrap();
        let temp = commands[stor].strip_prefix("STOR ").unwrap();
        let dele = commands.iter().position(|c| c == &format!("DELE {temp}")).expect("a DELE of the temporary file");
        assert!(
            commands[stor..dele].iter().any(|c| c.starts_with("USER ")),
            "DELE on the cancelled session: {commands:?}"
        );
        assert!(!commands.iter().any(|c| c.eq_ignore_ascii_case("ABOR")), "ABOR was sent: {commands:?}");
        assert!(!commands.iter().any(|c| c.starts_with("RNFR")), "{commands:?}");
    })
    .await;
}

// 9. A listing longer than allowed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_beyond_max_listing_bytes_is_a_protocol_error() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::None).await;
        for i in 0..50 {
            server.put_file(&format!("/many/file-{i:02}"), vec![0; 10]);
        }
        server.put_file("/few/one", vec![0; 10]);
        let host = host_for(&server, &[("socket_timeout", json!(10)), ("extra", json!({ "max_listing_bytes": 200 }))]);
        let files = host.files().await.unwrap();

        let (result, took) = timed(files.list(Path::new("/many"))).await;
        let err = failure(result, ErrorKind::Protocol, "a listing of 50 entries");
        assert!(err.to_string().contains("max_listing_bytes"), "the error names the option: {err}");
        assert_quick(took, Duration::from_secs(1), "the capped list");

        // The host goes on: a listing within the cap is read in full.
        let names: Vec<OsString> = files.list(Path::new("/few")).await.unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["one"]);
    })
    .await;
}
