//! `tether forward`, run as a user runs it: the printed ports carry exact
//! bytes both ways, Ctrl-C ends it cleanly, and bad specs or busy ports are
//! one clear error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `tether forward`, killed if the test fails before it ends.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tether() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
    cmd.env_remove("TETHER_HOSTS").env_remove("RUST_LOG").current_dir(std::env::temp_dir());
    cmd
}

fn run(args: &[&str]) -> Output {
    tether().args(args).stdin(Stdio::null()).output().expect("the tether binary runs")
}

/// An echo server on an ephemeral loopback port, for the life of the test.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// Starts `tether forward` and reads one "listening on" line per spec.
fn start(args: &[&str], lines: usize) -> (Running, Vec<String>) {
    let mut child = tether()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tether binary runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let running = Running(Some(child));
    let mut read = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on 127.0.0.1:"), "unexpected output: {line:?}");
        read.push(line.trim_end().to_string());
    }
    (running, read)
}

/// The local port of a "listening on 127.0.0.1:PORT → …" line.
fn port_of(line: &str) -> u16 {
    let rest = line.strip_prefix("listening on 127.0.0.1:").unwrap();
    rest.split_once(' ').unwrap().0.parse().unwrap()
}

fn echo_through(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let payload = payload.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

fn interrupt_and_wait(mut running: Running) -> std::process::ExitStatus {
    let mut child = running.0.take().unwrap();
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "tether forward did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn forward_carries_exact_bytes_and_stops_on_ctrl_c() {
    let echo = echo_server();
    let fixed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let first = format!("127.0.0.1:{echo}");
    let second = format!("{fixed}:localhost:{echo}");
    let (running, lines) = start(&["forward", "local", &first, &second], 2);
    assert_eq!(lines[0], format!("listening on 127.0.0.1:{} → 127.0.0.1:{echo} through local", port_of(&lines[0])));
    assert_eq!(lines[1], format!("listening on 127.0.0.1:{fixed} → localhost:{echo} through local"));

    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    for line in &lines {
        assert!(echo_through(port_of(line), &payload) == payload, "3 MB through {line}");
    }
    let status = interrupt_and_wait(running);
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(("127.0.0.1", fixed)).is_err(), "the listener is gone");
}

#[test]
fn bad_specs_are_refused_before_connecting() {
    for (spec, needle) in [
        ("8080:80", "looks like a port"),
        ("localhost", "expected [LPORT:]DEST:DPORT"),
        ("0:db:0", "DPORT `0`"),
        ("::1:22", "bracket an IPv6 DEST"),
    ] {
        let out = run(&["forward", "local", spec]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(needle), "{spec}: {stderr}");
    }
}

#[test]
fn busy_local_port_is_one_line_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(&["forward", "local", &format!("{port}:localhost:22")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("tether: ") && stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
