//! The hostile FTP server's own tests, over raw TCP: each misbehaviour
//! really happens (a transport test that passes against a server that failed
//! to misbehave would prove nothing), and the well-behaved part answers as a
//! real server would.

mod support;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::hostile::{ELSEWHERE, HostileFtp, MDTM, Misbehaviour};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

/// How long silence must last to count as "no answer".
const SILENCE: Duration = Duration::from_millis(500);

/// Runs `test`, failing it if it takes longer than [`LIMIT`]: a hang must
/// fail, not block CI.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, test).await {
        Ok(value) => value,
        Err(_) => panic!("the test did not finish within {LIMIT:?}"),
    }
}

/// The client side of a control connection, as bare as it gets.
struct Client {
    control: BufReader<TcpStream>,
}

impl Client {
    async fn connect(server: &HostileFtp) -> Client {
        Client { control: BufReader::new(TcpStream::connect(server.addr()).await.unwrap()) }
    }

    async fn send(&mut self, line: &str) {
        self.control.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    }

    /// One line, without its CRLF; panics at end of stream.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        assert_ne!(self.control.read_line(&mut line).await.unwrap(), 0, "the control connection closed");
        assert!(line.ends_with("\r\n"), "{line:?} does not end in CRLF");
        line.truncate(line.len() - 2);
        line
    }

    /// A whole reply, lines joined by `\n`.
    async fn reply(&mut self) -> String {
        let mut reply = self.line().await;
        if reply.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{} ", &reply[..3]);
            loop {
                let line = self.line().await;
                reply = format!("{reply}\n{line}");
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        reply
    }

    async fn command(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await
    }

    async fn login(&mut self) {
        assert_eq!(self.reply().await, "220 hostile test server");
        assert_eq!(self.command("USER tester").await, "331 Password required.");
        assert_eq!(self.command("PASS s3cret").await, "230 Logged in.");
    }

    /// Sends EPSV and connects to the port it names.
    async fn epsv(&mut self) -> TcpStream {
        let reply = self.command("EPSV").await;
        let port = reply.split("|||").nth(1).and_then(|rest| rest.strip_suffix("|)")).unwrap_or_else(|| {
            panic!("not a 229 reply: {reply:?}");
        });
        assert!(reply.starts_with("229 "), "{reply:?}");
        TcpStream::connect((Ipv4Addr::LOCALHOST, port.parse().unwrap())).await.unwrap()
    }

    /// Sends PASV and returns the address it names.
    async fn pasv(&mut self) -> SocketAddr {
        let reply = self.command("PASV").await;
        assert!(reply.starts_with("227 "), "{reply:?}");
        let inner = reply.split('(').nth(1).and_then(|rest| rest.strip_suffix(')')).unwrap();
        let n: Vec<u8> = inner.split(',').map(|n| n.parse().unwrap()).collect();
        let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
        SocketAddr::from((ip, u16::from(n[4]) << 8 | u16::from(n[5])))
    }

    /// Whether the server sent nothing (and did not close) for [`SILENCE`].
    async fn silent(&mut self) -> bool {
        let mut byte = [0; 1];
        self.control.buffer().is_empty() && tokio::time::timeout(SILENCE, self.control.read(&mut byte)).await.is_err()
    }

    async fn at_eof(&mut self) -> bool {
        let mut rest = Vec::new();
        self.control.read_to_end(&mut rest).await.unwrap() == 0
    }
}

