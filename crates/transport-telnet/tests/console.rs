//! The telnet transport on an RTOS console behind a UART bridge (in process,
//! see `support::console`): no login, no POSIX shell, a `uart:~$ ` prompt, a
//! 16-byte input FIFO that loses what overflows, one client at a time.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::console::{Config, Console, Stats, survivors};
use support::telnet::{DONT, ECHO};
use support::{bounded, host};
use tether_core::{Command, ErrorKind, ExitStatus, Host};

const LIMIT: Duration = Duration::from_secs(30);

/// A host for a console: no login, no POSIX shell, and `extra` options.
fn console_host(console: &Console, extra: &[(&str, serde_json::Value)]) -> Arc<Host> {
    let mut options = vec![("login", json!(false)), ("posix_shell", json!(false)), ("connect_timeout", json!(5.0))];
    options.extend(extra.iter().cloned());
    host(console.addr, "unused", &options)
}

/// 300 characters a prompt pattern cannot match inside.
fn long_text() -> String {
    (0..300).map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_output_is_the_text_up_to_the_next_prompt() {
    bounded(LIMIT, async {
        let console = Console::start(Config::default()).await;
        let host = console_host(&console, &[]);

        let out = host.exec(&Command::shell("echo hello world")).await.unwrap();
        assert_eq!(out.stdout, b"hello world\n", "{:?}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status, ExitStatus::Unknown);
        assert!(out.stderr.is_empty());

        // Several slow lines, colours stripped, no echo of `help`.
        let out = host.exec(&Command::shell("help")).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Available commands:\n  echo  :Print the arguments\n  help  :Print this help\n  sleep :Wait for ^C\n  hang  :Never come back\n"
        );
        assert_eq!(out.status, ExitStatus::Unknown);

        // An error is just output: the status stays unknown.
        let out = host.exec(&Command::argv(["frobnicate", "now"])).await.unwrap();
        assert_eq!(out.stdout, b"frobnicate: command not found\n");
        assert_eq!(out.status, ExitStatus::Unknown);

        // 255 in the console's text is doubled on the wire and comes back single.
        let out = host.exec(&Command::shell("iac")).await.unwrap();
        assert_eq!(out.stdout, b"\xff<iac>\xff\xff\n");

        // The console got exactly the lines typed, over one session.
        let lines = console.stats.lines();
        let typed: Vec<&[u8]> = lines.iter().map(Vec::as_slice).filter(|l| !l.is_empty()).collect();
        assert_eq!(typed, [&b"echo hello world"[..], b"help", b"frobnicate now", b"iac"]);
        assert_eq!(*console.stats.served.borrow(), 1);
        assert_eq!(console.stats.dropped(), 0);
        // Its offer to echo was refused: commands run with the echo stripped, not off.
        assert!(console.stats.negotiations.lock().unwrap().contains(&(DONT, ECHO)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_line_overflows_the_uart_fifo_without_pacing() {
    bounded(LIMIT, async {
        let config = Config::default();
        // A line whose Enter survives the overflow, so that the console runs
        // the mangled line (rather than wait for the rest of it): the model
        // is deterministic for a burst that arrives in one read.
        let long = (290..320)
            .map(|len| long_text()[..len].to_string())
            .find(|long| survivors(&config, format!("echo {long}\r").as_bytes()).ends_with(b"\r"))
            .expect("no length keeps the Enter");
        let line = format!("echo {long}").into_bytes();
        let console = Console::start(config).await;
        let host = console_host(&console, &[]);
        // A line that fits the FIFO goes through unpaced.
        let out = host.exec(&Command::shell("echo short")).await.unwrap();
        assert_eq!(out.stdout, b"short\n");
        assert_eq!(console.stats.dropped(), 0);

        let started = Instant::now();
        let result = host.exec(&Command::shell(format!("echo {long}")).timeout(Duration::from_secs(1))).await;
        // Most of the line was lost in the FIFO, and the console ran what
        // was left of it.
        let dropped = console.stats.dropped();
        assert!(dropped > 100, "only {dropped} bytes dropped");
        let lines = console.stats.lines();
        let ran = lines.last().unwrap();
        assert!(ran.starts_with(b"ec") && ran.len() < line.len() - 100, "ran {:?}", String::from_utf8_lossy(ran));
        // Its echo does not match the line sent, so what it printed is never
        // taken for the command's output: the exec says the line arrived
        // corrupted rather than return garbage.
        match result {
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
                assert!(err.to_string().contains("write_chunk_size"), "{err}");
            }
            Ok(out) => panic!("a mangled command's output came back as {:?}", String::from_utf8_lossy(&out.stdout)),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        // The console is back at its prompt: the same session goes on.
        assert_eq!(host.exec(&Command::shell("echo short")).await.unwrap().stdout, b"short\n");
        assert_eq!(*console.stats.served.borrow(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_line_paced_in_chunks_arrives_intact() {
    bounded(LIMIT, async {
        let config = Config::default();
        // A chunk must be drained before the next one lands: 8 bytes at one
        // per `drain_time`, with a factor of 2 to spare for scheduling.
        let chunk = 8;
        let delay = config.drain_time * chunk * 2;
        let console = Console::start(config).await;
        let host = console_host(
            &console,
            &[("write_chunk_size", json!(chunk)), ("write_chunk_delay", json!(delay.as_secs_f64()))],
        );
        let long = long_text();
        for _ in 0..2 {
            // A lost byte shows as a timeout: the echo never matches the line.
            let command = Command::shell(format!("echo {long}")).timeout(Duration::from_secs(5));
            let out = host.exec(&command).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{long}\n"));
            assert_eq!(out.status, ExitStatus::Unknown);
        }
        assert_eq!(console.stats.dropped(), 0);
        let sent = format!("echo {long}").into_bytes();
        assert_eq!(console.stats.lines().iter().filter(|l| **l == sent).count(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_command_stopped_by_ctrl_c_times_out_and_keeps_its_session() {
    bounded(LIMIT, async {
        let console = Console::start(Config::default()).await;
        let host = console_host(&console, &[]);
        host.exec(&Command::shell("echo ready")).await.unwrap();

        let started = Instant::now();
        let err = host.exec(&Command::shell("sleep").timeout(Duration::from_millis(500))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        // ^C brought the prompt back: no waiting for ^\ and no new session.
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        let out = host.exec(&Command::shell("echo after")).await.unwrap();
        assert_eq!(out.stdout, b"after\n");
        assert_eq!(*console.stats.served.borrow(), 1, "the session was not kept");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_client_console_closes_a_timed_out_session_so_the_next_gets_in() {
    bounded(LIMIT, async {
        let console = Console::start(Config { single_client: true, ..Config::default() }).await;
        let host = console_host(&console, &[("single_client_console", json!(true))]);
        let out = host.exec(&Command::shell("echo first")).await.unwrap();
        assert_eq!(out.stdout, b"first\n");

        // The console serves one client: with our session open, another
        // connection is closed at once.
        let mut other = tokio::net::TcpStream::connect(console.addr).await.unwrap();
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut other, &mut byte))
            .await
            .expect("the second connection was neither served nor closed");
        assert!(matches!(n, Ok(0) | Err(_)), "a second client got {n:?}");
        assert_eq!(*console.stats.refused.borrow(), 1);

        // `hang` never comes back to the prompt and ignores ^C.
        let limit = Duration::from_millis(500);
        let started = Instant::now();
        let err = host.exec(&Command::shell("hang").timeout(limit)).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(took < limit + Duration::from_secs(1), "the timeout took {took:?}");
        // The timed-out session closed its socket at the timeout...
        tokio::time::timeout(Duration::from_secs(1), Stats::reach(&console.stats.ended, 1))
            .await
            .expect("the timed-out session is still open");
        // ...so the next command gets in, on a new session.
        let out = host.exec(&Command::shell("echo second")).await.unwrap();
        assert_eq!(out.stdout, b"second\n");
        assert_eq!(*console.stats.served.borrow(), 2);
        assert_eq!(*console.stats.refused.borrow(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_single_client_console_turns_a_second_host_away_at_once() {
    bounded(LIMIT, async {
        let console = Console::start(Config { single_client: true, ..Config::default() }).await;
        let first = console_host(&console, &[("single_client_console", json!(true))]);
        let out = first.exec(&Command::shell("echo mine")).await.unwrap();
        assert_eq!(out.stdout, b"mine\n");

        // Someone else's host, while the first keeps its session.
        let second = console_host(&console, &[("single_client_console", json!(true))]);
        let started = Instant::now();
        let err = second.exec(&Command::shell("echo yours")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!(*console.stats.refused.borrow(), 1);

        // Once the first lets go, the second gets in.
        first.close().await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), Stats::reach(&console.stats.ended, 1))
            .await
            .expect("closing the host left its session open");
        let out = second.exec(&Command::shell("echo yours")).await.unwrap();
        assert_eq!(out.stdout, b"yours\n");
    })
    .await;
}

/// The console asks for the window size and terminal type: commands get the
/// `cols`/`rows` of the options and `dumb`; an interactive shell gets its
/// own size and `TERM`, and later sizes only with `auto_window_resize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_size_and_terminal_type_are_told_as_asked() {
    use support::telnet::{DO, IAC, SB, SE};
    const NAWS: u8 = 31;
    const TTYPE: u8 = 24;
    bounded(LIMIT, async {
        let ask = vec![IAC, DO, NAWS, IAC, DO, TTYPE, IAC, SB, TTYPE, 1, IAC, SE];
        let told = |stats: &Stats| stats.subnegotiations.lock().unwrap().clone();
        let console = Console::start(Config { preamble: ask.clone(), ..Config::default() }).await;
        let host = console_host(&console, &[("cols", json!(200)), ("rows", json!(255))]);
        assert_eq!(host.exec(&Command::shell("echo sized")).await.unwrap().stdout, b"sized\n");
        // 255 is doubled on the wire and undone by the console's decoder.
        let subs = told(&console.stats);
        assert!(subs.contains(&(NAWS, vec![0, 200, 0, 255])), "{subs:?}");
        assert!(subs.contains(&(TTYPE, [&[0u8][..], b"dumb"].concat())), "{subs:?}");

        for (resizes, expected) in [(false, false), (true, true)] {
            let console = Console::start(Config { preamble: ask.clone(), ..Config::default() }).await;
            let host = console_host(&console, &[("auto_window_resize", json!(resizes))]);
            let pty = tether_core::Pty { term: "vt220".into(), cols: 90, rows: 30 };
            let mut shell = host.transport().await.unwrap().shell(&pty).await.unwrap();
            // Once the console has the first size, a resize follows.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !told(&console.stats).contains(&(NAWS, vec![0, 90, 0, 30])) {
                assert!(Instant::now() < deadline, "no first size: {:?}", told(&console.stats));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(told(&console.stats).contains(&(TTYPE, [&[0u8][..], b"vt220"].concat())));
            shell.resize(120, 40).await.unwrap();
            // A marker command after the resize: what the console got by then is all there is.
            let mut stdin = shell.stdin.take().unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut stdin, b"echo marker\r").await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !console.stats.lines().iter().any(|line| line == b"echo marker") {
                assert!(Instant::now() < deadline, "the marker line never arrived");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let resized = told(&console.stats).contains(&(NAWS, vec![0, 120, 0, 40]));
            assert_eq!(resized, expected, "auto_window_resize = {resizes}: {:?}", told(&console.stats));
            shell.kill().await.unwrap();
        }
    })
    .await;
}

/// A console that echoes nothing still ends each command at its prompt
/// (once its text has stopped), instead of waiting for an echo for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_without_echo_still_ends_at_its_prompt() {
    bounded(LIMIT, async {
        let console = Console::start(Config { echo: false, ..Config::default() }).await;
        let host = console_host(&console, &[]);
        let out = host.exec(&Command::shell("echo quiet one")).await.unwrap();
        assert_eq!(out.stdout, b"quiet one\n", "{:?}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status, ExitStatus::Unknown);
        let out = host.exec(&Command::shell("help")).await.unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("Available commands:\n"), "{out:?}");
        assert_eq!(*console.stats.served.borrow(), 1);
    })
    .await;
}
