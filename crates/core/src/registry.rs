//! The plugin registry: every transport crate submits one [`Plugin`] per
//! scheme with `inventory::submit!`, and [`Registry::global`] collects them.
//!
//! Entries hold only `&'static str` and `fn` pointers so they can be built in
//! a `static`, and they are built with `const fn` constructors
//! ([`Plugin::new`], [`Capabilities::NONE`] and their `with_*` methods) so a
//! field added here breaks no plugin crate.
//!
//! The registry checks what it is given. A scheme claimed twice, or an
//! options table that does not end in `_options` or that two plugins claim,
//! breaks only the schemes concerned: looking one up gives the error, and
//! [`Registry::problems`] lists them, while every other scheme keeps working.
//!
//! A crate that nothing references is not linked and its entry disappears:
//! the facade names every enabled transport crate, and [`Registry::register`]
//! exists for tests and static linking.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use crate::config::ResolvedOptions;
use crate::connection::{ConnectRequest, Connection};
use crate::error::{Error, ErrorKind, Result};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens a connection for a [`ConnectRequest`].
pub type ConnectFn = fn(ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>>;

/// What a scheme can do. Build it from [`Capabilities::NONE`] with the
/// `with_*` methods, in a `const`:
///
/// ```
/// use tether_core::Capabilities;
/// const FILES_AND_EXEC: Capabilities = Capabilities::NONE.with_exec().with_files();
/// assert_eq!(FILES_AND_EXEC.to_string(), "exec,files");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Carries names that are not UTF-8, as POSIX allows: remote file names
    /// (any bytes but `/` and NUL) where the scheme moves files, argv words
    /// and the working directory where it runs commands. Without it, such a
    /// name is refused with [`crate::ErrorKind::Unsupported`].
    pub byte_names: bool,
    /// Runs commands on a terminal (Telnet, a serial console): stderr
    /// arrives merged into stdout, stdin is only the bytes of
    /// [`crate::Command::stdin`] (a spawned command gets no stdin pipe), and
    /// a death by signal shows as the shell's exit code 128 + n. A limit,
    /// not a feature: [`Capabilities::ALL`] leaves it unset.
    pub terminal_io: bool,
}

impl Capabilities {
    /// A scheme that can do nothing yet: the start of every declaration.
    pub const NONE: Capabilities = Capabilities {
        exec: false,
        shell: false,
        user_switch: false,
        files: false,
        tunnel: false,
        byte_names: false,
        terminal_io: false,
    };

    /// Everything: what a connection factory that knows no plugins assumes.
    pub const ALL: Capabilities = Capabilities {
        exec: true,
        shell: true,
        user_switch: true,
        files: true,
        tunnel: true,
        byte_names: true,
        terminal_io: false,
    };

    /// Adds: runs commands.
    pub const fn with_exec(mut self) -> Self {
        self.exec = true;
        self
    }

    /// Adds: interactive terminal sessions.
    pub const fn with_shell(mut self) -> Self {
        self.shell = true;
        self
    }

    /// Adds: commands as another user or group.
    pub const fn with_user_switch(mut self) -> Self {
        self.user_switch = true;
        self
    }

    /// Adds: moves files.
    pub const fn with_files(mut self) -> Self {
        self.files = true;
        self
    }

    /// Adds: opens streams through the host.
    pub const fn with_tunnel(mut self) -> Self {
        self.tunnel = true;
        self
    }

    /// Adds: file names, argv words and directories that are not UTF-8.
    pub const fn with_byte_names(mut self) -> Self {
        self.byte_names = true;
        self
    }

    /// Adds: commands run on a terminal (one output stream, no stdin pipe).
    pub const fn with_terminal_io(mut self) -> Self {
        self.terminal_io = true;
        self
    }