async fn read_all(data: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// Waits until `check` holds (the server records asynchronously).
async fn eventually(check: impl Fn() -> bool) {
    while !check() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bytes that show where in a file a piece came from.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_session_answers_like_a_real_server() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::None).await;
        server.put_file("/dir/a.txt", b"hello".to_vec());
        server.put_file("/dir/sub/b.bin", vec![0; 3]);
        server.put_file("/top.txt", b"x".to_vec());
        let mut client = Client::connect(&server).await;
        client.login().await;

        assert_eq!(client.command("SYST").await, "215 UNIX Type: L8");
        assert_eq!(
            client.command("FEAT").await,
            "211-Features:\n EPSV\n PASV\n SIZE\n MDTM\n REST STREAM\n UTF8\n211 End"
        );
        assert!(client.command("OPTS UTF8 ON").await.starts_with("200 "));
        assert!(client.command("TYPE I").await.starts_with("200 "));
        assert!(client.command("TYPE A").await.starts_with("200 "));
        assert!(client.command("NOOP").await.starts_with("200 "));
        assert_eq!(client.command("PWD").await, "257 \"/\"");
        assert!(client.command("CWD /nope").await.starts_with("550 "));
        assert!(client.command("CWD dir").await.starts_with("250 "));
        assert_eq!(client.command("PWD").await, "257 \"/dir\"");

        assert_eq!(client.command("SIZE a.txt").await, "213 5");
        assert_eq!(client.command("MDTM a.txt").await, format!("213 {MDTM}"));
        assert!(client.command("SIZE missing").await.starts_with("550 "));
        assert!(client.command("MDTM /dir/missing").await.starts_with("550 "));

        // LIST: `ls -l` lines, directories implied by the files under them.
        let mut data = client.epsv().await;
        assert!(client.command("LIST -la").await.starts_with("150 "));
        assert_eq!(
            String::from_utf8(read_all(&mut data).await).unwrap(),
            "-rw-r--r--    1 1000     1000            5 Jan 02 03:04 a.txt\r\n\
             drwxr-xr-x    1 1000     1000         4096 Jan 02 03:04 sub\r\n"
        );
        assert!(client.reply().await.starts_with("226 "));
        let mut data = client.epsv().await;
        assert!(client.command("LIST /top.txt").await.starts_with("150 "));
        assert_eq!(read_all(&mut data).await, b"-rw-r--r--    1 1000     1000            1 Jan 02 03:04 top.txt\r\n");
        assert!(client.reply().await.starts_with("226 "));
        assert!(client.command("LIST /nope").await.starts_with("550 "));

        // PASV names 127.0.0.1; RETR honours REST.
        let addr = client.pasv().await;
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
        let mut data = TcpStream::connect(addr).await.unwrap();
        assert_eq!(client.command("REST 2").await, "350 Restarting at 2.");
        assert!(client.command("RETR a.txt").await.starts_with("150 "));
        assert_eq!(read_all(&mut data).await, b"llo");
        assert!(client.reply().await.starts_with("226 "));
        assert!(client.command("RETR a.txt").await.starts_with("425 "), "no passive listener left");

        // STOR stores everything (more than one read's worth); APPE appends.
        let upload = pattern(200_000);
        let mut data = client.epsv().await;
        assert!(client.command("STOR /dir/new.bin").await.starts_with("150 "));
        data.write_all(&upload).await.unwrap();
        drop(data);
        assert!(client.reply().await.starts_with("226 "));
        assert_eq!(server.file("/dir/new.bin").unwrap(), upload);
        let mut data = client.epsv().await;
        assert!(client.command("APPE new.bin").await.starts_with("150 "));
        data.write_all(b"tail").await.unwrap();
        drop(data);
        assert!(client.reply().await.starts_with("226 "));
        assert_eq!(server.file("/dir/new.bin").unwrap().len(), 200_004);
        assert!(client.command("STOR /nodir/x").await.starts_with("553 "));

        assert!(client.command("RNFR /dir/new.bin").await.starts_with("350 "));
        assert!(client.command("RNTO /dir/renamed.bin").await.starts_with("250 "));
        assert!(client.command("RNTO /dir/again.bin").await.starts_with("503 "));
        assert!(client.command("DELE /top.txt").await.starts_with("250 "));
        assert!(client.command("DELE /top.txt").await.starts_with("550 "));
        assert_eq!(client.command("MKD /made").await, "257 \"/made\" created.");
        assert!(client.command("MKD /made").await.starts_with("550 "));
        assert!(client.command("CWD /made").await.starts_with("250 "));
        assert!(client.command("CDUP").await.starts_with("250 "));
        assert!(client.command("RMD /dir").await.starts_with("550 "), "not empty");
        assert!(client.command("RMD /made").await.starts_with("250 "));
        assert!(client.command("CWD /made").await.starts_with("550 "));
        assert!(client.command("SITE CHMOD 644 /dir/a.txt").await.starts_with("200 "));
        assert!(client.command("MLSD").await.starts_with("500 "));
        assert!(client.command("MLST /dir/a.txt").await.starts_with("500 "));
        assert!(client.command("AUTH TLS").await.starts_with("502 "));
        assert!(client.command("XYZZY").await.starts_with("502 "));
        assert!(client.command("QUIT").await.starts_with("221 "));
        assert!(client.at_eof().await);

        assert_eq!(server.paths(), ["/dir/a.txt", "/dir/renamed.bin", "/dir/sub/b.bin"]);
        assert_eq!(server.data_connections(), 5);
        let commands = server.commands();
        assert_eq!(commands[..2], ["USER tester", "PASS ****"]);
        assert_eq!(commands.last().unwrap(), "QUIT");
        assert!(commands.iter().all(|command| !command.contains("s3cret")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_greeting_accepts_and_never_says_220() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::SilentGreeting).await;
        let mut client = Client::connect(&server).await;
        assert!(client.silent().await, "no greeting, and the connection stays open");
        client.send("USER tester").await;
        assert!(client.silent().await, "nothing is answered either");
        eventually(|| server.commands() == ["USER tester"]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasv_elsewhere_names_another_host_for_a_local_listener() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::PasvElsewhere).await;
        server.put_file("/f", b"payload".to_vec());
        let mut client = Client::connect(&server).await;
        client.login().await;
        assert_eq!(client.command("EPSV").await, "500 not understood");
        let named = client.pasv().await;
        assert_eq!(named.ip(), ELSEWHERE);
        // The port really listens, on the control connection's host: a
        // client that ignores the named address gets its file.
        let mut data = TcpStream::connect((server.addr().ip(), named.port())).await.unwrap();
        assert!(client.command("RETR /f").await.starts_with("150 "));
        assert_eq!(read_all(&mut data).await, b"payload");
        assert!(client.reply().await.starts_with("226 "));
        assert_eq!(server.data_connections(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_connection_accepts_and_then_nothing_moves() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::NoDataConnection).await;
        server.put_file("/f", b"payload".to_vec());

        // EPSV and RETR: the data connection is accepted, and then silence
        // on both connections, neither of which closes.
        let mut client = Client::connect(&server).await;
        client.login().await;
        let mut data = client.epsv().await;
        client.send("RETR /f").await;
        assert!(client.silent().await, "no 150, no 226, no error");
        eventually(|| server.data_connections() == 1).await;
        let mut byte = [0; 1];
        assert!(tokio::time::timeout(SILENCE, data.read(&mut byte)).await.is_err(), "no data and no EOF");
        client.send("NOOP").await;
        assert!(client.silent().await, "the session is hung for good");

        // PASV names a local port, and LIST (and STOR) hang the same way.
        for transfer in ["LIST", "STOR /g"] {
            let mut client = Client::connect(&server).await;
            client.login().await;
            let addr = client.pasv().await;
            assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
            let mut data = TcpStream::connect(addr).await.unwrap();
            client.send(transfer).await;
            assert!(client.silent().await, "{transfer} is never answered");
            assert!(tokio::time::timeout(SILENCE, data.read(&mut byte)).await.is_err());
        }
        eventually(|| server.data_connections() == 3).await;
        assert_eq!(server.paths(), ["/f"], "the hung STOR created nothing");
        assert!(server.commands().contains(&"NOOP".to_string()), "what follows the hang is still recorded");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_421_cuts_a_download_after_n_bytes() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::Reply421MidTransfer { after: 1000 }).await;
        let file = pattern(100_000);
        server.put_file("/big.bin", file.clone());
        let mut client = Client::connect(&server).await;
        client.login().await;
        assert!(client.command("TYPE I").await.starts_with("200 "));
        let mut data = client.epsv().await;
        assert!(client.command("RETR /big.bin").await.starts_with("150 "));
        assert_eq!(read_all(&mut data).await, file[..1000], "exactly `after` bytes, then the data connection ends");
        assert_eq!(client.reply().await, "421 Service not available, closing control connection.");
        assert!(client.at_eof().await, "the control connection closes after the 421");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_421_cuts_an_upload_after_n_bytes() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::Reply421MidTransfer { after: 1000 }).await;
        server.put_file("/dest.bin", b"old".to_vec());
        let mut client = Client::connect(&server).await;
        client.login().await;
        let mut data = client.epsv().await;
        assert!(client.command("STOR /upload.tmp").await.starts_with("150 "));
        let writer = tokio::spawn(async move {
            // The server stops reading: the write may fail, which is the point.
            _ = data.write_all(&pattern(100_000)).await;
        });
        assert_eq!(client.reply().await, "421 Service not available, closing control connection.");
        assert!(client.at_eof().await);
        writer.await.unwrap();
        // As on a real server's disk: what arrived before the end stays.
        assert_eq!(server.file("/upload.tmp").unwrap(), pattern(1000));
        assert_eq!(server.file("/dest.bin").unwrap(), b"old");
        assert_eq!(server.paths(), ["/dest.bin", "/upload.tmp"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_multiline_never_ends_its_reply() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::EndlessMultiline).await;
        let mut client = Client::connect(&server).await;
        client.login().await;
        client.send("PWD").await;
        assert!(client.line().await.starts_with("211-"));
        // 4 MiB of continuation lines and still going: none can end the reply.
        let mut received = 0;
        while received < 4 << 20 {
            let line = client.line().await;
            received += line.len() + 2;
            let last =
                line.len() >= 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit) && line.as_bytes()[3] == b' ';
            assert!(!last, "{line:?} ends the reply");
            assert!(line.starts_with(' ') || line.starts_with("211-"), "{line:?}");
        }
        assert_eq!(server.commands().last().unwrap(), "PWD");
    })
    .await;
}

