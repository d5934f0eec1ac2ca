//! Streams through the host: [`Tunnel`] over `direct-tcpip` channels, and
//! the forwards of `ssh_options` (`local_forwards`, `remote_forwards`,
//! `socks_forwards`) applied right after connect.
//!
//! Every stream is a `ChannelStream`: a small task (the pump) drains the
//! channel's messages, so the stream notices the connection dying even while
//! its owner only writes, and a write waiting for window space fails instead
//! of waiting forever.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tether_core::{BoxStream, Error, ErrorKind, Result, Tunnel};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::connect::SshSession;
use crate::error::{channel_open, timed};
use crate::options::SshOptions;

/// The whole SOCKS handshake (greeting and request) must arrive within this.
const SOCKS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a stream holds for a reader that is behind. russh widens a
/// channel's window as data arrives, not as it is read, so the only
/// backpressure is to stop taking the channel's messages, which holds up
/// every channel of the connection; this is how much a reader can leave
/// unread before that happens (as for a command's output).
const STREAM_BUFFER: usize = 8 << 20;

/// Copy buffers of a forward: a channel packet is at most 32 KiB, and larger
/// reads let one wake-up carry several.
const RELAY_BUFFER: usize = 256 << 10;

/// How long a refused open waits for the server's description of the
/// refusal: russh wakes the opener just before it hands the description to
/// the event handler.
const OPEN_FAILURE_WAIT: Duration = Duration::from_millis(250);

/// How long a remote forward's cancellation may take when the connection
/// closes.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

#[async_trait]
impl Tunnel for SshSession {
    async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream> {
        Ok(Box::new(self.open_direct(host, port).await?))
    }
}

impl SshSession {
    /// The forwards of `ssh_options` running on this connection, with the
    /// ports actually bound (a `listen_port` of 0 picks one). Empty once the
    /// connection is closed.
    pub fn forwards(&self) -> Vec<ActiveForward> {
        lock(&self.remote_routes.active).clone()
    }

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

/// One of the kinds of forwards `ssh_options` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKind {
    /// `local_forwards` (`ssh -L`): a local listener, connections go out through the host.
    Local,
    /// `remote_forwards` (`ssh -R`): a listener on the host, connections come back here.
    Remote,
    /// `socks_forwards` (`ssh -D`): a local SOCKS5 proxy going out through the host.
    Socks,
}

/// A forward running on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveForward {
    /// Which list of `ssh_options` it comes from.
    pub kind: ForwardKind,
    /// Its index in that list.
    pub index: usize,
    /// The address listened on: a local address for `Local` and `Socks`
    /// (one entry per address a name such as `localhost` resolved to), the
    /// host's address as requested for `Remote` (empty: all of them).
    pub listen_host: String,
    /// The port actually bound.
    pub listen_port: u16,
    /// Where connections go; `None` for SOCKS (each request names its own).
    pub destination: Option<(String, u16)>,
}

/// The forwards' state shared with the session and its event handler: where
/// connections the server forwards to us (`remote_forwards`) go, the
/// forwards running, and the server's reason for the last refused channel.
#[derive(Debug, Default)]
pub(crate) struct RemoteRoutes {
    routes: Mutex<Vec<Route>>,
    active: Mutex<Vec<ActiveForward>>,
    /// Connections of remote forwards, aborted when the forwards stop.
    connections: Mutex<JoinSet<()>>,
    open_failure: Mutex<Option<(Instant, String)>>,
    open_failure_noted: tokio::sync::Notify,
}

/// One remote forward: what the server listens on, where its connections go.
#[derive(Debug, Clone)]
struct Route {
    listen_host: String,
    listen_port: u32,
    dest_host: String,
    dest_port: u16,
    connect_timeout: Duration,
    name: Arc<str>,
}

impl RemoteRoutes {
    /// Keeps the description the server gave for a refused channel open
    /// (russh reports only the reason code to the opener); the connection's
    /// event handler calls this from `channel_open_failure`. Best effort:
    /// with several opens failing at once, one may report the other's words.
    pub(crate) fn note_open_failure(&self, description: &str) {
        *lock(&self.open_failure) = Some((Instant::now(), description.to_string()));
        self.open_failure_noted.notify_waiters();
    }

