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
        Ok(Self::new(Resolver::discover(Registry::global()?, hosts_files, settings)?))
    }

    /// A lab over a resolver of the caller's.
    pub fn new(resolver: Resolver) -> Self {
        Lab { resolver, hosts: Mutex::new(HashMap::new()) }
    }

    /// The resolver (inventory and registry).
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The host with this id or URL, shared across calls.
    pub fn host(&self, target: &str) -> Result<Arc<Host>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(host) = hosts.get(target) {
            return Ok(host.clone());
        }
        let host = Arc::new(Host::new(self.config(target, &Overrides::default())?)?);
        hosts.insert(target.to_string(), host.clone());
        Ok(host)
    }

    /// A new, unshared host with per-call overrides applied.
    pub fn host_with(&self, target: &str, overrides: &Overrides) -> Result<Host> {
        Host::new(self.config(target, overrides)?)
    }

    /// The resolved configuration of a host.
    pub fn config(&self, target: &str, overrides: &Overrides) -> Result<HostConfig> {
        self.resolver.resolve(target, overrides)
    }

    /// Closes every host handed out.
    pub async fn close(&self) -> Result<()> {
        let hosts: Vec<Arc<Host>> = {
            let hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            hosts.values().cloned().collect()
        };
        for host in hosts {
            host.close().await?;
        }
        Ok(())
    }
}
