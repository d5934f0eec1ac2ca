//! The `ftp_options` table: reference 002's curated fields, and the `extra`
//! keys this crate understands.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_core::raw::positive_seconds;
use tether_core::{InvalidOption, ValidateOptions};

/// The name of the options table in `hosts.json` and `settings.toml`.
pub(crate) const TABLE: &str = "ftp_options";

/// Options of the `ftp` transport (`ftp_options` in `hosts.json`).
///
/// Every network step has a limit: the connect and greeting
/// (`connection_timeout`), each control reply and each read or write of a
/// data connection (`socket_timeout`), and listings and stats as a whole
/// (`path_timeout`). A session that hit a limit is closed, never reused: a
/// late reply would otherwise answer the next command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FtpOptions {
    /// TCP port of the control connection (default 21; a port in the
    /// host's URL wins).
    pub port: u16,
    /// Explicit FTPS (default false): `AUTH TLS` before the login, and
    /// every data connection encrypted too. The server's certificate is
    /// checked against the system's roots, or `extra.ca_file`.
    pub ssl: bool,
    /// Seconds each control reply, and each read or write on a data
    /// connection, may take (default 30).
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub socket_timeout: f64,
    /// Seconds the TCP connect, the greeting, the TLS handshake and the
    /// login may take together (default 30).
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub connection_timeout: f64,
    /// Seconds a listing or a stat may take as a whole (default 60).
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub path_timeout: f64,
    /// Download speed cap in bytes per second (default none).
    #[schemars(range(min = 1))]
    pub read_speed_limit: Option<u64>,
    /// Upload speed cap in bytes per second (default none).
    #[schemars(range(min = 1))]
    pub write_speed_limit: Option<u64>,
    /// How to open passive data connections, in order of preference:
    /// `epsv` and `pasv` (default both, EPSV first). The address a PASV
    /// reply names is never dialled: data goes to the control connection's
    /// peer, at the port the reply names.
    #[schemars(length(min = 1))]
    pub passive_commands: Vec<PassiveCommand>,
    /// How file names are written on the wire: `utf-8` (default) or
    /// `latin-1`, for old servers whose names are ISO-8859-1.
    pub encoding: NameEncoding,
    /// Options beyond reference 002's curated ones. Unknown keys are refused.
    pub extra: FtpExtra,
}

/// A way to open a passive data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PassiveCommand {
    /// RFC 2428's `EPSV`: the reply names a port only.
    Epsv,
    /// RFC 959's `PASV`: the reply names an address and a port; the
    /// address is ignored.
    Pasv,
}

/// How names are encoded on the control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub enum NameEncoding {
    /// UTF-8 (RFC 2640); `OPTS UTF8 ON` is sent when the server lists `UTF8`.
    #[default]
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    /// ISO-8859-1: one byte per character, U+0000 to U+00FF only.
    #[serde(rename = "latin-1", alias = "latin1", alias = "iso-8859-1", alias = "ISO-8859-1")]
    Latin1,
}

/// `ftp_options.extra`: the keys this crate understands beyond the
/// curated fields. Any other key is an error that names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FtpExtra {
    /// A PEM file of certificates to trust for FTPS instead of the
    /// system's roots (a lab CA, or a self-signed server certificate).
    pub ca_file: Option<PathBuf>,
    /// Check the FTPS server's certificate (default true). False accepts
    /// any certificate, which a man in the middle can present: it is
    /// logged as a warning at every connect.
    pub verify_certificate: bool,
    /// The name the FTPS certificate must carry, when it is not the host's
    /// address (default: the address).
    pub server_name: Option<String>,
    /// Times an interrupted download resumes from the bytes it already has,
    /// with `REST`, after checking that the file's size and modification
    /// time did not change (default 3; 0 never resumes).
    pub resume_attempts: u32,
    /// Bytes a directory listing may take before it is refused as hostile
    /// (default 64 MiB).
    #[schemars(range(min = 1))]
    pub max_listing_bytes: u64,
    /// Control connections opened to the host at once (default 4): each
    /// carries one transfer at a time.
    #[schemars(range(min = 1))]
    pub max_sessions: usize,
}

impl Default for FtpExtra {
    fn default() -> Self {
        FtpExtra {
            ca_file: None,
            verify_certificate: true,
            server_name: None,
            resume_attempts: 3,
            max_listing_bytes: 64 << 20,
            max_sessions: 4,
        }
    }
}

