//! [`Host`]: the connection manager for one host.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::Mutex as AsyncMutex;

use crate::command::{Command, Output, Pty};
use crate::config::HostConfig;
use crate::connection::{ConnectContext, Connection, ConnectionFactory, RegistryFactory};
use crate::dial::Dialer;
use crate::error::{Error, ErrorKind, Result};
use crate::files::{FileTransfer, Metadata, Progress, PutOptions, StatOptions, get_file, put_file};
use crate::process::Process;
use crate::registry::Capabilities;
use crate::transport::Transport;
use crate::tunnel::{BoxStream, PortForward, Tunnel, forward_port};

/// One slot per connection key; the async mutex makes concurrent first users
/// wait for a single connect instead of racing to open several.
type Slot = Arc<AsyncMutex<Option<Arc<dyn Connection>>>>;

/// A host and its connections: opened lazily on first use, reused after, and
/// replaced when found dead.
///
/// `term` picks the command transport, `transfer` the file transport;
/// schemes that share a connection key (one SSH connection for exec, SFTP
/// and SCP) share one connection.
///
/// A host whose configuration names a `hop` is reached through that hop's
/// [`Host`] (attached with [`Host::with_hop`]): every connection is dialed
/// through the hop's tunnel, and the hop may have a hop of its own. Hops are
/// shared: closing this host leaves its hop open for the other hosts behind it.
#[derive(Debug)]
pub struct Host {
    shared: Arc<Shared>,
}

/// What a [`Host`] and the [`HostConnections`] it lends to plugins share.
#[derive(Debug)]
struct Shared {
    config: Arc<HostConfig>,
    factory: Arc<dyn ConnectionFactory>,
    slots: Mutex<HashMap<String, Slot>>,
    hop: OnceLock<Arc<Host>>,
    /// Which connect waits for which slot: `key → key` while a plugin's
    /// connect (holding the first slot) waits for the host's connection of
    /// the second. A wait that would close a circle is refused instead.
    waits: Mutex<HashMap<String, String>>,
}

impl Host {
    /// A host whose connections come from the plugin registry.
    pub fn new(config: HostConfig) -> Result<Self> {
        Ok(Self::with_factory(config, Arc::new(RegistryFactory::global())))
    }

    /// A host whose connections come from `factory` (tests inject one here).
    pub fn with_factory(config: HostConfig, factory: Arc<dyn ConnectionFactory>) -> Self {
        let shared = Shared {
            config: Arc::new(config),
            factory,
            slots: Mutex::new(HashMap::new()),
            hop: OnceLock::new(),
            waits: Mutex::new(HashMap::new()),
        };
        Host { shared: Arc::new(shared) }
    }

    /// Attaches the host this one is reached through; it must be the one the
    /// configuration names as `hop`.
    pub fn with_hop(self, hop: Arc<Host>) -> Result<Self> {
        let refuse =
            |why: String| Error::new(ErrorKind::InvalidConfig, "attach hop").with_host(self.id()).with_context(why);
        match self.shared.config.hop.as_deref() {
            Some(id) if id == hop.id() => {
                let hop_id = hop.id().to_string();
                match self.shared.hop.set(hop) {
                    Ok(()) => Ok(self),
                    Err(_) => Err(refuse(format!("a hop is attached already; `{hop_id}` cannot replace it"))),
                }
            }
            Some(id) => Err(refuse(format!("the configuration names hop `{id}`, not `{}`", hop.id()))),
            None => Err(refuse(format!("the configuration names no hop, yet `{}` was attached", hop.id()))),
        }
    }

    /// True when this host is reached through a hop.
    pub fn has_tunnel(&self) -> bool {
        self.shared.config.hop.is_some()
    }

    /// The hop this host is reached through, once attached.
    pub fn hop(&self) -> Option<&Arc<Host>> {
        self.shared.hop.get()
    }

    /// The ids of the hops between this machine and the host, nearest first
    /// (empty for a host reached directly).
    pub fn chain(&self) -> Vec<String> {
        let mut chain = Vec::new();
        let mut next = self.hop();
        while let Some(hop) = next {
            chain.push(hop.id().to_string());
            next = hop.hop();
        }
        chain.reverse();
        chain
    }

