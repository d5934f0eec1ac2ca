//! Streams through the host: [`Tunnel`] over `direct-tcpip` channels, and
//! the forwards of `ssh_options` (`local_forwards`, `remote_forwards`,
//! `socks_forwards`) applied right after connect.

use std::sync::Arc;

use async_trait::async_trait;
use russh::client::Msg;
use tether_core::{BoxStream, Error, ErrorKind, Result, Tunnel};

use crate::connect::SshSession;
use crate::options::SshOptions;

#[async_trait]
impl Tunnel for SshSession {
    async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream> {
        let _ = (host, port);
        Err(Error::new(ErrorKind::Unsupported, "open stream").with_context("ssh tunnels are not implemented yet"))
    }
}

/// Where connections the server forwards to us (`remote_forwards`) go,
/// shared with the connection's event handler.
#[derive(Debug, Default)]
pub(crate) struct RemoteRoutes {}

/// The forwards running for one connection; dropping it stops them.
#[derive(Debug, Default)]
pub(crate) struct Forwards {}

/// Starts the forwards `options` asks for on `session`.
pub(crate) async fn apply(session: &Arc<SshSession>, options: &SshOptions) -> Result<Forwards> {
    let _ = session;
    if options.has_forwards() {
        return Err(Error::new(ErrorKind::Unsupported, "connect").with_context(
            "ssh_options local_forwards/remote_forwards/socks_forwards are not applied yet; remove them",
        ));
    }
    Ok(Forwards::default())
}

/// A connection the server opened for one of our remote forwards.
pub(crate) async fn accept_forwarded(
    routes: &RemoteRoutes,
    channel: russh::Channel<Msg>,
    connected_address: &str,
    connected_port: u32,
    reply: russh::client::ChannelOpenHandle,
) {
    let _ = (routes, channel, connected_address, connected_port);
    reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
}
