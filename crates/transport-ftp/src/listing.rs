//! Reading directory listings: RFC 3659's machine-readable `MLSD`/`MLST`
//! facts, and the human-readable `LIST` output of Unix (`ls -l`) and DOS
//! (IIS) servers, which is all most embedded servers offer.
//!
//! Written by hand rather than with suppaftp's `list` module: its patterns
//! trim the spaces a name may begin or end with, and its results carry the
//! library's types.

use std::time::{Duration, SystemTime};

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use tether_core::{FileKind, Metadata};

/// One parsed listing line: the entry's name, what it is, and where a link
/// points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) metadata: Metadata,
    /// The target of a symbolic link, as `ls -l` shows it after ` -> `.
    pub(crate) link_target: Option<String>,
}

/// Parses one line of `LIST` output (Unix or DOS style); `None` for lines
/// that describe no entry (`total 12`, blank lines, unknown formats).
pub(crate) fn parse_list_line(line: &str, now: SystemTime) -> Option<Entry> {
    parse_unix(line, now).or_else(|| parse_dos(line))
}

/// Parses one `MLSD` line or the fact line of an `MLST` reply:
/// `type=file;size=5;modify=20240102030405;UNIX.mode=0644; name`.
pub(crate) fn parse_mlsx_line(line: &str) -> Option<Entry> {
    let line = line.strip_prefix(' ').unwrap_or(line);
    let (facts, name) = line.split_once(' ')?;
    let mut kind = None;
    let mut size = 0;
    let mut mtime = None;
    let mut mode = None;
    let mut link_target = None;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (key, value) = fact.split_once('=')?;
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                // ProFTPD's `OS.unix=slink:<target>` names the link's target.
                if let Some(target) =
                    value.get(..14).filter(|p| p.eq_ignore_ascii_case("os.unix=slink:")).map(|_| &value[14..])
                {
                    link_target = Some(target.to_string()).filter(|t| !t.is_empty());
                }
                kind = Some(match value.to_ascii_lowercase().as_str() {
                    "file" => FileKind::File,
                    "dir" | "cdir" | "pdir" => FileKind::Dir,
                    "os.unix=symlink" | "os.unix=slink" => FileKind::Link,
                    _ if value.to_ascii_lowercase().starts_with("os.unix=slink") => FileKind::Link,
                    _ => FileKind::Other,
                });
                if matches!(value.to_ascii_lowercase().as_str(), "cdir" | "pdir") {
                    return None;
                }
            }
            "size" | "sizd" => size = value.parse().ok()?,
            "modify" => mtime = parse_timeval(value),
            "unix.mode" => mode = u32::from_str_radix(value, 8).ok(),
            _ => {}
        }
    }
    let kind = kind?;
    let mode = mode.unwrap_or(match kind {
        FileKind::Dir => 0o755,
        FileKind::Link => 0o777,
        _ => 0o644,
    });
    Some(Entry {
        name: name.to_string(),
        metadata: Metadata { kind, size, mode, uid: None, gid: None, mtime, sha512: None },
        link_target,
    })
}

/// An RFC 3659 time-val (`YYYYMMDDHHMMSS[.sss]`, UTC), as `MDTM` and
/// `modify=` give it.
pub(crate) fn parse_timeval(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let time = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    let seconds = u64::try_from(time.and_utc().timestamp()).ok()?;
    let mut at = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    if !fraction.is_empty() && fraction.len() <= 9 && fraction.bytes().all(|b| b.is_ascii_digit()) {
        let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
        at += Duration::from_nanos(u64::from(nanos));
    }
    Some(at)
}

