//! A private ProFTPD, for a login of its own.
//!
//! Unlike vsftpd, ProFTPD answers `MLSD`, `MLST` and `MFMT` (its built-in
//! `mod_facts`), so clients take their machine-readable listing path.
//!
//! The login, `tetherftp`, exists only for the server: ProFTPD reads it from
//! a private user file (`AuthUserFile`, `AuthOrder mod_auth_file.c`), so
//! neither PAM nor the system's `/etc/passwd` is involved, and nothing
//! outside the server's temporary directory is read for it or written.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU32;

use tempfile::TempDir;

use crate::ftpd::{BIND_ATTEMPTS, Readiness, USER, free_ids, make_home, passive_range, random_u64, wait_ready};
use crate::sshd::{free_port, hash_password, kill_and_reap, read_log, write_file};
use crate::{HarnessError, process, programs};

/// The Debian package of `/usr/sbin/proftpd` (`proftpd-basic` is only a
/// transitional package that pulls it in).
const PACKAGE: &str = "proftpd-core";

/// Where `scripts/test` unpacks [`PACKAGE`] when ProFTPD is not installed:
/// the package cannot be installed next to vsftpd's (both provide and
/// conflict with `ftp-server`), and vsftpd's is the one the harness needs
/// installed (for its PAM service).
const UNPACKED: &str = "/opt/tether/proftpd-core/usr/sbin/proftpd";

/// The greeting after `220 `, followed by a token new for each server: a
/// greeting with the token is this server's, not another's that took the port.
const BANNER: &str = "tether test proftpd";

/// ProFTPD's message when it cannot bind its listening port.
const BIND_FAILED: &str = "Address already in use";

/// The daemon's own user and group, once it has bound its port (sessions
/// run as the login). Both exist on every Debian system.
const DAEMON_USER: &str = "nobody";
const DAEMON_GROUP: &str = "nogroup";

/// Settings for a private ProFTPD; [`ProftpdBuilder::start`] starts it.
///
/// ```no_run
/// use tether_test_servers::Proftpd;
///
/// let ftp = Proftpd::builder().config("TimeoutIdle 30").start()?;
/// println!("ftp://{}:{}@{}:{}/", ftp.user(), ftp.password(), ftp.ip(), ftp.port());
/// # Ok::<(), tether_test_servers::HarnessError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProftpdBuilder {
    extra_config: Vec<String>,
}

impl ProftpdBuilder {
    /// Appends one line to the server's config, e.g. `"FactsOptions
    /// UseSlink"`. For most directives ProFTPD keeps the last value, so this
    /// overrides the harness's own settings; a directive ProFTPD does not
    /// know stops it from starting ([`HarnessError::Start`] with ProFTPD's
    /// complaint).
    ///
    /// Leave `Port`, `DefaultAddress`, `ServerIdent`, the log, pid and
    /// scoreboard files and the `Auth*` directives alone: the harness
    /// recognises its server by its greeting and logs in with its user file.
    pub fn config(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Prepares the login and the files, starts ProFTPD and returns once it
    /// greets a connection with `220`. Blocks for tens of milliseconds (at
    /// most about ten seconds).
    ///
    /// ProFTPD is `proftpd` on `PATH` or in the system's `sbin` directories,
    /// or else `/opt/tether/proftpd-core/usr/sbin/proftpd`, where
    /// `scripts/test` unpacks the package `proftpd-core` without installing
    /// it: installing it would remove vsftpd (both packages provide and
    /// conflict with `ftp-server`). Without either,
    /// [`HarnessError::NotProvided`] says how to get it.
    pub fn start(self) -> Result<Proftpd, HarnessError> {
        Proftpd::start_with(self)
    }
}

/// A running ProFTPD on `127.0.0.1`, private to one test.
///
/// Started as root, standalone, in the foreground (`--nodaemon`), bound to
/// `127.0.0.1` only, no anonymous logins, writes and overwrites allowed,
/// `SITE CHMOD` allowed, umask 022, no chroot. Its config, user files,
/// scoreboard and logs live in a private temporary directory; the login's
/// home is another one. Dropping the handle kills the server with every
/// session it started, then removes both directories.
#[derive(Debug)]
pub struct Proftpd {
    // `None` once killed. `Drop::drop` kills it before the fields drop, so
    // the directories are only removed once no ProFTPD process can use them.
    child: Option<Child>,
    ip: Ipv4Addr,
    port: u16,
    password: String,
    uid: u32,
    gid: u32,
    paths: Paths,
    /// The number of the next [`Proftpd::scratch_dir`].
    next_scratch: AtomicU32,
    home: TempDir,
    _dir: TempDir,
}

impl Proftpd {
    /// A builder for other settings.
    pub fn builder() -> ProftpdBuilder {
        ProftpdBuilder::default()
    }

