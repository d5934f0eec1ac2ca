//! A private OpenSSH server.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::netns::{self, Namespace};
use crate::{HarnessError, process, programs};

/// How long the server gets to answer with its banner.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a port is tried again when another process took it between the
/// harness picking it and sshd binding it.
const BIND_ATTEMPTS: usize = 5;

/// Where distributions put `sftp-server` (Debian, Fedora, macOS-style, Arch).
const SFTP_SERVER_PATHS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/ssh/sftp-server",
];

/// sshd's privilege separation directory (Debian's `_PATH_PRIVSEP_CHROOT_DIR`):
/// sshd refuses to start without it, and on machines that never started the
/// system sshd (containers) nobody created it.
const PRIVSEP_DIR: &str = "/run/sshd";

/// Environment variables the server accepts from clients (`AcceptEnv`), so
/// tests can check that a transport passes its environment on.
const ACCEPTED_ENV: &str = "TETHER_* LANG LC_*";

/// How much sshd writes to its stderr ([`Sshd::log`]). Levels below `INFO`
/// are not offered: the harness waits for sshd's `INFO` line
/// "Server listening on …" to know the port is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Startup, connections and failures.
    Info,
    /// Also which key or method authenticated each login (the default).
    #[default]
    Verbose,
    /// Protocol debugging, level 1.
    Debug1,
    /// Protocol debugging, level 2.
    Debug2,
    /// Protocol debugging, level 3 (very noisy).
    Debug3,
}

impl LogLevel {
    fn keyword(self) -> &'static str {
        match self {
            LogLevel::Info => "INFO",
            LogLevel::Verbose => "VERBOSE",
            LogLevel::Debug1 => "DEBUG1",
            LogLevel::Debug2 => "DEBUG2",
            LogLevel::Debug3 => "DEBUG3",
        }
    }
}

/// Settings for a private sshd; [`SshdBuilder::start`] starts it.
///
/// ```no_run
/// use tether_test_servers::Sshd;
///
/// let sshd = Sshd::builder()
///     .max_sessions(4)
///     .config_line("ClientAliveInterval 1")
///     .password_auth("root", "hunter2")
///     .start()?;
/// # Ok::<(), tether_test_servers::HarnessError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SshdBuilder {
    extra_config: Vec<String>,
    max_sessions: u32,
    password: Option<(String, String)>,
    authorized_keys: Vec<String>,
    log_level: LogLevel,
    sshd_program: Option<PathBuf>,
    netns: Option<Namespace>,
}

impl Default for SshdBuilder {
    fn default() -> Self {
        SshdBuilder {
            extra_config: Vec::new(),
            // OpenSSH's own default, which the SSH transport's `max_sessions`
            // mirrors; tests of the session limit lower it.
            max_sessions: 10,
            password: None,
            authorized_keys: Vec::new(),
            log_level: LogLevel::default(),
            sshd_program: None,
            netns: None,
        }
    }
}

impl SshdBuilder {
    /// The defaults: key authentication with the generated client key only,
    /// `MaxSessions 10`, `LogLevel VERBOSE`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one line to `sshd_config`, e.g. `"ClientAliveInterval 1"` or a
    /// `Match` block line.
    ///
    /// The lines go after the harness's own, because a `Match` block runs to the
    /// end of the file. sshd keeps the *first* value of most keywords, so the
    /// keywords the harness sets (see [`Sshd::config_path`]) cannot be changed
    /// this way; use the builder's methods for those. Keywords that add up
    /// (`AcceptEnv`, `Subsystem` for another name, …) work.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// sshd's `MaxSessions`: channels with a session open at once on one
    /// connection (default 10).
    pub fn max_sessions(mut self, max_sessions: u32) -> Self {
        self.max_sessions = max_sessions;
        self
    }

