//! `tether schema hosts`, run as an editor integration would run it.

use std::process::{Command, Output};

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env_remove("TETHER_HOSTS")
        .env_remove("TETHER_SETTINGS")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the tether binary runs")
}

#[test]
fn schema_hosts_is_json_with_this_builds_tables() {
    let out = tether(&["schema", "hosts"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let host = &schema["$defs"]["host"]["properties"];
    let local = &host["local_options"];
    assert_eq!(local["additionalProperties"], false);
    for (key, field) in local["properties"].as_object().expect("local_options has properties") {
        let description = field["description"].as_str().unwrap_or_default();
        assert!(description.contains("default"), "`local_options.{key}` must state its default: {description:?}");
    }
    let term: Vec<&str> = host["term"]["enum"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    assert!(term.contains(&"local"), "{term:?}");
}

#[test]
fn schema_kind_is_checked() {
    let out = tether(&["schema", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hosts"), "the error lists the kinds");
}

#[test]
fn schema_needs_no_readable_inventory() {
    let out = tether(&["--hosts", "/nonexistent/hosts.json", "schema", "hosts"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());
}
