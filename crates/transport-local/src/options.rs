//! The `local_options` table.

use serde::{Deserialize, Serialize};
use tether_core::raw::positive_seconds;
use tether_core::{InvalidOption, ValidateOptions};

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

impl ValidateOptions for LocalOptions {
    fn validate(&self) -> Result<(), InvalidOption> {
        if self.shell.is_empty() || self.shell.contains('\0') {
            return Err(InvalidOption::new("shell", "must be a non-empty path without NUL bytes"));
        }
        positive_seconds("connect_timeout", self.connect_timeout).map(drop)
    }
}

impl LocalOptions {
    /// [`ValidateOptions::validate`] as a configuration error, for connects
    /// that did not come through a resolved host.
    pub(crate) fn checked(&self) -> tether_core::Result<()> {
        self.validate().map_err(|problem| problem.in_table(TABLE))
    }

    /// `connect_timeout` as a duration.
    pub(crate) fn connect_timeout(&self) -> tether_core::Result<std::time::Duration> {
        positive_seconds("connect_timeout", self.connect_timeout).map_err(|problem| problem.in_table(TABLE))
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
            let err = options.checked().unwrap_err();
            assert_eq!(err.kind(), tether_core::ErrorKind::InvalidConfig, "{bad}");
            assert!(err.to_string().contains("connect_timeout"), "{err}");
        }
        assert!(LocalOptions::default().validate().is_ok());
    }
}
