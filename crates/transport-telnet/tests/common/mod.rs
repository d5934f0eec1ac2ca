//! Shared set-up: real telnet servers on loopback, and hosts that reach them.

#![allow(dead_code)]

use std::sync::Arc;

use tether_core::conformance::Subject;
use tether_core::{Credential, Host, HostConfig, OptionSource};
use tether_test_servers::{Telnetd, TelnetdBuilder, TelnetdKind};

// Linked, so the registry knows `telnet`.
use tether_transport_telnet as _;

/// The password of the throwaway logins.
pub const PASSWORD: &str = "tether-telnet-test";

/// Starts a server on a blocking thread (the harness waits for it).
pub async fn start(builder: TelnetdBuilder) -> Telnetd {
    tokio::task::spawn_blocking(move || builder.start()).await.unwrap().unwrap_or_else(|e| panic!("{e}"))
}

/// A busybox telnetd that asks for root's login.
pub async fn busybox_with_login() -> Telnetd {
    start(Telnetd::builder(TelnetdKind::Busybox).login("root", PASSWORD)).await
}

/// A busybox telnetd that starts a shell at once.
pub async fn busybox_shell() -> Telnetd {
    start(Telnetd::builder(TelnetdKind::Busybox)).await
}

/// A host for `telnetd`, logging in as root with `password` when the
/// server asks (`login` in `telnet_options` follows whether it does).
pub fn host_for(telnetd: &Telnetd, login: bool, password: &str) -> HostConfig {
    let mut config = HostConfig::new("dut", "telnet", "telnet");
    config.address = Some(telnetd.ip().to_string());
    config.port = Some(telnetd.port());
    config.credentials.push(Credential { login: "root".into(), password: password.to_string().into() });
    set(&mut config, "login", login);
    config
}

/// Sets `telnet_options.key`.
pub fn set(config: &mut HostConfig, key: &str, value: impl serde::Serialize) {
    config.options.set("telnet_options", key, value, OptionSource::Default).unwrap();
}

/// The conformance subject: a busybox telnetd with a login, two sessions
/// (so a command can run while another waits).
pub async fn subject() -> Subject {
    let telnetd = busybox_with_login().await;
    let mut config = host_for(&telnetd, true, PASSWORD);
    set(&mut config, "max_sessions", 2);
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_str().expect("UTF-8 temporary directory").to_string();
    let host = Arc::new(Host::new(config).unwrap());
    let mut subject = Subject::of_host(host, scratch);
    let telnetd = Arc::new(std::sync::Mutex::new(telnetd));
    let server = telnetd.clone();
    subject.sever = Some(Box::new(move || {
        server.lock().unwrap_or_else(|p| p.into_inner()).kill().expect("kill telnetd");
    }));
    subject.guard = Box::new((telnetd, dir));
    subject
}
