//! Turning a host id or URL into a [`HostConfig`].

use std::path::PathBuf;

use secrecy::SecretString;
use tether_core::{Credential, Error, ErrorKind, HostConfig, OptionSource, Registry, Result};

use crate::inventory::{Inventory, InventoryHost};
use crate::url::{HostUrl, parse_host_url};
use crate::{DEFAULT_HOSTS_FILE, DEFAULT_TERM, DEFAULT_TRANSFER, HOSTS_ENV, LOCAL_HOST_ID};

/// The last layer: what the command line or the caller insists on.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Command transport scheme (`--term`).
    pub term: Option<String>,
    /// File transport scheme (`--transfer`).
    pub transfer: Option<String>,
}

/// Resolves host ids and URLs against an inventory and the plugin registry.
#[derive(Debug, Clone)]
pub struct Resolver {
    registry: &'static Registry,
    inventory: Inventory,
}

impl Resolver {
    /// A resolver over an inventory already loaded.
    pub fn new(registry: &'static Registry, inventory: Inventory) -> Self {
        Resolver { registry, inventory }
    }

    /// Loads the inventory the usual way: the `files` named (each required),
    /// else those in `TETHER_HOSTS` (`:`-separated, each required), else
    /// `./hosts.json` if it exists.
    pub fn discover(registry: &'static Registry, files: &[PathBuf]) -> Result<Self> {
        let files: Vec<PathBuf> = if !files.is_empty() {
            files.to_vec()
        } else if let Some(list) = std::env::var_os(HOSTS_ENV).filter(|v| !v.is_empty()) {
            std::env::split_paths(&list).collect()
        } else if std::path::Path::new(DEFAULT_HOSTS_FILE).is_file() {
            vec![PathBuf::from(DEFAULT_HOSTS_FILE)]
        } else {
            Vec::new()
        };
        Ok(Resolver::new(registry, Inventory::load(&files)?))
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The registry.
    pub fn registry(&self) -> &'static Registry {
        self.registry
    }

    /// Every host id that resolves without a URL, sorted, `local` included.
    pub fn host_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inventory.hosts().map(|h| h.id.clone()).collect();
        if self.inventory.get(LOCAL_HOST_ID).is_none() {
            ids.push(LOCAL_HOST_ID.to_string());
            ids.sort();
        }
        ids
    }

    /// Resolves an inventory id, `local`, or a host URL.
    pub fn resolve(&self, target: &str, overrides: &Overrides) -> Result<HostConfig> {
        let mut config = if let Some(url) = parse_host_url(target)? {
            self.config_from_url(url)?
        } else if let Some(host) = self.inventory.get(target) {
            self.config_from_inventory(host)?
        } else if target == LOCAL_HOST_ID {
            self.with_defaults(HostConfig::new(LOCAL_HOST_ID, "local", "local"))?
        } else {
            let read = match self.inventory.files() {
                [] => "no inventory file read: give --hosts FILE, set TETHER_HOSTS or create ./hosts.json".to_string(),
                files => format!(
                    "inventory: {}",
                    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(Error::new(ErrorKind::NotFound, "resolve host")
                .with_context(format!("unknown host `{target}` (known: {}; {read})", self.host_ids().join(", "))));
        };
        if let Some(term) = &overrides.term {
            config.term = term.clone();
        }
        if let Some(transfer) = &overrides.transfer {
            config.transfer = transfer.clone();
        }
        for scheme in [&config.term, &config.transfer] {
            self.registry.get(scheme).map_err(|e| e.with_host(config.id.clone()))?;
        }
        Ok(config)
    }

    fn with_defaults(&self, mut config: HostConfig) -> Result<HostConfig> {
        for plugin in self.registry.plugins() {
            if let Some(spec) = &plugin.options {
                let defaults = (spec.defaults)();
                config.options.set_all(spec.table, &*defaults, OptionSource::Default)?;
            }
        }
        Ok(config)
    }

    fn config_from_inventory(&self, host: &InventoryHost) -> Result<HostConfig> {
        let mut config = self.with_defaults(HostConfig::new(
            host.id.clone(),
            host.term.clone().unwrap_or_else(|| DEFAULT_TERM.to_string()),
            host.transfer.clone().unwrap_or_else(|| DEFAULT_TRANSFER.to_string()),
        ))?;
        config.address = host.ip.clone();
        config.credentials = host.creds.clone();
        config.hop = host.hop.clone();
        config.element = host.element.clone();
        config.board = host.board.clone();
        for (table, values) in &host.tables {
            config.options.set_all(table, values, OptionSource::HostsFile { path: host.file.clone() })?;
        }
        Ok(config)
    }

    fn config_from_url(&self, url: HostUrl) -> Result<HostConfig> {
        let plugin = self.registry.get(&url.scheme).map_err(|e| e.with_host(url.display.clone()))?;
        let caps = plugin.capabilities;
        // A file-only scheme (`sftp://`) borrows the command transport of its
        // connection, and a command-only one (`ssh://`) the file transport.
        let sibling = |wants_files: bool| {
            let mut candidates = self
                .registry
                .plugins()
                .filter(|p| p.connection_key == plugin.connection_key)
                .filter(|p| if wants_files { p.capabilities.files } else { p.capabilities.exec });
            let first = candidates.next().map(|p| p.scheme.to_string());
            let preferred = if wants_files { DEFAULT_TRANSFER } else { DEFAULT_TERM };
            let all: Vec<String> = first.iter().cloned().chain(candidates.map(|p| p.scheme.to_string())).collect();
            all.iter().find(|s| *s == preferred).cloned().or(first).unwrap_or_else(|| plugin.scheme.to_string())
        };
        let term = if caps.exec { plugin.scheme.to_string() } else { sibling(false) };
        let transfer = if caps.files { plugin.scheme.to_string() } else { sibling(true) };
        let mut config = self.with_defaults(HostConfig::new(url.display.clone(), term, transfer))?;
        config.address = url.host;
        config.port = url.port;
        config.user = url.user.clone();
        if let (Some(login), Some(password)) = (url.user, url.password) {
            config.credentials.push(Credential { login, password: SecretString::from(password) });
        }
        Ok(config)
    }
}