    /// The description of a refusal noted since `started`, waiting briefly
    /// for it; `None` when the server gave none (or nobody notes them).
    async fn open_failure_since(&self, started: Instant) -> Option<String> {
        let deadline = tokio::time::Instant::now() + OPEN_FAILURE_WAIT;
        loop {
            let noted = self.open_failure_noted.notified();
            tokio::pin!(noted);
            // Registered before looking, so a note in between is not missed.
            noted.as_mut().enable();
            {
                let mut slot = lock(&self.open_failure);
                if slot.as_ref().is_some_and(|(at, _)| *at >= started) {
                    return slot.take().map(|(_, description)| description);
                }
            }
            if tokio::time::timeout_at(deadline, noted).await.is_err() {
                return None;
            }
        }
    }

    fn add_route(&self, route: Route) {
        lock(&self.routes).push(route);
    }

    fn remove_route(&self, listen_host: &str, listen_port: u32) {
        lock(&self.routes).retain(|r| !(r.listen_host == listen_host && r.listen_port == listen_port));
    }

    /// The route for a connection to `address:port` on the server. The port
    /// decides (sshd reports the address as we asked for it, which may be a
    /// name or empty); the address only separates two forwards of one port.
    fn find(&self, address: &str, port: u32) -> Option<Route> {
        let routes = lock(&self.routes);
        let mut candidates = routes.iter().filter(|r| r.listen_port == port);
        let first = candidates.next()?;
        match candidates.next() {
            None => Some(first.clone()),
            Some(_) => routes.iter().find(|r| r.listen_port == port && r.listen_host == address).cloned(),
        }
    }

    fn spawn_connection(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut connections = lock(&self.connections);
        // Finished connections are reaped here rather than by a task of their own.
        while connections.try_join_next().is_some() {}
        connections.spawn(work);
    }

    fn stop(&self) {
        lock(&self.routes).clear();
        lock(&self.active).clear();
        lock(&self.connections).abort_all();
    }
}

/// The forwards running for one connection; dropping it stops them: local
/// listeners and their connections end, remote forwards are cancelled on the
/// server (best effort) and their connections end.
#[derive(Default)]
pub(crate) struct Forwards {
    /// Listener tasks; each owns its connections, which end with it.
    tasks: Vec<JoinHandle<()>>,
    /// `(listen_host, port)` of each remote forward, to cancel.
    remote: Vec<(String, u32)>,
    session: Weak<SshSession>,
    routes: Option<Arc<RemoteRoutes>>,
}

impl fmt::Debug for Forwards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwards").field("listeners", &self.tasks.len()).field("remote", &self.remote).finish()
    }
}

impl Drop for Forwards {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(routes) = &self.routes {
            routes.stop();
        }
        let remote = std::mem::take(&mut self.remote);
        if remote.is_empty() {
            return;
        }
        let (Some(session), Ok(runtime)) = (self.session.upgrade(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        if !session.is_alive() {
            return;
        }
        // The session may be shutting down right behind us; a lost race only
        // means the server drops the listeners with the connection anyway.
        runtime.spawn(async move {
            for (host, port) in remote {
                let cancel = session.handle.cancel_tcpip_forward(host.clone(), port);
                match tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
                    Ok(Ok(())) => tracing::debug!(%host, port, "remote forward cancelled"),
                    Ok(Err(err)) => tracing::debug!(%host, port, %err, "remote forward not cancelled"),
                    Err(_) => tracing::debug!(%host, port, "remote forward cancellation unanswered"),
                }
            }
        });
    }
}

