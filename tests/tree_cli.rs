//! `tether put -r` / `tether get -r`, run as a user runs them, against a real
//! OpenSSH sshd over both `sftp` and `scp`: trees arrive byte for byte, land
//! where `scp -r` would put them, and a directory without `-r` is refused
//! with the hint.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;
use tether_core::conformance::{LocalEntry, local_tree};
use tether_test_servers::Sshd;

/// A private sshd and an inventory naming it `dut`.
struct Lab {
    _sshd: Sshd,
    dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let sshd = Sshd::start().expect("start sshd");
        let dir = tempfile::tempdir().unwrap();
        let inventory = json!({ "dut": sshd.inventory_entry() });
        std::fs::write(dir.path().join("hosts.json"), inventory.to_string()).unwrap();
        Lab { _sshd: sshd, dir }
    }

    /// Runs `tether --hosts … --transfer SCHEME ARGS…`.
    fn tether(&self, scheme: &str, args: &[&str]) -> Output {
        let hosts = self.dir.path().join("hosts.json");
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("--hosts")
            .arg(&hosts)
            .args(["--transfer", scheme])
            .args(args)
            .env_remove("TETHER_HOSTS")
            .env_remove("RUST_LOG")
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .expect("the tether binary runs")
    }

    /// A fresh scratch path (not created); the sshd's host is this machine.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const BIG: usize = 3 << 20;

/// Deterministic bytes that do not compress into a pattern.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Nested and empty directories, an empty file, a 3 MiB file, two modes,
/// and a link (skipped).
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("zero"), b"").unwrap();
    std::fs::write(root.join("big.bin"), noise(BIG)).unwrap();
    std::fs::write(root.join("a/one.txt"), b"one\n").unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep\n").unwrap();
    std::fs::write(root.join("a/b/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("a/b/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("a/one.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("/", root.join("a/escape")).unwrap();
}

const FILES: u64 = 5;
const DIRECTORIES: u64 = 5;
const BYTES: u64 = BIG as u64 + 4 + 5 + 18;

/// Every file (bytes) and directory (`None`) below `root`; links show as
/// `Some("link")` so a copied one would be noticed.
fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    local_tree(root)
        .into_iter()
        .map(|(path, entry)| {
            let value = match entry {
                LocalEntry::File(bytes) => Some(bytes),
                LocalEntry::Dir => None,
                LocalEntry::Other => Some(b"link".to_vec()),
            };
            (path, value)
        })
        .collect()
}

/// The source as it should arrive: without its link.
fn expected(source: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut tree = snapshot(source);
    assert!(tree.remove("a/escape").is_some());
    tree
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn round_trip(scheme: &str) {
    let lab = Lab::start();
    let source = lab.path("src");
    make_tree(&source);
    let want = expected(&source);

    // A missing destination receives the contents.
    let remote = lab.path("remote");
    let stdout = ok(&lab.tether(scheme, &["put", "-r", "-p", "dut", p(&source), p(&remote)]));
    assert!(stdout.starts_with(&format!("{FILES} files, {DIRECTORIES} directories, {BYTES} bytes in ")), "{stdout}");
    assert!(stdout.contains("1 skipped"), "{stdout}");
    assert_eq!(snapshot(&remote), want, "put -r over {scheme}");
    assert_eq!(mode(&remote.join("a/b/run.sh")), 0o755, "-p keeps modes");
    assert_eq!(mode(&remote.join("a/one.txt")), 0o600, "-p keeps modes");

    // An existing one receives the tree under the source's name.
    let out = lab.tether(scheme, &["--json", "put", "--recursive", "dut", p(&source), p(&remote)]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["files"], FILES);
    assert_eq!(report["directories"], DIRECTORIES);
    assert_eq!(report["bytes"], BYTES);
    assert_eq!(report["skipped"], 1);
    assert!(report["seconds"].is_number());
    assert_eq!(snapshot(&remote.join("src")), want, "put -r into an existing directory over {scheme}");

    // And back down, both ways.
    let back = lab.path("back/fresh");
    let stdout = ok(&lab.tether(scheme, &["get", "-r", "dut", p(&remote.join("src")), p(&back)]));
    assert!(stdout.starts_with(&format!("{FILES} files, {DIRECTORIES} directories, {BYTES} bytes in ")), "{stdout}");
    assert_eq!(snapshot(&back), want, "get -r over {scheme}");

    let existing = lab.path("existing");
    std::fs::create_dir(&existing).unwrap();
    let out = lab.tether(scheme, &["--json", "get", "-r", "dut", p(&remote.join("src")), p(&existing)]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!((report["files"].as_u64(), report["bytes"].as_u64()), (Some(FILES), Some(BYTES)));
    assert_eq!(snapshot(&existing.join("src")), want, "get -r into an existing directory over {scheme}");
    assert_eq!(snapshot(&existing).len(), want.len() + 1);

    // The single-file commands still move single files.
    let copy = lab.path("one.copy");
    ok(&lab.tether(scheme, &["get", "dut", p(&remote.join("big.bin")), p(&copy)]));
    assert_eq!(std::fs::read(&copy).unwrap(), noise(BIG));
    ok(&lab.tether(scheme, &["put", "-r", "dut", p(&copy), p(&lab.path("one.again"))]));
    assert_eq!(std::fs::read(lab.path("one.again")).unwrap(), noise(BIG));
}

#[test]
fn trees_go_up_and_come_back_over_sftp() {
    round_trip("sftp");
}

#[test]
fn trees_go_up_and_come_back_over_scp() {
    round_trip("scp");
}

fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("tether: ") && stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

#[test]
fn a_directory_without_r_is_refused_with_the_hint() {
    let lab = Lab::start();
    let source = lab.path("src");
    make_tree(&source);
    for scheme in ["sftp", "scp"] {
        let remote = lab.path(&format!("remote-{scheme}"));
        assert_refused(&lab.tether(scheme, &["put", "dut", p(&source), p(&remote)]), "is a directory: use -r");
        assert!(!remote.exists(), "nothing was written");

        let local = lab.path(&format!("local-{scheme}"));
        assert_refused(&lab.tether(scheme, &["get", "dut", p(&source), p(&local)]), "is a directory: use -r");
        assert!(!local.exists(), "nothing was written");
    }
    // File options make no sense for a whole tree.
    let out = lab.tether("sftp", &["put", "-r", "--mode", "600", "dut", p(&source), p(&lab.path("x"))]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
