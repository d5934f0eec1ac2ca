//! `shellfs`: an example third-party Tether plugin that moves files with
//! nothing but shell commands.
//!
//! This crate is written the way a plugin outside the Tether repository
//! would be: it depends only on the published crates (`tether-core`, and
//! `tether-transport-local` for its default command channel), registers its
//! scheme with `inventory`, and proves itself with the core conformance
//! suite in its tests. Nothing in Tether knows about it.
//!
//! What it does: it offers [`ShellFs`] (core's
//! [`ShellFiles`](tether_core::shell_files::ShellFiles)), a
//! [`FileTransfer`](tether_core::FileTransfer) built from `cat`, `stat`,
//! `mv` and friends run through another scheme's
//! [`Transport`](tether_core::Transport), as a scheme of its own. That is how
//! files reach a host that offers only a command channel (a serial console,
//! a restricted shell). Uploads stream into `cat > temporary`, are
//! size-checked, get their mode, owner and mtime, and are renamed into
//! place, so a failed put never leaves a half-written destination. The
//! scripts live in core because other transports (SCP) reuse them for
//! everything but the bytes.
//!
//! Use it by naming it as a host's `transfer`, and pick the command
//! transport it rides on with `shellfs_options.inner` (default `local`):
//!
//! ```json
//! { "dut": { "term": "local", "transfer": "shellfs", "shellfs_options": { "inner": "local" } } }
//! ```
//!
//! A program links the plugin by referencing the crate
//! (`use tether_example_shellfs as _;`); [`Registry::global`](tether_core::Registry::global)
//! then lists `shellfs`.

#![deny(missing_docs)]

mod connect;
mod options;

// The default inner scheme: referenced so the linker keeps its registry entry.
use tether_transport_local as _;

pub use options::{OPTIONS_TABLE, ShellFsOptions};
/// The file transfer this plugin hands out: core's shell-command one.
pub use tether_core::shell_files::ShellFiles as ShellFs;

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `shellfs` scheme's registry entry.
///
/// `exec` is offered by handing out the inner scheme's command transport.
pub const PLUGIN: Plugin = Plugin {
    scheme: "shellfs",
    connection_key: "shellfs",
    description: "files moved with shell commands (cat, stat, mv) over another scheme's exec (example plugin)",
    capabilities: Capabilities { exec: true, shell: false, user_switch: false, files: true, tunnel: false },
    options: Some(OptionsSpec::of::<ShellFsOptions>(OPTIONS_TABLE)),
    connect: connect::connect,
};

tether_core::inventory::submit!(PLUGIN);