/// Starts the forwards `options` asks for on `session`. A forward that
/// cannot start fails the whole call with an error naming it; the ones
/// already started stop when the partial [`Forwards`] drops.
pub(crate) async fn apply(session: &Arc<SshSession>, options: &SshOptions) -> Result<Forwards> {
    if !options.has_forwards() {
        return Ok(Forwards::default());
    }
    let routes = session.remote_routes.clone();
    let mut forwards = Forwards {
        tasks: Vec::new(),
        remote: Vec::new(),
        session: Arc::downgrade(session),
        routes: Some(routes.clone()),
    };
    let limit = options.connect_timeout()?;

    for (index, forward) in options.local_forwards.iter().enumerate() {
        let destination = host_port(&forward.dest_host, forward.dest_port);
        let name: Arc<str> = format!(
            "local_forwards[{index}] ({} → {destination})",
            host_port(&forward.listen_host, forward.listen_port)
        )
        .into();
        for listener in bind_all(&forward.listen_host, forward.listen_port, &name).await? {
            let address = local_address(&listener, &name)?;
            tracing::info!(forward = %name, listening = %address, "local forward listening");
            lock(&routes.active).push(ActiveForward {
                kind: ForwardKind::Local,
                index,
                listen_host: address.ip().to_string(),
                listen_port: address.port(),
                destination: Some((forward.dest_host.clone(), forward.dest_port)),
            });
            let target = Target { host: forward.dest_host.clone(), port: forward.dest_port };
            forwards.tasks.push(tokio::spawn(serve(listener, Arc::downgrade(session), Some(target), name.clone())));
        }
    }

    for (index, forward) in options.socks_forwards.iter().enumerate() {
        let name: Arc<str> =
            format!("socks_forwards[{index}] ({})", host_port(&forward.listen_host, forward.listen_port)).into();
        for listener in bind_all(&forward.listen_host, forward.listen_port, &name).await? {
            let address = local_address(&listener, &name)?;
            tracing::info!(forward = %name, listening = %address, "SOCKS forward listening");
            lock(&routes.active).push(ActiveForward {
                kind: ForwardKind::Socks,
                index,
                listen_host: address.ip().to_string(),
                listen_port: address.port(),
                destination: None,
            });
            forwards.tasks.push(tokio::spawn(serve(listener, Arc::downgrade(session), None, name.clone())));
        }
    }

    for (index, forward) in options.remote_forwards.iter().enumerate() {
        let shown_listen = if forward.listen_host.is_empty() { "*" } else { forward.listen_host.as_str() };
        let name: Arc<str> = format!(
            "remote_forwards[{index}] ({} on the host → {})",
            host_port(shown_listen, forward.listen_port),
            host_port(&forward.dest_host, forward.dest_port)
        )
        .into();
        let mut route = Route {
            listen_host: forward.listen_host.clone(),
            listen_port: u32::from(forward.listen_port),
            dest_host: forward.dest_host.clone(),
            dest_port: forward.dest_port,
            connect_timeout: limit,
            name: name.clone(),
        };
        // A fixed port is routed before the request, so a connection racing
        // the reply is not refused; a picked port is only known after it.
        if forward.listen_port != 0 {
            routes.add_route(route.clone());
        }
        let request = timed("connect", &format!("{name}: tcpip-forward request"), limit, async {
            session.handle.tcpip_forward(forward.listen_host.clone(), u32::from(forward.listen_port)).await.map_err(
                |e| match e {
                    russh::Error::RequestDenied => {
                        Error::new(ErrorKind::PermissionDenied, "connect").with_context(format!(
                            "{name}: the server refused to listen (port in use on the host, or forbidden by its \
                             AllowTcpForwarding / PermitListen)"
                        ))
                    }
                    other => {
                        let context = format!("{name}: {other}");
                        crate::error::ssh("connect", other).with_context(context)
                    }
                },
            )
        })
        .await;
        let bound = match request {
            Ok(bound) => bound,
            Err(err) => {
                routes.remove_route(&route.listen_host, route.listen_port);
                return Err(err);
            }
        };
        if forward.listen_port == 0 {
            route.listen_port = bound;
            routes.add_route(route);
        }
        let port = if forward.listen_port == 0 { bound } else { u32::from(forward.listen_port) };
        forwards.remote.push((forward.listen_host.clone(), port));
        tracing::info!(forward = %name, port, "remote forward listening on the host");
        lock(&routes.active).push(ActiveForward {
            kind: ForwardKind::Remote,
            index,
            listen_host: forward.listen_host.clone(),
            listen_port: u16::try_from(port).unwrap_or(0),
            destination: Some((forward.dest_host.clone(), forward.dest_port)),
        });
    }
    Ok(forwards)
}

