//! Scripted commands of a [`MemoryHost`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{MemoryHost, lock, shell};
use crate::command::{Command, ExitStatus, Output};
use crate::error::{Error, ErrorKind, Result};
use crate::files::utf8_path;
use crate::process::{Process, ProcessControl};
use crate::registry::BoxFuture;
use crate::transport::Transport;

/// One command a [`MemoryHost`] received, for assertions.
#[derive(Debug, Clone)]
pub struct Call {
    /// The program part as a shell line (argv words quoted).
    pub line: String,
    /// The whole command.
    pub command: Command,
    /// Everything written to its standard input, for a scripted command
    /// (empty for one the built-in shell ran: its input streams).
    pub stdin: Vec<u8>,
}

/// Computes a scripted command's output.
pub type Handler = Arc<dyn Fn(Call) -> BoxFuture<'static, Output> + Send + Sync>;

pub(super) enum Matcher {
    /// The exact shell line.
    Line(String),
    /// The first word.
    Program(String),
    /// Anything.
    Any,
}

impl Matcher {
    fn matches(&self, command: &Command, line: &str) -> bool {
        match self {
            Matcher::Line(expected) => expected == line,
            Matcher::Program(program) => match &command.line {
                crate::CommandLine::Argv(argv) => argv.first().is_some_and(|first| first == program.as_str()),
                crate::CommandLine::Shell(line) => line.split_whitespace().next() == Some(program.as_str()),
            },
            Matcher::Any => true,
        }
    }
}

const CHUNK: usize = 256 * 1024;

impl MemoryHost {
    /// Answers the exact shell line `line` with `output`.
    pub fn respond(&self, line: &str, output: Output) {
        self.handle(line, move |_| output.clone());
    }

    /// Answers the exact shell line `line` by calling `handler`.
    pub fn handle(&self, line: &str, handler: impl Fn(Call) -> Output + Send + Sync + 'static) {
        self.add(Matcher::Line(line.to_string()), sync_handler(handler));
    }

    /// Answers every command whose first word is `program`.
    pub fn handle_program(&self, program: &str, handler: impl Fn(Call) -> Output + Send + Sync + 'static) {
        self.add(Matcher::Program(program.to_string()), sync_handler(handler));
    }

    /// Answers every command no other handler matches.
    pub fn handle_any(&self, handler: impl Fn(Call) -> Output + Send + Sync + 'static) {
        self.add(Matcher::Any, sync_handler(handler));
    }

    /// Answers the exact shell line `line` with an async handler (which may
    /// sleep, to test timeouts).
    pub fn handle_async<F>(&self, line: &str, handler: impl Fn(Call) -> F + Send + Sync + 'static)
    where
        F: std::future::Future<Output = Output> + Send + 'static,
    {
        self.add(Matcher::Line(line.to_string()), Arc::new(move |call| Box::pin(handler(call))));
    }

    fn add(&self, matcher: Matcher, handler: Handler) {
        lock(&self.shared.handlers).push((matcher, handler));
    }

    /// Every command received so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    fn handler_for(&self, command: &Command, line: &str) -> Option<Handler> {
        let handlers = lock(&self.shared.handlers);
        // Exact lines beat program matches beat the catch-all; the newest
        // handler of a rank wins so tests can re-script.
        let rank = |m: &Matcher| match m {
            Matcher::Line(_) => 0,
            Matcher::Program(_) => 1,
            Matcher::Any => 2,
        };
        handlers
            .iter()
            .rev()
            .filter(|(m, _)| m.matches(command, line))
            .min_by_key(|(m, _)| rank(m))
            .map(|(_, h)| h.clone())
    }
}

fn sync_handler(handler: impl Fn(Call) -> Output + Send + Sync + 'static) -> Handler {
    Arc::new(move |call| {
        let output = handler(call);
        Box::pin(async move { output })
    })
}

#[derive(Debug)]
struct MemoryProcess {
    pid: u32,
    status: oneshot::Receiver<ExitStatus>,
    host: MemoryHost,
}

#[async_trait]
impl ProcessControl for MemoryProcess {
    async fn wait(&mut self) -> Result<ExitStatus> {
        match (&mut self.status).await {
            Ok(status) => Ok(status),
            Err(_) => Err(Error::new(ErrorKind::ConnectionLost, "exec").with_context("connection dropped")),
        }
    }

    async fn kill(&mut self) -> Result<()> {
        // Gone already is fine: the process ended on its own.
        self.host.signal(self.pid, "KILL");
        Ok(())
    }
}

