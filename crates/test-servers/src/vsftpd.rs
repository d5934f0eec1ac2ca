//! A private vsftpd: FTP, or explicit FTPS (`AUTH TLS`) with
//! [`VsftpdBuilder::tls`], for a login of its own.
//!
//! The login, `tetherftp`, exists only for the server: vsftpd runs in a
//! private mount namespace where copies of `/etc/passwd`, `/etc/group` and
//! `/etc/shadow` that add it are mounted over the real files. The system's
//! PAM service `vsftpd` (`pam_listfile` on `/etc/ftpusers`, `pam_shells`,
//! `pam_unix`) then accepts it like any local user.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher as _};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::netns::{self, Namespace};
use crate::sshd::{
    free_port, hash_password, in_private_mounts, kill_and_reap, read_log, read_to_string, set_mode,
    shadow_with_password, write_file,
};
use crate::{HarnessError, process, programs};

/// How long vsftpd gets to greet a connection with `220`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a port is tried again when another process took it between the
/// harness picking it and vsftpd binding it.
const BIND_ATTEMPTS: usize = 5;

/// The FTP login the harness adds (in vsftpd's mount namespace only).
const USER: &str = "tetherftp";

/// The login's uid and gid are the first id from here that the real
/// `/etc/passwd` and `/etc/group` do not use.
const FIRST_ID: u32 = 61000;

/// The passive ports: a range of this many ports, starting at random in
/// [`PASV_FIRST`]`..`[`PASV_END`], so servers running side by side rarely
/// share one (and vsftpd tries another port of its range when they do).
const PASV_PORTS: u16 = 64;
const PASV_FIRST: u16 = 40000;
const PASV_END: u16 = 60000;

/// The greeting after `220 `.
const BANNER: &str = "tether test vsftpd";

/// What vsftpd logs for each connection (the client's address follows).
const CONNECTED: &str = "CONNECT: Client ";

/// vsftpd's message when it cannot bind its listening port.
const BIND_FAILED: &str = "could not bind listening IPv4 socket";

/// Settings for a private vsftpd; [`VsftpdBuilder::start`] starts it.
///
/// ```no_run
/// use std::net::Ipv4Addr;
/// use tether_test_servers::Vsftpd;
///
/// let ftp = Vsftpd::builder().tls().pasv_address(Ipv4Addr::new(198, 19, 7, 7)).start()?;
/// println!("ftp://{}:{}@{}:{}/", ftp.user(), ftp.password(), ftp.ip(), ftp.port());
/// # Ok::<(), tether_test_servers::HarnessError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct VsftpdBuilder {
    tls: bool,
    pasv_address: Option<Ipv4Addr>,
    netns: Option<Namespace>,
    extra_config: Vec<String>,
}

impl VsftpdBuilder {
    /// Explicit FTPS: clients must send `AUTH TLS` before logging in (a
    /// `USER` before it gets `530` and vsftpd hangs up) and protect every
    /// data connection (`PROT P`), and each data connection must resume the
    /// control connection's TLS session (`require_ssl_reuse=YES`). The server's
    /// certificate is self-signed, for `localhost`, `127.0.0.1` and the
    /// server's address, with `CA:FALSE`; trust it as the CA with
    /// [`Vsftpd::ca_file`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// The address the `PASV` reply names (vsftpd's `pasv_address`, not
    /// resolved), as a server behind NAT announces its public address. The
    /// data port still listens on the server's own address.
    pub fn pasv_address(mut self, ip: Ipv4Addr) -> Self {
        self.pasv_address = Some(ip);
        self
    }

    /// Runs vsftpd inside the network namespace `ns`, listening on the
    /// namespace's address; see [`netns`](crate::netns) for the topology.
    /// Reach a server past [`netns::HOP1`] from inside the previous hop
    /// ([`netns::command_in`], [`netns::connect_from`]).
    ///
    /// The namespace must exist ([`netns::require`]); otherwise
    /// [`start`](VsftpdBuilder::start) fails with
    /// [`HarnessError::NetnsMissing`].
    pub fn netns(mut self, ns: Namespace) -> Self {
        self.netns = Some(ns);
        self
    }