/// A connection the server opened for one of our remote forwards. This runs
/// on the connection's event loop, so the work (dialling the destination)
/// goes to a task of its own.
pub(crate) async fn accept_forwarded(
    routes: &RemoteRoutes,
    channel: russh::Channel<Msg>,
    connected_address: &str,
    connected_port: u32,
    reply: russh::client::ChannelOpenHandle,
) {
    let Some(route) = routes.find(connected_address, connected_port) else {
        tracing::warn!(
            address = connected_address,
            port = connected_port,
            "the server forwarded a connection for a port we did not ask for; refused"
        );
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    };
    routes.spawn_connection(async move {
        let destination = host_port(&route.dest_host, route.dest_port);
        let dial = TcpStream::connect((route.dest_host.as_str(), route.dest_port));
        let tcp = match tokio::time::timeout(route.connect_timeout, dial).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                tracing::warn!(forward = %route.name, %err, "remote forward could not reach {destination}");
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                return;
            }
            Err(_) => {
                tracing::warn!(forward = %route.name, "remote forward: {destination} did not answer in time");
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        reply.accept().await;
        let stream = ChannelStream::new(channel, format!("{} (forwarded connection)", route.name));
        relay(tcp, stream, &route.name).await;
    });
}

/// Where a local forward's connections go.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
}

/// Accepts on one listener until the forwards stop: each connection goes to
/// `target` or, without one, through a SOCKS handshake. The connections are
/// owned by this task, so aborting it ends them too.
async fn serve(listener: TcpListener, session: Weak<SshSession>, target: Option<Target>, name: Arc<str>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    tracing::debug!(forward = %name, %peer, "connection accepted");
                    let _ = inbound.set_nodelay(true);
                    let (session, target, name) = (session.clone(), target.clone(), name.clone());
                    connections.spawn(async move {
                        match target {
                            Some(target) => forward_local(inbound, session, target, name).await,
                            None => forward_socks(inbound, session, name).await,
                        }
                    });
                }
                Err(err) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(forward = %name, %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn forward_local(inbound: TcpStream, session: Weak<SshSession>, target: Target, name: Arc<str>) {
    // The session is only held while opening: a forward must not keep a
    // closed connection alive.
    let opened = match session.upgrade() {
        Some(session) => session.open_direct(&target.host, target.port).await,
        None => return,
    };
    match opened {
        Ok(outbound) => relay(inbound, outbound, &name).await,
        Err(err) => tracing::warn!(forward = %name, %err, "could not open the forwarded stream"),
    }
}

/// Copies both ways until both directions ended; an end of stream on one
/// side is passed on as a half-close of the other.
async fn relay(mut tcp: TcpStream, mut stream: ChannelStream, name: &str) {
    match tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut stream, RELAY_BUFFER, RELAY_BUFFER).await {
        Ok((sent, received)) => tracing::debug!(forward = %name, sent, received, "forwarded connection ended"),
        Err(err) => tracing::debug!(forward = %name, %err, "forwarded connection failed"),
    }
}

/// Binds every address `host` names on `port`. With port 0 the first
/// address picks the port and the others use the same one where it is free,
/// as `ssh -L` does. An address family this machine lacks is skipped; a
/// fixed port in use fails, since clients would reach someone else's
/// listener there.
async fn bind_all(host: &str, port: u16, name: &str) -> Result<Vec<TcpListener>> {
    let addresses: Vec<SocketAddr> = if host.is_empty() || host == "*" {
        vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))]
    } else {
        let mut found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::io("connect", e).with_context(format!("{name}: cannot resolve `{host}`")))?
            .collect();
        found.dedup();
        found
    };
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut skipped = Vec::new();
    for mut address in addresses {
        if let Some(first) = listeners.first() {
            address.set_port(local_address(first, name)?.port());
        }
        match TcpListener::bind(address).await {
            Ok(listener) => listeners.push(listener),
            // A picked port may be taken on another address: that one goes without.
            Err(e) if port == 0 && !listeners.is_empty() => skipped.push(format!("{address}: {e}")),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(Error::new(ErrorKind::AlreadyExists, "connect")
                    .with_context(format!("{name}: {address} is already in use"))
                    .with_source(e));
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported) => {
                skipped.push(format!("{address}: {e}"));
            }
            Err(e) => return Err(Error::io("connect", e).with_context(format!("{name}: cannot listen on {address}"))),
        }
    }
    if listeners.is_empty() {
        return Err(Error::new(ErrorKind::ConnectFailed, "connect")
            .with_context(format!("{name}: no address to listen on ({})", skipped.join("; "))));
    }
    for why in skipped {
        tracing::debug!(forward = %name, "address skipped: {why}");
    }
    Ok(listeners)
}