    /// The names of the capabilities present.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.exec, "exec"),
            (self.shell, "shell"),
            (self.user_switch, "user-switch"),
            (self.files, "files"),
            (self.tunnel, "tunnel"),
            (self.byte_names, "byte-names"),
            (self.terminal_io, "terminal-io"),
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

/// A value of an options table that no connection could use: the key and
/// why. [`ValidateOptions::validate`] returns it; the registry turns it into
/// an error that also names where the value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOption {
    /// The key within the table (`max_sessions`); empty when the problem is
    /// the table as a whole.
    pub key: String,
    /// What is wrong, as a sentence about the value (`must be at least 1`).
    pub why: String,
}

impl InvalidOption {
    /// `key`'s value is wrong because `why`.
    pub fn new(key: impl Into<String>, why: impl Into<String>) -> Self {
        InvalidOption { key: key.into(), why: why.into() }
    }

    /// The configuration error for this problem in `table`, when the layer
    /// the value came from is not at hand (a transport checking its own
    /// options at connect time).
    pub fn in_table(&self, table: &str) -> Error {
        Error::new(ErrorKind::InvalidConfig, "options").with_context(match self.key.as_str() {
            "" => format!("{table}: {}", self.why),
            key => format!("{table}.{key} {}", self.why),
        })
    }
}

impl fmt::Display for InvalidOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key.as_str() {
            "" => f.write_str(&self.why),
            key => write!(f, "{key} {}", self.why),
        }
    }
}

/// `seconds` as a positive duration: what every timeout option takes.
pub fn positive_seconds(key: &str, seconds: f64) -> std::result::Result<std::time::Duration, InvalidOption> {
    match std::time::Duration::try_from_secs_f64(seconds) {
        Ok(limit) if !limit.is_zero() => Ok(limit),
        _ => Err(InvalidOption::new(key, format!("must be a positive number of seconds, not {seconds}"))),
    }
}

/// `seconds` as a duration, with zero meaning off (`None`): what interval
/// options such as keepalives take.
pub fn optional_seconds(key: &str, seconds: f64) -> std::result::Result<Option<std::time::Duration>, InvalidOption> {
    match std::time::Duration::try_from_secs_f64(seconds) {
        Ok(limit) if limit.is_zero() => Ok(None),
        Ok(limit) => Ok(Some(limit)),
        Err(_) => {
            Err(InvalidOption::new(key, format!("must be zero (off) or a positive number of seconds, not {seconds}")))
        }
    }
}

/// Checks an options type for meaning, once its shape is known to be right
/// (a zero session limit, a negative timeout). It runs when a host is
/// resolved, so `tether config HOST` already refuses such a value.
pub trait ValidateOptions {
    /// `Ok` when every value can be used.
    fn validate(&self) -> std::result::Result<(), InvalidOption>;
}

/// A plugin's options table: its name, its defaults and its typed check.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct OptionsSpec {
    /// The table's name in `hosts.json` and `settings.toml` (`ssh_options`, …).
    pub table: &'static str,
    defaults: fn() -> Box<dyn erased_serde::Serialize + Send>,
    check: fn(&ResolvedOptions, &str) -> Result<()>,
    schema: fn() -> serde_json::Value,
}

