//! The telnet transport against real servers: logins right and wrong,
//! exact output and exit codes, interrupts, and bad servers.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PASSWORD, busybox_shell, busybox_with_login, host_for, set};
use tether_core::{Command, ErrorKind, ExitStatus, Host};

fn host(config: tether_core::HostConfig) -> Arc<Host> {
    Arc::new(Host::new(config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_shell_runs_commands_with_exact_output_and_exit_codes() {
    let telnetd = busybox_shell().await;
    let host = host(host_for(&telnetd, false, PASSWORD));
    let out = host.exec(&Command::shell("printf 'a\\000b\\377\\r\\n'; exit 3")).await.unwrap();
    assert_eq!(out.stdout, b"a\0b\xff\r\n");
    assert_eq!(out.status, ExitStatus::Code(3));
    let out = host.exec(&Command::argv(["printf", "%s|", "a b", "$HOME"])).await.unwrap();
    assert_eq!(out.stdout, b"a b|$HOME|");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_then_commands() {
    let telnetd = busybox_with_login().await;
    let host = host(host_for(&telnetd, true, PASSWORD));
    let out = host.exec(&Command::argv(["id", "-u"]).check(true)).await.unwrap();
    assert_eq!(out.stdout, b"0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_authentication_error_within_seconds() {
    let telnetd = busybox_with_login().await;
    // The happy path first: the right password gets in.
    let right = host(host_for(&telnetd, true, PASSWORD));
    right.exec(&Command::new("true").check(true)).await.unwrap();
    let wrong = host(host_for(&telnetd, true, "not-the-password"));
    let started = Instant::now();
    let err = wrong.exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    assert!(!format!("{err:?}").contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_is_a_connect_error() {
    let telnetd = busybox_shell().await;
    let mut config = host_for(&telnetd, false, PASSWORD);
    config.port = Some(1);
    set(&mut config, "connect_timeout", 5.0);
    let err = host(config).exec(&Command::new("true")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_bytes_of_every_value_arrive_exactly() {
    let telnetd = busybox_with_login().await;
    let host = host(host_for(&telnetd, true, PASSWORD));
    let data: Vec<u8> =
        (0..1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761).rotate_left(i % 7) >> 11) as u8).collect();
    let out = host.exec(&Command::shell("cat").stdin(data.clone())).await.unwrap();
    if out.stdout != data {
        let first = out.stdout.iter().zip(&data).position(|(a, b)| a != b).unwrap_or(out.stdout.len().min(data.len()));
        panic!(
            "{} bytes back of {}; first difference at {first}: got {:?}, sent {:?}",
            out.stdout.len(),
            data.len(),
            &out.stdout[first.saturating_sub(8)..(first + 24).min(out.stdout.len())],
            &data[first.saturating_sub(8)..(first + 24).min(data.len())]
        );
    }
}
