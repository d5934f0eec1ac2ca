//! The `nc_options` table: curated fields only, as reference 002 has it
//! (no `extra`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_core::raw::positive_seconds;
use tether_core::{InvalidOption, ValidateOptions};

/// The name of the options table in `hosts.json` and `settings.toml`.
pub(crate) const TABLE: &str = "nc_options";

/// Options of the `nc` transport (`nc_options` in `hosts.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NcOptions {
    /// The netcat command on the host (default `nc`): a name, a path, or a
    /// multi-call binary and its applet (`busybox nc`). Words are split on
    /// spaces.
    #[schemars(length(min = 1))]
    pub exec_name: String,
    /// Where the search for a free port on the host starts (default 20000,
    /// below Linux's ephemeral range, so outgoing connections rarely hold it).
    #[schemars(range(min = 1))]
    pub port: u16,
    /// How a free port is found: `auto` (default) lists the listening ports
    /// with `ss`, else `netstat`, else `/proc/net/tcp`, else simply tries
    /// ports; `custom` runs `port_cmd`.
    pub port_strategy: Strategy,
    /// With `port_strategy: custom`: a shell command on the host that prints
    /// the port to use.
    pub port_cmd: Option<String>,
    /// How the listener is known to be up: `auto` (default) looks for the
    /// port with the same tool as the port search; `custom` runs
    /// `listener_cmd`.
    pub listener_check: Strategy,
    /// With `listener_check: custom`: a shell command on the host that
    /// succeeds once the port listens; `{port}` is replaced by the port.
    pub listener_cmd: Option<String>,
    /// Seconds a listener may wait for its connection, and each read or
    /// write of the data may stall (default 30). A listener nobody connects
    /// to is killed on the host after this long.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub listener_timeout: f64,
    /// How a transfer is checked: `sha256` (default) compares the SHA-256
    /// of both ends, `size` only the byte counts, `none` only that netcat
    /// succeeded (the size is still checked before the rename).
    pub verify: Verify,
}

/// `auto` or `custom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Tether's own detection.
    #[default]
    Auto,
    /// The command the options give.
    Custom,
}

/// How a transfer is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// SHA-256 of both ends.
    #[default]
    Sha256,
    /// Byte counts only.
    Size,
    /// Netcat's exit status only.
    None,
}

impl Default for NcOptions {
    fn default() -> Self {
        NcOptions {
            exec_name: "nc".to_string(),
            port: 20000,
            port_strategy: Strategy::Auto,
            port_cmd: None,
            listener_check: Strategy::Auto,
            listener_cmd: None,
            listener_timeout: 30.0,
            verify: Verify::Sha256,
        }
    }
}

impl NcOptions {
    /// `listener_timeout` as a duration (validated positive).
    pub(crate) fn listener_timeout(&self) -> Duration {
        positive_seconds("listener_timeout", self.listener_timeout).unwrap_or(Duration::from_secs(30))
    }

    /// The words of `exec_name`.
    pub(crate) fn exec_words(&self) -> Vec<&str> {
        self.exec_name.split(' ').filter(|w| !w.is_empty()).collect()
    }
}

/// A command option: set exactly when its strategy is `custom`, one line.
fn custom_command(
    key: &str,
    strategy_key: &str,
    strategy: Strategy,
    command: Option<&str>,
) -> Result<(), InvalidOption> {
    match (strategy, command) {
        (Strategy::Custom, None) => {
            Err(InvalidOption::new(key, format!("is required when {strategy_key} is `custom`")))
        }
        (Strategy::Custom, Some(c)) if c.trim().is_empty() || c.contains(['\n', '\r', '\0']) => {
            Err(InvalidOption::new(key, "must be one non-empty line"))
        }
        (Strategy::Auto, Some(_)) => {
            Err(InvalidOption::new(key, format!("is used only when {strategy_key} is `custom`, and it is `auto`")))
        }
        _ => Ok(()),
    }
}

impl ValidateOptions for NcOptions {
    fn validate(&self) -> Result<(), InvalidOption> {
        if self.exec_words().is_empty() || self.exec_name.contains(['\n', '\r', '\0', '\t']) {
            return Err(InvalidOption::new("exec_name", "must name a command (words separated by spaces)"));
        }
        if self.port == 0 {
            return Err(InvalidOption::new("port", "must be between 1 and 65535"));
        }
        positive_seconds("listener_timeout", self.listener_timeout)?;
        custom_command("port_cmd", "port_strategy", self.port_strategy, self.port_cmd.as_deref())?;
        custom_command("listener_cmd", "listener_check", self.listener_check, self.listener_cmd.as_deref())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tether_core::{ErrorKind, OptionSource, ResolvedOptions};

    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let options = ResolvedOptions::default().table::<NcOptions>(TABLE).unwrap();
        assert_eq!(options, NcOptions::default());
        assert_eq!(options.validate(), Ok(()));
        assert_eq!(options.exec_words(), ["nc"]);
        let busybox = NcOptions { exec_name: " busybox  nc".into(), ..Default::default() };
        assert_eq!(busybox.exec_words(), ["busybox", "nc"]);
    }

    #[test]
    fn values_are_checked_by_key() {
        let cases = [
            (NcOptions { exec_name: " ".into(), ..Default::default() }, "exec_name"),
            (NcOptions { port: 0, ..Default::default() }, "port must"),
            (NcOptions { listener_timeout: 0.0, ..Default::default() }, "listener_timeout"),
            (NcOptions { port_strategy: Strategy::Custom, ..Default::default() }, "port_cmd is required"),
            (NcOptions { port_cmd: Some("echo 1".into()), ..Default::default() }, "port_cmd is used only"),
            (
                NcOptions { listener_check: Strategy::Custom, listener_cmd: Some("a\nb".into()), ..Default::default() },
                "listener_cmd must be one",
            ),
        ];
        for (options, needle) in cases {
            let err = options.validate().unwrap_err();
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        let mut options = ResolvedOptions::default();
        options.set(TABLE, "verify", "md5", OptionSource::Api).unwrap();
        let err = options.table::<NcOptions>(TABLE).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("md5"), "{err}");
        let mut options = ResolvedOptions::default();
        options.set(TABLE, "extra", serde_json_value(), OptionSource::Api).unwrap();
        let err = options.table::<NcOptions>(TABLE).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    fn serde_json_value() -> bool {
        true
    }
}
