//! The four layers (plugin defaults < hosts.json < host preferences <
//! overrides), merged per key with each value's source, against the registry
//! of this test binary: `mem` from core, a `demo` plugin with a
//! `demo_options` table, and option-less `ssh`, `sftp` and `alt` so the
//! default `term`/`transfer` resolve.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};
use tether_core::{Capabilities, ErrorKind, HostConfig, OptionSource, OptionsSpec, Plugin, Registry, ReservedTable};
use tether_options::{Inventory, Overrides, Resolver, Settings};

const HOSTS_PATH: &str = "lab/hosts.json";
const SETTINGS_PATH: &str = "conf/settings.toml";
const HOST: &str = "dut1";

#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct DemoOptions {
    port: u16,
    connect_timeout: f64,
    user: String,
    compression: bool,
    keys: Vec<String>,
    password: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            port: 22,
            connect_timeout: 30.0,
            user: "root".into(),
            compression: false,
            keys: vec!["/default/key".into()],
            password: None,
        }
    }
}

fn plugin(scheme: &'static str, options: Option<OptionsSpec>) -> Plugin {
    let plugin = Plugin::new(scheme, tether_core::conformance::refuse_connect)
        .with_description("test plugin")
        .with_capabilities(Capabilities::NONE.with_exec().with_files());
    match options {
        Some(options) => plugin.with_options(options),
        None => plugin,
    }
}

// Tables of transports this test program is built without, as the facade
// submits them: the inventory's and settings' typo hints know them.
tether_core::inventory::submit! { ReservedTable::new("ssh_options", "ssh") }
tether_core::inventory::submit! { ReservedTable::new("telnet_options", "telnet") }

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry::empty();
        registry.reserve(ReservedTable::new("telnet_options", "telnet"));
        registry.register(tether_core::memory::PLUGIN).unwrap();
        registry.register(plugin("demo", Some(OptionsSpec::of::<DemoOptions>("demo_options")))).unwrap();
        for scheme in ["ssh", "sftp", "alt"] {
            registry.register(plugin(scheme, None)).unwrap();
        }
        registry
    })
}

fn try_resolver(hosts: &str, settings: &str) -> tether_core::Result<Resolver> {
    let mut inventory = Inventory::default();
    inventory.add_text(hosts, Path::new(HOSTS_PATH))?;
    let mut prefs = Settings::default();
    prefs.add_text(settings, Path::new(SETTINGS_PATH))?;
    Resolver::new(registry(), inventory, prefs)
}

fn resolver(hosts: &str, settings: &str) -> Resolver {
    try_resolver(hosts, settings).unwrap()
}

fn cli(options: &[&str]) -> Overrides {
    Overrides {
        options: options.iter().map(|o| tether_options::parse_assignment(o).unwrap()).collect(),
        from_command_line: true,
        ..Default::default()
    }
}

fn hosts_file() -> OptionSource {
    OptionSource::HostsFile { path: HOSTS_PATH.into() }
}

fn pref(selector: &str) -> OptionSource {
    OptionSource::Settings { path: SETTINGS_PATH.into(), selector: selector.into() }
}

/// `table.key`'s effective value and source.
fn get(config: &HostConfig, path: &str) -> (Value, OptionSource) {
    let (table, key) = path.split_once('.').unwrap();
    let (_, _, value, source) = config
        .options
        .entries()
        .find(|(t, k, ..)| *t == table && *k == key)
        .unwrap_or_else(|| panic!("no `{path}` in {:?}", config.options));
    (serde_json::from_str(&value).unwrap(), source.clone())
}

fn term(config: &HostConfig) -> (Value, OptionSource) {
    (Value::from(config.term.clone()), config.term_source.clone())
}

fn transfer(config: &HostConfig) -> (Value, OptionSource) {
    (Value::from(config.transfer.clone()), config.transfer_source.clone())
}

// ---------------------------------------------------------------------------
// Precedence, pair by pair.

/// The layers, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Default,
    Hosts,
    Settings,
    Override,
}

