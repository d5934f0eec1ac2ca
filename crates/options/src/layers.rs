//! The merge: every layer is a figment provider on the one default profile
//! (a global-profile provider would override every later layer), merged in
//! order, and each key's winner is read back from figment's metadata.

use std::collections::BTreeMap;

use figment::value::{Dict, Map as ProfileMap, Value as FigmentValue};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::{Map, Value};
use tether_core::{Error, ErrorKind, OptionSource, Result};

/// One layer's values: `term`, `transfer` and `*_options` tables.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) source: OptionSource,
    pub(crate) values: Map<String, Value>,
}

/// One layer as a figment provider. Its metadata says where the layer's
/// values come from, the way figment's own providers do: named by the
/// source as `tether config` prints it, with the file when there is one.
struct LayerProvider {
    metadata: Metadata,
    dict: Dict,
}

/// The metadata of a layer from `source`: equal metadata means an equal source.
fn metadata_of(source: &OptionSource) -> Metadata {
    let name = source.to_string();
    match source {
        OptionSource::HostsFile { path } | OptionSource::Settings { path, .. } => {
            Metadata::from(name, figment::Source::File(path.clone()))
        }
        _ => Metadata::named(name),
    }
}

impl Provider for LayerProvider {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> std::result::Result<ProfileMap<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// What the merge produced: each top-level key and each table key, with
/// its value and the source of the winning layer.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub(crate) top: BTreeMap<String, (Value, OptionSource)>,
    pub(crate) tables: BTreeMap<String, BTreeMap<String, (Value, OptionSource)>>,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidConfig, "merge options").with_context(e.to_string())
}

pub(crate) fn merge(layers: &[Layer]) -> Result<Merged> {
    let mut figment = Figment::new();
    let sources: Vec<(Metadata, &OptionSource)> = layers.iter().map(|l| (metadata_of(&l.source), &l.source)).collect();
    for (layer, (metadata, _)) in layers.iter().zip(&sources) {
        let dict = match FigmentValue::serialize(&layer.values).map_err(internal)? {
            FigmentValue::Dict(_, dict) => dict,
            _ => Dict::new(),
        };
        figment = figment.merge(LayerProvider { metadata: metadata.clone(), dict });
    }
    let data = figment.data().map_err(internal)?;
    let Some(merged) = data.get(&Profile::Default) else {
        return Ok(Merged::default());
    };
    // Each merged value carries the tag of the provider it came from, which
    // is what `find_metadata` looks up after re-merging every layer again
    // for each path: read it from the value already in hand. Metadata is
    // made from the source alone, so equal metadata is an equal source.
    let source_of = |value: &FigmentValue, path: &str| -> Result<OptionSource> {
        let metadata = figment.get_metadata(value.tag()).ok_or_else(|| internal(format!("no source for `{path}`")))?;
        sources
            .iter()
            .find(|(candidate, _)| candidate == metadata)
            .map(|(_, source)| (*source).clone())
            .ok_or_else(|| internal(format!("`{path}` came from `{}`, which is no layer", metadata.name)))
    };
    let to_json = |value: &FigmentValue| serde_json::to_value(value).map_err(internal);
    let mut out = Merged::default();
    for (key, value) in merged {
        match value {
            FigmentValue::Dict(_, table) if key.ends_with("_options") => {
                let entries = out.tables.entry(key.clone()).or_default();
                for (name, value) in table {
                    entries.insert(name.clone(), (to_json(value)?, source_of(value, &format!("{key}.{name}"))?));
                }
            }
            value => {
                out.top.insert(key.clone(), (to_json(value)?, source_of(value, key)?));
            }
        }
    }
    Ok(out)
}

/// Figment reads `a.b` as a path: a key with a dot could not be traced back
/// to its source, so it is refused where it is written.
pub(crate) fn check_keys(values: &Map<String, Value>) -> std::result::Result<(), String> {
    for (table, body) in values {
        if let Value::Object(keys) = body
            && let Some(key) = keys.keys().find(|k| k.contains('.') || k.is_empty())
        {
            return Err(format!("key `{key}` in `{table}`: option keys cannot be empty or contain '.'"));
        }
    }
    Ok(())
}

/// Parses `-o TABLE.KEY=VALUE`. The value is read as TOML (`2222`, `true`,
/// `["/k"]`, `"text"`); anything that is not valid TOML is taken as a plain
/// string, so `-o ssh_options.known_hosts=/tmp/kh` needs no quotes.
pub fn parse_assignment(text: &str) -> Result<(String, String, Value)> {
    let bad = |why: &str| {
        Error::new(ErrorKind::InvalidInput, "parse option")
            .with_context(format!("`{text}`: {why} (expected TABLE.KEY=VALUE)"))
    };
    let (path, raw) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let (table, key) = path.trim().split_once('.').ok_or_else(|| bad("no `.` between table and key"))?;
    if table.is_empty() || key.is_empty() || key.contains('.') {
        return Err(bad("the path must be exactly TABLE.KEY"));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut parsed) => parsed.remove("v").map(|v| serde_json::to_value(v).map_err(internal)).transpose()?,
        Err(_) => None,
    };
    Ok((table.to_string(), key.to_string(), value.unwrap_or_else(|| Value::String(raw.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse_as_toml_or_text() {
        assert_eq!(parse_assignment("ssh_options.port=2222").unwrap().2, Value::from(2222));
        assert_eq!(parse_assignment(r#"ssh_options.client_keys=["/k"]"#).unwrap().2, serde_json::json!(["/k"]));
        assert_eq!(parse_assignment("ssh_options.known_hosts=/tmp/kh").unwrap().2, Value::from("/tmp/kh"));
        assert_eq!(parse_assignment("a.b=\"quoted\"").unwrap().2, Value::from("quoted"));
        assert!(parse_assignment("noequals").is_err());
        assert!(parse_assignment("nodot=1").is_err());
    }
}