    /// Enables password and keyboard-interactive authentication, with
    /// `password` as the password of the existing system user `user`.
    ///
    /// The system's password database is not touched: sshd runs in a private
    /// mount namespace where a copy of `/etc/shadow` holding this password and
    /// a minimal PAM stack (`pam_unix` for auth, nothing else) are mounted
    /// over the real files. That needs root (or `CAP_SYS_ADMIN`), `unshare`,
    /// `mount` and `openssl` (to hash the password). `UsePAM` is then `yes`,
    /// since sshd only offers keyboard-interactive through PAM on Linux.
    pub fn password_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.password = Some((user.into(), password.into()));
        self
    }

    /// Also accepts this client public key (one OpenSSH `authorized_keys`
    /// line, e.g. the contents of an `id_ecdsa.pub`), besides the generated
    /// one.
    pub fn authorize_key(mut self, public_key: impl Into<String>) -> Self {
        self.authorized_keys.push(public_key.into());
        self
    }

    /// sshd's `LogLevel` (default [`LogLevel::Verbose`]).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// Runs this sshd binary instead of the one found on `PATH` or in
    /// `/usr/sbin` (to test another OpenSSH version). A path that is not an
    /// executable file gives [`HarnessError::MissingProgram`].
    pub fn sshd_program(mut self, path: impl Into<PathBuf>) -> Self {
        self.sshd_program = Some(path.into());
        self
    }

    /// Runs sshd inside the network namespace `ns` (`ip netns exec`),
    /// listening on the namespace's address instead of `127.0.0.1`; see
    /// [`netns`](crate::netns) for the topology. Only [`netns::HOP1`] is
    /// reachable from the test process; reach the others from inside the
    /// previous hop ([`netns::command_in`], [`netns::connect_from`]).
    ///
    /// The namespace must exist ([`netns::require`]); otherwise
    /// [`start`](SshdBuilder::start) fails with
    /// [`HarnessError::NetnsMissing`]. Combines with
    /// [`password_auth`](SshdBuilder::password_auth): the private mount
    /// namespace is made inside the network namespace.
    pub fn netns(mut self, ns: &Namespace) -> Self {
        self.netns = Some(*ns);
        self
    }

    /// Prepares the temporary directory and starts sshd; returns once the
    /// server answers with its SSH banner.
    ///
    /// This blocks (typically for tens of milliseconds, at most about ten
    /// seconds); from async code that is acceptable once per test, or wrap it
    /// in `spawn_blocking`.
    pub fn start(self) -> Result<Sshd, HarnessError> {
        Sshd::start_with(self)
    }
}

/// A running OpenSSH server on `127.0.0.1` (or on a network namespace's
/// address, see [`SshdBuilder::netns`]), private to one test.
///
/// Everything it uses lives in [`dir`](Sshd::dir): the config, host key,
/// client key, `authorized_keys`, a `known_hosts` file for it, and its log.
/// Dropping the handle kills the server and every session it started, then
/// removes the directory.
#[derive(Debug)]
pub struct Sshd {
    // `None` once killed. `Drop::drop` kills it before the fields drop, so
    // the directory is only removed once no sshd process can use it.
    child: Option<Child>,
    ip: Ipv4Addr,
    port: u16,
    netns: Option<Namespace>,
    user: String,
    host_key_public: String,
    client_public_key: String,
    client_key_path: PathBuf,
    known_hosts_path: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

impl Sshd {
    /// Starts an sshd with the defaults of [`SshdBuilder::new`].
    pub fn start() -> Result<Sshd, HarnessError> {
        SshdBuilder::new().start()
    }

    /// A builder for other settings.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::new()
    }

