//! Scripted commands of a [`MemoryHost`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{MemoryHost, lock};
use crate::command::{Command, ExitStatus, Output};
use crate::error::{Error, ErrorKind, Result};
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
    /// Everything written to its standard input.
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
                crate::CommandLine::Argv(argv) => argv.first() == Some(program),
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

fn not_found(line: &str) -> Output {
    let program = line.split_whitespace().next().unwrap_or(line);
    Output {
        stdout: Vec::new(),
        stderr: format!("mem: {program}: command not found\n").into_bytes(),
        status: ExitStatus::Code(127),
    }
}

#[derive(Debug)]
struct MemoryProcess {
    status: Option<oneshot::Receiver<ExitStatus>>,
    task: tokio::task::JoinHandle<()>,
    host: MemoryHost,
}

#[async_trait]
impl ProcessControl for MemoryProcess {
    async fn wait(&mut self) -> Result<ExitStatus> {
        let Some(status) = self.status.as_mut() else {
            return Ok(ExitStatus::Signal("KILL".into()));
        };
        let generation = self.host.shared.generation.load(Ordering::SeqCst);
        match status.await {
            Ok(status) => Ok(status),
            Err(_) if generation != self.host.generation => {
                Err(Error::new(ErrorKind::ConnectionLost, "exec").with_context("connection dropped"))
            }
            Err(_) => Ok(ExitStatus::Signal("KILL".into())),
        }
    }

    async fn kill(&mut self) -> Result<()> {
        self.task.abort();
        self.status = None;
        Ok(())
    }
}

#[async_trait]
impl Transport for MemoryHost {
    async fn spawn(&self, command: &Command) -> Result<Process> {
        self.ensure_alive("exec")?;
        command.validate()?;
        let line = command.shell_line();
        let handler = self.handler_for(command, &line);
        let (stdin_writer, mut stdin_reader) = tokio::io::duplex(CHUNK);
        let (mut stdout_writer, stdout_reader) = tokio::io::duplex(CHUNK);
        let (mut stderr_writer, stderr_reader) = tokio::io::duplex(CHUNK);
        let (status_tx, status_rx) = oneshot::channel();
        let host = self.clone();
        let command = command.clone();
        let task = tokio::spawn(async move {
            // Like a real process the handler sees its whole input; it runs
            // once stdin is closed.
            let mut stdin = Vec::new();
            if stdin_reader.read_to_end(&mut stdin).await.is_err() {
                return;
            }
            let call = Call { line: line.clone(), command, stdin };
            lock(&host.shared.calls).push(call.clone());
            let output = match handler {
                Some(handler) => handler(call).await,
                None => not_found(&line),
            };
            if !host.is_alive() {
                return; // dropping status_tx reports the lost connection
            }
            let (out, err) = tokio::join!(
                write_chunks(&mut stdout_writer, &output.stdout),
                write_chunks(&mut stderr_writer, &output.stderr)
            );
            drop((stdout_writer, stderr_writer));
            // A reader that went away gets what a real process gets: SIGPIPE.
            let status = if out.is_ok() && err.is_ok() { output.status } else { ExitStatus::Signal("PIPE".into()) };
            let _ = status_tx.send(status);
        });
        Ok(Process::new(
            Some(Box::pin(stdin_writer)),
            Some(Box::pin(stdout_reader)),
            Some(Box::pin(stderr_reader)),
            Box::new(MemoryProcess { status: Some(status_rx), task, host: self.clone() }),
        ))
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

async fn write_chunks(pipe: &mut tokio::io::DuplexStream, data: &[u8]) -> std::io::Result<()> {
    for chunk in data.chunks(CHUNK) {
        pipe.write_all(chunk).await?;
    }
    pipe.shutdown().await
}
