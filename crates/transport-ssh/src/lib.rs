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

mod channel;
mod connect;
mod error;
mod exec;
mod known_hosts;
mod options;
mod transfer;
mod tunnel;

pub use connect::{SshConnection, SshSession, connect_host, connect_host_via};
pub use options::{
    AuthMethod, HostKeyPolicy, LocalForward, RemoteForward, ScpOptions, SftpOptions, SocksForward, SshOptions,
};
pub use transfer::scp::{ScpFiles, UNSIZED_READ_AHEAD};
pub use tunnel::{ActiveForward, ForwardKind};

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `ssh` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin::new("ssh", connect::connect)
    .with_description("OpenSSH-compatible SSH: commands, terminals and tunnels multiplexed on one connection per host")
    .with_capabilities(Capabilities::NONE.with_exec().with_shell().with_user_switch().with_tunnel().with_byte_names())
    .with_options(OptionsSpec::validated::<SshOptions>(options::TABLE));

/// The `sftp` scheme's registry entry: files over the SFTP subsystem of the
/// host's one SSH connection.
pub const SFTP_PLUGIN: Plugin = Plugin::new("sftp", connect::connect)
    .with_connection_key("ssh")
    .with_description("SFTP on the host's SSH connection: pipelined, atomic puts")
    .with_capabilities(Capabilities::NONE.with_files())
    .with_options(OptionsSpec::validated::<SftpOptions>(options::SFTP_TABLE));

/// The `scp` scheme's registry entry: files over the scp protocol on the
/// host's one SSH connection.
pub const SCP_PLUGIN: Plugin = Plugin::new("scp", connect::connect)
    .with_connection_key("ssh")
    .with_description("SCP (scp -t / scp -f) on the host's SSH connection")
    .with_capabilities(Capabilities::NONE.with_files().with_byte_names())
    .with_options(OptionsSpec::validated::<ScpOptions>(options::SCP_TABLE));

tether_core::inventory::submit!(PLUGIN);
tether_core::inventory::submit!(SFTP_PLUGIN);
tether_core::inventory::submit!(SCP_PLUGIN);
