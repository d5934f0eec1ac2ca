//! `tether exec`.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use tether::{Command, Error, ErrorKind, ExitStatus, Process};
use tokio::io::AsyncWriteExt;

use super::Context;
use super::report::print_json;

#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// Inventory id, `local`, or a URL (`ssh://user@host:port`, `mem://name`).
    host: String,
    /// Take the words as one line for the remote shell (globs, pipes, $VARS)
    /// instead of an exact argument vector.
    #[arg(long)]
    sh: bool,
    /// Kill the command after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Working directory (any bytes, like the command's words).
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Environment variable (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Run as this user.
    #[arg(long)]
    user: Option<String>,
    /// Run as this group.
    #[arg(long)]
    group: Option<String>,
    /// File creation mask, octal (e.g. 022).
    #[arg(long, value_parser = parse_octal)]
    umask: Option<u32>,
    /// The command and its arguments (after `--`), passed as the exact bytes given.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

pub(crate) fn parse_octal(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("expected an octal mode such as 022 or 0644, got `{text}`"))
}

fn build_command(args: &ExecArgs) -> Result<Command, Error> {
    let mut command = if args.sh {
        let words: Option<Vec<&str>> = args.command.iter().map(|word| word.to_str()).collect();
        let words = words.ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, "exec")
                .with_context("a --sh line must be UTF-8 text: give words that are not as arguments, without --sh")
        })?;
        Command::shell(words.join(" "))
    } else {
        Command::argv(args.command.clone())
    };
    command.cwd = args.cwd.clone();
    command.user = args.user.clone();
    command.group = args.group.clone();
    command.umask = args.umask;
    command.env = args.env.iter().cloned().collect();
    if let Some(seconds) = args.timeout {
        let timeout = Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "exec").with_context(format!("--timeout {seconds}")))?;
        command.timeout = Some(timeout);
    }
    command.validate()?;
    Ok(command)
}

/// The exit code `tether exec` passes on: the command's, or 128 + signal.
fn exit_code(status: &ExitStatus) -> u8 {
    u8::try_from(status.shell_code() & 0xff).unwrap_or(255)
}

pub(crate) async fn run(context: &Context, args: ExecArgs) -> Result<u8, Error> {
    let command = build_command(&args)?;
    let host = context.host(&args.host)?;
    if context.json {
        let output = host.exec(&command).await?;
        let code = exit_code(&output.status);
        print_json(&serde_json::json!({
            "host": host.id(),
            "exit_code": output.status.code(),
            "signal": match &output.status { ExitStatus::Signal(name) => Some(name.clone()), _ => None },
            "stdout": output.stdout_lossy(),
            "stderr": output.stderr_lossy(),
        }))?;
        return Ok(code);
    }
    let mut process = host.spawn(&command).await?;
    let work = stream(&mut process);
    let status = match command.timeout {
        None => tokio::select! {
            status = work => status?,
            _ = tokio::signal::ctrl_c() => return interrupted(&mut process).await,
        },
        Some(limit) => tokio::select! {
            status = tokio::time::timeout(limit, work) => match status {
                Ok(status) => status?,
                Err(_) => {
                    let _ = process.kill().await;
                    return Err(Error::new(ErrorKind::Timeout, "exec")
                        .with_host(host.id())
                        .with_context(format!("no exit within {limit:?}")));
                }
            },
            _ = tokio::signal::ctrl_c() => return interrupted(&mut process).await,
        },
    };
    host.close().await?;
    Ok(exit_code(&status))
}

async fn interrupted(process: &mut Process) -> Result<u8, Error> {
    let _ = process.kill().await;
    Ok(130)
}

/// Copies the process's output to ours as it comes, forwards our stdin when
/// it is not a terminal, and waits for the exit status.
async fn stream(process: &mut Process) -> Result<ExitStatus, Error> {
    let stdin = process.stdin.take();
    if let Some(mut remote_stdin) = stdin {
        if std::io::stdin().is_terminal() {
            drop(remote_stdin);
        } else {
            // Detached: a command that exits without reading must not wait
            // for our input to end.
            tokio::spawn(async move {
                let mut local = tokio::io::stdin();
                let _ = tokio::io::copy(&mut local, &mut remote_stdin).await;
                let _ = remote_stdin.shutdown().await;
            });
        }
    }
    let copy_out = async {
        if let Some(mut out) = process.stdout.take() {
            let mut stdout = tokio::io::stdout();
            tokio::io::copy(&mut out, &mut stdout).await.map_err(|e| Error::io("exec: write stdout", e))?;
            stdout.flush().await.map_err(|e| Error::io("exec: write stdout", e))?;
        }
        Ok::<_, Error>(())
    };
    let copy_err = async {
        if let Some(mut err) = process.stderr.take() {
            let mut stderr = tokio::io::stderr();
            tokio::io::copy(&mut err, &mut stderr).await.map_err(|e| Error::io("exec: write stderr", e))?;
        }
        Ok::<_, Error>(())
    };
    let (out, err) = tokio::join!(copy_out, copy_err);
    out?;
    err?;
    process.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(&ExitStatus::Code(3)), 3);
        assert_eq!(exit_code(&ExitStatus::Code(256 + 7)), 7);
        assert_eq!(exit_code(&ExitStatus::Signal("KILL".into())), 137);
    }

    #[test]
    fn octal_and_env_parsing() {
        assert_eq!(parse_octal("022"), Ok(0o22));
        assert!(parse_octal("9").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
    }
}
