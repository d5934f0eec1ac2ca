//! Resolving ids and URLs against the registry of this test binary (`mem`
//! from core, plus a test plugin with an options table).

use std::path::Path;

use tether_core::{Capabilities, ErrorKind, OptionSource, OptionsSpec, Plugin, Registry};
use tether_options::{Inventory, Overrides, Resolver};

#[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct DemoOptions {
    /// TCP port (default 0).
    port: u16,
    /// Seconds to connect (default 0).
    connect_timeout: f64,
}

fn registry() -> &'static Registry {
    let mut registry = Registry::empty();
    registry.register(tether_core::memory::PLUGIN).unwrap();
    registry
        .register(
            Plugin::new("demo", tether_core::conformance::refuse_connect)
                .with_description("test plugin")
                .with_capabilities(Capabilities::NONE.with_exec().with_files())
                .with_options(OptionsSpec::of::<DemoOptions>("demo_options")),
        )
        .unwrap();
    Box::leak(Box::new(registry))
}

fn resolver(json: &str) -> Resolver {
    let mut inventory = Inventory::default();
    inventory.add_text(json, Path::new("lab/hosts.json")).unwrap();
    Resolver::new(registry(), inventory, tether_options::Settings::default()).unwrap()
}

#[test]
fn inventory_host_gets_defaults_then_its_own_table() {
    let r =
        resolver(r#"{"dut": {"ip": "127.0.0.1", "term": "demo", "transfer": "mem", "demo_options": {"port": 2222}}}"#);
    let config = r.resolve("dut", &Overrides::default()).unwrap();
    assert_eq!((config.term.as_str(), config.transfer.as_str()), ("demo", "mem"));
    let entries: Vec<(String, String, OptionSource)> =
        config.options.entries().map(|(t, k, v, s)| (format!("{t}.{k}"), v, s.clone())).collect();
    assert_eq!(
        entries,
        [
            ("demo_options.connect_timeout".into(), "0.0".into(), OptionSource::Default),
            ("demo_options.port".into(), "2222".into(), OptionSource::HostsFile { path: "lab/hosts.json".into() }),
        ]
    );
}

#[test]
fn overrides_win() {
    let r = resolver(r#"{"dut": {"term": "demo", "transfer": "demo"}}"#);
    let overrides = Overrides { term: Some("mem".into()), ..Default::default() };
    let config = r.resolve("dut", &overrides).unwrap();
    assert_eq!((config.term.as_str(), config.transfer.as_str()), ("mem", "demo"));
}

#[test]
fn unknown_host_lists_known_ones_and_the_inventory() {
    let err =
        resolver(r#"{"b": {"term": "mem", "transfer": "mem"}}"#).resolve("nope", &Overrides::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "resolve host: not found: unknown host `nope` (known: b, local; inventory: lab/hosts.json)"
    );
}

#[test]
fn unknown_scheme_lists_registered_ones() {
    let err = resolver("{}").resolve("gopher://x", &Overrides::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lookup scheme on gopher://x: invalid configuration: unknown scheme `gopher` (registered: demo, mem)"
    );
    let err = resolver(r#"{"h": {}}"#).resolve("h", &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("unknown scheme `ssh` (registered: demo, mem)"), "{err}");
}

#[test]
fn urls_resolve_with_user_port_and_secret_password() {
    let config = resolver("{}").resolve("demo://ann:s3cret@example.test:2200", &Overrides::default()).unwrap();
    assert_eq!(config.address.as_deref(), Some("example.test"));
    assert_eq!(config.port, Some(2200));
    assert_eq!(config.login(), Some("ann"));
    assert_eq!(config.password(), Some("s3cret"));
    assert!(!format!("{config:?}").contains("s3cret"));
    let mem = resolver("{}").resolve("mem://board", &Overrides::default()).unwrap();
    assert_eq!((mem.term.as_str(), mem.transfer.as_str(), mem.address.as_deref()), ("mem", "mem", Some("board")));
}

#[test]
fn missing_named_inventory_is_an_error() {
    let err = Inventory::load(&["/nonexistent/hosts.json".into()]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/hosts.json"), "{err}");
}

#[test]
fn hop_chains_resolve_nearest_first() {
    let r = resolver(
        r#"{"gw": {"ip": "10.0.0.1", "term": "mem", "transfer": "mem"}, "inner": {"ip": "10.1.0.1", "hop": "gw", "term": "mem", "transfer": "mem"}, "board": {"ip": "10.2.0.1", "hop": "inner", "term": "mem", "transfer": "mem"}}"#,
    );
    assert_eq!(r.hop_chain("board").unwrap(), ["gw", "inner"]);
    assert_eq!(r.hop_chain("inner").unwrap(), ["gw"]);
    assert!(r.hop_chain("gw").unwrap().is_empty());
    assert!(r.hop_chain("local").unwrap().is_empty());
    assert_eq!(r.resolve("board", &Overrides::default()).unwrap().hop.as_deref(), Some("inner"));
}

#[test]
fn a_missing_hop_or_a_cycle_is_a_config_error_naming_the_chain() {
    let r = resolver(
        r#"{"inner": {"hop": "gw", "term": "mem", "transfer": "mem"}, "board": {"hop": "inner", "term": "mem", "transfer": "mem"}}"#,
    );
    let err = r.resolve("board", &Overrides::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert_eq!(
        err.to_string(),
        "resolve hops on board: invalid configuration: `inner` names hop `gw`, which is not in the inventory \
         (chain board -> inner -> gw; known: board, inner, local)"
    );

    let r = resolver(
        r#"{"a": {"hop": "b", "term": "mem", "transfer": "mem"}, "b": {"hop": "c", "term": "mem", "transfer": "mem"}, "c": {"hop": "a", "term": "mem", "transfer": "mem"}, "board": {"hop": "a", "term": "mem", "transfer": "mem"}}"#,
    );
    let err = r.resolve("board", &Overrides::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert_eq!(
        err.to_string(),
        "resolve hops on board: invalid configuration: hop chain board -> a -> b -> c -> a comes back to `a`"
    );
    let err = r.resolve("a", &Overrides::default()).unwrap_err();
    assert!(err.to_string().ends_with("hop chain a -> b -> c -> a comes back to `a`"), "{err}");

    let r = resolver(r#"{"selfish": {"hop": "selfish", "term": "mem", "transfer": "mem"}}"#);
    let err = r.resolve("selfish", &Overrides::default()).unwrap_err();
    assert!(err.to_string().ends_with("hop chain selfish -> selfish comes back to `selfish`"), "{err}");
}