fn local_address(listener: &TcpListener, name: &str) -> Result<SocketAddr> {
    listener.local_addr().map_err(|e| Error::io("connect", e).with_context(name.to_string()))
}

/// `host:port`, bracketing an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a plain push/lookup; a panic inside one
    // cannot leave the data half-updated.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// SOCKS5 (RFC 1928): no authentication, CONNECT only.

/// A SOCKS5 reply with an all-zero IPv4 bound address: clients use only the
/// code, and the bound address through an SSH channel is unknown anyway.
fn socks_reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

const SOCKS_OK: u8 = 0x00;
const SOCKS_GENERAL_FAILURE: u8 = 0x01;
const SOCKS_NOT_ALLOWED: u8 = 0x02;
const SOCKS_HOST_UNREACHABLE: u8 = 0x04;
const SOCKS_REFUSED: u8 = 0x05;
const SOCKS_TTL_EXPIRED: u8 = 0x06;
const SOCKS_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const SOCKS_ADDRESS_NOT_SUPPORTED: u8 = 0x08;

/// "No acceptable methods": the answer to a greeting we cannot serve.
const SOCKS_NO_METHOD: [u8; 2] = [5, 0xff];
/// SOCKS4's "request rejected", so a SOCKS4 client sees a clean refusal.
const SOCKS4_REJECTED: [u8; 8] = [0, 0x5b, 0, 0, 0, 0, 0, 0];

/// Why a SOCKS handshake ended early, and what to tell the client.
#[derive(Debug)]
struct SocksRefusal {
    reply: Vec<u8>,
    why: String,
}

impl SocksRefusal {
    fn new(reply: &[u8], why: impl Into<String>) -> Self {
        SocksRefusal { reply: reply.to_vec(), why: why.into() }
    }

    fn code(code: u8, why: impl Into<String>) -> Self {
        SocksRefusal::new(&socks_reply(code), why)
    }
}

async fn forward_socks(mut inbound: TcpStream, session: Weak<SshSession>, name: Arc<str>) {
    let request = match tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, socks_handshake(&mut inbound)).await {
        Ok(Ok(request)) => request,
        Ok(Err(refusal)) => {
            tracing::debug!(forward = %name, why = %refusal.why, "SOCKS request refused");
            let _ = inbound.write_all(&refusal.reply).await;
            let _ = inbound.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::debug!(forward = %name, "SOCKS handshake incomplete after {SOCKS_HANDSHAKE_TIMEOUT:?}; closed");
            return;
        }
    };
    let opened = match session.upgrade() {
        Some(session) => session.open_direct(&request.0, request.1).await,
        None => return,
    };
    match opened {
        Ok(outbound) => {
            if inbound.write_all(&socks_reply(SOCKS_OK)).await.is_ok() {
                relay(inbound, outbound, &name).await;
            }
        }
        Err(err) => {
            tracing::warn!(forward = %name, %err, "SOCKS CONNECT failed");
            let code = match err.kind() {
                ErrorKind::ConnectFailed => SOCKS_REFUSED,
                ErrorKind::PermissionDenied => SOCKS_NOT_ALLOWED,
                ErrorKind::Timeout => SOCKS_TTL_EXPIRED,
                ErrorKind::NotFound => SOCKS_HOST_UNREACHABLE,
                _ => SOCKS_GENERAL_FAILURE,
            };
            let _ = inbound.write_all(&socks_reply(code)).await;
            let _ = inbound.shutdown().await;
        }
    }
}

