//! Resolving a whole inventory against many host preferences (issue 3): how
//! many hosts per second `Resolver::resolve` turns into a `HostConfig`, with
//! every option merged by figment and traced to its source. Goal: at least
//! 20,000 hosts/s for 10,000 hosts against 100 selectors.
//!
//! `cargo bench --bench options` runs the real sizes (a few seconds on 2
//! cores); `cargo test --benches`, `--quick` or `TETHER_BENCH_QUICK=1` run a
//! smoke pass (500 hosts, 20 selectors). There is no external tool to compare
//! with, so the table's reference column is the goal. Results go to
//! BENCHMARKS.md.

mod support;

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use support::{Better, Mode, Samples, Stat, Table};
use tether::options::{Inventory, Overrides, Resolver, Settings};
use tether::{OptionSource, Registry};
// Links the `local` plugin's registration: the inventory's hosts use it.
use tether_transport_local as _;

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// Hosts per second the issue asks for.
const GOAL_HOSTS_PER_S: f64 = 20_000.0;

fn main() -> BenchResult<()> {
    let mode = Mode::from_env();
    let hosts = mode.pick(10_000, 500);
    let selectors = mode.pick(100, 20);
    let racks = mode.pick(50, 10);
    let rounds = mode.pick(7, 3);
    println!("# options resolution benchmark ({mode:?} mode)\n");
    print!("{}", support::machine_description(&std::env::temp_dir()));
    println!(
        "\n{hosts} hosts in {racks} racks, {selectors} host-preference selectors; \
         1 untimed + {rounds} timed rounds resolving every host\n"
    );

    let baseline_kib = support::rss_kib().unwrap_or(0);
    let inventory_text = inventory_json(hosts, racks);
    let settings_text = settings_toml(selectors, racks);
    println!(
        "inventory text: {:.1} MiB, settings text: {:.1} KiB",
        inventory_text.len() as f64 / support::MIB as f64,
        settings_text.len() as f64 / 1024.0
    );

    // Loading: what every `tether` invocation pays before resolving anything.
    let registry = Registry::global();
    let (inventory, inventory_time) = support::time(|| -> BenchResult<Inventory> {
        let mut inventory = Inventory::default();
        inventory.add_text(&inventory_text, Path::new("bench-hosts.json"))?;
        Ok(inventory)
    });
    let inventory = inventory?;
    let (settings, settings_time) = support::time(|| -> BenchResult<Settings> {
        let mut settings = Settings::default();
        settings.add_text(&settings_text, Path::new("bench-settings.toml"))?;
        Ok(settings)
    });
    let settings = settings?;
    let (resolver, resolver_time) = support::time(|| Resolver::new(registry, inventory, settings));
    let resolver = resolver?;
    drop((inventory_text, settings_text));
    let loaded_kib = support::rss_kib().unwrap_or(0);
    let load_peak_kib = support::peak_rss_kib().unwrap_or(0);

    let ids: Vec<String> = resolver.inventory().hosts().map(|h| h.id.clone()).collect();
    if ids.len() != hosts || resolver.settings().preferences().len() != selectors {
        return Err(format!(
            "loaded {} hosts and {} selectors, expected {hosts} and {selectors}",
            ids.len(),
            resolver.settings().preferences().len()
        )
        .into());
    }
    let matches: usize = ids.iter().map(|id| resolver.settings().matching(id).count()).sum();
    let mean_matches = matches as f64 / hosts as f64;

    // An untimed round that also checks every answer, so a fast wrong
    // resolver cannot pass: the winner of `connect_timeout` must be the last
    // matching selector that sets it, else the host's own table, else the
    // default.
    let overrides = Overrides::default();
    for id in &ids {
        check(&resolver, id, &overrides)?;
    }

    let peak_resettable = support::reset_peak_rss();
    let mut samples = Samples::new();
    for _ in 0..rounds {
        let (resolved, time) = support::time(|| -> BenchResult<usize> {
            let mut options = 0;
            for id in &ids {
                let config = resolver.resolve(id, &overrides)?;
                options += config.options.entries().filter(|(table, ..)| *table == "local_options").count();
            }
            Ok(options)
        });
        // Every host has the two `local_options` keys, merged.
        if resolved? != 2 * hosts {
            return Err("a resolved host lost an option".into());
        }
        samples.push(time);
    }
    let resolve_peak_kib = support::peak_rss_kib().unwrap_or(0);
    let after_kib = support::rss_kib().unwrap_or(0);

    let per_s = |time: Duration| hosts as f64 / time.as_secs_f64();
    let rates: Vec<String> = samples.all().iter().map(|t| format!("{:.0}", per_s(*t))).collect();
    println!("resolve rounds: {} hosts/s\n", rates.join(", "));

    let mut table = Table::new();
    let goal = format!("{GOAL_HOSTS_PER_S:.0} hosts/s");
    for stat in [Stat::Median, Stat::Best] {
        let rate = per_s(samples.stat(stat));
        table.row(
            &format!("resolve {hosts} hosts × {selectors} selectors, {}", stat.label()),
            format!("{rate:.0} hosts/s"),
            "goal",
            goal.clone(),
            support::fmt_ratio(rate / GOAL_HOSTS_PER_S, Better::Higher),
        );
    }
    let median = samples.median();
    table.row(
        "resolve, mean per host (median round)",
        format!("{:.1} µs", median.as_secs_f64() * 1e6 / hosts as f64),
        "goal",
        format!("{:.1} µs", 1e6 / GOAL_HOSTS_PER_S),
        support::fmt_ratio(median.as_secs_f64() / hosts as f64 * GOAL_HOSTS_PER_S, Better::Lower),
    );
    table.row("matching selectors per host, mean", format!("{mean_matches:.2}"), "", String::new(), String::new());
    let load_rows = [
        ("load: Inventory::add_text", inventory_time),
        ("load: Settings::add_text (incl. RegexSet)", settings_time),
        ("load: Resolver::new", resolver_time),
    ];
    for (metric, time) in load_rows {
        table.row(metric, support::fmt_duration(time), "", String::new(), String::new());
    }
    let scope = if peak_resettable { "" } else { " (VmHWM not resettable: whole run)" };
    let memory_rows = [
        ("RSS before loading", support::fmt_kib(baseline_kib)),
        ("peak RSS while loading (texts held)", support::fmt_kib(load_peak_kib)),
        ("RSS after loading (texts dropped)", support::fmt_kib(loaded_kib)),
        (
            "RSS growth per loaded host",
            format!("{:.2} KiB", loaded_kib.saturating_sub(baseline_kib) as f64 / hosts as f64),
        ),
        (&*format!("peak RSS while resolving{scope}"), support::fmt_kib(resolve_peak_kib)),
        ("RSS after resolving", support::fmt_kib(after_kib)),
    ];
    for (metric, value) in memory_rows {
        table.row(metric, value, "", String::new(), String::new());
    }
    println!("{}", table.render());
    Ok(())
}