    /// Appends one line to `vsftpd.conf`, e.g. `"max_per_ip=2"`. vsftpd keeps
    /// the last value of an option, so this overrides the harness's own
    /// settings; an option vsftpd does not know stops it from starting
    /// ([`HarnessError::Start`] with vsftpd's `500 OOPS` message).
    ///
    /// Leave `listen*`, `background`, `xferlog_enable` and `vsftpd_log_file`
    /// alone: the harness recognises its server by the connection in its log.
    pub fn config(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Prepares the login, the files and the certificate, starts vsftpd and
    /// returns once it greets a connection with `220`. Blocks for tens of
    /// milliseconds (about 0.2 s more with TLS, for the RSA key; at most
    /// about ten seconds).
    pub fn start(self) -> Result<Vsftpd, HarnessError> {
        Vsftpd::start_with(self)
    }
}

/// A running vsftpd on `127.0.0.1` (or on a network namespace's address, see
/// [`VsftpdBuilder::netns`]), private to one test.
///
/// Started as root, `listen=YES` (standalone, in the foreground), no
/// anonymous logins, writes allowed, no chroot. Its config, certificate and
/// logs live in a private temporary directory; the login's home is another
/// one. Listings show numeric owners (the login's name exists only in the
/// server's mount namespace). Dropping the handle kills the server with every
/// session it started, then removes both directories.
#[derive(Debug)]
pub struct Vsftpd {
    // `None` once killed. `Drop::drop` kills it before the fields drop, so
    // the directories are only removed once no vsftpd process can use them.
    child: Option<Child>,
    ip: Ipv4Addr,
    port: u16,
    password: String,
    uid: u32,
    gid: u32,
    ca_file: Option<PathBuf>,
    log_path: PathBuf,
    stderr_path: PathBuf,
    /// The number of the next [`Vsftpd::scratch_dir`].
    next_scratch: AtomicU32,
    home: TempDir,
    _dir: TempDir,
}

impl Vsftpd {
    /// A builder for other settings.
    pub fn builder() -> VsftpdBuilder {
        VsftpdBuilder::default()
    }

    /// Starts a plain FTP server with the defaults (`builder().start()`).
    pub fn start() -> Result<Vsftpd, HarnessError> {
        Self::builder().start()
    }

    /// The address vsftpd listens on: `127.0.0.1`, or the namespace's.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The port vsftpd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The FTP login, `tetherftp`.
    pub fn user(&self) -> &str {
        USER
    }

    /// The login's password (new for each server). A wrong one is refused
    /// after about 2 s: pam_unix's delay in the system's PAM stack.
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

