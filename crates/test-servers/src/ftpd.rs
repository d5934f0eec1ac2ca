//! What the private FTP servers ([`Vsftpd`](crate::Vsftpd),
//! [`Proftpd`](crate::Proftpd)) share: their login, its home and scratch
//! directories, the passive port range, and waiting for the `220` greeting.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher as _};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::HarnessError;
use crate::netns::{self, Namespace};
use crate::sshd::{read_log, read_to_string, set_mode};

/// The FTP login the harness adds (for its server only).
pub(crate) const USER: &str = "tetherftp";

/// The login's uid and gid are the first id from here that the real
/// `/etc/passwd` and `/etc/group` do not use.
pub(crate) const FIRST_ID: u32 = 61000;

/// How long a server gets to greet a connection with `220`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a port is tried again when another process took it between the
/// harness picking it and the server binding it.
pub(crate) const BIND_ATTEMPTS: usize = 5;

/// The passive ports: a range of this many ports, starting at random in
/// [`PASV_FIRST`]`..`[`PASV_END`], so servers running side by side rarely
/// share one (and both servers try another port of their range when they do).
pub(crate) const PASV_PORTS: u16 = 64;
pub(crate) const PASV_FIRST: u16 = 40000;
pub(crate) const PASV_END: u16 = 60000;

/// A new random passive range, as `(first, last)` (both included).
pub(crate) fn passive_range() -> (u16, u16) {
    let first = PASV_FIRST + u16::try_from(random_u64() % u64::from(PASV_END - PASV_FIRST - PASV_PORTS)).unwrap_or(0);
    (first, first + PASV_PORTS - 1)
}

/// The first id from [`FIRST_ID`] that is neither a uid in `/etc/passwd` nor
/// a gid in `/etc/group`, as `(uid, gid)`.
pub(crate) fn free_ids() -> Result<(u32, u32), HarnessError> {
    let ids = |path: &str| -> Result<BTreeSet<u32>, HarnessError> {
        Ok(read_to_string(Path::new(path))?
            .lines()
            .filter(|line| line.split(':').next() != Some(USER))
            .filter_map(|line| line.split(':').nth(2)?.parse().ok())
            .collect())
    };
    let used: BTreeSet<u32> = ids("/etc/passwd")?.union(&ids("/etc/group")?).copied().collect();
    let id = (FIRST_ID..u32::MAX)
        .find(|id| !used.contains(id))
        .ok_or_else(|| HarnessError::Config(format!("no free id from {FIRST_ID} in /etc/passwd and /etc/group")))?;
    Ok((id, id))
}

/// The login's home: a temporary directory of its own (named `prefix…`),
/// mode 0755, owned by `uid`, under directories everybody may enter.
pub(crate) fn make_home(prefix: &str, uid: u32, gid: u32) -> Result<TempDir, HarnessError> {
    let home = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| HarnessError::io("creating the FTP login's home directory", e))?;
    let path = home.path();
    if path.to_string_lossy().contains([':', '\n']) {
        return Err(HarnessError::Config(format!(
            "the home directory {} cannot go into a passwd file; set TMPDIR to a plain directory",
            path.display()
        )));
    }
    for parent in path.ancestors().skip(1) {
        let mode = fs::metadata(parent)
            .map_err(|e| HarnessError::io(format!("reading the mode of {}", parent.display()), e))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(HarnessError::Config(format!(
                "the FTP login cannot enter {} (mode {mode:o}); set TMPDIR to a directory everybody can enter",
                parent.display()
            )));
        }
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| HarnessError::io(format!("changing the owner of {}", path.display()), e))?;
    set_mode(path, 0o755)?;
    Ok(home)
}

/// A new empty directory `home/scratch-N`, owned by `uid`:`gid`, mode 0755,
/// with `N` the first number from `next` not taken (an FTP client may have
/// made one).
///
/// # Panics
///
/// When the directory cannot be created (a full disk, say).
pub(crate) fn scratch_dir(home: &Path, next: &AtomicU32, uid: u32, gid: u32) -> PathBuf {
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let dir = home.join(format!("scratch-{n}"));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            // Made by an FTP client.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
        let owned = std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| HarnessError::io(format!("changing the owner of {}", dir.display()), e))
            .and_then(|()| set_mode(&dir, 0o755));
        if let Err(e) = owned {
            panic!("{e}");
        }
        return dir;
    }
}

