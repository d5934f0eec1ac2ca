//! The JSON Schema of `hosts.json`, built from the registered plugins so
//! that editors complete and check exactly the tables this program reads.

use serde_json::{Map, Value, json};
use tether_core::{Registry, TableOwner};

use crate::{DEFAULT_TERM, DEFAULT_TRANSFER};

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";
/// Where the host object lives in the root `$defs`.
const HOST_DEF: &str = "host";
const CREDS_DEF: &str = "creds";
/// Underscore keys are how JSON files carry comments; the inventory skips them.
const COMMENT_PATTERN: &str = "^_";

/// The JSON Schema (draft 2020-12) of a `hosts.json` inventory for the
/// plugins in `registry`: both file shapes (an object keyed by host id, or a
/// list of hosts with an `id`), `term`/`transfer` limited to the schemes that
/// can serve them, and each plugin's options table checked by its own schema.
pub fn hosts_schema(registry: &Registry) -> Value {
    let mut defs = Map::new();
    defs.insert(CREDS_DEF.into(), creds_schema());
    // Reserved before any plugin's definitions are merged, so a plugin type
    // named like ours is renamed instead of replacing the host object.
    defs.insert(HOST_DEF.into(), Value::Null);

    let mut properties = Map::new();
    let string = |description: &str| json!({ "type": "string", "description": description });
    properties.insert(
        "id".into(),
        string("The host id: required in the list form; in the object form the key is the id and this is ignored."),
    );
    properties.insert("ip".into(), string("Address (name or IP) the transports connect to."));
    properties.insert("element".into(), string("Free-form label."));
    properties.insert("board".into(), string("Free-form label."));
    properties.insert("hop".into(), string("Id of the jump host this host is reached through."));
    properties.insert(
        "creds".into(),
        json!({ "$ref": pointer(CREDS_DEF), "description": "Logins, the first being the default." }),
    );
    let schemes = |wanted: fn(&tether_core::Capabilities) -> bool| -> Vec<&str> {
        registry.plugins().filter(|p| wanted(&p.capabilities)).map(|p| p.scheme).collect()
    };
    properties.insert(
        "term".into(),
        json!({
            "type": "string",
            "enum": schemes(|c| c.exec),
            "description": format!("Scheme that runs commands (default `{DEFAULT_TERM}`)."),
        }),
    );
    properties.insert(
        "transfer".into(),
        json!({
            "type": "string",
            "enum": schemes(|c| c.files),
            "description": format!("Scheme that moves files (default `{DEFAULT_TRANSFER}`)."),
        }),
    );

    let host_pointer = format!("{}/properties", pointer(HOST_DEF));
    for table in registry.table_names() {
        let schema = match registry.table_owner(table) {
            Some(TableOwner::Plugin(_, spec)) => {
                hoist(spec.schema(), table, &format!("{host_pointer}/{}", escape(table)), &mut defs)
            }
            // The resolver keeps these unchecked so one inventory serves
            // builds with and without the transport; refusing them here would
            // flag files the program accepts.
            _ => json!({
                "type": "object",
                "description": "Options of a transport not built into this program: accepted, not checked.",
                "propertyNames": { "pattern": "^[^.]+$" },
            }),
        };
        properties.insert(table.into(), schema);
    }

    defs.insert(
        HOST_DEF.into(),
        json!({
            "type": "object",
            "description": "One host: how to reach it and per-transport options.",
            "properties": properties,
            "patternProperties": { COMMENT_PATTERN: { "description": "A comment, ignored." } },
            "additionalProperties": false,
        }),
    );

    json!({
        "$schema": DRAFT,
        "title": "Tether inventory (hosts.json)",
        "description": "Hosts keyed by id, or a list of hosts each with an `id`.",
        "oneOf": [
            {
                "type": "object",
                "patternProperties": { COMMENT_PATTERN: { "description": "A comment, ignored." } },
                "additionalProperties": { "$ref": pointer(HOST_DEF) },
            },
            {
                "type": "array",
                "items": { "$ref": pointer(HOST_DEF), "required": ["id"] },
            },
        ],
        "$defs": defs,
    })
}

fn creds_schema() -> Value {
    json!({
        "oneOf": [
            {
                "type": "object",
                "description": "login: password; the first login is the default.",
                "additionalProperties": { "type": "string" },
            },
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "login": { "type": "string" },
                        "password": { "type": "string" },
                    },
                    "required": ["login", "password"],
                    "additionalProperties": false,
                },
            },
        ],
    })
}

