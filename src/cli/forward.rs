//! `tether forward HOST [LPORT:]DEST:DPORT…`: local ports forwarded through
//! a host (`ssh -L`), for any scheme that opens streams (ssh, local, …),
//! until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tether::plugin::BoxFuture;
use tether::{BoxStream, Error, Host, PortForward, Tunnel};
use tokio::signal::unix::{SignalKind, signal};

use super::Context;
use super::report::print_json;

#[derive(Debug, clap::Args)]
pub(crate) struct ForwardArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
    /// `[LPORT:]DEST:DPORT` (repeatable): listen on 127.0.0.1:LPORT (0 or
    /// omitted: a free port) and connect each client to DEST:DPORT as seen
    /// from HOST. Bracket an IPv6 destination: `0:[::1]:22`.
    #[arg(required = true, value_name = "[LPORT:]DEST:DPORT", value_parser = parse_spec)]
    specs: Vec<Spec>,
}

/// One forward asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    local_port: u16,
    dest_host: String,
    dest_port: u16,
}

const SPEC_FORM: &str = "expected [LPORT:]DEST:DPORT, e.g. 8080:localhost:80 or db.internal:5432";

fn parse_spec(text: &str) -> Result<Spec, String> {
    let (rest, dest_port) = text.rsplit_once(':').ok_or_else(|| format!("`{text}`: {SPEC_FORM}"))?;
    let dest_port = match dest_port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => return Err(format!("`{text}`: DPORT `{dest_port}` is not a port (1-65535)")),
    };
    let bracketed = rest.ends_with(']');
    let (local_port, dest_host) = if let Some(inside) = rest.strip_suffix(']') {
        let open = inside.rfind('[').ok_or_else(|| format!("`{text}`: unbalanced `]` in DEST"))?;
        let before = &inside[..open];
        let local = match before {
            "" => None,
            _ => Some(before.strip_suffix(':').ok_or_else(|| format!("`{text}`: {SPEC_FORM}"))?),
        };
        (local, &inside[open + 1..])
    } else {
        match rest.split_once(':') {
            Some((local, dest)) => (Some(local), dest),
            None => (None, rest),
        }
    };
    if dest_host.is_empty() {
        return Err(format!("`{text}`: DEST is empty; {SPEC_FORM}"));
    }
    if dest_host.contains('[') || dest_host.contains(']') || (!bracketed && dest_host.contains(':')) {
        return Err(format!("`{text}`: bracket an IPv6 DEST, e.g. 0:[::1]:22"));
    }
    let local_port = match local_port {
        None => 0,
        Some(local) => local
            .parse::<u16>()
            .map_err(|_| format!("`{text}`: LPORT `{local}` is not a port (0-65535; 0 picks a free one)"))?,
    };
    if local_port == 0 && rest == dest_host && dest_host.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}`: `{dest_host}` looks like a port, not a host; write LPORT:DEST:DPORT, e.g. \
             {dest_host}:localhost:{dest_port}"
        ));
    }
    Ok(Spec { local_port, dest_host: dest_host.to_string(), dest_port })
}

/// `host:port`, bracketing an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Opens each stream through the host's current connection, so a dropped
/// connection is replaced for the next client instead of failing them all.
#[derive(Debug)]
struct HostTunnel(Arc<Host>);

// Written out rather than with `#[async_trait]`, which this package does not
// depend on; the signature is the one that macro gives the trait.
impl Tunnel for HostTunnel {
    fn open_stream<'life0, 'life1, 'async_trait>(
        &'life0 self,
        host: &'life1 str,
        port: u16,
    ) -> BoxFuture<'async_trait, tether::Result<BoxStream>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.0.open_stream(host, port).await })
    }
}

pub(crate) async fn run(context: &Context, args: ForwardArgs) -> Result<u8, Error> {
    let host = Arc::new(context.host(&args.host)?);
    // Connecting first: an unreachable host or a scheme without streams fails
    // before anything listens.
    host.tunnel().await?;
    let tunnel: Arc<dyn Tunnel> = Arc::new(HostTunnel(host.clone()));
    let mut running: Vec<(PortForward, &Spec)> = Vec::new();
    for spec in &args.specs {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, spec.local_port));
        let forward = PortForward::listen(tunnel.clone(), listen, &spec.dest_host, spec.dest_port)
            .await
            .map_err(|e| e.with_host(host.id()))?;
        running.push((forward, spec));
    }
    if context.json {
        let forwards: Vec<serde_json::Value> = running
            .iter()
            .map(|(forward, spec)| {
                serde_json::json!({
                    "listen": forward.local_addr().to_string(),
                    "port": forward.port(),
                    "destination": host_port(&spec.dest_host, spec.dest_port),
                })
            })
            .collect();
        print_json(&serde_json::json!({"host": host.id(), "forwards": forwards}))?;
    } else {
        for (forward, spec) in &running {
            println!(
                "listening on {} → {} through {}",
                forward.local_addr(),
                host_port(&spec.dest_host, spec.dest_port),
                host.id()
            );
        }
    }
    // Scripts read the ports from a pipe: the lines must not wait in a buffer.
    use std::io::Write as _;
    std::io::stdout().flush().map_err(|e| Error::io("forward", e))?;

    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Error::io("forward: SIGTERM handler", e))?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.map_err(|e| Error::io("forward: Ctrl-C handler", e))?,
        _ = terminate.recv() => {}
    }
    drop(running);
    host.close().await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(local_port: u16, dest_host: &str, dest_port: u16) -> Spec {
        Spec { local_port, dest_host: dest_host.into(), dest_port }
    }

    #[test]
    fn specs_parse() {
        assert_eq!(parse_spec("8080:localhost:80"), Ok(spec(8080, "localhost", 80)));
        assert_eq!(parse_spec("db.internal:5432"), Ok(spec(0, "db.internal", 5432)));
        assert_eq!(parse_spec("0:10.0.0.1:22"), Ok(spec(0, "10.0.0.1", 22)));
        assert_eq!(parse_spec("[::1]:22"), Ok(spec(0, "::1", 22)));
        assert_eq!(parse_spec("2222:[fe80::1]:22"), Ok(spec(2222, "fe80::1", 22)));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            ("", "expected [LPORT:]DEST:DPORT"),
            ("localhost", "expected [LPORT:]DEST:DPORT"),
            ("localhost:0", "DPORT `0`"),
            ("localhost:http", "DPORT `http`"),
            ("localhost:70000", "DPORT `70000`"),
            ("x:localhost:80", "LPORT `x`"),
            ("99999:localhost:80", "LPORT `99999`"),
            (":80", "DEST is empty"),
            ("1:2:3:4", "bracket an IPv6 DEST"),
            ("::1:22", "bracket an IPv6 DEST"),
            ("8080:80", "looks like a port"),
            ("1:[::1:22", "bracket an IPv6 DEST"),
            ("::1]:22", "unbalanced"),
            ("x[::1]:22", "expected [LPORT:]DEST:DPORT"),
        ];
        for (text, needle) in cases {
            let err = parse_spec(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
