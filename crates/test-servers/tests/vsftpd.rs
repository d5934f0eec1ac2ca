//! The vsftpd harness against raw FTP dialogues and the distribution's curl.
//!
//! Needs root (vsftpd's login lives in a private mount namespace), vsftpd,
//! openssl and curl. [`serves_inside_a_namespace`] also needs the hop
//! topology (`scripts/netns up`, which scripts/test runs).

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tether_test_servers::netns::{self, HOP1};
use tether_test_servers::{HarnessError, Vsftpd};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One FTP reply: its code and its whole text (every line of a multi-line
/// reply, CR LF included).
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

/// A control connection, spoken by hand.
struct Ftp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Ftp {
    /// Connects and returns the connection with the greeting.
    fn connect(addr: SocketAddr) -> (Ftp, Reply) {
        Self::over(TcpStream::connect_timeout(&addr, TIMEOUT).unwrap_or_else(|e| panic!("connect to {addr}: {e}")))
    }

    fn over(stream: TcpStream) -> (Ftp, Reply) {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut ftp = Ftp { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let greeting = ftp.reply();
        (ftp, greeting)
    }

    fn reply(&mut self) -> Reply {
        let mut text = String::new();
        let first = self.line();
        let code: u16 = first.get(..3).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad reply {first:?}"));
        text.push_str(&first);
        if first.as_bytes().get(3) == Some(&b'-') {
            // A multi-line reply ends with a line "CODE text".
            let end = format!("{code} ");
            loop {
                let line = self.line();
                text.push_str(&line);
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        Reply { code, text }
    }

    fn line(&mut self) -> String {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).expect("read a reply line");
        assert!(line.ends_with(b"\r\n"), "reply line without CR LF: {line:?}");
        String::from_utf8(line).expect("a UTF-8 reply")
    }

    fn cmd(&mut self, command: &str) -> Reply {
        self.writer.write_all(format!("{command}\r\n").as_bytes()).expect("send a command");
        self.reply()
    }

    fn login(&mut self, server: &Vsftpd) {
        let user = self.cmd(&format!("USER {}", server.user()));
        assert_eq!(user.code, 331, "{user:?}\n{}", server.log());
        let pass = self.cmd(&format!("PASS {}", server.password()));
        assert_eq!(pass.code, 230, "{pass:?}\n{}", server.log());
    }

    /// `PASV`: the address and port of the reply.
    fn pasv(&mut self) -> SocketAddrV4 {
        let reply = self.cmd("PASV");
        assert_eq!(reply.code, 227, "{reply:?}");
        let inner = &reply.text[reply.text.find('(').unwrap() + 1..reply.text.find(')').unwrap()];
        let n: Vec<u8> = inner.split(',').map(|n| n.parse().unwrap()).collect();
        assert_eq!(n.len(), 6, "{reply:?}");
        SocketAddrV4::new(Ipv4Addr::new(n[0], n[1], n[2], n[3]), u16::from(n[4]) << 8 | u16::from(n[5]))
    }
}

fn start() -> Vsftpd {
    Vsftpd::start().expect("start vsftpd")
}

/// The FTP URL of `path` (under the login's home, to which URL paths are
/// relative).
fn url(server: &Vsftpd, path: &Path) -> String {
    let relative = path.strip_prefix(server.home()).expect("a path under the home");
    format!("ftp://127.0.0.1:{}/{}", server.port(), relative.display())
}

fn curl(server: &Vsftpd, args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--user", &format!("{}:{}", server.user(), server.password())])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl (apt-get install curl)")
}

fn explain(out: &Output, server: &Vsftpd) -> String {
    format!("{}\ncurl: {}\nvsftpd log:\n{}", out.status, String::from_utf8_lossy(&out.stderr), server.log())
}

/// Every byte value, a few times over, so a transfer that is not binary
/// shows.
fn payload() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 256) as u8).chain(*b"\r\n\n\r").collect()
}

/// Uploads with `curl -T` into a scratch directory, downloads with
/// `curl -o`, and checks both copies against the original.
fn curl_round_trip(server: &Vsftpd, tls_args: &[&str]) {
    let scratch = server.scratch_dir();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source");
    fs::write(&source, payload()).unwrap();
    let remote = scratch.join("x");
    let up = curl(server, &[tls_args, &["-T", source.to_str().unwrap(), &url(server, &remote)]].concat());
    assert!(up.status.success(), "upload: {}", explain(&up, server));
    assert_eq!(fs::read(&remote).unwrap(), payload(), "the file on the server");
    assert_eq!(fs::metadata(&remote).unwrap().uid(), server.uid(), "written as the login");
    let back = local.path().join("back");
    let down = curl(server, &[tls_args, &["-o", back.to_str().unwrap(), &url(server, &remote)]].concat());
    assert!(down.status.success(), "download: {}", explain(&down, server));
    assert_eq!(fs::read(&back).unwrap(), payload(), "the downloaded copy");
}

fn addr(server: &Vsftpd) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(server.ip(), server.port()))
}

