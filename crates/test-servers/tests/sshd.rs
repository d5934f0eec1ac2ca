//! The sshd harness against the distribution's OpenSSH client.

use std::fs;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tether_test_servers::{HarnessError, LogLevel, Sshd};

/// `ssh` exactly as a user would run it, with an explicit known_hosts file.
fn ssh(sshd: &Sshd, known_hosts: &Path, remote_command: &str) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg("/dev/null")
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .arg("-i")
        .arg(sshd.client_key_path())
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg(remote_command)
        .stdin(Stdio::null())
        .output()
        .expect("run the OpenSSH client (apt-get install openssh-client)")
}

#[test]
fn openssh_client_runs_a_command() {
    let sshd = Sshd::start().expect("start sshd");
    let known_hosts = tempfile::NamedTempFile::new().unwrap();
    fs::write(known_hosts.path(), sshd.known_hosts_line() + "\n").unwrap();

    let out = ssh(&sshd, known_hosts.path(), "printf ok");
    assert_eq!(out.stdout, b"ok", "{}", sshd.explain(&out));
    assert_eq!(out.status.code(), Some(0), "{}", sshd.explain(&out));

    assert!(sshd.known_hosts_line().starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port())));
    assert_eq!(sshd.addr().to_string(), format!("127.0.0.1:{}", sshd.port()));
    assert!(sshd.client_public_key().starts_with("ssh-ed25519 "));
    sshd.stop().expect("stop sshd");
}

#[test]
fn ssh_command_helper_works() {
    let sshd = Sshd::start().expect("start sshd");
    let out = sshd.ssh_command("printf ok").output().unwrap();
    assert_eq!(out.stdout, b"ok", "{}", sshd.explain(&out));
    // ssh takes options only before the destination, so extra ones go after
    // `ssh_args`; AcceptEnv TETHER_* lets this variable through.
    let out = Command::new("ssh")
        .args(sshd.ssh_args())
        .args(["-o", "SetEnv=TETHER_PROBE=passed"])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("printf %s \"$TETHER_PROBE\"")
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"passed", "AcceptEnv TETHER_*: {}", sshd.explain(&out));
}

#[test]
fn wrong_host_key_is_refused() {
    let sshd = Sshd::start().expect("start sshd");
    let other = Sshd::start().expect("start a second sshd for its host key");
    let known_hosts = tempfile::NamedTempFile::new().unwrap();
    // The other server's key, filed under this server's address.
    fs::write(known_hosts.path(), format!("[127.0.0.1]:{} {}\n", sshd.port(), other.host_key_public())).unwrap();

    let out = ssh(&sshd, known_hosts.path(), "printf ok");
    assert_eq!(out.status.code(), Some(255), "{}", sshd.explain(&out));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"), "{stderr}");
}

#[test]
fn two_servers_run_side_by_side() {
    let first = Sshd::start().expect("start the first sshd");
    let second = Sshd::start().expect("start the second sshd");
    assert_ne!(first.port(), second.port());
    assert_ne!(first.host_key_public(), second.host_key_public());
    assert_ne!(first.dir(), second.dir());
    for sshd in [&first, &second] {
        let out = ssh(sshd, sshd.known_hosts_path(), "printf ok");
        assert_eq!(out.stdout, b"ok", "{}", sshd.explain(&out));
    }
}

#[test]
fn kill_makes_the_port_refuse_connections() {
    let mut sshd = Sshd::start().expect("start sshd");
    TcpStream::connect(sshd.addr()).expect("sshd accepts connections before the kill");
    sshd.kill().expect("kill sshd");
    assert_eq!(sshd.pid(), None);
    match TcpStream::connect(sshd.addr()) {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionRefused),
        Ok(_) => {
            // Tests run in parallel: another test's server may have been
            // given the freed port. It must not be this one, which the host
            // key tells apart (every server generates its own).
            let scan = std::process::Command::new("ssh-keyscan")
                .args(["-t", "ed25519", "-p", &sshd.port().to_string(), "127.0.0.1"])
                .output()
                .expect("ssh-keyscan (package openssh-client)");
            let blob = sshd.host_key_public().split_whitespace().nth(1).expect("key blob").to_string();
            assert!(!String::from_utf8_lossy(&scan.stdout).contains(&blob), "the killed sshd still answers");
        }
    }
    // Killing again, then stopping, is harmless.
    sshd.kill().unwrap();
    sshd.stop().unwrap();
}

