//! Tether's `local` transport: this machine as a host.
//!
//! Commands run as child processes (each in its own process group, so a
//! timeout or a kill stops everything the command started), files move on the
//! local filesystem with the same atomic-`put` guarantee as every other
//! transport, and the tunnel opens plain TCP connections from here.
//!
//! Running as another user or group (`Command::user` / `Command::group`,
//! `PutOptions::owner` / `PutOptions::group`) needs root; without it the
//! request fails with [`ErrorKind::PermissionDenied`](tether_core::ErrorKind)
//! instead of silently running as the current user.
//!
//! The crate registers the `local` scheme with the plugin registry; a program
//! only has to reference it (`use tether_transport_local as _;`) for
//! [`Registry::global`](tether_core::Registry::global) to find it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tether_core::{Command, Transport};
//! use tether_transport_local::{LocalOptions, local_host};
//! let host = local_host(LocalOptions::default());
//! let out = host.exec(&Command::argv(["printf", "%s", "hello"])).await.unwrap();
//! assert_eq!(out.stdout, b"hello");
//! # });
//! ```

#![deny(missing_docs)]

mod connect;
mod error;
mod exec;
mod options;
mod pty;
mod transfer;
mod tunnel;

pub use connect::{LocalHost, local_host};
pub use options::LocalOptions;

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `local` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin::new("local", connect::connect)
    .with_description("this machine: child processes, the local filesystem, TCP connections from here")
    .with_capabilities(
        Capabilities::NONE.with_exec().with_shell().with_user_switch().with_files().with_tunnel().with_byte_names(),
    )
    .with_options(OptionsSpec::validated::<LocalOptions>(options::TABLE));

tether_core::inventory::submit!(PLUGIN);
