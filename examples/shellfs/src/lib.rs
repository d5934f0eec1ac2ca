//! `shellfs`: an example third-party Tether plugin that moves files with
//! nothing but shell commands.
//!
//! This crate is written the way a plugin outside the Tether repository
//! would be: it depends only on the published `tether-core`, registers its
//! scheme with `inventory`, and proves itself with the core conformance
//! suite in its tests. Nothing in Tether knows about it.
//!
//! What it does: it offers [`ShellFs`] (core's
//! [`ShellFiles`](tether_core::raw::shell_files::ShellFiles)), a
//! [`FileTransfer`](tether_core::FileTransfer) built from `cat`, `stat`,
//! `mv` and friends run through the host's own command transport, as a
//! scheme of its own. That is how files reach a host that offers only a
//! command channel (a serial console, a restricted shell). Uploads stream
//! into `cat > temporary`, are size-checked, get their mode, owner and
//! mtime, and are renamed into place, so a failed put never leaves a
//! half-written destination. The scripts live in core because other
//! transports (SCP) reuse them for everything but the bytes.
//!
//! It builds on another scheme the way every such plugin should: it asks its
//! [`ConnectRequest`](tether_core::ConnectRequest) for the host's connection
//! of that scheme, so a host whose `term` is `ssh` moves files over its one
//! SSH connection, through the same jump hosts. Use it by naming it as a
//! host's `transfer`; `shellfs_options.inner` picks another command scheme
//! than the host's `term`:
//!
//! ```json
//! { "dut": { "term": "ssh", "transfer": "shellfs" } }
//! ```
//!
//! A program links the plugin by referencing the crate
//! (`use tether_example_shellfs as _;`); [`Registry::global`](tether_core::Registry::global)
//! then lists `shellfs`.

#![deny(missing_docs)]

mod connect;
mod options;

pub use options::{OPTIONS_TABLE, ShellFsOptions};
/// The file transfer this plugin hands out: core's shell-command one.
pub use tether_core::raw::shell_files::ShellFiles as ShellFs;

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `shellfs` scheme's registry entry.
///
/// `exec` is offered by handing out the borrowed command transport.
pub const PLUGIN: Plugin = Plugin::new("shellfs", connect::connect)
    .with_description(
        "files moved with shell commands (cat, stat, mv) over the host's command transport (example plugin)",
    )
    .with_capabilities(Capabilities::NONE.with_exec().with_files().with_byte_names())
    .with_options(OptionsSpec::of::<ShellFsOptions>(OPTIONS_TABLE));

tether_core::inventory::submit!(PLUGIN);