    /// Starts a server with the defaults (`builder().start()`).
    pub fn start() -> Result<Proftpd, HarnessError> {
        Self::builder().start()
    }

    /// The address ProFTPD listens on: `127.0.0.1`.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The port ProFTPD listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The FTP login, `tetherftp`.
    pub fn user(&self) -> &str {
        USER
    }

    /// The login's password (new for each server).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The login's uid (as files it creates show it).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The login's gid.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The login's home directory, where a session starts (absolute, owned by
    /// the login, mode 0755). There is no chroot, so FTP paths are the real
    /// paths.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A new empty directory in [`home`](Proftpd::home), owned by the login,
    /// mode 0755, different at each call: one per test case.
    ///
    /// # Panics
    ///
    /// When the directory cannot be created (a full disk, say).
    pub fn scratch_dir(&self) -> PathBuf {
        crate::ftpd::scratch_dir(self.home(), &self.next_scratch, self.uid, self.gid)
    }

    /// ProFTPD's command log so far: one line per command, with the
    /// command as sent (`"MLST /path"`, the password shown as `(hidden)`)
    /// and the reply code (`ExtendedLog … ALL` in the default format), then
    /// its system log and its stderr if they hold anything; useful in
    /// assertion messages.
    pub fn log(&self) -> String {
        self.paths.log()
    }

    /// Kills ProFTPD and every session it started, as a host that dies:
    /// connections drop and the port refuses new ones. Calling it again does
    /// nothing.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        kill_and_reap(&mut self.child)
    }

    /// Freezes (`true`, SIGSTOP) or resumes (`false`, SIGCONT) ProFTPD and
    /// every session: while frozen, connections stay open (the kernel even
    /// accepts new ones) but nothing is answered, as from a hung server.
    pub fn freeze(&self, frozen: bool) -> Result<(), HarnessError> {
        let Some(pid) = self.child.as_ref().map(Child::id) else { return Ok(()) };
        process::freeze_tree(pid, frozen).map_err(|e| HarnessError::io("signalling ProFTPD's processes", e))
    }

    fn start_with(builder: ProftpdBuilder) -> Result<Proftpd, HarnessError> {
        let proftpd = programs::find("proftpd", PACKAGE)
            .or_else(|_| programs::first_of(&[UNPACKED], "proftpd", PACKAGE))
            .map_err(|_| HarnessError::NotProvided {
                program: "proftpd",
                how: "run scripts/test as root, which unpacks proftpd-core into /opt/tether/proftpd-core \
                          (installing the package would remove vsftpd: both are an ftp-server)",
            })?;
        let openssl = programs::find("openssl", "openssl")?;
        for line in &builder.extra_config {
            if line.contains(['\n', '\r']) {
                return Err(HarnessError::Config(format!(
                    "config line {line:?} spans several lines; add each separately"
                )));
            }
        }
        let ip = Ipv4Addr::LOCALHOST;

        let dir = tempfile::Builder::new()
            .prefix("tether-proftpd-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating ProFTPD's temporary directory", e))?;
        let paths = Paths::in_dir(dir.path())?;

        let (uid, gid) = free_ids()?;
        let home = make_home("tether-proftpd-home-", uid, gid)?;
        let password = format!("tether-{:016x}", random_u64());
        let hash = hash_password(&openssl, &password)?;
        // passwd(5) and group(5) format, with the password's hash in the
        // user file itself; only root (ProFTPD) reads them.
        let entry = format!("{USER}:{hash}:{uid}:{gid}:tether test FTP login:{}:/bin/sh\n", home.path().display());
        write_file(&paths.passwd, &entry, 0o600)?;
        write_file(&paths.group, &format!("{USER}:x:{gid}:\n"), 0o600)?;