/// Resolves `dut1` with `port`, `term` and `transfer` set in each of
/// `layers` (a distinct value per layer; defaults are always there).
fn with_layers(layers: &[Layer], from_command_line: bool) -> HostConfig {
    let has = |layer| layers.contains(&layer);
    let hosts = if has(Layer::Hosts) {
        r#"{"dut1": {"term": "demo", "transfer": "demo", "demo_options": {"port": 1001}}}"#
    } else {
        r#"{"dut1": {}}"#
    };
    let settings = if has(Layer::Settings) {
        "[host_preferences.\"^dut\"]\nterm = \"mem\"\ntransfer = \"mem\"\ndemo_options = { port = 1002 }\n"
    } else {
        ""
    };
    let overrides = if has(Layer::Override) {
        Overrides {
            term: Some("alt".into()),
            transfer: Some("alt".into()),
            options: vec![("demo_options".into(), "port".into(), json!(1003))],
            from_command_line,
        }
    } else {
        Overrides::default()
    };
    resolver(hosts, settings).resolve(HOST, &overrides).unwrap()
}

#[test]
fn every_precedence_pair_for_options_term_and_transfer() {
    use Layer::*;
    let pairs = [
        (Default, Hosts),
        (Default, Settings),
        (Default, Override),
        (Hosts, Settings),
        (Hosts, Override),
        (Settings, Override),
    ];
    for (low, high) in pairs {
        assert!(low < high);
        for from_command_line in [true, false] {
            let config = with_layers(&[low, high], from_command_line);
            let (port, scheme, source) = match high {
                Default => unreachable!(),
                Hosts => (1001, "demo", hosts_file()),
                Settings => (1002, "mem", pref("^dut")),
                Override if from_command_line => (1003, "alt", OptionSource::CommandLine),
                Override => (1003, "alt", OptionSource::Api),
            };
            let case = format!("{low:?} < {high:?} (command line: {from_command_line})");
            assert_eq!(get(&config, "demo_options.port"), (json!(port), source.clone()), "{case}");
            assert_eq!(term(&config), (json!(scheme), source.clone()), "{case}");
            assert_eq!(transfer(&config), (json!(scheme), source), "{case}");
        }
    }
}

#[test]
fn defaults_alone() {
    let config = with_layers(&[Layer::Default], true);
    assert_eq!(get(&config, "demo_options.port"), (json!(22), OptionSource::Default));
    assert_eq!(term(&config), (json!("ssh"), OptionSource::Default));
    assert_eq!(transfer(&config), (json!("sftp"), OptionSource::Default));
}

