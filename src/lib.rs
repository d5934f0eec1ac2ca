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
pub use tether_core::*;
pub use tether_options as options;

/// The `local` transport (feature `local`).
#[cfg(feature = "local")]
pub use tether_transport_local as local;

/// The `ssh` transport (feature `ssh`).
#[cfg(feature = "ssh")]
pub use tether_transport_ssh as ssh;
