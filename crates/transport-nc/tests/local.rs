//! `nc` over the `local` term, with every netcat flavour this machine has.

mod common;

use common::*;
use tether_core::ErrorKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flavour_round_trips_a_file() {
    let _serial = serial().await;
    for (exec_name, flavour) in FLAVOURS {
        let dir = tempfile::tempdir().unwrap();
        let host = local_host(&[("exec_name", (*exec_name).into())]);
        let files = files_of(&host).await;
        let data = tether_core::conformance::random_bytes(3 << 20, 7);
        let remote = dir.path().join("copy.bin");
        let sent = put(&*files, &remote, &data).await.unwrap_or_else(|e| panic!("{exec_name}: {e}"));
        assert_eq!(sent, data.len() as u64);
        assert!(std::fs::read(&remote).unwrap() == data, "{exec_name}: the put's bytes differ");
        let back = get(&*files, &remote).await.unwrap_or_else(|e| panic!("{exec_name}: {e}"));
        assert!(back == data, "{exec_name}: the get's bytes differ");
        assert_eq!(local_nc(named(exec_name)).flavour().await.unwrap(), *flavour, "{exec_name}");
        assert_eq!(leftovers(dir.path()), ["copy.bin"], "{exec_name}");
        assert_no_listener();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_nc_is_named() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let host = local_host(&[("exec_name", "/nonexistent/nc".into())]);
    let files = files_of(&host).await;
    let remote = dir.path().join("x");
    let err = put(&*files, &remote, b"data").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("/nonexistent/nc") && err.to_string().contains("no such command"), "{err}");
    assert!(leftovers(dir.path()).is_empty());
}

/// The leftover-listener check sees a listener when there is one, so its
/// silence elsewhere means something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_listener_is_seen() {
    let _serial = serial().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port = port.to_string();
    // The forms the transport starts: every address, or the host's own.
    let forms: [&[&str]; 3] = [
        &["nc.openbsd", "-l", "-p", &port],
        &["nc.openbsd", "-l", "-s", "127.0.0.1", "-p", &port],
        &["busybox", "nc", "-l", "-p", &port],
    ];
    for program in forms {
        let mut child = std::process::Command::new(program[0])
            .args(&program[1..])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(listeners().len(), 1, "{program:?}: {:?}", listeners());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_no_listener();
    }
}
