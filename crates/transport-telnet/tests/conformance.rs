//! The conformance suite against a real busybox telnetd with a login: the
//! exec checks, held to what `terminal-io` allows; files and tunnels must
//! be refused, as `telnet` declares neither.

mod common;

async fn subject() -> tether_core::conformance::Subject {
    common::subject().await
}

tether_core::conformance!(subject);
