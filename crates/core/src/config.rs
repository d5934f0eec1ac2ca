//! A host's resolved configuration: where it is, how to log in, which
//! transports to use and the merged options of each, with their sources.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// A login and its password. The password never shows in `Debug` output.
#[derive(Clone)]
pub struct Credential {
    /// The user name.
    pub login: String,
    /// The password.
    pub password: SecretString,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential").field("login", &self.login).field("password", &"***").finish()
    }
}

/// Where an effective option value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum OptionSource {
    /// The plugin's built-in default.
    Default,
    /// A host's table in an inventory file.
    HostsFile {
        /// The inventory file.
        path: PathBuf,
    },
    /// A `[host_preferences."<selector>"]` table in a settings file.
    Settings {
        /// The settings file.
        path: PathBuf,
        /// The regex that matched the host id.
        selector: String,
    },
    /// A command-line override.
    CommandLine,
    /// An override passed through the API.
    Api,
    /// Parsed from the host's URL.
    Url,
}

impl fmt::Display for OptionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionSource::Default => f.write_str("default"),
            OptionSource::HostsFile { path } => write!(f, "hosts.json {}", path.display()),
            OptionSource::Settings { path, selector } => {
                write!(f, "settings.toml {} [host_preferences.\"{selector}\"]", path.display())
            }
            OptionSource::CommandLine => f.write_str("command line"),
            OptionSource::Api => f.write_str("api override"),
            OptionSource::Url => f.write_str("url"),
        }
    }
}

/// The merged `*_options` tables of one host, each key with its source.
#[derive(Clone, Default)]
pub struct ResolvedOptions {
    tables: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    sources: BTreeMap<(String, String), OptionSource>,
}

impl ResolvedOptions {
    /// Sets `table.key` to `value`, remembering where it came from; a later
    /// call for the same key wins (that is how layers are applied).
    pub fn set(&mut self, table: &str, key: &str, value: impl serde::Serialize, source: OptionSource) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|e| {
            Error::new(ErrorKind::InvalidConfig, "options").with_context(format!("{table}.{key}")).with_source(e)
        })?;
        self.tables.entry(table.to_string()).or_default().insert(key.to_string(), value);
        self.sources.insert((table.to_string(), key.to_string()), source);
        Ok(())
    }

    /// Applies every field of a serializable struct or map as `table.*`.
    pub fn set_all(&mut self, table: &str, values: impl serde::Serialize, source: OptionSource) -> Result<()> {
        let value = serde_json::to_value(values).map_err(|e| {
            Error::new(ErrorKind::InvalidConfig, "options").with_context(table.to_string()).with_source(e)
        })?;
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    self.set(table, &key, value, source.clone())?;
                }
                Ok(())
            }
            serde_json::Value::Null => Ok(()),
            other => Err(Error::new(ErrorKind::InvalidConfig, "options")
                .with_context(format!("{table} must be a table, found {}", json_type(&other)))),
        }
    }

    /// Deserializes `table` into the transport's typed options. A key the type
    /// does not know, or a value of the wrong type, is an
    /// [`ErrorKind::InvalidConfig`] error that names where the value came from.
    ///
    /// A table that does not fit goes through figment's deserializer, whose
    /// errors are typed (an unknown field with the fields expected, a path
    /// to the bad value), so nothing here reads an error message back.
    pub fn table<T: DeserializeOwned>(&self, table: &str) -> Result<T> {
        let map = self.tables.get(table).cloned().unwrap_or_default();
        let json = serde_json::Value::Object(map);
        // The common case, straight from JSON; only a table that fails is
        // read again through figment, for an error that says why by type.
        if let Ok(options) = T::deserialize(&json) {
            return Ok(options);
        }
        let value = figment::value::Value::serialize(&json).map_err(|e| {
            Error::new(ErrorKind::InvalidConfig, "options").with_context(format!("{table}: {}", e.kind))
        })?;
        value.deserialize::<T>().map_err(|e| {
            let context = match &e.kind {
                figment::error::Kind::UnknownField(key, expected) => {
                    let hint =
                        did_you_mean(key, expected).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
                    format!("unknown key `{table}.{key}` in {}{hint}", self.source_of(table, key))
                }
                kind => {
                    let key = e.path.first().cloned().unwrap_or_default();
                    // A secret's value must not reach a log through the message.
                    let why = if is_secret_key(&key) {
                        "invalid value (hidden: secret)".to_string()
                    } else {
                        kind.to_string()
                    };
                    format!("`{table}.{key}` from {}: {why}", self.source_of(table, &key))
                }
            };
            Error::new(ErrorKind::InvalidConfig, "options").with_context(context)
        })
    }

    /// The error for a value that has the right shape but no usable meaning:
    /// names the key and the layer its value came from.
    pub fn invalid(&self, table: &str, problem: &crate::registry::InvalidOption) -> Error {
        let context = if problem.key.is_empty() {
            format!("{table}: {}", problem.why)
        } else {
            format!("`{table}.{}` from {} {}", problem.key, self.source_of(table, &problem.key), problem.why)
        };
        Error::new(ErrorKind::InvalidConfig, "options").with_context(context)
    }

    /// Where `table.key` came from, as a phrase for an error message.
    fn source_of(&self, table: &str, key: &str) -> String {
        match self.sources.get(&(table.to_string(), key.to_string())) {
            Some(source) => source.to_string(),
            None => "the configuration".to_string(),
        }
    }

    /// The names of the tables that have keys.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// Every `(table, key, value as JSON text, source)`, sorted.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, String, &OptionSource)> {
        self.tables.iter().flat_map(move |(table, keys)| {
            keys.iter().map(move |(key, value)| {
                let source = &self.sources[&(table.clone(), key.clone())];
                (table.as_str(), key.as_str(), value.to_string(), source)
            })
        })
    }

    /// True when no table has any key.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(|t| t.is_empty())
    }
}

