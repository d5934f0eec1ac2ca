//! Commands over a Telnet session.
//!
//! On a POSIX shell every command goes out as one line:
//!
//! ```text
//! printf '\036B<token>\037\n'; sh -c '<command>' </dev/null 2>&1; printf '\036E<token> %d\037\n' "$?"
//! ```
//!
//! The output is exactly the bytes between the two markers: the shell's
//! echo and prompt come before the first and after the second, and the
//! terminal's output processing is off (see `login::prepare_shell`), so
//! nothing is translated in between. The markers hold control bytes that
//! the echoed line spells as `\036`, so the echo can never be mistaken for
//! them. `sh -c` keeps the session's shell safe from `exit`, `cd` and
//! `kill $$` in the command.
//!
//! A terminal has one output stream: stderr arrives merged into stdout, and
//! a command's stdin is the bytes of [`Command::stdin`] (sent inside the
//! line), never a stream. The plugin declares `terminal-io` for this.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tether_core::raw::exec_with_process;
use tether_core::{
    BoxReader, BoxWriter, Command, Error, ErrorKind, ExitStatus, Output, Process, ProcessControl, Pty, Result,
    Transport, quote,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::connect::{Loan, TelnetHost};
use crate::login::find;
use crate::terminal::{Setup, Terminal, Writer};

/// Bytes of output a pipe holds for a reader that is behind (then the
/// session stops reading, and the host's output waits in the network).
const PIPE: usize = 256 << 10;

/// How long a console's text must stay still after what looks like its
/// prompt, when the echo of the command was not seen, to take it as the end.
const QUIET_PROMPT: Duration = Duration::from_millis(300);

/// How long a command gets to end after ^C, then after ^\, before the
/// session is abandoned (its socket closed, so the host hangs up on it).
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);

/// A deadline far enough away to mean "none": a command may run for days;
/// its own `timeout` is what bounds it.
fn no_deadline() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[async_trait]
impl Transport for TelnetHost {
    async fn exec(&self, command: &Command) -> Result<Output> {
        let process = self.spawn(command).await?;
        // The stdin bytes went out inside the line.
        let mut without_stdin = command.clone();
        without_stdin.stdin = None;
        exec_with_process(process, &without_stdin).await
    }

    async fn spawn(&self, command: &Command) -> Result<Process> {
        self.ensure_open("exec")?;
        command.validate()?;
        if command.user.is_some() || command.group.is_some() {
            return Err(Error::new(ErrorKind::Unsupported, "exec")
                .with_context("telnet runs commands as the user it logged in as"));
        }
        let host = self.host_handle()?;
        let token = self.token();
        let (line, framed) = if self.options.posix_shell {
            (framed_line(command, &token), true)
        } else {
            if command.stdin.is_some() || command.cwd.is_some() || !command.env.is_empty() {
                return Err(Error::new(ErrorKind::Unsupported, "exec")
                    .with_context("a console without a POSIX shell takes a bare command line: no stdin, cwd or env"));
            }
            (format!("{}\r", command.shell_line()), false)
        };
        let loan = self.borrow("exec").await?;
        let writer = loan.session.terminal.writer.clone();
        writer.send_text(line.as_bytes()).await?;
        let (stdout_writer, stdout_reader) = tokio::io::duplex(PIPE);
        let (done_tx, done) = oneshot::channel();
        let abandon = Arc::new(Notify::new());
        let run = Run { loan, token, out: stdout_writer, abandon: abandon.clone(), echo: line };
        tokio::spawn(async move {
            let (ending, loan) = if framed { run.framed().await } else { run.until_prompt(&host.prompt).await };
            if let Some(loan) = loan {
                host.give_back(loan);
            }
            let _ = done_tx.send(ending);
        });
        let control = Control {
            writer,
            done: Some(done),
            abandon,
            interrupted: None,
            ended: None,
            close_at_once: self.options.single_client_console,
        };
        Ok(Process::new(None, Some(Box::pin(stdout_reader) as BoxReader), None, Box::new(control)))
    }