/// Reads until `done` holds or the stream ends, checking after every read
/// that at most one byte per `every` has arrived since `since`.
async fn read_dripping(
    stream: &mut TcpStream,
    since: Instant,
    every: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 256];
    while !done(&got) {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let allowed = since.elapsed().as_nanos() / every.as_nanos();
        assert!(
            got.len() as u128 <= allowed,
            "{} bytes after {:?}: faster than one per {every:?}",
            got.len(),
            since.elapsed()
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_sends_at_most_one_byte_per_interval() {
    bounded(async {
        let every = Duration::from_millis(10);
        let server = HostileFtp::start(Misbehaviour::SlowDrip { every }).await;
        server.put_file("/f", b"abcdef".to_vec());
        let mut client = Client::connect(&server).await;
        // Login is at full speed: dripped, its 230 alone would take 16 intervals.
        let start = Instant::now();
        client.login().await;
        assert!(start.elapsed() < every * 16, "login took {:?}", start.elapsed());

        let line_done = |bytes: &[u8]| bytes.ends_with(b"\r\n");
        let control = client.control.get_mut();
        let since = Instant::now();
        control.write_all(b"PWD\r\n").await.unwrap();
        assert_eq!(read_dripping(control, since, every, line_done).await, b"257 \"/\"\r\n");
        assert!(since.elapsed() >= every * 9);

        let since = Instant::now();
        control.write_all(b"EPSV\r\n").await.unwrap();
        let reply = String::from_utf8(read_dripping(control, since, every, line_done).await).unwrap();
        let port: u16 = reply.split("|||").nth(1).unwrap().trim_end_matches(['|', ')', '\r', '\n']).parse().unwrap();
        let mut data = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.unwrap();

        let since = Instant::now();
        control.write_all(b"RETR /f\r\n").await.unwrap();
        assert_eq!(read_dripping(&mut data, since, every, |_| false).await, b"abcdef");
        let tail = read_dripping(control, since, every, |bytes| bytes.ends_with(b"226 Transfer complete.\r\n")).await;
        assert!(tail.starts_with(b"150 "), "{:?}", String::from_utf8_lossy(&tail));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_ends_its_sessions() {
    bounded(async {
        let server = HostileFtp::start(Misbehaviour::SilentGreeting).await;
        let mut client = Client::connect(&server).await;
        client.send("NOOP").await;
        eventually(|| server.commands() == ["NOOP"]).await;
        drop(server);
        assert!(client.at_eof().await, "a hung session must not outlive its server");
    })
    .await;
}
