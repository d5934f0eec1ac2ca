//! Servers that break the protocol or stop in the middle: each must end in
//! a typed error within a bound, never a hang, a panic or unbounded memory
//! or traffic.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::console::{Config, Console};
use support::shell::{FakeShell, Front};
use support::telnet::{DO, DONT, Decoder, ECHO, Ev, IAC, SB, TTYPE, WILL, WONT};
use support::{bounded, host};
use tether_core::{Command, ErrorKind, ExitStatus};
use tether_transport_telnet::negotiation::MAX_ANSWERS_PER_OPTION;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

const LIMIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "hostile-test";

/// Options for a host without a login, a 2 s connect_timeout, and `extra`.
fn options(extra: &[(&'static str, serde_json::Value)]) -> Vec<(&'static str, serde_json::Value)> {
    let mut options = vec![("login", json!(false)), ("connect_timeout", json!(2.0))];
    for (key, value) in extra {
        options.retain(|(k, _)| k != key);
        options.push((key, value.clone()));
    }
    options
}

/// The negotiation commands in `bytes` the client sent, by option.
fn negotiations_by_option(bytes: &[u8]) -> [u32; 256] {
    let mut events = Vec::new();
    Decoder::default().feed(bytes, &mut events);
    let mut counts = [0u32; 256];
    for event in events {
        if let Ev::Verb(_, option) = event {
            counts[usize::from(option)] += 1;
        }
    }
    counts
}

/// A server that sends what `flood` produces to every client, as fast as the
/// client takes it, until the client goes; it records what the client sent
/// and how much it sent the client.
struct Flood {
    addr: SocketAddr,
    /// What the client sent, all connections together.
    from_client: Arc<std::sync::Mutex<Vec<u8>>>,
    /// Bytes sent to the client.
    sent: Arc<AtomicU64>,
    /// Connections that ended (the client closed its socket).
    ended: watch::Sender<u32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Flood {
    async fn start(mut flood: impl FnMut(&mut Vec<u8>) + Send + 'static) -> Flood {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let from_client = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let ended = watch::channel(0).0;
        let task = tokio::spawn({
            let (from_client, sent, ended) = (from_client.clone(), sent.clone(), ended.clone());
            async move {
                // One client is all these tests need.
                let Ok((stream, _)) = listener.accept().await else { return };
                let (mut read, mut write) = stream.into_split();
                let reader = tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = read.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        from_client.lock().unwrap().extend_from_slice(&buffer[..n]);
                    }
                });
                let mut batch = Vec::new();
                loop {
                    batch.clear();
                    flood(&mut batch);
                    if batch.is_empty() {
                        // Nothing more to send: wait for the client to go.
                        let _ = reader.await;
                        break;
                    }
                    if write.write_all(&batch).await.is_err() {
                        break;
                    }
                    sent.fetch_add(batch.len() as u64, Ordering::SeqCst);
                }
                ended.send_modify(|n| *n += 1);
            }
        });
        Flood { addr, from_client, sent, ended, task }
    }
}

