//! Reading the replies of `stat` and `sha512sum`.
//!
//! Each parser returns a plain description of what was wrong; the caller
//! turns it into a protocol error naming the command, so a surprising reply
//! is reported, never a panic.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, SystemTime};

use crate::files::{DirEntry, FileKind, Metadata};

/// `stat -c` format of one record: kind, size, mode, uid, gid, mtime.
///
/// `%F` may contain spaces but never `|`, so `|` splits a record
/// unambiguously.
pub(crate) const STAT_FORMAT: &str = "%F|%s|%a|%u|%g|%Y";

/// The number of `|`-separated fields before the name in a [`STAT_FORMAT`]
/// or [`LIST_FORMAT`] record.
const FIELDS: usize = 6;

/// Maps `stat`'s `%F` (GNU coreutils and BusyBox spellings) to a kind.
pub(crate) fn kind_of(name: &str) -> FileKind {
    match name {
        "regular file" | "regular empty file" => FileKind::File,
        "directory" => FileKind::Dir,
        "symbolic link" => FileKind::Link,
        "character special file" | "character device" => FileKind::Chr,
        "block special file" | "block device" => FileKind::Blk,
        "fifo" | "named pipe" => FileKind::Fifo,
        "socket" => FileKind::Sock,
        _ => FileKind::Other,
    }
}

/// Permission bits from `%a` (octal, no prefix).
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o7777 && !text.is_empty() => Ok(mode),
        _ => Err(format!("`{text}` is not a permission mode")),
    }
}

fn parse_number<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{what} `{text}` is not a number"))
}

/// Seconds since the epoch (`%Y`, negative before 1970).
fn parse_mtime(text: &str) -> Result<SystemTime, String> {
    let seconds: i64 = parse_number("mtime", text)?;
    let offset = Duration::from_secs(seconds.unsigned_abs());
    let time = if seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    };
    time.ok_or_else(|| format!("mtime `{text}` is out of range"))
}

/// One [`STAT_FORMAT`] record, without a checksum.
pub(crate) fn parse_metadata(record: &str) -> Result<Metadata, String> {
    let fields: Vec<&str> = record.split('|').collect();
    let [kind, size, mode, uid, gid, mtime] = fields[..] else {
        return Err(format!("expected {FIELDS} `|`-separated fields in `{record}`"));
    };
    Ok(Metadata {
        kind: kind_of(kind),
        size: parse_number("size", size)?,
        mode: parse_mode(mode)?,
        uid: Some(parse_number("uid", uid)?),
        gid: Some(parse_number("gid", gid)?),
        mtime: Some(parse_mtime(mtime)?),
        sha512: None,
    })
}

/// The digest from a `sha512sum` line (`<128 hex digits>  -`).
pub(crate) fn parse_sha512(line: &str) -> Result<String, String> {
    let digest = line.split_whitespace().next().unwrap_or("");
    // GNU marks a line whose name needed escaping with a leading backslash.
    let digest = digest.strip_prefix('\\').unwrap_or(digest);
    if digest.len() == 128 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digest.to_ascii_lowercase())
    } else {
        Err(format!("`{line}` is not a SHA-512 line"))
    }
}

/// The reply of the stat script: one record line, then the `sha512sum`
/// line when `sha512` was asked for and the path is a regular file.
pub(crate) fn parse_stat_reply(stdout: &[u8], sha512: bool) -> Result<Metadata, String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "the reply is not UTF-8".to_string())?;
    let mut lines = text.lines();
    let mut metadata = parse_metadata(lines.next().ok_or("no output")?)?;
    let digest = lines.next();
    match (sha512 && metadata.kind == FileKind::File, digest) {
        (true, Some(line)) => metadata.sha512 = Some(parse_sha512(line)?),
        (true, None) => return Err("no SHA-512 line".into()),
        (false, Some(line)) => return Err(format!("unexpected line `{line}`")),
        (false, None) => {}
    }
    if let Some(extra) = lines.next() {
        return Err(format!("unexpected line `{extra}`"));
    }
    Ok(metadata)
}

/// `find -printf` format of one listing record, NUL-terminated: type
/// letter, size, mode, uid, gid, mtime with fraction, then the name, which
/// may hold anything but `/` and NUL.
pub(crate) const LIST_FORMAT: &str = "%y|%s|%m|%U|%G|%T@|%f\\0";

/// Maps `find`'s `%y` letter to a kind.
pub(crate) fn kind_of_letter(letter: &str) -> FileKind {
    match letter {
        "f" => FileKind::File,
        "d" => FileKind::Dir,
        "l" => FileKind::Link,
        "c" => FileKind::Chr,
        "b" => FileKind::Blk,
        "p" => FileKind::Fifo,
        "s" => FileKind::Sock,
        _ => FileKind::Other,
    }
}