    async fn shell(&self, pty: &Pty) -> Result<Process> {
        self.ensure_open("shell")?;
        let setup = Setup {
            term: pty.term.clone(),
            cols: pty.cols,
            rows: pty.rows,
            server_echo: true,
            pacing: self.options.pacing(),
            what: self.what.clone(),
        };
        let terminal = self.open_terminal(setup).await?;
        Ok(interactive(terminal, self.options.auto_window_resize))
    }
}

impl TelnetHost {
    /// This host as an owned handle for a command's pump task.
    fn host_handle(&self) -> Result<Arc<TelnetHost>> {
        self.me.upgrade().ok_or_else(|| {
            Error::new(ErrorKind::ConnectionLost, "exec").with_context(format!("{}: the connection is gone", self.what))
        })
    }
}

/// The whole line for one command on a POSIX shell.
///
/// What is typed stays printable ASCII, in lines a canonical-mode terminal
/// takes whole (4095 bytes at most on Linux) and a line editor does not act
/// on (a TAB would complete a file name): a script with control bytes, or a
/// long one, is built in a variable over several short lines, as is stdin.
fn framed_line(command: &Command, token: &str) -> String {
    let script = command.wrapped_shell_line();
    // Lines that only assign go first; the begin marker and the command
    // share the last (possibly continued) line, so a line editor's redraws
    // between lines all come before the begin marker.
    let mut lines = Vec::new();
    // Bytes over 0x7f are not typed either: we send NVT text, not binary,
    // and a server whose terminal strips the 8th bit of NVT input (inetutils
    // telnetd sets ISTRIP) would turn `\xc3\xa9` into `C)`.
    let typed_as_is = script.len() <= TYPED_LINE && script.bytes().all(|b| (0x20..0x7f).contains(&b));
    let run = if typed_as_is {
        format!("sh -c {}", quote(&script))
    } else {
        lines.extend(assignment_lines(SCRIPT_VARIABLE, script.as_bytes()));
        format!("sh -c \"${SCRIPT_VARIABLE}\"")
    };
    let body = match &command.stdin {
        None => format!("{run} </dev/null 2>&1"),
        Some(data) => {
            let mut group = String::from("{ :");
            for chunk in data.chunks(TYPED_LINE / 4) {
                group.push_str("\nprintf '");
                group.push_str(&printf_escaped(chunk));
                group.push('\'');
            }
            format!("{group}\n}} | {run} 2>&1")
        }
    };
    lines.push(format!("printf '\\036B{token}\\037\\n'; {body}; printf '\\036E{token} %d\\037\\n' \"$?\"\r"));
    lines.join("\n")
}

/// The shell variable a long script is built in.
const SCRIPT_VARIABLE: &str = "tether_script";

/// Characters of one typed line, well under a canonical terminal's 4095.
const TYPED_LINE: usize = 2048;

/// Lines that set `variable` to exactly `bytes`, a chunk per line. The `x`
/// keeps command substitution from dropping a chunk's trailing newlines.
fn assignment_lines(variable: &str, bytes: &[u8]) -> Vec<String> {
    let mut lines = vec![format!("{variable}=''")];
    for chunk in bytes.chunks(TYPED_LINE / 4) {
        lines.push(format!(
            "{variable}=\"${variable}$(printf '{}x')\"; {variable}=\"${{{variable}%x}}\"",
            printf_escaped(chunk)
        ));
    }
    lines
}

/// `bytes` as a `printf` format that prints exactly them: printable ASCII
/// as is, everything else as an octal escape, and so are `'`, `\` and `%`
/// (quoting and format), `-` (a format starting with one is an option to
/// bash's printf) and `!` (bash's history expansion).
fn printf_escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        match byte {
            b'\'' | b'\\' | b'%' | b'-' | b'!' => out.push_str(&format!("\\{byte:03o}")),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\{byte:03o}")),
        }
    }
    out
}

