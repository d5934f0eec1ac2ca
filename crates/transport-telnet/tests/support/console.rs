//! An RTOS shell behind a UART bridge, in process: no login, a `uart:~$ `
//! prompt, no POSIX shell, echo of every typed character, slow output, and
//! a 16-byte receive FIFO that loses what overflows.
//!
//! The model, in virtual time so that a late tick changes nothing: the
//! bridge clocks each byte it received over TCP into the UART at the line
//! rate (`byte_time`); the console's CPU takes one byte out of the FIFO every
//! `drain_time` while it holds any; a byte that lands while the FIFO holds
//! `fifo` bytes is lost. The only real-time input is when a TCP read
//! returned, so a burst of bytes is a burst whatever the scheduler does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::telnet::{Answerer, Decoder, Ev, escape};

/// The prompt as the console prints it, colours included.
pub const PROMPT: &[u8] = b"\x1b[1;32muart:~$ \x1b[m";

/// How the console behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bytes the UART's receive FIFO holds.
    pub fifo: usize,
    /// Time the CPU takes to drain one byte from the FIFO.
    pub drain_time: Duration,
    /// Time one byte takes on the serial line (115200 baud: 87 µs).
    pub byte_time: Duration,
    /// Pause after every line of a command's output.
    pub line_delay: Duration,
    /// One client at a time: a second connection is accepted and closed at
    /// once while one is open (Zephyr's `shell_telnet`).
    pub single_client: bool,
    /// Raw bytes sent first on every connection (a hostile preamble).
    pub preamble: Vec<u8>,
    /// Echo typed characters (and the line end), as most consoles do.
    pub echo: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fifo: 16,
            drain_time: Duration::from_micros(200),
            byte_time: Duration::from_micros(87),
            line_delay: Duration::from_millis(3),
            single_client: false,
            preamble: Vec::new(),
            echo: true,
        }
    }
}

/// What the console saw, for the tests to check.
#[derive(Debug)]
pub struct Stats {
    /// Connections served (refused ones not counted).
    pub served: watch::Sender<u32>,
    /// Served connections that ended (the client closed its socket).
    pub ended: watch::Sender<u32>,
    /// Connections closed at once because another was open.
    pub refused: watch::Sender<u32>,
    /// Bytes lost to the full FIFO.
    pub dropped: AtomicU64,
    /// Every line the CPU executed, as it received it.
    pub lines: Mutex<Vec<Vec<u8>>>,
    /// Every negotiation command the client sent: (verb, option).
    pub negotiations: Mutex<Vec<(u8, u8)>>,
    /// Every subnegotiation the client sent: (option, payload).
    pub subnegotiations: Mutex<Vec<(u8, Vec<u8>)>>,
    /// Bytes the client sent in all.
    pub received: AtomicU64,
}

impl Stats {
    fn new() -> Self {
        Stats {
            served: watch::channel(0).0,
            ended: watch::channel(0).0,
            refused: watch::channel(0).0,
            dropped: AtomicU64::new(0),
            lines: Mutex::new(Vec::new()),
            negotiations: Mutex::new(Vec::new()),
            subnegotiations: Mutex::new(Vec::new()),
            received: AtomicU64::new(0),
        }
    }

    pub fn lines(&self) -> Vec<Vec<u8>> {
        self.lines.lock().unwrap().clone()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Waits until `counter` reaches `n` (the caller bounds the wait).
    pub async fn reach(counter: &watch::Sender<u32>, n: u32) {
        let mut rx = counter.subscribe();
        rx.wait_for(|value| *value >= n).await.expect("the console is gone");
    }
}

/// A running console; stopped when dropped.
#[derive(Debug)]
pub struct Console {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    pub config: Config,
    accept: JoinHandle<()>,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Console {
    pub async fn start(config: Config) -> Console {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::new());
        let busy = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn({
            let (stats, config) = (stats.clone(), config.clone());
            async move {
                let mut sessions = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    if config.single_client && busy.swap(true, Ordering::SeqCst) {
                        drop(stream);
                        stats.refused.send_modify(|n| *n += 1);
                        continue;
                    }
                    stats.served.send_modify(|n| *n += 1);
                    let (stats, config, busy) = (stats.clone(), config.clone(), busy.clone());
                    sessions.spawn(async move {
                        serve(stream, &config, &stats).await;
                        // Free before counting, so a test that saw the end
                        // can connect at once.
                        busy.store(false, Ordering::SeqCst);
                        stats.ended.send_modify(|n| *n += 1);
                    });
                }
            }
        });
        Console { addr, stats, config, accept }
    }
}

