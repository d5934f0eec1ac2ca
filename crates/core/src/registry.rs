//! The plugin registry: every transport crate submits one [`Plugin`] per
//! scheme with `inventory::submit!`, and [`Registry::global`] collects them.
//!
//! Entries hold only `&'static str` and `fn` pointers so they can be built in
//! a `static`. A crate that nothing references is not linked and its entry
//! disappears: the facade names every enabled transport crate, and
//! [`Registry::register`] exists for tests and static linking.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use crate::config::{HostConfig, ResolvedOptions};
use crate::connection::Connection;
use crate::dial::Dialer;
use crate::error::{Error, ErrorKind, Result};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a plugin's connect function receives.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The host to reach.
    pub host: Arc<HostConfig>,
    /// The scheme being connected (one plugin may serve several).
    pub scheme: &'static str,
    /// How to reach the host's address: open the connection's byte stream
    /// with it (directly, or through the host's hop).
    pub dialer: Dialer,
}

impl ConnectRequest {
    /// A request for `scheme` on `host`, dialed directly.
    pub fn direct(host: Arc<HostConfig>, scheme: &'static str) -> Self {
        ConnectRequest { host, scheme, dialer: Dialer::direct() }
    }
}

/// Opens a connection for a [`ConnectRequest`].
pub type ConnectFn = fn(ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>>;

/// What a scheme can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Runs commands ([`crate::Transport`]).
    pub exec: bool,
    /// Gives interactive terminal sessions.
    pub shell: bool,
    /// Runs commands as another user or group.
    pub user_switch: bool,
    /// Moves files ([`crate::FileTransfer`]).
    pub files: bool,
    /// Opens streams through the host ([`crate::Tunnel`]).
    pub tunnel: bool,
}

impl Capabilities {
    /// The names of the capabilities present.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.exec, "exec"),
            (self.shell, "shell"),
            (self.user_switch, "user-switch"),
            (self.files, "files"),
            (self.tunnel, "tunnel"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// A plugin's options table: its name, its defaults and its typed check.
#[derive(Clone, Copy)]
pub struct OptionsSpec {
    /// The table's name in `hosts.json` and `settings.toml` (`ssh_options`, …).
    pub table: &'static str,
    /// The built-in defaults, type-erased so the options merge needs no
    /// knowledge of the concrete type.
    pub defaults: fn() -> Box<dyn erased_serde::Serialize + Send>,
    /// Deserializes the merged table into the concrete type, so a bad key or
    /// value is reported with its source.
    pub check: fn(&ResolvedOptions, &str) -> Result<()>,
    /// The table's JSON Schema (draft 2020-12), for `tether schema hosts`:
    /// editors complete and check `hosts.json` against it.
    pub schema: fn() -> serde_json::Value,
}

impl OptionsSpec {
    /// The spec of options type `T` under `table`.
    pub const fn of<T>(table: &'static str) -> Self
    where
        T: Default + serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static,
    {
        OptionsSpec { table, defaults: boxed_default::<T>, check: check_table::<T>, schema: table_schema::<T> }
    }

    /// Checks this table of `options` against the concrete type.
    pub fn validate(&self, options: &ResolvedOptions) -> Result<()> {
        (self.check)(options, self.table)
    }
}

fn boxed_default<T: Default + serde::Serialize + Send + 'static>() -> Box<dyn erased_serde::Serialize + Send> {
    Box::new(T::default())
}

fn check_table<T: serde::de::DeserializeOwned>(options: &ResolvedOptions, table: &str) -> Result<()> {
    options.table::<T>(table).map(drop)
}

fn table_schema<T: schemars::JsonSchema>() -> serde_json::Value {
    // Pinned rather than left to schemars' default, so a schemars upgrade
    // cannot silently change the draft editors are told to use.
    schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>().to_value()
}

impl fmt::Debug for OptionsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptionsSpec").field("table", &self.table).finish_non_exhaustive()
    }
}

/// One scheme's registry entry.
#[derive(Clone, Copy)]
pub struct Plugin {
    /// URL scheme and `term`/`transfer` value (`ssh`, `sftp`, `local`, …).
    pub scheme: &'static str,
    /// Schemes with the same connection key share one connection per host
    /// (`ssh`, `sftp` and `scp` all use `ssh`).
    pub connection_key: &'static str,
    /// One line for `tether schemes`.
    pub description: &'static str,
    /// What the scheme can do.
    pub capabilities: Capabilities,
    /// The options table it reads, if any.
    pub options: Option<OptionsSpec>,
    /// Opens a connection.
    pub connect: ConnectFn,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("scheme", &self.scheme)
            .field("connection_key", &self.connection_key)
            .field("capabilities", &self.capabilities)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

inventory::collect!(Plugin);

/// The schemes known to this program.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    plugins: BTreeMap<&'static str, Plugin>,
}

static GLOBAL: OnceLock<Result<Registry, String>> = OnceLock::new();

impl Registry {
    /// A registry with no schemes (for tests that register their own).
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Every plugin submitted with `inventory` in this program, collected once.
    /// Two plugins claiming one scheme make this an error.
    pub fn global() -> Result<&'static Registry> {
        GLOBAL
            .get_or_init(|| {
                let mut registry = Registry::empty();
                for plugin in inventory::iter::<Plugin> {
                    registry.register(*plugin).map_err(|e| e.to_string())?;
                }
                Ok(registry)
            })
            .as_ref()
            .map_err(|message| Error::new(ErrorKind::InvalidConfig, "registry").with_context(message.clone()))
    }

    /// Adds a plugin; a scheme registered twice is an error.
    pub fn register(&mut self, plugin: Plugin) -> Result<()> {
        if self.plugins.contains_key(plugin.scheme) {
            return Err(Error::new(ErrorKind::InvalidConfig, "register")
                .with_context(format!("scheme `{}` is registered twice", plugin.scheme)));
        }
        self.plugins.insert(plugin.scheme, plugin);
        Ok(())
    }

    /// The plugin for `scheme`; the error lists the registered schemes.
    pub fn get(&self, scheme: &str) -> Result<&Plugin> {
        self.plugins.get(scheme).ok_or_else(|| {
            let known = self.plugins.keys().copied().collect::<Vec<_>>().join(", ");
            Error::new(ErrorKind::InvalidConfig, "lookup scheme")
                .with_context(format!("unknown scheme `{scheme}` (registered: {known})"))
        })
    }

    /// All plugins, sorted by scheme.
    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }
}
