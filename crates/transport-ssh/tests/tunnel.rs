//! Streams and forwards through a real OpenSSH sshd: the tunnel conformance
//! suite, `local_forwards`, `remote_forwards` and `socks_forwards` set up at
//! connect, SOCKS5 handshakes good and bad, and the failures: refused
//! destinations, forbidden forwards, ports in use, a server that dies.

mod common;

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tether_core::{Connection, ErrorKind, HostConfig, OptionSource, Tunnel};
use tether_test_servers::{Sshd, SshdBuilder};
use tether_transport_ssh::{LocalForward, RemoteForward, SocksForward, SshConnection, connect_host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a failure may take to surface before the test calls it a hang.
const BOUND: Duration = Duration::from_secs(10);

/// Aborts a server task when the test ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An echo server on `address` (port 0 picks one): every byte comes back,
/// and the end of input closes the connection.
async fn echo_on(address: SocketAddr) -> (u16, AbortOnDrop) {
    let listener = TcpListener::bind(address).await.expect("bind an echo port");
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    (port, AbortOnDrop(task))
}

async fn echo() -> (u16, AbortOnDrop) {
    echo_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed) | 0x5a5a_0000;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// Writes `payload`, half-closes, and returns everything read until EOF.
async fn round_trip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S, payload: &[u8]) -> Vec<u8> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let send = async {
        writer.write_all(payload).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let receive = async {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(send, receive) })
        .await
        .expect("the round trip finishes");
    back
}

fn host(sshd: &Sshd) -> HostConfig {
    common::host_for(sshd, sshd.known_hosts_path())
}

fn with_option(mut host: HostConfig, key: &str, value: impl serde::Serialize) -> HostConfig {
    host.options.set("ssh_options", key, value, OptionSource::Api).unwrap();
    host
}

async fn connect(host: HostConfig) -> SshConnection {
    connect_host(&host).await.expect("connect")
}

/// The one forward a connection runs, with its bound port.
fn only_port(connection: &SshConnection) -> u16 {
    let forwards = connection.session().forwards();
    assert_eq!(forwards.len(), 1, "{forwards:?}");
    assert_ne!(forwards[0].listen_port, 0);
    forwards[0].listen_port
}

