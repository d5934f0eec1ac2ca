//! [`Lab`]: the hosts of an inventory, each a lazily connected [`Host`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tether_core::{Host, HostConfig, Registry, Result};
use tether_options::{Overrides, Resolver};

/// An inventory's hosts. Asking twice for one host gives the same [`Host`],
/// so its connections are shared.
#[derive(Debug)]
pub struct Lab {
    resolver: Resolver,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl Lab {
    /// Loads the inventory from `hosts_files`, else `TETHER_HOSTS`, else
    /// `./hosts.json` if present (`local` always exists), and the host
    /// preferences from `settings`, else `TETHER_SETTINGS`, else
    /// `./.tether/settings.toml` if present.
    pub fn discover(hosts_files: &[PathBuf], settings: Option<&Path>) -> Result<Self> {
        Ok(Self::new(Resolver::discover(Registry::global(), hosts_files, settings)?))
    }

    /// A lab over a resolver of the caller's.
    pub fn new(resolver: Resolver) -> Self {
        Lab { resolver, hosts: Mutex::new(HashMap::new()) }
    }

    /// The resolver (inventory and registry).
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The host with this id or URL, shared across calls. A host behind a
    /// hop gets the shared host of that hop (and so on down the chain), so
    /// every host behind one hop uses one connection to it.
    pub fn host(&self, target: &str) -> Result<Arc<Host>> {
        if let Some(host) = self.lock_hosts().get(target) {
            return Ok(host.clone());
        }
        // Built unlocked: attaching the hop asks this lab for it.
        let host = Arc::new(self.with_hop(Host::new(self.config(target, &Overrides::default())?)?)?);
        Ok(self.lock_hosts().entry(target.to_string()).or_insert(host).clone())
    }

    /// A new, unshared host with per-call overrides applied (its hops are
    /// the lab's shared ones).
    pub fn host_with(&self, target: &str, overrides: &Overrides) -> Result<Host> {
        self.with_hop(Host::new(self.config(target, overrides)?)?)
    }

    fn with_hop(&self, host: Host) -> Result<Host> {
        // The resolver refused missing hops and cycles, so this ends.
        match host.config().hop.clone() {
            Some(hop) => host.with_hop(self.host(&hop)?),
            None => Ok(host),
        }
    }

    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Host>>> {
        self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The resolved configuration of a host.
    pub fn config(&self, target: &str, overrides: &Overrides) -> Result<HostConfig> {
        self.resolver.resolve(target, overrides)
    }

    /// Closes every host handed out, those furthest down a hop chain first
    /// so that no connection loses its hop while still open.
    pub async fn close(&self) -> Result<()> {
        let mut hosts: Vec<Arc<Host>> = self.lock_hosts().values().cloned().collect();
        hosts.sort_by_key(|host| std::cmp::Reverse(host.chain().len()));
        for host in hosts {
            host.close().await?;
        }
        Ok(())
    }
}
