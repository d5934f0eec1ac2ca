//! One Telnet connection as a terminal: a reader task that decodes the
//! stream, answers option negotiation and hands the text on, and a writer
//! that escapes text and paces it for slow consoles.
//!
//! The reader task owns the [`Negotiator`], so negotiation is answered even
//! while nobody reads the text (a command running, a login being typed).
//! Text goes through a bounded channel: a reader that falls behind stops the
//! task reading the socket, so memory stays flat however fast the host
//! writes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tether_core::{BoxStream, Error, ErrorKind, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::{self, Decoder, Event, TTYPE_SEND, Verb, option};
use crate::negotiation::{Negotiator, Policy};

/// Payload bytes kept of one subnegotiation. Ours (TTYPE SEND, NAWS) are a
/// few bytes; anything longer is a server we do not understand anyway.
const MAX_SUBNEGOTIATION: usize = 1024;

/// Bytes taken from the socket per read.
const READ_BUFFER: usize = 64 << 10;

/// Chunks of text waiting for a slow reader before the task stops reading
/// the socket (at most this many reads' worth: 4 MiB).
const TEXT_QUEUE: usize = 64;

/// How the session will be used, which decides what we agree to.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// `TERM` sent with TTYPE.
    pub(crate) term: String,
    /// Size sent with NAWS.
    pub(crate) cols: u16,
    /// Size sent with NAWS.
    pub(crate) rows: u16,
    /// Let the server echo (an interactive shell, whose local terminal is
    /// raw); commands ask it not to.
    pub(crate) server_echo: bool,
    /// Chunk size and pause for every text write.
    pub(crate) pacing: Option<(usize, Duration)>,
    /// Host and port, for errors.
    pub(crate) what: String,
}

/// The sending side, shared: a kill sends ^C while a command's output is
/// being read.
pub(crate) struct Writer {
    half: Mutex<WriteHalf<BoxStream>>,
    /// Set by [`Writer::shutdown`]: the session can send nothing more, and
    /// must not go back to the pool even if its command ended meanwhile.
    shut: AtomicBool,
    pacing: Option<(usize, Duration)>,
    what: Arc<str>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").field("to", &self.what).field("pacing", &self.pacing).finish_non_exhaustive()
    }
}

