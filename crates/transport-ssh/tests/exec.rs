//! Exec features beyond the shared conformance suite, against a real sshd:
//! terminals, the interactive shell, the environment with and without
//! `AcceptEnv`, another user or group through sudo, ssh-agent keys and
//! keepalives noticing a server that stopped answering.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_core::{Command, ErrorKind, ExitStatus, OptionSource, Pty, Transport};
use tether_test_servers::Sshd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// A connected transport for `sshd` (the tempdir holds `known_hosts`).
async fn transport_for(sshd: &Sshd) -> (std::sync::Arc<dyn Transport>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let connection = common::connect(common::host_for(sshd, &known_hosts)).await.expect("connect");
    (connection.transport().unwrap(), dir)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_on_a_terminal_sees_its_type_and_size() {
    let sshd = common::start(Sshd::builder()).await;
    let (transport, _dir) = transport_for(&sshd).await;
    let pty = Pty { term: "vt100".into(), cols: 132, rows: 43 };
    let out = transport
        .exec(&Command::shell("test -t 0 && echo tty; echo \"$TERM\"; stty size; echo oops >&2").pty(pty))
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.contains("tty\r\n"), "{stdout:?}");
    assert!(stdout.contains("vt100\r\n"), "{stdout:?}");
    assert!(stdout.contains("43 132\r\n"), "{stdout:?}");
    // A terminal merges stderr into its output.
    assert!(stdout.contains("oops"), "{stdout:?}");
    assert!(out.stderr.is_empty());
    assert_eq!(out.status, ExitStatus::Code(0));

    let out = transport.exec(&Command::shell("test -t 0 || echo no-tty")).await.unwrap();
    assert_eq!(out.stdout, b"no-tty\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_shell_follows_resize_and_reports_exit_code() {
    let sshd = common::start(Sshd::builder()).await;
    let (transport, _dir) = transport_for(&sshd).await;
    let mut shell = transport.shell(&Pty { term: "xterm".into(), cols: 80, rows: 24 }).await.unwrap();
    assert!(shell.stderr.is_none(), "a terminal has no separate stderr");
    shell.resize(120, 40).await.unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    let mut stdout = shell.stdout.take().unwrap();
    // The resize is a channel request sent before these bytes, so the shell
    // sees the new size when it runs `stty size`.
    stdin.write_all(b"stty size; echo \"marker-$((6*7))\"; exit 9\n").await.unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_to_end(&mut seen)).await.unwrap().unwrap();
    let seen = text(&seen);
    assert!(seen.contains("40 120"), "{seen:?}");
    assert!(seen.contains("marker-42"), "{seen:?}");
    assert_eq!(shell.wait().await.unwrap(), ExitStatus::Code(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_without_terminal_is_unsupported() {
    let sshd = common::start(Sshd::builder()).await;
    let (transport, _dir) = transport_for(&sshd).await;
    let mut process = transport.spawn(&Command::shell("sleep 5")).await.unwrap();
    let err = process.resize(100, 30).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    process.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_passed_whether_the_server_accepts_it_or_not() {
    // Accepted by `AcceptEnv`: the variables travel as `env` requests.
    let sshd = common::start(Sshd::builder().config_line("AcceptEnv TETHER_*")).await;
    let (transport, _dir) = transport_for(&sshd).await;
    let out = transport
        .exec(
            &Command::shell("printf '%s|%s' \"$TETHER_A\" \"$TETHER_B\"")
                .env("TETHER_A", "x y")
                .env("TETHER_B", "'$(q)"),
        )
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "x y|'$(q)");

    // Partly refused (only TETHER_A accepted): the command falls back to an
    // `env` prefix and still gets both, and so do later commands.
    let sshd = common::start(Sshd::builder().config_line("AcceptEnv TETHER_A")).await;
    let (transport, _dir) = transport_for(&sshd).await;
    for round in 0..2 {
        let out = transport
            .exec(
                &Command::shell("printf '%s|%s' \"$TETHER_A\" \"$TETHER_B\"").env("TETHER_A", "1").env("TETHER_B", "2"),
            )
            .await
            .unwrap();
        assert_eq!(text(&out.stdout), "1|2", "round {round}");
    }
}

/// The login is root in these tests (sshd runs as root), so sudo needs no
/// password for another user or group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_group_switch_through_sudo() {
    let sshd = common::start(Sshd::builder()).await;
    assert_eq!(sshd.user(), "root", "these checks need a root login");
    let (transport, _dir) = transport_for(&sshd).await;
    let out = transport
        .exec(
            &Command::shell("id -un; id -gn; pwd; umask; printf '%s\\n' \"$TETHER_V\"")
                .user("nobody")
                .group("daemon")
                .cwd("/tmp")
                .umask(0o027)
                .env("TETHER_V", "a 'quoted' $value"),
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "nobody\ndaemon\n/tmp\n0027\na 'quoted' $value\n");

    // Group only: the user stays the login.
    let out = transport.exec(&Command::argv(["id", "-gn"]).group("daemon")).await.unwrap();
    assert_eq!(text(&out.stdout), "daemon\n");
    // The login itself needs no sudo at all.
    let out = transport.exec(&Command::argv(["id", "-un"]).user("root")).await.unwrap();
    assert_eq!(text(&out.stdout), "root\n");

    // An unknown user is the command's failure, reported with sudo's message.
    let out = transport.exec(&Command::argv(["true"]).user("no-such-user-tether")).await.unwrap();
    assert_ne!(out.status, ExitStatus::Code(0));
    assert!(text(&out.stderr).contains("no-such-user-tether"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_agent_keys_log_in() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent (package openssh-client)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not create its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let agent_host = || {
        let mut host = common::host_for(&sshd, &known_hosts);
        // No usable key file: only the agent can log in.
        host.options
            .set(
                "ssh_options",
                "client_keys",
                vec![dir.path().join("missing").display().to_string()],
                OptionSource::Api,
            )
            .unwrap();
        host.options.set("ssh_options", "agent_socket", socket.display().to_string(), OptionSource::Api).unwrap();
        host
    };

    // An empty agent: the failure says the agent was asked and held nothing.
    let err = common::connect(agent_host()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    assert!(err.to_string().contains("holds no key"), "{err}");

    let added = std::process::Command::new("ssh-add")
        .arg(sshd.client_key_path())
        .env("SSH_AUTH_SOCK", &socket)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(added.success());
    let connection = common::connect(agent_host()).await.expect("log in with the agent's key");
    let out = connection.transport().unwrap().exec(&Command::argv(["echo", "agent"])).await.unwrap();
    assert_eq!(out.stdout, b"agent\n");

    // `use_agent = false` does not ask it.
    let mut host = agent_host();
    host.options.set("ssh_options", "use_agent", false, OptionSource::Api).unwrap();
    let err = common::connect(host).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    assert!(!err.to_string().contains("agent"), "{err}");
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_fails_pending_commands_within_the_keepalive_window() {
    let mut sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let mut host = common::host_for(&sshd, &known_hosts);
    host.options.set("ssh_options", "keepalive_interval", 1.0, OptionSource::Api).unwrap();
    host.options.set("ssh_options", "keepalive_count_max", 2, OptionSource::Api).unwrap();
    let connection = common::connect(host).await.unwrap();
    let transport = connection.transport().unwrap();
    // The command is running once it says so.
    let mut process = transport.spawn(&Command::shell("echo started; exec sleep 60")).await.unwrap();
    let mut started = String::new();
    tokio::io::BufReader::new(process.stdout.take().unwrap()).read_line(&mut started).await.unwrap();
    assert_eq!(started, "started\n");
    let pending = tokio::spawn(async move { process.wait().await });
    sshd.freeze().unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), pending).await.expect("no hang").unwrap();
    let waited = started.elapsed();
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    // Interval 1 s × 2 unanswered, plus scheduling slack.
    assert!(waited < Duration::from_secs(8), "took {waited:?}");
    assert!(!connection.is_alive());
    let err = transport.exec(&Command::argv(["true"])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    sshd.kill().unwrap();
}

/// A caller that leaves one command's output unread for a while must not
/// stall the others on the same connection: up to the 8 MiB output buffer
/// per pipe, the unread bytes wait in memory while other channels go on.
/// (Beyond it the connection waits for the reader: russh widens windows on
/// arrival, so there is no per-channel backpressure to use instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_output_does_not_stall_other_commands() {
    let sshd = common::start(Sshd::builder()).await;
    let (transport, _dir) = transport_for(&sshd).await;
    let mut flood = transport.spawn(&Command::shell("head -c 6000000 /dev/zero")).await.unwrap();
    // Nobody reads `flood`'s stdout; once it has exited and its channel
    // closed, all 6 MB sit unread on this side.
    let status = tokio::time::timeout(Duration::from_secs(10), flood.wait()).await.expect("the flood ends");
    assert_eq!(status.unwrap(), ExitStatus::Code(0));
    for i in 0..3 {
        let out = tokio::time::timeout(Duration::from_secs(10), transport.exec(&Command::argv(["echo", "alive"])))
            .await
            .unwrap_or_else(|_| panic!("exec {i} stalled behind an unread channel"))
            .unwrap();
        assert_eq!(out.stdout, b"alive\n");
    }
    // The flood's bytes are all still there, in order, when read at last.
    let mut stdout = flood.stdout.take().unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| *b == 0));
        total += n as u64;
    }
    assert_eq!(total, 6_000_000);
    assert_eq!(flood.wait().await.unwrap(), ExitStatus::Code(0));
}

/// Killed and dropped commands give their session slot back: with two
/// slots, six stopped `sleep`s later a command still runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_dropped_commands_free_their_slots() {
    let sshd = common::start(Sshd::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let mut host = common::host_for(&sshd, &known_hosts);
    host.options.set("ssh_options", "max_sessions", 2, OptionSource::Api).unwrap();
    host.options.set("ssh_options", "connect_timeout", 5.0, OptionSource::Api).unwrap();
    let transport = common::connect(host).await.unwrap().transport().unwrap();
    for round in 0..3 {
        let mut killed = transport.spawn(&Command::shell("sleep 30")).await.unwrap();
        let started = Instant::now();
        killed.kill().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "kill took {:?}", started.elapsed());
        drop(transport.spawn(&Command::shell("sleep 30")).await.unwrap());
        let out = tokio::time::timeout(Duration::from_secs(10), transport.exec(&Command::argv(["echo", "free"])))
            .await
            .unwrap_or_else(|_| panic!("round {round}: no free slot"))
            .unwrap();
        assert_eq!(out.stdout, b"free\n");
    }
}