/// Reads a SOCKS5 greeting and CONNECT request, answering the greeting;
/// returns the destination. Every length is a single byte, so nothing read
/// here exceeds 255 bytes.
async fn socks_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
) -> std::result::Result<(String, u16), SocksRefusal> {
    let mut greeting = [0u8; 2];
    io.read_exact(&mut greeting).await.map_err(|_| SocksRefusal::new(&SOCKS_NO_METHOD, "truncated greeting"))?;
    match greeting[0] {
        5 => {}
        4 => return Err(SocksRefusal::new(&SOCKS4_REJECTED, "SOCKS4 is not served (only SOCKS5)")),
        other => return Err(SocksRefusal::new(&SOCKS_NO_METHOD, format!("not SOCKS5 (version byte {other})"))),
    }
    let mut methods = vec![0u8; usize::from(greeting[1])];
    io.read_exact(&mut methods).await.map_err(|_| SocksRefusal::new(&SOCKS_NO_METHOD, "truncated method list"))?;
    if !methods.contains(&0) {
        return Err(SocksRefusal::new(&SOCKS_NO_METHOD, "the client offers no unauthenticated method"));
    }
    io.write_all(&[5, 0]).await.map_err(|e| SocksRefusal::new(&[], format!("client gone: {e}")))?;

    let truncated = || SocksRefusal::code(SOCKS_GENERAL_FAILURE, "truncated request");
    let mut head = [0u8; 4];
    io.read_exact(&mut head).await.map_err(|_| truncated())?;
    let [version, command, _reserved, address_type] = head;
    if version != 5 {
        return Err(SocksRefusal::code(SOCKS_GENERAL_FAILURE, format!("request version byte {version}")));
    }
    if command != 1 {
        return Err(SocksRefusal::code(SOCKS_COMMAND_NOT_SUPPORTED, format!("command {command} (only CONNECT)")));
    }
    let host = match address_type {
        1 => {
            let mut octets = [0u8; 4];
            io.read_exact(&mut octets).await.map_err(|_| truncated())?;
            IpAddr::from(Ipv4Addr::from(octets)).to_string()
        }
        4 => {
            let mut octets = [0u8; 16];
            io.read_exact(&mut octets).await.map_err(|_| truncated())?;
            IpAddr::from(Ipv6Addr::from(octets)).to_string()
        }
        3 => {
            let length = io.read_u8().await.map_err(|_| truncated())?;
            let mut name = vec![0u8; usize::from(length)];
            io.read_exact(&mut name).await.map_err(|_| truncated())?;
            match String::from_utf8(name) {
                Ok(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) => name,
                _ => return Err(SocksRefusal::code(SOCKS_ADDRESS_NOT_SUPPORTED, "malformed domain name")),
            }
        }
        other => {
            return Err(SocksRefusal::code(SOCKS_ADDRESS_NOT_SUPPORTED, format!("address type {other}")));
        }
    };
    let port = io.read_u16().await.map_err(|_| truncated())?;
    Ok((host, port))
}

// ---------------------------------------------------------------------------
// The stream over one channel.

/// How a channel ended, as its pump saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The server closed the channel.
    Closed,
    /// The connection ended under the channel.
    Lost,
}

/// A byte stream over one SSH channel: reads are the channel's data up to
/// its EOF, writes are window-limited channel data, shutdown sends EOF.
/// Dropping it closes the channel.
struct ChannelStream {
    incoming: mpsc::UnboundedReceiver<io::Result<Bytes>>,
    /// Bytes of [`STREAM_BUFFER`] not taken by data waiting in `incoming`.
    credit: Arc<Semaphore>,
    unread: Bytes,
    /// An error that arrived behind data already returned: the next read's.
    failed: Option<io::Error>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    ended: oneshot::Receiver<End>,
    end: Option<End>,
    closer: Option<ChannelWriteHalf<Msg>>,
    what: Arc<str>,
}

impl fmt::Debug for ChannelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelStream").field("to", &self.what).field("end", &self.end).finish_non_exhaustive()
    }
}

impl ChannelStream {
    fn new(channel: russh::Channel<Msg>, what: String) -> Self {
        let what: Arc<str> = what.into();
        let (read, write) = channel.split();
        let (data, incoming) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(STREAM_BUFFER));
        let (end_tx, ended) = oneshot::channel();
        tokio::spawn(pump(read, data, credit.clone(), end_tx, what.clone()));
        ChannelStream {
            incoming,
            credit,
            unread: Bytes::new(),
            failed: None,
            writer: Box::new(write.make_writer()),
            ended,
            end: None,
            closer: Some(write),
            what,
        }
    }

    /// The channel's end if it has come, registering for the wake-up otherwise.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Option<End> {
        if self.end.is_none()
            && let Poll::Ready(end) = Pin::new(&mut self.ended).poll(cx)
        {
            // A pump that vanished without a word was cancelled with the runtime.
            self.end = Some(end.unwrap_or(End::Lost));
        }
        self.end
    }

    fn end_error(&self, end: End) -> io::Error {
        match end {
            End::Closed => io::Error::new(io::ErrorKind::BrokenPipe, format!("{}: the channel was closed", self.what)),
            End::Lost => lost(&self.what),
        }
    }
}

