//! In-process Telnet servers for the tests that real servers cannot stage:
//! a UART console ([`console`]), a fake POSIX shell that misbehaves on cue
//! ([`shell`]), and the server side of the protocol they share ([`telnet`]).
//! Every server listens on 127.0.0.1, port 0.

#![allow(dead_code)]

pub mod console;
pub mod shell;
pub mod telnet;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_core::{Credential, Host, HostConfig, OptionSource};

// Linked, so the registry knows `telnet`.
use tether_transport_telnet as _;

/// A host reaching `addr` with `telnet_options` set from `options`, logging
/// in (when `login` is set) as `root` with `password`.
pub fn host(addr: SocketAddr, password: &str, options: &[(&str, serde_json::Value)]) -> Arc<Host> {
    let mut config = HostConfig::new("dut", "telnet", "telnet");
    config.address = Some(addr.ip().to_string());
    config.port = Some(addr.port());
    config.credentials.push(Credential { login: "root".into(), password: password.to_string().into() });
    for (key, value) in options {
        config.options.set("telnet_options", key, value, OptionSource::Default).unwrap();
    }
    Arc::new(Host::new(config).unwrap())
}

/// Runs `test`, failing it if it takes longer than `limit` (a hang must
/// fail, not block CI).
pub async fn bounded<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, test).await {
        Ok(value) => value,
        Err(_) => panic!("the test did not finish within {limit:?}"),
    }
}
