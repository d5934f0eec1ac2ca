//! The forwards of `ssh_options` (`local_forwards`, `remote_forwards`,
//! `socks_forwards`): listeners, routes and the relay of each connection.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use russh::client::Msg;
use tether_core::{Error, ErrorKind, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::connect::SshSession;
use crate::error::timed;
use crate::options::SshOptions;

use super::socks::forward_socks;
use crate::channel::ChannelStream;

/// How long a refused open waits for the server's description of the
/// refusal: russh wakes the opener just before it hands the description to
/// the event handler.
const OPEN_FAILURE_WAIT: Duration = Duration::from_millis(250);

/// How long a remote forward's cancellation may take when the connection
/// closes.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

impl SshSession {
    /// The forwards of `ssh_options` running on this connection, with the
    /// ports actually bound (a `listen_port` of 0 picks one). Empty once the
    /// connection is closed.
    pub fn forwards(&self) -> Vec<ActiveForward> {
        lock(&self.remote_routes.active).clone()
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
    pub(super) async fn open_failure_since(&self, started: Instant) -> Option<String> {
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
pub(super) struct Target {
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
            inbound = tether_core::raw::accept(&listener, &name) => {
                let (session, target, name) = (session.clone(), target.clone(), name.clone());
                connections.spawn(async move {
                    match target {
                        Some(target) => forward_local(inbound, session, target, name).await,
                        None => forward_socks(inbound, session, name).await,
                    }
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

pub(super) async fn forward_local(inbound: TcpStream, session: Weak<SshSession>, target: Target, name: Arc<str>) {
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
pub(super) async fn relay(mut tcp: TcpStream, mut stream: ChannelStream, name: &str) {
    tether_core::raw::relay(&mut tcp, &mut stream, name).await;
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
pub(super) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a plain push/lookup; a panic inside one
    // cannot leave the data half-updated.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