#[test]
fn every_key_inherits_from_the_highest_layer_that_sets_it() {
    let r = resolver(
        r#"{"dut1": {"term": "demo", "demo_options": {"port": 2222, "user": "admin"}}}"#,
        r#"
[host_preferences."^dut"]
transfer = "mem"
[host_preferences."^dut".demo_options]
connect_timeout = 5.5
user = "operator"
"#,
    );
    let config = r.resolve(HOST, &cli(&["demo_options.keys=[\"/cli/key\"]"])).unwrap();
    let entries: Vec<(String, String, OptionSource)> =
        config.options.entries().map(|(t, k, v, s)| (format!("{t}.{k}"), v, s.clone())).collect();
    assert_eq!(
        entries,
        [
            ("demo_options.compression".into(), "false".into(), OptionSource::Default),
            ("demo_options.connect_timeout".into(), "5.5".into(), pref("^dut")),
            ("demo_options.keys".into(), r#"["/cli/key"]"#.into(), OptionSource::CommandLine),
            ("demo_options.password".into(), "null".into(), OptionSource::Default),
            ("demo_options.port".into(), "2222".into(), hosts_file()),
            ("demo_options.user".into(), r#""operator""#.into(), pref("^dut")),
        ]
    );
    assert_eq!(term(&config), (json!("demo"), hosts_file()));
    assert_eq!(transfer(&config), (json!("mem"), pref("^dut")));
    let typed: DemoOptions = config.options.table("demo_options").unwrap();
    assert_eq!((typed.port, typed.connect_timeout, typed.user.as_str()), (2222, 5.5, "operator"));
    assert_eq!(typed.keys, ["/cli/key"], "an array is replaced, not appended to");
}

#[test]
fn matching_selectors_apply_in_file_order_and_others_not_at_all() {
    let settings = r#"
[host_preferences."^dut[0-9]+$".demo_options]
port = 1
user = "first"
compression = true

[host_preferences."^nomatch$".demo_options]
port = 99
connect_timeout = 99.0

[host_preferences.".*".demo_options]
port = 2
keys = ["/second"]

[host_preferences."1$".demo_options]
port = 3

[host_preferences."dut2"]
term = "alt"
"#;
    let r = resolver(r#"{"dut1": {}, "dut2": {}}"#, settings);
    let config = r.resolve(HOST, &Overrides::default()).unwrap();
    assert_eq!(get(&config, "demo_options.port"), (json!(3), pref("1$")));
    assert_eq!(get(&config, "demo_options.keys"), (json!(["/second"]), pref(".*")));
    assert_eq!(get(&config, "demo_options.user"), (json!("first"), pref("^dut[0-9]+$")));
    assert_eq!(get(&config, "demo_options.compression"), (json!(true), pref("^dut[0-9]+$")));
    assert_eq!(get(&config, "demo_options.connect_timeout"), (json!(30.0), OptionSource::Default));
    assert_eq!(term(&config), (json!("ssh"), OptionSource::Default));

    let config = r.resolve("dut2", &Overrides::default()).unwrap();
    assert_eq!(get(&config, "demo_options.port"), (json!(2), pref(".*")));
    assert_eq!(term(&config), (json!("alt"), pref("dut2")));

    let order: Vec<&str> = r.settings().matching(HOST).map(|p| p.selector.as_str()).collect();
    assert_eq!(order, ["^dut[0-9]+$", ".*", "1$"]);
}

#[test]
fn preferences_apply_to_urls_and_local_too() {
    let r = resolver(
        "{}",
        "[host_preferences.\"^demo://\".demo_options]\nport = 7\n[host_preferences.\"^local$\"]\nterm = \"mem\"\n",
    );
    let config = r.resolve("demo://box", &Overrides::default()).unwrap();
    assert_eq!(get(&config, "demo_options.port"), (json!(7), pref("^demo://")));
    assert_eq!(term(&config), (json!("demo"), OptionSource::Url));
    // `local` is not registered in this binary: the preference set `term`,
    // but `transfer` stays `local`, which is then refused.
    let err = r.resolve("local", &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("unknown scheme `local`"), "{err}");
    let config = r.resolve("local", &Overrides { transfer: Some("mem".into()), ..Default::default() }).unwrap();
    assert_eq!(term(&config), (json!("mem"), pref("^local$")));
}

#[test]
fn api_and_command_line_overrides_report_their_source() {
    let r = resolver(r#"{"dut1": {"demo_options": {"port": 1}}}"#, "");
    let mut overrides = Overrides {
        term: Some("demo".into()),
        options: vec![("demo_options".into(), "port".into(), json!(2))],
        ..Default::default()
    };
    let config = r.resolve(HOST, &overrides).unwrap();
    assert_eq!(get(&config, "demo_options.port"), (json!(2), OptionSource::Api));
    assert_eq!(term(&config), (json!("demo"), OptionSource::Api));
    assert_eq!(OptionSource::Api.to_string(), "api override");

    overrides.from_command_line = true;
    let config = r.resolve(HOST, &overrides).unwrap();
    assert_eq!(get(&config, "demo_options.port"), (json!(2), OptionSource::CommandLine));
    assert_eq!(term(&config), (json!("demo"), OptionSource::CommandLine));
    assert_eq!(OptionSource::CommandLine.to_string(), "command line");
}

#[test]
fn repeated_command_line_option_keeps_the_last() {
    let r = resolver(r#"{"dut1": {}}"#, "");
    let config = r.resolve(HOST, &cli(&["demo_options.port=1", "demo_options.port=2"])).unwrap();
    assert_eq!(get(&config, "demo_options.port"), (json!(2), OptionSource::CommandLine));
}

#[test]
fn source_strings() {
    assert_eq!(OptionSource::Default.to_string(), "default");
    assert_eq!(hosts_file().to_string(), "hosts.json lab/hosts.json");
    assert_eq!(pref("^dut").to_string(), r#"settings.toml conf/settings.toml [host_preferences."^dut"]"#);
}

// ---------------------------------------------------------------------------
// Files: a missing file given explicitly is an error; `discover` with no
// file named and no default present is covered in tests/discover.rs.

#[test]
fn missing_explicit_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = Settings::discover(Some(&missing)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let hosts = dir.path().join("nope.json");
    let err = Resolver::discover(registry(), std::slice::from_ref(&hosts), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains(&hosts.display().to_string()), "{err}");

    std::fs::write(&hosts, r#"{"dut1": {"demo_options": {"port": 5}}}"#).unwrap();
    let err = Resolver::discover(registry(), std::slice::from_ref(&hosts), Some(&missing)).unwrap_err();
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, "[host_preferences.dut.demo_options]\nuser = \"u\"\n").unwrap();
    let r = Resolver::discover(registry(), std::slice::from_ref(&hosts), Some(&settings)).unwrap();
    assert_eq!(r.inventory().files(), std::slice::from_ref(&hosts));
    assert_eq!(r.settings().files(), std::slice::from_ref(&settings));
    let config = r.resolve(HOST, &Overrides::default()).unwrap();
    assert_eq!(get(&config, "demo_options.port"), (json!(5), OptionSource::HostsFile { path: hosts }));
    assert_eq!(
        get(&config, "demo_options.user"),
        (json!("u"), OptionSource::Settings { path: settings, selector: "dut".into() })
    );
}

// ---------------------------------------------------------------------------
// Error messages: one line each, naming the file, the host, the key path, the
// source and the nearest valid key where there is one.

/// Resolving `dut1` fails with an invalid-configuration error: its one line.
fn resolve_error(hosts: &str, settings: &str, overrides: &Overrides) -> String {
    let err = try_resolver(hosts, settings).and_then(|r| r.resolve(HOST, overrides)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    one_line(err)
}

fn one_line(err: tether_core::Error) -> String {
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text
}

const DUT: &str = r#"{"dut1": {}}"#;
const NO_SETTINGS: &str = "";

#[test]
fn unknown_key_names_file_host_path_and_nearest_key() {
    let none = Overrides::default();
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"demo_options": {"prot": 2222}}}"#, NO_SETTINGS, &none),
        @"options on dut1: invalid configuration: unknown key `demo_options.prot` in hosts.json lab/hosts.json; did you mean `port`?"
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\".demo_options]\nconect_timeout = 5\n", &none),
        @r#"options on dut1: invalid configuration: unknown key `demo_options.conect_timeout` in settings.toml conf/settings.toml [host_preferences."^dut"]; did you mean `connect_timeout`?"#
    );
    insta::assert_snapshot!(
        resolve_error(DUT, NO_SETTINGS, &cli(&["demo_options.compresion=true"])),
        @"options on dut1: invalid configuration: unknown key `demo_options.compresion` in command line; did you mean `compression`?"
    );
    let api = Overrides { options: vec![("demo_options".into(), "usr".into(), json!("x"))], ..Default::default() };
    insta::assert_snapshot!(
        resolve_error(DUT, NO_SETTINGS, &api),
        @"options on dut1: invalid configuration: unknown key `demo_options.usr` in api override; did you mean `user`?"
    );
}

#[test]
fn unknown_key_without_a_near_match_has_no_hint() {
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"demo_options": {"frobnicate": 1}}}"#, NO_SETTINGS, &Overrides::default()),
        @"options on dut1: invalid configuration: unknown key `demo_options.frobnicate` in hosts.json lab/hosts.json"
    );
}