    /// The address sshd listens on: `127.0.0.1:port`, or the namespace's
    /// address (e.g. `198.18.2.2:port`).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, self.port))
    }

    /// The network namespace sshd runs in, if not the test process's own.
    pub fn netns(&self) -> Option<&Namespace> {
        self.netns.as_ref()
    }

    /// `user@ip`, the destination argument for `ssh` after
    /// [`ssh_args`](Sshd::ssh_args).
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.ip)
    }

    /// The port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `hosts.json` entry that reaches this server: its address and port,
    /// the generated client key only, its own `known_hosts`, `term` ssh and
    /// `transfer` sftp. Tests add what they need (`hop`, more options).
    pub fn inventory_entry(&self) -> serde_json::Value {
        serde_json::json!({
            "ip": self.ip.to_string(),
            // Key authentication only: the password is never offered.
            "creds": {self.user.as_str(): "unused"},
            "term": "ssh",
            "transfer": "sftp",
            "ssh_options": {
                "port": self.port,
                "preferred_auth": ["publickey"],
                "client_keys": [self.client_key_path],
                "known_hosts": [self.known_hosts_path],
                "connect_timeout": 10.0,
            }
        })
    }

    /// The server's host public key as one OpenSSH line without comment:
    /// `ssh-ed25519 AAAA…`.
    pub fn host_key_public(&self) -> &str {
        &self.host_key_public
    }

    /// The `known_hosts` line for this server:
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA…` (in a namespace, its address:
    /// `[198.18.2.2]:PORT …`).
    pub fn known_hosts_line(&self) -> String {
        format!("[{}]:{} {}", self.ip, self.port, self.host_key_public)
    }

    /// A file holding just [`known_hosts_line`](Sshd::known_hosts_line).
    pub fn known_hosts_path(&self) -> &Path {
        &self.known_hosts_path
    }

    /// The user this process runs as, who can log in with the client key.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The generated ed25519 client private key (no passphrase, mode 0600).
    /// Its public key is in `authorized_keys`, which sshd uses for every user.
    pub fn client_key_path(&self) -> &Path {
        &self.client_key_path
    }

    /// The generated client public key as one OpenSSH line:
    /// `ssh-ed25519 AAAA… tether-test-client`.
    pub fn client_public_key(&self) -> &str {
        &self.client_public_key
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated `sshd_config`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything sshd wrote to stderr so far (its log, at the configured
    /// [`LogLevel`]); useful in assertion messages.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// A client run's status and output with this server's log, for the
    /// message of an assertion about that run.
    pub fn explain(&self, out: &std::process::Output) -> String {
        format!(
            "status {}\nstdout {:?}\nstderr {}\nsshd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        )
    }

    /// The pid of the listening sshd process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The distribution's `ssh` client, set up for this server: no user or
    /// system config (`-F /dev/null`), strict host key checking against
    /// [`known_hosts_path`](Sshd::known_hosts_path), the generated key only,
    /// batch mode, then [`destination`](Sshd::destination) and
    /// `remote_command`.
    ///
    /// For other `ssh` options, start from [`ssh_args`](Sshd::ssh_args).
    /// The client runs in the test process's namespace, so for a server in
    /// a namespace past [`netns::HOP1`] use
    /// `netns::command_in(previous_hop, "ssh").args(sshd.ssh_args())` instead.
    pub fn ssh_command(&self, remote_command: &str) -> Command {
        let mut command = Command::new("ssh");
        command.args(self.ssh_args()).arg(self.destination()).arg(remote_command);
        command
    }

    /// The options [`ssh_command`](Sshd::ssh_command) passes before the
    /// destination.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts_path.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            // Keys in a running ssh-agent would otherwise be tried first.
            "IdentitiesOnly=yes".into(),
            "-i".into(),
            self.client_key_path.display().to_string(),
            "-p".into(),
            self.port.to_string(),
        ]
    }

    /// Kills sshd and every session it started, as a crash would: open
    /// connections drop and the port refuses new ones. The handle stays
    /// usable for its paths, [`log`](Sshd::log) and addresses. Calling it
    /// again does nothing.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        kill_and_reap(&mut self.child)
    }

    /// Freezes sshd and every session (SIGSTOP): connections stay open but
    /// the server answers nothing, as when a cable is pulled. Undone by
    /// [`thaw`](Sshd::thaw); [`kill`](Sshd::kill) works on a frozen server.
    pub fn freeze(&self) -> Result<(), HarnessError> {
        self.signal_tree(true)
    }

    /// Resumes a server stopped by [`freeze`](Sshd::freeze).
    pub fn thaw(&self) -> Result<(), HarnessError> {
        self.signal_tree(false)
    }

    fn signal_tree(&self, freeze: bool) -> Result<(), HarnessError> {
        let Some(pid) = self.pid() else { return Ok(()) };
        crate::process::freeze_tree(pid, freeze).map_err(|e| HarnessError::io("signalling sshd's processes", e))
    }

    /// Stops sshd and its sessions and removes the temporary directory,
    /// reporting any failure (dropping the handle does the same silently).
    pub fn stop(mut self) -> Result<(), HarnessError> {
        self.kill()?;
        let dir = self.dir.path().to_path_buf();
        // `TempDir`'s own cleanup, when `self` drops, then finds nothing left.
        fs::remove_dir_all(&dir).map_err(|e| HarnessError::io(format!("removing {}", dir.display()), e))
    }

    fn start_with(builder: SshdBuilder) -> Result<Sshd, HarnessError> {
        let sshd_program = match &builder.sshd_program {
            Some(path) if programs::is_executable(path) => path.clone(),
            Some(_) => return Err(HarnessError::MissingProgram { program: "sshd", package: "openssh-server" }),
            None => programs::find("sshd", "openssh-server")?,
        };
        let keygen = programs::find("ssh-keygen", "openssh-client")?;
        let sftp_server = programs::first_of(SFTP_SERVER_PATHS, "sftp-server", "openssh-sftp-server")?;
        validate(&builder)?;
        let netns_exec = match &builder.netns {
            Some(ns) => {
                let ip_program = programs::find("ip", "iproute2")?;
                // Without this, a missing namespace shows up as sshd's
                // "Cannot bind any address" or ip's complaint in a Start error.
                netns::check(&ip_program, ns)?;
                Some((ip_program, *ns))
            }
            None => None,
        };
        let ip = builder.netns.map_or(Ipv4Addr::LOCALHOST, |ns| ns.addr());
        ensure_privsep_dir()?;

        let user = current_user()?;
        let dir = tempfile::Builder::new()
            .prefix("tether-sshd-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating sshd's temporary directory", e))?;
        // sshd reads `authorized_keys` with the privileges of the user logging
        // in, which need not be root (password_auth for another user), and
        // tempfile creates the directory 0700.
        set_mode(dir.path(), 0o755)?;
        check_config_safe(dir.path())?;
        check_config_safe(&sftp_server)?;

        let host_key = dir.path().join("host_ed25519_key");
        let client_key_path = dir.path().join("client_ed25519_key");
        generate_key(&keygen, &host_key, "tether-test-host")?;
        generate_key(&keygen, &client_key_path, "tether-test-client")?;
        let host_key_public = public_key_without_comment(&read_to_string(&host_key.with_extension("pub"))?)?;
        let client_public_key = read_to_string(&client_key_path.with_extension("pub"))?.trim().to_string();

        let authorized_keys = dir.path().join("authorized_keys");
        let mut keys = client_public_key.clone() + "\n";
        for key in &builder.authorized_keys {
            keys.push_str(key.trim());
            keys.push('\n');
        }
        write_file(&authorized_keys, &keys, 0o644)?;

        let mount_namespace = match &builder.password {
            Some((pw_user, password)) => Some(PasswordNamespace::prepare(dir.path(), pw_user, password)?),
            None => None,
        };

        let settings = ConfigSettings {
            host_key: &host_key,
            pid_file: &dir.path().join("sshd.pid"),
            authorized_keys: &authorized_keys,
            sftp_server: &sftp_server,
            password: mount_namespace.is_some(),
            disable_penalties: supports_per_source_penalties(&sshd_program),
        };
        let config_path = dir.path().join("sshd_config");
        let log_path = dir.path().join("sshd.log");

        let mut last_error = None;
        for _ in 0..BIND_ATTEMPTS {
            // Bound in the test process's namespace: a port free there is
            // almost always free in another namespace too, and the retry
            // covers the rest.
            let port = free_port()?;
            write_file(&config_path, &settings.render(&builder, ip, port), 0o644)?;
            let mut argv = match &mount_namespace {
                Some(mounts) => mounts.argv(&sshd_program)?,
                None => vec![sshd_program.clone().into_os_string()],
            };
            if let Some((ip_program, ns)) = &netns_exec {
                // `ip netns exec` execs its program, so the child we hold is
                // still the listener (or `unshare`, which execs it in turn).
                let prefix = [ip_program.as_os_str(), "netns".as_ref(), "exec".as_ref(), ns.name().as_ref()];
                argv.splice(0..0, prefix.into_iter().map(OsString::from));
            }
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            // -D: stay in the foreground, so the child we hold is the listener;
            // -e: log to stderr (our log file) instead of syslog.
            command.arg("-D").arg("-e").arg("-f").arg(&config_path);
            let log = File::create(&log_path).map_err(|e| HarnessError::io("creating sshd's log file", e))?;
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
            let child =
                command.spawn().map_err(|e| HarnessError::io(format!("starting {}", sshd_program.display()), e))?;
            let mut child = Some(child);
            match wait_ready(&mut child, ip, port, builder.netns.as_ref(), &log_path) {
                Ok(()) => {
                    let sshd = Sshd {
                        child,
                        ip,
                        port,
                        netns: builder.netns,
                        user,
                        host_key_public,
                        client_public_key,
                        client_key_path,
                        known_hosts_path: dir.path().join("known_hosts"),
                        config_path,
                        log_path,
                        dir,
                    };
                    // Dropping `sshd` on this error stops the server again.
                    write_file(&sshd.known_hosts_path, &(sshd.known_hosts_line() + "\n"), 0o644)?;
                    return Ok(sshd);
                }
                Err(Ready::PortTaken(e)) => {
                    kill_and_reap(&mut child)?;
                    last_error = Some(e);
                }
                Err(Ready::Failed(e)) => {
                    kill_and_reap(&mut child)?;
                    return Err(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::Start { reason: "no attempt made".into(), log: String::new() }))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Nothing to report to from here; `stop` reports the same failures.
        let _ = self.kill();
    }
}

enum Ready {
    /// sshd could not bind the port: try another one.
    PortTaken(HarnessError),
    /// Anything else: give up.
    Failed(HarnessError),
}

/// Waits until sshd logs that it listens on `ip:port` and answers a TCP
/// connection there (made from inside `netns`, if given) with an SSH banner.
fn wait_ready(
    child: &mut Option<Child>,
    ip: Ipv4Addr,
    port: u16,
    netns: Option<&Namespace>,
    log_path: &Path,
) -> Result<(), Ready> {
    let deadline = Instant::now() + START_TIMEOUT;
    let listening = format!("Server listening on {ip} port {port}.");
    let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
    let failed = |reason: String| Ready::Failed(HarnessError::Start { reason, log: read_log(log_path) });
    loop {
        let exited = match child.as_mut().map(Child::try_wait) {
            Some(Ok(status)) => status,
            Some(Err(e)) => return Err(Ready::Failed(HarnessError::io("checking on sshd", e))),
            None => return Err(failed("sshd was already stopped".into())),
        };
        if let Some(status) = exited {
            *child = None;
            let log = read_log(log_path);
            // Another process took the port after `free_port` released it.
            let port_taken = log.contains("Address already in use");
            let error = HarnessError::Start { reason: format!("sshd exited ({status})"), log };
            return Err(if port_taken { Ready::PortTaken(error) } else { Ready::Failed(error) });
        }
        // The "listening" line proves the port is this sshd's, not another
        // server's that took it in the meantime; the banner then proves it
        // accepts connections.
        if read_log(log_path).contains(&listening) {
            let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            // From inside the namespace, since only HOP1's address is
            // reachable from here.
            let stream = match netns {
                Some(ns) => netns::connect_from(ns, addr, remaining),
                None => TcpStream::connect_timeout(&addr, remaining),
            };
            return match stream.and_then(|stream| read_banner(stream, remaining)) {
                Ok(banner) if banner.starts_with("SSH-2.0-") => Ok(()),
                Ok(banner) => Err(failed(format!("unexpected banner {banner:?} from {addr}"))),
                Err(e) => Err(failed(format!("no SSH banner from {addr}: {e}"))),
            };
        }
        if Instant::now() >= deadline {
            return Err(failed(format!("not listening on port {port} after {} s", START_TIMEOUT.as_secs())));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Kills sshd with every process it started and reaps it; nothing to do when
/// it already exited.
pub(crate) fn kill_and_reap(child: &mut Option<Child>) -> Result<(), HarnessError> {
    let Some(mut sshd) = child.take() else { return Ok(()) };
    match process::kill_tree(sshd.id()) {
        // SIGKILL went out, so this returns promptly and leaves no zombie.
        Ok(()) => sshd.wait().map(drop).map_err(|e| HarnessError::io("waiting for sshd to exit", e)),
        Err(e) => {
            // At least stop and reap the listener before reporting.
            let _ = sshd.kill();
            let _ = sshd.wait();
            Err(HarnessError::io("killing sshd's processes", e))
        }
    }
}

pub(crate) fn read_log(path: &Path) -> String {
    fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

/// The paths and switches the config needs besides the builder's settings.
struct ConfigSettings<'a> {
    host_key: &'a Path,
    pid_file: &'a Path,
    authorized_keys: &'a Path,
    sftp_server: &'a Path,
    password: bool,
    disable_penalties: bool,
}

impl ConfigSettings<'_> {
    fn render(&self, builder: &SshdBuilder, ip: Ipv4Addr, port: u16) -> String {
        let yes_no = |on: bool| if on { "yes" } else { "no" };
        let mut config = String::new();
        let mut line = |text: String| {
            config.push_str(&text);
            config.push('\n');
        };
        line("# Written by tether-test-servers for one test. sshd keeps the first value".into());
        line("# of most keywords, so these lines win over the extra ones at the end.".into());
        // sshd has no "Port 0"; the harness picked a free port just before.
        line(format!("ListenAddress {ip}"));
        line(format!("Port {port}"));
        line(format!("HostKey {}", self.host_key.display()));
        line(format!("PidFile {}", self.pid_file.display()));
        line(format!("AuthorizedKeysFile {}", self.authorized_keys.display()));
        // The temporary directory is not laid out like a home directory.
        line("StrictModes no".into());
        // Without a password, PAM's session modules (pam_loginuid, pam_motd,
        // …) only add work and fail in containers; with one, a private stack.
        line(format!("UsePAM {}", yes_no(self.password)));
        // Tests run as root.
        line("PermitRootLogin yes".into());
        line("PubkeyAuthentication yes".into());
        line(format!("PasswordAuthentication {}", yes_no(self.password)));
        line(format!("KbdInteractiveAuthentication {}", yes_no(self.password)));
        line(format!("MaxSessions {}", builder.max_sessions));
        // The default (10:30:100) drops 30% of connections beyond ten
        // unauthenticated ones, which concurrent connect tests reach.
        line("MaxStartups 1000".into());
        line("PermitUserEnvironment no".into());
        // bash reads ~/.bashrc for commands run by sshd when SHLVL < 2 after
        // its own increment; on these machines root's .bashrc (pyenv init)
        // costs ~90 ms per command. sshd's SetEnv overrides the session's
        // environment, so bash sees SHLVL=1, counts 2 and skips .bashrc.
        line("SetEnv SHLVL=1".into());
        line(format!("AcceptEnv {ACCEPTED_ENV}"));
        line(format!("Subsystem sftp {}", self.sftp_server.display()));
        line(format!("LogLevel {}", builder.log_level.keyword()));
        // No reverse lookups of client addresses (they can stall without DNS).
        line("UseDNS no".into());
        line("PrintMotd no".into());
        line("PrintLastLog no".into());
        line("X11Forwarding no".into());
        line("AllowTcpForwarding yes".into());
        line("AllowStreamLocalForwarding yes".into());
        if self.disable_penalties {
            // OpenSSH 9.8+ refuses a source address for a while after failed
            // or incomplete logins; tests of failures would lock each other
            // out (everything comes from 127.0.0.1).
            line("PerSourcePenalties no".into());
        }
        if !builder.extra_config.is_empty() {
            line("# Added by the test.".into());
            for extra in &builder.extra_config {
                line(extra.clone());
            }
        }
        config
    }
}

/// The files mounted over `/etc/shadow` and `/etc/pam.d/sshd` in sshd's
/// private mount namespace, for password authentication.
struct PasswordNamespace {
    shadow: PathBuf,
    pam: PathBuf,
}

/// The PAM stack sshd uses in password mode: check the password against the
/// (private) shadow file; accept every account and session, since the
/// system's session modules (pam_loginuid, pam_motd, …) fail in containers
/// and are not what the tests are about. `nodelay` drops pam_unix's ~2 s
/// pause after a wrong password, which tests of wrong passwords would wait
/// out every time.
const PAM_STACK: &str = "\
# tether-test-servers: PAM stack of one test sshd (private mount namespace)
auth     required pam_unix.so nodelay
account  required pam_permit.so
session  required pam_permit.so
password required pam_deny.so
";

impl PasswordNamespace {
    fn prepare(dir: &Path, user: &str, password: &str) -> Result<Self, HarnessError> {
        // Found now, so a missing one is reported before any work.
        programs::find("unshare", "util-linux")?;
        programs::find("mount", "mount")?;
        let openssl = programs::find("openssl", "openssl")?;
        if nix::unistd::User::from_name(user).ok().flatten().is_none() {
            return Err(HarnessError::Config(format!("password_auth: no system user {user:?}")));
        }
        if !Path::new("/etc/pam.d/sshd").is_file() {
            return Err(HarnessError::Config(
                "password_auth: /etc/pam.d/sshd is missing (install openssh-server from the distribution)".into(),
            ));
        }
        let hash = hash_password(&openssl, password)?;
        let shadow_text = read_to_string(Path::new("/etc/shadow"))?;
        let shadow = dir.join("shadow");
        write_file(&shadow, &shadow_with_password(&shadow_text, user, &hash), 0o600)?;
        let pam = dir.join("pam-sshd");
        write_file(&pam, PAM_STACK, 0o644)?;
        Ok(PasswordNamespace { shadow, pam })
    }

    /// sshd's command line in the private mount namespace
    /// ([`in_private_mounts`]).
    fn argv(&self, sshd: &Path) -> Result<Vec<OsString>, HarnessError> {
        let mounts = [(self.shadow.as_path(), Path::new("/etc/shadow")), (&self.pam, Path::new("/etc/pam.d/sshd"))];
        in_private_mounts(&mounts, vec![sshd.into()])
    }
}

/// `argv` run in a private mount namespace where each `(source, target)` of
/// `mounts` is bind-mounted over `target`: how a server gets its own
/// `/etc/shadow` (or `/etc/passwd`, a PAM stack, …) while the machine's files
/// stay untouched. Needs root (or `CAP_SYS_ADMIN`), `unshare` and `mount`.
///
/// `unshare` then `sh` then (by `exec`) the program are all the same process,
/// so the pid of the child is the server's. A command line rather than a
/// `Command`, so `ip netns exec` can go in front.
pub(crate) fn in_private_mounts(mounts: &[(&Path, &Path)], argv: Vec<OsString>) -> Result<Vec<OsString>, HarnessError> {
    let unshare = programs::find("unshare", "util-linux")?;
    let mount = programs::find("mount", "mount")?;
    let mut wrapped: Vec<OsString> = vec![unshare.into()];
    // Private propagation, so the bind mounts never reach the host.
    wrapped.extend(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"].map(OsString::from));
    // Arguments: mount, then source and target pairs up to `--` (every path
    // is absolute, so none is `--`), then the program's command line.
    wrapped.push(
        r#"mount="$1"; shift; while [ "$1" != -- ]; do "$mount" --bind "$1" "$2" || exit; shift 2; done; shift; exec "$@""#
            .into(),
    );
    wrapped.push("sh".into());
    wrapped.push(mount.into());
    for (source, target) in mounts {
        if !source.is_absolute() || !target.is_absolute() {
            return Err(HarnessError::Config(format!(
                "bind mount {} over {}: both paths must be absolute",
                source.display(),
                target.display()
            )));
        }
        wrapped.extend([OsString::from(source), OsString::from(target)]);
    }
    wrapped.push("--".into());
    wrapped.extend(argv);
    Ok(wrapped)
}

/// `shadow` with `user`'s entry replaced (or added) by one with `hash` and no
/// password ageing, so no "password expired" prompt can get in the way.
pub(crate) fn shadow_with_password(shadow: &str, user: &str, hash: &str) -> String {
    let entry = format!("{user}:{hash}::0:99999:7:::");
    let mut found = false;
    let mut out = String::new();
    for line in shadow.lines() {
        if line.split(':').next() == Some(user) {
            found = true;
            out.push_str(&entry);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        out.push_str(&entry);
        out.push('\n');
    }
    out
}

/// A SHA-512 crypt(3) hash, which pam_unix accepts everywhere.
pub(crate) fn hash_password(openssl: &Path, password: &str) -> Result<String, HarnessError> {
    let mut child = Command::new(openssl)
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io(format!("starting {}", openssl.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{password}").map_err(|e| HarnessError::io("writing the password to openssl", e))?;
    }
    let out = child.wait_with_output().map_err(|e| HarnessError::io("running openssl passwd", e))?;
    if !out.status.success() {
        return Err(HarnessError::Helper {
            program: openssl.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !hash.starts_with("$6$") {
        return Err(HarnessError::Config(format!("openssl passwd -6 printed {hash:?}, not a SHA-512 crypt hash")));
    }
    Ok(hash)
}

/// Rejects settings that would make a broken config instead of a clear error.
fn validate(builder: &SshdBuilder) -> Result<(), HarnessError> {
    for line in &builder.extra_config {
        if line.contains(['\n', '\r']) {
            return Err(HarnessError::Config(format!("config line {line:?} spans several lines; add each separately")));
        }
    }
    for key in &builder.authorized_keys {
        if key.trim().contains(['\n', '\r']) {
            return Err(HarnessError::Config(format!("authorized key {key:?} spans several lines")));
        }
    }
    if let Some((user, password)) = &builder.password {
        if user.is_empty() || user.contains([':', '\n']) {
            return Err(HarnessError::Config(format!("password_auth: invalid user name {user:?}")));
        }
        // The password reaches openssl as one line on stdin.
        if password.contains(['\n', '\r']) {
            return Err(HarnessError::Config("password_auth: the password must be one line".into()));
        }
    }
    if builder.max_sessions == 0 {
        // sshd reads 0 as "no sessions at all", which no test of a transport wants.
        return Err(HarnessError::Config("max_sessions must be at least 1".into()));
    }
    Ok(())
}

/// sshd_config splits arguments at whitespace and treats `#`, quotes and (in
/// `AuthorizedKeysFile`) `%` specially; refuse such paths rather than quote.
fn check_config_safe(path: &Path) -> Result<(), HarnessError> {
    let text = path.to_string_lossy();
    if text.contains(|c: char| c.is_whitespace() || matches!(c, '#' | '"' | '\'' | '%' | '\\')) {
        return Err(HarnessError::Config(format!(
            "path {text:?} has characters sshd_config cannot hold; set TMPDIR to a plain directory"
        )));
    }
    Ok(())
}

