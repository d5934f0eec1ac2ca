//! [`Dialer`]: how a transport reaches its target's address, straight over
//! TCP or through the SSH connection of the host's last hop.
//!
//! Every transport opens its byte stream through the dialer it is handed in
//! [`crate::ConnectRequest`], never with its own `TcpStream::connect`: that is
//! what makes a host behind a chain of jump hosts behave like one next door.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::{Error, ErrorKind, Result};
use crate::tunnel::{BoxStream, PortForward, Tunnel, forward_port};

mod quick_ack;

/// Reaches `host:port` for a transport: directly, or through a hop's tunnel.
#[derive(Clone)]
pub struct Dialer {
    route: Route,
}

#[derive(Clone)]
enum Route {
    Direct,
    Hop { id: String, tunnel: Arc<dyn Tunnel> },
}

/// A stream a [`Dialer`] opened.
pub enum Dialed {
    /// A TCP connection from this machine (socket options may be set on it).
    Tcp(TcpStream),
    /// A stream through a hop (an SSH `direct-tcpip` channel).
    Tunneled(BoxStream),
}

impl fmt::Debug for Dialed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dialed::Tcp(stream) => f.debug_tuple("Tcp").field(&stream.peer_addr().ok()).finish(),
            Dialed::Tunneled(_) => f.write_str("Tunneled"),
        }
    }
}

impl Dialed {
    /// The stream as a [`BoxStream`], whatever its kind. A TCP stream
    /// acknowledges every segment at once (see `quick_ack`); a stream
    /// through a hop rides the hop's own socket.
    pub fn boxed(self) -> BoxStream {
        match self {
            Dialed::Tcp(stream) => Box::new(quick_ack::QuickAck { inner: stream }),
            Dialed::Tunneled(stream) => stream,
        }
    }
}

/// A loopback address that leads to a destination, for libraries that need
/// to open a real `TcpStream` themselves (FTP data connections, …).
#[derive(Debug)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// The forward behind a tunnelled endpoint; it stops when dropped.
    _forward: Option<PortForward>,
}

impl Endpoint {
    /// The host to connect to (the destination itself, or `127.0.0.1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Dialer::direct()
    }
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.route {
            Route::Direct => f.write_str("Dialer(direct)"),
            Route::Hop { id, .. } => write!(f, "Dialer(through {id})"),
        }
    }
}

impl Dialer {
    /// Dials from this machine.
    pub fn direct() -> Self {
        Dialer { route: Route::Direct }
    }

    /// Dials through `tunnel`, the connection to the hop `hop_id`.
    pub fn through(hop_id: impl Into<String>, tunnel: Arc<dyn Tunnel>) -> Self {
        Dialer { route: Route::Hop { id: hop_id.into(), tunnel } }
    }

    /// The hop dialed through, if any.
    pub fn hop(&self) -> Option<&str> {
        match &self.route {
            Route::Direct => None,
            Route::Hop { id, .. } => Some(id),
        }
    }

    /// Opens a stream to `host:port`, failing with [`ErrorKind::Timeout`]
    /// after `limit`. Errors name the destination and the hop.
    pub async fn connect(&self, host: &str, port: u16, limit: Duration) -> Result<Dialed> {
        let what = self.describe(host, port);
        let attempt = async {
            match &self.route {
                Route::Direct => {
                    let stream = TcpStream::connect((host, port))
                        .await
                        .map_err(|e| Error::io("connect", e).with_context(what.clone()))?;
                    // Small packets (a channel open, a command line, a telnet
                    // keystroke) must not wait for Nagle's algorithm.
                    stream.set_nodelay(true).map_err(|e| Error::io("connect", e).with_context("set TCP_NODELAY"))?;
                    Ok(Dialed::Tcp(stream))
                }
                Route::Hop { tunnel, .. } => tunnel.open_stream(host, port).await.map(Dialed::Tunneled).map_err(|e| {
                    // Said as a connect by this host, keeping the hop's reason
                    // ("Connection refused", "administratively prohibited").
                    let why = e.context().map(|c| format!(": {c}")).unwrap_or_default();
                    Error::new(e.kind(), "connect").with_context(format!("{what}{why}"))
                }),
            }
        };
        tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| {
            Err(Error::new(ErrorKind::Timeout, "connect")
                .with_context(format!("{what}: no connection after {:.1} s", limit.as_secs_f64())))
        })
    }

    /// An address this machine can open a `TcpStream` to that leads to
    /// `host:port`: the destination itself when dialing directly, else a
    /// loopback port forwarded through the hop for as long as the returned
    /// [`Endpoint`] lives.
    pub async fn endpoint(&self, host: &str, port: u16) -> Result<Endpoint> {
        match &self.route {
            Route::Direct => Ok(Endpoint { host: host.to_string(), port, _forward: None }),
            Route::Hop { tunnel, .. } => {
                let forward = forward_port(tunnel.clone(), host, port).await?;
                let local: SocketAddr = forward.local_addr();
                Ok(Endpoint { host: local.ip().to_string(), port: local.port(), _forward: Some(forward) })
            }
        }
    }

    fn describe(&self, host: &str, port: u16) -> String {
        match &self.route {
            Route::Direct => format!("TCP connect to {host}:{port}"),
            Route::Hop { id, .. } => format!("{host}:{port} through hop {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryHost;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn direct_reaches_a_listener_and_names_a_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"hello").await.unwrap();
        });
        let dialed = Dialer::direct().connect("127.0.0.1", port, Duration::from_secs(5)).await.unwrap();
        assert!(matches!(dialed, Dialed::Tcp(_)));
        let mut text = String::new();
        dialed.boxed().read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello");
        accept.await.unwrap();

        // The listener is gone: the port now refuses.
        let err = Dialer::direct().connect("127.0.0.1", port, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }

    #[tokio::test]
    async fn through_a_hop_uses_its_tunnel_and_names_it() {
        let hop = MemoryHost::new();
        hop.serve("10.1.1.1", 7, |mut stream| async move {
            let _ = stream.write_all(b"echo").await;
        });
        let dialer = Dialer::through("jump", Arc::new(hop));
        assert_eq!(dialer.hop(), Some("jump"));
        assert_eq!(format!("{dialer:?}"), "Dialer(through jump)");
        let mut text = String::new();
        let dialed = dialer.connect("10.1.1.1", 7, Duration::from_secs(5)).await.unwrap();
        assert!(matches!(dialed, Dialed::Tunneled(_)));
        dialed.boxed().read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "echo");

        // A loopback endpoint for libraries that open their own sockets.
        let endpoint = dialer.endpoint("10.1.1.1", 7).await.unwrap();
        assert_eq!(endpoint.host(), "127.0.0.1");
        let mut socket = TcpStream::connect((endpoint.host(), endpoint.port())).await.unwrap();
        let mut text = String::new();
        socket.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "echo");

        // The memory tunnel refuses every destination nobody serves.
        let err = dialer.connect("10.9.9.9", 22, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("10.9.9.9:22 through hop jump"), "{err}");
    }
}
