//! Tether reaches hosts over pluggable transports: run commands, move files,
//! open streams, the same way whether a host speaks SSH, Telnet, FTP or is
//! this machine.
//!
//! ```no_run
//! # async fn demo() -> tether::Result<()> {
//! use tether::{Command, Lab};
//! let lab = Lab::discover(&[], None)?; // hosts.json, TETHER_HOSTS, or just `local`
//! let host = lab.host("local")?;
//! let out = host.exec(&Command::argv(["uname", "-r"]).check(true)).await?;
//! println!("{}", out.stdout_lossy());
//! # Ok(()) }
//! ```
//!
//! Each transport is a crate behind a Cargo feature; an enabled one is named
//! here so that its registration is linked into every program using Tether.

#![deny(missing_docs)]

mod lab;

pub use lab::Lab;
pub use tether_options as options;

// What a user of the library needs: hosts, commands, files, streams and
// their errors. Transport authors find the rest under [`plugin`].
pub use tether_core::{
    BoxReader, BoxStream, BoxWriter, Capabilities, Command, CommandLine, Credential, DirEntry, Error, ErrorKind,
    ExitStatus, FileKind, FileTransfer, Host, HostConfig, MAX_TREE_DEPTH, Metadata, OptionSource, Output, PortForward,
    Process, Progress, Pty, PutOptions, Registry, ResolvedOptions, Result, StatOptions, Stream, Transport, TreeOptions,
    TreeSummary, Tunnel, forward_port, get_file, get_tree, memory, put_file, put_tree, quote, signal_name,
    signal_number,
};

/// Everything a transport author needs: the plugin API (`Plugin`,
/// `ConnectRequest`, `Connection`, …) and [`raw`](tether_core::raw)'s
/// helpers. It is `tether-core` itself, which a plugin crate depends on
/// directly.
pub use tether_core as plugin;

/// The `local` transport (feature `local`).
#[cfg(feature = "local")]
pub use tether_transport_local as local;

/// The `ssh` transport (feature `ssh`).
#[cfg(feature = "ssh")]
pub use tether_transport_ssh as ssh;

/// The `telnet` transport (feature `telnet`).
#[cfg(feature = "telnet")]
pub use tether_transport_telnet as telnet;

/// The `ftp` transport (feature `ftp`).
#[cfg(feature = "ftp")]
pub use tether_transport_ftp as ftp;

/// The `nc` transport (feature `nc`).
#[cfg(feature = "nc")]
pub use tether_transport_nc as nc;

/// The options tables of Tether's transports that this build leaves out.
/// An inventory shared between builds may carry them: they are kept
/// unchecked instead of being refused as typos, and each crate's own entry
/// takes over once its feature is on.
#[cfg(not(all(feature = "ssh", feature = "local", feature = "telnet", feature = "ftp", feature = "nc")))]
mod reserved_tables {
    use tether_core::{ReservedTable, inventory};

    #[cfg(not(feature = "ssh"))]
    inventory::submit! { ReservedTable::new("ssh_options", "ssh") }
    #[cfg(not(feature = "ssh"))]
    inventory::submit! { ReservedTable::new("sftp_options", "ssh") }
    #[cfg(not(feature = "ssh"))]
    inventory::submit! { ReservedTable::new("scp_options", "ssh") }
    #[cfg(not(feature = "local"))]
    inventory::submit! { ReservedTable::new("local_options", "local") }
    #[cfg(not(feature = "telnet"))]
    inventory::submit! { ReservedTable::new("telnet_options", "telnet") }
    #[cfg(not(feature = "ftp"))]
    inventory::submit! { ReservedTable::new("ftp_options", "ftp") }
    #[cfg(not(feature = "nc"))]
    inventory::submit! { ReservedTable::new("nc_options", "nc") }
}
