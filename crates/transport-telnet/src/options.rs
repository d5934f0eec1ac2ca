//! The `telnet_options` table.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_core::raw::{optional_seconds, positive_seconds};
use tether_core::{InvalidOption, ValidateOptions};

/// The name of the options table in `hosts.json` and `settings.toml`.
pub(crate) const TABLE: &str = "telnet_options";

/// Options of the `telnet` transport (`telnet_options` in `hosts.json`).
///
/// The defaults reach a Linux or busybox `telnetd` with a login and a POSIX
/// shell. A bare RTOS console behind a UART bridge wants `login = false`,
/// `posix_shell = false` and usually `write_chunk_size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelnetOptions {
    /// TCP port (default 23; a port in the host's URL wins).
    pub port: u16,
    /// Terminal width sent with NAWS (default 80).
    #[schemars(range(min = 1))]
    pub cols: u16,
    /// Terminal height sent with NAWS (default 24).
    #[schemars(range(min = 1))]
    pub rows: u16,
    /// Seconds the TCP connect, the login and the shell's first answer may
    /// each take (default 30).
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub connect_timeout: f64,
    /// Seconds to wait for the server's answers to our option requests
    /// (echo off, suppress-go-ahead) before going on without them
    /// (default 1.0). Servers that never answer, or echo anyway, still work:
    /// the echo is stripped.
    #[schemars(range(min = 0))]
    pub echo_negotiation_timeout: f64,
    /// In `tether shell`, send the new size (NAWS) whenever the local
    /// terminal is resized (default false, so runs are deterministic).
    pub auto_window_resize: bool,
    /// Split every write into chunks of at most this many bytes (default 0:
    /// whole writes). For consoles whose UART input FIFO overflows.
    pub write_chunk_size: usize,
    /// Seconds to pause between chunks (default 0.0; ignored when
    /// `write_chunk_size` is 0).
    #[schemars(range(min = 0))]
    pub write_chunk_delay: f64,
    /// Log in with the host's user and password (default true). False for
    /// bare shells and RTOS consoles that start at a prompt.
    pub login: bool,
    /// The text a login or password prompt ends with (default `:`, which
    /// matches `login:`, `Username:`, `Password:`).
    #[schemars(length(min = 1))]
    pub login_prompt: String,
    /// The endpoint serves one client at a time (a Zephyr `shell_telnet`, a
    /// serial bridge): one session only, and a session that timed out closes
    /// its socket so the next connect gets in (default false).
    pub single_client_console: bool,
    /// The host runs a POSIX shell (default true): commands are framed with
    /// markers and report their exit status. False for an RTOS console:
    /// the output is whatever comes up to the next `prompt`, and the exit
    /// status is unknown.
    pub posix_shell: bool,
    /// A regular expression that matches the end of the console's prompt,
    /// for consoles without a POSIX shell (default `[#$>%] ?$`, which
    /// matches `uart:~$ `, `# ` and `> `).
    #[schemars(length(min = 1))]
    pub prompt: String,
    /// Telnet sessions opened to the host for commands at once (default 1:
    /// commands queue on one session). More lets commands run side by side
    /// where the server allows several logins.
    #[schemars(range(min = 1))]
    pub max_sessions: usize,
}

impl Default for TelnetOptions {
    fn default() -> Self {
        TelnetOptions {
            port: 23,
            cols: 80,
            rows: 24,
            connect_timeout: 30.0,
            echo_negotiation_timeout: 1.0,
            auto_window_resize: false,
            write_chunk_size: 0,
            write_chunk_delay: 0.0,
            login: true,
            login_prompt: ":".into(),
            single_client_console: false,
            posix_shell: true,
            prompt: r"[#$>%] ?$".into(),
            max_sessions: 1,
        }
    }
}