#[test]
fn kill_drops_open_sessions() {
    let mut sshd = Sshd::start().expect("start sshd");
    let mut client = sshd.ssh_command("printf started; sleep 60").stdout(Stdio::piped()).spawn().unwrap();
    // Wait until the remote command runs, so the kill hits an open session.
    let mut stdout = client.stdout.take().unwrap();
    let mut started = [0u8; 7];
    std::io::Read::read_exact(&mut stdout, &mut started).expect("the remote command started");
    assert_eq!(&started, b"started");

    let killed_at = Instant::now();
    sshd.kill().unwrap();
    let status = client.wait().unwrap();
    assert!(killed_at.elapsed() < Duration::from_secs(10), "the client noticed only after {:?}", killed_at.elapsed());
    assert_eq!(status.code(), Some(255), "ssh exits 255 when the connection drops");
}

#[test]
fn drop_removes_the_directory_and_stops_the_server() {
    let sshd = Sshd::start().expect("start sshd");
    let dir = sshd.dir().to_path_buf();
    let addr = sshd.addr();
    drop(sshd);
    assert!(!dir.exists());
    assert_eq!(TcpStream::connect(addr).map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionRefused));
}

#[test]
fn builder_settings_reach_the_config() {
    let sshd = Sshd::builder()
        .max_sessions(3)
        .config_line("ClientAliveInterval 7")
        // The harness waits for an INFO line, so the quietest level still starts.
        .log_level(LogLevel::Info)
        .start()
        .expect("start sshd");
    let config = fs::read_to_string(sshd.config_path()).unwrap();
    assert!(config.contains("\nMaxSessions 3\n"), "{config}");
    assert!(config.ends_with("ClientAliveInterval 7\n"), "{config}");
    // sshd -T prints the configuration sshd actually uses.
    let effective = Command::new("/usr/sbin/sshd").arg("-T").arg("-f").arg(sshd.config_path()).output().unwrap();
    let effective = String::from_utf8_lossy(&effective.stdout).into_owned();
    assert!(effective.contains("\nmaxsessions 3\n"), "{effective}");
    assert!(effective.contains("\nclientaliveinterval 7\n"), "{effective}");
    assert!(effective.contains("\nloglevel INFO\n"), "{effective}");
}

#[test]
fn an_extra_client_key_is_accepted() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ecdsa");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("run ssh-keygen (apt-get install openssh-client)");
    assert!(keygen.success());
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();

    let sshd = Sshd::builder().authorize_key(public).start().expect("start sshd");
    let out = ssh_with_key(&sshd, &key);
    assert_eq!(out.stdout, b"ok", "{}", sshd.explain(&out));
    assert!(sshd.log().contains("Accepted publickey for root from 127.0.0.1 port"), "{}", sshd.log());
    assert!(sshd.log().contains(": ECDSA SHA256:"), "the ECDSA key, not the generated one, logged in:\n{}", sshd.log());

    // Without `authorize_key`, the same key is refused.
    let plain = Sshd::start().expect("start sshd");
    let out = ssh_with_key(&plain, &key);
    assert_eq!(out.status.code(), Some(255), "{}", plain.explain(&out));
}

