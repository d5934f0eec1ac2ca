//! Connecting to a real OpenSSH sshd: host key policies, authentication
//! methods and their failures, many commands on one connection.

mod common;

use std::sync::Arc;

use tether_core::{Command, ErrorKind, ExitStatus, OptionSource};
use tether_test_servers::Sshd;

fn known_hosts_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_naming_file_and_line() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    // A different, valid ed25519 key recorded for this host on line 2.
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let path = known_hosts_file(&dir, &format!("# lab\n[127.0.0.1]:{} {other}\n", sshd.port()));
    let err = common::connect(common::host_for(&sshd, &path)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("{}:2", path.display())), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_refused_under_strict() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts_file(
        &dir,
        "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
    );
    let err = common::connect(common::host_for(&sshd, &path)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{err}");
    let text = err.to_string();
    assert!(text.contains("unknown host key") && text.contains("accept-new"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_the_key_then_strict_connects() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/known_hosts");
    let mut host = common::host_for(&sshd, &path);
    host.options.set("ssh_options", "host_key_policy", "accept-new", OptionSource::Api).unwrap();
    let connection = common::connect(host).await.expect("accept-new connects");
    connection.close().await.unwrap();
    let recorded = std::fs::read_to_string(&path).unwrap();
    assert_eq!(recorded.trim(), sshd.known_hosts_line(), "{recorded}");

    // Now recorded: the strict default connects and runs commands.
    let connection = common::connect(common::host_for(&sshd, &path)).await.expect("strict connects");
    let out = connection.transport().unwrap().exec(&Command::shell("printf ok")).await.unwrap();
    assert_eq!(out.stdout, b"ok");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), recorded, "a known host is not appended again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entry_is_accepted() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts_file(&dir, &format!("{}\n", sshd.known_hosts_line()));
    // ssh-keygen -H rewrites the file with hashed host names.
    let status = std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&path).output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("|1|"));
    let connection = common::connect(common::host_for(&sshd, &path)).await.expect("hashed entry connects");
    assert!(connection.is_alive());
}

fn password_host(sshd: &Sshd, dir: &tempfile::TempDir, password: &str, methods: &[&str]) -> tether_core::HostConfig {
    let path = known_hosts_file(dir, &format!("{}\n", sshd.known_hosts_line()));
    let mut host = common::with_password(common::host_for(sshd, &path), password);
    host.options.set("ssh_options", "preferred_auth", methods, OptionSource::Api).unwrap();
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_keyboard_interactive_log_in() {
    let sshd = common::start(Sshd::builder().password_auth("root", "tether-secret")).await;
    assert_eq!(sshd.user(), "root", "password tests run as root");
    let dir = tempfile::tempdir().unwrap();
    for method in ["password", "keyboard-interactive"] {
        let connection = common::connect(password_host(&sshd, &dir, "tether-secret", &[method]))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", sshd.log()));
        let out = connection.transport().unwrap().exec(&Command::shell("printf ok")).await.unwrap();
        assert_eq!(out.stdout, b"ok", "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_auth_failed_listing_methods() {
    let sshd = common::start(Sshd::builder().password_auth("root", "tether-secret")).await;
    let dir = tempfile::tempdir().unwrap();
    let host = password_host(&sshd, &dir, "wrong-guess", &["password", "keyboard-interactive"]);
    let err = common::connect(host).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    let text = err.to_string();
    assert!(text.contains("password (rejected)") && text.contains("keyboard-interactive (rejected)"), "{text}");
    assert!(!text.contains("wrong-guess"), "the password leaked into the error: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_key_is_auth_failed() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts_file(&dir, &format!("{}\n", sshd.known_hosts_line()));
    let key = dir.path().join("stranger");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let mut host = common::host_for(&sshd, &path);
    host.options.set("ssh_options", "client_keys", vec![key.display().to_string()], OptionSource::Api).unwrap();
    let err = common::connect(host).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    assert!(err.to_string().contains("publickey"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_commands_share_one_connection() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts_file(&dir, &format!("{}\n", sshd.known_hosts_line()));
    let connection = common::connect(common::host_for(&sshd, &path)).await.unwrap();
    let transport = connection.transport().unwrap();
    let runs = (0..100).map(|i| {
        let transport = Arc::clone(&transport);
        tokio::spawn(async move { transport.exec(&Command::shell(format!("printf {i}"))).await })
    });
    for (i, run) in runs.collect::<Vec<_>>().into_iter().enumerate() {
        let out = run.await.unwrap().unwrap_or_else(|e| panic!("exec {i}: {e}"));
        assert_eq!(out.stdout, i.to_string().as_bytes());
        assert_eq!(out.status, ExitStatus::Code(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connection_fails_commands_and_reports_dead() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts_file(&dir, &format!("{}\n", sshd.known_hosts_line()));
    let connection = common::connect(common::host_for(&sshd, &path)).await.unwrap();
    let transport = connection.transport().unwrap();
    connection.close().await.unwrap();
    assert!(!connection.is_alive());
    let err = transport.exec(&Command::shell("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_command_is_connection_lost() {
    let mut sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts_file(&dir, &format!("{}\n", sshd.known_hosts_line()));
    let connection = common::connect(common::host_for(&sshd, &path)).await.unwrap();
    let transport = connection.transport().unwrap();
    let mut process = transport.spawn(&Command::shell("sleep 30")).await.unwrap();
    tokio::task::spawn_blocking(move || {
        sshd.kill().unwrap();
        sshd
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(std::time::Duration::from_secs(20), process.wait())
        .await
        .expect("wait returns once the server is gone")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    let err = transport.exec(&Command::shell("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(!connection.is_alive());
}
