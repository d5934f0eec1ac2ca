//! russh's client configuration from `ssh_options`: keepalives and
//! algorithm lists.

use russh::client;
use tether_core::Result;
use tether_core::raw::invalid_option;

use crate::options::{SshOptions, TABLE};

/// russh's configuration from the options: keepalives, algorithm lists.
pub(super) fn client_config(options: &SshOptions) -> Result<client::Config> {
    let mut config = client::Config {
        keepalive_interval: options.keepalive_interval()?,
        keepalive_max: options.keepalive_count_max as usize,
        // The socket is set up by us (see `connect_host`).
        nodelay: true,
        ..Default::default()
    };
    let mut preferred = russh::Preferred::default();
    if !options.encryption_algs.is_empty() {
        preferred.cipher =
            names(&options.encryption_algs, "encryption_algs", |n| russh::cipher::Name::try_from(n).ok())?.into();
    }
    if !options.kex_algs.is_empty() {
        let mut kex = names(&options.kex_algs, "kex_algs", |n| russh::kex::Name::try_from(n).ok())?;
        // The extension markers ride in the kex list: without them a custom
        // list would silently turn off strict KEX (the Terrapin fix) and
        // ext-info (server-sig-algs, so RSA keys get SHA-2 signatures).
        for marker in [russh::kex::EXTENSION_SUPPORT_AS_CLIENT, russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT] {
            if !kex.contains(&marker) {
                kex.push(marker);
            }
        }
        preferred.kex = kex.into();
    }
    if !options.server_host_key_algs.is_empty() {
        preferred.key =
            names(&options.server_host_key_algs, "server_host_key_algs", |n| russh::keys::Algorithm::new(n).ok())?
                .into();
    }
    if !options.compression_algs.is_empty() {
        preferred.compression =
            names(&options.compression_algs, "compression_algs", |n| russh::compression::Name::try_from(n).ok())?
                .into();
    }
    config.preferred = preferred;
    Ok(config)
}

fn names<T>(list: &[String], key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    list.iter()
        .map(|name| {
            parse(name)
                .ok_or_else(|| invalid_option(TABLE, &format!("{key}: `{name}` is not supported by this client")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_kex_stays_on_with_a_custom_kex_list() {
        let defaults = client_config(&SshOptions::default()).unwrap();
        assert!(defaults.preferred.kex.contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT));
        let options = SshOptions { kex_algs: vec!["curve25519-sha256".into()], ..Default::default() };
        let custom = client_config(&options).unwrap();
        assert_eq!(custom.preferred.kex[0], russh::kex::Name::try_from("curve25519-sha256").unwrap());
        assert!(custom.preferred.kex.contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT));
        assert!(custom.preferred.kex.contains(&russh::kex::EXTENSION_SUPPORT_AS_CLIENT));
        let err = client_config(&SshOptions { kex_algs: vec!["nope".into()], ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("kex_algs"), "{err}");
    }
}