impl Writer {
    /// Sends `text` as NVT text (IAC doubled, bare CR as CR NUL), in paced
    /// chunks when the console needs them.
    pub(crate) async fn send_text(&self, text: &[u8]) -> Result<()> {
        let mut wire = Vec::with_capacity(text.len() + 8);
        codec::escape(text, &mut wire);
        let mut half = self.half.lock().await;
        match self.pacing {
            None => write_all(&mut half, &wire, &self.what).await,
            Some((size, pause)) => {
                let mut chunks = wire.chunks(size).peekable();
                while let Some(chunk) = chunks.next() {
                    write_all(&mut half, chunk, &self.what).await?;
                    if chunks.peek().is_some() && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends protocol bytes as they are (negotiation, subnegotiation).
    async fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        write_all(&mut *self.half.lock().await, bytes, &self.what).await
    }

    /// Tells the server the terminal's new size.
    pub(crate) async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.send_raw(&codec::naws(cols, rows)).await
    }

    /// Closes the sending side: the server sees the end of the connection.
    pub(crate) async fn shutdown(&self) {
        self.shut.store(true, Ordering::SeqCst);
        let _ = self.half.lock().await.shutdown().await;
    }
}

async fn write_all(half: &mut WriteHalf<BoxStream>, bytes: &[u8], what: &str) -> Result<()> {
    half.write_all(bytes).await.map_err(|e| lost_error("write", what, Some(e)))?;
    half.flush().await.map_err(|e| lost_error("write", what, Some(e)))
}

fn lost_error(operation: &str, what: &str, cause: Option<std::io::Error>) -> Error {
    let error = Error::new(ErrorKind::ConnectionLost, operation);
    match cause {
        Some(cause) => error.with_context(format!("{what}: {cause}")),
        None => error.with_context(format!("{what}: the server closed the connection")),
    }
}

/// A connected terminal: the text the host sends, and the writer.
pub(crate) struct Terminal {
    text: mpsc::Receiver<Vec<u8>>,
    /// Text received but not consumed yet.
    pub(crate) pending: Vec<u8>,
    pub(crate) writer: Arc<Writer>,
    /// Answers to our requests still outstanding.
    unanswered: watch::Receiver<usize>,
    /// Set when the reader task saw the connection end.
    ended: Arc<AtomicBool>,
    /// How the server's text is decoded (see [`TextMode`]).
    text_mode: Arc<TextMode>,
    task: JoinHandle<()>,
    pub(crate) what: Arc<str>,
}

impl fmt::Debug for Terminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Terminal").field("to", &self.what).field("pending", &self.pending.len()).finish_non_exhaustive()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Terminal {
    /// Starts the reader task on `stream` and makes our opening requests.
    pub(crate) async fn start(stream: BoxStream, setup: Setup) -> Result<Terminal> {
        let what: Arc<str> = setup.what.clone().into();
        let (read, write) = tokio::io::split(stream);
        let writer = Arc::new(Writer {
            half: Mutex::new(write),
            shut: AtomicBool::new(false),
            pacing: setup.pacing,
            what: what.clone(),
        });
        let mut negotiator = Negotiator::new(Policy {
            local: vec![option::TTYPE, option::NAWS, option::SGA],
            remote: if setup.server_echo {
                vec![option::SGA, option::ECHO, option::BINARY]
            } else {
                vec![option::SGA, option::BINARY]
            },
        });
        let mut opening = Vec::new();
        let mut asked = Vec::new();
        // BINARY from the server only: our own CR must stay CR NUL, or a
        // NUL would be typed into the shell.
        for (option, enable) in [(option::SGA, true), (option::ECHO, setup.server_echo), (option::BINARY, true)] {
            if let Some(bytes) = negotiator.ask_remote(option, enable) {
                opening.extend_from_slice(&bytes);
                asked.push((Side::Remote, option));
            }
        }
        for option in [option::TTYPE, option::NAWS, option::SGA] {
            if let Some(bytes) = negotiator.offer_local(option, true) {
                opening.extend_from_slice(&bytes);
                asked.push((Side::Local, option));
            }
        }
        writer.send_raw(&opening).await?;
        let (text_tx, text) = mpsc::channel(TEXT_QUEUE);
        let (unanswered_tx, unanswered) = watch::channel(asked.len());
        let ended = Arc::new(AtomicBool::new(false));
        let text_mode = Arc::new(TextMode::default());
        let task = tokio::spawn(
            ReaderTask {
                read,
                writer: writer.clone(),
                negotiator,
                asked,
                unanswered: unanswered_tx,
                text: text_tx,
                setup,
                ended: ended.clone(),
                text_mode: text_mode.clone(),
            }
            .run(),
        );
        Ok(Terminal { text, pending: Vec::new(), writer, unanswered, ended, text_mode, task, what })
    }

    /// Waits (at most `limit`) for the server to answer our option requests;
    /// a server that never answers is fine, only slower to start.
    /// The server's first text (a login prompt) ends the wait too: it has
    /// said what it had to say first, and a late answer is still handled.
    pub(crate) async fn settle(&mut self, limit: Duration) {
        let unanswered = &mut self.unanswered;
        tokio::select! {
            _ = unanswered.wait_for(|n| *n == 0) => {}
            chunk = self.text.recv() => {
                if let Some(chunk) = chunk {
                    self.pending.extend_from_slice(&chunk);
                }
            }
            () = tokio::time::sleep(limit) => {}
        }
        // A server that ignores BINARY altogether sends raw bytes (busybox
        // telnetd, serial bridges); one that refused it sends NVT text.
        if !self.text_mode.answered.load(Ordering::SeqCst) {
            self.text_mode.binary.store(true, Ordering::SeqCst);
        }
    }

    /// True once the connection is gone (or we closed our side).
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst) || self.task.is_finished() || self.writer.shut.load(Ordering::SeqCst)
    }

    /// Appends the next text that arrives to `pending`; fails with
    /// `Timeout` at `deadline` and `ConnectionLost` when the connection ends.
    pub(crate) async fn receive(&mut self, operation: &str, deadline: Instant) -> Result<()> {
        match tokio::time::timeout_at(deadline, self.text.recv()).await {
            Ok(Some(chunk)) => {
                self.pending.extend_from_slice(&chunk);
                Ok(())
            }
            Ok(None) => Err(lost_error(operation, &self.what, None)),
            Err(_) => Err(Error::new(ErrorKind::Timeout, operation.to_string())
                .with_context(format!("{}: no answer from the console", self.what))),
        }
    }

    /// Reads until `find` locates something in the pending text, and returns
    /// the text up to the end of the match (removed from `pending`). Only
    /// the last `keep` bytes are kept while waiting, so a host that talks
    /// forever without matching costs bounded memory.
    pub(crate) async fn read_until(
        &mut self,
        operation: &str,
        deadline: Instant,
        keep: usize,
        mut find: impl FnMut(&[u8]) -> Option<usize>,
    ) -> Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.pending) {
                let rest = self.pending.split_off(end);
                return Ok(std::mem::replace(&mut self.pending, rest));
            }
            if self.pending.len() > keep {
                self.pending.drain(..self.pending.len() - keep);
            }
            self.receive(operation, deadline).await?;
        }
    }
}