fn ensure_privsep_dir() -> Result<(), HarnessError> {
    let dir = Path::new(PRIVSEP_DIR);
    if dir.is_dir() {
        return Ok(());
    }
    // `create_dir_all` succeeds when a concurrent test created it first.
    fs::create_dir_all(dir).map_err(|e| HarnessError::io(format!("creating sshd's directory {PRIVSEP_DIR}"), e))?;
    // sshd refuses a privilege separation directory writable by others.
    set_mode(dir, 0o755)
}

fn current_user() -> Result<String, HarnessError> {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.name),
        Ok(None) => Err(HarnessError::Config(format!("uid {uid} has no user name; sshd needs one to log in"))),
        Err(e) => Err(HarnessError::io(format!("looking up uid {uid}"), io::Error::from(e))),
    }
}

/// Binds `127.0.0.1:0` and releases the port the kernel chose. Another
/// process may take it before sshd binds it; `start` then tries again.
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| HarnessError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener.local_addr().map_err(|e| HarnessError::io("reading the bound port", e))?.port();
    Ok(port)
}

fn read_banner(mut stream: TcpStream, timeout: Duration) -> io::Result<String> {
    stream.set_read_timeout(Some(timeout))?;
    let mut banner = Vec::new();
    let mut byte = [0u8; 1];
    // The version line is at most 255 bytes (RFC 4253 §4.2).
    while banner.len() < 255 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            break;
        }
        banner.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&banner).trim_end().to_string())
}

