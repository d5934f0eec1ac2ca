//! Failures on the way, each over the `local` term with OpenBSD's netcat:
//! the error is typed, the destination is as it was, and no temporary file
//! or listener is left. Each case first shows the happy path works with the
//! same set-up, so it cannot pass for the wrong reason.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use tether_core::{ErrorKind, PutOptions};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An executable shell script `name` in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "#!/bin/sh\n{body}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

/// A netcat that records its pid in `pidfile`, then is OpenBSD's netcat.
fn recorded_nc(dir: &Path, pidfile: &Path) -> String {
    script(dir, "recorded-nc", &format!("echo $$ > '{}'\nexec nc.openbsd \"$@\"", pidfile.display()))
}

/// Waits for `pidfile`, then kills that process.
fn kill_when_recorded(pidfile: PathBuf) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..400 {
            if let Ok(pid) = std::fs::read_to_string(&pidfile)
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                std::thread::sleep(Duration::from_millis(200));
                let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("netcat never started");
    })
}

/// A source that gives `total` bytes slowly, so a transfer is surely
/// under way when something breaks it.
struct Slow {
    left: usize,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Slow {
    fn new(total: usize) -> Self {
        Slow { left: total, sleep: None }
    }
}

impl AsyncRead for Slow {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Ok(()));
        }
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        let n = self.left.min(buf.remaining()).min(64 << 10);
        buf.put_slice(&vec![b'x'; n]);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

/// A sink that takes its bytes slowly.
struct SlowSink {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncWrite for SlowSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        Poll::Ready(Ok(buf.len().min(64 << 10)))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

use std::future::Future;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_killed_mid_put() {
    let _serial = serial().await;
    let tools = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = tools.path().join("pid");
    let exec_name = recorded_nc(tools.path(), &pidfile);
    let files = files_of(&local_host(&[("exec_name", exec_name.clone().into())])).await;
    let remote = dir.path().join("precious");
    // The happy path, through the same wrapper.
    put(&*files, &remote, b"old content").await.unwrap();
    std::fs::remove_file(&pidfile).unwrap();

    let killer = kill_when_recorded(pidfile);
    let mut source = Slow::new(64 << 20);
    let err = files.put(&mut source, &remote, &PutOptions::default()).await.unwrap_err();
    killer.join().unwrap();
    assert!(matches!(err.kind(), ErrorKind::ConnectionLost), "{err}");
    assert_eq!(std::fs::read(&remote).unwrap(), b"old content");
    assert_eq!(leftovers(dir.path()), ["precious"]);
    assert_no_listener();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_killed_mid_get() {
    let _serial = serial().await;
    let tools = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = tools.path().join("pid");
    let exec_name = recorded_nc(tools.path(), &pidfile);
    let files = files_of(&local_host(&[("exec_name", exec_name.into())])).await;
    let remote = dir.path().join("big");
    std::fs::write(&remote, tether_core::conformance::random_bytes(64 << 20, 3)).unwrap();
    let local = tempfile::tempdir().unwrap();
    let target = local.path().join("copy");
    std::fs::write(&target, b"kept").unwrap();
    // The happy path: a small file through the same wrapper.
    let small = dir.path().join("small");
    std::fs::write(&small, b"small").unwrap();
    assert_eq!(get(&*files, &small).await.unwrap(), b"small");
    std::fs::remove_file(&pidfile).unwrap();

    let killer = kill_when_recorded(pidfile);
    let mut sink = SlowSink { sleep: None };
    let err = files.get(&remote, &mut sink).await.unwrap_err();
    killer.join().unwrap();
    assert!(matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::Corrupted), "{err}");
    // Through get_file, the local destination stays as it was.
    std::fs::remove_file(tools.path().join("pid")).ok();
    let killer = kill_when_recorded(tools.path().join("pid"));
    let err = tether_core::get_file(&*files, &remote, &target, None).await;
    killer.join().unwrap();
    // A fast local download may finish before the kill; either way the
    // destination is whole: the old content or the full file.
    match err {
        Err(err) => {
            assert!(matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::Corrupted), "{err}");
            assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        }
        Ok(n) => assert_eq!(n, 64 << 20),
    }
    assert_eq!(leftovers(local.path()), ["copy"]);
    assert_no_listener();
}