/// One command's reading side, run by its own task.
struct Run {
    loan: Loan,
    token: String,
    out: DuplexStream,
    abandon: Arc<Notify>,
    /// The line as sent, to strip its echo on a console.
    echo: String,
}

type Ending = Result<ExitStatus>;

impl Run {
    fn terminal(&mut self) -> &mut Terminal {
        &mut self.loan.session.terminal
    }

    /// Waits for more text, or gives up when the caller abandons the command.
    async fn receive(&mut self) -> Result<bool> {
        let abandon = self.abandon.clone();
        tokio::select! {
            received = self.loan.session.terminal.receive("exec", no_deadline()) => received.map(|()| true),
            () = abandon.notified() => Ok(false),
        }
    }

    /// Hands output on; a reader that went away does not stop the draining.
    async fn emit(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.out.write_all(bytes).await;
        }
    }

    /// Reads a framed command: the begin marker, the output, the end marker
    /// with the status. The session goes back only after its end marker:
    /// then the next command starts on a clean line.
    async fn framed(mut self) -> (Ending, Option<Loan>) {
        let begin = format!("\x1eB{}\x1f\n", self.token).into_bytes();
        let end = format!("\x1eE{} ", self.token).into_bytes();
        // Whatever comes before the begin marker is echo and prompt.
        loop {
            let terminal = self.terminal();
            if let Some(at) = find(&terminal.pending, &begin) {
                terminal.pending.drain(..at + begin.len());
                break;
            }
            let keep = begin.len() - 1;
            if terminal.pending.len() > keep {
                let cut = terminal.pending.len() - keep;
                terminal.pending.drain(..cut);
            }
            match self.receive().await {
                Ok(true) => {}
                Ok(false) => return (Err(abandoned(&self.loan)), None),
                Err(err) => return (Err(err), None),
            }
        }
        loop {
            let pending = std::mem::take(&mut self.terminal().pending);
            if let Some(at) = find(&pending, &end) {
                let tail = &pending[at + end.len()..];
                if let Some(close) = tail.iter().position(|&b| b == 0x1f) {
                    if tail.get(close + 1).is_none() {
                        // The newline after the marker is still on its way.
                        self.terminal().pending = pending;
                    } else {
                        self.emit(&pending[..at]).await;
                        let status = parse_status(&tail[..close]);
                        self.terminal().pending = tail[close + 2..].to_vec();
                        let _ = self.out.shutdown().await;
                        return match status {
                            Some(code) => (Ok(ExitStatus::Code(code)), Some(self.loan)),
                            None => (Err(garbled(&self.loan)), None),
                        };
                    }
                } else {
                    self.emit(&pending[..at]).await;
                    self.terminal().pending = pending[at..].to_vec();
                }
            } else {
                // Keep what could be the start of the end marker.
                let keep = partial_suffix(&pending, &end);
                let split = pending.len() - keep;
                self.emit(&pending[..split]).await;
                self.terminal().pending = pending[split..].to_vec();
            }
            match self.receive().await {
                Ok(true) => {}
                Ok(false) => return (Err(abandoned(&self.loan)), None),
                Err(err) => {
                    let _ = self.out.shutdown().await;
                    return (Err(err), None);
                }
            }
        }
    }

    /// Reads a console command's output up to the next prompt; the status
    /// is unknown. The echo of the line and the terminal's CR LF and escape
    /// sequences are stripped.
    async fn until_prompt(mut self, prompt: &regex::bytes::Regex) -> (Ending, Option<Loan>) {
        let echo = self.echo.trim_end_matches('\r').as_bytes().to_vec();
        loop {
            let cleaned = clean_console_text(&self.terminal().pending);
            // The prompt counts only after the echo of our own line, which
            // is the first line of what comes back (a later line may well
            // hold the same text: `help` prints `help`).
            let first_line = &cleaned[..cleaned.iter().position(|&b| b == b'\n').unwrap_or(cleaned.len())];
            let after_echo = match find(first_line, &echo) {
                Some(at) => at + echo.len(),
                None => 0,
            };
            let body = &cleaned[after_echo..];
            let at_prompt = prompt.find_iter(body).last().filter(|m| m.end() == body.len());
            // A console that does not echo (or wraps its echo) still ends at
            // its prompt: taken once the text has stopped for a moment, so a
            // prompt-like line in the middle of the output does not end it.
            let quiet_prompt = at_prompt.is_some() && after_echo == 0 && !echo.is_empty() && {
                let terminal = &mut self.loan.session.terminal;
                let quiet_until = Instant::now() + QUIET_PROMPT;
                match terminal.receive("exec", quiet_until).await {
                    Err(err) if err.kind() == ErrorKind::Timeout => true,
                    Err(err) => return (Err(err), None),
                    Ok(()) => continue,
                }
            };
            if quiet_prompt && echo_garbled(&cleaned, &echo, prompt) {
                // The console is back at its prompt, so the session stays usable.
                self.terminal().pending.clear();
                let _ = self.out.shutdown().await;
                let what = self.loan.session.terminal.what.clone();
                return (
                    Err(Error::new(ErrorKind::Protocol, "exec").with_context(format!(
                        "{what}: the console echoed the line differently from what was sent: it arrived \
                         corrupted (an overflowing UART input FIFO? set telnet_options.write_chunk_size)"
                    ))),
                    Some(self.loan),
                );
            }
            if (after_echo > 0 || echo.is_empty() || quiet_prompt)
                && let Some(found) = at_prompt
            {
                let output = body[..found.start()].strip_prefix(b"\n").unwrap_or(&body[..found.start()]);
                let output = strip_last_line_start(output);
                self.emit(&output).await;
                self.terminal().pending.clear();
                let _ = self.out.shutdown().await;
                return (Ok(ExitStatus::Unknown), Some(self.loan));
            }
            match self.receive().await {
                Ok(true) => {}
                Ok(false) => return (Err(abandoned(&self.loan)), None),
                Err(err) => return (Err(err), None),
            }
        }
    }
}