/// The credit one chunk of data takes (a chunk larger than the whole buffer
/// takes all of it).
fn credit_for(chunk: &Bytes) -> u32 {
    u32::try_from(chunk.len().min(STREAM_BUFFER)).unwrap_or(u32::MAX)
}

fn lost(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, format!("{what}: the SSH connection ended"))
}

/// Drains the channel: data to the reader until EOF, then waits for the
/// close. Ends early when the stream is dropped.
async fn pump(
    mut read: ChannelReadHalf,
    data: mpsc::UnboundedSender<io::Result<Bytes>>,
    credit: Arc<Semaphore>,
    mut ended: oneshot::Sender<End>,
    what: Arc<str>,
) {
    let mut data = Some(data);
    let end = loop {
        let message = tokio::select! {
            message = read.wait() => message,
            () = ended.closed() => return,
        };
        match message {
            Some(ChannelMsg::Data { data: bytes }) => {
                // An empty read would look like EOF to the reader.
                let Some(sender) = data.as_ref().filter(|_| !bytes.is_empty()) else { continue };
                tokio::select! {
                    taken = credit.acquire_many(credit_for(&bytes)) => match taken {
                        Ok(taken) => taken.forget(),
                        Err(_) => return,
                    },
                    () = ended.closed() => return,
                }
                if sender.send(Ok(bytes)).is_err() {
                    return;
                }
            }
            Some(ChannelMsg::Eof) => data = None,
            Some(ChannelMsg::Close) => break End::Closed,
            Some(_) => {}
            // russh drops the channel's sender after delivering `Close`, so
            // silence without one means the connection itself is gone.
            None => break End::Lost,
        }
    };
    let _ = ended.send(end);
    if end == End::Lost
        && let Some(sender) = data
    {
        let _ = sender.send(Err(lost(&what)));
    }
}