/// A netcat that flips the first byte of what it receives and of what it
/// sends. The check is custom: the wrapper's pid is not netcat's.
fn flipping_host(tools: &Path, verify: &str) -> tether_core::Host {
    let flip = "{ dd bs=1 count=1 2>/dev/null | tr '\\000-\\377' '\\001-\\377\\000'; cat; }";
    let exec_name = script(
        tools,
        "flipping-nc",
        &format!("[ \"$1\" = -h ] && exec nc.openbsd -h\n{flip} | nc.openbsd \"$@\" | {flip}"),
    );
    local_host(&[
        ("exec_name", exec_name.into()),
        ("listener_check", "custom".into()),
        ("listener_cmd", "ss -ltn | grep -q ':{port} '".into()),
        ("verify", verify.into()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_caught_by_the_checksum() {
    let _serial = serial().await;
    let tools = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("precious");
    std::fs::write(&remote, b"old content").unwrap();
    let data = tether_core::conformance::random_bytes(1 << 20, 9);

    let files = files_of(&flipping_host(tools.path(), "sha256")).await;
    let err = put(&*files, &remote, &data).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.to_string().contains("SHA-256 differs"), "{err}");
    assert_eq!(std::fs::read(&remote).unwrap(), b"old content");
    assert_eq!(leftovers(dir.path()), ["precious"]);
    let err = get(&*files, &remote).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");

    // The precondition: with sizes only, the same wrapper's flip goes
    // unnoticed, so the failures above were the checksum's doing.
    let files = files_of(&flipping_host(tools.path(), "size")).await;
    put(&*files, &remote, &data).await.unwrap();
    let stored = std::fs::read(&remote).unwrap();
    assert_eq!(stored.len(), data.len());
    assert_eq!((stored[0], &stored[1..]), (data[0].wrapping_add(1), &data[1..]));
    assert_no_listener();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_skipped_or_retried() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    taken.set_nonblocking(true).unwrap();
    let port = taken.local_addr().unwrap().port();
    let remote = dir.path().join("file");

    // auto: the port search sees it listening and starts past it.
    let files = files_of(&local_host(&[("port", port.into())])).await;
    put(&*files, &remote, b"auto").await.unwrap();
    assert_eq!(get(&*files, &remote).await.unwrap(), b"auto");

    // custom, naming the taken port: netcat cannot bind it, and the next
    // port is tried.
    let files =
        files_of(&local_host(&[("port_strategy", "custom".into()), ("port_cmd", format!("echo {port}").into())])).await;
    put(&*files, &remote, b"retried").await.unwrap();
    assert_eq!(get(&*files, &remote).await.unwrap(), b"retried");
    assert!(taken.accept().is_err(), "the taken port's owner was connected to");
    assert_eq!(leftovers(dir.path()), ["file"]);
    assert_no_listener();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_answers_is_noticed() {
    let _serial = serial().await;
    let tools = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hello = tools.path().join("hello");
    std::fs::write(&hello, b"hello from someone else\n").unwrap();
    // It stays netcat (same pid), but talks back.
    let exec_name = script(
        tools.path(),
        "chatty-nc",
        &format!("[ \"$1\" = -h ] && exec nc.openbsd -h\nexec nc.openbsd \"$@\" < '{}'", hello.display()),
    );
    let remote = dir.path().join("precious");
    std::fs::write(&remote, b"old content").unwrap();
    let files = files_of(&local_host(&[("exec_name", exec_name.into())])).await;
    let err = put(&*files, &remote, b"new content").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("sent 24 bytes back"), "{err}");
    assert_eq!(std::fs::read(&remote).unwrap(), b"old content");
    assert_eq!(leftovers(dir.path()), ["precious"]);
    assert_no_listener();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_netcat_is_quoted() {
    let _serial = serial().await;
    let tools = tempfile::tempdir().unwrap();
    let exec_name = script(tools.path(), "not-nc", "echo 'socat version 1.7'; exit 1");
    let dir = tempfile::tempdir().unwrap();
    let files = files_of(&local_host(&[("exec_name", exec_name.into())])).await;
    let err = put(&*files, &dir.path().join("x"), b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("socat version 1.7"), "{err}");
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_transfer_leaves_no_listener() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let files = files_of(&local_host(&[])).await;
    let remote = dir.path().join("never");
    let mut source = tether_core::conformance::StalledSource::default();
    let options = PutOptions::default();
    let put = files.put(&mut source, &remote, &options);
    assert!(tokio::time::timeout(Duration::from_secs(2), put).await.is_err(), "the put cannot finish");
    assert_no_listener();
    for _ in 0..100 {
        if leftovers(dir.path()).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("left behind: {:?}", leftovers(dir.path()));
}
