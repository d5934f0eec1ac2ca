//! `tether shell HOST`: an interactive session on a terminal.

use std::io::IsTerminal;

use tether::{Error, ErrorKind, Process, Pty};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use super::Context;

#[derive(Debug, clap::Args)]
pub(crate) struct ShellArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
}

/// Puts the local terminal in raw mode (keys go to the remote side as
/// typed, ^C included) and restores it however the session ends.
struct RawMode;

impl RawMode {
    fn enable() -> Result<Option<RawMode>, Error> {
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        crossterm::terminal::enable_raw_mode().map_err(|e| Error::io("shell: raw mode", e))?;
        Ok(Some(RawMode))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

fn local_size() -> (u16, u16) {
    crossterm::terminal::size().unwrap_or((80, 24))
}

pub(crate) async fn run(context: &Context, args: ShellArgs) -> Result<u8, Error> {
    let host = context.host(&args.host)?;
    let (cols, rows) = local_size();
    let term = std::env::var("TERM").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| "xterm-256color".into());
    let mut process =
        host.transport().await?.shell(&Pty { term, cols, rows }).await.map_err(|e| e.with_host(host.id()))?;
    let raw = RawMode::enable()?;
    let status = session(&mut process).await;
    drop(raw);
    let status = status?;
    host.close().await?;
    match status {
        // A session that carries no status (telnet: the host hung up after
        // `exit`) ended as the user asked.
        tether::ExitStatus::Unknown => Ok(0),
        status => Ok(u8::try_from(status.shell_code() & 0xff).unwrap_or(255)),
    }
}

/// Keys to the remote side, its screen to ours, and window size changes
/// as they happen, until the remote shell exits.
async fn session(process: &mut Process) -> Result<tether::ExitStatus, Error> {
    if let Some(mut remote_stdin) = process.stdin.take() {
        // Detached: the shell may exit while we wait for a key.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut remote_stdin).await;
            let _ = remote_stdin.shutdown().await;
        });
    }
    let mut screen = process
        .stdout
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "shell").with_context("the session has no output stream"))?;
    let mut resized = signal(SignalKind::window_change()).map_err(|e| Error::io("shell: SIGWINCH", e))?;
    let mut stdout = tokio::io::stdout();
    let mut copy = std::pin::pin!(tokio::io::copy(&mut screen, &mut stdout));
    loop {
        tokio::select! {
            copied = &mut copy => {
                copied.map_err(|e| Error::io("shell: output", e))?;
                break;
            }
            _ = resized.recv() => {
                let (cols, rows) = local_size();
                if let Err(err) = process.resize(cols, rows).await {
                    tracing::debug!(%err, "window size change not passed on");
                }
            }
        }
    }
    // `copy` has flushed our stdout when the remote side's output ended.
    process.wait().await
}