fn read_all(mut stream: TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut data = Vec::new();
    stream.read_to_end(&mut data).expect("read the data connection");
    data
}

#[test]
fn plain_login_and_a_passive_transfer() {
    let server = start();
    assert_eq!(server.ip(), Ipv4Addr::LOCALHOST);
    assert_eq!(server.user(), "tetherftp");
    assert!(server.ca_file().is_none());

    let (mut ftp, greeting) = Ftp::connect(addr(&server));
    assert_eq!(greeting.text, "220 tether test vsftpd\r\n");
    assert_eq!(ftp.cmd(&format!("USER {}", server.user())).code, 331);
    assert_eq!(ftp.cmd("PASS wrong").code, 530, "a wrong password");
    drop(ftp);

    let (mut ftp, _) = Ftp::connect(addr(&server));
    ftp.login(&server);
    let pwd = ftp.cmd("PWD");
    assert_eq!(pwd.text, format!("257 \"{}\" is the current directory\r\n", server.home().display()));
    assert_eq!(ftp.cmd("TYPE I").code, 200);

    let scratch = server.scratch_dir();
    let data_addr = ftp.pasv();
    assert_eq!(*data_addr.ip(), Ipv4Addr::LOCALHOST);
    let mut data = TcpStream::connect_timeout(&data_addr.into(), TIMEOUT).unwrap();
    // FTP paths are the real paths: no chroot.
    let remote = scratch.join("stored");
    assert_eq!(ftp.cmd(&format!("STOR {}", remote.display())).code, 150);
    data.write_all(&payload()).unwrap();
    drop(data);
    let done = ftp.reply();
    assert_eq!(done.code, 226, "{done:?}");
    assert_eq!(fs::read(&remote).unwrap(), payload());
    let meta = fs::metadata(&remote).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (server.uid(), server.gid()));
    // local_umask=022.
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);

    let data = TcpStream::connect_timeout(&ftp.pasv().into(), TIMEOUT).unwrap();
    assert_eq!(ftp.cmd(&format!("NLST {}", scratch.display())).code, 150);
    assert_eq!(read_all(data), format!("{}\r\n", remote.display()).as_bytes());
    assert_eq!(ftp.reply().code, 226);
    assert_eq!(ftp.cmd("QUIT").code, 221);
    let log = server.log();
    assert!(log.contains("[tetherftp] OK LOGIN: Client \"127.0.0.1\""), "{log}");
}

#[test]
fn passive_replies_name_the_pasv_address() {
    let server = Vsftpd::builder().pasv_address(Ipv4Addr::new(198, 19, 7, 7)).start().expect("start vsftpd");
    let (mut ftp, _) = Ftp::connect(addr(&server));
    ftp.login(&server);
    let reply = ftp.cmd("PASV");
    assert!(reply.text.starts_with("227 Entering Passive Mode (198,19,7,7,"), "{reply:?}");
    // The data port still listens on the server's own address, as behind NAT.
    let data_addr = ftp.pasv();
    let data = TcpStream::connect_timeout(&SocketAddrV4::new(server.ip(), data_addr.port()).into(), TIMEOUT).unwrap();
    assert_eq!(ftp.cmd("LIST").code, 150);
    read_all(data);
    assert_eq!(ftp.reply().code, 226);
}

#[test]
fn scratch_dirs_are_new_empty_and_the_logins() {
    let server = start();
    let home = fs::metadata(server.home()).unwrap();
    assert!(server.home().is_absolute());
    assert_eq!((home.uid(), home.gid(), home.mode() & 0o7777), (server.uid(), server.gid(), 0o755));
    assert!(server.uid() >= 61000, "{}", server.uid());

    let first = server.scratch_dir();
    let second = server.scratch_dir();
    assert_ne!(first, second);
    for dir in [&first, &second] {
        assert_eq!(dir.parent(), Some(server.home()));
        let meta = fs::metadata(dir).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (server.uid(), server.gid(), 0o755));
        assert_eq!(fs::read_dir(dir).unwrap().count(), 0);
    }
}

#[test]
fn curl_uploads_and_downloads() {
    let server = start();
    curl_round_trip(&server, &[]);
}