impl fmt::Debug for ResolvedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (table, key, value, source) in self.entries() {
            let value = if is_secret_key(key) { "***".to_string() } else { value };
            map.entry(&format_args!("{table}.{key}"), &format_args!("{value} ({source})"));
        }
        map.finish()
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a table",
    }
}

/// An option value no connection could use, named by its table (transports
/// call this from their options' `validate`).
pub fn invalid_option(table: &str, why: &str) -> Error {
    Error::new(ErrorKind::InvalidConfig, "options").with_context(format!("{table}: {why}"))
}

/// True for option keys whose values are secrets (passwords, passphrases,
/// tokens): they print as `***` and never appear in errors or logs.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passphrase", "secret", "token"].iter().any(|word| key.contains(word))
}

/// The candidate closest to `word`, if one is close enough to be a likely
/// typo (used for "did you mean" hints).
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(distance, c)| *distance <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Everything needed to reach one host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The inventory id (or the URL for an ad-hoc host).
    pub id: String,
    /// Address or name to connect to; `None` for hosts that need none (`local`, `mem`).
    pub address: Option<String>,
    /// Port from the host's URL; the transport's options decide otherwise.
    pub port: Option<u16>,
    /// The login to use; the first credential's when not set.
    pub user: Option<String>,
    /// Known logins, the first being the default.
    pub credentials: Vec<Credential>,
    /// Scheme of the command transport (`ssh`, `telnet`, `local`, …).
    pub term: String,
    /// Where `term` came from.
    pub term_source: OptionSource,
    /// Scheme of the file transport (`sftp`, `scp`, `ftp`, `nc`, `local`, …).
    pub transfer: String,
    /// Where `transfer` came from.
    pub transfer_source: OptionSource,
    /// Id of the jump host this host is reached through.
    pub hop: Option<String>,
    /// Free-form inventory labels.
    pub element: Option<String>,
    /// Free-form inventory labels.
    pub board: Option<String>,
    /// Merged per-protocol options.
    pub options: ResolvedOptions,
}

impl HostConfig {
    /// A host with only an id and its two transport schemes.
    pub fn new(id: impl Into<String>, term: impl Into<String>, transfer: impl Into<String>) -> Self {
        HostConfig {
            id: id.into(),
            address: None,
            port: None,
            user: None,
            credentials: Vec::new(),
            term: term.into(),
            term_source: OptionSource::Default,
            transfer: transfer.into(),
            transfer_source: OptionSource::Default,
            hop: None,
            element: None,
            board: None,
            options: ResolvedOptions::default(),
        }
    }

    /// The login to use.
    pub fn login(&self) -> Option<&str> {
        self.user.as_deref().or_else(|| self.credentials.first().map(|c| c.login.as_str()))
    }

    /// The password of the login in use, if the inventory has one.
    pub fn password(&self) -> Option<&str> {
        let login = self.login()?;
        self.credentials.iter().find(|c| c.login == login).map(|c| c.password.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        port: u16,
    }

    #[test]
    fn later_layer_wins_and_source_is_kept() {
        let mut o = ResolvedOptions::default();
        o.set("demo_options", "port", 22, OptionSource::Default).unwrap();
        o.set("demo_options", "port", 2222, OptionSource::CommandLine).unwrap();
        let demo: Demo = o.table("demo_options").unwrap();
        assert_eq!(demo.port, 2222);
        let (_, _, value, source) = o.entries().next().unwrap();
        assert_eq!((value.as_str(), source), ("2222", &OptionSource::CommandLine));
    }

    #[test]
    fn unknown_key_names_its_source() {
        let mut o = ResolvedOptions::default();
        o.set("demo_options", "port", 22, OptionSource::Default).unwrap();
        o.set("demo_options", "prot", 1, OptionSource::HostsFile { path: "h.json".into() }).unwrap();
        let err = o.table::<Demo>("demo_options").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert_eq!(
            err.to_string(),
            "options: invalid configuration: unknown key `demo_options.prot` in hosts.json h.json; did you mean `port`?"
        );

        let mut o = ResolvedOptions::default();
        o.set("demo_options", "port", "x", OptionSource::CommandLine).unwrap();
        let err = o.table::<Demo>("demo_options").unwrap_err();
        assert_eq!(
            err.to_string(),
            "options: invalid configuration: `demo_options.port` from command line: invalid type: found string \"x\", expected u16"
        );
    }

    #[test]
    fn secret_values_stay_out_of_errors() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct WithSecret {
            passphrase: Option<String>,
        }
        let mut o = ResolvedOptions::default();
        o.set("key_options", "passphrase", 424242, OptionSource::CommandLine).unwrap();
        assert!(!format!("{o:?}").contains("424242"), "Debug shows a secret: {o:?}");
        let err = o.table::<WithSecret>("key_options").unwrap_err().to_string();
        assert!(!err.contains("424242"), "{err}");
        assert!(err.ends_with("`key_options.passphrase` from command line: invalid value (hidden: secret)"), "{err}");
    }

    #[test]
    fn password_is_redacted() {
        let mut host = HostConfig::new("dut", "ssh", "sftp");
        host.credentials.push(Credential { login: "root".into(), password: "hunter2".to_string().into() });
        assert_eq!(host.password(), Some("hunter2"));
        assert!(!format!("{host:?}").contains("hunter2"));
    }
}