/// A time as an RFC 3659 time-val (whole seconds, UTC), for setting it.
pub(crate) fn format_timeval(time: SystemTime) -> Option<String> {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let at = chrono::DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0)?;
    Some(at.format("%Y%m%d%H%M%S").to_string())
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// `drwxr-xr-x 2 owner group 4096 Dec 07 17:50 name`, with or without the
/// group column. The name is everything after the date and one space, so
/// names that begin or end with spaces keep them.
fn parse_unix(line: &str, now: SystemTime) -> Option<Entry> {
    let permissions = line.get(..10)?;
    let (kind, mode) = parse_permissions(permissions)?;
    let tokens = tokens_with_offsets(line, 9);
    // The date is a month name followed by a day and a time or year; the
    // size is just before it. Owner and group come between, one or two, and
    // may themselves look like a month: the first reading that parses wins.
    let (size, mtime, rest) = (3..tokens.len().saturating_sub(2)).find_map(|month_at| {
        let month = month_number(tokens[month_at].1)?;
        let size: u64 = tokens[month_at - 1].1.parse().ok()?;
        let day: u32 = tokens[month_at + 1].1.parse().ok()?;
        let (clock_start, clock) = tokens[month_at + 2];
        let mtime = unix_listing_time(month, day, clock, now)?;
        let rest = line.get(clock_start + clock.len() + 1..).filter(|rest| !rest.is_empty())?;
        Some((size, Some(mtime), rest))
    })?;
    let (name, link_target) = match kind {
        FileKind::Link => match rest.split_once(" -> ") {
            Some((name, target)) => (name, Some(target.to_string())),
            None => (rest, None),
        },
        _ => (rest, None),
    };
    if name == "." || name == ".." {
        return None;
    }
    Some(Entry {
        name: name.to_string(),
        metadata: Metadata { kind, size, mode, uid: None, gid: None, mtime, sha512: None },
        link_target,
    })
}

/// The first `count` whitespace-separated tokens of `line`, with where each starts.
fn tokens_with_offsets(line: &str, count: usize) -> Vec<(usize, &str)> {
    let mut tokens = Vec::with_capacity(count);
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c == ' ' || c == '\t', start) {
            (true, Some(s)) => {
                tokens.push((s, &line[s..i]));
                start = None;
                if tokens.len() == count {
                    return tokens;
                }
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push((s, &line[s..]));
    }
    tokens
}

fn month_number(token: &str) -> Option<u32> {
    let lower = token.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == lower).map(|i| i as u32 + 1)
}

/// `ls -l` shows `HH:MM` for files from the last six months, without the
/// year: the year is the one that puts the date no later than tomorrow.
fn unix_listing_time(month: u32, day: u32, clock: &str, now: SystemTime) -> Option<SystemTime> {
    let now_utc = chrono::DateTime::<chrono::Utc>::from(now);
    let (year, time) = match clock.split_once(':') {
        Some((h, m)) => {
            let time = NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)?;
            let this_year = NaiveDate::from_ymd_opt(now_utc.year(), month, day)?.and_time(time);
            let year = if this_year.and_utc() > now_utc + chrono::Duration::days(1) {
                now_utc.year() - 1
            } else {
                now_utc.year()
            };
            (year, time)
        }
        None => (clock.parse().ok()?, NaiveTime::MIN),
    };
    let at = NaiveDate::from_ymd_opt(year, month, day)?.and_time(time).and_utc().timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).ok()?))
}

/// `-rwsr-x---` as a kind and permission bits.
fn parse_permissions(text: &str) -> Option<(FileKind, u32)> {
    let bytes = text.as_bytes();
    let kind = match bytes[0] {
        b'-' => FileKind::File,
        b'd' => FileKind::Dir,
        b'l' => FileKind::Link,
        b'c' => FileKind::Chr,
        b'b' => FileKind::Blk,
        b'p' => FileKind::Fifo,
        b's' => FileKind::Sock,
        _ => return None,
    };
    let mut mode = 0u32;
    // (read, write, execute) for owner, group and others, with the special
    // bit each execute column can show.
    for (who, special) in [(0usize, 0o4000u32), (1, 0o2000), (2, 0o1000)] {
        let shift = 6 - 3 * who as u32;
        let [r, w, x] = [bytes[1 + 3 * who], bytes[2 + 3 * who], bytes[3 + 3 * who]];
        if !matches!(r, b'r' | b'-') || !matches!(w, b'w' | b'-') {
            return None;
        }
        if r == b'r' {
            mode |= 4 << shift;
        }
        if w == b'w' {
            mode |= 2 << shift;
        }
        match x {
            b'x' => mode |= 1 << shift,
            b's' | b't' => mode |= (1 << shift) | special,
            b'S' | b'T' => mode |= special,
            b'-' => {}
            _ => return None,
        }
    }
    Some((kind, mode))
}