impl ValidateOptions for TelnetOptions {
    fn validate(&self) -> Result<(), InvalidOption> {
        positive_seconds("connect_timeout", self.connect_timeout)?;
        optional_seconds("echo_negotiation_timeout", self.echo_negotiation_timeout)?;
        optional_seconds("write_chunk_delay", self.write_chunk_delay)?;
        if self.cols == 0 || self.rows == 0 {
            return Err(InvalidOption::new(if self.cols == 0 { "cols" } else { "rows" }, "must be at least 1"));
        }
        if self.login_prompt.is_empty() {
            return Err(InvalidOption::new("login_prompt", "must not be empty"));
        }
        if let Err(err) = regex::bytes::Regex::new(&self.prompt) {
            return Err(InvalidOption::new("prompt", format!("not a regular expression: {err}")));
        }
        if self.max_sessions == 0 {
            return Err(InvalidOption::new("max_sessions", "must be at least 1"));
        }
        if self.single_client_console && self.max_sessions > 1 {
            return Err(InvalidOption::new("max_sessions", "a single-client console takes one session"));
        }
        Ok(())
    }
}

impl TelnetOptions {
    /// [`ValidateOptions::validate`] as a configuration error, for connects
    /// that did not come through a resolved host.
    pub(crate) fn checked(&self) -> tether_core::Result<()> {
        self.validate().map_err(|problem| problem.in_table(TABLE))
    }

    /// `connect_timeout` as a duration (validated first).
    pub(crate) fn connect_limit(&self) -> Duration {
        Duration::try_from_secs_f64(self.connect_timeout).unwrap_or(Duration::from_secs(30))
    }

    /// `echo_negotiation_timeout` as a duration (validated first).
    pub(crate) fn negotiation_limit(&self) -> Duration {
        Duration::try_from_secs_f64(self.echo_negotiation_timeout).unwrap_or_default()
    }

    /// The pause between chunks, when writes are chunked at all.
    pub(crate) fn pacing(&self) -> Option<(usize, Duration)> {
        (self.write_chunk_size > 0)
            .then(|| (self.write_chunk_size, Duration::try_from_secs_f64(self.write_chunk_delay).unwrap_or_default()))
    }

    /// Sessions for commands: one on a single-client console.
    pub(crate) fn sessions(&self) -> usize {
        if self.single_client_console { 1 } else { self.max_sessions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_and_unknown_keys_are_refused() {
        let parsed: TelnetOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, TelnetOptions::default());
        assert_eq!((parsed.port, parsed.write_chunk_size, parsed.write_chunk_delay), (23, 0, 0.0));
        assert!(parsed.login && !parsed.single_client_console && !parsed.auto_window_resize);
        assert_eq!(parsed.login_prompt, ":");
        assert!(serde_json::from_str::<TelnetOptions>(r#"{"prot": 23}"#).is_err());
        // The reference's own example.
        let example = r#"{"port": 2323, "cols": 200, "rows": 50, "echo_negotiation_timeout": 1.0}"#;
        let parsed: TelnetOptions = serde_json::from_str(example).unwrap();
        assert_eq!((parsed.port, parsed.cols, parsed.rows), (2323, 200, 50));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(TelnetOptions, &str)> = vec![
            (TelnetOptions { connect_timeout: 0.0, ..Default::default() }, "connect_timeout"),
            (TelnetOptions { echo_negotiation_timeout: -1.0, ..Default::default() }, "echo_negotiation_timeout"),
            (TelnetOptions { write_chunk_delay: f64::NAN, ..Default::default() }, "write_chunk_delay"),
            (TelnetOptions { cols: 0, ..Default::default() }, "cols"),
            (TelnetOptions { login_prompt: String::new(), ..Default::default() }, "login_prompt"),
            (TelnetOptions { prompt: "(".into(), ..Default::default() }, "prompt"),
            (TelnetOptions { max_sessions: 0, ..Default::default() }, "max_sessions"),
            (TelnetOptions { single_client_console: true, max_sessions: 2, ..Default::default() }, "max_sessions"),
        ];
        for (options, key) in cases {
            let err = options.checked().unwrap_err();
            assert_eq!(err.kind(), tether_core::ErrorKind::InvalidConfig, "{key}");
            assert!(err.to_string().contains(key), "{err}");
        }
        assert!(TelnetOptions::default().validate().is_ok());
    }
}
