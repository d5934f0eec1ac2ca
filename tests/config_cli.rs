//! `tether config HOST`: every effective key of the tables the host uses,
//! its value and its source, as text and as JSON, with secrets hidden.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

const PASSWORD: &str = "hunter2-do-not-print";

/// An inventory and a settings file in a fresh directory, which is also the
/// working directory of every run (so no stray ./hosts.json is read).
struct Lab {
    dir: tempfile::TempDir,
    hosts: PathBuf,
    settings: PathBuf,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts.json");
        let settings = dir.path().join("settings.toml");
        let inventory = json!({
            "dut": {
                "ip": "127.0.0.1",
                "term": "local",
                "transfer": "local",
                "creds": {"root": PASSWORD},
                "local_options": {"shell": "/bin/bash"}
            },
            "numeric": {"term": "local", "transfer": "local", "creds": {"1000": PASSWORD}},
            "gw": {"ip": "198.18.1.2"},
            "inner": {"ip": "198.18.2.2", "hop": "gw"},
            "board": {"ip": "198.18.3.2", "hop": "inner"},
            "lost": {"ip": "198.18.3.3", "hop": "nowhere"}
        });
        std::fs::write(&hosts, inventory.to_string()).unwrap();
        std::fs::write(
            &settings,
            r#"
[host_preferences."^nomatch$".local_options]
shell = "/bin/never"
connect_timeout = 1.0

[host_preferences."^du".local_options]
connect_timeout = 5.0
"#,
        )
        .unwrap();
        Lab { dir, hosts, settings }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
        cmd.arg("--hosts").arg(&self.hosts).arg("--settings").arg(&self.settings).args(args);
        cmd.env_remove("TETHER_HOSTS").env_remove("TETHER_SETTINGS").env_remove("RUST_LOG");
        cmd.current_dir(self.dir.path());
        let out = cmd.output().expect("the tether binary runs");
        for stream in [&out.stdout, &out.stderr] {
            assert!(!String::from_utf8_lossy(stream).contains(PASSWORD), "the password was printed: {out:?}");
        }
        out
    }

    /// `tether config` text: the `host` line, then `(key, value, source)` rows.
    fn rows(&self, args: &[&str]) -> (String, Vec<(String, String, String)>) {
        let out = self.run(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let head = lines.next().unwrap().to_string();
        let rows = lines
            .map(|line| {
                assert!(line.starts_with("  "), "rows are indented: {line:?}");
                let mut words = line.split_whitespace();
                let key = words.next().unwrap().to_string();
                let value = words.next().unwrap().to_string();
                (key, value, words.collect::<Vec<_>>().join(" "))
            })
            .collect();
        (head, rows)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn hosts_source(&self) -> String {
        format!("hosts.json {}", self.hosts.display())
    }

    fn settings_source(&self, selector: &str) -> String {
        format!("settings.toml {} [host_preferences.\"{selector}\"]", self.settings.display())
    }
}

fn row(key: &str, value: &str, source: &str) -> (String, String, String) {
    (key.into(), value.into(), source.into())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn text_shows_every_key_its_value_and_its_source() {
    let lab = Lab::new();
    let (head, rows) = lab.rows(&["config", "dut"]);
    assert_eq!(head, "host dut");
    let hosts = lab.hosts_source();
    assert_eq!(
        rows,
        [
            row("term", "local", &hosts),
            row("transfer", "local", &hosts),
            row("address", "127.0.0.1", &hosts),
            row("user", "root", &hosts),
            row("password", "***", &hosts),
            row("local_options.connect_timeout", "5.0", &lab.settings_source("^du")),
            row("local_options.shell", "\"/bin/bash\"", &hosts),
        ]
    );

    let (head, rows) = lab.rows(&["config", "local"]);
    assert_eq!(head, "host local");
    assert_eq!(
        rows,
        [
            row("term", "local", "default"),
            row("transfer", "local", "default"),
            row("local_options.connect_timeout", "30.0", "default"),
            row("local_options.shell", "\"/bin/sh\"", "default"),
        ]
    );
}

#[test]
fn text_columns_line_up() {
    let out = Lab::new().run(&["config", "dut"]);
    let text = String::from_utf8(out.stdout).unwrap();
    // Where key, value and source start: after two or more spaces.
    let columns = |line: &str| {
        let b = line.as_bytes();
        (2..b.len()).filter(|&i| b[i] != b' ' && b[i - 1] == b' ' && b[i - 2] == b' ').collect::<Vec<_>>()
    };
    let starts: Vec<Vec<usize>> = text.lines().skip(1).map(columns).collect();
    assert_eq!(starts[0].len(), 3, "{text}");
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
}

#[test]
fn command_line_overrides_show_as_command_line() {
    let lab = Lab::new();
    let (_, rows) = lab.rows(&[
        "-o",
        "local_options.connect_timeout=7.5",
        "-o",
        "local_options.shell=/bin/dash",
        "--term",
        "mem",
        "config",
        "dut",
    ]);
    let hosts = lab.hosts_source();
    assert_eq!(
        rows,
        [
            row("term", "mem", "command line"),
            row("transfer", "local", &hosts),
            row("address", "127.0.0.1", &hosts),
            row("user", "root", &hosts),
            row("password", "***", &hosts),
            row("local_options.connect_timeout", "7.5", "command line"),
            row("local_options.shell", "\"/bin/dash\"", "command line"),
        ]
    );
    let (_, rows) = lab.rows(&["--transfer", "mem", "config", "local"]);
    assert_eq!(rows[..2], [row("term", "local", "default"), row("transfer", "mem", "command line")]);
}

#[test]
fn json_gives_value_and_source_objects() {
    let lab = Lab::new();
    let value = lab.json(&["--json", "-o", "local_options.shell=/bin/dash", "config", "dut"]);
    let hosts = json!({"layer": "hosts_file", "path": path(&lab.hosts)});
    assert_eq!(
        value,
        json!({
            "host": "dut",
            "options": {
                "term": {"value": "local", "source": hosts},
                "transfer": {"value": "local", "source": hosts},
                "address": {"value": "127.0.0.1", "source": hosts},
                "user": {"value": "root", "source": hosts},
                "password": {"value": "***", "source": hosts},
                "local_options.connect_timeout": {
                    "value": 5.0,
                    "source": {"layer": "settings", "path": path(&lab.settings), "selector": "^du"}
                },
                "local_options.shell": {"value": "/bin/dash", "source": {"layer": "command_line"}},
            }
        })
    );
    let value = lab.json(&["--json", "config", "local"]);
    assert_eq!(value["options"]["term"], json!({"value": "local", "source": {"layer": "default"}}));
}

#[test]
fn json_keeps_text_values_as_strings() {
    // A login that reads as a number stays the string it is.
    let value = Lab::new().json(&["--json", "config", "numeric"]);
    assert_eq!(value["options"]["user"]["value"], "1000");
    assert_eq!(value["options"]["password"]["value"], "***");
}

#[test]
fn the_password_shows_nowhere_even_in_trace_logs() {
    // `run` checks stdout and stderr of every run for the password.
    let lab = Lab::new();
    for args in [&["-vvv", "config", "dut"][..], &["-vvv", "--json", "config", "dut"], &["-vvv", "config", "numeric"]] {
        let out = lab.run(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// One line on stderr, starting with `tether: `, exit code 1.
fn assert_error(out: &Output, expected: &str) {
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text, format!("tether: {expected}\n"));
}

#[test]
fn errors_name_the_source_and_the_nearest_key() {
    let lab = Lab::new();
    assert_error(
        &lab.run(&["-o", "local_options.shel=/bin/zsh", "config", "dut"]),
        "options on dut: invalid configuration: unknown key `local_options.shel` in command line; did you mean `shell`?",
    );
    assert_error(
        &lab.run(&["-o", "local_options.connect_timeout=soon", "config", "dut"]),
        "options on dut: invalid configuration: `local_options.connect_timeout` from command line: \
         invalid type: found string \"soon\", expected f64",
    );
    assert_error(
        &lab.run(&["-o", "local_option.shell=/bin/sh", "config", "dut"]),
        "options on dut: invalid configuration: unknown table `local_option` in command line; \
         did you mean `local_options`?",
    );

    std::fs::write(&lab.hosts, r#"{"dut": {"term": "local", "local_options": {"shel": "/bin/sh"}}}"#).unwrap();
    assert_error(
        &lab.run(&["config", "dut"]),
        &format!(
            "options on dut: invalid configuration: unknown key `local_options.shel` in {}; did you mean `shell`?",
            lab.hosts_source()
        ),
    );
    std::fs::write(&lab.settings, "[host_preferences.\"(dut\"]\nterm = \"local\"\n").unwrap();
    assert_error(
        &lab.run(&["config", "dut"]),
        &format!(
            "load settings: invalid configuration: {}: [host_preferences.\"(dut\"]: \
             the selector is not a valid regex: unclosed group",
            lab.settings.display()
        ),
    );
}

/// Values of the right type that no connection could use are refused when
/// the host is resolved, before anything connects, naming the layer.
#[test]
fn unusable_values_are_refused_by_config_naming_their_layer() {
    let lab = Lab::new();
    assert_error(
        &lab.run(&["-o", "local_options.connect_timeout=-1", "config", "dut"]),
        "options on dut: invalid configuration: `local_options.connect_timeout` from command line \
         must be a positive number of seconds, not -1",
    );
    std::fs::write(&lab.hosts, r#"{"dut": {"term": "ssh", "ssh_options": {"max_sessions": 0}}}"#).unwrap();
    assert_error(
        &lab.run(&["config", "dut"]),
        &format!(
            "options on dut: invalid configuration: `ssh_options.max_sessions` from {} must be at least 1",
            lab.hosts_source()
        ),
    );
    std::fs::write(&lab.hosts, r#"{"dut": {"term": "ssh"}}"#).unwrap();
    std::fs::write(&lab.settings, "[host_preferences.\"dut\".sftp_options]\nread_requests = 0\n").unwrap();
    assert_error(
        &lab.run(&["config", "dut"]),
        &format!(
            "options on dut: invalid configuration: `sftp_options.read_requests` from settings.toml {} \
             [host_preferences.\"dut\"] must be between 1 and 1024",
            lab.settings.display()
        ),
    );
}

#[test]
fn missing_explicit_files_are_errors_and_missing_defaults_are_not() {
    let lab = Lab::new();
    let missing = lab.dir.path().join("missing.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["--settings", path(&missing), "config", "local"])
        .env_remove("TETHER_HOSTS")
        .env_remove("TETHER_SETTINGS")
        .current_dir(lab.dir.path())
        .output()
        .unwrap();
    assert_error(
        &out,
        &format!("load settings: not found: {}: No such file or directory (os error 2)", missing.display()),
    );

    // No flags, no variables, no ./hosts.json nor ./.tether/settings.toml.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["config", "local"])
        .env_remove("TETHER_HOSTS")
        .env_remove("TETHER_SETTINGS")
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_option_syntax_is_a_usage_error() {
    let out = Lab::new().run(&["-o", "local_options.shell", "config", "dut"]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("`local_options.shell`: no `=` (expected TABLE.KEY=VALUE)"), "{text}");
}

#[test]
fn a_host_behind_hops_shows_its_chain() {
    let lab = Lab::new();
    let out = lab.run(&["config", "board"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let line =
        |key: &str| text.lines().find(|l| l.trim_start().starts_with(&format!("{key} "))).map(str::split_whitespace);
    let hop: Vec<&str> = line("hop").expect("a hop row").collect();
    assert_eq!(hop[..2], ["hop", "inner"], "{text}");
    let chain: Vec<&str> = line("chain").expect("a chain row").collect();
    assert_eq!(chain[..6], ["chain", "gw", "->", "inner", "->", "board"], "{text}");
    assert_eq!(chain[6..].join(" "), lab.hosts_source());

    let value = lab.json(&["--json", "config", "board"]);
    assert_eq!(value["options"]["chain"]["value"], json!(["gw", "inner", "board"]));

    // A host reached directly has neither row.
    let (_, rows) = lab.rows(&["config", "gw"]);
    assert!(rows.iter().all(|(key, ..)| key != "hop" && key != "chain"), "{rows:?}");

    // A hop missing from the inventory is refused, naming the chain.
    let out = lab.run(&["config", "lost"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`lost` names hop `nowhere`, which is not in the inventory (chain lost -> nowhere"),
        "{stderr}"
    );
}