/// The reply of the list script: [`LIST_FORMAT`] records. Sorted by name, as
/// [`FileTransfer::list`](crate::FileTransfer::list) promises.
pub(crate) fn parse_listing(stdout: &[u8]) -> Result<Vec<DirEntry>, String> {
    let Some(body) = stdout.strip_suffix(b"\0") else {
        return if stdout.is_empty() { Ok(Vec::new()) } else { Err("the listing does not end with NUL".into()) };
    };
    let mut entries = Vec::new();
    for record in body.split(|&b| b == 0) {
        // Names are bytes; only the fields before the name must be text.
        let mut fields = record.splitn(FIELDS + 1, |&b| b == b'|');
        let head: Vec<&[u8]> = fields.by_ref().take(FIELDS).collect();
        let name = fields.next().ok_or_else(|| format!("record `{}` has no name", String::from_utf8_lossy(record)))?;
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return Err(format!("`{}` is not an entry name", String::from_utf8_lossy(name)));
        }
        let shown = String::from_utf8_lossy(name);
        let head = head.iter().map(|f| std::str::from_utf8(f)).collect::<Result<Vec<&str>, _>>();
        let Ok([kind, size, mode, uid, gid, mtime]) = head.as_deref() else {
            return Err(format!("record of `{shown}` is malformed"));
        };
        // `%T@` has a fraction; whole seconds match what `stat` reports.
        let seconds = mtime.split('.').next().unwrap_or_default();
        let mut metadata = parse_metadata(&[*kind, *size, *mode, *uid, *gid, seconds].join("|"))?;
        metadata.kind = kind_of_letter(kind);
        entries.push(DirEntry { name: OsString::from_vec(name.to_vec()), metadata });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                       2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

    #[test]
    fn kinds() {
        assert_eq!(kind_of("regular empty file"), FileKind::File);
        assert_eq!(kind_of("directory"), FileKind::Dir);
        assert_eq!(kind_of("symbolic link"), FileKind::Link);
        assert_eq!(kind_of("character special file"), FileKind::Chr);
        assert_eq!(kind_of("weird file"), FileKind::Other);
    }

    #[test]
    fn stat_reply_with_and_without_digest() {
        let meta = parse_stat_reply(b"regular file|3|4755|1000|100|1700000000\n", false).unwrap();
        assert_eq!(
            (meta.kind, meta.size, meta.mode, meta.uid, meta.gid),
            (FileKind::File, 3, 0o4755, Some(1000), Some(100))
        );
        assert_eq!(meta.mtime, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        let reply = format!("regular file|3|644|0|0|-10\n{ABC}  -\n");
        let meta = parse_stat_reply(reply.as_bytes(), true).unwrap();
        assert_eq!(meta.sha512.as_deref(), Some(ABC));
        assert_eq!(meta.mtime, Some(SystemTime::UNIX_EPOCH - Duration::from_secs(10)));
        // Directories have no digest, even when asked.
        assert_eq!(parse_stat_reply(b"directory|4096|755|0|0|1\n", true).unwrap().sha512, None);
    }

    #[test]
    fn surprising_replies_are_errors() {
        for reply in [
            &b""[..],
            b"regular file|3|644|0|0\n",
            b"regular file|x|644|0|0|1\n",
            b"regular file|3|999|0|0|1\n",
            b"regular file|3|644|0|0|1|extra\n",
            b"regular file|3|644|0|0|1\nnoise\n",
            b"\xff\n",
        ] {
            assert!(parse_stat_reply(reply, false).is_err(), "{:?}", String::from_utf8_lossy(reply));
        }
        assert!(parse_stat_reply(b"regular file|3|644|0|0|1\n", true).is_err(), "a missing digest is an error");
        assert!(parse_stat_reply(b"regular file|3|644|0|0|1\nabc  -\n", true).is_err());
    }

    #[test]
    fn listing_is_sorted_and_keeps_odd_names() {
        let reply = b"f|1|4755|0|0|5.25|z|y\0d|4096|755|0|0|-2.5000000000|a\nb\0l|7|777|0|0|9|\xff\0";
        let entries = parse_listing(reply).unwrap();
        let names: Vec<Vec<u8>> = entries.iter().map(|e| e.name.clone().into_vec()).collect();
        assert_eq!(names, [&b"a\nb"[..], b"z|y", b"\xff"], "byte-exact, not replaced");
        assert_eq!(entries[0].metadata.kind, FileKind::Dir);
        assert_eq!(entries[0].metadata.mtime, Some(SystemTime::UNIX_EPOCH - Duration::from_secs(2)));
        assert_eq!((entries[1].metadata.kind, entries[1].metadata.mode), (FileKind::File, 0o4755));
        assert_eq!(entries[2].metadata.kind, FileKind::Link);
        assert_eq!(parse_listing(b"").unwrap(), Vec::new());
        assert!(parse_listing(b"f|1|644|0|0|5|z").is_err(), "unterminated");
        assert!(parse_listing(b"f|1|644|0|0|5\0").is_err(), "nameless");
        assert!(parse_listing(b"f|1|644|0|0|5|..\0").is_err());
        assert!(parse_listing(b"f|x|644|0|0|5|a\0").is_err());
        assert!(parse_listing(b"f|\xff|644|0|0|5|a\0").is_err());
    }
}