impl OptionsSpec {
    /// The spec of options type `T` under `table`, checked for shape only:
    /// unknown keys and wrong types are refused.
    pub const fn of<T>(table: &'static str) -> Self
    where
        T: Default + serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static,
    {
        OptionsSpec { table, defaults: boxed_default::<T>, check: check_shape::<T>, schema: table_schema::<T> }
    }

    /// The spec of options type `T` under `table`, checked for shape and
    /// then for meaning with [`ValidateOptions::validate`].
    pub const fn validated<T>(table: &'static str) -> Self
    where
        T: Default
            + serde::Serialize
            + serde::de::DeserializeOwned
            + schemars::JsonSchema
            + ValidateOptions
            + Send
            + 'static,
    {
        OptionsSpec { table, defaults: boxed_default::<T>, check: check_meaning::<T>, schema: table_schema::<T> }
    }

    /// Checks this table of `options` against the concrete type (and its
    /// meaning, for a [`OptionsSpec::validated`] spec). The error names the
    /// key and the layer its value came from.
    pub fn validate(&self, options: &ResolvedOptions) -> Result<()> {
        (self.check)(options, self.table)
    }

    /// The built-in defaults, type-erased so the options merge needs no
    /// knowledge of the concrete type.
    pub fn defaults(&self) -> Box<dyn erased_serde::Serialize + Send> {
        (self.defaults)()
    }

    /// The table's JSON Schema (draft 2020-12), for `tether schema hosts`:
    /// editors complete and check `hosts.json` against it.
    pub fn schema(&self) -> serde_json::Value {
        (self.schema)()
    }
}

fn boxed_default<T: Default + serde::Serialize + Send + 'static>() -> Box<dyn erased_serde::Serialize + Send> {
    Box::new(T::default())
}

fn check_shape<T: serde::de::DeserializeOwned>(options: &ResolvedOptions, table: &str) -> Result<()> {
    options.table::<T>(table).map(drop)
}

fn check_meaning<T: serde::de::DeserializeOwned + ValidateOptions>(
    options: &ResolvedOptions,
    table: &str,
) -> Result<()> {
    let value = options.table::<T>(table)?;
    value.validate().map_err(|problem| options.invalid(table, &problem))
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

/// One scheme's registry entry, built in a `const`:
///
/// ```
/// # use tether_core::{Capabilities, OptionsSpec, Plugin};
/// # fn connect(r: tether_core::ConnectRequest) -> tether_core::BoxFuture<'static, tether_core::Result<std::sync::Arc<dyn tether_core::Connection>>> {
/// #     Box::pin(async { Err(tether_core::Error::new(tether_core::ErrorKind::Unsupported, "connect")) })
/// # }
/// pub const PLUGIN: Plugin = Plugin::new("demo", connect)
///     .with_description("a demonstration")
///     .with_capabilities(Capabilities::NONE.with_exec());
/// assert_eq!(PLUGIN.connection_key, "demo");
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
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

impl Plugin {
    /// The entry for `scheme`, opened by `connect`: its own connection key,
    /// no description, no capabilities and no options table until the
    /// `with_*` methods add them.
    pub const fn new(scheme: &'static str, connect: ConnectFn) -> Self {
        Plugin {
            scheme,
            connection_key: scheme,
            description: "",
            capabilities: Capabilities::NONE,
            options: None,
            connect,
        }
    }

    /// Shares one connection per host with every scheme of the same key.
    pub const fn with_connection_key(mut self, key: &'static str) -> Self {
        self.connection_key = key;
        self
    }

    /// The line `tether schemes` shows.
    pub const fn with_description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// What the scheme can do; the conformance suite holds it to this.
    pub const fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The options table the scheme reads.
    pub const fn with_options(mut self, options: OptionsSpec) -> Self {
        self.options = Some(options);
        self
    }
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

/// An options table that belongs to a transport this program was built
/// without. Inventories are shared between builds, so such a table is kept
/// unchecked instead of being refused as a typo. The facade submits one per
/// table of each transport feature that is off.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ReservedTable {
    /// The table (`telnet_options`).
    pub table: &'static str,
    /// The transport it belongs to (`telnet`), for messages.
    pub transport: &'static str,
}

impl ReservedTable {
    /// `table` belongs to `transport`, which is not built in.
    pub const fn new(table: &'static str, transport: &'static str) -> Self {
        ReservedTable { table, transport }
    }
}

inventory::collect!(ReservedTable);

/// Who reads an options table, as far as this program knows.
#[derive(Debug, Clone, Copy)]
pub enum TableOwner<'a> {
    /// A registered plugin, with the table's spec.
    Plugin(&'a Plugin, &'a OptionsSpec),
    /// A transport this program was built without.
    Reserved(&'a ReservedTable),
}

/// The schemes known to this program.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    plugins: BTreeMap<&'static str, Plugin>,
    tables: BTreeMap<&'static str, &'static str>,
    reserved: BTreeMap<&'static str, ReservedTable>,
    /// Schemes refused at registration, with why: looked up, they give the
    /// error; every other scheme still works.
    broken: BTreeMap<&'static str, String>,
}

static GLOBAL: OnceLock<Registry> = OnceLock::new();

impl Registry {
    /// A registry with no schemes (for tests that register their own).
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Every plugin and reserved table submitted with `inventory` in this
    /// program, collected once. A plugin refused by [`Registry::register`]
    /// breaks only its own scheme (see [`Registry::problems`]).
    pub fn global() -> &'static Registry {
        GLOBAL.get_or_init(|| {
            let mut registry = Registry::empty();
            for plugin in inventory::iter::<Plugin> {
                // Recorded in `broken`: reported when the scheme is used.
                let _ = registry.register(*plugin);
            }
            for reserved in inventory::iter::<ReservedTable> {
                registry.reserve(*reserved);
            }
            registry
        })
    }

