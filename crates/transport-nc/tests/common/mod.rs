//! What the nc tests share: hosts, transfers, and the checks that nothing
//! is left behind.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use tether_core::conformance::Subject;
use tether_core::{Dialer, FileTransfer, Host, HostConfig, OptionSource, PutOptions};
use tether_transport_nc::{Flavour, NcFiles, NcOptions};
// Linked through their registry entries.
use tether_test_servers::Sshd;
use tether_transport_local as _;
use tether_transport_ssh as _;

/// The netcat commands of the four flavours, as Debian installs them.
pub const FLAVOURS: &[(&str, Flavour)] = &[
    ("nc.openbsd", Flavour::OpenBsd),
    ("nc.traditional", Flavour::Traditional),
    ("ncat", Flavour::Ncat),
    ("busybox nc", Flavour::Busybox),
];

/// A host whose commands run here and whose files go through `nc`.
pub fn local_host(options: &[(&str, serde_json::Value)]) -> Host {
    let mut config = HostConfig::new("localhost", "local", "nc");
    for (key, value) in options {
        config.options.set("nc_options", key, value.clone(), OptionSource::Api).unwrap();
    }
    Host::new(config).unwrap()
}

pub async fn files_of(host: &Host) -> Arc<dyn FileTransfer> {
    host.files().await.expect("nc connects")
}

/// `nc` files over a local shell, built by hand.
pub fn local_nc(options: NcOptions) -> NcFiles {
    let local = Arc::new(tether_transport_local::LocalHost::default()).into_connection();
    NcFiles::new(local.transport().expect("local runs commands"), options, Dialer::direct(), "127.0.0.1")
}

/// Options with `exec_name` set.
pub fn named(exec_name: &str) -> NcOptions {
    NcOptions { exec_name: exec_name.to_string(), ..Default::default() }
}

pub async fn put(files: &dyn FileTransfer, path: &Path, data: &[u8]) -> tether_core::Result<u64> {
    let mut reader = data;
    files.put(&mut reader, path, &PutOptions::default()).await
}

pub async fn get(files: &dyn FileTransfer, path: &Path) -> tether_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    files.get(path, &mut out).await?;
    Ok(out)
}

/// The names in `dir`, sorted.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Netcat listeners running on this machine (any flavour, any name the
/// tests give it), as `pgrep -a` lists them.
pub fn listeners() -> Vec<String> {
    let out = std::process::Command::new("pgrep").args(["-a", "-f", " -l( |$)"]).output().unwrap();
    let names = ["nc", "nc.openbsd", "nc.traditional", "ncat", "busybox"];
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let argv0 = line.split_whitespace().nth(1).unwrap_or("");
            names.contains(&argv0.rsplit('/').next().unwrap_or(""))
        })
        .map(str::to_string)
        .collect()
}

/// No netcat listener of this machine is left (polled: the clean-up of a
/// failed transfer may run a moment after the error). Tests that call it
/// hold [`serial`], so no other test's listener is running.
pub fn assert_no_listener() {
    for _ in 0..100 {
        if listeners().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("netcat listeners are still running: {:?}", listeners());
}

/// One test at a time, for the tests that look for leftover listeners.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Sets `nc_options` on a host configuration.
pub fn with_nc_options(config: &mut HostConfig, options: &[(&str, serde_json::Value)]) {
    for (key, value) in options {
        config.options.set("nc_options", key, value.clone(), OptionSource::Api).unwrap();
    }
}

/// The conformance subject: `nc` over `local`, in a scratch directory.
pub async fn local_subject(options: &[(&str, serde_json::Value)]) -> Subject {
    let mut config = HostConfig::new("localhost", "local", "nc");
    with_nc_options(&mut config, options);
    subject_for(config, Box::new(()))
}

fn subject_for(config: HostConfig, server: Box<dyn std::any::Any + Send + Sync>) -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_str().expect("UTF-8 temporary directory").to_string();
    let mut subject = Subject::of_host(Arc::new(Host::new(config).unwrap()), scratch).with_local_symlinks();
    subject.guard = Box::new((server, dir));
    subject
}

/// Starts a private sshd (off the async workers: it blocks while starting).
pub async fn start_sshd(builder: tether_test_servers::SshdBuilder) -> Sshd {
    tokio::task::spawn_blocking(move || builder.start()).await.unwrap().expect("start sshd")
}

/// A host reaching `sshd` (key login, its own known_hosts), whose files go
/// through `nc`.
pub fn ssh_host_config(sshd: &Sshd) -> HostConfig {
    let mut config = HostConfig::new("sshd", "ssh", "nc");
    config.address = Some("127.0.0.1".into());
    config.port = Some(sshd.port());
    config.user = Some(sshd.user().to_string());
    let key = sshd.client_key_path().display().to_string();
    config.options.set("ssh_options", "client_keys", vec![key], OptionSource::Api).unwrap();
    let known_hosts = sshd.known_hosts_path().display().to_string();
    config.options.set("ssh_options", "known_hosts", vec![known_hosts], OptionSource::Api).unwrap();
    config
}

/// The conformance subject: `nc` over `ssh` to a fresh private sshd.
pub async fn ssh_subject(options: &[(&str, serde_json::Value)]) -> Subject {
    let sshd = start_sshd(Sshd::builder()).await;
    let mut config = ssh_host_config(&sshd);
    with_nc_options(&mut config, options);
    subject_for(config, Box::new(sshd))
}