/// One resolution, checked against what the layers say it must be.
fn check(resolver: &Resolver, id: &str, overrides: &Overrides) -> BenchResult<()> {
    let config = resolver.resolve(id, overrides)?;
    if config.term != "local" || config.transfer != "local" {
        return Err(format!("{id}: resolved to {}/{}", config.term, config.transfer).into());
    }
    let expected = match resolver.settings().matching(id).filter(|p| sets_timeout(&p.values)).last() {
        Some(p) => OptionSource::Settings { path: p.file.clone(), selector: p.selector.clone() },
        None => match resolver.inventory().get(id) {
            Some(host) if host.tables.get("local_options").is_some_and(|t| t.contains_key("connect_timeout")) => {
                OptionSource::HostsFile { path: host.file.clone() }
            }
            _ => OptionSource::Default,
        },
    };
    let found = config.options.entries().find(|(t, k, ..)| *t == "local_options" && *k == "connect_timeout");
    match found {
        Some((.., source)) if *source == expected => Ok(()),
        other => Err(format!("{id}: connect_timeout from {other:?}, expected {expected}").into()),
    }
}

fn sets_timeout(values: &serde_json::Map<String, serde_json::Value>) -> bool {
    values.get("local_options").and_then(|t| t.get("connect_timeout")).is_some()
}

