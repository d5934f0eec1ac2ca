//! `tether hosts`, `tether schemes`.

use tether::Error;

use super::Context;
use super::report::print_json;

pub(crate) fn hosts(context: &Context) -> Result<u8, Error> {
    let resolver = context.lab.resolver();
    let mut rows = Vec::new();
    for id in resolver.host_ids() {
        let host = resolver.inventory().get(&id);
        let (term, transfer) = match host {
            Some(h) => (
                h.term.clone().unwrap_or_else(|| tether::options::DEFAULT_TERM.into()),
                h.transfer.clone().unwrap_or_else(|| tether::options::DEFAULT_TRANSFER.into()),
            ),
            None => ("local".to_string(), "local".to_string()),
        };
        rows.push(serde_json::json!({
            "id": id,
            "term": term,
            "transfer": transfer,
            "address": host.and_then(|h| h.ip.clone()),
            "hop": host.and_then(|h| h.hop.clone()),
            "source": host.map(|h| h.file.display().to_string()).unwrap_or_else(|| "built-in".into()),
        }));
    }
    if context.json {
        print_json(&serde_json::Value::Array(rows))?;
        return Ok(0);
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                text(&r["id"]),
                text(&r["term"]),
                text(&r["transfer"]),
                text(&r["address"]),
                text(&r["hop"]),
                text(&r["source"]),
            ]
        })
        .collect();
    print_table(["ID", "TERM", "TRANSFER", "ADDRESS", "HOP", "SOURCE"], &table);
    Ok(0)
}

/// The registered schemes, then any refused at registration with why (a
/// scheme two plugins claim is unusable, the others still work).
pub(crate) fn schemes(context: &Context) -> Result<u8, Error> {
    let registry = context.lab.resolver().registry();
    let plugins: Vec<_> = registry.plugins().collect();
    if context.json {
        let rows = plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "scheme": p.scheme,
                    "capabilities": p.capabilities.names(),
                    "options_table": p.options.map(|o| o.table),
                    "connection": p.connection_key,
                    "description": p.description,
                })
            })
            .chain(registry.problems().map(|(scheme, why)| serde_json::json!({"scheme": scheme, "error": why})))
            .collect();
        print_json(&serde_json::Value::Array(rows))?;
        return Ok(0);
    }
    let table: Vec<[String; 4]> =
        plugins
            .iter()
            .map(|p| {
                [
                    p.scheme.to_string(),
                    p.capabilities.to_string(),
                    p.options.map(|o| o.table).unwrap_or("-").to_string(),
                    p.description.to_string(),
                ]
            })
            .chain(registry.problems().map(|(scheme, why)| {
                [scheme.to_string(), "-".to_string(), "-".to_string(), format!("unusable: {why}")]
            }))
            .collect();
    print_table(["SCHEME", "CAPABILITIES", "OPTIONS", "DESCRIPTION"], &table);
    Ok(0)
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
