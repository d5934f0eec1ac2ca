//! The telnet transport against GNU inetutils' `telnetd`, which negotiates
//! far more than busybox's (LINEMODE, NEW-ENVIRON, TIMING-MARK, STATUS, …):
//! the client must refuse what it does not do and still run exact commands.

use std::sync::Arc;
use std::time::Duration;

use tether_core::{Command, Credential, ExitStatus, Host, HostConfig, OptionSource};
use tether_test_servers::{Telnetd, TelnetdBuilder, TelnetdKind};

// Linked, so the registry knows `telnet`.
use tether_transport_telnet as _;

const PASSWORD: &str = "tether-telnet-test";

/// Every test's bound: a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(60);

async fn start(builder: TelnetdBuilder) -> Telnetd {
    tokio::task::spawn_blocking(move || builder.start()).await.unwrap().unwrap_or_else(|e| panic!("{e}"))
}

fn host_for(telnetd: &Telnetd, login: bool) -> Arc<Host> {
    let mut config = HostConfig::new("dut", "telnet", "telnet");
    config.address = Some(telnetd.ip().to_string());
    config.port = Some(telnetd.port());
    config.credentials.push(Credential { login: "root".into(), password: PASSWORD.to_string().into() });
    config.options.set("telnet_options", "login", login, OptionSource::Default).unwrap();
    config.options.set("telnet_options", "connect_timeout", 15.0, OptionSource::Default).unwrap();
    Arc::new(Host::new(config).unwrap())
}

async fn exact_bytes_and_exit_codes(host: &Host) {
    let out = host.exec(&Command::shell("printf 'a\\000b\\377\\r\\n\\tz'; exit 7")).await.unwrap();
    assert_eq!(out.stdout, b"a\0b\xff\r\n\tz", "{:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status, ExitStatus::Code(7));
    let out = host.exec(&Command::argv(["printf", "%s|", "a b", "$HOME", "\u{e9}"])).await.unwrap();
    assert_eq!(out.stdout, "a b|$HOME|\u{e9}|".as_bytes());
    assert_eq!(out.status, ExitStatus::Code(0));
    let out = host.exec(&Command::shell("echo to-stderr >&2; false")).await.unwrap();
    assert_eq!(out.stdout, b"to-stderr\n");
    assert_eq!(out.status, ExitStatus::Code(1));
    let out = host.exec(&Command::shell("cat").stdin(b"line one\nline\xfftwo\r\n".to_vec())).await.unwrap();
    assert_eq!(out.stdout, b"line one\nline\xfftwo\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inetutils_without_login_runs_exact_commands() {
    tokio::time::timeout(LIMIT, async {
        let telnetd = start(Telnetd::builder(TelnetdKind::Inetutils)).await;
        let host = host_for(&telnetd, false);
        exact_bytes_and_exit_codes(&host).await;
    })
    .await
    .expect("hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inetutils_with_login_runs_exact_commands() {
    tokio::time::timeout(LIMIT, async {
        let telnetd = start(Telnetd::builder(TelnetdKind::Inetutils).login("root", PASSWORD)).await;
        let host = host_for(&telnetd, true);
        let out = host.exec(&Command::argv(["id", "-u"]).check(true)).await.unwrap();
        assert_eq!(out.stdout, b"0\n");
        exact_bytes_and_exit_codes(&host).await;
    })
    .await
    .expect("hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inetutils_interrupts_a_timed_out_command_and_keeps_the_session() {
    tokio::time::timeout(LIMIT, async {
        let telnetd = start(Telnetd::builder(TelnetdKind::Inetutils).login("root", PASSWORD)).await;
        let host = host_for(&telnetd, true);
        // The session's shell is the parent of every command.
        let shell = host.exec(&Command::shell("echo $PPID").check(true)).await.unwrap().stdout;
        let started = std::time::Instant::now();
        let err = host.exec(&Command::new("sleep").arg("30").timeout(Duration::from_millis(500))).await.unwrap_err();
        assert_eq!(err.kind(), tether_core::ErrorKind::Timeout, "{err}");
        // ^C ended it (no ^\, no closed session).
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        let after = host.exec(&Command::shell("echo $PPID").check(true)).await.unwrap().stdout;
        assert_eq!(after, shell, "a new session");
        let out = host.exec(&Command::shell("printf done")).await.unwrap();
        assert_eq!(out.stdout, b"done");
    })
    .await
    .expect("hung");
}
