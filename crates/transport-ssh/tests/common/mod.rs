//! Shared set-up: a private sshd and a host configuration that reaches it.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use tether_core::conformance::{LoopbackServices, Subject};
use tether_core::{ConnectRequest, Connection, Credential, Host, HostConfig, OptionSource, Result};
use tether_test_servers::Sshd;

/// A host for `sshd` with key auth and `known_hosts` as given.
pub fn host_for(sshd: &Sshd, known_hosts: &Path) -> HostConfig {
    let mut host = HostConfig::new("sshd", "ssh", "sftp");
    host.address = Some("127.0.0.1".into());
    host.port = Some(sshd.port());
    host.user = Some(sshd.user().to_string());
    let key = sshd.client_key_path().display().to_string();
    host.options.set("ssh_options", "client_keys", vec![key], OptionSource::Api).unwrap();
    host.options.set("ssh_options", "known_hosts", vec![known_hosts.display().to_string()], OptionSource::Api).unwrap();
    host
}

/// Adds a password credential for the host's login.
pub fn with_password(mut host: HostConfig, password: &str) -> HostConfig {
    let login = host.user.clone().unwrap();
    host.credentials.push(Credential { login, password: password.to_string().into() });
    host
}

/// Connects through the registered plugin's connect function.
pub async fn connect(host: HostConfig) -> Result<Arc<dyn Connection>> {
    (tether_transport_ssh::PLUGIN.connect)(ConnectRequest::direct(Arc::new(host), "ssh")).await
}

/// Starts sshd off the async workers (it blocks while sshd starts).
pub async fn start(builder: tether_test_servers::SshdBuilder) -> Sshd {
    tokio::task::spawn_blocking(move || builder.start()).await.unwrap().expect("start sshd")
}

/// The conformance subject for `scheme` (`ssh`, `sftp` or `scp`) on a fresh
/// private sshd: a host whose `term` and `transfer` are that scheme, a
/// scratch directory on the server (this machine), services on loopback
/// for the tunnel, and severing by killing every sshd process.
pub async fn subject(scheme: &str) -> Subject {
    let sshd = start(Sshd::builder()).await;
    let mut config = host_for(&sshd, sshd.known_hosts_path());
    config.term = scheme.to_string();
    config.transfer = scheme.to_string();
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_str().expect("UTF-8 temporary directory").to_string();
    let host = Arc::new(Host::new(config).unwrap());
    let mut subject = Subject::of_host(host, scratch).with_local_symlinks();
    subject.services = Some(Arc::new(LoopbackServices::default()));
    let sshd = Arc::new(std::sync::Mutex::new(sshd));
    let server = sshd.clone();
    subject.sever = Some(Box::new(move || {
        server.lock().unwrap_or_else(|p| p.into_inner()).kill().expect("kill sshd");
    }));
    subject.guard = Box::new((sshd, dir));
    subject
}