/// What goes out, in order.
enum Out {
    /// Protocol bytes as they are.
    Raw(Vec<u8>),
    /// Text (IAC doubled on the way).
    Text(Vec<u8>),
    /// The console is slow: nothing goes out for a while.
    Pause(Duration),
}

async fn write_loop(mut write: tokio::net::tcp::OwnedWriteHalf, mut out: mpsc::UnboundedReceiver<Out>) {
    while let Some(item) = out.recv().await {
        let result = match item {
            Out::Raw(bytes) => write.write_all(&bytes).await,
            Out::Text(text) => write.write_all(&escape(&text)).await,
            Out::Pause(pause) => {
                tokio::time::sleep(pause).await;
                Ok(())
            }
        };
        if result.is_err() {
            return;
        }
    }
}

async fn serve(stream: TcpStream, config: &Config, stats: &Stats) {
    let (mut read, write) = stream.into_split();
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(write, out_rx));
    if !config.preamble.is_empty() {
        let _ = out.send(Out::Raw(config.preamble.clone()));
    }
    let _ = out.send(Out::Raw(Answerer::greeting()));
    let _ = out.send(Out::Text(b"\r\n*** Booting Zephyr OS build v3.7.0 ***\r\n".to_vec()));
    let _ = out.send(Out::Text(PROMPT.to_vec()));
    let mut uart = Uart::new(config);
    let mut cpu = Cpu { out: out.clone(), line: Vec::new(), state: CpuState::Prompt, last_cr: false, config, stats };
    let mut decoder = Decoder::default();
    let mut answerer = Answerer::default();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut buffer = vec![0u8; 64 << 10];
    let mut events = Vec::new();
    loop {
        tokio::select! {
            read = read.read(&mut buffer) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                let now = Instant::now();
                stats.received.fetch_add(n as u64, Ordering::SeqCst);
                events.clear();
                decoder.feed(&buffer[..n], &mut events);
                let mut text = Vec::new();
                for event in events.drain(..) {
                    match event {
                        Ev::Data(b) => text.push(b),
                        Ev::Verb(verb, option) => {
                            stats.negotiations.lock().unwrap().push((verb, option));
                            if let Some(reply) = answerer.answer(verb, option) {
                                let _ = out.send(Out::Raw(reply.to_vec()));
                            }
                        }
                        Ev::Sub(option, payload) => stats.subnegotiations.lock().unwrap().push((option, payload)),
                        Ev::Command(_) => {}
                    }
                }
                uart.arrive(now, &text, &mut |byte| cpu.byte(byte));
            }
            _ = tick.tick() => uart.advance(Instant::now(), &mut |byte| cpu.byte(byte)),
        }
        stats.dropped.fetch_add(std::mem::take(&mut uart.dropped), Ordering::SeqCst);
    }
    drop(out);
    drop(cpu);
    // What was queued still goes out (the client is gone anyway).
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

/// The bridge's line and the UART's FIFO, in virtual time.
struct Uart {
    fifo_size: usize,
    drain_time: Duration,
    byte_time: Duration,
    /// Bytes the bridge received and has not clocked onto the line yet.
    line: VecDeque<u8>,
    /// When the next of them lands in the FIFO.
    next_in: Instant,
    fifo: VecDeque<u8>,
    /// When the CPU takes the next byte out of the FIFO.
    next_out: Instant,
    /// Bytes lost to the full FIFO (not yet counted in the stats).
    dropped: u64,
}

impl Uart {
    fn new(config: &Config) -> Uart {
        let now = Instant::now();
        Uart {
            fifo_size: config.fifo,
            drain_time: config.drain_time,
            byte_time: config.byte_time,
            line: VecDeque::new(),
            next_in: now,
            fifo: VecDeque::new(),
            next_out: now,
            dropped: 0,
        }
    }

    fn arrive(&mut self, now: Instant, bytes: &[u8], cpu: &mut impl FnMut(u8)) {
        self.advance(now, cpu);
        if bytes.is_empty() {
            return;
        }
        if self.line.is_empty() {
            // The line is idle: the first byte takes one byte time.
            self.next_in = self.next_in.max(now) + self.byte_time;
        }
        self.line.extend(bytes);
    }