    /// A new empty directory in [`home`](Vsftpd::home), owned by the login,
    /// mode 0755, different at each call: one per test case.
    ///
    /// # Panics
    ///
    /// When the directory cannot be created (a full disk, say).
    pub fn scratch_dir(&self) -> PathBuf {
        loop {
            let n = self.next_scratch.fetch_add(1, Ordering::Relaxed);
            let dir = self.home().join(format!("scratch-{n}"));
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // Made by an FTP client.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("creating {}: {e}", dir.display()),
            }
            let owned = std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid))
                .map_err(|e| HarnessError::io(format!("changing the owner of {}", dir.display()), e))
                .and_then(|()| set_mode(&dir, 0o755));
            if let Err(e) = owned {
                panic!("{e}");
            }
            return dir;
        }
    }

    /// With [`tls`](VsftpdBuilder::tls): the server's self-signed certificate
    /// (PEM), to trust as the CA (`curl --cacert`). `None` without TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// vsftpd's log so far (every command and reply, `log_ftp_protocol`, and
    /// each transfer), then what it wrote to stderr, if anything; useful in
    /// assertion messages.
    pub fn log(&self) -> String {
        server_log(&self.log_path, &self.stderr_path)
    }

    /// Kills vsftpd and every session it started, as a host that dies:
    /// connections drop and the port refuses new ones. Calling it again does
    /// nothing.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        kill_and_reap(&mut self.child)
    }

    /// Freezes (`true`, SIGSTOP) or resumes (`false`, SIGCONT) vsftpd and
    /// every session: while frozen, connections stay open (the kernel even
    /// accepts new ones) but nothing is answered, as from a hung server.
    pub fn freeze(&self, frozen: bool) -> Result<(), HarnessError> {
        let Some(pid) = self.child.as_ref().map(Child::id) else { return Ok(()) };
        process::freeze_tree(pid, frozen).map_err(|e| HarnessError::io("signalling vsftpd's processes", e))
    }

    fn start_with(builder: VsftpdBuilder) -> Result<Vsftpd, HarnessError> {
        let vsftpd = programs::find("vsftpd", "vsftpd")?;
        let openssl = programs::find("openssl", "openssl")?;
        for line in &builder.extra_config {
            if line.contains(['\n', '\r']) {
                return Err(HarnessError::Config(format!(
                    "config line {line:?} spans several lines; add each separately"
                )));
            }
        }
        if let Some(ns) = &builder.netns {
            // Without this, a missing namespace shows up as ip's complaint
            // in a Start error.
            netns::check(&programs::find("ip", "iproute2")?, ns)?;
        }
        let ip = builder.netns.map_or(Ipv4Addr::LOCALHOST, |ns| ns.addr());

        let dir = tempfile::Builder::new()
            .prefix("tether-vsftpd-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating vsftpd's temporary directory", e))?;
        // vsftpd chroots its unprivileged helpers into an empty directory
        // that nobody can write to.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).map_err(|e| HarnessError::io("creating vsftpd's empty directory", e))?;
        set_mode(&empty, 0o755)?;

        let (uid, gid) = free_ids()?;
        let home = make_home(uid, gid)?;
        let password = format!("tether-{:016x}", random_u64());
        let hash = hash_password(&openssl, &password)?;
        let passwd = dir.path().join("passwd");
        let entry = format!("{USER}:x:{uid}:{gid}:tether test FTP login:{}:/bin/sh", home.path().display());
        write_file(&passwd, &with_entry(&read_to_string(Path::new("/etc/passwd"))?, &entry), 0o644)?;
        let group = dir.path().join("group");
        write_file(&group, &with_entry(&read_to_string(Path::new("/etc/group"))?, &format!("{USER}:x:{gid}:")), 0o644)?;
        let shadow = dir.path().join("shadow");
        write_file(&shadow, &shadow_with_password(&read_to_string(Path::new("/etc/shadow"))?, USER, &hash), 0o600)?;
        let mounts = [
            (passwd.as_path(), Path::new("/etc/passwd")),
            (&group, Path::new("/etc/group")),
            (&shadow, Path::new("/etc/shadow")),
        ];

        let tls = if builder.tls { Some(make_certificate(&openssl, dir.path(), ip)?) } else { None };
        let log_path = dir.path().join("vsftpd.log");
        let stderr_path = dir.path().join("stderr.log");
        let config_path = dir.path().join("vsftpd.conf");
        let settings = Settings { ip, empty: &empty, log_path: &log_path, tls: tls.as_ref() };

        let mut last_error = None;
        for _ in 0..BIND_ATTEMPTS {
            // Bound in the test process's namespace: a port free there is
            // almost always free in another namespace too, and the retry
            // covers the rest.
            let port = free_port()?;
            write_file(&config_path, &settings.render(&builder, port), 0o600)?;
            let argv = in_private_mounts(&mounts, vec![vsftpd.clone().into(), config_path.clone().into()])?;
            // `ip netns exec` execs its program, so the child is still vsftpd.
            let mut command = match &builder.netns {
                Some(ns) => netns::command_in(ns, &argv[0]),
                None => Command::new(&argv[0]),
            };
            command.args(&argv[1..]);
            // vsftpd reports a fatal error ("500 OOPS: …") on fd 0, where an
            // inetd would have put the client, so stdin goes to the log too.
            let log = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&stderr_path)
                .map_err(|e| HarnessError::io("creating vsftpd's stderr log", e))?;
            let clone = |file: &File| file.try_clone().map_err(|e| HarnessError::io("duplicating a log file", e));
            command.stdin(clone(&log)?).stdout(clone(&log)?).stderr(log);
            let child = command.spawn().map_err(|e| HarnessError::io(format!("starting {}", vsftpd.display()), e))?;
            let mut child = Some(child);
            let addr = SocketAddrV4::new(ip, port);
            match wait_ready(&mut child, addr, builder.netns.as_ref(), &log_path, &stderr_path) {
                Ok(()) => {
                    return Ok(Vsftpd {
                        child,
                        ip,
                        port,
                        password,
                        uid,
                        gid,
                        ca_file: tls.map(|tls| tls.cert),
                        log_path,
                        stderr_path,
                        next_scratch: AtomicU32::new(0),
                        home,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    kill_and_reap(&mut child)?;
                    // Another process took the port after `free_port`
                    // released it: try another one.
                    if !read_log(&stderr_path).contains(BIND_FAILED) {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::Start { reason: "no attempt made".into(), log: String::new() }))
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Waits until a connection to `addr` (made from inside `netns`, if given)
/// gets a line starting with `220` from this vsftpd: its log shows the
/// connection, so the greeting is not another server's that took the port.
fn wait_ready(
    child: &mut Option<Child>,
    addr: SocketAddrV4,
    netns: Option<&Namespace>,
    log_path: &Path,
    stderr_path: &Path,
) -> Result<(), HarnessError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = SocketAddr::V4(addr);
    let failed = |reason: String| HarnessError::Start { reason, log: server_log(log_path, stderr_path) };
    let mut greeted_elsewhere = false;
    loop {
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => {}
            Some(Ok(Some(status))) => {
                *child = None;
                return Err(failed(format!("vsftpd exited ({status})")));
            }
            Some(Err(e)) => return Err(HarnessError::io("checking on vsftpd", e)),
            None => return Err(failed("vsftpd was already stopped".into())),
        }
        let stream = match netns {
            Some(ns) => netns::connect_from(ns, addr, Duration::from_millis(500)),
            None => TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        };
        // An error is vsftpd closing the connection (exiting) or being slow:
        // look again.
        if let Ok(line) = stream.and_then(read_greeting) {
            if !line.starts_with("220") {
                return Err(failed(format!("unexpected greeting {line:?} from {addr}")));
            }
            // vsftpd logs the connection before it greets.
            if read_log(log_path).contains(CONNECTED) {
                return Ok(());
            }
            greeted_elsewhere = true;
        }
        if Instant::now() >= deadline {
            let reason = if greeted_elsewhere {
                format!(
                    "{addr} answers 220 but vsftpd's log shows no connection: another server has the port, \
                     or a config line turned vsftpd's log off"
                )
            } else {
                format!("no 220 greeting from {addr} after {} s", START_TIMEOUT.as_secs())
            };
            return Err(failed(reason));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// vsftpd's log file, then its stderr if it wrote anything.
fn server_log(log_path: &Path, stderr_path: &Path) -> String {
    let mut log = read_log(log_path);
    let stderr = read_log(stderr_path);
    if !stderr.is_empty() {
        log.push_str("\n--- vsftpd's stderr ---\n");
        log.push_str(&stderr);
    }
    log
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

/// The certificate and key of a TLS server.
struct Tls {
    cert: PathBuf,
    key: PathBuf,
}

/// A self-signed RSA-2048 certificate for `localhost`, `127.0.0.1` and `ip`,
/// marked as no CA (`CA:FALSE`) and for servers only. A new key each time
/// (about 0.2 s), so one server's certificate never vouches for another's.
fn make_certificate(openssl: &Path, dir: &Path, ip: Ipv4Addr) -> Result<Tls, HarnessError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut san = String::from("subjectAltName=DNS:localhost,IP:127.0.0.1");
    if ip != Ipv4Addr::LOCALHOST {
        let _ = write!(san, ",IP:{ip}");
    }
    let out = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-days", "30", "-subj", "/CN=tether test vsftpd", "-addext"])
        .arg(san)
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=digitalSignature,keyEncipherment"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("running {}", openssl.display()), e))?;
    if !out.status.success() {
        return Err(HarnessError::Helper {
            program: openssl.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    set_mode(&key, 0o600)?;
    set_mode(&cert, 0o644)?;
    Ok(Tls { cert, key })
}

/// The paths and addresses of `vsftpd.conf` besides the builder's settings.
struct Settings<'a> {
    ip: Ipv4Addr,
    empty: &'a Path,
    log_path: &'a Path,
    tls: Option<&'a Tls>,
}

impl Settings<'_> {
    fn render(&self, builder: &VsftpdBuilder, port: u16) -> String {
        let pasv_min =
            PASV_FIRST + u16::try_from(random_u64() % u64::from(PASV_END - PASV_FIRST - PASV_PORTS)).unwrap_or(0);
        let mut config = String::from("# Written by tether-test-servers for one test.\n");
        let mut line = |text: String| {
            config.push_str(&text);
            config.push('\n');
        };
        // Standalone, in the foreground: the child we hold is the listener.
        line("listen=YES".into());
        line("listen_ipv6=NO".into());
        line(format!("listen_address={}", self.ip));
        line(format!("listen_port={port}"));
        line("background=NO".into());
        // The sandbox kills sessions for system calls that libraries make on
        // newer systems than vsftpd knows.
        line("seccomp_sandbox=NO".into());
        line("anonymous_enable=NO".into());
        line("local_enable=YES".into());
        line("write_enable=YES".into());
        line("local_umask=022".into());
        line("chmod_enable=YES".into());
        line("mdtm_write=YES".into());
        line("chroot_local_user=NO".into());
        line("pasv_enable=YES".into());
        line(format!("pasv_min_port={pasv_min}"));
        line(format!("pasv_max_port={}", pasv_min + PASV_PORTS - 1));
        if let Some(address) = builder.pasv_address {
            line(format!("pasv_address={address}"));
            line("pasv_addr_resolve=NO".into());
        }
        line("pam_service_name=vsftpd".into());
        line(format!("secure_chroot_dir={}", self.empty.display()));
        line("utf8_filesystem=YES".into());
        // No limits on sessions: tests open many, all from one address.
        line("max_clients=0".into());
        line("max_per_ip=0".into());
        line("log_ftp_protocol=YES".into());
        line("xferlog_enable=YES".into());
        line("xferlog_std_format=NO".into());
        line(format!("vsftpd_log_file={}", self.log_path.display()));
        // Numeric owners in listings: the login's name exists only in
        // vsftpd's mount namespace.
        line("hide_ids=NO".into());
        line("text_userdb_names=NO".into());
        line("use_localtime=NO".into());
        // vsftpd pauses 1 s before a "530 Login incorrect" (on top of
        // pam_unix's 2 s); tests of wrong passwords would wait it out.
        line("delay_failed_login=0".into());
        line("idle_session_timeout=600".into());
        line("data_connection_timeout=300".into());
        line(format!("ftpd_banner={BANNER}"));
        if let Some(tls) = self.tls {
            line("ssl_enable=YES".into());
            line(format!("rsa_cert_file={}", tls.cert.display()));
            line(format!("rsa_private_key_file={}", tls.key.display()));
            line("force_local_logins_ssl=YES".into());
            line("force_local_data_ssl=YES".into());
            line("require_ssl_reuse=YES".into());
            // vsftpd 3.0.3 has no ssl_tlsv1_2 (TLS 1.2 and 1.3 are always
            // on); these turn the old protocols off.
            line("ssl_sslv2=NO".into());
            line("ssl_sslv3=NO".into());
            line("ssl_ciphers=HIGH".into());
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

/// The first id from [`FIRST_ID`] that is neither a uid in `/etc/passwd` nor
/// a gid in `/etc/group`, as `(uid, gid)`.
fn free_ids() -> Result<(u32, u32), HarnessError> {
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

/// The login's home: a temporary directory of its own, mode 0755, owned by
/// `uid`, under directories everybody may enter.
fn make_home(uid: u32, gid: u32) -> Result<TempDir, HarnessError> {
    let home = tempfile::Builder::new()
        .prefix("tether-vsftpd-home-")
        .tempdir()
        .map_err(|e| HarnessError::io("creating the FTP login's home directory", e))?;
    let path = home.path();
    if path.to_string_lossy().contains([':', '\n']) {
        return Err(HarnessError::Config(format!(
            "the home directory {} cannot go into /etc/passwd; set TMPDIR to a plain directory",
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

/// `/etc/passwd` or `/etc/group` text without any entry of [`USER`], plus
/// `entry`.
fn with_entry(text: &str, entry: &str) -> String {
    let mut out: String =
        text.lines().filter(|line| line.split(':').next() != Some(USER)).flat_map(|line| [line, "\n"]).collect();
    out.push_str(entry);
    out.push('\n');
    out
}

/// 64 random bits: std seeds the keys of each `RandomState` at random.
fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
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
        let settings =
            Settings { ip: Ipv4Addr::LOCALHOST, empty: Path::new("/e"), log_path: Path::new("/l"), tls: None };
        for _ in 0..200 {
            let config = settings.render(&VsftpdBuilder::default(), 2121);
            let value = |key: &str| -> u16 {
                let line = config.lines().find(|line| line.starts_with(key)).expect(key);
                line[key.len()..].parse().expect(key)
            };
            let (min, max) = (value("pasv_min_port="), value("pasv_max_port="));
            assert!(min >= PASV_FIRST && max < PASV_END && max - min + 1 == PASV_PORTS, "{min}..={max}");
        }
    }
}