        let mut last_error = None;
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port()?;
            let token = format!("{:016x}", random_u64());
            write_file(&paths.config, &paths.render(&builder, ip, port, &token), 0o600)?;
            let stderr =
                File::create(&paths.stderr).map_err(|e| HarnessError::io("creating ProFTPD's stderr log", e))?;
            let stdout = stderr.try_clone().map_err(|e| HarnessError::io("duplicating ProFTPD's stderr log", e))?;
            let child = Command::new(&proftpd)
                .arg("--nodaemon")
                .arg("--config")
                .arg(&paths.config)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .map_err(|e| HarnessError::io(format!("starting {}", proftpd.display()), e))?;
            let mut child = Some(child);
            let banner = format!("220 {BANNER} {token}");
            let readiness = Readiness {
                server: "ProFTPD",
                log: &|| paths.log(),
                greeted_by_us: &|line| line == banner,
                elsewhere_hint: "another server has the port, or a config line changed ServerIdent",
            };
            match wait_ready(&mut child, SocketAddrV4::new(ip, port), None, &readiness) {
                Ok(()) => {
                    return Ok(Proftpd {
                        child,
                        ip,
                        port,
                        password,
                        uid,
                        gid,
                        paths,
                        next_scratch: AtomicU32::new(0),
                        home,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    kill_and_reap(&mut child)?;
                    // Another process took the port after `free_port`
                    // released it: try another one.
                    if !paths.log().contains(BIND_FAILED) {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::Start { reason: "no attempt made".into(), log: String::new() }))
    }
}

impl Drop for Proftpd {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The files of one server, all in its temporary directory.
#[derive(Debug)]
struct Paths {
    config: PathBuf,
    passwd: PathBuf,
    group: PathBuf,
    pid: PathBuf,
    scoreboard: PathBuf,
    scoreboard_mutex: PathBuf,
    delay_table: PathBuf,
    command_log: PathBuf,
    system_log: PathBuf,
    transfer_log: PathBuf,
    stderr: PathBuf,
}

impl Paths {
    fn in_dir(dir: &Path) -> Result<Paths, HarnessError> {
        let text = dir.to_string_lossy();
        // Paths go into the config in double quotes, where ProFTPD reads
        // backslashes and `%{…}` specially.
        if text.contains(|c: char| c.is_control() || matches!(c, '"' | '\\' | '%')) {
            return Err(HarnessError::Config(format!(
                "path {text:?} has characters ProFTPD's config cannot hold; set TMPDIR to a plain directory"
            )));
        }
        Ok(Paths {
            config: dir.join("proftpd.conf"),
            passwd: dir.join("passwd"),
            group: dir.join("group"),
            pid: dir.join("proftpd.pid"),
            scoreboard: dir.join("proftpd.scoreboard"),
            scoreboard_mutex: dir.join("proftpd.scoreboard.lck"),
            delay_table: dir.join("proftpd.delay"),
            command_log: dir.join("commands.log"),
            system_log: dir.join("system.log"),
            transfer_log: dir.join("xferlog"),
            stderr: dir.join("stderr.log"),
        })
    }

    /// The command log, then the system log and stderr when not empty.
    fn log(&self) -> String {
        let mut log = read_log(&self.command_log);
        for (name, path) in [("system log", &self.system_log), ("stderr", &self.stderr)] {
            let text = read_log(path);
            if !text.is_empty() {
                log.push_str(&format!("\n--- ProFTPD's {name} ---\n"));
                log.push_str(&text);
            }
        }
        log
    }

    fn render(&self, builder: &ProftpdBuilder, ip: Ipv4Addr, port: u16, token: &str) -> String {
        let (pasv_first, pasv_last) = passive_range();
        let mut config = String::from("# Written by tether-test-servers for one test.\n");
        let mut line = |text: String| {
            config.push_str(&text);
            config.push('\n');
        };
        let path = |path: &Path| format!("\"{}\"", path.display());
        line("ServerType standalone".into());
        line(format!("ServerName \"{BANNER}\""));
        line(format!("ServerIdent on \"{BANNER} {token}\""));
        // Bound to this address only (without SocketBindTight ProFTPD
        // listens on every address).
        line(format!("DefaultAddress {ip}"));
        line("SocketBindTight on".into());
        line(format!("Port {port}"));
        line("UseIPv6 off".into());
        line(format!("User {DAEMON_USER}"));
        line(format!("Group {DAEMON_GROUP}"));
        // Everything ProFTPD would keep under /run and /var/log.
        line(format!("PidFile {}", path(&self.pid)));
        line(format!("ScoreboardFile {}", path(&self.scoreboard)));
        line(format!("ScoreboardMutex {}", path(&self.scoreboard_mutex)));
        line(format!("SystemLog {}", path(&self.system_log)));
        line(format!("TransferLog {}", path(&self.transfer_log)));
        // Every command with its reply code: "MLST /path" 250.
        line(format!("ExtendedLog {} ALL", path(&self.command_log)));
        line("WtmpLog off".into());
        line("UseReverseDNS off".into());
        line("<IfModule mod_ident.c>\n  IdentLookups off\n</IfModule>".into());
        line(format!("<IfModule mod_delay.c>\n  DelayTable {}\n</IfModule>", path(&self.delay_table)));
        line("<IfModule mod_ctrls.c>\n  ControlsEngine off\n</IfModule>".into());
        // The login comes from the private files only: no PAM, no
        // /etc/passwd, no /etc/shells, no /etc/ftpusers.
        line("<IfModule mod_auth_pam.c>\n  AuthPAM off\n</IfModule>".into());
        line("AuthOrder mod_auth_file.c".into());
        line(format!("AuthUserFile {}", path(&self.passwd)));
        line(format!("AuthGroupFile {}", path(&self.group)));
        line("RequireValidShell off".into());
        line("UseFtpUsers off".into());
        // No DefaultRoot: no chroot, FTP paths are the real paths.
        line("AllowOverwrite on".into());
        line("Umask 022".into());
        line(format!("PassivePorts {pasv_first} {pasv_last}"));
        // No limits on sessions: tests open many, all from one address.
        line("MaxInstances 100".into());
        line("TimeoutIdle 600".into());
        line("TimeoutNoTransfer 600".into());
        line("TimeoutStalled 300".into());
        line("<Limit SITE_CHMOD>\n  AllowAll\n</Limit>".into());
        if !builder.extra_config.is_empty() {
            line("# Added by the test.".into());
            for extra in &builder.extra_config {
                line(extra.clone());
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftpd::{PASV_END, PASV_FIRST, PASV_PORTS};

    #[test]
    fn config_names_private_files_and_a_passive_range() {
        let paths = Paths::in_dir(Path::new("/t")).unwrap();
        let config =
            paths.render(&ProftpdBuilder::default().config("FactsOptions UseSlink"), Ipv4Addr::LOCALHOST, 2121, "ab");
        for expected in [
            "Port 2121",
            "DefaultAddress 127.0.0.1",
            "ServerIdent on \"tether test proftpd ab\"",
            "AuthUserFile \"/t/passwd\"",
            "ScoreboardFile \"/t/proftpd.scoreboard\"",
            "ExtendedLog \"/t/commands.log\" ALL",
        ] {
            assert!(config.lines().any(|line| line == expected), "{expected:?} missing from\n{config}");
        }
        assert!(!config.contains("DefaultRoot"), "{config}");
        assert!(config.ends_with("FactsOptions UseSlink\n"), "{config}");
        let passive = config.lines().find_map(|line| line.strip_prefix("PassivePorts ")).unwrap();
        let (first, last) = passive.split_once(' ').unwrap();
        let (first, last): (u16, u16) = (first.parse().unwrap(), last.parse().unwrap());
        assert!(first >= PASV_FIRST && last < PASV_END && last - first + 1 == PASV_PORTS, "{first}..={last}");
    }

    #[test]
    fn odd_directories_are_refused() {
        assert!(matches!(Paths::in_dir(Path::new("/tmp/a\"b")), Err(HarnessError::Config(_))));
        assert!(matches!(Paths::in_dir(Path::new("/tmp/%{env:X}")), Err(HarnessError::Config(_))));
    }
}
