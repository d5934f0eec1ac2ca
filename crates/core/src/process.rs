//! A running command with streaming standard input, output and error.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::command::{Command, ExitStatus, Output};
use crate::error::{Error, ErrorKind, Result};

/// A boxed byte source (a process's stdout, a downloaded file, …).
pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed byte sink (a process's stdin, …).
pub type BoxWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// The part of a running process each transport implements: waiting for it and
/// stopping it.
#[async_trait]
pub trait ProcessControl: Send + fmt::Debug {
    /// Waits until the process ends.
    async fn wait(&mut self) -> Result<ExitStatus>;
    /// Stops the process (and what it started) at once.
    async fn kill(&mut self) -> Result<()>;
    /// Tells the process's terminal its new size.
    async fn resize(&mut self, _cols: u16, _rows: u16) -> Result<()> {
        Err(Error::new(ErrorKind::Unsupported, "resize").with_context("process has no terminal"))
    }
}

/// A running command. Take the pipes you need (`stdin`, `stdout`, `stderr`
/// are public), then [`Process::wait`].
pub struct Process {
    /// The command's standard input; drop it (or call `shutdown`) to send EOF.
    pub stdin: Option<BoxWriter>,
    /// The command's standard output.
    pub stdout: Option<BoxReader>,
    /// The command's standard error (absent with a terminal, which merges it).
    pub stderr: Option<BoxReader>,
    control: Box<dyn ProcessControl>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("control", &self.control)
            .finish()
    }
}

impl Process {
    /// Assembles a process from its pipes and its control.
    pub fn new(
        stdin: Option<BoxWriter>,
        stdout: Option<BoxReader>,
        stderr: Option<BoxReader>,
        control: Box<dyn ProcessControl>,
    ) -> Self {
        Process { stdin, stdout, stderr, control }
    }

    /// Closes stdin (if still held) and waits for the exit status.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        self.stdin = None;
        self.control.wait().await
    }

    /// Stops the process.
    pub async fn kill(&mut self) -> Result<()> {
        self.control.kill().await
    }

    /// Tells the process's terminal its new size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        self.control.resize(cols, rows).await
    }

    /// Feeds `stdin`, reads stdout and stderr to the end concurrently (so a
    /// full pipe never blocks the other), waits, and applies `timeout`: when it
    /// runs out the process is killed and the result is [`ErrorKind::Timeout`].
    pub async fn collect(mut self, stdin: Option<Bytes>, timeout: Option<Duration>) -> Result<Output> {
        let stdin_pipe = self.stdin.take();
        let stdout_pipe = self.stdout.take();
        let stderr_pipe = self.stderr.take();
        let io = async {
            let feed = feed_stdin(stdin_pipe, stdin);
            let (fed, stdout, stderr) = tokio::join!(feed, read_all(stdout_pipe), read_all(stderr_pipe));
            fed?;
            let status = self.control.wait().await?;
            Ok::<_, Error>(Output { stdout: stdout?, stderr: stderr?, status })
        };
        match timeout {
            None => io.await,
            Some(limit) => match tokio::time::timeout(limit, io).await {
                Ok(result) => result,
                Err(_) => {
                    // The io future (and its pipe borrows) is gone; stop the process.
                    let _ = self.control.kill().await;
                    Err(Error::new(ErrorKind::Timeout, "exec").with_context(format!("no exit within {limit:?}")))
                }
            },
        }
    }
}

async fn feed_stdin(pipe: Option<BoxWriter>, data: Option<Bytes>) -> Result<()> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    if let Some(data) = data {
        match pipe.write_all(&data).await {
            // A command that exits without reading its input is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Error::io("exec: write stdin", e)),
            Ok(()) => {}
        }
    }
    match pipe.shutdown().await {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("exec: close stdin", e)),
        _ => Ok(()),
    }
}

async fn read_all(pipe: Option<BoxReader>) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut buf).await.map_err(|e| Error::io("exec: read output", e))?;
    }
    Ok(buf)
}

/// Runs `command` through `spawn`-like plumbing: the default body of
/// [`crate::Transport::exec`] for transports whose exec is spawn + collect.
pub async fn exec_with_process(process: Process, command: &Command) -> Result<Output> {
    process.collect(command.stdin.clone(), command.timeout).await?.checked(command)
}

/// Runs futures at once on the current task and collects their outputs in
/// order (no spawning, so they may borrow).
pub(crate) async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
