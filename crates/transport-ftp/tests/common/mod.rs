//! Shared set-up: real vsftpd servers on loopback, and hosts that reach them.

#![allow(dead_code)]

use std::sync::Arc;

use serde_json::json;
use tether_core::conformance::Subject;
use tether_core::{Credential, Host, HostConfig, OptionSource};
use tether_test_servers::{Vsftpd, VsftpdBuilder};

// Linked, so the registry knows `ftp`.
use tether_transport_ftp as _;

/// Starts a server on a blocking thread (the harness waits for it).
pub async fn start(builder: VsftpdBuilder) -> Vsftpd {
    tokio::task::spawn_blocking(move || builder.start()).await.unwrap().unwrap_or_else(|e| panic!("{e}"))
}

/// A host for `vsftpd`, logging in as its test user; with FTPS when the
/// server requires it, trusting the server's own certificate.
pub fn host_for(vsftpd: &Vsftpd) -> HostConfig {
    let mut config = HostConfig::new("ftpbox", "ftp", "ftp");
    config.address = Some(vsftpd.ip().to_string());
    config.port = Some(vsftpd.port());
    config.credentials.push(Credential { login: vsftpd.user().into(), password: vsftpd.password().to_string().into() });
    if let Some(ca_file) = vsftpd.ca_file() {
        set(&mut config, "ssl", true);
        set(&mut config, "extra", json!({ "ca_file": ca_file }));
    }
    config
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
    let config = host_for(&vsftpd);
    let scratch = vsftpd.scratch_dir().to_str().expect("UTF-8 scratch directory").to_string();
    let host = Arc::new(Host::new(config).unwrap());
    let mut subject = Subject::of_host(host, scratch).with_local_symlinks();
    let vsftpd = Arc::new(std::sync::Mutex::new(vsftpd));
    let server = vsftpd.clone();
    subject.sever = Some(Box::new(move || {
        server.lock().unwrap_or_else(|p| p.into_inner()).kill().expect("kill vsftpd");
    }));
    subject.guard = Box::new(vsftpd);
    subject
}
