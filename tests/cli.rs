//! The `tether` binary, run as a user runs it: exit codes, exact bytes, and
//! one clear line for every kind of bad input, with nothing half-written.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha512};

fn tether(args: &[&str]) -> Output {
    tether_with(args, None, &[])
}

fn tether_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
    cmd.args(args).env_remove("TETHER_HOSTS").env_remove("RUST_LOG").current_dir(std::env::temp_dir());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the tether binary runs");
    if let Some(data) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line on stderr, starting with `tether: ` and containing `needle`.
fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {text}");
    assert_eq!(text.lines().count(), 1, "expected one line, got: {text}");
    assert!(text.starts_with("tether: ") && text.contains(needle), "expected `{needle}` in: {text}");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn exec_passes_exit_code_and_exact_bytes() {
    let out = tether(&["exec", "local", "--sh", "--", r"printf 'a\000b\377'; printf e >&2; exit 42"]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(out.stdout, b"a\0b\xff");
    assert_eq!(out.stderr, b"e");
}

#[test]
fn exec_argv_is_exact_and_stdin_is_forwarded() {
    let out = tether(&["exec", "local", "--", "printf", "%s|", "a b", "$HOME", "--not-an-option"]);
    assert_eq!(out.stdout, b"a b|$HOME|--not-an-option|");
    let out = tether_with(&["exec", "local", "--", "wc", "-c"], Some(&[7u8; 100_000]), &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000");
}

#[test]
fn exec_env_cwd_umask_and_signal() {
    let out = tether(&[
        "exec",
        "local",
        "--env",
        "X=1 2",
        "--cwd",
        "/",
        "--umask",
        "027",
        "--sh",
        "--",
        "echo \"$X\"; pwd; umask",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 2\n/\n0027\n");
    let out = tether(&["exec", "local", "--sh", "--", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn exec_json_reports_status_and_output() {
    let out = tether(&["--json", "exec", "local", "--sh", "--", "echo hi; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["exit_code"], 3);
    assert_eq!(value["stdout"], "hi\n");
    assert_eq!(value["host"], "local");
}

#[test]
fn exec_timeout_is_an_error() {
    let started = std::time::Instant::now();
    let out = tether(&["exec", "local", "--timeout", "0.3", "--", "sleep", "20"]);
    assert_one_line_error(&out, 255, "timed out");
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn put_get_round_trip_with_byte_count_and_stat() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let remote = dir.path().join("remote.bin");
    let back = dir.path().join("back.bin");
    let out = tether(&["put", "local", src.to_str().unwrap(), remote.to_str().unwrap(), "--mode", "640"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("3000000 bytes in "), "{:?}", out.stdout);
    let out = tether(&["get", "local", remote.to_str().unwrap(), back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&back).unwrap(), data);

    let out = tether(&["--json", "stat", "local", remote.to_str().unwrap(), "--sha512"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["size"], 3_000_000);
    assert_eq!(value["mode"], 0o640);
    assert_eq!(value["kind"], "file");
    assert_eq!(value["sha512"], hex::encode(Sha512::digest(&data)));

    let out = tether(&["--json", "put", "local", src.to_str().unwrap(), remote.to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["bytes"], 3_000_000);
    assert_eq!(entries(dir.path()), ["back.bin", "remote.bin", "src.bin"], "no temporary files left");
}

/// A board's files are named in whatever bytes its firmware wrote: the CLI
/// passes a remote name that is not UTF-8 through untouched, and a transport
/// that cannot carry such a name refuses it in one line instead of mangling it.
#[test]
fn remote_names_that_are_not_utf8_pass_through_the_cli() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let run = |args: &[&OsStr]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
        cmd.args(args).env_remove("TETHER_HOSTS").env_remove("RUST_LOG").stdin(Stdio::null());
        cmd.output().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"latin-1 name\n").unwrap();
    let remote = dir.path().join(OsStr::from_bytes(b"caf\xe9 \xff"));
    let back = dir.path().join("back");

    let out = run(&["put".as_ref(), "local".as_ref(), src.as_os_str(), remote.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&remote).unwrap(), b"latin-1 name\n", "written under the exact bytes");

    let out = run(&["--json".as_ref(), "stat".as_ref(), "local".as_ref(), remote.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["size"], 13);

    let out = run(&["get".as_ref(), "local".as_ref(), remote.as_os_str(), back.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&back).unwrap(), b"latin-1 name\n");

    // mem keeps UTF-8 names only: it says so instead of writing `caf�`.
    let out = run(&["put".as_ref(), "mem://bytes".as_ref(), src.as_os_str(), OsStr::from_bytes(b"/caf\xe9")]);
    assert_one_line_error(&out, 1, "carries UTF-8 names only");

    // The words and directory of `exec` are bytes too.
    let out = run(&[
        "exec".as_ref(),
        "local".as_ref(),
        "--cwd".as_ref(),
        dir.path().as_os_str(),
        "--".as_ref(),
        "cat".as_ref(),
        OsStr::from_bytes(b"caf\xe9 \xff"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"latin-1 name\n");
    let out = run(&["exec".as_ref(), "local".as_ref(), "--sh".as_ref(), "--".as_ref(), OsStr::from_bytes(b"ls \xff")]);
    assert_one_line_error(&out, 255, "a --sh line must be UTF-8");
}

#[test]
fn hosts_and_schemes_list_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("lab.json");
    std::fs::write(&inventory, r#"{"board": {"ip": "127.0.0.1", "term": "mem", "transfer": "mem"}}"#).unwrap();
    let out = tether(&["--json", "hosts", "--hosts", inventory.to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = value.as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["board", "local"]);

    let out = tether_with(&["hosts"], None, &[("TETHER_HOSTS", inventory.to_str().unwrap())]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("board  mem"), "{:?}", String::from_utf8_lossy(&out.stdout));

    let out = tether(&["--json", "schemes"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local = value.as_array().unwrap().iter().find(|s| s["scheme"] == "local").expect("local is linked");
    assert_eq!(local["options_table"], "local_options");
    assert!(local["capabilities"].as_array().unwrap().contains(&"files".into()));
    let ssh = value.as_array().unwrap().iter().find(|s| s["scheme"] == "ssh").expect("ssh is linked");
    assert_eq!(ssh["options_table"], "ssh_options");
}

#[test]
fn mem_hosts_are_reachable_by_url() {
    let out = tether(&["exec", "mem://cli-board", "--", "reboot"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(out.stderr, b"mem: reboot: command not found\n");
}

#[test]
fn unknown_host_is_one_line() {
    assert_one_line_error(&tether(&["exec", "nosuch", "--", "true"]), 255, "unknown host `nosuch`");
    assert_one_line_error(&tether(&["stat", "nosuch", "/"]), 1, "unknown host `nosuch` (known: local;");
}

#[test]
fn unknown_scheme_lists_registered_ones() {
    let out = tether(&["exec", "gopher://x", "--", "true"]);
    assert_one_line_error(
        &out,
        255,
        "unknown scheme `gopher` (registered: ftp, local, mem, nc, scp, sftp, ssh, telnet)",
    );
    let out = tether(&["--term", "carrier-pigeon", "exec", "local", "--", "true"]);
    assert_one_line_error(&out, 255, "unknown scheme `carrier-pigeon`");
}

#[test]
fn bad_url_is_one_line() {
    assert_one_line_error(&tether(&["exec", "ssh://[::1", "--", "true"]), 255, "`ssh://[::1`: invalid IPv6 address");
    assert_one_line_error(&tether(&["exec", "local://host/path", "--", "true"]), 255, "no path");
}

#[test]
fn missing_inventory_file_is_one_line() {
    let out = tether(&["--hosts", "/nonexistent/lab.json", "hosts"]);
    assert_one_line_error(&out, 1, "/nonexistent/lab.json");
}

#[test]
fn missing_local_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let out = tether(&["put", "local", "/nonexistent/source", dest.to_str().unwrap()]);
    assert_one_line_error(&out, 1, "not found: /nonexistent/source");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn missing_remote_path_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let out = tether(&["get", "local", "/nonexistent/remote", dest.to_str().unwrap()]);
    assert_one_line_error(&out, 1, "not found: /nonexistent/remote");
    assert!(entries(dir.path()).is_empty());
    assert_one_line_error(&tether(&["stat", "local", "/nonexistent/remote"]), 1, "not found: /nonexistent/remote");
}

#[test]
fn unwritable_destination_leaves_old_content() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"new").unwrap();
    // A file where a directory should be: unwritable for root as for anyone.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"old").unwrap();
    let out = tether(&["put", "local", src.to_str().unwrap(), blocker.join("dest").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("blocker/dest"), "{}", stderr(&out));
    let out = tether(&["get", "local", src.to_str().unwrap(), blocker.join("dest").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert_eq!(std::fs::read(&blocker).unwrap(), b"old");
    assert_eq!(entries(dir.path()), ["blocker", "src"]);
}

#[test]
fn bad_arguments_are_refused_before_connecting() {
    let out = tether(&["exec", "local", "--umask", "999", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    assert!(stderr(&out).contains("expected an octal mode"), "{}", stderr(&out));
}

#[test]
fn shell_runs_an_interactive_session_and_passes_its_exit_code() {
    let out = tether_with(&["shell", "local"], Some(b"echo shell-$((6*7))\nexit 5\n"), &[("SHELL", "/bin/sh")]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shell-42"), "{:?}", String::from_utf8_lossy(&out.stdout));
}
