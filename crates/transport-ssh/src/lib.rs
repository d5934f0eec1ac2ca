//! Tether's `ssh` transport: commands over one SSH connection per host
//! ([russh](https://docs.rs/russh) underneath, never in the public API).
//!
//! - **Connect**: TCP with `TCP_NODELAY`, the SSH handshake, the host key
//!   checked against OpenSSH `known_hosts` files (plain, `[host]:port`, comma
//!   lists, wildcards, hashed entries) under `host_key_policy`
//!   (`strict`, `accept-new`, `off`), then `publickey`, `password` and
//!   `keyboard-interactive` in `preferred_auth` order. Every phase is bounded
//!   by `connect_timeout`.
//! - **Exec**: one session channel per command, at most `max_sessions` at
//!   once; streaming stdin/stdout/stderr; exit code or signal.
//!
//! Not yet implemented, and failing with
//! [`ErrorKind::Unsupported`](tether_core::ErrorKind) rather than doing
//! something else: running as another user or group, terminals (`pty`,
//! `shell`), port forwards (`*_forwards` options are parsed, and a host that
//! sets them refuses to connect), SFTP, SCP and the tunnel.
//!
//! The crate registers the `ssh` scheme; a program references it
//! (`use tether_transport_ssh as _;`) so the registration is linked.

#![deny(missing_docs)]

mod connect;
mod error;
mod exec;
mod known_hosts;
mod options;
mod transfer;
mod tunnel;

pub use connect::{SshConnection, SshSession, connect_host};
pub use options::{HostKeyPolicy, LocalForward, RemoteForward, ScpOptions, SftpOptions, SocksForward, SshOptions};

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `ssh` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin {
    scheme: "ssh",
    connection_key: "ssh",
    description: "OpenSSH-compatible SSH: commands multiplexed on one connection per host",
    capabilities: Capabilities { exec: true, shell: false, user_switch: false, files: false, tunnel: false },
    options: Some(OptionsSpec::of::<SshOptions>(options::TABLE)),
    connect: connect::connect,
};

/// The `sftp` scheme's registry entry: files over the SFTP subsystem of the
/// host's one SSH connection.
pub const SFTP_PLUGIN: Plugin = Plugin {
    scheme: "sftp",
    connection_key: "ssh",
    description: "SFTP on the host's SSH connection: pipelined, atomic puts",
    capabilities: Capabilities { exec: false, shell: false, user_switch: false, files: true, tunnel: false },
    options: Some(OptionsSpec::of::<SftpOptions>(options::SFTP_TABLE)),
    connect: connect::connect,
};

/// The `scp` scheme's registry entry: files over the scp protocol on the
/// host's one SSH connection.
pub const SCP_PLUGIN: Plugin = Plugin {
    scheme: "scp",
    connection_key: "ssh",
    description: "SCP (scp -t / scp -f) on the host's SSH connection",
    capabilities: Capabilities { exec: false, shell: false, user_switch: false, files: true, tunnel: false },
    options: Some(OptionsSpec::of::<ScpOptions>(options::SCP_TABLE)),
    connect: connect::connect,
};

tether_core::inventory::submit!(PLUGIN);
tether_core::inventory::submit!(SFTP_PLUGIN);
tether_core::inventory::submit!(SCP_PLUGIN);