/// The channel Tether opens ahead of the next command holds a session slot;
/// it must never make a command wait for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spare_channel_never_makes_a_command_wait() {
    let sshd = common::start(Sshd::builder().max_sessions(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let mut host = common::host_for(&sshd, &known_hosts);
    host.options.set("ssh_options", "max_sessions", 2, OptionSource::Api).unwrap();
    let connection = tether_transport_ssh::connect_host(&host).await.unwrap();
    let session = connection.session();
    let transport: Arc<dyn Transport> = session.clone();
    for round in 0..5 {
        // After a command, a spare channel takes one of the two slots: wait
        // until it has, so the two commands below start with one slot free.
        transport.exec(&Command::argv(["true"]).check(true)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while session.free_sessions() != 1 {
            assert!(Instant::now() < deadline, "round {round}: no spare channel took a slot");
            tokio::task::yield_now().await;
        }
        // Two long commands at once still both start at once.
        let started = Instant::now();
        let long = Command::shell("echo up; sleep 2");
        let (a, b) = tokio::join!(transport.spawn(&long), transport.spawn(&long));
        let (mut first_lines, mut processes) = (Vec::new(), Vec::new());
        for mut process in [a.unwrap(), b.unwrap()] {
            let mut line = [0u8; 3];
            let stdout = process.stdout.as_mut().unwrap();
            // Well under the 2 s a command waiting for the other's slot would take.
            let deadline = tokio::time::Instant::from_std(started + Duration::from_millis(1500));
            tokio::time::timeout_at(deadline, stdout.read_exact(&mut line))
                .await
                .unwrap_or_else(|_| panic!("round {round}: a command waited for a slot"))
                .unwrap();
            first_lines.push(line);
            processes.push(process);
        }
        assert_eq!(first_lines, [*b"up\n", *b"up\n"]);
        for mut process in processes {
            assert_eq!(process.wait().await.unwrap(), ExitStatus::Code(0));
        }
    }
}