/// `/etc/passwd` or `/etc/group` text without any entry of [`USER`], plus
/// `entry`.
pub(crate) fn with_entry(text: &str, entry: &str) -> String {
    let mut out: String =
        text.lines().filter(|line| line.split(':').next() != Some(USER)).flat_map(|line| [line, "\n"]).collect();
    out.push_str(entry);
    out.push('\n');
    out
}

/// 64 random bits: std seeds the keys of each `RandomState` at random.
pub(crate) fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// The server's log file, then what it wrote to stderr, if anything.
pub(crate) fn server_log(server: &str, log_path: &Path, stderr_path: &Path) -> String {
    let mut log = read_log(log_path);
    let stderr = read_log(stderr_path);
    if !stderr.is_empty() {
        log.push_str(&format!("\n--- {server}'s stderr ---\n"));
        log.push_str(&stderr);
    }
    log
}

/// How [`wait_ready`] tells its server: the server's name for messages, its
/// log for errors, and whether a greeting came from this server rather than
/// another one that took the port.
pub(crate) struct Readiness<'a> {
    pub(crate) server: &'a str,
    pub(crate) log: &'a dyn Fn() -> String,
    pub(crate) greeted_by_us: &'a dyn Fn(&str) -> bool,
    /// Why a `220` from another server may have been seen, for the timeout error.
    pub(crate) elsewhere_hint: &'a str,
}

/// Waits until a connection to `addr` (made from inside `netns`, if given)
/// gets a line starting with `220` that `ready.greeted_by_us` accepts.
pub(crate) fn wait_ready(
    child: &mut Option<Child>,
    addr: SocketAddrV4,
    netns: Option<&Namespace>,
    ready: &Readiness<'_>,
) -> Result<(), HarnessError> {
    let server = ready.server;
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = SocketAddr::V4(addr);
    let failed = |reason: String| HarnessError::Start { reason, log: (ready.log)() };
    let mut greeted_elsewhere = false;
    loop {
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => {}
            Some(Ok(Some(status))) => {
                *child = None;
                return Err(failed(format!("{server} exited ({status})")));
            }
            Some(Err(e)) => return Err(HarnessError::io(format!("checking on {server}"), e)),
            None => return Err(failed(format!("{server} was already stopped"))),
        }
        let stream = match netns {
            Some(ns) => netns::connect_from(ns, addr, Duration::from_millis(500)),
            None => TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        };
        // An error is the server closing the connection (exiting) or being
        // slow: look again.
        if let Ok(line) = stream.and_then(read_greeting) {
            if !line.starts_with("220") {
                return Err(failed(format!("unexpected greeting {line:?} from {addr}")));
            }
            if (ready.greeted_by_us)(&line) {
                return Ok(());
            }
            greeted_elsewhere = true;
        }
        if Instant::now() >= deadline {
            let reason = if greeted_elsewhere {
                format!("{addr} answers 220 but not as this {server}: {}", ready.elsewhere_hint)
            } else {
                format!("no 220 greeting from {addr} after {} s", START_TIMEOUT.as_secs())
            };
            return Err(failed(reason));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The first line the server sends; then `QUIT`, so the session ends at once.
fn read_greeting(stream: TcpStream) -> io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the greeting"));
    }
    let _ = (&stream).write_all(b"QUIT\r\n");
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_replaced_or_added() {
        let passwd = "root:x:0:0::/root:/bin/sh\ntetherftp:x:5:5::/old:/bin/sh\nnobody:x:65534:65534::/:/bin/false";
        assert_eq!(
            with_entry(passwd, "tetherftp:x:61000:61000::/h:/bin/sh"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\ntetherftp:x:61000:61000::/h:/bin/sh\n"
        );
        // A user whose name starts with the login's is kept.
        assert!(with_entry("tetherftpx:x:1:1::/:/bin/sh\n", "e").starts_with("tetherftpx:"));
    }

    #[test]
    fn passive_ranges_stay_in_bounds() {
        for _ in 0..200 {
            let (first, last) = passive_range();
            assert!(first >= PASV_FIRST && last < PASV_END && last - first + 1 == PASV_PORTS, "{first}..={last}");
        }
    }
}