#[test]
fn wrong_type_names_the_source_and_the_expected_type() {
    let none = Overrides::default();
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"demo_options": {"port": "22"}}}"#, NO_SETTINGS, &none),
        @r#"options on dut1: invalid configuration: `demo_options.port` from hosts.json lab/hosts.json: invalid type: found string "22", expected u16"#
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\".demo_options]\nconnect_timeout = \"5s\"\n", &none),
        @r#"options on dut1: invalid configuration: `demo_options.connect_timeout` from settings.toml conf/settings.toml [host_preferences."^dut"]: invalid type: found string "5s", expected f64"#
    );
    insta::assert_snapshot!(
        resolve_error(DUT, NO_SETTINGS, &cli(&["demo_options.port=70000"])),
        @"options on dut1: invalid configuration: `demo_options.port` from command line: invalid value unsigned int `70000`, expected u16"
    );
    // Unquoted text that is not TOML is taken as a string.
    insta::assert_snapshot!(
        resolve_error(DUT, NO_SETTINGS, &cli(&["demo_options.keys=/k"])),
        @r#"options on dut1: invalid configuration: `demo_options.keys` from command line: invalid type: found string "/k", expected a sequence"#
    );
    let api =
        Overrides { options: vec![("demo_options".into(), "compression".into(), json!(1))], ..Default::default() };
    insta::assert_snapshot!(
        resolve_error(DUT, NO_SETTINGS, &api),
        @"options on dut1: invalid configuration: `demo_options.compression` from api override: invalid type: found unsigned int `1`, expected a boolean"
    );
    // The value that won is the one reported, not a lower layer's.
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"demo_options": {"port": 1}}}"#, NO_SETTINGS, &cli(&["demo_options.port=-1"])),
        @"options on dut1: invalid configuration: `demo_options.port` from command line: invalid value signed int `-1`, expected u16"
    );
}

