//! Ad-hoc hosts given as URLs: `ssh://user@host:port/`, `local://`, `mem://name`.

use tether_core::{Error, ErrorKind, Result};

/// The parts of a host URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUrl {
    /// The scheme.
    pub scheme: String,
    /// The user, if given.
    pub user: Option<String>,
    /// The password, if given (discouraged: it shows in process listings).
    pub password: Option<String>,
    /// The host name or address (brackets removed from IPv6).
    pub host: Option<String>,
    /// The port, if given.
    pub port: Option<u16>,
    /// The URL without its password: what the host is called in messages.
    pub display: String,
}

/// Parses `text` if it looks like a URL (`scheme://…`); `Ok(None)` when it
/// does not, so it can be taken as an inventory id instead.
pub fn parse_host_url(text: &str) -> Result<Option<HostUrl>> {
    if !text.contains("://") {
        return Ok(None);
    }
    let bad =
        |why: String| Error::new(ErrorKind::InvalidConfig, "parse host url").with_context(format!("`{text}`: {why}"));
    let url = url::Url::parse(text).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a host URL has no path, query or fragment".into()));
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    let mut display = url.clone();
    let _ = display.set_password(None);
    let display = display.as_str().trim_end_matches('/').to_string();
    let host = url.host_str().filter(|h| !h.is_empty()).map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    Ok(Some(HostUrl {
        scheme: url.scheme().to_string(),
        user: Some(url.username()).filter(|u| !u.is_empty()).map(decode),
        password: url.password().map(decode),
        host: host.map(str::to_string),
        port: url.port(),
        display,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let u = parse_host_url("ssh://root@10.0.0.5:2222/").unwrap().unwrap();
        assert_eq!(
            u,
            HostUrl {
                scheme: "ssh".into(),
                user: Some("root".into()),
                password: None,
                host: Some("10.0.0.5".into()),
                port: Some(2222),
                display: "ssh://root@10.0.0.5:2222".into(),
            }
        );
        assert_eq!(parse_host_url("local://").unwrap().unwrap().host, None);
        assert_eq!(parse_host_url("mem://dut").unwrap().unwrap().host.as_deref(), Some("dut"));
        assert_eq!(parse_host_url("ssh://[::1]:22").unwrap().unwrap().host.as_deref(), Some("::1"));
        assert_eq!(parse_host_url("dut1").unwrap(), None);
        assert_eq!(parse_host_url("ssh://u:pw@h").unwrap().unwrap().display, "ssh://u@h");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in ["ssh://host:99999/", "ssh://host/some/path", "ssh://[::1/"] {
            let err = parse_host_url(bad).unwrap_err();
            assert!(err.to_string().starts_with(&format!("parse host url: invalid configuration: `{bad}`")), "{err}");
        }
    }
}
