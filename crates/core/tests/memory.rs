//! The `mem` transport runs the same conformance suite as every other
//! transport, on its generic behaviour: its built-in shell runs the suite's
//! command lines, nothing is scripted for them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tether_core::conformance::{Subject, memory_subject};
use tether_core::memory::MemoryHost;
use tether_core::{ExitStatus, FileTransfer, Output, RegistryFactory, Transport};

fn out(stdout: &[u8], stderr: &[u8], code: i32) -> Output {
    Output { stdout: stdout.to_vec(), stderr: stderr.to_vec(), status: ExitStatus::Code(code) }
}

/// A fresh memory host reached through the registry as `mem://NAME`.
async fn subject() -> Subject {
    memory_subject(Arc::new(RegistryFactory::global())).await
}

tether_core::conformance!(subject);

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
    // The handler is running once its call is recorded.
    while host.calls().is_empty() {
        tokio::task::yield_now().await;
    }
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
    let listing = b.list(Path::new("/etc")).await.unwrap();
    assert_eq!(listing[0].name, "motd");
}
