//! Finding the inventory and settings from the flags, `TETHER_HOSTS`,
//! `TETHER_SETTINGS` and the working directory.
//!
//! Environment and working directory belong to the whole process, so the one
//! test here runs each scenario in a child: this same binary, started with
//! its own environment and directory, and `DISCOVER_CASE` naming the scenario.

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_core::{ErrorKind, OptionSource, Registry};
use tether_options::{Overrides, Resolver, Settings};

const CASE_ENV: &str = "DISCOVER_CASE";
const TEST_NAME: &str = "discover_follows_flags_env_and_working_directory";

fn registry() -> &'static Registry {
    let mut registry = Registry::empty();
    registry.register(tether_core::memory::PLUGIN).unwrap();
    Box::leak(Box::new(registry))
}

fn write(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A host `h` on `mem`, with `term`'s source telling which file was read.
fn hosts_json() -> &'static str {
    r#"{"h": {"term": "mem", "transfer": "mem"}}"#
}

fn settings_toml() -> &'static str {
    "[host_preferences.\"^h$\"]\nterm = \"mem\"\n"
}

fn term_source(resolver: &Resolver) -> OptionSource {
    resolver.resolve("h", &Overrides::default()).unwrap().term_source
}

/// Runs in the child, in a fresh directory.
fn scenario(case: &str) {
    match case {
        // Nothing named, nothing in the directory: no inventory, no settings,
        // and that is fine.
        "nothing" => {
            assert!(Settings::discover(None).unwrap().files().is_empty());
            let r = Resolver::discover(registry(), &[], None).unwrap();
            assert!(r.inventory().files().is_empty());
            assert!(r.settings().files().is_empty());
            assert_eq!(r.host_ids(), ["local"]);
        }
        // ./hosts.json and ./.tether/settings.toml are read when present.
        "defaults" => {
            write("hosts.json", hosts_json());
            write(".tether/settings.toml", settings_toml());
            let r = Resolver::discover(registry(), &[], None).unwrap();
            assert_eq!(r.inventory().files(), [PathBuf::from("hosts.json")]);
            assert_eq!(r.settings().files(), [PathBuf::from(".tether/settings.toml")]);
            assert_eq!(
                term_source(&r),
                OptionSource::Settings { path: ".tether/settings.toml".into(), selector: "^h$".into() }
            );
        }
        // The variables win over the defaults; TETHER_HOSTS is a path list.
        "env" => {
            write("hosts.json", "not read");
            write(".tether/settings.toml", "not read");
            write("a.json", r#"{"a": {"term": "mem", "transfer": "mem"}}"#);
            write("b.json", hosts_json());
            write("s.toml", settings_toml());
            let r = Resolver::discover(registry(), &[], None).unwrap();
            assert_eq!(r.inventory().files(), [PathBuf::from("a.json"), PathBuf::from("b.json")]);
            assert_eq!(r.host_ids(), ["a", "h", "local"]);
            assert_eq!(term_source(&r), OptionSource::Settings { path: "s.toml".into(), selector: "^h$".into() });
        }
        // A file named by a variable must exist, and the error names it.
        "env-missing" => {
            let err = Settings::discover(None).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound);
            assert!(err.to_string().contains("missing-settings.toml"), "{err}");
            write("s.toml", settings_toml());
            let err = Resolver::discover(registry(), &[], Some(Path::new("s.toml"))).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound);
            assert!(err.to_string().contains("missing-hosts.json"), "{err}");
        }
        // Flags win over the variables (which name missing files here).
        "flags" => {
            write("mine.json", hosts_json());
            write("mine.toml", settings_toml());
            let r = Resolver::discover(registry(), &["mine.json".into()], Some(Path::new("mine.toml"))).unwrap();
            assert_eq!(r.inventory().files(), [PathBuf::from("mine.json")]);
            assert_eq!(r.settings().files(), [PathBuf::from("mine.toml")]);
        }
        // An empty variable counts as unset.
        "empty-env" => {
            write("hosts.json", hosts_json());
            let r = Resolver::discover(registry(), &[], None).unwrap();
            assert_eq!(r.inventory().files(), [PathBuf::from("hosts.json")]);
            assert!(r.settings().files().is_empty());
            assert_eq!(term_source(&r), OptionSource::HostsFile { path: "hosts.json".into() });
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn discover_follows_flags_env_and_working_directory() {
    if let Ok(case) = std::env::var(CASE_ENV) {
        scenario(&case);
        return;
    }
    let cases: [(&str, &[(&str, &str)]); 6] = [
        ("nothing", &[]),
        ("defaults", &[]),
        ("env", &[("TETHER_HOSTS", "a.json:b.json"), ("TETHER_SETTINGS", "s.toml")]),
        ("env-missing", &[("TETHER_HOSTS", "missing-hosts.json"), ("TETHER_SETTINGS", "missing-settings.toml")]),
        ("flags", &[("TETHER_HOSTS", "missing-hosts.json"), ("TETHER_SETTINGS", "missing-settings.toml")]),
        ("empty-env", &[("TETHER_HOSTS", ""), ("TETHER_SETTINGS", "")]),
    ];
    for (case, env) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"]).current_dir(dir.path());
        child.env_remove("TETHER_HOSTS").env_remove("TETHER_SETTINGS").env(CASE_ENV, case);
        child.envs(env.iter().copied());
        let out = child.output().unwrap();
        // `1 passed`: the scenario did run, not zero tests.
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "scenario {case}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
