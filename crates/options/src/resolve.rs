//! Turning a host id or URL into a [`HostConfig`]: the four layers merged.

use std::path::PathBuf;

use secrecy::SecretString;
use serde_json::{Map, Value};
use tether_core::{Credential, Error, ErrorKind, HostConfig, OptionSource, Registry, Result, TableOwner};

use crate::inventory::{Inventory, InventoryHost};
use crate::layers::{Layer, merge};
use crate::settings::Settings;
use crate::url::{HostUrl, parse_host_url};
use crate::{DEFAULT_HOSTS_FILE, DEFAULT_TERM, DEFAULT_TRANSFER, HOSTS_ENV, LOCAL_HOST_ID};

/// Layer 4: what the command line or the caller insists on.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Command transport scheme (`--term`).
    pub term: Option<String>,
    /// File transport scheme (`--transfer`).
    pub transfer: Option<String>,
    /// `(table, key, value)` settings (`-o TABLE.KEY=VALUE`).
    pub options: Vec<(String, String, Value)>,
    /// True for the command line, false for the API (only the reported source differs).
    pub from_command_line: bool,
}

impl Overrides {
    fn layer(&self) -> Layer {
        let mut values = Map::new();
        if let Some(term) = &self.term {
            values.insert("term".into(), Value::from(term.clone()));
        }
        if let Some(transfer) = &self.transfer {
            values.insert("transfer".into(), Value::from(transfer.clone()));
        }
        for (table, key, value) in &self.options {
            let table = values.entry(table.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(table) = table {
                table.insert(key.clone(), value.clone());
            }
        }
        let source = if self.from_command_line { OptionSource::CommandLine } else { OptionSource::Api };
        Layer { source, values }
    }
}

/// Resolves host ids and URLs against an inventory, settings and the
/// plugin registry.
#[derive(Debug, Clone)]
pub struct Resolver {
    registry: &'static Registry,
    inventory: Inventory,
    settings: Settings,
    /// Layer 1, built once: every registered plugin's defaults.
    defaults: Map<String, Value>,
}

impl Resolver {
    /// A resolver over an inventory and settings already loaded.
    pub fn new(registry: &'static Registry, inventory: Inventory, settings: Settings) -> Result<Self> {
        let mut defaults = Map::new();
        for plugin in registry.plugins() {
            if let Some(spec) = &plugin.options {
                let value = serde_json::to_value(&*spec.defaults()).map_err(|e| {
                    Error::new(ErrorKind::InvalidConfig, "plugin defaults").with_context(format!("{}: {e}", spec.table))
                })?;
                defaults.insert(spec.table.to_string(), value);
            }
        }
        Ok(Resolver { registry, inventory, settings, defaults })
    }

