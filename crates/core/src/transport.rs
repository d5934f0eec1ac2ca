//! The three capabilities a transport can offer: [`Transport`] (commands),
//! [`FileTransfer`](crate::FileTransfer) (files) and [`Tunnel`](crate::Tunnel)
//! (streams through the host).

use std::fmt;

use async_trait::async_trait;

use crate::command::{Command, Output, Pty};
use crate::error::{Error, ErrorKind, Result};
use crate::process::{Process, exec_with_process};

/// Runs commands on a host.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Runs `command` to the end and returns its output. `command.stdin` is
    /// fed to it, `timeout` kills it, `check` turns a non-zero exit into
    /// [`ErrorKind::CommandFailed`].
    async fn exec(&self, command: &Command) -> Result<Output> {
        let process = self.spawn(command).await?;
        exec_with_process(process, command).await
    }

    /// Starts `command` and hands back its pipes for streaming. The caller
    /// writes stdin through [`Process::stdin`] (`command.stdin` is only used by
    /// `exec`), and `timeout`/`check` are the caller's business too.
    async fn spawn(&self, command: &Command) -> Result<Process>;

    /// Starts an interactive login shell on a terminal.
    async fn shell(&self, _pty: &Pty) -> Result<Process> {
        Err(Error::new(ErrorKind::Unsupported, "shell").with_context("this transport has no interactive shell"))
    }
}
