//! The `ssh_options` table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_core::raw::{optional_seconds, positive_seconds};
use tether_core::{InvalidOption, ValidateOptions, schemars};

/// The name of the options table in `hosts.json` and `settings.toml`.
pub(crate) const TABLE: &str = "ssh_options";
/// The `sftp` scheme's table.
pub(crate) const SFTP_TABLE: &str = "sftp_options";
/// The `scp` scheme's table.
pub(crate) const SCP_TABLE: &str = "scp_options";

/// An authentication method, in its OpenSSH spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// `publickey`: the key files of `client_keys`, then the ssh-agent's keys.
    Publickey,
    /// `password`: the password of the login in `creds`.
    Password,
    /// `keyboard-interactive`: every prompt answered with that password.
    KeyboardInteractive,
}

impl AuthMethod {
    /// Every method, in the default order.
    pub const ALL: [AuthMethod; 3] = [AuthMethod::Publickey, AuthMethod::Password, AuthMethod::KeyboardInteractive];

    /// The OpenSSH name.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Publickey => "publickey",
            AuthMethod::Password => "password",
            AuthMethod::KeyboardInteractive => "keyboard-interactive",
        }
    }
}

/// How the server's host key is checked against `known_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Only hosts recorded in a `known_hosts` file with this very key connect.
    #[default]
    Strict,
    /// An unknown host is trusted on first use and appended to the first
    /// `known_hosts` file; a changed key is still refused.
    AcceptNew,
    /// No check at all (logged as a warning on every connect).
    Off,
}

/// A local listener whose connections are forwarded through the host
/// (`ssh -L`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalForward {
    /// Local address to listen on (default `localhost`).
    #[serde(default = "localhost")]
    pub listen_host: String,
    /// Local port to listen on (0 picks a free one).
    pub listen_port: u16,
    /// Destination, as seen from the host.
    pub dest_host: String,
    /// Destination port.
    pub dest_port: u16,
}

/// A listener on the host whose connections come back to a destination
/// reachable from here (`ssh -R`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteForward {
    /// Address the host listens on (default empty: all of the host's addresses, as sshd decides).
    #[serde(default)]
    pub listen_host: String,
    /// Port the host listens on.
    pub listen_port: u16,
    /// Destination, as seen from here.
    pub dest_host: String,
    /// Destination port.
    pub dest_port: u16,
}

/// A local SOCKS proxy whose connections go out through the host (`ssh -D`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SocksForward {
    /// Local address to listen on (default `localhost`).
    #[serde(default = "localhost")]
    pub listen_host: String,
    /// Local port to listen on.
    pub listen_port: u16,
}

fn localhost() -> String {
    "localhost".into()
}

/// Options of the `ssh` transport (`ssh_options` in `hosts.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SshOptions {
    /// TCP port of the SSH server when the host's URL names none (default 22).
    pub port: u16,
    /// OpenSSH `known_hosts` files checked for the host key, in order; `~/`
    /// is the home directory (default `["~/.ssh/known_hosts"]`).
    pub known_hosts: Vec<String>,
    /// `strict`, `accept-new` or `off` (default `strict`).
    pub host_key_policy: HostKeyPolicy,
    /// Seconds each connection phase (TCP connect, handshake, each
    /// authentication attempt, channel open) may take (default 30).
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub connect_timeout: f64,
    /// Seconds of silence from the server before a keepalive is sent; 0
    /// turns keepalives off (default 15).
    #[schemars(range(min = 0))]
    pub keepalive_interval: f64,
    /// Unanswered keepalives after which the connection counts as lost
    /// (default 3).
    pub keepalive_count_max: u32,
    /// Private key files tried for `publickey`; empty means the existing ones
    /// of `~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa`, `~/.ssh/id_rsa` (default empty).
    pub client_keys: Vec<String>,
    /// Offer the keys of the ssh-agent for `publickey`, after `client_keys`
    /// (default true).
    pub use_agent: bool,
    /// The agent's socket; empty means `SSH_AUTH_SOCK` (default empty).
    pub agent_socket: String,
    /// Authentication methods, tried in this order (default
    /// `["publickey", "password", "keyboard-interactive"]`).
    pub preferred_auth: Vec<AuthMethod>,
    /// Commands running at once on one connection; OpenSSH's `MaxSessions`
    /// is 10 (default 10).
    #[schemars(range(min = 1))]
    pub max_sessions: u32,
    /// Ciphers in order of preference, e.g. `aes128-gcm@openssh.com`; empty
    /// means the library's defaults (default empty).
    pub encryption_algs: Vec<String>,
    /// Key exchange methods in order of preference; empty means the
    /// library's defaults (default empty).
    pub kex_algs: Vec<String>,
    /// Host key algorithms in order of preference; empty means the library's
    /// defaults (default empty).
    pub server_host_key_algs: Vec<String>,
    /// Compression methods (`none`, `zlib@openssh.com`, `zlib`); empty means
    /// the library's defaults (default empty).
    pub compression_algs: Vec<String>,
    /// Local listeners forwarded through the host (default empty).
    pub local_forwards: Vec<LocalForward>,
    /// Listeners on the host forwarded back here (default empty).
    pub remote_forwards: Vec<RemoteForward>,
    /// Local SOCKS proxies going out through the host (default empty).
    pub socks_forwards: Vec<SocksForward>,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            port: 22,
            known_hosts: vec!["~/.ssh/known_hosts".into()],
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: 30.0,
            keepalive_interval: 15.0,
            keepalive_count_max: 3,
            client_keys: Vec::new(),
            use_agent: true,
            agent_socket: String::new(),
            preferred_auth: AuthMethod::ALL.to_vec(),
            max_sessions: 10,
            encryption_algs: Vec::new(),
            kex_algs: Vec::new(),
            server_host_key_algs: Vec::new(),
            compression_algs: Vec::new(),
            local_forwards: Vec::new(),
            remote_forwards: Vec::new(),
            socks_forwards: Vec::new(),
        }
    }
}