/// `12-07-26  05:50PM       <DIR>          name` or `… 1234 name`.
fn parse_dos(line: &str) -> Option<Entry> {
    let tokens = tokens_with_offsets(line, 3);
    if tokens.len() < 3 {
        return None;
    }
    let date = parse_dos_date(tokens[0].1)?;
    let time = parse_dos_time(tokens[1].1)?;
    let (size_start, size_token) = tokens[2];
    let (kind, size) = if size_token.eq_ignore_ascii_case("<DIR>") {
        (FileKind::Dir, 0)
    } else {
        (FileKind::File, size_token.replace(',', "").parse().ok()?)
    };
    let name = line.get(size_start + size_token.len()..)?.trim_start_matches(' ');
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    let at = date.and_time(time).and_utc().timestamp();
    let mode = if kind == FileKind::Dir { 0o755 } else { 0o644 };
    Some(Entry {
        name: name.to_string(),
        metadata: Metadata {
            kind,
            size,
            mode,
            uid: None,
            gid: None,
            mtime: u64::try_from(at).ok().map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            sha512: None,
        },
        link_target: None,
    })
}

fn parse_dos_date(text: &str) -> Option<NaiveDate> {
    let mut parts = text.split('-');
    let (month, day, year) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let year: i32 = match year.len() {
        2 => {
            let short: i32 = year.parse().ok()?;
            if short < 70 { 2000 + short } else { 1900 + short }
        }
        4 => year.parse().ok()?,
        _ => return None,
    };
    NaiveDate::from_ymd_opt(year, month, day)
}