    /// How this host's connections reach its address: directly, or through
    /// the tunnel of its hop (connecting the hop, and its own hops, first).
    pub async fn dialer(&self) -> Result<Dialer> {
        self.shared.dialer().await
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.shared.config
    }

    /// The host's id.
    pub fn id(&self) -> &str {
        &self.shared.config.id
    }

    /// The live connection for `scheme`, opening (or reopening) it if needed.
    pub async fn connection(&self, scheme: &str) -> Result<Arc<dyn Connection>> {
        Shared::connection(&self.shared, scheme, &[]).await
    }

    /// What `scheme` declares it can do.
    pub fn capabilities(&self, scheme: &str) -> Result<Capabilities> {
        self.shared.factory.capabilities(scheme).map_err(|e| e.with_host(self.id()))
    }

    /// Fails with [`ErrorKind::Unsupported`] unless `scheme` declares `wanted`:
    /// a scheme gets only what it claims, even where the connection it
    /// shares could do more (`sftp` runs no commands, though SSH could).
    fn require(&self, scheme: &str, operation: &str, wanted: fn(&Capabilities) -> bool, what: &str) -> Result<()> {
        if wanted(&self.capabilities(scheme)?) {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Unsupported, operation)
            .with_host(self.id())
            .with_context(format!("scheme `{scheme}` {what}")))
    }

    /// The command transport (`term`).
    pub async fn transport(&self) -> Result<Arc<dyn Transport>> {
        let scheme = &self.config().term;
        self.require(scheme, "exec", |c| c.exec, "runs no commands")?;
        command_transport(self.id(), scheme, self.connection(scheme).await?)
    }

    /// The file transport (`transfer`).
    pub async fn files(&self) -> Result<Arc<dyn FileTransfer>> {
        let scheme = &self.config().transfer;
        self.require(scheme, "open file transfer", |c| c.files, "moves no files")?;
        self.connection(scheme).await?.file_transfer(scheme).await.map_err(|e| e.with_host(self.id()))
    }

    /// The tunnel, through the command transport's connection.
    pub async fn tunnel(&self) -> Result<Arc<dyn Tunnel>> {
        let scheme = &self.config().term;
        self.require(scheme, "tunnel", |c| c.tunnel, "opens no streams")?;
        self.connection(scheme).await?.tunnel().ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, "tunnel")
                .with_host(self.id())
                .with_context(format!("scheme `{scheme}` opens no streams"))
        })
    }

    /// Starts an interactive login shell on a terminal (`term`).
    pub async fn shell(&self, pty: &Pty) -> Result<Process> {
        let scheme = &self.config().term;
        self.require(scheme, "shell", |c| c.shell, "gives no interactive terminal")?;
        self.transport().await?.shell(pty).await.map_err(|e| e.with_host(self.id()))
    }

    /// Runs a command to the end.
    pub async fn exec(&self, command: &Command) -> Result<Output> {
        self.require_user_switch(command)?;
        self.transport().await?.exec(command).await.map_err(|e| e.with_host(self.id()))
    }

    /// Starts a command with streaming pipes.
    pub async fn spawn(&self, command: &Command) -> Result<Process> {
        self.require_user_switch(command)?;
        self.transport().await?.spawn(command).await.map_err(|e| e.with_host(self.id()))
    }

    fn require_user_switch(&self, command: &Command) -> Result<()> {
        if command.user.is_none() && command.group.is_none() {
            return Ok(());
        }
        self.require(&self.config().term, "exec", |c| c.user_switch, "runs commands only as its own login")
    }

    /// Uploads a local file (see [`put_file`]).
    pub async fn put_file(
        &self,
        local: &Path,
        remote: impl AsRef<Path>,
        options: &PutOptions,
        preserve: bool,
        progress: Option<Progress<'_>>,
    ) -> Result<u64> {
        let files = self.files().await?;
        put_file(files.as_ref(), local, remote.as_ref(), options, preserve, progress)
            .await
            .map_err(|e| e.with_host(self.id()))
    }

    /// Downloads to a local file (see [`get_file`]).
    pub async fn get_file(
        &self,
        remote: impl AsRef<Path>,
        local: &Path,
        progress: Option<Progress<'_>>,
    ) -> Result<u64> {
        let files = self.files().await?;
        get_file(files.as_ref(), remote.as_ref(), local, progress).await.map_err(|e| e.with_host(self.id()))
    }

    /// Describes a remote path.
    pub async fn stat(&self, path: impl AsRef<Path>, options: StatOptions) -> Result<Option<Metadata>> {
        self.files().await?.stat(path.as_ref(), options).await.map_err(|e| e.with_host(self.id()))
    }

    /// Opens a stream to `host:port` through this host.
    pub async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream> {
        self.tunnel().await?.open_stream(host, port).await.map_err(|e| e.with_host(self.id()))
    }

    /// Forwards an ephemeral loopback port to `host:port` through this host.
    pub async fn forward_port(&self, host: &str, port: u16) -> Result<PortForward> {
        forward_port(self.tunnel().await?, host, port).await.map_err(|e| e.with_host(self.id()))
    }

    /// True when at least one live connection is open.
    pub fn is_connected(&self) -> bool {
        let slots = self.shared.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.values().any(|slot| slot.try_lock().is_ok_and(|conn| conn.as_ref().is_some_and(|c| c.is_alive())))
    }

    /// Closes every connection; the next use opens new ones. The hop stays
    /// open: other hosts may still use it.
    pub async fn close(&self) -> Result<()> {
        let slots: Vec<Slot> = {
            let slots = self.shared.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.values().cloned().collect()
        };
        let mut first_error = None;
        for slot in slots {
            if let Some(conn) = slot.lock().await.take()
                && let Err(err) = conn.close().await
            {
                first_error.get_or_insert(err.with_host(self.id()));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `connection`'s command transport, or the error that `scheme` runs none.
fn command_transport(host: &str, scheme: &str, connection: Arc<dyn Connection>) -> Result<Arc<dyn Transport>> {
    connection.transport().ok_or_else(|| {
        Error::new(ErrorKind::Unsupported, "exec")
            .with_host(host)
            .with_context(format!("scheme `{scheme}` runs no commands"))
    })
}

impl Shared {
    fn id(&self) -> &str {
        &self.config.id
    }

    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.entry(key.to_string()).or_default().clone()
    }

    async fn dialer(&self) -> Result<Dialer> {
        match (&self.config.hop, self.hop.get()) {
            (None, _) => Ok(Dialer::direct()),
            // Boxed: the hop's own connect may dial through its hop in turn.
            (Some(_), Some(hop)) => Ok(Dialer::through(hop.id(), Box::pin(hop.tunnel()).await?)),
            // Dialing directly instead would silently bypass the jump host.
            (Some(id), None) => {
                Err(Error::new(ErrorKind::InvalidConfig, "connect").with_host(self.id()).with_context(format!(
                    "the host is reached through hop `{id}`, but no hop host is attached (use Host::with_hop or a Lab)"
                )))
            }
        }
    }

    /// Records that the connect holding slot `asking` waits for slot `key`,
    /// unless following the waits from `key` leads back to `asking`: two
    /// plugins that borrow each other's schemes, first used at once, would
    /// each hold the slot the other waits for, for ever. The record is
    /// removed when the returned guard drops.
    fn wait_for(self: &Arc<Self>, asking: &str, key: &str, scheme: &str) -> Result<WaitRecord> {
        let mut waits = self.waits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut circle = vec![asking.to_string(), key.to_string()];
        let mut next = key.to_string();
        while let Some(after) = waits.get(&next) {
            if after == asking {
                circle.push(asking.to_string());
                return Err(Error::new(ErrorKind::InvalidConfig, "connect").with_host(self.id()).with_context(
                    format!(
                        "`{scheme}` is being connected for another plugin that waits on this one: {}",
                        circle.join(" -> ")
                    ),
                ));
            }
            if circle.contains(after) {
                break;
            }
            circle.push(after.clone());
            next = after.clone();
        }
        waits.insert(asking.to_string(), key.to_string());
        Ok(WaitRecord { shared: self.clone(), asking: asking.to_string() })
    }

    /// The live connection for `scheme`. `opening` lists the schemes whose
    /// connects are under way further up this call (a plugin asking for
    /// another scheme of its host): asking for one of those again would wait
    /// on itself forever, so it is refused, naming the chain.
    async fn connection(self: &Arc<Self>, scheme: &str, opening: &[String]) -> Result<Arc<dyn Connection>> {
        let key = self.factory.connection_key(scheme).map_err(|e| e.with_host(self.id()))?;
        for earlier in opening {
            if self.factory.connection_key(earlier).map_err(|e| e.with_host(self.id()))? == key {
                let chain: Vec<&str> = opening.iter().map(String::as_str).chain([scheme]).collect();
                return Err(Error::new(ErrorKind::InvalidConfig, "connect")
                    .with_host(self.id())
                    .with_context(format!("`{earlier}` would build on its own connection: {}", chain.join(" -> "))));
            }
        }
        let slot = self.slot(&key);
        let mut guard = match opening.last() {
            None => slot.lock().await,
            Some(asking) => {
                let asking = self.factory.connection_key(asking).map_err(|e| e.with_host(self.id()))?;
                let _wait = self.wait_for(&asking, &key, scheme)?;
                slot.lock().await
            }
        };
        if let Some(conn) = guard.as_ref() {
            if conn.is_alive() {
                return Ok(conn.clone());
            }
            tracing::debug!(host = self.id(), scheme, "connection is dead, reconnecting");
            let _ = conn.close().await;
        }
        let dialer = self.dialer().await?;
        let mut stack = opening.to_vec();
        stack.push(scheme.to_string());
        let connections = HostConnections { host: Some(Arc::downgrade(self)), opening: stack };
        let context = ConnectContext::new(dialer, connections);
        let conn =
            self.factory.connect(self.config.clone(), scheme, context).await.map_err(|e| e.with_host(self.id()))?;
        *guard = Some(conn.clone());
        Ok(conn)
    }
}

/// A wait recorded by [`Shared::wait_for`], removed when dropped.
struct WaitRecord {
    shared: Arc<Shared>,
    asking: String,
}

impl Drop for WaitRecord {
    fn drop(&mut self) {
        self.shared.waits.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.asking);
    }
}

/// A host's own connections, lent to a plugin through its
/// [`ConnectRequest`](crate::ConnectRequest): a plugin that builds on another
/// scheme (files over the host's shell, netcat, the dispatcher) gets the very
/// connection [`Host`] hands out for that scheme, opened through the same
/// factory and hop chain, never a second one of its own.
///
/// The plugin keeps what it gets for as long as its own connection lives.
/// When that inner connection dies, the plugin's connection should report
/// itself dead too (`is_alive`), so the host opens both anew.
#[derive(Clone)]
pub struct HostConnections {
    /// Weak: a plugin's connection lives in the host's slots, and must not
    /// keep the host alive in turn.
    host: Option<Weak<Shared>>,
    opening: Vec<String>,
}

impl HostConnections {
    /// No host to lend connections (a plugin connected by hand, outside a
    /// [`Host`]): every request is a configuration error.
    pub fn detached() -> Self {
        HostConnections { host: None, opening: Vec::new() }
    }

    /// The host's live connection for `scheme`, opened if needed. Asking for
    /// a scheme whose connect is under way (the plugin's own, directly or
    /// through another plugin) is a configuration error naming the chain.
    pub async fn connection(&self, scheme: &str) -> Result<Arc<dyn Connection>> {
        let host = self.host.as_ref().and_then(Weak::upgrade).ok_or_else(|| {
            Error::new(ErrorKind::InvalidConfig, "connect").with_context(format!(
                "no host lends its `{scheme}` connection here (connect through a Host, not a plugin's connect function)"
            ))
        })?;
        Box::pin(Shared::connection(&host, scheme, &self.opening)).await
    }

    /// The command transport of the host's connection for `scheme`.
    pub async fn transport(&self, scheme: &str) -> Result<Arc<dyn Transport>> {
        let connection = self.connection(scheme).await?;
        let host = self.host.as_ref().and_then(Weak::upgrade).map(|h| h.config.id.clone()).unwrap_or_default();
        command_transport(&host, scheme, connection)
    }
}

impl std::fmt::Debug for HostConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host.as_ref().and_then(Weak::upgrade).map(|h| h.config.id.clone());
        f.debug_struct("HostConnections").field("host", &host).field("opening", &self.opening).finish()
    }
}
