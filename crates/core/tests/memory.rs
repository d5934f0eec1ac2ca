//! The `mem` transport runs the same conformance suite as every other
//! transport. Its commands are scripted, so this file scripts exactly the
//! lines the suite sends, each with the behaviour of the real command.

use std::sync::Arc;
use std::time::Duration;

use tether_core::conformance::exec::{large_output_expected, lines};
use tether_core::conformance::{FilesFixture, files::*};
use tether_core::memory::{Call, MemoryHost};
use tether_core::{ExitStatus, FileTransfer, Output, Transport, Tunnel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn out(stdout: &[u8], stderr: &[u8], code: i32) -> Output {
    Output { stdout: stdout.to_vec(), stderr: stderr.to_vec(), status: ExitStatus::Code(code) }
}

/// A host that answers the suite's lines.
fn scripted_host() -> MemoryHost {
    let host = MemoryHost::new();
    host.respond(lines::EXIT_0, out(b"", b"", 0));
    host.respond(lines::EXIT_1, out(b"", b"", 1));
    host.respond(lines::EXIT_255, out(b"", b"", 255));
    host.respond(lines::OUT_AND_ERR, out(b"out", b"err", 0));
    host.respond(lines::BINARY, out(b"a\0b\xffc", b"", 0));
    host.respond(lines::LARGE, out(&large_output_expected(), b"", 0));
    host.handle(lines::CAT, |call: Call| out(&call.stdin, b"", 0));
    host.handle(lines::PRINT_ENV, |call: Call| {
        out(call.command.env.get("TETHER_PROBE").map(String::as_bytes).unwrap_or_default(), b"", 0)
    });
    host.handle(lines::PWD, |call: Call| {
        out(format!("{}\n", call.command.cwd.as_deref().unwrap_or("/")).as_bytes(), b"", 0)
    });
    host.handle_async(lines::SLEEP, |_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        out(b"", b"", 0)
    });
    host.respond(lines::FAIL_3, out(b"", b"failing\n", 3));
    host.respond(
        lines::SELF_KILL,
        Output { stdout: vec![], stderr: vec![], status: ExitStatus::Signal("KILL".into()) },
    );
    host.handle(lines::PRINTF_ARGV, |call: Call| match &call.command.line {
        tether_core::CommandLine::Argv(argv) => {
            out(argv[2..].iter().map(|a| format!("{a}|")).collect::<String>().as_bytes(), b"", 0)
        }
        other => out(b"", format!("expected argv, got {other:?}").as_bytes(), 2),
    });
    host
}

async fn transport() -> Arc<dyn Transport> {
    Arc::new(scripted_host())
}

async fn files() -> FilesFixture {
    let host = MemoryHost::new();
    let files: Arc<dyn FileTransfer> = Arc::new(host.clone());
    files.mkdir("/scratch", false).await.unwrap();
    FilesFixture { files, base: "/scratch".into(), guard: Box::new(host) }
}

async fn tunnel() -> (Arc<dyn Tunnel>, String, u16, MemoryHost) {
    let host = MemoryHost::new();
    host.serve("echo.internal", 7, |mut stream| async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    (Arc::new(host.clone()), "echo.internal".into(), 7, host)
}

tether_core::transport_conformance!(transport);
tether_core::files_conformance!(files);
tether_core::tunnel_conformance!(tunnel);

#[tokio::test]
async fn unscripted_command_is_127_and_calls_are_recorded() {
    let host = MemoryHost::new();
    let result = host.exec(&tether_core::Command::argv(["reboot", "-f"]).env("A", "1")).await.unwrap();
    assert_eq!(result.status, ExitStatus::Code(127));
    assert_eq!(result.stderr, b"mem: reboot: command not found\n");
    let calls = host.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].line, "reboot -f");
    assert_eq!(calls[0].command.env["A"], "1");
}

#[tokio::test]
async fn dropped_connection_fails_pending_work() {
    let host = MemoryHost::new();
    host.handle_async("sleep 5", |_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        out(b"", b"", 0)
    });
    let running = {
        let host = host.clone();
        tokio::spawn(async move { host.exec(&tether_core::Command::shell("sleep 5")).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    host.drop_connections();
    let started = std::time::Instant::now();
    // The handler still sleeps; the pending exec must not wait for it.
    let err = tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::ConnectionLost, "{err}");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(!host.is_alive());
    assert!(host.connect().is_alive(), "a new connection works");
}

#[tokio::test]
async fn named_hosts_are_shared() {
    let a = MemoryHost::named("shared-by-name");
    a.write_file("/etc/motd", "hello", 0o644);
    let b = MemoryHost::named("shared-by-name");
    assert_eq!(b.read_file("/etc/motd").unwrap(), "hello");
    let listing = b.list("/etc").await.unwrap();
    assert_eq!(listing[0].name, "motd");
    // Suppress unused warnings for glob-imported checks used only by the macro.
    let _ = round_trip_empty;
}
