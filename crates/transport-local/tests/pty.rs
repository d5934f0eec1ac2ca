//! Commands on a real pseudo-terminal: the program sees a tty of the asked
//! size, resizes reach it, an interactive shell runs, and timeouts still kill.

use std::time::{Duration, Instant};

use tether_core::{Command, ErrorKind, ExitStatus, Pty, Transport};
use tether_transport_local::{LocalOptions, local_host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pty(cols: u16, rows: u16) -> Pty {
    Pty { term: "xterm-256color".into(), cols, rows }
}

#[tokio::test]
async fn command_sees_a_terminal_of_the_asked_size() {
    let host = local_host(LocalOptions::default());
    let out = host.exec(&Command::shell("tty; stty size; echo $TERM").pty(pty(100, 30))).await.unwrap();
    let text = out.stdout_lossy();
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.contains("30 100\r\n"), "{text:?}");
    assert!(text.contains("xterm-256color"), "{text:?}");
    assert_eq!(out.status, ExitStatus::Code(0));
    assert!(out.stderr.is_empty(), "a terminal merges stderr into stdout");
}

#[tokio::test]
async fn resize_reaches_the_program() {
    let host = local_host(LocalOptions::default());
    let mut process = host.spawn(&Command::shell("read go; stty size").pty(pty(80, 24))).await.unwrap();
    process.resize(120, 40).await.unwrap();
    let mut stdin = process.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    let mut output = String::new();
    process.stdout.take().unwrap().read_to_string(&mut output).await.unwrap();
    assert!(output.contains("40 120"), "{output:?}");
    assert_eq!(process.wait().await.unwrap(), ExitStatus::Code(0));
}

#[tokio::test]
async fn interactive_shell_runs_and_exits_with_its_code() {
    // sh, not the user's shell: a login shell's rc files would make the
    // output depend on the machine.
    let host = local_host(LocalOptions::default());
    let mut process = host.spawn(&Command::argv(["/bin/sh", "-i"]).pty(pty(80, 24))).await.unwrap();
    let mut stdin = process.stdin.take().unwrap();
    stdin.write_all(b"echo tether-$((40+2))\nexit 7\n").await.unwrap();
    let mut output = Vec::new();
    let mut stdout = process.stdout.take().unwrap();
    let read = tokio::time::timeout(Duration::from_secs(20), stdout.read_to_end(&mut output));
    read.await.expect("the shell's output ends when it exits").unwrap();
    assert!(String::from_utf8_lossy(&output).contains("tether-42"), "{:?}", String::from_utf8_lossy(&output));
    assert_eq!(process.wait().await.unwrap(), ExitStatus::Code(7));
}

#[tokio::test]
async fn shell_gives_an_interactive_session() {
    let host = local_host(LocalOptions::default());
    let mut process = host.shell(&pty(80, 24)).await.unwrap();
    let mut stdin = process.stdin.take().unwrap();
    stdin.write_all(b"exit 3\n").await.unwrap();
    let mut output = Vec::new();
    let mut stdout = process.stdout.take().unwrap();
    let read = tokio::time::timeout(Duration::from_secs(30), stdout.read_to_end(&mut output));
    read.await.expect("the shell exits").unwrap();
    assert_eq!(process.wait().await.unwrap(), ExitStatus::Code(3));
}

#[tokio::test]
async fn timeout_kills_a_command_on_a_terminal() {
    let host = local_host(LocalOptions::default());
    let started = Instant::now();
    let command = Command::shell("sleep 30").pty(pty(80, 24)).timeout(Duration::from_millis(300));
    let err = host.exec(&command).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn resize_without_terminal_is_unsupported() {
    let host = local_host(LocalOptions::default());
    let mut process = host.spawn(&Command::new("true")).await.unwrap();
    assert_eq!(process.resize(10, 10).await.unwrap_err().kind(), ErrorKind::Unsupported);
    process.wait().await.unwrap();
}