impl AsyncRead for ChannelStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unread.is_empty() {
            if let Some(err) = this.failed.take() {
                return Poll::Ready(Err(err));
            }
            match ready!(this.incoming.poll_recv(cx)) {
                Some(Ok(bytes)) => {
                    this.credit.add_permits(credit_for(&bytes) as usize);
                    this.unread = bytes;
                }
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => return Poll::Ready(Ok(())),
            }
        }
        // Packets already waiting go out in the same read: one large write
        // downstream instead of one per 32 KiB packet.
        loop {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            if buf.remaining() == 0 || !this.unread.is_empty() {
                break;
            }
            match this.incoming.try_recv() {
                Ok(Ok(bytes)) => {
                    this.credit.add_permits(credit_for(&bytes) as usize);
                    this.unread = bytes;
                }
                Ok(Err(err)) => {
                    this.failed = Some(err);
                    break;
                }
                Err(_) => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ChannelStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Checked first so that a write stuck on a window that will never
        // open again is woken by the pump.
        if let Some(end) = this.poll_end(cx) {
            return Poll::Ready(Err(this.end_error(end)));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut this.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_end(cx) {
            Some(End::Lost) => Poll::Ready(Err(lost(&this.what))),
            _ => Pin::new(&mut this.writer).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_end(cx) {
            Some(End::Lost) => Poll::Ready(Err(lost(&this.what))),
            // Closed by the server: nothing more can be sent, nor needs to be.
            Some(End::Closed) => Poll::Ready(Ok(())),
            None => Pin::new(&mut this.writer).poll_shutdown(cx),
        }
    }
}

impl Drop for ChannelStream {
    fn drop(&mut self) {
        let Some(write) = self.closer.take() else { return };
        if self.end.is_some() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = write.close().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn handshake(input: &[u8]) -> (std::result::Result<(String, u16), SocksRefusal>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let result = socks_handshake(&mut server).await;
        drop(server);
        let mut written = Vec::new();
        client.read_to_end(&mut written).await.unwrap();
        (result, written)
    }

    #[tokio::test]
    async fn socks_connect_requests_parse() {
        let (ok, written) = handshake(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]).await;
        assert_eq!(ok.unwrap(), ("127.0.0.1".to_string(), 8080));
        assert_eq!(written, [5, 0]);
        let mut v6 = vec![5, 2, 2, 0, 5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 22]);
        assert_eq!(handshake(&v6).await.0.unwrap(), ("::1".to_string(), 22));
        let mut name = vec![5, 1, 0, 5, 1, 0, 3, 9];
        name.extend_from_slice(b"localhost");
        name.extend_from_slice(&[1, 0]);
        assert_eq!(handshake(&name).await.0.unwrap(), ("localhost".to_string(), 256));
    }

    #[tokio::test]
    async fn bad_socks_input_is_refused_with_a_reply() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &SOCKS_NO_METHOD),
            (&[5], &SOCKS_NO_METHOD),
            (&[6, 1, 0], &SOCKS_NO_METHOD),
            (&[4, 1, 0, 80, 127, 0, 0, 1, 0], &SOCKS4_REJECTED),
            (&[5, 1, 2], &SOCKS_NO_METHOD),
            (&[5, 3, 0], &SOCKS_NO_METHOD),
            (&[5, 1, 0, 5, 1], &socks_reply(SOCKS_GENERAL_FAILURE)),
            (&[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80], &socks_reply(SOCKS_COMMAND_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 9], &socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 3, 0, 0, 80], &socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 3, 4, b'a', b' ', b'b', b'c', 0, 80], &socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 3, 200, b'a'], &socks_reply(SOCKS_GENERAL_FAILURE)),
            (&[5, 1, 0, 5, 1, 0, 1, 127, 0], &socks_reply(SOCKS_GENERAL_FAILURE)),
            (&[5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80], &socks_reply(SOCKS_GENERAL_FAILURE)),
        ];
        for (input, reply) in cases {
            let (result, written) = handshake(input).await;
            let refusal = result.expect_err(&format!("{input:?} must be refused"));
            let mut expected = written.clone();
            // The greeting's answer precedes the refusal once the greeting was fine.
            if written.starts_with(&[5, 0]) {
                expected.drain(..2);
            }
            assert!(expected.is_empty(), "nothing is written besides the greeting answer: {written:?}");
            assert_eq!(refusal.reply, *reply, "{input:?}: {}", refusal.why);
        }
    }

    #[test]
    fn routes_match_by_port_then_address() {
        let routes = RemoteRoutes::default();
        let route = |host: &str, port, dest: &str| Route {
            listen_host: host.into(),
            listen_port: port,
            dest_host: dest.into(),
            dest_port: 1,
            connect_timeout: Duration::from_secs(1),
            name: "r".into(),
        };
        routes.add_route(route("", 9000, "a"));
        assert_eq!(routes.find("0.0.0.0", 9000).unwrap().dest_host, "a");
        assert!(routes.find("", 9001).is_none());
        routes.add_route(route("127.0.0.1", 9001, "b"));
        routes.add_route(route("::1", 9001, "c"));
        assert_eq!(routes.find("::1", 9001).unwrap().dest_host, "c");
        assert!(routes.find("10.0.0.1", 9001).is_none());
        routes.remove_route("", 9000);
        assert!(routes.find("", 9000).is_none());
    }

    #[tokio::test]
    async fn open_failure_descriptions_belong_to_later_opens() {
        let routes = Arc::new(RemoteRoutes::default());
        routes.note_open_failure("stale");
        let started = Instant::now();
        let noter = routes.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            noter.note_open_failure("Connection refused");
        });
        assert_eq!(routes.open_failure_since(started).await.as_deref(), Some("Connection refused"));
        later.await.unwrap();
        // Taken once; without a new note the wait ends empty-handed.
        assert_eq!(routes.open_failure_since(started).await, None);
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("::1", 22), "[::1]:22");
        assert_eq!(host_port("db", 5432), "db:5432");
    }
}