    /// Runs every landing and draining due by `now`, in time order (a byte
    /// drained at the same instant one lands makes room for it first).
    fn advance(&mut self, now: Instant, cpu: &mut impl FnMut(u8)) {
        loop {
            let landing = (!self.line.is_empty() && self.next_in <= now).then_some(self.next_in);
            let draining = (!self.fifo.is_empty() && self.next_out <= now).then_some(self.next_out);
            match (landing, draining) {
                (None, None) => return,
                (Some(at), Some(out_at)) if out_at <= at => self.drain(out_at, cpu),
                (None, Some(out_at)) => self.drain(out_at, cpu),
                (Some(at), _) => {
                    let byte = self.line.pop_front().expect("a byte on the line");
                    if self.fifo.len() < self.fifo_size {
                        if self.fifo.is_empty() {
                            self.next_out = at + self.drain_time;
                        }
                        self.fifo.push_back(byte);
                    } else {
                        self.dropped += 1;
                    }
                    self.next_in = at + self.byte_time;
                }
            }
        }
    }

    fn drain(&mut self, at: Instant, cpu: &mut impl FnMut(u8)) {
        let byte = self.fifo.pop_front().expect("a byte in the FIFO");
        self.next_out = at + self.drain_time;
        cpu(byte);
    }
}

/// What the CPU receives of `burst` arriving in one TCP read on an idle
/// UART: the same model the server runs, without the clock.
pub fn survivors(config: &Config, burst: &[u8]) -> Vec<u8> {
    let mut uart = Uart::new(config);
    let start = Instant::now();
    let mut received = Vec::new();
    uart.arrive(start, burst, &mut |byte| received.push(byte));
    uart.advance(start + Duration::from_secs(3600), &mut |byte| received.push(byte));
    received
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuState {
    Prompt,
    /// `sleep`: waits for ^C.
    Sleeping,
    /// `hang`: never comes back, ^C or not.
    Hung,
}

/// The console's shell: line editing, echo, commands.
struct Cpu<'a> {
    out: mpsc::UnboundedSender<Out>,
    line: Vec<u8>,
    state: CpuState,
    last_cr: bool,
    config: &'a Config,
    stats: &'a Stats,
}

impl Cpu<'_> {
    fn text(&self, text: &[u8]) {
        let _ = self.out.send(Out::Text(text.to_vec()));
    }

    fn prompt(&self) {
        self.text(PROMPT);
    }

    fn byte(&mut self, byte: u8) {
        let was_cr = std::mem::replace(&mut self.last_cr, byte == b'\r');
        match self.state {
            CpuState::Hung => {}
            CpuState::Sleeping => {
                if byte == 0x03 {
                    self.text(b"^C\r\n");
                    self.prompt();
                    self.state = CpuState::Prompt;
                }
            }
            CpuState::Prompt => match byte {
                0x03 => {
                    self.line.clear();
                    self.text(b"^C\r\n");
                    self.prompt();
                }
                b'\n' if was_cr => {}
                b'\r' | b'\n' => {
                    if self.config.echo {
                        self.text(b"\r\n");
                    }
                    let line = std::mem::take(&mut self.line);
                    self.execute(&line);
                }
                0x08 | 0x7f if self.line.pop().is_some() => self.text(b"\x08 \x08"),
                0x20..=0x7e => {
                    self.line.push(byte);
                    if self.config.echo {
                        self.text(&[byte]);
                    }
                }
                _ => {}
            },
        }
    }

    fn execute(&mut self, line: &[u8]) {
        self.stats.lines.lock().unwrap().push(line.to_vec());
        let text = String::from_utf8_lossy(line).trim().to_string();
        let (command, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let output: Vec<Vec<u8>> = match command {
            "" => vec![],
            "echo" => vec![rest.as_bytes().to_vec()],
            "help" => vec![
                b"\x1b[1mAvailable commands:\x1b[0m".to_vec(),
                b"  echo  :Print the arguments".to_vec(),
                b"  help  :Print this help".to_vec(),
                b"  sleep :Wait for ^C".to_vec(),
                b"  hang  :Never come back".to_vec(),
            ],
            "iac" => vec![b"\xff<iac>\xff\xff".to_vec()],
            "sleep" => {
                self.state = CpuState::Sleeping;
                return;
            }
            "hang" => {
                self.text(b"hanging\r\n");
                self.state = CpuState::Hung;
                return;
            }
            other => vec![format!("\x1b[1;31m{other}: command not found\x1b[0m").into_bytes()],
        };
        for line in output {
            let mut line = line;
            line.extend_from_slice(b"\r\n");
            self.text(&line);
            let _ = self.out.send(Out::Pause(self.config.line_delay));
        }
        self.prompt();
    }
}
