//! Streams through the host: [`Tunnel`] over `direct-tcpip` channels, and
//! the forwards of `ssh_options` (`local_forwards`, `remote_forwards`,
//! `socks_forwards`) applied right after connect.
//!
//! Every stream is a `ChannelStream`: a small task (the pump) drains the
//! channel's messages, so the stream notices the connection dying even while
//! its owner only writes, and a write waiting for window space fails instead
//! of waiting forever.

use std::time::Instant;

use async_trait::async_trait;
use tether_core::{BoxStream, Result, Tunnel};

use crate::connect::SshSession;
use crate::error::{channel_open, timed};

mod forwards;
mod socks;

use crate::channel::ChannelStream;
use forwards::host_port;
pub use forwards::{ActiveForward, ForwardKind};
pub(crate) use forwards::{Forwards, RemoteRoutes, accept_forwarded, apply};

#[async_trait]
impl Tunnel for SshSession {
    async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream> {
        Ok(Box::new(self.open_direct(host, port).await?))
    }
}

impl SshSession {
    /// A `direct-tcpip` channel to `host:port`, connected from the server.
    async fn open_direct(&self, host: &str, port: u16) -> Result<ChannelStream> {
        let operation = "open stream";
        self.ensure_open(operation)?;
        let what = format!("{} through {}", host_port(host, port), self.target);
        let limit = self.options.connect_timeout()?;
        let step = format!("direct-tcpip channel to {what}");
        let started = Instant::now();
        let opened = timed(operation, &step, limit, async {
            // The originator is informational for sshd (logged, never dialled).
            Ok(self.handle.channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0).await)
        })
        .await?;
        match opened {
            Ok(channel) => Ok(ChannelStream::new(channel, what)),
            Err(err) => {
                let description = match err {
                    russh::Error::ChannelOpenFailure(_) => self.remote_routes.open_failure_since(started).await,
                    _ => None,
                };
                Err(channel_open(operation, &what, err, description))
            }
        }
    }
}