/// xorshift64: random enough for a flood, the same on every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_flipping_one_option_gets_bounded_answers_and_still_serves() {
    bounded(LIMIT, async {
        // WILL ECHO, WONT ECHO, 100 000 times, before the console starts.
        let preamble: Vec<u8> = [IAC, WILL, ECHO, IAC, WONT, ECHO].repeat(100_000);
        let console = Console::start(Config { preamble, ..Config::default() }).await;
        let host = host(console.addr, PASSWORD, &options(&[("posix_shell", json!(false))]));
        let out = host.exec(&Command::shell("echo survived")).await.unwrap();
        assert_eq!(out.stdout, b"survived\n");
        assert_eq!(out.status, ExitStatus::Unknown);

        let negotiations = console.stats.negotiations.lock().unwrap().clone();
        let about_echo = negotiations.iter().filter(|(_, option)| *option == ECHO).count();
        // Each WILL ECHO is refused (DONT ECHO) until the budget is spent.
        assert!(about_echo >= 1, "the flood was never answered");
        assert!(about_echo <= MAX_ANSWERS_PER_OPTION as usize, "{about_echo} answers about ECHO");
        // All the client sent on this session: its requests, a few answers,
        // two lines; not one answer per flip.
        let received = console.stats.received.load(Ordering::SeqCst);
        assert!(received < 1024, "the client sent {received} bytes");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_negotiating_random_options_forever_gets_bounded_answers_and_a_timeout() {
    bounded(LIMIT, async {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let flood = Flood::start(move |batch| {
            for _ in 0..4096 {
                let r = next(&mut seed);
                batch.extend_from_slice(&[IAC, [WILL, WONT, DO, DONT][(r & 3) as usize], (r >> 8) as u8]);
            }
        })
        .await;
        let host = host(flood.addr, PASSWORD, &options(&[("posix_shell", json!(false))]));
        let started = Instant::now();
        let err = host.exec(&Command::shell("echo never")).await.unwrap_err();
        let took = started.elapsed();
        // No prompt ever comes: a timeout at connect_timeout (after at most
        // echo_negotiation_timeout of waiting for answers).
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "took {took:?}");
        // The client closed the connection.
        tokio::time::timeout(Duration::from_secs(2), flood.ended.subscribe().wait_for(|n| *n >= 1))
            .await
            .expect("the client kept the flooding connection open")
            .unwrap();
        let sent = flood.sent.load(Ordering::SeqCst);
        assert!(sent > 1 << 20, "only {sent} bytes of flood went out");
        // Its answers: at most the budget per option, beyond its own opening
        // requests (two for SGA); NAWS subnegotiations at most once per answer.
        let from_client = flood.from_client.lock().unwrap().clone();
        let counts = negotiations_by_option(&from_client);
        let budget = MAX_ANSWERS_PER_OPTION + 2;
        for (option, count) in counts.iter().enumerate() {
            assert!(*count <= budget, "{count} answers about option {option}");
        }
        let bound = 256 * budget as usize * 3 + MAX_ANSWERS_PER_OPTION as usize * 13 + 64;
        assert!(from_client.len() <= bound, "the client sent {} bytes (bound {bound})", from_client.len());
        assert!(counts.iter().filter(|c| **c > 0).count() > 200, "the client hardly answered: {counts:?}");
    })
    .await;
}

/// The peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_subnegotiation_costs_bounded_memory_and_times_out() {
    bounded(LIMIT, async {
        let mut started_sb = false;
        let flood = Flood::start(move |batch| {
            if !std::mem::replace(&mut started_sb, true) {
                batch.extend_from_slice(&[IAC, SB, TTYPE]);
            }
            // Never an IAC, so never an SE.
            batch.extend(std::iter::repeat_n(b'A', 64 << 10));
        })
        .await;
        let before = peak_rss();
        let host = host(flood.addr, PASSWORD, &options(&[]));
        let started = Instant::now();
        let err = host.exec(&Command::shell("echo never")).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "took {took:?}");
        tokio::time::timeout(Duration::from_secs(2), flood.ended.subscribe().wait_for(|n| *n >= 1))
            .await
            .expect("the client kept the connection open")
            .unwrap();
        // The client read it all the while (TCP would have stopped the
        // server otherwise), and kept none of it.
        let sent = flood.sent.load(Ordering::SeqCst);
        assert!(sent > 64 << 20, "only {sent} bytes went out: the client stopped reading");
        let grown = peak_rss().saturating_sub(before);
        assert!(grown < 32 << 20, "memory grew by {grown} bytes for {sent} bytes of subnegotiation");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_prompt_that_never_comes_times_out_at_connect_timeout() {
    bounded(LIMIT, async {
        // The same fake with its login works.
        let good = FakeShell::start(Front::Login { user: "root".into(), password: PASSWORD.into() }).await;
        let host_good = host(good.addr, PASSWORD, &options(&[("login", json!(true))]));
        let out = host_good.exec(&Command::shell("echo in")).await.unwrap();
        assert_eq!((out.stdout.as_slice(), out.status), (&b"in\n"[..], ExitStatus::Code(0)));

        let silent = FakeShell::start(Front::SilentAfterBanner).await;
        let host = host(silent.addr, PASSWORD, &options(&[("login", json!(true))]));
        let started = Instant::now();
        let err = host.exec(&Command::shell("echo in")).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        // The server answers no negotiation either: echo_negotiation_timeout
        // (1 s) of waiting for it, then connect_timeout (2 s) for the prompt.
        assert!(took >= Duration::from_secs(2) && took < Duration::from_millis(3750), "took {took:?}");
        assert!(silent.scripts().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_silent_mid_command_fails_the_exec_with_a_timeout() {
    bounded(LIMIT, async {
        let shell = FakeShell::start(Front::Shell).await;
        let host = host(shell.addr, PASSWORD, &options(&[]));
        let out = host.exec(&Command::shell("echo ok")).await.unwrap();
        assert_eq!((out.stdout.as_slice(), out.status), (&b"ok\n"[..], ExitStatus::Code(0)));
        let out = host.exec(&Command::shell("exit 3")).await.unwrap();
        assert_eq!(out.status, ExitStatus::Code(3));

        let limit = Duration::from_secs(1);
        let started = Instant::now();
        let err = host.exec(&Command::shell("hang").timeout(limit)).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(*shell.stats.hung.borrow(), "the command never started");
        // The timeout, then ^C and ^\ with 3 s of grace each (a silent host
        // answers neither), then the session is closed.
        assert!(took >= limit && took < limit + Duration::from_secs(8), "took {took:?}");
        tokio::time::timeout(Duration::from_secs(2), shell.stats.ended.subscribe().wait_for(|n| *n >= 1))
            .await
            .expect("the silent session is still open")
            .unwrap();
        // The next command gets a new session.
        let out = host.exec(&Command::shell("echo again")).await.unwrap();
        assert_eq!(out.stdout, b"again\n");
        assert_eq!(*shell.stats.served.borrow(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_mid_command_is_a_lost_connection() {
    bounded(LIMIT, async {
        let shell = FakeShell::start(Front::Shell).await;
        let host = host(shell.addr, PASSWORD, &options(&[]));
        let out = host.exec(&Command::shell("echo ok")).await.unwrap();
        assert_eq!(out.stdout, b"ok\n");

        let started = Instant::now();
        let err = host.exec(&Command::shell("drop").timeout(Duration::from_secs(10))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!(shell.scripts(), ["echo ok", "drop"]);
        // The next command gets a new session.
        let out = host.exec(&Command::shell("echo again")).await.unwrap();
        assert_eq!(out.stdout, b"again\n");
        assert_eq!(*shell.stats.served.borrow(), 2);
    })
    .await;
}
