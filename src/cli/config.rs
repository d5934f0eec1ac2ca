//! `tether config HOST`: every effective option of the tables the host uses,
//! with its value and its source.

use tether::{Error, HostConfig, OptionSource};

use super::Context;
use super::report::print_json;

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
}

/// The tables the host uses: those of every scheme sharing a connection with
/// its `term` or its `transfer` (an SSH host uses ssh, sftp and scp options).
fn used_tables(context: &Context, config: &HostConfig) -> Vec<&'static str> {
    let registry = context.lab.resolver().registry();
    let keys: Vec<&str> = [&config.term, &config.transfer]
        .iter()
        .filter_map(|s| registry.get(s).ok())
        .map(|p| p.connection_key)
        .collect();
    registry.plugins().filter(|p| keys.contains(&p.connection_key)).filter_map(|p| p.options.map(|o| o.table)).collect()
}

struct Row {
    key: String,
    value: String,
    /// The value for `--json`: a text value stays a string even when it
    /// reads as JSON (a login `1000`, an address `true`).
    json_value: serde_json::Value,
    source: String,
    json_source: serde_json::Value,
}

fn row(key: impl Into<String>, value: impl Into<String>, source: &OptionSource) -> Row {
    let value = value.into();
    Row {
        key: key.into(),
        json_value: serde_json::Value::String(value.clone()),
        value,
        source: source.to_string(),
        json_source: serde_json::to_value(source).unwrap_or_default(),
    }
}

pub(crate) fn run(context: &Context, args: ConfigArgs) -> Result<u8, Error> {
    let config = context.config(&args.host)?;
    let mut rows = vec![
        row("term", &config.term, &config.term_source),
        row("transfer", &config.transfer, &config.transfer_source),
    ];
    let inventory = context.lab.resolver().inventory().get(&config.id);
    let host_source = match inventory {
        Some(host) => OptionSource::HostsFile { path: host.file.clone() },
        None if config.id.contains("://") => OptionSource::Url,
        None => OptionSource::Default,
    };
    if let Some(address) = &config.address {
        rows.push(row("address", address, &host_source));
    }
    if let Some(port) = config.port {
        rows.push(Row { json_value: port.into(), ..row("port", port.to_string(), &host_source) });
    }
    if let Some(login) = config.login() {
        rows.push(row("user", login, &host_source));
        if config.password().is_some() {
            rows.push(row("password", "***", &host_source));
        }
    }
    if let Some(hop) = &config.hop {
        rows.push(row("hop", hop, &host_source));
        // The whole way there, from this machine: the first hop is dialed
        // directly, each next one through the previous.
        let mut chain = context.lab.resolver().hop_chain(&config.id)?;
        chain.push(config.id.clone());
        let json_value = serde_json::Value::from(chain.clone());
        rows.push(Row { json_value, ..row("chain", chain.join(" -> "), &host_source) });
    }
    let tables = used_tables(context, &config);
    for (table, key, value, source) in config.options.entries() {
        if tables.contains(&table) {
            // Option values come as JSON text.
            let value = if tether::plugin::raw::is_secret_key(key) { "***".to_string() } else { value };
            let json_value = serde_json::from_str(&value).unwrap_or_else(|_| value.clone().into());
            rows.push(Row { json_value, ..row(format!("{table}.{key}"), value, source) });
        }
    }
    if context.json {
        let keys: serde_json::Map<String, serde_json::Value> = rows
            .into_iter()
            .map(|r| (r.key, serde_json::json!({"value": r.json_value, "source": r.json_source})))
            .collect();
        print_json(&serde_json::json!({"host": config.id, "options": keys}))?;
        return Ok(0);
    }
    let width = |f: fn(&Row) -> usize| rows.iter().map(f).max().unwrap_or(0);
    let (key_width, value_width) = (width(|r| r.key.len()), width(|r| r.value.chars().count()));
    println!("host {}", config.id);
    for r in &rows {
        println!("  {:key_width$}  {:value_width$}  {}", r.key, r.value, r.source);
    }
    Ok(0)
}
