//! Shared set-up: a private sshd and a host configuration that reaches it.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use tether_core::{ConnectRequest, Connection, Credential, HostConfig, OptionSource, Result};
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
