//! `ftp` against a real vsftpd, beyond the conformance suite: a PASV reply
//! that names another address, speed limits, Latin-1 names, FTPS
//! certificates, a server that hangs, logins that fail, and the password
//! kept out of errors and `Debug` output.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{host_for, set, start};
use serde_json::json;
use tether_core::conformance::random_bytes;
use tether_core::{ErrorKind, FileTransfer, Host, PutOptions, StatOptions};
use tether_test_servers::Vsftpd;

/// Outer bound on every step, so a hang fails the test instead of blocking it.
const LIMIT: Duration = Duration::from_secs(60);

async fn files_of(host: &Host) -> Arc<dyn FileTransfer> {
    tokio::time::timeout(LIMIT, host.files()).await.expect("connect within the limit").unwrap()
}

async fn put(files: &dyn FileTransfer, path: &Path, data: &[u8]) -> tether_core::Result<u64> {
    let mut source = data;
    tokio::time::timeout(LIMIT, files.put(&mut source, path, &PutOptions::default()))
        .await
        .expect("put within the limit")
}

async fn get(files: &dyn FileTransfer, path: &Path) -> tether_core::Result<Vec<u8>> {
    let mut sink = Vec::new();
    tokio::time::timeout(LIMIT, files.get(path, &mut sink)).await.expect("get within the limit")?;
    Ok(sink)
}

/// The address vsftpd names in its PASV replies: in 198.18.0.0/15, which
/// `scripts/netns up` routes to `unreachable` in this namespace, so a
/// client that dialled it would fail at once, and no packet leaves.
const ELSEWHERE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 19, 7, 7);