fn generate_key(keygen: &Path, path: &Path, comment: &str) -> Result<(), HarnessError> {
    let out = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("running {}", keygen.display()), e))?;
    if !out.status.success() {
        return Err(HarnessError::Helper {
            program: keygen.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// `ssh-ed25519 AAAA… comment` → `ssh-ed25519 AAAA…`.
fn public_key_without_comment(line: &str) -> Result<String, HarnessError> {
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(blob)) => Ok(format!("{kind} {blob}")),
        _ => Err(HarnessError::Config(format!("ssh-keygen wrote an unexpected public key {line:?}"))),
    }
}

pub(crate) fn read_to_string(path: &Path) -> Result<String, HarnessError> {
    fs::read_to_string(path).map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))
}

pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), HarnessError> {
    fs::write(path, contents).map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
    set_mode(path, mode)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), HarnessError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| HarnessError::io(format!("setting the mode of {}", path.display()), e))
}

/// Whether this sshd knows `PerSourcePenalties` (OpenSSH 9.8 and later),
/// from the version `sshd -V` prints. Unknown means no: an unknown keyword
/// would stop an older sshd from starting.
fn supports_per_source_penalties(sshd: &Path) -> bool {
    let Ok(out) = Command::new(sshd).arg("-V").stdin(Stdio::null()).output() else { return false };
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = write!(text, "{}", String::from_utf8_lossy(&out.stdout));
    openssh_version(&text).is_some_and(|version| version >= (9, 8))
}

