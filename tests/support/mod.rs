//! What the test binaries that drive the `tether` executable share.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `tether --hosts HOSTS ARGS…` as a user runs it, with nothing on stdin.
pub fn tether(hosts: &Path, args: &[&str]) -> Output {
    tether_command(hosts, args).stdin(Stdio::null()).output().expect("the tether binary runs")
}

/// The same command, to be spawned: none of the caller's `TETHER_*` or
/// `RUST_LOG` settings leak in, and it runs in the temporary directory.
pub fn tether_command(hosts: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .arg("--hosts")
        .arg(hosts)
        .args(args)
        .env_remove("TETHER_HOSTS")
        .env_remove("TETHER_SETTINGS")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir());
    command
}