/// How the server's text is decoded: NVT (`CR NUL` is a carriage return)
/// until the server agrees to send binary, or turns out to ignore the
/// question, which servers that pass a program's bytes raw do.
#[derive(Debug, Default)]
struct TextMode {
    binary: AtomicBool,
    /// The server said WILL or WONT BINARY.
    answered: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

struct ReaderTask {
    read: ReadHalf<BoxStream>,
    writer: Arc<Writer>,
    negotiator: Negotiator,
    /// Our requests not answered yet.
    asked: Vec<(Side, u8)>,
    unanswered: watch::Sender<usize>,
    text: mpsc::Sender<Vec<u8>>,
    setup: Setup,
    ended: Arc<AtomicBool>,
    text_mode: Arc<TextMode>,
}

impl ReaderTask {
    async fn run(mut self) {
        let mut decoder = Decoder::new(MAX_SUBNEGOTIATION);
        let mut buffer = vec![0u8; READ_BUFFER];
        let mut events = Vec::new();
        let mut warned_flood = false;
        loop {
            let n = match self.read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            events.clear();
            decoder.set_binary(self.text_mode.binary.load(Ordering::SeqCst));
            decoder.decode(&buffer[..n], &mut events);
            let mut replies = Vec::new();
            for event in events.drain(..) {
                match event {
                    Event::Data(data) => {
                        if !data.is_empty() && self.text.send(data).await.is_err() {
                            // Nobody reads any more: the terminal was dropped.
                            self.ended.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                    Event::Negotiation { verb, option } => self.negotiate(verb, option, &mut replies),
                    Event::Subnegotiation { option: option::TTYPE, payload }
                        if payload.first() == Some(&TTYPE_SEND) =>
                    {
                        replies.extend_from_slice(&codec::ttype_is(&self.setup.term));
                    }
                    Event::Subnegotiation { .. } | Event::Command(_) => {}
                    Event::SubnegotiationTooLong { option } => {
                        tracing::debug!(target = %self.setup.what, option, "dropped an over-long subnegotiation");
                    }
                }
            }
            if self.negotiator.flooded() && !warned_flood {
                warned_flood = true;
                tracing::warn!(target = %self.setup.what, "the server keeps flipping options; no longer answering them");
            }
            if !replies.is_empty() && self.writer.send_raw(&replies).await.is_err() {
                break;
            }
        }
        self.ended.store(true, Ordering::SeqCst);
    }

    fn negotiate(&mut self, verb: Verb, option: u8, replies: &mut Vec<u8>) {
        let was_enabled = self.negotiator.local_enabled(option::NAWS);
        if let Some(reply) = self.negotiator.receive(verb, option) {
            replies.extend_from_slice(&reply);
        }
        if option == option::BINARY && matches!(verb, Verb::Will | Verb::Wont) {
            self.text_mode.answered.store(true, Ordering::SeqCst);
            self.text_mode.binary.store(self.negotiator.remote_enabled(option::BINARY), Ordering::SeqCst);
        }
        let side = match verb {
            Verb::Will | Verb::Wont => Side::Remote,
            Verb::Do | Verb::Dont => Side::Local,
        };
        if let Some(at) = self.asked.iter().position(|asked| *asked == (side, option)) {
            self.asked.swap_remove(at);
            let _ = self.unanswered.send(self.asked.len());
        }
        // The size goes out once the server has agreed to hear it.
        if option == option::NAWS && !was_enabled && self.negotiator.local_enabled(option::NAWS) {
            replies.extend_from_slice(&codec::naws(self.setup.cols, self.setup.rows));
        }
    }
}