impl Default for FtpOptions {
    fn default() -> Self {
        FtpOptions {
            port: 21,
            ssl: false,
            socket_timeout: 30.0,
            connection_timeout: 30.0,
            path_timeout: 60.0,
            read_speed_limit: None,
            write_speed_limit: None,
            passive_commands: vec![PassiveCommand::Epsv, PassiveCommand::Pasv],
            encoding: NameEncoding::Utf8,
            extra: FtpExtra::default(),
        }
    }
}

impl ValidateOptions for FtpOptions {
    fn validate(&self) -> Result<(), InvalidOption> {
        positive_seconds("socket_timeout", self.socket_timeout)?;
        positive_seconds("connection_timeout", self.connection_timeout)?;
        positive_seconds("path_timeout", self.path_timeout)?;
        for (key, limit) in [("read_speed_limit", self.read_speed_limit), ("write_speed_limit", self.write_speed_limit)]
        {
            if limit == Some(0) {
                return Err(InvalidOption::new(key, "must be at least 1 byte per second (omit it for no limit)"));
            }
        }
        if self.passive_commands.is_empty() {
            return Err(InvalidOption::new("passive_commands", "must name `epsv`, `pasv` or both"));
        }
        if self.extra.max_listing_bytes == 0 {
            return Err(InvalidOption::new("extra.max_listing_bytes", "must be at least 1"));
        }
        if self.extra.max_sessions == 0 {
            return Err(InvalidOption::new("extra.max_sessions", "must be at least 1"));
        }
        if self.extra.server_name.as_deref() == Some("") {
            return Err(InvalidOption::new("extra.server_name", "must not be empty"));
        }
        Ok(())
    }
}

impl FtpOptions {
    /// [`ValidateOptions::validate`] as a configuration error, for connects
    /// that did not come through a resolved host.
    pub(crate) fn checked(&self) -> tether_core::Result<()> {
        self.validate().map_err(|problem| problem.in_table(TABLE))
    }

    pub(crate) fn socket_limit(&self) -> Duration {
        seconds(self.socket_timeout)
    }

    pub(crate) fn connection_limit(&self) -> Duration {
        seconds(self.connection_timeout)
    }

    pub(crate) fn path_limit(&self) -> Duration {
        seconds(self.path_timeout)
    }
}

/// A validated, positive number of seconds.
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_example_loads_and_defaults_match_reference_002() {
        let options: FtpOptions =
            serde_json::from_value(serde_json::json!({ "port": 2121, "ssl": true, "socket_timeout": 30 })).unwrap();
        assert_eq!((options.port, options.ssl, options.socket_timeout), (2121, true, 30.0));
        let defaults = FtpOptions::default();
        assert_eq!(defaults.port, 21);
        assert!(!defaults.ssl);
        assert_eq!(defaults.passive_commands, [PassiveCommand::Epsv, PassiveCommand::Pasv]);
        assert_eq!((defaults.read_speed_limit, defaults.write_speed_limit), (None, None));
        assert_eq!(defaults.encoding, NameEncoding::Utf8);
    }

    #[test]
    fn unknown_extra_keys_are_refused_by_name() {
        let err = serde_json::from_value::<FtpOptions>(serde_json::json!({ "extra": { "ca_fil": "/x" } })).unwrap_err();
        assert!(err.to_string().contains("ca_fil"), "{err}");
        let ok: FtpOptions =
            serde_json::from_value(serde_json::json!({ "extra": { "ca_file": "/x", "verify_certificate": false } }))
                .unwrap();
        assert_eq!(ok.extra.ca_file.as_deref(), Some(std::path::Path::new("/x")));
        assert!(!ok.extra.verify_certificate);
    }

    #[test]
    fn validation_names_the_key() {
        let mut options = FtpOptions { read_speed_limit: Some(0), ..FtpOptions::default() };
        assert_eq!(options.validate().unwrap_err().key, "read_speed_limit");
        options.read_speed_limit = None;
        options.passive_commands.clear();
        assert_eq!(options.validate().unwrap_err().key, "passive_commands");
        let latin: FtpOptions = serde_json::from_value(serde_json::json!({ "encoding": "latin-1" })).unwrap();
        assert_eq!(latin.encoding, NameEncoding::Latin1);
        assert!(serde_json::from_value::<FtpOptions>(serde_json::json!({ "encoding": "ebcdic" })).is_err());
    }
}