#[test]
fn wrong_type_of_term_or_table_in_the_files() {
    let none = Overrides::default();
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"term": 5}}"#, NO_SETTINGS, &none),
        @"load inventory: invalid configuration: lab/hosts.json: host `dut1`: `term` must be a string, found 5"
    );
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"demo_options": [1]}}"#, NO_SETTINGS, &none),
        @"load inventory: invalid configuration: lab/hosts.json: host `dut1`: `demo_options` must be an object, found [1]"
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\"]\nterm = 22\n", &none),
        @r#"load settings: invalid configuration: conf/settings.toml: [host_preferences."^dut"]: `term` must be a string"#
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\"]\ndemo_options = 1\n", &none),
        @r#"load settings: invalid configuration: conf/settings.toml: [host_preferences."^dut"]: `demo_options` must be a table"#
    );
}

#[test]
fn bad_regex_names_the_selector() {
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\"]\nterm = \"demo\"\n[host_preferences.\"dut[0-9\"]\nterm = \"mem\"\n", &Overrides::default()),
        @r#"load settings: invalid configuration: conf/settings.toml: [host_preferences."dut[0-9"]: the selector is not a valid regex: unclosed character class"#
    );
}

#[test]
fn unknown_table_suggests_the_nearest() {
    let none = Overrides::default();
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"dmeo_options": {"port": 1}}}"#, NO_SETTINGS, &none),
        @"options on dut1: invalid configuration: unknown table `dmeo_options` in hosts.json lab/hosts.json; did you mean `demo_options`?"
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\".dmeo_options]\nport = 1\n", &none),
        @r#"options on dut1: invalid configuration: unknown table `dmeo_options` in settings.toml conf/settings.toml [host_preferences."^dut"]; did you mean `demo_options`?"#
    );
    insta::assert_snapshot!(
        resolve_error(DUT, NO_SETTINGS, &cli(&["dmeo_options.port=1"])),
        @"options on dut1: invalid configuration: unknown table `dmeo_options` in command line; did you mean `demo_options`?"
    );
    // Without the `_options` suffix too.
    insta::assert_snapshot!(
        resolve_error(DUT, NO_SETTINGS, &cli(&["demo_option.port=1"])),
        @"options on dut1: invalid configuration: unknown table `demo_option` in command line; did you mean `demo_options`?"
    );
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"ssh_option": {"port": 1}}}"#, NO_SETTINGS, &none),
        @"load inventory: invalid configuration: lab/hosts.json: host `dut1`: unknown key `ssh_option`; did you mean `ssh_options`?"
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\".ssh_option]\nport = 1\n", &none),
        @r#"load settings: invalid configuration: conf/settings.toml: [host_preferences."^dut"]: unknown key `ssh_option` (a preference sets `term`, `transfer` and `*_options` tables); did you mean `ssh_options`?"#
    );
    // A table of a transport that is not built in is kept, unchecked.
    let config =
        resolver(r#"{"dut1": {"telnet_options": {"anything": 1}}}"#, NO_SETTINGS).resolve(HOST, &none).unwrap();
    assert_eq!(get(&config, "telnet_options.anything"), (json!(1), hosts_file()));
}

#[test]
fn unknown_host_key() {
    let none = Overrides::default();
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"ipp": "10.0.0.1"}}"#, NO_SETTINGS, &none),
        @"load inventory: invalid configuration: lab/hosts.json: host `dut1`: unknown key `ipp`; did you mean `ip`?"
    );
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"trasnfer": "mem"}}"#, NO_SETTINGS, &none),
        @"load inventory: invalid configuration: lab/hosts.json: host `dut1`: unknown key `trasnfer`; did you mean `transfer`?"
    );
    insta::assert_snapshot!(
        resolve_error(r#"{"dut1": {"colour": "red"}}"#, NO_SETTINGS, &none),
        @"load inventory: invalid configuration: lab/hosts.json: host `dut1`: unknown key `colour`"
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\"]\ntrem = \"mem\"\n", &none),
        @r#"load settings: invalid configuration: conf/settings.toml: [host_preferences."^dut"]: unknown key `trem` (a preference sets `term`, `transfer` and `*_options` tables); did you mean `term`?"#
    );
}