/// A lab inventory: `rack{r:02}-dut{n:04}` hosts spread over `racks` racks,
/// each with an address, logins (both `creds` forms), labels and the `local`
/// transports; one in four has its own `local_options`, one in ten a comment.
fn inventory_json(hosts: usize, racks: usize) -> String {
    let per_rack = hosts.div_ceil(racks);
    let mut out = String::with_capacity(hosts * 320);
    out.push_str("{\n  \"_comment\": \"generated by benches/options.rs\"");
    for i in 0..hosts {
        let (rack, dut) = (i / per_rack, i % per_rack);
        let _ = write!(
            out,
            ",\n  \"rack{rack:02}-dut{dut:04}\": {{\"ip\": \"10.{rack}.{}.{}\", ",
            dut / 250,
            dut % 250 + 1
        );
        if i % 3 == 0 {
            let _ = write!(
                out,
                "\"creds\": [{{\"login\": \"root\", \"password\": \"r{i}\"}}, {{\"login\": \"admin\", \"password\": \"a{i}\"}}], "
            );
        } else {
            let _ = write!(out, "\"creds\": {{\"admin\": \"pw-{i}\", \"guest\": \"guest\"}}, ");
        }
        let _ = write!(
            out,
            "\"element\": \"{}\", \"board\": \"board-{}\", \"term\": \"local\", \"transfer\": \"local\"",
            ["core", "edge", "access"][i % 3],
            i % 7
        );
        if i % 4 == 0 {
            let _ = write!(out, ", \"local_options\": {{\"connect_timeout\": {}.5", 5 + i % 20);
            if i % 8 == 0 {
                out.push_str(", \"shell\": \"/bin/bash\"");
            }
            out.push('}');
        }
        if i % 10 == 0 {
            let _ = write!(out, ", \"_comment\": \"bench host {i}\"");
        }
        out.push('}');
    }
    out.push_str("\n}\n");
    out
}

/// `count` host-preference selectors in the shapes a lab writes: a rack
/// prefix, a range of racks, alternations of duts, digit classes, catch-alls
/// (`.*`, `rack`) and selectors for hosts this inventory does not have. Each
/// sets a couple of `local_options` keys; a few also set the transports.
fn settings_toml(count: usize, racks: usize) -> String {
    let mut out = String::from("# generated by benches/options.rs\n");
    let mut seen = BTreeSet::new();
    // `^lab{i}-` never repeats, so this ends.
    for i in 0.. {
        if seen.len() == count {
            break;
        }
        let k = i / 10;
        let rack = (3 * k + i % 10) % racks;
        let selector = match i % 10 {
            0 if i == 0 => ".*".to_string(),
            0 => format!("^rack{rack:02}-"),
            1 => format!("^rack{rack:02}-dut00[0-4][0-9]$"),
            2 => format!("^rack({rack:02}|{:02}|{:02})-", (rack + 1) % racks, (rack + 3) % racks),
            3 => format!("-dut(0{:03}|0{:03}|01{:02})$", i % 200, (i * 7) % 200, i % 100),
            4 => format!("dut\\d{{2}}{}{}$", k % 10, (k * 3) % 10),
            5 if i == 5 => "rack".to_string(),
            5 => format!("^rack[0-9]*{}-dut\\d+$", k % 10),
            6 => format!("^lab{i}-"),
            7 => format!("^(spare|rack{rack:02}-dut01[0-9]{{2}})$"),
            8 => format!("^rack{rack:02}-dut0[0-9]*[{}{}]$", k % 10, (k + 5) % 10),
            _ => format!("^rack\\d{{2}}-dut0{}{}", k % 2, (k / 2) % 10),
        };
        if !seen.insert(selector.clone()) {
            continue;
        }
        let quoted = selector.replace('\\', "\\\\");
        let _ = writeln!(out, "\n[host_preferences.\"{quoted}\"]");
        if i % 9 == 0 {
            out.push_str("term = \"local\"\ntransfer = \"local\"\n");
        }
        let _ = writeln!(out, "[host_preferences.\"{quoted}\".local_options]");
        let _ = writeln!(out, "connect_timeout = {}.0", 1 + i % 60);
        if i % 2 == 0 {
            let _ = writeln!(out, "shell = \"/bin/sh{}\"", if i % 4 == 0 { "" } else { "-bench" });
        }
    }
    out
}