// ---------------------------------------------------------------------------
// open_stream.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_half_close_reaches_the_destination() {
    let sshd = common::start(Sshd::builder()).await;
    let connection = connect(host(&sshd)).await;
    let (port, _echo) = echo().await;
    let payload = data(3 << 20, 1);
    let stream = connection.session().open_stream("127.0.0.1", port).await.unwrap();
    // EOF reaches the echo server only if shutdown sent the channel's EOF.
    assert!(round_trip(stream, &payload).await == payload);
    // A dropped stream closes its channel: many in a row stay within sshd's limits.
    for _ in 0..50 {
        let mut stream = connection.session().open_stream("127.0.0.1", port).await.unwrap();
        stream.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).await.unwrap();
    }
    connection.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destination_is_a_typed_error_naming_it() {
    let sshd = common::start(Sshd::builder()).await;
    let connection = connect(host(&sshd)).await;
    let port = closed_port();
    let err = connection.session().open_stream("127.0.0.1", port).await.err().expect("nobody listens there");
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}"))
            && text.contains("could not connect")
            && text.contains("Connection refused"),
        "{text}"
    );
    // The connection is still fine.
    let (port, _echo) = echo().await;
    let stream = connection.session().open_stream("127.0.0.1", port).await.unwrap();
    assert_eq!(round_trip(stream, b"still here").await, b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_destination_is_permission_denied() {
    let builder = SshdBuilder::new().config_line("Match all").config_line("PermitOpen 127.0.0.1:1");
    let sshd = common::start(builder).await;
    let connection = connect(host(&sshd)).await;
    let (port, _echo) = echo().await;
    let err = connection.session().open_stream("127.0.0.1", port).await.err().expect("PermitOpen forbids it");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// A stream its owner leaves unread must not stall the connection's other
/// channels: up to its 8 MiB buffer, the bytes wait in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_stream_does_not_stall_other_streams() {
    let sshd = common::start(Sshd::builder()).await;
    let connection = connect(host(&sshd)).await;
    let source = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source_port = source.local_addr().unwrap().port();
    let flood = data(6_000_000, 7);
    let sent = flood.clone();
    let (written_tx, written) = tokio::sync::oneshot::channel();
    let _source = AbortOnDrop(tokio::spawn(async move {
        let (mut stream, _) = source.accept().await.unwrap();
        stream.write_all(&sent).await.unwrap();
        let _ = written_tx.send(());
    }));
    let mut unread = connection.session().open_stream("127.0.0.1", source_port).await.unwrap();
    // Nobody reads `unread`; once the source has written all 6 MB, they sit
    // in sshd's and this side's buffers.
    tokio::time::timeout(BOUND, written).await.expect("the source writes everything").unwrap();
    let (port, _echo) = echo().await;
    for i in 0..3 {
        let stream = tokio::time::timeout(BOUND, connection.session().open_stream("127.0.0.1", port))
            .await
            .unwrap_or_else(|_| panic!("open {i} stalled behind an unread stream"))
            .unwrap();
        let back = tokio::time::timeout(BOUND, round_trip(stream, b"alive")).await.expect("echo stalled");
        assert_eq!(back, b"alive");
    }
    let mut all = Vec::new();
    unread.read_to_end(&mut all).await.unwrap();
    assert!(all == flood, "the unread bytes are all there, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_fails_reads_and_writes_promptly() {
    let mut sshd = common::start(Sshd::builder()).await;
    let connection = connect(host(&sshd)).await;
    let (port, _echo) = echo().await;
    let mut reading = connection.session().open_stream("127.0.0.1", port).await.unwrap();
    reading.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    reading.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");

    // A destination that never reads: the writer fills the window and waits.
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let _sink = AbortOnDrop(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = sink.accept().await {
            held.push(stream);
        }
    }));
    let mut writing = connection.session().open_stream("127.0.0.1", sink_port).await.unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let progress = progress.clone();
        async move {
            let chunk = vec![7u8; 64 << 10];
            let mut sent = 0usize;
            loop {
                match writing.write_all(&chunk).await {
                    Ok(()) => sent += chunk.len(),
                    Err(err) => return (sent, err),
                }
                progress.store(sent, Ordering::SeqCst);
            }
        }
    });
    // The precondition, waited for rather than assumed after a sleep: the
    // writer has sent something, then stopped (window and socket buffers
    // full), and is still inside a write.
    let stalled_by = Instant::now() + Duration::from_secs(30);
    let mut last = (0, Instant::now());
    loop {
        assert!(Instant::now() < stalled_by, "the sink never reads, yet the writer kept going");
        assert!(!writer.is_finished(), "the writer must be waiting, not failed");
        let sent = progress.load(Ordering::SeqCst);
        if sent != last.0 {
            last = (sent, Instant::now());
        } else if sent > 0 && last.1.elapsed() > Duration::from_millis(500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sshd.kill().unwrap();
    let started = Instant::now();
    let read = tokio::time::timeout(BOUND, reading.read(&mut back)).await.expect("a read must not hang");
    let err = read.expect_err("a dead connection is an error, not an end of stream");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
    let (sent, err) = tokio::time::timeout(BOUND, writer).await.expect("a waiting write must not hang").unwrap();
    assert!(sent > 0);
    assert!(matches!(err.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::BrokenPipe), "{err}");
    let err = tokio::time::timeout(BOUND, reading.write_all(b"more")).await.unwrap().expect_err("write after death");
    assert!(matches!(err.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::BrokenPipe), "{err}");
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    let err = connection.session().open_stream("127.0.0.1", port).await.err().expect("no new streams");
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
}

// ---------------------------------------------------------------------------
// local_forwards.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_carries_exact_bytes_and_stops_with_the_connection() {
    let sshd = common::start(Sshd::builder()).await;
    let (port, _echo) = echo().await;
    let forward = LocalForward {
        listen_host: "127.0.0.1".into(),
        listen_port: 0,
        dest_host: "127.0.0.1".into(),
        dest_port: port,
    };
    let connection = connect(with_option(host(&sshd), "local_forwards", vec![forward])).await;
    let forwards = connection.session().forwards();
    assert_eq!(forwards[0].destination, Some(("127.0.0.1".to_string(), port)));
    let local = SocketAddr::from(([127, 0, 0, 1], only_port(&connection)));

    let payload = data(8 << 20, 2);
    let stream = TcpStream::connect(local).await.unwrap();
    assert!(round_trip(stream, &payload).await == payload, "8 MiB through the forward");
    // Several connections at once, each its own channel.
    let mut clients = Vec::new();
    for seed in 0..4u8 {
        clients.push(tokio::spawn(async move {
            let payload = data(1 << 20, 10 + seed);
            let stream = TcpStream::connect(local).await.unwrap();
            round_trip(stream, &payload).await == payload
        }));
    }
    for client in clients {
        assert!(client.await.unwrap());
    }

    // An open forwarded connection ends with the connection, and the port closes.
    let mut open = TcpStream::connect(local).await.unwrap();
    open.write_all(b"hi").await.unwrap();
    let mut two = [0u8; 2];
    open.read_exact(&mut two).await.unwrap();
    connection.close().await.unwrap();
    let end = tokio::time::timeout(BOUND, open.read(&mut two)).await.expect("the forwarded connection ends");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(TcpStream::connect(local).await.is_err(), "the listener stopped");
    assert!(connection.session().forwards().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_on_a_port_in_use_fails_connect_naming_it() {
    let sshd = common::start(Sshd::builder()).await;
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let forward =
        LocalForward { listen_host: "127.0.0.1".into(), listen_port: port, dest_host: "db".into(), dest_port: 5432 };
    let err = connect_host(&with_option(host(&sshd), "local_forwards", vec![forward])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let text = err.to_string();
    assert!(text.contains("local_forwards[0]") && text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_to_a_closed_port_closes_the_client() {
    let sshd = common::start(Sshd::builder()).await;
    let forward = LocalForward {
        listen_host: "localhost".into(),
        listen_port: 0,
        dest_host: "127.0.0.1".into(),
        dest_port: closed_port(),
    };
    let connection = connect(with_option(host(&sshd), "local_forwards", vec![forward])).await;
    // `localhost` may name both loopback addresses; each listens on the same port.
    let forwards = connection.session().forwards();
    assert!(!forwards.is_empty());
    assert!(forwards.iter().all(|f| f.listen_port == forwards[0].listen_port), "{forwards:?}");
    let mut client = TcpStream::connect(("127.0.0.1", forwards[0].listen_port)).await.unwrap();
    let mut buf = [0u8; 1];
    let end = tokio::time::timeout(BOUND, client.read(&mut buf)).await.expect("closed, not hanging");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    // The forward survives a failed destination.
    assert_eq!(connection.session().forwards().len(), forwards.len());
}

// ---------------------------------------------------------------------------
// remote_forwards.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forward_reaches_a_local_service_and_is_cancelled_on_close() {
    let sshd = common::start(Sshd::builder()).await;
    let (echo_port, _echo) = echo().await;
    let fixed = closed_port();
    let forwards = vec![
        RemoteForward {
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            dest_host: "127.0.0.1".into(),
            dest_port: echo_port,
        },
        RemoteForward {
            listen_host: "127.0.0.1".into(),
            listen_port: fixed,
            dest_host: "localhost".into(),
            dest_port: echo_port,
        },
    ];
    let connection = connect(with_option(host(&sshd), "remote_forwards", forwards)).await;
    let active = connection.session().forwards();
    assert_eq!(active.len(), 2, "{active:?}");
    assert_eq!(active[1].listen_port, fixed);
    let picked = active[0].listen_port;
    assert_ne!(picked, 0);

    // sshd runs on this machine, so its listener is reachable here directly.
    for (port, seed) in [(picked, 3u8), (fixed, 4)] {
        let payload = data(4 << 20, seed);
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("sshd listens for us");
        assert!(round_trip(stream, &payload).await == payload, "4 MiB through remote port {port}");
    }

    connection.close().await.unwrap();
    let deadline = Instant::now() + BOUND;
    while TcpStream::connect(("127.0.0.1", picked)).await.is_ok() {
        assert!(Instant::now() < deadline, "sshd still listens after close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forward_to_a_dead_destination_refuses_the_connection() {
    let sshd = common::start(Sshd::builder()).await;
    let forward = RemoteForward {
        listen_host: "127.0.0.1".into(),
        listen_port: 0,
        dest_host: "127.0.0.1".into(),
        dest_port: closed_port(),
    };
    let connection = connect(with_option(host(&sshd), "remote_forwards", vec![forward])).await;
    let port = only_port(&connection);
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 1];
    let end = tokio::time::timeout(BOUND, client.read(&mut buf)).await.expect("sshd closes it");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    // The forward itself keeps working for the next connection.
    assert_eq!(connection.session().forwards().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_remote_forward_fails_connect_naming_it() {
    let sshd = common::start(SshdBuilder::new().config_line("Match all").config_line("PermitListen none")).await;
    let forward =
        RemoteForward { listen_host: "127.0.0.1".into(), listen_port: 0, dest_host: "127.0.0.1".into(), dest_port: 22 };
    let err = connect_host(&with_option(host(&sshd), "remote_forwards", vec![forward])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("remote_forwards[0]"), "{err}");
}

// ---------------------------------------------------------------------------
// socks_forwards.

async fn socks_server(sshd: &Sshd) -> (SshConnection, SocketAddr) {
    let forward = SocksForward { listen_host: "127.0.0.1".into(), listen_port: 0 };
    let connection = connect(with_option(host(sshd), "socks_forwards", vec![forward])).await;
    let forwards = connection.session().forwards();
    assert_eq!(forwards[0].destination, None);
    let address = SocketAddr::from(([127, 0, 0, 1], only_port(&connection)));
    (connection, address)
}

/// A SOCKS5 CONNECT to `address` (`ATYP` and address bytes); returns the
/// stream and the reply code.
async fn socks_connect(proxy: SocketAddr, address: &[u8], port: u16) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(&[5, 2, 0, 2]).await.unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.unwrap();
    assert_eq!(choice, [5, 0], "no authentication chosen");
    let mut request = vec![5, 1, 0];
    request.extend_from_slice(address);
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let mut reply = [0u8; 10];
    tokio::time::timeout(BOUND, stream.read_exact(&mut reply)).await.expect("a reply").unwrap();
    assert_eq!((reply[0], reply[2], reply[3]), (5, 0, 1), "{reply:?}");
    (stream, reply[1])
}

/// Everything the server sends until it closes.
async fn socks_answer(proxy: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(input).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut answer)).await.expect("answered and closed").unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_connect_reaches_ipv4_ipv6_and_named_destinations() {
    let sshd = common::start(Sshd::builder()).await;
    let (connection, proxy) = socks_server(&sshd).await;
    let (port, _echo) = echo().await;

    let (stream, code) = socks_connect(proxy, &[1, 127, 0, 0, 1], port).await;
    assert_eq!(code, 0);
    let payload = data(2 << 20, 5);
    assert!(round_trip(stream, &payload).await == payload, "2 MiB through SOCKS to an IPv4 address");

    let mut named = vec![3, 9];
    named.extend_from_slice(b"localhost");
    let (stream, code) = socks_connect(proxy, &named, port).await;
    assert_eq!(code, 0);
    assert_eq!(round_trip(stream, b"by name").await, b"by name");

    let (v6_port, _echo6) = echo_on(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).await;
    let mut v6 = vec![4];
    v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    let (stream, code) = socks_connect(proxy, &v6, v6_port).await;
    assert_eq!(code, 0);
    assert_eq!(round_trip(stream, b"over ::1").await, b"over ::1");

    let (mut stream, code) = socks_connect(proxy, &[1, 127, 0, 0, 1], closed_port()).await;
    assert_eq!(code, 5, "connection refused");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    connection.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_socks_input_gets_an_error_reply_and_the_proxy_lives_on() {
    let sshd = common::start(Sshd::builder()).await;
    let (_connection, proxy) = socks_server(&sshd).await;
    let failure = [5, 1, 0, 1, 0, 0, 0, 0, 0, 0];

    assert_eq!(socks_answer(proxy, &[4, 1, 0, 80, 127, 0, 0, 1, 0]).await, [0, 0x5b, 0, 0, 0, 0, 0, 0], "SOCKS4");
    assert_eq!(socks_answer(proxy, &[9, 1, 0]).await, [5, 0xff], "wrong version");
    assert_eq!(socks_answer(proxy, &[5, 1, 2]).await, [5, 0xff], "no acceptable method");
    assert_eq!(socks_answer(proxy, &[5]).await, [5, 0xff], "truncated greeting");
    let mut truncated = vec![5, 1, 0];
    truncated.extend_from_slice(&[5, 1, 0, 1, 127]);
    assert_eq!(socks_answer(proxy, &truncated).await, [&[5, 0][..], &failure].concat(), "truncated request");
    let mut bind = vec![5, 1, 0];
    bind.extend_from_slice(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 80]);
    assert_eq!(socks_answer(proxy, &bind).await, [&[5, 0][..], &[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]].concat(), "BIND");
    let mut garbage = vec![5, 1, 0];
    garbage.extend_from_slice(&[5, 1, 0, 0xee, 1, 2, 3]);
    assert_eq!(socks_answer(proxy, &garbage).await, [&[5, 0][..], &[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]].concat());

    // A client that says nothing is not answered yet, and does not block others.
    let _silent = TcpStream::connect(proxy).await.unwrap();
    let (port, _echo) = echo().await;
    let (stream, code) = socks_connect(proxy, &[1, 127, 0, 0, 1], port).await;
    assert_eq!(code, 0);
    assert_eq!(round_trip(stream, b"alive").await, b"alive");
}
