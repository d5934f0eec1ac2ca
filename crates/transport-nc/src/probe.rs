//! What a host's netcat is, and which helpers it has: asked once per
//! connection with one script, then cached.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tether_core::{Command, Error, ErrorKind, Result, Transport, quote};

use crate::options::{NcOptions, Strategy, Verify};

/// The marker that starts every line the transport's scripts report on.
pub(crate) const MARK: &str = "tether-nc:";

/// How much of `nc -h` is read, and quoted in an error.
const HELP_KEPT: usize = 4096;

/// The netcat implementations told apart by their help text. All four take
/// `-l -p PORT`; the traditional one silently picks a random port for
/// `-l PORT`, which is why that spelling is never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// OpenBSD's netcat (Debian's `netcat-openbsd`).
    OpenBsd,
    /// Hobbit's netcat 1.10 (`netcat-traditional`).
    Traditional,
    /// Nmap's `ncat`.
    Ncat,
    /// Busybox's `nc` applet.
    Busybox,
}

impl Flavour {
    /// The flavour `help` (what `nc -h` printed) describes, if any.
    pub fn from_help(help: &str) -> Option<Flavour> {
        if help.contains("OpenBSD netcat") {
            Some(Flavour::OpenBsd)
        } else if help.contains("[v1.10") {
            Some(Flavour::Traditional)
        } else if help.contains("Ncat") {
            Some(Flavour::Ncat)
        } else if help.contains("BusyBox") {
            Some(Flavour::Busybox)
        } else {
            None
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavour::OpenBsd => "OpenBSD netcat",
            Flavour::Traditional => "traditional netcat 1.10",
            Flavour::Ncat => "ncat",
            Flavour::Busybox => "busybox nc",
        })
    }
}

/// How listening ports are seen on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortTool {
    Ss,
    Netstat,
    ProcNet,
    /// Nothing to look with: ports are tried, and a listener that stays up
    /// a moment is taken as listening.
    Probe,
}

/// What a host offers the transport.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub flavour: Flavour,
    pub ports: PortTool,
    /// The shell command printing a SHA-256 of its stdin, when `verify` is
    /// `sha256`.
    pub hasher: Option<&'static str>,
    /// The netcat command line's words, quoted.
    pub nc: String,
}

/// SHA-256 tools by preference: OpenSSL's is several times faster than
/// coreutils' on CPUs with SHA instructions (1.1 s against 6.1 s for 1 GiB
/// here), and busybox's is the last resort.
const HASHERS: &[(&str, &str)] =
    &[("openssl", "openssl dgst -sha256"), ("sha256sum", "sha256sum"), ("busybox-sha256sum", "busybox sha256sum")];

/// The probing script: is the command there, what helpers exist, and what
/// does `nc -h` say.
fn script(options: &NcOptions) -> String {
    let words = options.exec_words();
    let nc = words.iter().map(|w| quote(w).into_owned()).collect::<Vec<_>>().join(" ");
    let first = quote(words[0]);
    let mut script = format!("if ! command -v {first} >/dev/null 2>&1; then echo '{MARK} missing'; exit 0; fi; ");
    let mut tools = vec![("ss", "ss -ltn"), ("netstat", "netstat -ltn")];
    if options.verify == Verify::Sha256 {
        tools.extend(HASHERS);
    }
    for (tool, test) in tools {
        script.push_str(&format!("{test} </dev/null >/dev/null 2>&1 && echo '{MARK} tool {tool}'; "));
    }
    script.push_str(&format!("[ -r /proc/net/tcp ] && echo '{MARK} tool proc'; "));
    script.push_str(&format!("echo '{MARK} help'; {nc} -h </dev/null 2>&1 | head -c {HELP_KEPT}; exit 0"));
    script
}

/// Asks the host; `Unsupported` for a netcat of no known flavour (quoting
/// its help), `NotFound` for none at all.
pub(crate) async fn probe(inner: &Arc<dyn Transport>, options: &NcOptions) -> Result<Probe> {
    let script = script(options);
    let limit = options.listener_timeout().max(Duration::from_secs(10));
    let command = Command::shell(&script).env("LC_ALL", "C").timeout(limit);
    let output = inner.exec(&command).await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (head, help) = match text.split_once(&format!("{MARK} help\n")) {
        Some((head, help)) => (head, help),
        None if text.contains(&format!("{MARK} missing")) => {
            return Err(Error::new(ErrorKind::NotFound, "nc").with_context(format!(
                "nc_options.exec_name `{}`: no such command on the host (install netcat, or name it)",
                options.exec_name
            )));
        }
        None => {
            return Err(Error::new(ErrorKind::Protocol, "nc")
                .with_context(format!("the probe of the host's netcat said {:?}", clip(&text))));
        }
    };
    let has = |tool: &str| head.lines().any(|l| l == format!("{MARK} tool {tool}"));
    let Some(flavour) = Flavour::from_help(help) else {
        return Err(Error::new(ErrorKind::Unsupported, "nc").with_context(format!(
            "`{} -h` names no netcat Tether knows (OpenBSD, traditional, ncat, busybox): {:?}",
            options.exec_name,
            clip(help.trim())
        )));
    };
    let ports = if has("ss") {
        PortTool::Ss
    } else if has("netstat") {
        PortTool::Netstat
    } else if has("proc") {
        PortTool::ProcNet
    } else {
        PortTool::Probe
    };
    let hasher = match options.verify {
        Verify::Sha256 => match HASHERS.iter().find(|(tool, _)| has(tool)) {
            Some((_, command)) => Some(*command),
            None => {
                return Err(Error::new(ErrorKind::Unsupported, "nc").with_context(
                    "verify is `sha256`, but the host has none of `openssl`, `sha256sum`, `busybox sha256sum`: \
                     install one, or set nc_options.verify to `size`",
                ));
            }
        },
        Verify::Size | Verify::None => None,
    };
    let nc = options.exec_words().iter().map(|w| quote(w).into_owned()).collect::<Vec<_>>().join(" ");
    tracing::debug!(%flavour, ?ports, ?hasher, custom_ports = options.port_strategy == Strategy::Custom, "nc probed");
    Ok(Probe { flavour, ports, hasher, nc })
}

/// At most 400 characters of `text`, for an error message.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(400) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_from_their_help() {
        let cases = [
            ("OpenBSD netcat (Debian patchlevel 1.219-1)\nusage: nc [-46CDdFhklNnrStUuvZz]", Flavour::OpenBsd),
            ("[v1.10-47]\nconnect to somewhere:\tnc [-options] hostname port[s]", Flavour::Traditional),
            ("Ncat 7.93 ( https://nmap.org/ncat )\nUsage: ncat [options]", Flavour::Ncat),
            ("nc: invalid option -- 'h'\nBusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call", Flavour::Busybox),
        ];
        for (help, flavour) in cases {
            assert_eq!(Flavour::from_help(help), Some(flavour), "{help}");
        }
        assert_eq!(Flavour::from_help("usage: socat"), None);
    }

    #[test]
    fn clipped_on_a_character() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(500);
        assert_eq!(clip(&long).chars().count(), 401);
    }
}
