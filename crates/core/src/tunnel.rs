//! Streams and port forwards through a host.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Copy buffers of a relayed connection: tokio's default (8 KiB) would cut
/// every SSH channel packet (up to 32 KiB) into four writes, and larger
/// reads let one wake-up carry several.
const RELAY_BUFFER: usize = 256 << 10;

/// Relays bytes both ways between `a` and `b` until both directions have
/// ended (a half-close travels through), then logs the outcome under `name`.
/// Every forward of every transport relays through this.
pub async fn relay<A, B>(a: &mut A, b: &mut B, name: &str)
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    match tokio::io::copy_bidirectional_with_sizes(a, b, RELAY_BUFFER, RELAY_BUFFER).await {
        Ok((sent, received)) => tracing::debug!(forward = %name, sent, received, "forwarded connection ended"),
        Err(err) => tracing::debug!(forward = %name, %err, "forwarded connection failed"),
    }
}

/// The next connection on `listener`, with `TCP_NODELAY` set. A failed
/// accept (out of descriptors, say) is logged under `name` and retried after
/// a pause instead of spinning.
pub async fn accept(listener: &TcpListener, name: &str) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((inbound, peer)) => {
                tracing::debug!(forward = %name, %peer, "connection accepted");
                let _ = inbound.set_nodelay(true);
                return inbound;
            }
            Err(err) => {
                tracing::warn!(forward = %name, %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A byte stream to some `host:port` as seen from the tunnelling host.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// Reaches other hosts through this one.
#[async_trait]
pub trait Tunnel: Send + Sync + fmt::Debug {
    /// Opens a stream to `host:port`, connected from the tunnelling host.
    async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream>;
}

/// A running local port forward; dropping it stops the listener (streams
/// already accepted run to their end).
pub struct PortForward {
    local_addr: SocketAddr,
    target: String,
    task: JoinHandle<()>,
}

impl PortForward {
    /// The loopback address to connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for PortForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortForward").field("local_addr", &self.local_addr).field("target", &self.target).finish()
    }
}

/// Listens on an ephemeral loopback port and connects every accepted
/// connection to `host:port` through `tunnel`'s [`Tunnel::open_stream`], for
/// libraries that need a real `TcpStream` (FTP data connections, …). The
/// forward lasts as long as the returned handle.
pub async fn forward_port(tunnel: Arc<dyn Tunnel>, host: &str, port: u16) -> Result<PortForward> {
    PortForward::listen(tunnel, SocketAddr::from(([127, 0, 0, 1], 0)), host, port).await
}

impl PortForward {
    /// Like [`forward_port`], on a chosen local address: port 0 picks a free
    /// port ([`PortForward::port`] tells which). Binding an address that is
    /// in use fails with the address named. Any tunnel works: this is how
    /// `tether forward` serves every scheme.
    pub async fn listen(tunnel: Arc<dyn Tunnel>, listen: SocketAddr, host: &str, port: u16) -> Result<PortForward> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io("forward_port", e).with_context(format!("bind {listen}")))?;
        let local_addr = listener.local_addr().map_err(|e| Error::io("forward_port", e))?;
        let target = format!("{host}:{port}");
        let (host, task_target) = (host.to_string(), target.clone());
        let task = tokio::spawn(async move {
            loop {
                let mut inbound = accept(&listener, &task_target).await;
                let tunnel = tunnel.clone();
                let host = host.clone();
                let target = task_target.clone();
                tokio::spawn(async move {
                    match tunnel.open_stream(&host, port).await {
                        Ok(mut outbound) => relay(&mut inbound, &mut outbound, &target).await,
                        Err(err) => tracing::warn!(%target, %err, "port forward could not open its stream"),
                    }
                });
            }
        });
        Ok(PortForward { local_addr, target, task })
    }
}
