//! Telnet servers: busybox `telnetd`, and inetutils `telnetd` behind socat
//! (it is an inetd service and cannot listen by itself).

use std::ffi::OsString;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::netns::{self, Namespace};
use crate::programs;
use crate::sshd::{
    free_port, hash_password, in_private_mounts, kill_and_reap, read_log, read_to_string, shadow_with_password,
    write_file,
};

/// How long a telnetd gets to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Which telnet server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelnetdKind {
    /// busybox's `telnetd` (Debian's `busybox-static`): few options, a pty per session.
    Busybox,
    /// GNU inetutils' `telnetd`, started per connection by socat: negotiates
    /// a dozen options, LINEMODE, NEW-ENVIRON and TIMING-MARK among them.
    Inetutils,
}

/// Configures a [`Telnetd`] before starting it.
#[derive(Debug, Clone)]
pub struct TelnetdBuilder {
    kind: TelnetdKind,
    login: Option<(String, String)>,
    netns: Option<Namespace>,
}

impl TelnetdBuilder {
    /// Requires a login as the existing system `user` with `password`.
    /// As for sshd's password logins, the system's password database is not
    /// touched: the server runs in a private mount namespace with a copy of
    /// `/etc/shadow` holding this password (needs root, `unshare`, `mount`
    /// and `openssl`). The login program is busybox's `login`.
    /// Without it, a connection starts `/bin/sh` at once.
    pub fn login(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.login = Some((user.into(), password.into()));
        self
    }

    /// Runs the server inside one of the hop tests' network namespaces,
    /// listening on that namespace's address.
    pub fn netns(mut self, ns: Namespace) -> Self {
        self.netns = Some(ns);
        self
    }

    /// Starts the server; it is stopped when the handle drops.
    pub fn start(self) -> Result<Telnetd, HarnessError> {
        Telnetd::start_with(self)
    }
}

/// A telnet server on a loopback (or namespace) ephemeral port.
#[derive(Debug)]
pub struct Telnetd {
    child: Option<Child>,
    ip: Ipv4Addr,
    port: u16,
    kind: TelnetdKind,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Telnetd {
    /// A builder for a server of `kind`.
    pub fn builder(kind: TelnetdKind) -> TelnetdBuilder {
        TelnetdBuilder { kind, login: None, netns: None }
    }

    /// The address it listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which server it is.
    pub fn kind(&self) -> TelnetdKind {
        self.kind
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Stops the server and every session it started (their shells and
    /// commands too), as a host that dies does.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        kill_and_reap(&mut self.child)
    }

    fn start_with(builder: TelnetdBuilder) -> Result<Telnetd, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("tether-telnetd-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating telnetd's temporary directory", e))?;
        let busybox = programs::find("busybox", "busybox-static")?;
        // The login program: busybox's own `login` applet (a link named
        // `login`), which checks /etc/shadow, or a shell at once.
        let login_program = match &builder.login {
            Some(_) => {
                let link = dir.path().join("login");
                std::os::unix::fs::symlink(&busybox, &link)
                    .map_err(|e| HarnessError::io("linking busybox's login applet", e))?;
                link
            }
            None => PathBuf::from("/bin/sh"),
        };
        let shadow = match &builder.login {
            Some((user, password)) => Some(private_shadow(dir.path(), user, password)?),
            None => None,
        };
        let ip = builder.netns.map_or(Ipv4Addr::LOCALHOST, |ns| ns.addr());
        let log_path = dir.path().join("telnetd.log");
        // One attempt: another process taking the port between `free_port`
        // and the bind is rare, and shows as a start error naming the port.
        let port = free_port()?;
        let mut argv: Vec<OsString> = match builder.kind {
            TelnetdKind::Busybox => {
                if !has_telnetd_applet(&busybox) {
                    return Err(HarnessError::MissingProgram { program: "busybox telnetd", package: "busybox-static" });
                }
                let bind = format!("{ip}:{port}");
                let mut argv: Vec<OsString> = vec![busybox.clone().into(), "telnetd".into(), "-F".into()];
                argv.extend(["-b".into(), bind.into(), "-l".into(), login_program.into_os_string()]);
                argv
            }
            TelnetdKind::Inetutils => {
                let socat = programs::find("socat", "socat")?;
                let telnetd = programs::first_of(&["/usr/sbin/telnetd"], "telnetd", "inetutils-telnetd")?;
                let listen = format!("TCP-LISTEN:{port},bind={ip},fork,reuseaddr");
                // -h: no banner naming this machine; -E: the login program.
                let exec = format!("EXEC:{} -h -E {},stderr", telnetd.display(), login_program.display());
                vec![socat.into(), listen.into(), exec.into()]
            }
        };
        if let Some(shadow) = &shadow {
            argv = in_private_mounts(&[(shadow, Path::new("/etc/shadow"))], argv)?;
        }
        let mut command = match &builder.netns {
            Some(ns) => netns::command_in(ns, &argv[0]),
            None => Command::new(&argv[0]),
        };
        command.args(&argv[1..]);
        let log = std::fs::File::create(&log_path).map_err(|e| HarnessError::io("creating telnetd's log", e))?;
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = command.spawn().map_err(|e| HarnessError::io("starting telnetd", e))?;
        let mut telnetd = Telnetd { child: Some(child), ip, port, kind: builder.kind, log_path, _dir: dir };
        telnetd.wait_ready(builder.netns.as_ref())?;
        Ok(telnetd)
    }

    /// Waits until a connection gets the server's first negotiation (`IAC`).
    fn wait_ready(&mut self, netns: Option<&Namespace>) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::V4(SocketAddrV4::new(self.ip, self.port));
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(HarnessError::Start { reason: format!("telnetd exited ({status})"), log: self.log() });
            }
            let stream = match netns {
                Some(ns) => netns::connect_from(ns, addr, Duration::from_millis(500)),
                None => TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
            };
            if let Ok(mut stream) = stream {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut first = [0u8; 1];
                if matches!(stream.read(&mut first), Ok(1)) && first[0] == 0xff {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Start {
                    reason: format!("no telnet negotiation from {addr} after {} s", START_TIMEOUT.as_secs()),
                    log: self.log(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Telnetd {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Debian's `busybox` package leaves telnetd out; `busybox-static` has it.
fn has_telnetd_applet(busybox: &Path) -> bool {
    Command::new(busybox)
        .arg("--list")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).lines().any(|applet| applet == "telnetd"))
}

/// A copy of `/etc/shadow` in which `user` has `password`.
fn private_shadow(dir: &Path, user: &str, password: &str) -> Result<PathBuf, HarnessError> {
    let openssl = programs::find("openssl", "openssl")?;
    let hash = hash_password(&openssl, password)?;
    let shadow = dir.join("shadow");
    write_file(&shadow, &shadow_with_password(&read_to_string(Path::new("/etc/shadow"))?, user, &hash), 0o600)?;
    Ok(shadow)
}