    /// Loads the inventory and settings the usual way. Inventory: `hosts_files`
    /// (each required), else `TETHER_HOSTS` (`:`-separated, each required),
    /// else `./hosts.json` if it exists. Settings: `settings_file`, else
    /// `TETHER_SETTINGS`, else `./.tether/settings.toml` if it exists.
    pub fn discover(
        registry: &'static Registry,
        hosts_files: &[PathBuf],
        settings_file: Option<&std::path::Path>,
    ) -> Result<Self> {
        let files: Vec<PathBuf> = if !hosts_files.is_empty() {
            hosts_files.to_vec()
        } else if let Some(list) = std::env::var_os(HOSTS_ENV).filter(|v| !v.is_empty()) {
            std::env::split_paths(&list).collect()
        } else if std::path::Path::new(DEFAULT_HOSTS_FILE).is_file() {
            vec![PathBuf::from(DEFAULT_HOSTS_FILE)]
        } else {
            Vec::new()
        };
        Resolver::new(registry, Inventory::load(&files)?, Settings::discover(settings_file)?)
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
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

    /// Resolves an inventory id, `local`, or a host URL, merging the four
    /// layers: plugin defaults < the host's inventory entry (or its URL) <
    /// matching host preferences, in file order < overrides.
    pub fn resolve(&self, target: &str, overrides: &Overrides) -> Result<HostConfig> {
        let (mut config, own_layer) = if let Some(url) = parse_host_url(target)? {
            self.url_host(url)?
        } else if let Some(host) = self.inventory.get(target) {
            inventory_host(host)
        } else if target == LOCAL_HOST_ID {
            let mut values = Map::new();
            values.insert("term".into(), Value::from("local"));
            values.insert("transfer".into(), Value::from("local"));
            (HostConfig::new(LOCAL_HOST_ID, "local", "local"), Layer { source: OptionSource::Default, values })
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

        let mut layers = Vec::with_capacity(4);
        let mut defaults = self.defaults.clone();
        defaults.insert("term".into(), Value::from(DEFAULT_TERM));
        defaults.insert("transfer".into(), Value::from(DEFAULT_TRANSFER));
        layers.push(Layer { source: OptionSource::Default, values: defaults });
        layers.push(own_layer);
        for preference in self.settings.matching(&config.id) {
            let source =
                OptionSource::Settings { path: preference.file.clone(), selector: preference.selector.clone() };
            layers.push(Layer { source, values: preference.values.clone() });
        }
        layers.push(overrides.layer());
        let merged = merge(&layers).map_err(|e| e.with_host(config.id.clone()))?;

        for (key, (value, source)) in merged.top {
            if key != "term" && key != "transfer" {
                // Only an override can get here (`-o ssh_option.port=1`): the
                // files refuse other keys when they are read.
                return Err(self.unknown_table(&config.id, &key, Some(&source)));
            }
            let text = value.as_str().map(str::to_string).ok_or_else(|| {
                Error::new(ErrorKind::InvalidConfig, "resolve host")
                    .with_host(config.id.clone())
                    .with_context(format!("`{key}` from {source} must be a string"))
            })?;
            match key.as_str() {
                "term" => (config.term, config.term_source) = (text, source),
                "transfer" => (config.transfer, config.transfer_source) = (text, source),
                _ => {}
            }
        }
        for (table, keys) in merged.tables {
            for (key, (value, source)) in keys {
                config.options.set(&table, &key, value, source)?;
            }
        }
        self.validate(&config)?;
        if config.hop.is_some() {
            self.hop_chain(&config.id)?;
        }
        Ok(config)
    }

    /// The hops between this machine and inventory host `target`, nearest
    /// first: each host's `hop`, followed until a host has none (empty for a
    /// host reached directly, `local` or a URL). A hop missing from the
    /// inventory, or a chain that comes back on itself, is a configuration
    /// error that names the chain.
    pub fn hop_chain(&self, target: &str) -> Result<Vec<String>> {
        let mut walked = vec![target.to_string()];
        let mut next = self.inventory.get(target).and_then(|h| h.hop.clone());
        while let Some(hop) = next {
            let chain = |end: &str| format!("{} -> {end}", walked.join(" -> "));
            let error = |why: String| {
                Error::new(ErrorKind::InvalidConfig, "resolve hops").with_host(target.to_string()).with_context(why)
            };
            if walked.contains(&hop) {
                return Err(error(format!("hop chain {} comes back to `{hop}`", chain(&hop))));
            }
            let Some(host) = self.inventory.get(&hop) else {
                let last = walked.last().map(String::as_str).unwrap_or(target);
                return Err(error(format!(
                    "`{last}` names hop `{hop}`, which is not in the inventory (chain {}; known: {})",
                    chain(&hop),
                    self.host_ids().join(", ")
                )));
            };
            walked.push(hop);
            next = host.hop.clone();
        }
        walked.remove(0);
        walked.reverse();
        Ok(walked)
    }

    /// Every table is checked against its plugin's type and meaning, so a
    /// typo, a wrong type or an unusable value is reported with its source
    /// instead of being ignored or noticed only at connect.
    fn validate(&self, config: &HostConfig) -> Result<()> {
        for table in config.options.tables() {
            match self.registry.table_owner(table) {
                Some(TableOwner::Plugin(_, spec)) => {
                    spec.validate(&config.options).map_err(|e| e.with_host(config.id.clone()))?
                }
                Some(TableOwner::Reserved(reserved)) => {
                    tracing::debug!(host = %config.id, table, transport = reserved.transport,
                        "options table of a transport not built in: kept unchecked");
                }
                None => {
                    let source = config.options.entries().find(|(t, ..)| *t == table).map(|(_, _, _, s)| s);
                    return Err(self.unknown_table(&config.id, table, source));
                }
            }
        }
        for scheme in [&config.term, &config.transfer] {
            self.registry.get(scheme).map_err(|e| e.with_host(config.id.clone()))?;
        }
        Ok(())
    }

    /// `table` is neither registered nor a known transport's: names where it
    /// was written and the nearest table that exists.
    fn unknown_table(&self, host: &str, table: &str, source: Option<&OptionSource>) -> Error {
        let candidates = self.registry.table_names();
        let hint = tether_core::raw::did_you_mean(table, &candidates)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        let source = source.map_or_else(|| "the configuration".to_string(), OptionSource::to_string);
        Error::new(ErrorKind::InvalidConfig, "options")
            .with_host(host.to_string())
            .with_context(format!("unknown table `{table}` in {source}{hint}"))
    }

    fn url_host(&self, url: HostUrl) -> Result<(HostConfig, Layer)> {
        let plugin = self.registry.get(&url.scheme).map_err(|e| e.with_host(url.display.clone()))?;
        let caps = plugin.capabilities;
        // A file-only scheme (`sftp://`) borrows the command transport of its
        // connection, and a command-only one (`ssh://`) the file transport.
        let sibling = |wants_files: bool| {
            let candidates: Vec<&str> = self
                .registry
                .plugins()
                .filter(|p| p.connection_key == plugin.connection_key)
                .filter(|p| if wants_files { p.capabilities.files } else { p.capabilities.exec })
                .map(|p| p.scheme)
                .collect();
            let preferred = if wants_files { DEFAULT_TRANSFER } else { DEFAULT_TERM };
            let chosen = candidates.iter().find(|s| **s == preferred).or(candidates.first()).copied();
            chosen.unwrap_or(plugin.scheme).to_string()
        };
        let term = if caps.exec { plugin.scheme.to_string() } else { sibling(false) };
        let transfer = if caps.files { plugin.scheme.to_string() } else { sibling(true) };
        let mut values = Map::new();
        values.insert("term".into(), Value::from(term.clone()));
        values.insert("transfer".into(), Value::from(transfer.clone()));
        let mut config = HostConfig::new(url.display.clone(), term, transfer);
        config.address = url.host;
        config.port = url.port;
        config.user = url.user.clone();
        if let (Some(login), Some(password)) = (url.user, url.password) {
            config.credentials.push(Credential { login, password: SecretString::from(password) });
        }
        Ok((config, Layer { source: OptionSource::Url, values }))
    }
}

fn inventory_host(host: &InventoryHost) -> (HostConfig, Layer) {
    let mut config = HostConfig::new(host.id.clone(), DEFAULT_TERM, DEFAULT_TRANSFER);
    config.address = host.ip.clone();
    config.credentials = host.creds.clone();
    config.hop = host.hop.clone();
    config.element = host.element.clone();
    config.board = host.board.clone();
    let mut values = Map::new();
    if let Some(term) = &host.term {
        values.insert("term".into(), Value::from(term.clone()));
    }
    if let Some(transfer) = &host.transfer {
        values.insert("transfer".into(), Value::from(transfer.clone()));
    }
    for (table, body) in &host.tables {
        values.insert(table.clone(), Value::Object(body.clone()));
    }
    (config, Layer { source: OptionSource::HostsFile { path: host.file.clone() }, values })
}
