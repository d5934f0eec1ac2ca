//! The `local_options` table.

use serde::{Deserialize, Serialize};
use tether_core::invalid_option;

/// The name of the options table in `hosts.json` and `settings.toml`.
pub(crate) const TABLE: &str = "local_options";

/// Options of the `local` transport (`local_options` in `hosts.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalOptions {
    /// The shell that runs `Command::shell` lines, as `<shell> -c <line>` (default `/bin/sh`).
    #[schemars(length(min = 1))]
    pub shell: String,
    /// Seconds a tunnel's TCP connect may take (default 30).
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub connect_timeout: f64,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions { shell: "/bin/sh".into(), connect_timeout: 30.0 }
    }
}

impl LocalOptions {
    /// Rejects values no connection could use, naming the key.
    pub(crate) fn validate(&self) -> tether_core::Result<()> {
        if self.shell.is_empty() || self.shell.contains('\0') {
            return Err(invalid_option(TABLE, "shell must be a non-empty path without NUL bytes"));
        }
        self.connect_timeout().map(drop)
    }

    /// `connect_timeout` as a duration.
    pub(crate) fn connect_timeout(&self) -> tether_core::Result<std::time::Duration> {
        match std::time::Duration::try_from_secs_f64(self.connect_timeout) {
            Ok(limit) if !limit.is_zero() => Ok(limit),
            _ => Err(invalid_option(
                TABLE,
                &format!("connect_timeout must be a positive number of seconds, not {}", self.connect_timeout),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let parsed: LocalOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, LocalOptions::default());
        assert!(serde_json::from_str::<LocalOptions>(r#"{"shel": "/bin/bash"}"#).is_err());
    }

    #[test]
    fn bad_timeouts_are_config_errors() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let options = LocalOptions { connect_timeout: bad, ..Default::default() };
            let err = options.validate().unwrap_err();
            assert_eq!(err.kind(), tether_core::ErrorKind::InvalidConfig, "{bad}");
            assert!(err.to_string().contains("connect_timeout"), "{err}");
        }
        assert!(LocalOptions::default().validate().is_ok());
    }
}
