//! Tether's core: the traits every transport implements, the plugin registry
//! transports join, the one error type, and [`Host`], the connection manager
//! that connects lazily and reuses connections.
//!
//! - [`Transport`] runs commands, [`FileTransfer`] moves files, [`Tunnel`]
//!   opens streams through a host. Transports are used as `Arc<dyn …>`.
//! - A transport crate submits a [`Plugin`] with `inventory::submit!`;
//!   [`Registry::global`] collects them.
//! - [`memory::MemoryHost`] (scheme `mem`) is a complete in-memory transport
//!   for tests.
//! - With feature `conformance`, the `conformance` module holds the behaviour suite
//!   every transport runs against itself.
//! - [`raw`] holds the helpers only transport authors need.

#![deny(missing_docs)]

mod command;
mod config;
mod connection;
mod dial;
mod error;
mod files;
mod host;
mod process;
mod registry;
mod transport;
mod tree;
mod tunnel;

pub mod memory;
pub mod raw;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use command::{Command, CommandLine, ExitStatus, Output, Pty, quote, quote_bytes, signal_name, signal_number};
pub use config::{Credential, HostConfig, OptionSource, ResolvedOptions};
pub use connection::{ConnectContext, ConnectRequest, Connection, ConnectionFactory, RegistryFactory};
pub use dial::{Dialed, Dialer, Endpoint};
pub use error::{Error, ErrorKind, Result};
pub use files::{DirEntry, FileKind, FileTransfer, Metadata, Progress, PutOptions, StatOptions, get_file, put_file};
pub use host::{Host, HostConnections};
pub use process::{BoxReader, BoxWriter, Process, ProcessControl};
pub use registry::{
    BoxFuture, Capabilities, ConnectFn, InvalidOption, OptionsSpec, Plugin, Registry, ReservedTable, TableOwner,
    ValidateOptions,
};
pub use transport::Transport;
pub use tree::{MAX_TREE_DEPTH, TreeOptions, TreeSummary, get_tree, put_tree};
pub use tunnel::{BoxStream, PortForward, Stream, Tunnel, forward_port};

/// Re-exported so plugin crates submit entries with the same `inventory`.
pub use inventory;
/// Re-exported so plugin option types derive `JsonSchema` from the same
/// `schemars` the registry uses.
pub use schemars;
