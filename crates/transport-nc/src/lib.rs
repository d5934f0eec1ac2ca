//! Tether's `nc` transport: files to hosts that have nothing but a shell
//! and netcat (embedded Linux, busybox systems, rescue images).
//!
//! It builds on the host's own command transport (its `term`: `ssh`,
//! `telnet`, `local`), borrowed through the plugin-on-plugin API, so it
//! opens no command connection of its own and goes through the same jump
//! hosts. The bytes of a transfer go over a separate TCP connection to a
//! listener that `nc -l -p PORT` opens on the host, reached directly or
//! through the hop chain's tunnel.
//!
//! - **put**: a private temporary sibling of the destination receives the
//!   data; its size and SHA-256 (by default) are compared with what was
//!   sent; then owner, mode and mtime are set and it is renamed into place.
//!   Any failure removes it and leaves the destination as it was.
//! - **get**: netcat sends the file; the bytes are counted and hashed as
//!   they arrive and compared with the host's size and SHA-256.
//! - **stat, list, mkdir, remove, rename**: shell commands, as core's
//!   [`ShellFiles`](tether_core::raw::shell_files::ShellFiles) runs them.
//!
//! The netcat flavour (OpenBSD, traditional, ncat, busybox) is read from
//! `nc -h` once per connection. Every listener runs under a watchdog that
//! kills it after `listener_timeout` unless its connection came, and the
//! listener's command is its lifeline: when it ends (the local side died),
//! netcat is killed at once.
//!
//! Netcat listens on the address the host is reached at where its flavour
//! can bind one (every address when the host does not hold it, as behind
//! a NAT; busybox's always listens on every address). The checksum catches
//! data that someone else sent, but on a shared network a file fetched with
//! `get` can be read by whoever connects first. Use a hop (the data then
//! crosses the network inside SSH up to the hop) or a trusted lab network.
//!
//! The options are `nc_options` ([`NcOptions`]).

#![deny(missing_docs)]

mod connect;
mod listener;
mod options;
mod probe;
mod transfer;

pub use connect::NcConnection;
pub use options::{NcOptions, Strategy, Verify};
pub use probe::Flavour;
pub use transfer::NcFiles;

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `nc` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin::new("nc", connect::connect)
    .with_description("netcat: files over a TCP connection to `nc -l` on the host, driven by its term, verified")
    .with_capabilities(Capabilities::NONE.with_files().with_byte_names())
    .with_options(OptionsSpec::validated::<NcOptions>(options::TABLE));

tether_core::inventory::submit!(PLUGIN);
