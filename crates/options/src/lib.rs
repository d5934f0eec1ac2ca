//! Where hosts come from and how each is reached: the `hosts.json`
//! inventory, ad-hoc host URLs and the embedded `local` host, with
//! per-protocol options merged from four layers, every value keeping its
//! source:
//!
//! 1. each registered plugin's defaults;
//! 2. the host's own `*_options` tables in `hosts.json` (or its URL);
//! 3. `[host_preferences."<regex>"]` tables of `settings.toml` whose regex
//!    matches the host id, in file order;
//! 4. overrides from the command line (`--term`, `--transfer`, `-o`) or the API.
//!
//! The merge is per key: a host that sets only `ssh_options.port` still
//! inherits `connect_timeout` from a preference and the rest from defaults.

#![deny(missing_docs)]

mod inventory;
mod layers;
mod resolve;
mod schema;
mod settings;
mod url;

pub use inventory::{Inventory, InventoryHost};
pub use layers::parse_assignment;
pub use resolve::{Overrides, Resolver};
pub use schema::hosts_schema;
pub use settings::{Preference, Settings};
pub use url::{HostUrl, parse_host_url};

/// The id of the host that exists without any inventory: this machine.
pub const LOCAL_HOST_ID: &str = "local";
/// `term` when an inventory host names none.
pub const DEFAULT_TERM: &str = "ssh";
/// `transfer` when an inventory host names none.
pub const DEFAULT_TRANSFER: &str = "sftp";
/// Environment variable naming the inventory file(s), `:`-separated.
pub const HOSTS_ENV: &str = "TETHER_HOSTS";
/// The inventory file read when none is named.
pub const DEFAULT_HOSTS_FILE: &str = "hosts.json";
/// Environment variable naming the settings file.
pub const SETTINGS_ENV: &str = "TETHER_SETTINGS";
/// The settings file read when none is named.
pub const DEFAULT_SETTINGS_FILE: &str = ".tether/settings.toml";
