//! Shared set-up: real vsftpd and ProFTPD servers on loopback, and hosts
//! that reach them.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tether_core::conformance::Subject;
use tether_core::{Credential, Host, HostConfig, OptionSource};
use tether_test_servers::{HarnessError, Proftpd, ProftpdBuilder, Vsftpd, VsftpdBuilder};

// Linked, so the registry knows `ftp`.
use tether_transport_ftp as _;

/// Starts a vsftpd on a blocking thread (the harness waits for it).
pub async fn start(builder: VsftpdBuilder) -> Vsftpd {
    started(move || builder.start()).await
}

/// Starts a ProFTPD on a blocking thread (the harness waits for it).
pub async fn start_proftpd(builder: ProftpdBuilder) -> Proftpd {
    started(move || builder.start()).await
}

async fn started<T: Send + 'static>(start: impl FnOnce() -> Result<T, HarnessError> + Send + 'static) -> T {
    tokio::task::spawn_blocking(start).await.unwrap().unwrap_or_else(|e| panic!("{e}"))
}

/// A host for the FTP server at `ip:port`, logging in as `user`.
fn host_at(ip: Ipv4Addr, port: u16, user: &str, password: &str) -> HostConfig {
    let mut config = HostConfig::new("ftpbox", "ftp", "ftp");
    config.address = Some(ip.to_string());
    config.port = Some(port);
    config.credentials.push(Credential { login: user.into(), password: password.to_string().into() });
    config
}

/// A host for `vsftpd`, logging in as its test user; with FTPS when the
/// server requires it, trusting the server's own certificate.
pub fn host_for(vsftpd: &Vsftpd) -> HostConfig {
    let mut config = host_at(vsftpd.ip(), vsftpd.port(), vsftpd.user(), vsftpd.password());
    if let Some(ca_file) = vsftpd.ca_file() {
        set(&mut config, "ssl", true);
        set(&mut config, "extra", json!({ "ca_file": ca_file }));
    }
    config
}

/// A host for `proftpd`, logging in as its test user.
pub fn proftpd_host_for(proftpd: &Proftpd) -> HostConfig {
    host_at(proftpd.ip(), proftpd.port(), proftpd.user(), proftpd.password())
}

/// Sets `ftp_options.key`.
pub fn set(config: &mut HostConfig, key: &str, value: impl serde::Serialize) {
    config.options.set("ftp_options", key, value, OptionSource::Default).unwrap();
}

/// The conformance subject: a vsftpd (plain, or FTPS with `tls`) whose
/// scratch directory the test user owns.
pub async fn subject(tls: bool) -> Subject {
    let builder = if tls { Vsftpd::builder().tls() } else { Vsftpd::builder() };
    let vsftpd = start(builder).await;
    let (config, scratch) = (host_for(&vsftpd), vsftpd.scratch_dir());
    subject_of(vsftpd, config, scratch, Vsftpd::kill)
}

/// The conformance subject on ProFTPD, which answers `MLSD`, `MLST` and
/// `MFMT`: the transport's machine-readable listing path.
pub async fn proftpd_subject() -> Subject {
    let proftpd = start_proftpd(Proftpd::builder()).await;
    let (config, scratch) = (proftpd_host_for(&proftpd), proftpd.scratch_dir());
    subject_of(proftpd, config, scratch, Proftpd::kill)
}

/// A subject for `config` on `server` (kept alive with the subject), in
/// `scratch`, which `kill` severs.
fn subject_of<S: Send + 'static>(
    server: S,
    config: HostConfig,
    scratch: PathBuf,
    kill: fn(&mut S) -> Result<(), HarnessError>,
) -> Subject {
    let scratch = scratch.to_str().expect("UTF-8 scratch directory").to_string();
    let host = Arc::new(Host::new(config).unwrap());
    let mut subject = Subject::of_host(host, scratch).with_local_symlinks();
    let server = Arc::new(Mutex::new(server));
    let severed = server.clone();
    subject.sever = Some(Box::new(move || {
        kill(&mut severed.lock().unwrap_or_else(|p| p.into_inner())).expect("kill the FTP server");
    }));
    subject.guard = Box::new(server);
    subject
}