fn parse_dos_time(text: &str) -> Option<NaiveTime> {
    let upper = text.to_ascii_uppercase();
    let (clock, pm) = match (upper.strip_suffix("PM"), upper.strip_suffix("AM")) {
        (Some(clock), _) => (clock.to_string(), Some(true)),
        (_, Some(clock)) => (clock.to_string(), Some(false)),
        _ => (upper, None),
    };
    let (h, m) = clock.split_once(':')?;
    let mut hour: u32 = h.parse().ok()?;
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    NaiveTime::from_hms_opt(hour, m.parse().ok()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> SystemTime {
        let t = NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, s).unwrap().and_utc().timestamp();
        SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64)
    }

    #[test]
    fn unix_lines_with_and_without_group() {
        let now = at(2026, 12, 7, 12, 0, 0);
        let e = parse_list_line("-rw-r--r--    1 1000     1000            5 Dec 07 03:04 hello.txt", now).unwrap();
        assert_eq!(
            (e.name.as_str(), e.metadata.kind, e.metadata.size, e.metadata.mode),
            ("hello.txt", FileKind::File, 5, 0o644)
        );
        assert_eq!(e.metadata.mtime, Some(at(2026, 12, 7, 3, 4, 0)));
        let e = parse_list_line("drwxr-x---   2 owner     4096 Jan 02  2020 some dir", now).unwrap();
        assert_eq!((e.name.as_str(), e.metadata.kind, e.metadata.mode), ("some dir", FileKind::Dir, 0o750));
        assert_eq!(e.metadata.mtime, Some(at(2020, 1, 2, 0, 0, 0)));
        // A date later than tomorrow without a year is last year's.
        let e = parse_list_line("-rw-r--r-- 1 0 0 1 Dec 25 10:00 x", now).unwrap();
        assert_eq!(e.metadata.mtime, Some(at(2025, 12, 25, 10, 0, 0)));
    }

    #[test]
    fn unix_names_keep_their_spaces_and_links_their_targets() {
        let now = at(2026, 12, 7, 12, 0, 0);
        let e = parse_list_line("-rw-r--r-- 1 0 0 1 Dec 07 10:00  leading and trailing ", now).unwrap();
        assert_eq!(e.name, " leading and trailing ");
        let e = parse_list_line("lrwxrwxrwx 1 0 0 11 Dec 07 10:00 link -> link-target", now).unwrap();
        assert_eq!(
            (e.name.as_str(), e.metadata.kind, e.link_target.as_deref()),
            ("link", FileKind::Link, Some("link-target"))
        );
        let e = parse_list_line("-rwsr-x--T 1 0 0 1 Dec 07 10:00 Dec 07 10:00 odd", now).unwrap();
        assert_eq!((e.name.as_str(), e.metadata.mode), ("Dec 07 10:00 odd", 0o5750));
        assert!(parse_list_line("total 12", now).is_none());
        assert!(parse_list_line("drwxr-xr-x 2 0 0 4096 Dec 07 10:00 .", now).is_none());
        assert!(parse_list_line("-rw-r--r-- 1 0 0 notasize Dec 07 10:00 x", now).is_none());
    }

    #[test]
    fn dos_lines() {
        let now = SystemTime::now();
        let e = parse_list_line("12-07-26  05:50PM       <DIR>          My Documents", now).unwrap();
        assert_eq!((e.name.as_str(), e.metadata.kind), ("My Documents", FileKind::Dir));
        assert_eq!(e.metadata.mtime, Some(at(2026, 12, 7, 17, 50, 0)));
        let e = parse_list_line("01-02-1999  12:05AM              1,234 report.txt", now).unwrap();
        assert_eq!((e.name.as_str(), e.metadata.size), ("report.txt", 1234));
        assert_eq!(e.metadata.mtime, Some(at(1999, 1, 2, 0, 5, 0)));
    }

    #[test]
    fn mlsx_facts() {
        let e = parse_mlsx_line("type=file;size=5;modify=20240102030405.5;UNIX.mode=0640; a b ").unwrap();
        assert_eq!(
            (e.name.as_str(), e.metadata.kind, e.metadata.size, e.metadata.mode),
            ("a b ", FileKind::File, 5, 0o640)
        );
        assert_eq!(e.metadata.mtime, Some(at(2024, 1, 2, 3, 4, 5) + Duration::from_millis(500)));
        assert_eq!(parse_mlsx_line("type=dir;modify=20240102030405; sub").unwrap().metadata.kind, FileKind::Dir);
        let link = parse_mlsx_line("type=OS.unix=slink:/Abs/Target;UNIX.mode=0777; l").unwrap();
        assert_eq!((link.metadata.kind, link.link_target.as_deref()), (FileKind::Link, Some("/Abs/Target")));
        assert!(parse_mlsx_line("type=cdir; .").is_none());
        assert!(parse_mlsx_line("garbage").is_none());
    }

    proptest::proptest! {
        /// A listing is the server's text: whatever it holds, parsing ends
        /// in an entry or nothing, never a panic.
        #[test]
        fn any_line_parses_or_is_skipped(line in "\\PC{0,120}", prefix in "[-dlcbps][-rwxsStT]{9}") {
            let now = SystemTime::now();
            let _ = parse_list_line(&line, now);
            let _ = parse_list_line(&format!("{prefix}{line}"), now);
            let _ = parse_list_line(&format!("{prefix} 1 0 0 12 Dec 07 10:00{line}"), now);
            let _ = parse_mlsx_line(&line);
            let _ = parse_timeval(&line);
        }

        /// A Unix line's name comes back exactly, whatever spaces it holds.
        #[test]
        fn unix_names_survive(name in "[^\\r\\n/]{1,40}") {
            prop_assume!(name != "." && name != "..");
            let line = format!("-rw-r--r-- 1 0 0 12 Dec 07 10:00 {name}");
            let entry = parse_list_line(&line, SystemTime::now()).unwrap();
            prop_assert_eq!(entry.name, name);
        }
    }

    #[test]
    fn timevals_round_trip() {
        let t = at(2009, 2, 13, 23, 31, 30);
        assert_eq!(format_timeval(t).as_deref(), Some("20090213233130"));
        assert_eq!(parse_timeval("20090213233130"), Some(t));
        assert_eq!(parse_timeval("2009021323313"), None);
    }
}