#[test]
fn tls_is_required_and_the_certificate_verifies() {
    let server = Vsftpd::builder().tls().start().expect("start vsftpd with TLS");
    let ca = server.ca_file().expect("a TLS server has a certificate");

    let (mut ftp, greeting) = Ftp::connect(addr(&server));
    assert_eq!(greeting.code, 220);
    let user = ftp.cmd(&format!("USER {}", server.user()));
    assert_eq!(user.text, "530 Non-anonymous sessions must use encryption.\r\n", "a login before AUTH TLS");
    // vsftpd then hangs up.
    let mut rest = Vec::new();
    assert_eq!(ftp.reader.read_to_end(&mut rest).ok(), Some(0), "{rest:?}");

    let (mut ftp, _) = Ftp::connect(addr(&server));
    let feat = ftp.cmd("FEAT");
    assert!(feat.text.contains("\r\n AUTH TLS\r\n"), "{feat:?}");
    assert_eq!(ftp.cmd("AUTH TLS").code, 234);
    drop(ftp);

    // Without TLS curl cannot log in.
    let scratch = server.scratch_dir();
    let out = curl(&server, &["--list-only", &(url(&server, &scratch) + "/")]);
    assert!(!out.status.success(), "a login without TLS: {}", explain(&out, &server));

    // curl trusts the self-signed server certificate as its CA: the name
    // 127.0.0.1 matches the SAN, and CA:FALSE is no obstacle for a
    // certificate that is itself the trust anchor.
    let tls_args = ["--ssl-reqd", "--cacert", ca.to_str().unwrap()];
    curl_round_trip(&server, &tls_args);

    // require_ssl_reuse: a data connection that does not resume the control
    // connection's TLS session is refused.
    let out =
        curl(&server, &[&tls_args[..], &["--no-sessionid", "--list-only", &(url(&server, &scratch) + "/")]].concat());
    assert!(!out.status.success(), "a data connection without session reuse: {}", explain(&out, &server));
    assert!(server.log().contains("522 SSL connection failed: session reuse required"), "{}", server.log());

    let text = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(ca).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for expected in ["CA:FALSE", "DNS:localhost", "IP Address:127.0.0.1", "TLS Web Server Authentication"] {
        assert!(text.contains(expected), "{expected} missing from the certificate:\n{text}");
    }
}

#[test]
fn a_frozen_server_answers_nothing_and_a_killed_one_refuses() {
    let mut server = start();
    server.freeze(true).unwrap();
    // The kernel still completes the handshake; the greeting never comes.
    let mut frozen = TcpStream::connect_timeout(&addr(&server), TIMEOUT).expect("a frozen server's port accepts");
    frozen.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let err = frozen.read(&mut [0u8; 8]).expect_err("a frozen server sent something");
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
    server.freeze(false).unwrap();
    // The connection made while frozen is served once thawed.
    let (_, greeting) = Ftp::over(frozen);
    assert_eq!(greeting.code, 220);

    let (mut ftp, _) = Ftp::connect(addr(&server));
    ftp.login(&server);
    server.kill().unwrap();
    // The session died with the listener.
    let mut rest = Vec::new();
    assert_eq!(ftp.reader.read_to_end(&mut rest).ok(), Some(0), "{rest:?}");
    let err = TcpStream::connect_timeout(&addr(&server), TIMEOUT).expect_err("the killed server still accepts");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    server.kill().unwrap();
}

#[test]
fn config_lines_come_last_and_bad_ones_fail_the_start() {
    let server = Vsftpd::builder().config("ftpd_banner=another banner").start().expect("start vsftpd");
    let (_, greeting) = Ftp::connect(addr(&server));
    assert_eq!(greeting.text, "220 another banner\r\n");

    match Vsftpd::builder().config("no_such_option=YES").start() {
        Err(HarnessError::Start { log, .. }) => {
            assert!(log.contains("500 OOPS: unrecognised variable in config file: no_such_option"), "{log}");
        }
        other => panic!("an unknown option started: {other:?}"),
    }
}

#[test]
fn the_system_files_are_untouched() {
    let files = ["/etc/passwd", "/etc/group", "/etc/shadow"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    let server = start();
    let (mut ftp, _) = Ftp::connect(addr(&server));
    ftp.login(&server);
    // The login exists only in vsftpd's mount namespace.
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.lines().any(|line| line.starts_with("tetherftp:")), "{passwd}");
    drop(ftp);
    drop(server);
    let after: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    assert!(before == after, "a system file changed");
}

#[test]
fn serves_inside_a_namespace() {
    if let Err(e) = netns::require() {
        panic!("{e}");
    }
    let server = Vsftpd::builder().netns(HOP1).start().expect("start vsftpd in hop1");
    assert_eq!(server.ip(), HOP1.addr());
    // HOP1 is reachable from the test process.
    let (mut ftp, greeting) = Ftp::connect(addr(&server));
    assert_eq!(greeting.code, 220);
    ftp.login(&server);
    let data_addr = ftp.pasv();
    assert_eq!(*data_addr.ip(), HOP1.addr());
    let data = TcpStream::connect_timeout(&data_addr.into(), TIMEOUT).unwrap();
    assert_eq!(ftp.cmd("LIST").code, 150);
    read_all(data);
    assert_eq!(ftp.reply().code, 226);
    let connect = format!("CONNECT: Client \"{}\"", HOP1.previous_hop());
    assert!(server.log().contains(&connect), "{}", server.log());
}

#[test]
fn one_servers_certificate_does_not_vouch_for_another() {
    let [a, b] = [(); 2].map(|()| Vsftpd::builder().tls().start().expect("start vsftpd with TLS"));
    let a_ca = a.ca_file().unwrap().to_str().unwrap();
    let out = curl(&b, &["--ssl-reqd", "--cacert", a_ca, "--list-only", &format!("ftp://127.0.0.1:{}/", b.port())]);
    // 60: the peer's certificate cannot be verified.
    assert_eq!(out.status.code(), Some(60), "{}", explain(&out, &b));
}
