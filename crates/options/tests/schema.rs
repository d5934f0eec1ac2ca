//! The `hosts.json` schema built from a registry of `mem` plus a test plugin
//! whose options nest a type of their own, so its `$defs` must be hoisted.

use std::path::Path;

use serde_json::{Value, json};
use tether_core::{Capabilities, OptionsSpec, Plugin, Registry, ReservedTable};
use tether_options::{Inventory, hosts_schema};

/// Options of the `demo` test scheme.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct DemoOptions {
    /// TCP port (default 22).
    port: u16,
    /// Seconds to connect (default 0).
    connect_timeout: f64,
    /// Ports forwarded while connected (default none).
    forwards: Vec<Forward>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { port: 22, connect_timeout: 0.0, forwards: Vec::new() }
    }
}

/// One forwarded port.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Forward {
    /// Local port.
    listen: u16,
    /// Where to connect, `host:port`.
    target: String,
}

fn registry() -> Registry {
    let mut registry = Registry::empty();
    registry.register(tether_core::memory::PLUGIN).unwrap();
    // As the facade reserves it in a build without ssh.
    registry.reserve(ReservedTable::new("ssh_options", "ssh"));
    registry
        .register(
            Plugin::new("demo", tether_core::conformance::refuse_connect)
                .with_description("test plugin that only runs commands")
                .with_capabilities(Capabilities::NONE.with_exec())
                .with_options(OptionsSpec::of::<DemoOptions>("demo_options")),
        )
        .unwrap();
    registry
}

fn schema() -> Value {
    hosts_schema(&registry())
}

/// Follows a local `$ref` (`#/…`) from the document root.
fn resolve<'a>(root: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("`{reference}` is not local"));
    root.pointer(pointer).unwrap_or_else(|| panic!("`{reference}` does not resolve"))
}

fn host(root: &Value) -> &Value {
    resolve(root, "#/$defs/host")
}

fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match value {
                    Value::String(target) if key == "$ref" => found.push(target),
                    _ => refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[test]
fn is_draft_2020_12_and_every_ref_resolves() {
    let root = schema();
    assert_eq!(root["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let mut found = Vec::new();
    refs(&root, &mut found);
    assert!(found.len() >= 3, "{found:?}");
    for reference in found {
        resolve(&root, reference);
    }
}

#[test]
fn accepts_both_inventory_shapes() {
    let root = schema();
    let shapes = root["oneOf"].as_array().unwrap();
    assert_eq!(shapes.len(), 2);
    let keyed = &shapes[0];
    assert_eq!(keyed["type"], "object");
    assert_eq!(keyed["additionalProperties"]["$ref"], "#/$defs/host");
    assert!(keyed["patternProperties"].get("^_").is_some(), "top-level `_` comments");
    let listed = &shapes[1];
    assert_eq!(listed["type"], "array");
    assert_eq!(listed["items"]["$ref"], "#/$defs/host");
    assert_eq!(listed["items"]["required"], json!(["id"]));
}

#[test]
fn host_fields_and_schemes() {
    let root = schema();
    let host = host(&root);
    assert_eq!(host["type"], "object");
    assert_eq!(host["additionalProperties"], false);
    assert!(host["patternProperties"].get("^_").is_some(), "host `_` comments");
    let props = &host["properties"];
    for key in ["id", "ip", "element", "board", "hop"] {
        assert_eq!(props[key]["type"], "string", "{key}");
    }
    // Sorted by scheme; `transfer` only lists schemes that move files.
    assert_eq!(props["term"]["enum"], json!(["demo", "mem"]));
    assert_eq!(props["transfer"]["enum"], json!(["mem"]));
    assert!(props["term"]["description"].as_str().unwrap().contains("default `ssh`"));
}

#[test]
fn creds_take_both_forms() {
    let root = schema();
    let creds = resolve(&root, host(&root)["properties"]["creds"]["$ref"].as_str().unwrap());
    let forms = creds["oneOf"].as_array().unwrap();
    assert_eq!(forms[0]["type"], "object");
    assert_eq!(forms[0]["additionalProperties"]["type"], "string");
    assert_eq!(forms[1]["type"], "array");
    let pair = &forms[1]["items"];
    assert_eq!(pair["required"], json!(["login", "password"]));
    assert_eq!(pair["additionalProperties"], false);
    assert_eq!(pair["properties"]["login"]["type"], "string");
    assert_eq!(pair["properties"]["password"]["type"], "string");
}

#[test]
fn options_table_is_the_plugins_schema_with_defs_hoisted() {
    let root = schema();
    let table = &host(&root)["properties"]["demo_options"];
    assert_eq!(table["type"], "object");
    assert_eq!(table["additionalProperties"], false);
    assert!(table.get("$defs").is_none() && table.get("$schema").is_none(), "{table:#}");
    let props = &table["properties"];
    assert_eq!(props["port"]["type"], "integer");
    assert_eq!(props["port"]["default"], 22, "defaults come from `Default`");
    assert_eq!(props["connect_timeout"]["type"], "number");
    assert_eq!(props["forwards"]["type"], "array");
    for (key, field) in props.as_object().unwrap() {
        let description = field["description"].as_str().unwrap_or_else(|| panic!("`{key}` has no description"));
        assert!(description.contains("default"), "`{key}`: {description}");
    }
    let forward = resolve(&root, props["forwards"]["items"]["$ref"].as_str().unwrap());
    assert_eq!(forward["additionalProperties"], false);
    assert_eq!(forward["properties"]["target"]["type"], "string");
}

#[test]
fn tables_of_transports_not_built_in_are_accepted_unchecked() {
    let root = schema();
    let props = &host(&root)["properties"];
    assert_eq!(props["ssh_options"]["type"], "object");
    assert!(props["ssh_options"].get("properties").is_none());
    assert!(props.get("bogus_options").is_none());
}

/// The keys of a document the inventory reads are exactly those the schema
/// declares: a typo is caught by `additionalProperties: false` in both.
#[test]
fn inventory_and_schema_agree_on_keys() {
    let root = schema();
    let host = host(&root);
    let declared = |key: &str| key.starts_with('_') || host["properties"].get(key).is_some();
    let good = json!({
        "_comment": "lab",
        "dut1": {
            "_note": "rack 3",
            "ip": "10.0.0.1",
            "element": "e",
            "board": "b",
            "hop": "gw",
            "term": "demo",
            "transfer": "mem",
            "creds": {"admin": "pw"},
            "demo_options": {"port": 2222, "forwards": [{"listen": 8080, "target": "db:5432"}]},
        },
    });
    Inventory::default().add_text(&good.to_string(), Path::new("good.json")).unwrap();
    for key in good["dut1"].as_object().unwrap().keys() {
        assert!(declared(key), "`{key}` is read but not in the schema");
    }
    let table = &host["properties"]["demo_options"]["properties"];
    for key in good["dut1"]["demo_options"].as_object().unwrap().keys() {
        assert!(table.get(key).is_some(), "`{key}` is read but not in the schema");
    }

    let typo = json!({"dut1": {"ipp": "10.0.0.1"}});
    assert!(Inventory::default().add_text(&typo.to_string(), Path::new("typo.json")).is_err());
    assert!(!declared("ipp"));
    assert!(table.get("prot").is_none());
}
