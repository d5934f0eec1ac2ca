//! A live connection to a host, and the factory that opens connections.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::HostConfig;
use crate::dial::Dialer;
use crate::error::{Error, ErrorKind, Result};
use crate::files::FileTransfer;
use crate::host::HostConnections;
use crate::registry::{Capabilities, Registry};
use crate::transport::Transport;
use crate::tunnel::Tunnel;

/// One open connection, which may serve several schemes (one SSH connection
/// serves `ssh`, `sftp` and `scp`).
#[async_trait]
pub trait Connection: Send + Sync + fmt::Debug {
    /// The command transport, if the connection runs commands.
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        None
    }

    /// The file transport for `scheme` (opened lazily, e.g. an SFTP subsystem).
    async fn file_transfer(&self, scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        Err(Error::new(ErrorKind::Unsupported, "open file transfer").with_context(format!("scheme `{scheme}`")))
    }

    /// The tunnel, if the connection can open streams.
    fn tunnel(&self) -> Option<Arc<dyn Tunnel>> {
        None
    }

    /// False once the connection is known to be dead; the host then opens a
    /// new one on next use.
    fn is_alive(&self) -> bool {
        true
    }

    /// Closes the connection and everything opened on it: every command,
    /// transfer and stream of every scheme it serves. Later calls on any
    /// handle it gave out fail with [`ErrorKind::ConnectionLost`], and
    /// [`Connection::is_alive`] answers false. This is the one place a
    /// connection ends: the [`Transport`], [`FileTransfer`] and [`Tunnel`]
    /// handles have no `close` of their own, and a plugin that borrows
    /// another scheme's connection leaves that one open (it is the host's).
    /// [`crate::Host::close`] closes every connection of a host.
    async fn close(&self) -> Result<()>;
}

/// What a plugin's connect function receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectRequest {
    /// The host to reach.
    pub host: Arc<HostConfig>,
    /// The scheme being connected (one plugin may serve several).
    pub scheme: &'static str,
    /// How to reach the host's address: open the connection's byte stream
    /// with it (directly, or through the host's hop).
    pub dialer: Dialer,
    /// The host's own connections of other schemes, for a plugin that builds
    /// on one (files over the host's command transport, netcat, …).
    pub connections: HostConnections,
}

impl ConnectRequest {
    /// A request for `scheme` on `host`, reached the way `context` says.
    pub fn new(host: Arc<HostConfig>, scheme: &'static str, context: ConnectContext) -> Self {
        ConnectRequest { host, scheme, dialer: context.dialer, connections: context.connections }
    }

    /// A request for `scheme` on `host`, dialed directly, with no host to
    /// lend other connections (asking for one is a configuration error).
    pub fn direct(host: Arc<HostConfig>, scheme: &'static str) -> Self {
        ConnectRequest::new(host, scheme, ConnectContext::direct())
    }
}

/// How a [`crate::Host`] asks its factory to reach the host: the dialer of
/// its hop chain and its own connections, handed on to the plugin in its
/// [`ConnectRequest`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectContext {
    /// How to reach the host's address.
    pub dialer: Dialer,
    /// The host's other connections.
    pub connections: HostConnections,
}

impl ConnectContext {
    /// Dialed directly, with no host behind it.
    pub fn direct() -> Self {
        ConnectContext { dialer: Dialer::direct(), connections: HostConnections::detached() }
    }

    /// Reached through `dialer`, lending `connections`.
    pub fn new(dialer: Dialer, connections: HostConnections) -> Self {
        ConnectContext { dialer, connections }
    }
}

/// Opens connections for a [`crate::Host`]. The default uses the plugin
/// registry; tests inject their own to count, fail or fake connections.
#[async_trait]
pub trait ConnectionFactory: Send + Sync + fmt::Debug {
    /// Schemes with the same key share one connection per host.
    fn connection_key(&self, scheme: &str) -> Result<String>;

    /// What `scheme` declares it can do: a [`crate::Host`] answers
    /// [`ErrorKind::Unsupported`] for the rest, whatever the connection it
    /// shares could do. A factory that knows no plugins allows everything.
    fn capabilities(&self, _scheme: &str) -> Result<Capabilities> {
        Ok(Capabilities::ALL)
    }

    /// Opens a connection to `host` for `scheme`, reaching its address the
    /// way `context` says.
    async fn connect(
        &self,
        host: Arc<HostConfig>,
        scheme: &str,
        context: ConnectContext,
    ) -> Result<Arc<dyn Connection>>;
}

/// The factory that asks the registry's plugins.
#[derive(Debug, Clone, Copy)]
pub struct RegistryFactory {
    registry: &'static Registry,
}

impl RegistryFactory {
    /// A factory over the global registry.
    pub fn global() -> Self {
        RegistryFactory { registry: Registry::global() }
    }

    /// A factory over a registry of the caller's (leaked: registries live for
    /// the program, as the global one does).
    pub fn new(registry: Registry) -> Self {
        RegistryFactory { registry: Box::leak(Box::new(registry)) }
    }
}

#[async_trait]
impl ConnectionFactory for RegistryFactory {
    fn connection_key(&self, scheme: &str) -> Result<String> {
        Ok(self.registry.get(scheme)?.connection_key.to_string())
    }

    fn capabilities(&self, scheme: &str) -> Result<Capabilities> {
        Ok(self.registry.get(scheme)?.capabilities)
    }

    async fn connect(
        &self,
        host: Arc<HostConfig>,
        scheme: &str,
        context: ConnectContext,
    ) -> Result<Arc<dyn Connection>> {
        let plugin = self.registry.get(scheme)?;
        if let Some(spec) = &plugin.options {
            spec.validate(&host.options)?;
        }
        (plugin.connect)(ConnectRequest::new(host, plugin.scheme, context)).await
    }
}