#[test]
fn bad_settings_top_level() {
    let none = Overrides::default();
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preference.\"^dut\"]\nterm = \"mem\"\n", &none),
        @"load settings: invalid configuration: conf/settings.toml: unknown table `host_preference` (expected `host_preferences`)"
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "host_preferences = [1]\n", &none),
        @"load settings: invalid configuration: conf/settings.toml: `host_preferences` must be a table of selector tables"
    );
    insta::assert_snapshot!(
        resolve_error(DUT, "[host_preferences.\"^dut\"]\nterm = = 1\n", &none),
        @"load settings: invalid configuration: conf/settings.toml: line 2: extra `=`, expected nothing"
    );
}

#[test]
fn bad_option_syntax() {
    let parse = |text: &str| {
        let err = tether_options::parse_assignment(text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        one_line(err)
    };
    insta::assert_snapshot!(parse("demo_options.port"), @"parse option: invalid input: `demo_options.port`: no `=` (expected TABLE.KEY=VALUE)");
    insta::assert_snapshot!(parse("port=22"), @"parse option: invalid input: `port=22`: no `.` between table and key (expected TABLE.KEY=VALUE)");
    insta::assert_snapshot!(parse("demo_options.a.b=1"), @"parse option: invalid input: `demo_options.a.b=1`: the path must be exactly TABLE.KEY (expected TABLE.KEY=VALUE)");
    insta::assert_snapshot!(parse(".port=1"), @"parse option: invalid input: `.port=1`: the path must be exactly TABLE.KEY (expected TABLE.KEY=VALUE)");
}

#[test]
fn missing_explicit_files() {
    let missing = |err: tether_core::Error| {
        assert_eq!(err.kind(), ErrorKind::NotFound);
        one_line(err)
    };
    insta::assert_snapshot!(
        missing(Settings::discover(Some(Path::new("/nonexistent/settings.toml"))).unwrap_err()),
        @"load settings: not found: /nonexistent/settings.toml: No such file or directory (os error 2)"
    );
    insta::assert_snapshot!(
        missing(Inventory::load(&["/nonexistent/hosts.json".into()]).unwrap_err()),
        @"load inventory: not found: /nonexistent/hosts.json: No such file or directory (os error 2)"
    );
    insta::assert_snapshot!(
        missing(Resolver::discover(registry(), &["/nonexistent/hosts.json".into()], None).unwrap_err()),
        @"load inventory: not found: /nonexistent/hosts.json: No such file or directory (os error 2)"
    );
}

// ---------------------------------------------------------------------------
// The precedence laws, for any mix of layers: each key's value and source are
// those of the last layer (defaults, hosts.json, matching preferences in file
// order, overrides) that sets it.

mod laws {
    use std::collections::BTreeMap;

    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    use super::*;

    /// What one layer sets: `term`, `transfer` or `demo_options.<key>`.
    type Values = BTreeMap<&'static str, Value>;

    const SCHEMES: [&str; 3] = ["demo", "mem", "alt"];
    /// Selectors, and whether each matches `dut1`.
    const SELECTORS: [(&str, bool); 8] = [
        ("^dut1$", true),
        ("dut", true),
        (".*", true),
        ("1$", true),
        ("^dut[0-9]+$", true),
        ("^dut2$", false),
        ("^x", false),
        ("lab", false),
    ];

    fn values() -> impl Strategy<Value = Values> {
        (
            option::of(0..SCHEMES.len()),
            option::of(0..SCHEMES.len()),
            option::of(any::<u16>()),
            option::of(0..400u32),
            option::of("[a-z]{1,6}"),
            option::of(any::<bool>()),
            option::of(vec("/[a-z]{1,4}", 0..3)),
        )
            .prop_map(|(term, transfer, port, timeout, user, compression, keys)| {
                let mut values = Values::new();
                let mut put = |key, value: Option<Value>| {
                    if let Some(value) = value {
                        values.insert(key, value);
                    }
                };
                put("term", term.map(|i| json!(SCHEMES[i])));
                put("transfer", transfer.map(|i| json!(SCHEMES[i])));
                put("demo_options.port", port.map(Value::from));
                put("demo_options.connect_timeout", timeout.map(|t| json!(f64::from(t) / 4.0)));
                put("demo_options.user", user.map(Value::from));
                put("demo_options.compression", compression.map(Value::from));
                put("demo_options.keys", keys.map(Value::from));
                values
            })
    }

    #[derive(Debug, Clone)]
    struct Case {
        hosts: Values,
        /// `(index into SELECTORS, values)`, in file order, selectors distinct.
        preferences: Vec<(usize, Values)>,
        overrides: Values,
        from_command_line: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        let preferences = vec((0..SELECTORS.len(), values()), 0..6).prop_map(|mut list| {
            let mut seen = Vec::new();
            list.retain(|(i, _)| {
                !seen.contains(i) && {
                    seen.push(*i);
                    true
                }
            });
            list
        });
        (values(), preferences, values(), any::<bool>()).prop_map(
            |(hosts, preferences, overrides, from_command_line)| Case {
                hosts,
                preferences,
                overrides,
                from_command_line,
            },
        )
    }

    /// `term`, `transfer` and a `demo_options` table (always present, maybe empty).
    fn nested(values: &Values) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        let mut table = serde_json::Map::new();
        for (key, value) in values {
            match key.strip_prefix("demo_options.") {
                Some(key) => table.insert(key.into(), value.clone()),
                None => out.insert((*key).into(), value.clone()),
            };
        }
        out.insert("demo_options".into(), Value::Object(table));
        out
    }

    fn render(case: &Case) -> (String, String, Overrides) {
        let hosts = json!({ HOST: nested(&case.hosts) }).to_string();
        let mut selectors = toml::Table::new();
        for (i, values) in &case.preferences {
            let body = toml::Value::try_from(nested(values)).unwrap();
            selectors.insert(SELECTORS[*i].0.into(), body);
        }
        let mut settings = toml::Table::new();
        settings.insert("host_preferences".into(), toml::Value::Table(selectors));
        let settings = toml::to_string(&settings).unwrap();
        let mut overrides = Overrides { from_command_line: case.from_command_line, ..Default::default() };
        for (key, value) in &case.overrides {
            match (*key, key.split_once('.')) {
                ("term", _) => overrides.term = value.as_str().map(String::from),
                ("transfer", _) => overrides.transfer = value.as_str().map(String::from),
                // The command line goes through `-o` parsing (JSON scalars
                // and string arrays are TOML too); the API passes values.
                (_, Some(_)) if case.from_command_line => {
                    overrides.options.push(tether_options::parse_assignment(&format!("{key}={value}")).unwrap())
                }
                (_, Some((table, key))) => overrides.options.push((table.into(), key.into(), value.clone())),
                (_, None) => unreachable!(),
            }
        }
        (hosts, settings, overrides)
    }

    /// The model: defaults, then each layer in precedence order.
    fn expected(case: &Case) -> BTreeMap<String, (Value, OptionSource)> {
        let mut out = BTreeMap::new();
        out.insert("term".into(), (json!("ssh"), OptionSource::Default));
        out.insert("transfer".into(), (json!("sftp"), OptionSource::Default));
        let Value::Object(defaults) = serde_json::to_value(DemoOptions::default()).unwrap() else { unreachable!() };
        for (key, value) in defaults {
            out.insert(format!("demo_options.{key}"), (value, OptionSource::Default));
        }
        let mut apply = |values: &Values, source: OptionSource| {
            for (key, value) in values {
                out.insert(key.to_string(), (value.clone(), source.clone()));
            }
        };
        apply(&case.hosts, hosts_file());
        for (i, values) in &case.preferences {
            let (selector, matches) = SELECTORS[*i];
            if matches {
                apply(values, pref(selector));
            }
        }
        let source = if case.from_command_line { OptionSource::CommandLine } else { OptionSource::Api };
        apply(&case.overrides, source);
        out
    }

    fn actual(config: &HostConfig) -> BTreeMap<String, (Value, OptionSource)> {
        let mut out = BTreeMap::new();
        out.insert("term".into(), term(config));
        out.insert("transfer".into(), transfer(config));
        for (table, key, value, source) in config.options.entries() {
            out.insert(format!("{table}.{key}"), (serde_json::from_str(&value).unwrap(), source.clone()));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_last_layer_that_sets_a_key_wins(case in case()) {
            let (hosts, settings, overrides) = render(&case);
            let config = resolver(&hosts, &settings).resolve(HOST, &overrides).unwrap();
            prop_assert_eq!(actual(&config), expected(&case), "hosts: {}\nsettings:\n{}", hosts, settings);
        }
    }
}
