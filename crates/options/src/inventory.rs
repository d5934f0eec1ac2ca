//! The `hosts.json` inventory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use tether_core::{Credential, Error, ErrorKind, Result};

/// One host as written in an inventory file.
#[derive(Debug, Clone)]
pub struct InventoryHost {
    /// The host id.
    pub id: String,
    /// Address to connect to (`ip` in the file).
    pub ip: Option<String>,
    /// Free-form label.
    pub element: Option<String>,
    /// Free-form label.
    pub board: Option<String>,
    /// Logins, the first being the default.
    pub creds: Vec<Credential>,
    /// Command transport scheme.
    pub term: Option<String>,
    /// File transport scheme.
    pub transfer: Option<String>,
    /// Jump host id.
    pub hop: Option<String>,
    /// The `*_options` tables, as written.
    pub tables: BTreeMap<String, Map<String, Value>>,
    /// The file this host was read from.
    pub file: PathBuf,
}

/// Hosts read from one or more inventory files; a later file's host replaces
/// an earlier one's with the same id.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    hosts: BTreeMap<String, InventoryHost>,
    files: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Creds {
    Map(indexmap_like::OrderedMap),
    List(Vec<LoginPassword>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginPassword {
    login: String,
    password: String,
}

/// `{"user": "password"}` keeps file order: the first login is the default.
mod indexmap_like {
    use serde::de::{Deserializer, MapAccess, Visitor};

    pub struct OrderedMap(pub Vec<(String, String)>);

    impl<'de> serde::Deserialize<'de> for OrderedMap {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Ordered;
            impl<'de> Visitor<'de> for Ordered {
                type Value = OrderedMap;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object of login: password")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap, A::Error> {
                    let mut pairs = Vec::new();
                    while let Some(pair) = map.next_entry::<String, String>()? {
                        pairs.push(pair);
                    }
                    Ok(OrderedMap(pairs))
                }
            }
            deserializer.deserialize_map(Ordered)
        }
    }
}

fn invalid(path: &Path, host: Option<&str>, message: impl std::fmt::Display) -> Error {
    let context = match host {
        Some(host) => format!("{}: host `{host}`: {message}", path.display()),
        None => format!("{}: {message}", path.display()),
    };
    Error::new(ErrorKind::InvalidConfig, "load inventory").with_context(context)
}

impl Inventory {
    /// Reads `paths` in order. Every named file must exist.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut inventory = Inventory::default();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io("load inventory", e).with_context(path.display().to_string()))?;
            inventory.add_text(&text, path)?;
        }
        Ok(inventory)
    }

    /// Adds the hosts of one file's text (named `path` in errors).
    pub fn add_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let value: Value = serde_json::from_str(text).map_err(|e| invalid(path, None, e))?;
        let entries: Vec<(String, Value)> = match value {
            Value::Object(map) => map.into_iter().filter(|(id, _)| !id.starts_with('_')).collect(),
            Value::Array(list) => list
                .into_iter()
                .map(|entry| {
                    let id = entry.get("id").and_then(Value::as_str).map(str::to_string);
                    id.map(|id| (id, entry)).ok_or_else(|| invalid(path, None, "a list entry has no string `id`"))
                })
                .collect::<Result<_>>()?,
            _ => return Err(invalid(path, None, "expected an object keyed by host id, or a list of hosts")),
        };
        for (id, entry) in entries {
            let host = parse_host(&id, entry, path)?;
            self.hosts.insert(id, host);
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// The host with this id.
    pub fn get(&self, id: &str) -> Option<&InventoryHost> {
        self.hosts.get(id)
    }

    /// Every host, sorted by id.
    pub fn hosts(&self) -> impl Iterator<Item = &InventoryHost> {
        self.hosts.values()
    }

    /// The files read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// The keys a host entry may have besides `*_options` tables and `_comments`.
const HOST_KEYS: &[&str] = &["id", "ip", "element", "board", "creds", "term", "transfer", "hop"];

fn string_field(id: &str, path: &Path, key: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(invalid(path, Some(id), format!("`{key}` must be a string, found {other}"))),
    }
}

