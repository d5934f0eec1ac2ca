//! Tether's `ssh`, `sftp` and `scp` schemes: one SSH connection per host
//! ([russh](https://docs.rs/russh) underneath, never in the public API)
//! carrying commands, files and tunnels.
//!
//! - **Connect**: TCP with `TCP_NODELAY` (and quick ACKs while setting up),
//!   the SSH handshake, the host key checked against OpenSSH `known_hosts`
//!   files (plain, `[host]:port`, comma lists, wildcards, hashed entries,
//!   `@revoked`) under `host_key_policy` (`strict`, `accept-new`, `off`),
//!   then `publickey` (key files, then ssh-agent keys), `password` and
//!   `keyboard-interactive` in `preferred_auth` order. Every phase is bounded
//!   by `connect_timeout`; keepalives notice a peer that stopped answering.
//! - **Exec** ([`SshSession`] is the [`Transport`](tether_core::Transport)):
//!   one session channel per command, at most `max_sessions` at once (a
//!   refused open is retried, since sshd frees slots late); streaming
//!   stdin/stdout/stderr; exit code or signal; environment as `env`
//!   requests with an `env` prefix where the server refuses them; cwd and
//!   umask in a quoted wrapper; another user or group through `sudo -n`;
//!   terminals and the interactive shell with window-size changes.
//! - **Files**: `sftp` (the SFTP subsystem, many requests in flight) and
//!   `scp` (the scp protocol against the host's `scp -t`/`scp -f`), both with
//!   atomic puts; opened on the same connection when first used.
//! - **Tunnel**: `direct-tcpip` streams, plus the `local_forwards`,
//!   `remote_forwards` and `socks_forwards` of `ssh_options`, started right
//!   after connect.
//!
//! The crate registers the three schemes; a program references it
//! (`use tether_transport_ssh as _;`) so the registration is linked.

#![deny(missing_docs)]

mod connect;
mod error;
mod exec;
mod known_hosts;
mod options;
mod transfer;
mod tunnel;

pub use connect::{SshConnection, SshSession, connect_host, connect_host_via};
pub use options::{HostKeyPolicy, LocalForward, RemoteForward, ScpOptions, SftpOptions, SocksForward, SshOptions};
pub use transfer::scp::{ScpFiles, UNSIZED_READ_AHEAD};
pub use tunnel::{ActiveForward, ForwardKind};

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `ssh` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin {
    scheme: "ssh",
    connection_key: "ssh",
    description: "OpenSSH-compatible SSH: commands, terminals and tunnels multiplexed on one connection per host",
    capabilities: Capabilities { exec: true, shell: true, user_switch: true, files: false, tunnel: true },
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
