//! OpenSSH `known_hosts` files: lookup (plain, `[host]:port`, comma lists,
//! wildcards, negations, hashed `|1|salt|hash` entries) and appending.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The server's key as OpenSSH writes it: algorithm name and wire blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostKey {
    pub(crate) algorithm: String,
    pub(crate) blob: Vec<u8>,
}

impl HostKey {
    /// `ALGORITHM BASE64`, the key part of a `known_hosts` line.
    pub(crate) fn openssh(&self) -> String {
        format!("{} {}", self.algorithm, B64.encode(&self.blob))
    }
}

/// What the files say about a host and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line records this very key.
    Trusted,
    /// A line records another key of the same algorithm (or revokes this one).
    Mismatch { file: PathBuf, line: usize, revoked: bool },
    /// No line records a key of this algorithm for the host.
    Unknown,
}

/// The name OpenSSH looks up: `host`, or `[host]:port` off port 22.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_string() } else { format!("[{host}]:{port}") }
}

/// `~/x` with the home directory in place of `~`.
pub(crate) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Checks `key` for `name` against `files` in order; missing files count as
/// empty (OpenSSH's behaviour), unreadable ones are errors.
pub(crate) fn check(files: &[PathBuf], name: &str, key: &HostKey) -> std::io::Result<Verdict> {
    let mut mismatch = None;
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for (index, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else { continue };
            if entry.marker == Some("@cert-authority") || !host_matches(entry.hosts, name) {
                continue;
            }
            let same_key = entry.algorithm == key.algorithm && B64.decode(entry.key).ok().as_deref() == Some(&key.blob);
            let here = || (file.clone(), index + 1);
            if entry.marker == Some("@revoked") {
                if same_key {
                    let (file, line) = here();
                    return Ok(Verdict::Mismatch { file, line, revoked: true });
                }
                continue;
            }
            if same_key {
                return Ok(Verdict::Trusted);
            }
            if entry.algorithm == key.algorithm && mismatch.is_none() {
                let (file, line) = here();
                mismatch = Some(Verdict::Mismatch { file, line, revoked: false });
            }
        }
    }
    Ok(mismatch.unwrap_or(Verdict::Unknown))
}

/// Appends `name KEY` to `file`, creating it (and its directory) if needed.
pub(crate) fn append(file: &Path, name: &str, key: &HostKey) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let needs_newline = match std::fs::read(file) {
        Ok(existing) => !existing.is_empty() && !existing.ends_with(b"\n"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let mut out = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    let line = format!("{}{name} {}\n", if needs_newline { "\n" } else { "" }, key.openssh());
    out.write_all(line.as_bytes())
}

struct Entry<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    algorithm: &'a str,
    key: &'a str,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut words = line.split_whitespace();
    let mut first = words.next()?;
    let marker = if first.starts_with('@') {
        let marker = first;
        first = words.next()?;
        Some(marker)
    } else {
        None
    };
    Some(Entry { marker, hosts: first, algorithm: words.next()?, key: words.next()? })
}

/// OpenSSH's rule: some pattern matches and no negated pattern does.
fn host_matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, name) => return false,
            Some(_) => {}
            None if glob(pattern, name) => matched = true,
            None => {}
        }
    }
    matched
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else { return false };
    let (Ok(salt), Ok(hash)) = (B64.decode(salt), B64.decode(hash)) else { return false };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else { return false };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, case-insensitive as host names are.
fn glob(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let name: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut p, mut n, mut star, mut mark) = (0, 0, None, 0);
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some(p);
                mark = n;
                p += 1;
            }
            Some(c) if *c == '?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some(s) => {
                    p = s + 1;
                    mark += 1;
                    n = mark;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(blob: &[u8]) -> HostKey {
        HostKey { algorithm: "ssh-ed25519".into(), blob: blob.to_vec() }
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        format!("|1|{}|{}", B64.encode(salt), B64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn finds_plain_bracketed_listed_and_hashed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let good = key(b"good");
        let text = format!(
            "# comment\n\nother.example {k}\nalpha,[10.0.0.1]:2222 {k}\n{h} {k}\n*.lab,!bad.lab {k}\n",
            k = good.openssh(),
            h = hashed("[hashed.example]:2200", b"0123456789abcdefghij"),
        );
        std::fs::write(&file, text).unwrap();
        let files = [file.clone()];
        for name in ["alpha", "[10.0.0.1]:2222", "[hashed.example]:2200", "x.lab"] {
            assert_eq!(check(&files, name, &good).unwrap(), Verdict::Trusted, "{name}");
        }
        for name in ["10.0.0.1", "hashed.example", "bad.lab", "nobody"] {
            assert_eq!(check(&files, name, &good).unwrap(), Verdict::Unknown, "{name}");
        }
        assert_eq!(
            check(&files, "alpha", &key(b"evil")).unwrap(),
            Verdict::Mismatch { file: file.clone(), line: 4, revoked: false }
        );
        // Another algorithm for the host is not a mismatch: that key is simply unknown.
        let rsa = HostKey { algorithm: "ssh-rsa".into(), blob: b"rsa".to_vec() };
        assert_eq!(check(&files, "alpha", &rsa).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn revoked_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kh");
        std::fs::write(&file, format!("@revoked * {}\n", key(b"bad").openssh())).unwrap();
        let files = [dir.path().join("missing"), file.clone()];
        assert_eq!(
            check(&files, "h", &key(b"bad")).unwrap(),
            Verdict::Mismatch { file: file.clone(), line: 1, revoked: true }
        );
        assert_eq!(check(&files, "h", &key(b"ok")).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn append_then_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_hosts");
        append(&file, "[h]:2022", &key(b"k")).unwrap();
        append(&file, "g", &key(b"k")).unwrap();
        assert_eq!(check(std::slice::from_ref(&file), "[h]:2022", &key(b"k")).unwrap(), Verdict::Trusted);
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
        assert_eq!(lookup_name("h", 22), "h");
        assert_eq!(lookup_name("h", 2022), "[h]:2022");
    }
}
