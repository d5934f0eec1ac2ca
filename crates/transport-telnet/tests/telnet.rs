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

/// An interactive shell passes ^C through to the host's terminal: it stops
/// the running command, not the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_a_shell_interrupts_the_command_and_keeps_the_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let telnetd = busybox_with_login().await;
    let host = host(host_for(&telnetd, true, PASSWORD));
    let pty = tether_core::Pty::default();
    let mut shell = host.transport().await.unwrap().shell(&pty).await.unwrap();
    let mut keys = shell.stdin.take().unwrap();
    let mut screen = shell.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut wait_for = async |needle: &[u8]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buffer = [0u8; 4096];
        while !seen.windows(needle.len()).any(|w| w == needle) {
            let n = tokio::time::timeout_at(deadline.into(), screen.read(&mut buffer))
                .await
                .unwrap_or_else(|_| {
                    panic!("no {:?} in {:?}", String::from_utf8_lossy(needle), String::from_utf8_lossy(&seen))
                })
                .unwrap();
            assert!(n > 0, "the session ended: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buffer[..n]);
        }
    };
    // START comes from the very process that then becomes `sleep` (the echo
    // of the line shows `START;`), so ^C after it can only hit that process.
    keys.write_all(b"sh -c 'echo START; exec sleep 30'\r").await.unwrap();
    wait_for(b"START\r\n").await;
    let started = Instant::now();
    keys.write_all(b"\x03").await.unwrap();
    keys.write_all(b"echo after=$?\r").await.unwrap();
    wait_for(b"after=130").await;
    assert!(started.elapsed() < Duration::from_secs(10), "^C did not stop `sleep 30`");
    keys.write_all(b"exit\r").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), shell.wait()).await.unwrap().unwrap();
    assert_eq!(status, ExitStatus::Unknown, "a telnet session carries no status");
}