fn ssh_with_key(sshd: &Sshd, key: &Path) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts_path().display()))
        .arg("-i")
        .arg(key)
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("printf ok")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Password and keyboard-interactive logins with `SSH_ASKPASS` answering.
#[test]
fn password_auth_uses_a_private_password() {
    let shadow_before = fs::read("/etc/shadow").ok();
    let sshd = Sshd::builder().password_auth("root", "tether-secret").start().expect("start sshd with password auth");

    let askpass = sshd.dir().join("askpass");
    fs::write(&askpass, "#!/bin/sh\nprintf '%s\\n' tether-secret\n").unwrap();
    fs::set_permissions(&askpass, fs::Permissions::from_mode(0o755)).unwrap();
    let wrong_askpass = sshd.dir().join("wrong-askpass");
    fs::write(&wrong_askpass, "#!/bin/sh\nprintf '%s\\n' wrong\n").unwrap();
    fs::set_permissions(&wrong_askpass, fs::Permissions::from_mode(0o755)).unwrap();

    let login = |method: &str, askpass: &Path| {
        Command::new("ssh")
            .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "NumberOfPasswordPrompts=1"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", sshd.known_hosts_path().display()))
            .arg("-o")
            .arg(format!("PreferredAuthentications={method}"))
            .args(["-o", "PubkeyAuthentication=no", "-p"])
            .arg(sshd.port().to_string())
            .arg("root@127.0.0.1")
            .arg("printf ok")
            // ssh asks the askpass program even without a terminal or DISPLAY.
            .env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for method in ["password", "keyboard-interactive"] {
        let out = login(method, &askpass);
        assert_eq!(out.stdout, b"ok", "{method}: {}", sshd.explain(&out));
        let out = login(method, &wrong_askpass);
        assert_eq!(out.status.code(), Some(255), "{method} with a wrong password: {}", sshd.explain(&out));
    }
    // Keys still work next to passwords.
    let out = sshd.ssh_command("printf ok").output().unwrap();
    assert_eq!(out.stdout, b"ok", "{}", sshd.explain(&out));
    drop(sshd);
    assert_eq!(fs::read("/etc/shadow").ok(), shadow_before, "the system's shadow file changed");
}

#[test]
fn a_missing_sshd_is_an_error_with_an_install_hint() {
    let err = Sshd::builder().sshd_program("/nonexistent/sbin/sshd").start().expect_err("started without sshd");
    assert!(matches!(err, HarnessError::MissingProgram { program: "sshd", package: "openssh-server" }));
    assert_eq!(err.to_string(), "sshd not found: install it with `apt-get install openssh-server`");
}

#[test]
fn a_bad_config_line_reports_sshds_stderr() {
    let err = Sshd::builder().config_line("NoSuchKeyword yes").start().expect_err("sshd accepted a bad keyword");
    let text = err.to_string();
    assert!(matches!(err, HarnessError::Start { .. }), "{text}");
    assert!(text.contains("NoSuchKeyword"), "the error should quote sshd's complaint: {text}");
}

#[test]
fn many_servers_start_in_parallel() {
    let handles: Vec<_> = (0..6).map(|_| thread::spawn(Sshd::start)).collect();
    let servers: Vec<Sshd> = handles.into_iter().map(|h| h.join().unwrap().expect("start sshd")).collect();
    let mut ports: Vec<u16> = servers.iter().map(Sshd::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
}

#[test]
fn the_sftp_subsystem_works() {
    let sshd = Sshd::start().expect("start sshd");
    fs::write(sshd.dir().join("hello.txt"), "hello over sftp").unwrap();
    let fetched = sshd.dir().join("fetched.txt");
    let batch = format!("get {} {}\n", sshd.dir().join("hello.txt").display(), fetched.display());
    let out = Command::new("sftp")
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts_path().display()))
        .arg("-i")
        .arg(sshd.client_key_path())
        // sftp spells the port option -P.
        .arg("-P")
        .arg(sshd.port().to_string())
        .args(["-b", "-"])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), batch.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run sftp (apt-get install openssh-client)");
    assert_eq!(out.status.code(), Some(0), "{}", sshd.explain(&out));
    assert_eq!(fs::read_to_string(&fetched).unwrap(), "hello over sftp");
}