/// `OpenSSH_9.2p1 Debian…` → `(9, 2)`.
fn openssh_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(openssh_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15"), Some((9, 2)));
        assert_eq!(openssh_version("OpenSSH_10.0, LibreSSL"), Some((10, 0)));
        assert_eq!(openssh_version("unknown option -- V"), None);
    }

    #[test]
    fn shadow_entry_replaced_or_added() {
        let shadow = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n";
        let replaced = shadow_with_password(shadow, "root", "$6$x$y");
        assert_eq!(replaced, "root:$6$x$y::0:99999:7:::\nnobody:*:19000:0:99999:7:::\n");
        let added = shadow_with_password(shadow, "tester", "$6$x$y");
        assert!(added.ends_with("nobody:*:19000:0:99999:7:::\ntester:$6$x$y::0:99999:7:::\n"));
        // A user whose name is a prefix of another's is not confused with it.
        assert!(shadow_with_password(shadow, "roo", "h").starts_with("root:*:"));
    }

    #[test]
    fn comment_is_dropped_from_public_keys() {
        assert_eq!(
            public_key_without_comment("ssh-ed25519 AAAAC3 tether-test-host\n").ok(),
            Some("ssh-ed25519 AAAAC3".into())
        );
        assert!(public_key_without_comment("garbage").is_err());
    }
}