#[tokio::test]
async fn a_pasv_reply_naming_another_address_is_ignored_and_the_control_peer_used() {
    // The precondition: the named address is unreachable from here, so
    // dialling it would fail at once (and send nothing off the machine).
    let dialled = std::net::TcpStream::connect_timeout(&(ELSEWHERE, 21).into(), Duration::from_secs(2));
    assert!(
        matches!(&dialled, Err(e) if e.kind() == std::io::ErrorKind::HostUnreachable),
        "{ELSEWHERE} must be unreachable from this namespace (run `scripts/netns up`): {dialled:?}"
    );
    let vsftpd = start(Vsftpd::builder().pasv_address(ELSEWHERE)).await;
    // The server really names that address.
    let reply = pasv_reply(&vsftpd);
    assert!(reply.contains("198,19,7,7"), "{reply}");

    let mut config = host_for(&vsftpd);
    set(&mut config, "passive_commands", json!(["pasv"]));
    let host = Host::new(config).unwrap();
    let files = files_of(&host).await;
    let path = vsftpd.scratch_dir().join("through the control peer");
    let data = random_bytes(3 << 20, 12);
    assert_eq!(put(&*files, &path, &data).await.unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(get(&*files, &path).await.unwrap(), data);
    let log = vsftpd.log();
    assert!(log.contains("\"PASV\"") && !log.contains("\"EPSV\""), "PASV was used, not EPSV:\n{log}");
}

/// Logs in by hand and returns the server's answer to `PASV`.
fn pasv_reply(vsftpd: &Vsftpd) -> String {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect((vsftpd.ip(), vsftpd.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    let mut exchange = |command: Option<String>| {
        if let Some(command) = command {
            writer.write_all(command.as_bytes()).unwrap();
        }
        line.clear();
        reader.read_line(&mut line).unwrap();
        line.clone()
    };
    assert!(exchange(None).starts_with("220"));
    assert!(exchange(Some(format!("USER {}\r\n", vsftpd.user()))).starts_with("331"));
    assert!(exchange(Some(format!("PASS {}\r\n", vsftpd.password()))).starts_with("230"));
    exchange(Some("PASV\r\n".into()))
}

#[tokio::test]
async fn speed_limits_pace_puts_and_gets() {
    let vsftpd = start(Vsftpd::builder()).await;
    let mut config = host_for(&vsftpd);
    let limit = 256 * 1024;
    set(&mut config, "write_speed_limit", limit);
    set(&mut config, "read_speed_limit", limit);
    let host = Host::new(config).unwrap();
    let files = files_of(&host).await;
    let path = vsftpd.scratch_dir().join("paced");
    let data = random_bytes(512 * 1024, 5);
    let begun = Instant::now();
    put(&*files, &path, &data).await.unwrap();
    let put_took = begun.elapsed();
    let begun = Instant::now();
    assert_eq!(get(&*files, &path).await.unwrap(), data);
    let get_took = begun.elapsed();
    // 512 KiB at 256 KiB/s: two seconds at least (the last tenth of a
    // second's chunk may go out just before its time), and not much more.
    for (what, took) in [("put", put_took), ("get", get_took)] {
        assert!(took >= Duration::from_millis(1850), "{what} took {took:?}, faster than the limit allows");
        assert!(took < Duration::from_secs(8), "{what} took {took:?}");
    }

    // Without limits the same transfer is far faster.
    let unlimited = Host::new(host_for(&vsftpd)).unwrap();
    let files = files_of(&unlimited).await;
    let begun = Instant::now();
    assert_eq!(get(&*files, &path).await.unwrap(), data);
    assert!(begun.elapsed() < Duration::from_millis(1500), "an unlimited get took {:?}", begun.elapsed());
}

#[tokio::test]
async fn latin1_names_are_written_as_latin1_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let vsftpd = start(Vsftpd::builder()).await;
    let mut config = host_for(&vsftpd);
    set(&mut config, "encoding", "latin-1");
    let host = Host::new(config).unwrap();
    let files = files_of(&host).await;
    let dir = vsftpd.scratch_dir();
    let path = dir.join("café");
    put(&*files, &path, b"latin").await.unwrap();
    let names: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    assert_eq!(names, [b"caf\xe9".to_vec()], "the name on disk is Latin-1");
    assert_eq!(get(&*files, &path).await.unwrap(), b"latin");
    let listing = files.list(&dir).await.unwrap();
    assert_eq!(listing.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), ["café"]);
    // A name Latin-1 cannot spell is refused before anything is sent.
    let err = put(&*files, &dir.join("日本"), b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

#[tokio::test]
async fn ftps_checks_the_certificate_unless_told_not_to() {
    let vsftpd = start(Vsftpd::builder().tls()).await;
    // The happy path first: its own certificate verifies, under its IP address.
    let host = Host::new(host_for(&vsftpd)).unwrap();
    let files = files_of(&host).await;
    let path = vsftpd.scratch_dir().join("secret");
    put(&*files, &path, b"over tls").await.unwrap();
    assert_eq!(get(&*files, &path).await.unwrap(), b"over tls");

    // The system's roots (no ca_file) do not vouch for a self-signed certificate.
    let mut config = host_for(&vsftpd);
    set(&mut config, "extra", json!({}));
    let err = Host::new(config).unwrap().files().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // Another server's certificate as the CA: refused, with a reason.
    let other = start(Vsftpd::builder().tls()).await;
    let mut config = host_for(&vsftpd);
    set(&mut config, "extra", json!({ "ca_file": other.ca_file().unwrap() }));
    let err = Host::new(config).unwrap().files().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // A name the certificate does not carry: refused.
    let mut config = host_for(&vsftpd);
    set(&mut config, "extra", json!({ "ca_file": vsftpd.ca_file().unwrap(), "server_name": "ftp.example.invalid" }));
    let err = Host::new(config).unwrap().files().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");

    // Checking switched off by name: it connects (and logs a warning).
    let mut config = host_for(&vsftpd);
    set(&mut config, "extra", json!({ "ca_file": other.ca_file().unwrap(), "verify_certificate": false }));
    let host = Host::new(config).unwrap();
    assert_eq!(get(&*files_of(&host).await, &path).await.unwrap(), b"over tls");

    // Plain FTP to a server that demands TLS: the server's refusal, typed.
    let mut config = host_for(&vsftpd);
    set(&mut config, "ssl", false);
    let err = Host::new(config).unwrap().files().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    assert!(err.to_string().contains("encryption"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_auth_failed_and_never_shown() {
    let vsftpd = start(Vsftpd::builder()).await;
    let canary = "Canary-Pw-3141592653";
    let mut config = host_for(&vsftpd);
    config.credentials[0].password = canary.to_string().into();
    let host = Host::new(config).unwrap();
    let err = host.files().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{host:?}")] {
        assert!(!shown.contains(canary), "the password shows: {shown}");
    }
    // The right one works, and the connection's Debug output hides it too.
    let host = Host::new(host_for(&vsftpd)).unwrap();
    let files = files_of(&host).await;
    let shown = format!("{files:?} {host:?}");
    assert!(!shown.contains(vsftpd.password()), "{shown}");
    assert!(shown.contains(vsftpd.user()), "the Debug output is about this host: {shown}");
}

#[tokio::test]
async fn a_hung_server_times_out_and_the_next_operation_reconnects() {
    let vsftpd = start(Vsftpd::builder()).await;
    let mut config = host_for(&vsftpd);
    set(&mut config, "socket_timeout", 1.5);
    set(&mut config, "path_timeout", 3.0);
    let host = Host::new(config).unwrap();
    let files = files_of(&host).await;
    let path = vsftpd.scratch_dir().join("before the hang");
    put(&*files, &path, b"still here").await.unwrap();

    vsftpd.freeze(true).unwrap();
    let begun = Instant::now();
    let err = get(&*files, &path).await.unwrap_err();
    let took = begun.elapsed();
    vsftpd.freeze(false).unwrap();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(took < Duration::from_secs(5), "the timeout took {took:?}");

    // The session that timed out is gone: a late reply cannot answer this.
    assert_eq!(get(&*files, &path).await.unwrap(), b"still here");
    let meta = files.stat(&path, StatOptions::default()).await.unwrap().unwrap();
    assert_eq!(meta.size, 10);
}

#[tokio::test]
async fn relative_paths_start_at_the_login_directory_and_sessions_run_side_by_side() {
    let vsftpd = start(Vsftpd::builder()).await;
    let host = Host::new(host_for(&vsftpd)).unwrap();
    let files = files_of(&host).await;
    let scratch = vsftpd.scratch_dir();
    let relative = scratch.strip_prefix(vsftpd.home()).unwrap().join("relative");
    put(&*files, &relative, b"from home").await.unwrap();
    assert_eq!(std::fs::read(scratch.join("relative")).unwrap(), b"from home");

    // Eight puts at once, over the pool's sessions.
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let files = files.clone();
        let path = scratch.join(format!("parallel-{i}"));
        puts.spawn(async move {
            let data = random_bytes(1 << 20, i);
            put(&*files, &path, &data).await.unwrap();
            (path, data)
        });
    }
    while let Some(done) = puts.join_next().await {
        let (path, data) = done.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data, "{}", path.display());
    }
    assert_eq!(files.list(&scratch).await.unwrap().len(), 9);
}
