//! A fake POSIX shell behind a fake telnetd, in process: enough of one to
//! pass the transport's shell preparation and run framed commands, and to
//! misbehave on cue.
//!
//! What the client types (see `login::prepare_shell` and `exec::framed_line`):
//! the preparation `stty …; exec sh 2>/dev/null`, then probes
//! `trap : INT QUIT; printf '\036R<token>\037\n'` until one is answered by
//! the marker `\x1eR<token>\x1f\n`, then per command
//! `printf '\036B<token>\037\n'; sh -c '<script>' </dev/null 2>&1; printf '\036E<token> %d\037\n' "$?"`.
//! The fake reads the tokens out of the typed text and prints the markers.
//!
//! Scripts it knows: `echo <word>`, `exit <n>`; `hang` (the begin marker and
//! a line, then silence with the socket open); `drop` (the begin marker and a
//! line, then the connection closes).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::telnet::{Answerer, Decoder, Ev, escape};

/// What stands between the connection and the shell.
#[derive(Debug, Clone)]
pub enum Front {
    /// The shell at once.
    Shell,
    /// `login:` and `Password:`, then a `$ ` prompt.
    Login { user: String, password: String },
    /// A banner, then nothing at all (the socket stays open).
    SilentAfterBanner,
}

/// What the fake saw.
#[derive(Debug)]
pub struct Stats {
    pub served: watch::Sender<u32>,
    pub ended: watch::Sender<u32>,
    /// The scripts of the framed commands, in order.
    pub scripts: Mutex<Vec<String>>,
    /// Set once a `hang` command has started (begin marker sent).
    pub hung: watch::Sender<bool>,
}

#[derive(Debug)]
pub struct FakeShell {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    accept: JoinHandle<()>,
}

impl Drop for FakeShell {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeShell {
    pub async fn start(front: Front) -> FakeShell {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats {
            served: watch::channel(0).0,
            ended: watch::channel(0).0,
            scripts: Mutex::new(Vec::new()),
            hung: watch::channel(false).0,
        });
        let accept = tokio::spawn({
            let stats = stats.clone();
            async move {
                let mut sessions = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    stats.served.send_modify(|n| *n += 1);
                    let (stats, front) = (stats.clone(), front.clone());
                    sessions.spawn(async move {
                        let _ = serve(stream, &front, &stats).await;
                        stats.ended.send_modify(|n| *n += 1);
                    });
                }
            }
        });
        FakeShell { addr, stats, accept }
    }

    pub fn scripts(&self) -> Vec<String> {
        self.stats.scripts.lock().unwrap().clone()
    }
}

/// The client's side of one connection, as lines of text; negotiation is
/// answered on the way.
struct Client {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    decoder: Decoder,
    answerer: Answerer,
    text: Vec<u8>,
}

impl Client {
    async fn send(&mut self, text: &[u8]) -> std::io::Result<()> {
        self.write.write_all(&escape(text)).await
    }

    /// The next line the client typed (CR or LF ended), `None` at the end.
    async fn line(&mut self) -> std::io::Result<Option<String>> {
        let mut buffer = [0u8; 4096];
        let mut events = Vec::new();
        loop {
            if let Some(end) = self.text.iter().position(|&b| b == b'\r' || b == b'\n') {
                let line: Vec<u8> = self.text.drain(..=end).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..end]).into_owned()));
            }
            let n = self.read.read(&mut buffer).await?;
            if n == 0 {
                return Ok(None);
            }
            events.clear();
            self.decoder.feed(&buffer[..n], &mut events);
            for event in events.drain(..) {
                match event {
                    Ev::Data(b) => self.text.push(b),
                    Ev::Verb(verb, option) => {
                        if let Some(reply) = self.answerer.answer(verb, option) {
                            self.write.write_all(&reply).await?;
                        }
                    }
                    Ev::Sub(..) | Ev::Command(_) => {}
                }
            }
        }
    }

    /// Reads and drops everything until the client goes.
    async fn swallow(&mut self) {
        let mut buffer = [0u8; 4096];
        while matches!(self.read.read(&mut buffer).await, Ok(n) if n > 0) {}
    }
}

/// The text between `start` and the next `\037` spelled in the typed line.
fn token_after<'a>(line: &'a str, start: &str) -> Option<&'a str> {
    let from = line.find(start)? + start.len();
    let len = line[from..].find("\\037")?;
    Some(&line[from..from + len])
}

/// The script of a framed command line: `sh -c <quoted> </dev/null`.
fn script_of(line: &str) -> String {
    let from = line.find("sh -c ").map_or(0, |at| at + "sh -c ".len());
    let to = line[from..].find(" </dev/null").map_or(line.len(), |len| from + len);
    let quoted = &line[from..to];
    quoted.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')).unwrap_or(quoted).to_string()
}

async fn serve(stream: TcpStream, front: &Front, stats: &Stats) -> std::io::Result<()> {
    let (read, write) = stream.into_split();
    let mut client =
        Client { read, write, decoder: Decoder::default(), answerer: Answerer::default(), text: Vec::new() };
    client.write.write_all(&Answerer::greeting()).await?;
    match front {
        Front::Shell => {}
        Front::SilentAfterBanner => {
            client.send(b"\r\nWelcome to the lab router\r\n").await?;
            client.swallow().await;
            return Ok(());
        }
        Front::Login { user, password } => loop {
            client.send(b"\r\nlab login: ").await?;
            let Some(typed_user) = client.line().await? else { return Ok(()) };
            if typed_user.is_empty() {
                continue;
            }
            client.send(b"\r\nPassword: ").await?;
            let Some(typed_password) = client.line().await? else { return Ok(()) };
            if typed_user == *user && typed_password == *password {
                client.send(b"\r\n$ ").await?;
                break;
            }
            client.send(b"\r\nLogin incorrect").await?;
        },
    }
    while let Some(line) = client.line().await? {
        if let Some(token) = token_after(&line, "\\036R") {
            client.send(format!("\x1eR{token}\x1f\n").as_bytes()).await?;
            continue;
        }
        let Some(token) = token_after(&line, "\\036B") else { continue };
        let script = script_of(&line);
        stats.scripts.lock().unwrap().push(script.clone());
        client.send(format!("\x1eB{token}\x1f\n").as_bytes()).await?;
        let (word, rest) = script.split_once(' ').unwrap_or((&script, ""));
        let status = match word {
            "echo" => {
                client.send(format!("{rest}\n").as_bytes()).await?;
                0
            }
            "exit" => rest.parse().unwrap_or(2),
            "hang" => {
                client.send(b"working...\n").await?;
                stats.hung.send_replace(true);
                client.swallow().await;
                return Ok(());
            }
            "drop" => {
                client.send(b"working...\n").await?;
                return Ok(());
            }
            other => {
                client.send(format!("sh: {other}: not found\n").as_bytes()).await?;
                127
            }
        };
        client.send(format!("\x1eE{token} {status}\x1f\n").as_bytes()).await?;
    }
    Ok(())
}
