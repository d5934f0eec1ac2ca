//! The `shellfs_options` table.

use serde::{Deserialize, Serialize};

/// The name of the options table `shellfs` reads.
pub const OPTIONS_TABLE: &str = "shellfs_options";

/// Options of the `shellfs` scheme (`shellfs_options` in `hosts.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ShellFsOptions {
    /// The scheme of the command transport whose shell moves the files; by
    /// default the host's own `term`, on the very connection it uses.
    pub inner: Option<String>,
}

#[cfg(test)]
mod tests {
    use tether_core::{ErrorKind, OptionSource, ResolvedOptions};

    use super::*;

    #[test]
    fn defaults_to_the_term_and_rejects_unknown_keys() {
        let mut options = ResolvedOptions::default();
        assert_eq!(options.table::<ShellFsOptions>(OPTIONS_TABLE).unwrap().inner, None);
        options.set(OPTIONS_TABLE, "inner", "ssh", OptionSource::Api).unwrap();
        assert_eq!(options.table::<ShellFsOptions>(OPTIONS_TABLE).unwrap().inner.as_deref(), Some("ssh"));
        options.set(OPTIONS_TABLE, "iner", "ssh", OptionSource::CommandLine).unwrap();
        let err = options.table::<ShellFsOptions>(OPTIONS_TABLE).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("iner"), "{err}");
    }
}