#[async_trait]
impl Transport for MemoryHost {
    async fn spawn(&self, command: &Command) -> Result<Process> {
        self.ensure_alive("exec")?;
        command.validate()?;
        if command.user.is_some() || command.group.is_some() {
            return Err(Error::new(ErrorKind::Unsupported, "exec").with_context("mem runs commands as its one user"));
        }
        if command.pty.is_some() {
            return Err(Error::new(ErrorKind::Unsupported, "exec").with_context("mem has no terminals"));
        }
        let words = match &command.line {
            crate::CommandLine::Argv(argv) => argv.as_slice(),
            crate::CommandLine::Shell(_) => &[],
        };
        for word in words.iter().map(|w| w.as_os_str()).chain(command.cwd.iter().map(|d| d.as_os_str())) {
            utf8_path("exec", Path::new(word))?;
        }
        let line = command.shell_line();
        let handler = self.handler_for(command, &line);
        let (stdin_writer, stdin_reader) = tokio::io::duplex(CHUNK);
        let (stdout_writer, stdout_reader) = tokio::io::duplex(CHUNK);
        let (stderr_writer, stderr_reader) = tokio::io::duplex(CHUNK);
        let (status_tx, status_rx) = oneshot::channel();
        let (signal_tx, mut signal_rx) = tokio::sync::mpsc::unbounded_channel();
        let pid = 100 + self.shared.last_pid.fetch_add(1, Ordering::SeqCst);
        lock(&self.shared.processes).insert(pid, signal_tx);
        let host = self.clone();
        let command = command.clone();
        tokio::spawn(async move {
            let dropped = host.shared.dropped.notified();
            tokio::pin!(dropped);
            dropped.as_mut().enable();
            let work = async {
                match handler {
                    Some(handler) => {
                        run_handler(&host, handler, line, command, stdin_reader, stdout_writer, stderr_writer).await
                    }
                    None => {
                        lock(&host.shared.calls).push(Call { line, command: command.clone(), stdin: Vec::new() });
                        let io = shell::Stdio {
                            stdin: shell::Source::new(stdin_reader),
                            stdout: shell::Sink::pipe(stdout_writer),
                            stderr: shell::Sink::pipe(stderr_writer),
                        };
                        match shell::run(host.clone(), pid, &command, io).await {
                            Ok(code) | Err(shell::Ended::Exit(code)) => ExitStatus::Code(code),
                            Err(shell::Ended::Signal(signal)) => ExitStatus::Signal(signal.into()),
                        }
                    }
                }
            };
            // A signal ends the process (mem's commands catch none); a
            // dropped network leaves it without a status, which its waiter
            // reports as a lost connection.
            let outcome = if host.is_alive() {
                tokio::select! {
                    status = work => Some(status),
                    Some(signal) = signal_rx.recv() => Some(ExitStatus::Signal(signal.into())),
                    () = &mut dropped => None,
                }
            } else {
                None
            };
            lock(&host.shared.processes).remove(&pid);
            if let Some(status) = outcome.filter(|_| host.is_alive()) {
                let _ = status_tx.send(status);
            }
        });
        Ok(Process::new(
            Some(Box::pin(stdin_writer)),
            Some(Box::pin(stdout_reader)),
            Some(Box::pin(stderr_reader)),
            Box::new(MemoryProcess { pid, status: status_rx, host: self.clone() }),
        ))
    }
}

/// A scripted command: like a real process the handler sees its whole
/// input, so it runs once stdin is closed.
async fn run_handler(
    host: &MemoryHost,
    handler: Handler,
    line: String,
    command: Command,
    mut stdin_reader: tokio::io::DuplexStream,
    mut stdout_writer: tokio::io::DuplexStream,
    mut stderr_writer: tokio::io::DuplexStream,
) -> ExitStatus {
    let mut stdin = Vec::new();
    if stdin_reader.read_to_end(&mut stdin).await.is_err() {
        return ExitStatus::Signal("PIPE".into());
    }
    let call = Call { line: line.clone(), command, stdin };
    lock(&host.shared.calls).push(call.clone());
    let output = handler(call).await;
    let (out, err) = tokio::join!(
        write_chunks(&mut stdout_writer, &output.stdout),
        write_chunks(&mut stderr_writer, &output.stderr)
    );
    // A reader that went away gets what a real process gets: SIGPIPE.
    if out.is_ok() && err.is_ok() { output.status } else { ExitStatus::Signal("PIPE".into()) }
}

async fn write_chunks(pipe: &mut tokio::io::DuplexStream, data: &[u8]) -> std::io::Result<()> {
    for chunk in data.chunks(CHUNK) {
        pipe.write_all(chunk).await?;
    }
    pipe.shutdown().await
}
