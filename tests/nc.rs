//! The `tether` binary with `transfer: "nc"`, as a user runs it: `nc` is a
//! listed scheme, `put`, `get` and `stat` work over a `local` and an `ssh`
//! term, a mistyped `nc_options` key is refused by name, and a `tether`
//! killed mid-transfer leaves no listener or temporary file on the host.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_test_servers::Sshd;

mod support;
use support::{tether, tether_command};

fn inventory(dir: &Path, hosts: serde_json::Value) -> std::path::PathBuf {
    let path = dir.join("hosts.json");
    std::fs::write(&path, hosts.to_string()).unwrap();
    path
}

/// Netcat listeners on this machine, as `pgrep -a` shows them.
fn listeners() -> Vec<String> {
    let out = std::process::Command::new("pgrep").args(["-a", "-f", " -l( |$)"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|argv0| argv0.rsplit('/').next() == Some("nc")))
        .map(str::to_string)
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn put_get_and_stat_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = inventory(dir.path(), json!({"board": {"term": "local", "transfer": "nc"}}));

    let out = tether(&hosts, &["--json", "schemes"]);
    let schemes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nc = schemes.as_array().unwrap().iter().find(|s| s["scheme"] == "nc").expect("nc is linked");
    assert_eq!(
        (nc["options_table"].as_str(), nc["capabilities"].clone()),
        (Some("nc_options"), json!(["files", "byte-names"]))
    );

    let local = dir.path().join("local file");
    let data: Vec<u8> = (0..900_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let remote = dir.path().join("via nc");
    let (local_arg, remote_arg) = (local.to_str().unwrap(), remote.to_str().unwrap());
    let out = tether(&hosts, &["put", "board", local_arg, remote_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&remote).unwrap(), data);

    let out = tether(&hosts, &["--json", "stat", "board", remote_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stat: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stat["size"].as_u64(), Some(data.len() as u64), "{stat}");

    let back = dir.path().join("back");
    let out = tether(&hosts, &["get", "board", remote_arg, back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // No netcat: one line that says so, and nothing written.
    let hosts = inventory(
        dir.path(),
        json!({"board": {"term": "local", "transfer": "nc", "nc_options": {"exec_name": "/nonexistent/nc"}}}),
    );
    let out = tether(&hosts, &["put", "board", local_arg, dir.path().join("none").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/nc") && stderr.lines().count() == 1, "{stderr}");
    assert!(!dir.path().join("none").exists());
}

#[test]
fn a_mistyped_nc_option_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let hosts =
        inventory(dir.path(), json!({"board": {"term": "local", "transfer": "nc", "nc_options": {"exec_nam": "nc"}}}));
    let out = tether(&hosts, &["config", "board"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exec_nam") && stderr.contains("exec_name"), "{stderr}");
}

/// `tether put` killed (SIGKILL) while its data flows, over `local` and
/// over `ssh`: the listener's lifeline (its command's stdin) ends, so the
/// host kills netcat and removes the partial temporary file itself.
#[test]
fn a_killed_tether_leaves_no_listener() {
    let sshd = Sshd::start().unwrap_or_else(|e| panic!("{e}"));
    let mut ssh_entry = sshd.inventory_entry();
    ssh_entry["transfer"] = json!("nc");
    for (name, entry) in [("local", json!({"term": "local", "transfer": "nc"})), ("ssh", ssh_entry)] {
        let dir = tempfile::tempdir().unwrap();
        let hosts = inventory(dir.path(), json!({"board": entry}));
        let remote_dir = tempfile::tempdir().unwrap();
        let remote = remote_dir.path().join("never");
        // The happy path first, over the same host.
        let small = dir.path().join("small");
        std::fs::write(&small, b"small").unwrap();
        let out = tether(&hosts, &["put", "board", small.to_str().unwrap(), remote.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::remove_file(&remote).unwrap();

        // A source that never ends: a FIFO fed slowly.
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let mut child = tether_command(&hosts, &["put", "board", fifo.to_str().unwrap(), remote.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let feeder_fifo = fifo.clone();
        let feeder = std::thread::spawn(move || {
            let mut writer = std::fs::OpenOptions::new().write(true).open(feeder_fifo).unwrap();
            let chunk = vec![b'x'; 64 << 10];
            while writer.write_all(&chunk).is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let started = Instant::now();
        while listeners().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(20), "{name}: no listener ever started");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        feeder.join().unwrap();
        let killed = Instant::now();
        while !listeners().is_empty() {
            assert!(killed.elapsed() < Duration::from_secs(10), "{name}: listeners left: {:?}", listeners());
            std::thread::sleep(Duration::from_millis(50));
        }
        // The lifeline also removed the partial temporary file.
        while !names_in(remote_dir.path()).is_empty() {
            assert!(killed.elapsed() < Duration::from_secs(10), "{name}: left: {:?}", names_in(remote_dir.path()));
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!remote.exists(), "{name}: the destination appeared");
    }
}
