//! The transport conformance suite against a real OpenSSH sshd.

mod common;

use std::sync::Arc;

use tether_core::{Command, Transport};
use tether_test_servers::Sshd;

/// A transport that keeps its sshd alive as long as it lives.
#[derive(Debug)]
struct Guarded {
    transport: Arc<dyn Transport>,
    _sshd: Sshd,
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl Transport for Guarded {
    async fn spawn(&self, command: &Command) -> tether_core::Result<tether_core::Process> {
        self.transport.spawn(command).await
    }
    async fn exec(&self, command: &Command) -> tether_core::Result<tether_core::Output> {
        self.transport.exec(command).await
    }
}

async fn transport() -> Arc<dyn Transport> {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let connection = common::connect(common::host_for(&sshd, &known_hosts)).await.expect("connect");
    let transport = connection.transport().expect("ssh runs commands");
    Arc::new(Guarded { transport, _sshd: sshd, _dir: dir })
}

tether_core::transport_conformance!(transport);