impl ValidateOptions for SshOptions {
    fn validate(&self) -> Result<(), InvalidOption> {
        positive_seconds("connect_timeout", self.connect_timeout)?;
        optional_seconds("keepalive_interval", self.keepalive_interval)?;
        if self.max_sessions == 0 {
            return Err(InvalidOption::new("max_sessions", "must be at least 1"));
        }
        if self.preferred_auth.is_empty() {
            return Err(InvalidOption::new("preferred_auth", "names no method"));
        }
        if self.known_hosts.is_empty() && self.host_key_policy != HostKeyPolicy::Off {
            return Err(InvalidOption::new(
                "known_hosts",
                "names no file (use host_key_policy = \"off\" to skip the check)",
            ));
        }
        Ok(())
    }
}

impl SshOptions {
    /// [`ValidateOptions::validate`] as a configuration error, for connects
    /// that did not come through a resolved host.
    pub(crate) fn checked(&self) -> tether_core::Result<()> {
        self.validate().map_err(|problem| problem.in_table(TABLE))
    }

    /// `connect_timeout` as a duration.
    pub(crate) fn connect_timeout(&self) -> tether_core::Result<Duration> {
        positive_seconds("connect_timeout", self.connect_timeout).map_err(|problem| problem.in_table(TABLE))
    }

    /// `keepalive_interval` as a duration; `None` when keepalives are off.
    pub(crate) fn keepalive_interval(&self) -> tether_core::Result<Option<Duration>> {
        optional_seconds("keepalive_interval", self.keepalive_interval).map_err(|problem| problem.in_table(TABLE))
    }

    /// The ssh-agent socket to ask, if any.
    pub(crate) fn agent_socket(&self) -> Option<std::path::PathBuf> {
        if !self.use_agent {
            return None;
        }
        let socket = match self.agent_socket.as_str() {
            "" => std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty())?.into(),
            path => crate::known_hosts::expand_home(path),
        };
        Some(socket)
    }

    /// True when a forward is configured.
    pub(crate) fn has_forwards(&self) -> bool {
        !(self.local_forwards.is_empty() && self.remote_forwards.is_empty() && self.socks_forwards.is_empty())
    }
}

/// Options of the `sftp` scheme (`sftp_options` in `hosts.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SftpOptions {
    /// Environment variables set for the remote SFTP server process (default empty).
    pub env: BTreeMap<String, String>,
    /// Names of local environment variables passed on to the remote SFTP
    /// server process when they are set here (default empty).
    pub send_env: Vec<String>,
    /// Bytes per read or write request; OpenSSH's server accepts up to 255 KiB (default 261120).
    #[schemars(range(min = 1024, max = 261120))]
    pub request_size: u32,
    /// Write requests in flight during a put (default 16).
    #[schemars(range(min = 1, max = 1024))]
    pub write_requests: u32,
    /// Read requests in flight during a get (default 64).
    #[schemars(range(min = 1, max = 1024))]
    pub read_requests: u32,
}