/// Whether `text` holds an echo of the line that starts like `echo` but is
/// not it: the console got the line damaged.
/// The damaged echo is the first line, and it starts like the line sent
/// (after a prompt the console may have printed again): output that merely
/// mentions the command further on is not taken for one.
fn echo_garbled(text: &[u8], echo: &[u8], prompt: &regex::bytes::Regex) -> bool {
    let head = &echo[..echo.len().min(4)];
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    find(first_line, head).is_some_and(|at| at == 0 || prompt.is_match(&first_line[..at]))
}

/// The output before a prompt, without the partial line the prompt sits on
/// (a console prints its prompt after a newline).
fn strip_last_line_start(output: &[u8]) -> Vec<u8> {
    match output.iter().rposition(|&b| b == b'\n') {
        Some(at) => output[..=at].to_vec(),
        None => output.to_vec(),
    }
}

/// A console's text as a user would read it: CR LF as LF, lone CRs and
/// ANSI escape sequences (colours, cursor moves, prompt redraws) removed.
pub(crate) fn clean_console_text(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\r' => i += 1,
            0x1b => {
                // ESC [ params final, or ESC and one byte.
                i += 1;
                if text.get(i) == Some(&b'[') {
                    i += 1;
                    while i < text.len() && !(0x40..=0x7e).contains(&text[i]) {
                        i += 1;
                    }
                }
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The length of the longest suffix of `text` that is a proper prefix of `marker`.
fn partial_suffix(text: &[u8], marker: &[u8]) -> usize {
    (1..marker.len().min(text.len() + 1)).rev().find(|&n| text.ends_with(&marker[..n])).unwrap_or(0)
}

fn parse_status(digits: &[u8]) -> Option<i32> {
    std::str::from_utf8(digits).ok()?.trim().parse().ok()
}

fn abandoned(loan: &Loan) -> Error {
    Error::new(ErrorKind::Timeout, "exec").with_context(format!(
        "{}: the command did not end when interrupted; the session was closed",
        loan.session.terminal.what
    ))
}

fn garbled(loan: &Loan) -> Error {
    Error::new(ErrorKind::Protocol, "exec")
        .with_context(format!("{}: the command's end marker was garbled", loan.session.terminal.what))
}

/// Waits for and stops one command.
struct Control {
    writer: Arc<Writer>,
    done: Option<oneshot::Receiver<Ending>>,
    abandon: Arc<Notify>,
    /// The interrupt that ended it, if we sent one (`INT`, `QUIT`).
    interrupted: Option<&'static str>,
    ended: Option<Ending>,
    /// A single-client console: the session is closed at the kill, so that
    /// the next connect gets in at once rather than after the interrupts'
    /// grace (a console command often ignores ^C and ^\ anyway).
    close_at_once: bool,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("interrupted", &self.interrupted).finish_non_exhaustive()
    }
}

impl Control {
    /// The ending, if it comes within `limit` (`None` waits for ever).
    async fn ending_within(&mut self, limit: Option<Duration>) -> Option<Ending> {
        if let Some(ending) = &self.ended {
            return Some(clone_ending(ending));
        }
        let done = self.done.as_mut()?;
        let ending = match limit {
            None => done.await.unwrap_or_else(|_| Err(task_gone())),
            Some(limit) => tokio::time::timeout(limit, done).await.ok()?.unwrap_or_else(|_| Err(task_gone())),
        };
        self.done = None;
        self.ended = Some(clone_ending(&ending));
        Some(ending)
    }
}

fn task_gone() -> Error {
    Error::new(ErrorKind::ConnectionLost, "exec").with_context("the session's reader ended")
}

fn clone_ending(ending: &Ending) -> Ending {
    match ending {
        Ok(status) => Ok(status.clone()),
        Err(err) => Err(Error::new(err.kind(), "exec").with_context(err.to_string())),
    }
}

#[async_trait]
impl ProcessControl for Control {
    async fn wait(&mut self) -> Result<ExitStatus> {
        let ending = self.ending_within(None).await.unwrap_or_else(|| Err(task_gone()))?;
        // A shell reports death by a signal as 128 + its number: after our
        // own interrupt, say which signal it was.
        Ok(match (self.interrupted, ending) {
            (Some(signal), ExitStatus::Code(code)) if tether_core::signal_number(signal) == Some(code - 128) => {
                ExitStatus::Signal(signal.into())
            }
            (_, status) => status,
        })
    }

    async fn kill(&mut self) -> Result<()> {
        if self.ended.is_some() || self.done.is_none() {
            return Ok(());
        }
        if self.close_at_once {
            // ^C all the same, so a console command that honours it does not
            // outlive us; then close without waiting.
            self.interrupted = Some("INT");
            let _ = self.writer.send_text(b"\x03").await;
            self.abandon.notify_one();
            self.writer.shutdown().await;
            let _ = self.ending_within(Some(INTERRUPT_GRACE)).await;
            return Ok(());
        }
        for (key, signal) in [(b"\x03", "INT"), (b"\x1c", "QUIT")] {
            self.interrupted = Some(signal);
            // A write that fails means the session is gone, which ends the command too.
            let _ = self.writer.send_text(key).await;
            if self.ending_within(Some(INTERRUPT_GRACE)).await.is_some() {
                return Ok(());
            }
        }
        // Still running: close the session; the host hangs up on the command.
        self.abandon.notify_one();
        self.writer.shutdown().await;
        let _ = self.ending_within(Some(INTERRUPT_GRACE)).await;
        Ok(())
    }
}

/// An interactive shell: keys go out as typed, text comes back as sent.
/// Window size changes reach the server only with `auto_window_resize`.
fn interactive(mut terminal: Terminal, pass_resizes: bool) -> Process {
    let writer = terminal.writer.clone();
    let (stdin_local, mut stdin_remote) = tokio::io::duplex(PIPE);
    let (mut stdout_remote, stdout_local) = tokio::io::duplex(PIPE);
    let keys_writer = writer.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok(n) = stdin_remote.read(&mut buffer).await {
            if n == 0 || keys_writer.send_text(&buffer[..n]).await.is_err() {
                break;
            }
        }
    });
    let (done_tx, done) = oneshot::channel();
    tokio::spawn(async move {
        let ending = loop {
            if !terminal.pending.is_empty() {
                let text = std::mem::take(&mut terminal.pending);
                if stdout_remote.write_all(&text).await.is_err() {
                    break Ok(ExitStatus::Unknown);
                }
            }
            match terminal.receive("shell", no_deadline()).await {
                Ok(()) => {}
                // The server hanging up is how a telnet shell ends.
                Err(err) if err.kind() == ErrorKind::ConnectionLost => break Ok(ExitStatus::Unknown),
                Err(err) => break Err(err),
            }
        };
        let _ = stdout_remote.shutdown().await;
        let _ = done_tx.send(ending);
    });
    let control = ShellControl { writer, done: Some(done), pass_resizes };
    Process::new(
        Some(Box::pin(stdin_local) as BoxWriter),
        Some(Box::pin(stdout_local) as BoxReader),
        None,
        Box::new(control),
    )
}