    /// Adds a plugin. A scheme registered twice, a table name that does not
    /// end in `_options`, or a table another plugin reads is refused: the
    /// error says why, and from then on the schemes concerned give that
    /// error when looked up, while the others keep working.
    pub fn register(&mut self, plugin: Plugin) -> Result<()> {
        let refuse = |registry: &mut Registry, schemes: &[&'static str], why: String| {
            for scheme in schemes {
                registry.plugins.remove(scheme);
                registry.broken.entry(scheme).or_insert_with(|| why.clone());
            }
            Err(Error::new(ErrorKind::InvalidConfig, "register").with_context(why))
        };
        let scheme = plugin.scheme;
        if let Some(why) = self.broken.get(scheme) {
            let why = why.clone();
            return refuse(self, &[], why);
        }
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return refuse(self, &[scheme], format!("scheme `{scheme}` is not a URL scheme (letters, digits, + - .)"));
        }
        if self.plugins.contains_key(scheme) {
            return refuse(self, &[scheme], format!("scheme `{scheme}` is registered twice"));
        }
        if let Some(spec) = &plugin.options {
            let table = spec.table;
            let stem = table.strip_suffix("_options").unwrap_or_default();
            if stem.is_empty() {
                return refuse(
                    self,
                    &[scheme],
                    format!("scheme `{scheme}`: options table `{table}` must be named `<name>_options`"),
                );
            }
            if let Some(owner) = self.tables.get(table).copied() {
                return refuse(
                    self,
                    &[owner, scheme],
                    format!("options table `{table}` is claimed by both `{owner}` and `{scheme}`"),
                );
            }
            self.tables.insert(table, scheme);
        }
        self.plugins.insert(scheme, plugin);
        Ok(())
    }

    /// Records a table of a transport this program was built without; a
    /// table a plugin reads stays the plugin's.
    pub fn reserve(&mut self, reserved: ReservedTable) {
        self.reserved.entry(reserved.table).or_insert(reserved);
    }

    /// The plugin for `scheme`; the error says why a scheme was refused, or
    /// lists the registered ones.
    pub fn get(&self, scheme: &str) -> Result<&Plugin> {
        if let Some(why) = self.broken.get(scheme) {
            return Err(Error::new(ErrorKind::InvalidConfig, "lookup scheme")
                .with_context(format!("scheme `{scheme}` is unusable: {why}")));
        }
        self.plugins.get(scheme).ok_or_else(|| {
            let known = self.plugins.keys().copied().collect::<Vec<_>>().join(", ");
            Error::new(ErrorKind::InvalidConfig, "lookup scheme")
                .with_context(format!("unknown scheme `{scheme}` (registered: {known})"))
        })
    }

    /// All usable plugins, sorted by scheme.
    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }

    /// The schemes refused at registration and why, sorted by scheme.
    pub fn problems(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.broken.iter().map(|(scheme, why)| (*scheme, why.as_str()))
    }

    /// Who reads options table `table`: a plugin, a transport that is not
    /// built in, or nobody (`None`: a typo, say).
    pub fn table_owner(&self, table: &str) -> Option<TableOwner<'_>> {
        if let Some(scheme) = self.tables.get(table)
            && let Some(plugin) = self.plugins.get(scheme)
            && let Some(spec) = &plugin.options
        {
            return Some(TableOwner::Plugin(plugin, spec));
        }
        self.reserved.get(table).map(TableOwner::Reserved)
    }

    /// Every options table this program knows: the plugins' and the reserved
    /// ones, sorted.
    pub fn table_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.tables.keys().chain(self.reserved.keys()).copied().collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
        Box::pin(async move { Err(Error::new(ErrorKind::Unsupported, "connect").with_context(request.scheme)) })
    }

    #[derive(Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Empty {}

    const fn plugin(scheme: &'static str, table: Option<&'static str>) -> Plugin {
        let plugin = Plugin::new(scheme, connect);
        match table {
            Some(table) => plugin.with_options(OptionsSpec::of::<Empty>(table)),
            None => plugin,
        }
    }

    #[test]
    fn a_scheme_claimed_twice_breaks_only_that_scheme() {
        let mut registry = Registry::empty();
        registry.register(plugin("good", Some("good_options"))).unwrap();
        registry.register(plugin("twice", None)).unwrap();
        let err = registry.register(plugin("twice", None)).unwrap_err();
        assert!(err.to_string().contains("scheme `twice` is registered twice"), "{err}");
        // A third claim stays refused: the scheme does not come back to life.
        assert!(registry.register(plugin("twice", None)).is_err());
        let err = registry.get("twice").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("registered twice"), "{err}");
        assert_eq!(registry.get("good").unwrap().scheme, "good");
        assert_eq!(registry.plugins().map(|p| p.scheme).collect::<Vec<_>>(), ["good"]);
        assert_eq!(registry.problems().map(|(s, _)| s).collect::<Vec<_>>(), ["twice"]);
    }

    #[test]
    fn table_names_are_checked() {
        let mut registry = Registry::empty();
        let err = registry.register(plugin("odd", Some("odd_settings"))).unwrap_err();
        assert!(err.to_string().contains("must be named `<name>_options`"), "{err}");
        assert!(registry.register(plugin("bare", Some("_options"))).is_err());
        registry.register(plugin("first", Some("shared_options"))).unwrap();
        let err = registry.register(plugin("second", Some("shared_options"))).unwrap_err();
        assert!(err.to_string().contains("claimed by both `first` and `second`"), "{err}");
        // Neither claimant wins by the accident of link order.
        assert!(registry.get("first").is_err() && registry.get("second").is_err());
        assert!(registry.table_owner("shared_options").is_none());
        registry.register(plugin("fine", Some("fine_options"))).unwrap();
        assert!(matches!(registry.table_owner("fine_options"), Some(TableOwner::Plugin(p, _)) if p.scheme == "fine"));
    }

    #[test]
    fn bad_scheme_names_are_refused() {
        let mut registry = Registry::empty();
        for scheme in ["", "with space", "a/b"] {
            assert!(registry.register(plugin(scheme, None)).is_err(), "{scheme:?}");
        }
        registry.register(plugin("ssh+x.y-z", None)).unwrap();
    }

    #[test]
    fn reserved_tables_are_known_but_not_plugins() {
        let mut registry = Registry::empty();
        registry.reserve(ReservedTable::new("telnet_options", "telnet"));
        assert!(
            matches!(registry.table_owner("telnet_options"), Some(TableOwner::Reserved(r)) if r.transport == "telnet")
        );
        assert_eq!(registry.table_names(), ["telnet_options"]);
        assert!(registry.get("telnet").is_err());
    }

    #[test]
    fn capabilities_build_in_const() {
        const CAPS: Capabilities =
            Capabilities::NONE.with_exec().with_shell().with_user_switch().with_files().with_tunnel();
        assert_eq!(CAPS.to_string(), "exec,shell,user-switch,files,tunnel");
        assert_eq!(Capabilities::NONE.to_string(), "");
    }
}