impl Default for SftpOptions {
    fn default() -> Self {
        SftpOptions {
            env: BTreeMap::new(),
            send_env: Vec::new(),
            request_size: 255 << 10,
            write_requests: 16,
            read_requests: 64,
        }
    }
}

impl ValidateOptions for SftpOptions {
    fn validate(&self) -> Result<(), InvalidOption> {
        if !(1024..=(255 << 10)).contains(&self.request_size) {
            return Err(InvalidOption::new("request_size", "must be between 1024 and 261120 bytes"));
        }
        for (key, value) in [("write_requests", self.write_requests), ("read_requests", self.read_requests)] {
            if !(1..=1024).contains(&value) {
                return Err(InvalidOption::new(key, "must be between 1 and 1024"));
            }
        }
        Ok(())
    }
}

impl SftpOptions {
    /// [`ValidateOptions::validate`] as a configuration error.
    pub(crate) fn checked(&self) -> tether_core::Result<()> {
        self.validate().map_err(|problem| problem.in_table(SFTP_TABLE))
    }

    /// `env` plus the `send_env` variables that are set here (`env` wins).
    pub(crate) fn environment(&self) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> =
            self.send_env.iter().filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v))).collect();
        all.extend(self.env.clone());
        all
    }
}

/// Options of the `scp` scheme (`scp_options` in `hosts.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScpOptions {
    /// Bytes per read from the source and per channel write (default 262144).
    #[schemars(range(min = 1024, max = 16777216))]
    pub block_size: u32,
    /// Carry the modification and access times and the mode (`scp -p`) (default false).
    pub preserve: bool,
    /// Descend into directories; when false a directory record from the
    /// server is a protocol error (default true).
    pub recurse: bool,
}

impl Default for ScpOptions {
    fn default() -> Self {
        ScpOptions { block_size: 256 << 10, preserve: false, recurse: true }
    }
}

impl ValidateOptions for ScpOptions {
    fn validate(&self) -> Result<(), InvalidOption> {
        if !(1024..=(16 << 20)).contains(&self.block_size) {
            return Err(InvalidOption::new("block_size", "must be between 1024 and 16777216 bytes"));
        }
        Ok(())
    }
}

impl ScpOptions {
    /// [`ValidateOptions::validate`] as a configuration error.
    pub(crate) fn checked(&self) -> tether_core::Result<()> {
        self.validate().map_err(|problem| problem.in_table(SCP_TABLE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let parsed: SshOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, SshOptions::default());
        assert_eq!(parsed.port, 22);
        assert!(serde_json::from_str::<SshOptions>(r#"{"prot": 22}"#).is_err());
        assert!(SshOptions::default().validate().is_ok());
    }

    #[test]
    fn policy_and_forwards_parse() {
        let parsed: SshOptions = serde_json::from_str(
            r#"{"host_key_policy": "accept-new",
                "local_forwards": [{"listen_port": 8080, "dest_host": "web", "dest_port": 80}],
                "remote_forwards": [{"listen_host": "", "listen_port": 9000, "dest_host": "localhost", "dest_port": 22}],
                "socks_forwards": [{"listen_port": 1080}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(parsed.local_forwards[0].listen_host, "localhost");
        assert_eq!(parsed.remote_forwards[0].dest_port, 22);
        assert_eq!(parsed.socks_forwards[0].listen_port, 1080);
        assert!(parsed.has_forwards());
        assert!(serde_json::from_str::<SshOptions>(r#"{"host_key_policy": "yes"}"#).is_err());
        assert!(serde_json::from_str::<SshOptions>(r#"{"socks_forwards": [{"listen_port": 1, "x": 2}]}"#).is_err());
    }

    #[test]
    fn bad_values_are_config_errors() {
        for bad in [0.0, -1.0, f64::NAN] {
            let err = SshOptions { connect_timeout: bad, ..Default::default() }.validate().unwrap_err();
            assert!(err.to_string().contains("connect_timeout"), "{err}");
        }
        let err = SshOptions { keepalive_interval: -1.0, ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("keepalive_interval"), "{err}");
        let err = serde_json::from_str::<SshOptions>(r#"{"preferred_auth": ["gssapi"]}"#).unwrap_err();
        assert!(err.to_string().contains("gssapi"), "{err}");
        let err = SshOptions { preferred_auth: vec![], ..Default::default() }.validate().unwrap_err();
        assert_eq!(err.key, "preferred_auth");
        let err = SshOptions { max_sessions: 0, ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("max_sessions"), "{err}");
        assert_eq!(SshOptions { keepalive_interval: 0.0, ..Default::default() }.keepalive_interval().unwrap(), None);
    }
}