/// Moves a plugin schema's `$defs` into the root `defs` and returns the rest,
/// to be placed at `location`. Every `$ref` in a plugin schema is relative to
/// that schema's own root, so each must be rewritten to resolve from the new
/// root: `#` to `location`, and a definition that clashes with another
/// plugin's (different content under the same name) to a name prefixed with
/// the table.
fn hoist(mut schema: Value, table: &str, location: &str, defs: &mut Map<String, Value>) -> Value {
    let Value::Object(object) = &mut schema else {
        return schema;
    };
    object.remove("$schema");
    let own_defs = match object.remove("$defs") {
        Some(Value::Object(own_defs)) => own_defs,
        _ => Map::new(),
    };
    let mut renames: Vec<(String, String)> = Vec::new();
    for (name, def) in &own_defs {
        if defs.get(name).is_some_and(|existing| existing != def) {
            let mut renamed = format!("{table}.{name}");
            while defs.contains_key(&renamed) || own_defs.contains_key(&renamed) {
                renamed.push('_');
            }
            renames.push((name.clone(), renamed));
        }
    }
    let pointers: Vec<(String, String)> = renames.iter().map(|(old, new)| (pointer(old), pointer(new))).collect();
    rewrite_refs(&mut schema, location, &pointers);
    for (name, mut def) in own_defs {
        rewrite_refs(&mut def, location, &pointers);
        let name = renames.iter().find(|(old, _)| *old == name).map(|(_, new)| new.clone()).unwrap_or(name);
        defs.insert(name, def);
    }
    schema
}

fn rewrite_refs(value: &mut Value, location: &str, renames: &[(String, String)]) {
    match value {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    Value::String(target) if key == "$ref" => {
                        if target == "#" {
                            *target = location.to_string();
                        } else if let Some(rest) = target.strip_prefix("#/").filter(|r| !r.starts_with("$defs/")) {
                            // Points inside the plugin's own root, which now sits at `location`.
                            *target = format!("{location}/{rest}");
                        } else if let Some((old, new)) =
                            renames.iter().find(|(old, _)| target == old || target.starts_with(&format!("{old}/")))
                        {
                            *target = format!("{new}{}", &target[old.len()..]);
                        }
                    }
                    _ => rewrite_refs(value, location, renames),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, location, renames)),
        _ => {}
    }
}

fn pointer(name: &str) -> String {
    format!("#/$defs/{}", escape(name))
}

/// JSON Pointer escaping (RFC 6901), for names with `~` or `/`.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hoisting_rewrites_self_and_clashing_refs() {
        let mut defs = Map::new();
        defs.insert("Forward".into(), json!({ "type": "string" }));
        defs.insert("Shared".into(), json!({ "type": "integer" }));
        let schema = json!({
            "$schema": DRAFT,
            "type": "object",
            "properties": {
                "forward": { "$ref": "#/$defs/Forward" },
                "shared": { "$ref": "#/$defs/Shared" },
                "again": { "$ref": "#" },
                "port": { "$ref": "#/properties/shared" },
            },
            "$defs": {
                "Forward": { "type": "object", "properties": { "next": { "$ref": "#/$defs/Forward" } } },
                "Shared": { "type": "integer" },
            },
        });
        let hoisted = hoist(schema, "x_options", "#/$defs/host/properties/x_options", &mut defs);
        assert!(hoisted.get("$schema").is_none() && hoisted.get("$defs").is_none());
        let props = &hoisted["properties"];
        assert_eq!(props["forward"]["$ref"], "#/$defs/x_options.Forward");
        assert_eq!(props["shared"]["$ref"], "#/$defs/Shared");
        assert_eq!(props["again"]["$ref"], "#/$defs/host/properties/x_options");
        assert_eq!(props["port"]["$ref"], "#/$defs/host/properties/x_options/properties/shared");
        assert_eq!(defs["Forward"], json!({ "type": "string" }), "another plugin's definition was replaced");
        assert_eq!(defs["x_options.Forward"]["properties"]["next"]["$ref"], "#/$defs/x_options.Forward");
    }

    #[test]
    fn pointer_escapes_names() {
        assert_eq!(pointer("a/b~c"), "#/$defs/a~1b~0c");
    }
}
