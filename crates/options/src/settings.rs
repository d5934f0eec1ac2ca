//! `settings.toml`: host preferences, applied to every host whose id matches
//! a selector regex, in file order.
//!
//! ```toml
//! [host_preferences."^dut[0-9]+$"]
//! term = "ssh"
//!
//! [host_preferences."^dut[0-9]+$".ssh_options]
//! connect_timeout = 5.0
//! ```

use std::path::{Path, PathBuf};

use regex::{Regex, RegexSet};
use serde_json::{Map, Value};
use tether_core::{Error, ErrorKind, Result};

use crate::{DEFAULT_SETTINGS_FILE, SETTINGS_ENV};

/// One `[host_preferences."<selector>"]` table.
#[derive(Debug, Clone)]
pub struct Preference {
    /// The regex as written.
    pub selector: String,
    /// The file it came from.
    pub file: PathBuf,
    /// `term`, `transfer` and the `*_options` tables it sets.
    pub values: Map<String, Value>,
}

/// Every host preference, in file order.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    preferences: Vec<Preference>,
    /// All selectors compiled together, so matching one host against a
    /// hundred selectors is one pass.
    matcher: Option<RegexSet>,
    files: Vec<PathBuf>,
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidConfig, "load settings").with_context(format!("{}: {message}", path.display()))
}

impl Settings {
    /// Finds the settings file: `explicit` (required), else `TETHER_SETTINGS`
    /// (required), else `./.tether/settings.toml` if it exists.
    pub fn discover(explicit: Option<&Path>) -> Result<Self> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match std::env::var_os(SETTINGS_ENV).filter(|v| !v.is_empty()) {
                Some(path) => PathBuf::from(path),
                None if Path::new(DEFAULT_SETTINGS_FILE).is_file() => PathBuf::from(DEFAULT_SETTINGS_FILE),
                None => return Ok(Settings::default()),
            },
        };
        Settings::load(&path)
    }

    /// Reads one settings file, which must exist.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("load settings", e).with_context(path.display().to_string()))?;
        let mut settings = Settings::default();
        settings.add_text(&text, path)?;
        Ok(settings)
    }

    /// Adds the preferences of one file's text (named `path` in errors).
    pub fn add_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            // `e.message()` is one line but has no position; hosts.json
            // errors carry theirs, so add the line here.
            let line = e.span().and_then(|span| text.get(..span.start)).map(|before| before.matches('\n').count() + 1);
            invalid(path, line.map_or_else(|| e.message().to_string(), |line| format!("line {line}: {}", e.message())))
        })?;
        for (key, value) in table {
            if key != "host_preferences" {
                return Err(invalid(path, format!("unknown table `{key}` (expected `host_preferences`)")));
            }
            let toml::Value::Table(selectors) = value else {
                return Err(invalid(path, "`host_preferences` must be a table of selector tables"));
            };
            for (selector, body) in selectors {
                Regex::new(&selector).map_err(|e| {
                    // regex draws a caret under the error over several lines;
                    // keep the message to one line, its last.
                    let e = e.to_string();
                    let why = e.lines().last().unwrap_or_default().trim_start_matches("error: ");
                    invalid(
                        path,
                        format!("[host_preferences.\"{selector}\"]: the selector is not a valid regex: {why}"),
                    )
                })?;
                let values = match serde_json::to_value(&body) {
                    Ok(Value::Object(values)) => values,
                    _ => return Err(invalid(path, format!("[host_preferences.\"{selector}\"] must be a table"))),
                };
                check_preference(&values)
                    .and_then(|()| crate::layers::check_keys(&values))
                    .map_err(|m| invalid(path, format!("[host_preferences.\"{selector}\"]: {m}")))?;
                self.preferences.push(Preference { selector, file: path.to_path_buf(), values });
            }
        }
        self.files.push(path.to_path_buf());
        self.matcher = Some(
            RegexSet::new(self.preferences.iter().map(|p| &p.selector))
                .map_err(|e| invalid(path, format!("the selectors do not compile together: {e}")))?,
        );
        Ok(())
    }

    /// The preferences whose selector matches `host_id` (anywhere in it, as
    /// `grep` does: anchor with `^…$` for whole ids), in file order.
    pub fn matching<'a>(&'a self, host_id: &str) -> impl Iterator<Item = &'a Preference> + 'a {
        let matched: Vec<usize> =
            self.matcher.as_ref().map(|set| set.matches(host_id).into_iter().collect()).unwrap_or_default();
        matched.into_iter().map(move |i| &self.preferences[i])
    }

    /// Every preference, in file order.
    pub fn preferences(&self) -> &[Preference] {
        &self.preferences
    }

    /// The files read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// A preference holds `term`, `transfer` and `*_options` tables, nothing else.
fn check_preference(values: &Map<String, Value>) -> std::result::Result<(), String> {
    for (key, value) in values {
        match key.as_str() {
            "term" | "transfer" if value.is_string() => {}
            "term" | "transfer" => return Err(format!("`{key}` must be a string")),
            table if table.ends_with("_options") && value.is_object() => {}
            table if table.ends_with("_options") => return Err(format!("`{key}` must be a table")),
            other => {
                let tables = tether_core::Registry::global().table_names();
                let candidates: Vec<&str> = ["term", "transfer"].into_iter().chain(tables).collect();
                let hint = tether_core::raw::did_you_mean(other, &candidates)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(format!(
                    "unknown key `{other}` (a preference sets `term`, `transfer` and `*_options` tables){hint}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_in_file_order() {
        let mut s = Settings::default();
        s.add_text(
            "[host_preferences.\"^dut\"]\nterm = \"a\"\n[host_preferences.\".*\"]\nterm = \"b\"\n[host_preferences.\"^x$\"]\nterm = \"c\"\n",
            Path::new("s.toml"),
        )
        .unwrap();
        let order: Vec<&str> = s.matching("dut1").map(|p| p.selector.as_str()).collect();
        assert_eq!(order, ["^dut", ".*"]);
    }

    #[test]
    fn bad_regex_names_the_selector() {
        let err = Settings::default().add_text("[host_preferences.\"dut[\"]\n", Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().starts_with("load settings: invalid configuration: s.toml: [host_preferences.\"dut[\"]: the selector is not a valid regex"), "{err}");
    }
}