fn parse_host(id: &str, entry: Value, path: &Path) -> Result<InventoryHost> {
    let Value::Object(fields) = entry else {
        return Err(invalid(path, Some(id), "a host must be an object"));
    };
    let mut host = InventoryHost {
        id: id.to_string(),
        ip: None,
        element: None,
        board: None,
        creds: Vec::new(),
        term: None,
        transfer: None,
        hop: None,
        tables: BTreeMap::new(),
        file: path.to_path_buf(),
    };
    for (key, value) in fields {
        match key.as_str() {
            k if k.starts_with('_') => {}
            "id" => {}
            "ip" => host.ip = Some(string_field(id, path, &key, value)?),
            "element" => host.element = Some(string_field(id, path, &key, value)?),
            "board" => host.board = Some(string_field(id, path, &key, value)?),
            "term" => host.term = Some(string_field(id, path, &key, value)?),
            "transfer" => host.transfer = Some(string_field(id, path, &key, value)?),
            "hop" => host.hop = Some(string_field(id, path, &key, value)?),
            "creds" => {
                let creds: Creds = serde_json::from_value(value).map_err(|_| {
                    invalid(
                        path,
                        Some(id),
                        "`creds` must be {\"login\": \"password\"} or [{\"login\": …, \"password\": …}]",
                    )
                })?;
                host.creds = match creds {
                    Creds::Map(map) => map.0,
                    Creds::List(list) => list.into_iter().map(|c| (c.login, c.password)).collect(),
                }
                .into_iter()
                .map(|(login, password)| Credential { login, password: SecretString::from(password) })
                .collect();
            }
            table if table.ends_with("_options") => match value {
                Value::Object(map) => {
                    let mut single = Map::new();
                    single.insert(key.clone(), Value::Object(map));
                    crate::layers::check_keys(&single).map_err(|m| invalid(path, Some(id), m))?;
                    if let Some(Value::Object(map)) = single.remove(&key) {
                        host.tables.insert(key, map);
                    }
                }
                other => return Err(invalid(path, Some(id), format!("`{key}` must be an object, found {other}"))),
            },
            _ => {
                let tables = tether_core::Registry::global().table_names();
                let candidates: Vec<&str> = HOST_KEYS.iter().copied().chain(tables).collect();
                let hint = tether_core::raw::did_you_mean(&key, &candidates)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(invalid(path, Some(id), format!("unknown key `{key}`{hint}")));
            }
        }
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_shapes_and_both_cred_forms() {
        let mut inv = Inventory::default();
        inv.add_text(
            r#"{"_comment": "lab", "dut1": {"ip": "10.0.0.1", "creds": {"admin": "pw", "guest": "g"}, "ssh_options": {"port": 2222}}}"#,
            Path::new("a.json"),
        )
        .unwrap();
        inv.add_text(
            r#"[{"id": "dut2", "term": "telnet", "creds": [{"login": "root", "password": "x"}]}]"#,
            Path::new("b.json"),
        )
        .unwrap();
        let dut1 = inv.get("dut1").unwrap();
        assert_eq!(dut1.creds.iter().map(|c| c.login.as_str()).collect::<Vec<_>>(), ["admin", "guest"]);
        assert_eq!(dut1.tables["ssh_options"]["port"], 2222);
        assert_eq!(inv.get("dut2").unwrap().term.as_deref(), Some("telnet"));
        assert!(inv.get("_comment").is_none());
        assert!(!format!("{dut1:?}").contains("\"pw\""), "password leaked into Debug");
    }

    #[test]
    fn later_file_replaces_host() {
        let mut inv = Inventory::default();
        inv.add_text(r#"{"h": {"ip": "1.1.1.1"}}"#, Path::new("a.json")).unwrap();
        inv.add_text(r#"{"h": {"ip": "2.2.2.2"}}"#, Path::new("b.json")).unwrap();
        assert_eq!(inv.get("h").unwrap().ip.as_deref(), Some("2.2.2.2"));
    }

    #[test]
    fn errors_name_file_host_and_key() {
        let mut inv = Inventory::default();
        let err = inv.add_text(r#"{"h": {"ipp": "1"}}"#, Path::new("lab.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "load inventory: invalid configuration: lab.json: host `h`: unknown key `ipp`; did you mean `ip`?"
        );
        let err = inv.add_text("{not json", Path::new("lab.json")).unwrap_err();
        assert!(
            err.to_string().starts_with("load inventory: invalid configuration: lab.json: key must be a string"),
            "{err}"
        );
    }
}
