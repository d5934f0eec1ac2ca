//! Where hosts come from: the `hosts.json` inventory, ad-hoc host URLs and
//! the embedded `local` host, resolved into a [`tether_core::HostConfig`]
//! with every registered plugin's option table merged in.
//!
//! Layers applied here: the plugins' defaults, then the host's own tables in
//! `hosts.json`, then overrides (`--term`, `--transfer`). Settings-file host
//! preferences come as a later layer.

#![deny(missing_docs)]

mod inventory;
mod resolve;
mod url;

pub use inventory::{Inventory, InventoryHost};
pub use resolve::{Overrides, Resolver};
pub use url::parse_host_url;

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