#[derive(Debug)]
struct ShellControl {
    writer: Arc<Writer>,
    done: Option<oneshot::Receiver<Ending>>,
    pass_resizes: bool,
}

#[async_trait]
impl ProcessControl for ShellControl {
    async fn wait(&mut self) -> Result<ExitStatus> {
        match self.done.take() {
            Some(done) => done.await.unwrap_or_else(|_| Err(task_gone())),
            None => Ok(ExitStatus::Unknown),
        }
    }

    async fn kill(&mut self) -> Result<()> {
        self.writer.shutdown().await;
        Ok(())
    }

    async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        if !self.pass_resizes {
            // Off by default, so automated runs see one fixed size.
            return Ok(());
        }
        self.writer.resize(cols, rows).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_spelled_for_printf() {
        assert_eq!(printf_escaped(b"a b'%\\\n\xff-!"), "a b\\047\\045\\134\\012\\377\\055\\041");
    }

    #[test]
    fn the_line_frames_the_command() {
        let line = framed_line(&Command::argv(["printf", "%s", "a b"]), "T1");
        assert_eq!(
            line,
            "printf '\\036BT1\\037\\n'; sh -c 'printf '\\''%s'\\'' '\\''a b'\\''' </dev/null 2>&1; printf '\\036ET1 %d\\037\\n' \"$?\"\r"
        );
        assert!(!line.contains('\x1e'), "the echo must not contain the marker bytes");
    }

    #[test]
    fn control_bytes_and_long_scripts_are_never_typed() {
        let long = "x".repeat(10_000);
        for command in
            [Command::argv(["printf", "tab\there"]), Command::argv(["echo", &long]), Command::argv(["echo", "\u{e9}"])]
        {
            let line = framed_line(&command, "T1");
            assert!(!line.bytes().any(|b| (b < 0x20 && b != b'\n' && b != b'\r') || b >= 0x7f), "{line}");
            assert!(line.lines().all(|l| l.len() < 4000), "a line over the canonical limit");
            assert!(line.contains("sh -c \"$tether_script\""));
        }
    }

    #[test]
    fn a_marker_split_across_reads_is_held_back() {
        assert_eq!(partial_suffix(b"output\x1eE", b"\x1eET1 "), 2);
        assert_eq!(partial_suffix(b"output", b"\x1eET1 "), 0);
        assert_eq!(partial_suffix(b"\x1e", b"\x1eET1 "), 1);
    }

    #[test]
    fn console_noise_is_stripped() {
        assert_eq!(clean_console_text(b"\x1b[1;32mok\x1b[0m\r\nuart:~$ "), b"ok\nuart:~$ ");
    }
}
