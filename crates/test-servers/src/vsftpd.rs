//! A private vsftpd: FTP, or explicit FTPS (`AUTH TLS`) with
//! [`VsftpdBuilder::tls`], for a login of its own.
//!
//! The login, `tetherftp`, exists only for the server: vsftpd runs in a
//! private mount namespace where copies of `/etc/passwd`, `/etc/group` and
//! `/etc/shadow` that add it are mounted over the real files. The system's
//! PAM service `vsftpd` (`pam_listfile` on `/etc/ftpusers`, `pam_shells`,
//! `pam_unix`) then accepts it like any local user.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU32;

use tempfile::TempDir;

use crate::ftpd::{
    BIND_ATTEMPTS, Readiness, USER, free_ids, make_home, passive_range, random_u64, server_log, wait_ready, with_entry,
};
use crate::netns::{self, Namespace};
use crate::sshd::{
    free_port, hash_password, in_private_mounts, kill_and_reap, read_log, read_to_string, set_mode,
    shadow_with_password, write_file,
};
use crate::{HarnessError, process, programs};

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
        crate::ftpd::scratch_dir(self.home(), &self.next_scratch, self.uid, self.gid)
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
        server_log("vsftpd", &self.log_path, &self.stderr_path)
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
        let home = make_home("tether-vsftpd-home-", uid, gid)?;
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
            // vsftpd logs each connection before it greets, so a greeting
            // without one in the log is another server's.
            let readiness = Readiness {
                server: "vsftpd",
                log: &|| server_log("vsftpd", &log_path, &stderr_path),
                greeted_by_us: &|_| read_log(&log_path).contains(CONNECTED),
                elsewhere_hint: "vsftpd's log shows no connection: another server has the port, \
                                 or a config line turned vsftpd's log off",
            };
            match wait_ready(&mut child, addr, builder.netns.as_ref(), &readiness) {
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
        let (pasv_min, pasv_max) = passive_range();
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
        line(format!("pasv_max_port={pasv_max}"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftpd::{PASV_END, PASV_FIRST, PASV_PORTS};

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
