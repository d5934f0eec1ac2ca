//! What to run ([`Command`]) and what came back ([`Output`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};

/// The program part of a command: an exact argument vector, or a line for the
/// remote shell.
#[derive(Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Program and arguments, passed without any shell interpretation
    /// (transports that only take a line quote each word). Words are bytes,
    /// as a POSIX `argv` is; a transport that can only carry UTF-8 refuses
    /// others (see [`crate::Capabilities::byte_names`]).
    Argv(Vec<OsString>),
    /// A line interpreted by the remote `sh`.
    Shell(String),
}

/// A terminal to allocate for a command or shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pty {
    /// Value of `TERM`.
    pub term: String,
    /// Width in columns.
    pub cols: u16,
    /// Height in rows.
    pub rows: u16,
}

impl Default for Pty {
    fn default() -> Self {
        Pty { term: "xterm-256color".into(), cols: 80, rows: 24 }
    }
}

/// A command to run on a host.
///
/// Built with a small fluent API:
///
/// ```
/// use std::time::Duration;
/// use tether_core::Command;
/// let cmd = Command::new("ls").arg("-l").cwd("/tmp").timeout(Duration::from_secs(5)).check(true);
/// assert_eq!(cmd.shell_line(), "ls -l");
/// ```
#[derive(Clone)]
pub struct Command {
    /// What to run.
    pub line: CommandLine,
    /// Bytes written to the command's standard input, which is then closed.
    pub stdin: Option<Bytes>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory (any bytes but NUL, like argv words).
    pub cwd: Option<PathBuf>,
    /// User to run as (name or numeric id).
    pub user: Option<String>,
    /// Group to run as (name or numeric id); defaults to the user's primary group.
    pub group: Option<String>,
    /// File mode creation mask, e.g. `0o077`.
    pub umask: Option<u32>,
    /// Allocate a terminal.
    pub pty: Option<Pty>,
    /// Kill the command and fail with [`ErrorKind::Timeout`] after this long.
    pub timeout: Option<Duration>,
    /// Turn a non-zero exit into an [`ErrorKind::CommandFailed`] error.
    pub check: bool,
}

impl Command {
    /// Runs `program` with no shell in between.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self::from_line(CommandLine::Argv(vec![program.into()]))
    }

    /// Runs an exact argument vector.
    pub fn argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self::from_line(CommandLine::Argv(argv.into_iter().map(Into::into).collect()))
    }

    /// Runs `line` through the remote `sh`.
    pub fn shell(line: impl Into<String>) -> Self {
        Self::from_line(CommandLine::Shell(line.into()))
    }

    fn from_line(line: CommandLine) -> Self {
        Command {
            line,
            stdin: None,
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            group: None,
            umask: None,
            pty: None,
            timeout: None,
            check: false,
        }
    }

    /// Appends an argument (to an argv command) or a quoted word (to a shell line).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        let arg = arg.into();
        match &mut self.line {
            CommandLine::Argv(argv) => argv.push(arg),
            CommandLine::Shell(line) => {
                line.push(' ');
                line.push_str(&quote_bytes(&arg));
            }
        }
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        args.into_iter().fold(self, |cmd, arg| cmd.arg(arg))
    }

    /// Feeds `data` to standard input.
    pub fn stdin(mut self, data: impl Into<Bytes>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Runs as this user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Runs as this group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the umask.
    pub fn umask(mut self, umask: u32) -> Self {
        self.umask = Some(umask);
        self
    }

    /// Allocates a terminal.
    pub fn pty(mut self, pty: Pty) -> Self {
        self.pty = Some(pty);
        self
    }

    /// Sets the time limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Fails on a non-zero exit.
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    /// The program part as one `sh` line: argv words quoted, a shell line as is.
    pub fn shell_line(&self) -> String {
        match &self.line {
            CommandLine::Argv(argv) => argv.iter().map(|w| quote_bytes(w)).collect::<Vec<_>>().join(" "),
            CommandLine::Shell(line) => line.clone(),
        }
    }

    /// The whole command as one `sh` line for transports that can only send a
    /// line: `cd`, `umask` and `env` prefixes, every value quoted. User and
    /// group switching is left to the transport.
    pub fn wrapped_shell_line(&self) -> String {
        let mut out = String::new();
        if let Some(cwd) = &self.cwd {
            out.push_str(&format!("cd {} && ", quote_bytes(cwd.as_os_str())));
        }
        if let Some(umask) = self.umask {
            out.push_str(&format!("umask {umask:03o} && "));
        }
        if !self.env.is_empty() {
            out.push_str("exec env");
            for (key, value) in &self.env {
                out.push(' ');
                out.push_str(&quote(&format!("{key}={value}")));
            }
            match &self.line {
                CommandLine::Argv(_) => out.push(' '),
                CommandLine::Shell(_) => out.push_str(" sh -c "),
            }
            match &self.line {
                CommandLine::Argv(_) => out.push_str(&self.shell_line()),
                CommandLine::Shell(line) => out.push_str(&quote(line)),
            }
        } else {
            out.push_str(&self.shell_line());
        }
        out
    }

    /// Rejects what no transport can run: an empty argv, names with NUL bytes.
    pub fn validate(&self) -> Result<()> {
        let invalid = |why: &str| Err(Error::new(ErrorKind::InvalidInput, "exec").with_context(why.to_string()));
        match &self.line {
            CommandLine::Argv(argv) if argv.is_empty() || argv[0].is_empty() => return invalid("empty command"),
            CommandLine::Argv(argv) if argv.iter().any(|a| a.as_bytes().contains(&0)) => {
                return invalid("argument contains a NUL byte");
            }
            CommandLine::Shell(line) if line.contains('\0') => return invalid("command line contains a NUL byte"),
            _ => {}
        }
        if self.cwd.as_ref().is_some_and(|dir| dir.as_os_str().is_empty() || dir.as_os_str().as_bytes().contains(&0)) {
            return invalid("working directory is empty or contains a NUL byte");
        }
        if self.env.keys().any(|k| k.is_empty() || k.contains(['=', '\0'])) {
            return invalid("environment variable name is empty or contains '=' or NUL");
        }
        if self.env.values().any(|v| v.contains('\0')) {
            return invalid("environment value contains a NUL byte");
        }
        if self.umask.is_some_and(|u| u > 0o777) {
            return invalid("umask above 0777");
        }
        Ok(())
    }
}

/// Quotes a word for `sh` (no quotes when none are needed).
pub fn quote(word: &str) -> Cow<'_, str> {
    shell_escape::unix::escape(Cow::Borrowed(word))
}

/// Quotes any bytes (but NUL) as one `sh` word that is ASCII text.
///
/// UTF-8 is quoted as [`quote`] does. Other bytes are spelled as `printf`
/// octal escapes inside `"$(…)"`, so the line stays text for transports that
/// take a line of text (an SSH exec request, a terminal) and the shell
/// rebuilds the exact bytes. Command substitution drops trailing newlines,
/// so those are quoted apart.
pub fn quote_bytes(word: &OsStr) -> Cow<'_, str> {
    let bytes = word.as_bytes();
    if let Ok(text) = std::str::from_utf8(bytes) {
        return quote(text);
    }
    let body = &bytes[..bytes.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1)];
    let newlines = &bytes[body.len()..];
    let mut out = String::from("\"$(printf '");
    for byte in body {
        out.push_str(&format!("\\{byte:03o}"));
    }
    out.push_str("')\"");
    if !newlines.is_empty() {
        out.push('\'');
        out.extend(newlines.iter().map(|_| '\n'));
        out.push('\'');
    }
    Cow::Owned(out)
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Environment values and stdin may hold secrets: show names and sizes only.
        f.debug_struct("Command")
            .field("line", &self.shell_line())
            .field("stdin_bytes", &self.stdin.as_ref().map(Bytes::len))
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("user", &self.user)
            .field("group", &self.group)
            .field("umask", &self.umask.map(|u| format!("{u:03o}")))
            .field("pty", &self.pty)
            .field("timeout", &self.timeout)
            .field("check", &self.check)
            .finish()
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shell_line())
    }
}

impl fmt::Debug for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandLine::Argv(argv) => f.debug_tuple("Argv").field(argv).finish(),
            CommandLine::Shell(line) => f.debug_tuple("Shell").field(line).finish(),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (name without `SIG`, e.g. `KILL`).
    Signal(String),
    /// The transport could not tell (e.g. the channel closed without a status).
    Unknown,
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit code, if it exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Code(code) => Some(*code),
            _ => None,
        }
    }

    /// The code a shell would report: the exit code, or 128 + signal number.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExitStatus::Code(code) => *code,
            ExitStatus::Signal(name) => 128 + signal_number(name).unwrap_or(0),
            ExitStatus::Unknown => 255,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signal(name) => write!(f, "killed by signal {name}"),
            ExitStatus::Unknown => f.write_str("ended with an unknown status"),
        }
    }
}

/// POSIX signal names as OpenSSH reports them, by their Linux number.
const SIGNALS: &[(i32, &str)] = &[
    (1, "HUP"),
    (2, "INT"),
    (3, "QUIT"),
    (4, "ILL"),
    (5, "TRAP"),
    (6, "ABRT"),
    (7, "BUS"),
    (8, "FPE"),
    (9, "KILL"),
    (10, "USR1"),
    (11, "SEGV"),
    (12, "USR2"),
    (13, "PIPE"),
    (14, "ALRM"),
    (15, "TERM"),
];

/// The signal name (`KILL`) for a Linux signal number.
pub fn signal_name(number: i32) -> String {
    SIGNALS
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, name)| (*name).to_string())
        .unwrap_or_else(|| number.to_string())
}

/// The Linux signal number for a name (`KILL` or `SIGKILL`).
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.strip_prefix("SIG").unwrap_or(name);
    SIGNALS.iter().find(|(_, n)| *n == name).map(|(number, _)| *number).or_else(|| name.parse().ok())
}

/// What a finished command left: its exact output bytes and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// Everything written to standard output.
    pub stdout: Vec<u8>,
    /// Everything written to standard error.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
}

impl Output {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// Applies `check`: a non-zero exit becomes [`ErrorKind::CommandFailed`]
    /// carrying this output.
    pub fn checked(self, command: &Command) -> Result<Output> {
        if !command.check || self.success() {
            return Ok(self);
        }
        let mut context = format!("`{}` {}", truncate(&command.shell_line(), 200), self.status);
        let stderr = self.stderr_lossy();
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            context.push_str(&format!(": {}", truncate(stderr.lines().last().unwrap_or(""), 200)));
        }
        Err(Error::new(ErrorKind::CommandFailed, "exec").with_context(context).with_output(self))
    }
}

fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
        None => Cow::Borrowed(text),
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &truncate(&self.stdout_lossy(), 512))
            .field("stderr", &truncate(&self.stderr_lossy(), 512))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_quoted_into_a_shell_line() {
        let cmd = Command::argv(["printf", "%s\n", "it's a $HOME"]);
        assert_eq!(
            cmd.shell_line(),
            r#"printf '%s
' 'it'\''s a $HOME'"#
        );
    }

    #[test]
    fn wrapper_sets_cwd_umask_and_env() {
        let cmd = Command::shell("echo $A").cwd("/tmp/a b").umask(0o22).env("A", "x y");
        assert_eq!(cmd.wrapped_shell_line(), "cd '/tmp/a b' && umask 022 && exec env 'A=x y' sh -c 'echo $A'");
    }

    #[test]
    fn check_turns_failure_into_error_with_output() {
        let cmd = Command::new("false").check(true);
        let out = Output { stdout: vec![], stderr: b"boom\n".to_vec(), status: ExitStatus::Code(1) };
        let err = out.checked(&cmd).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CommandFailed);
        assert_eq!(err.to_string(), "exec: command failed: `false` exited with code 1: boom");
        assert_eq!(err.output().unwrap().stderr, b"boom\n");
    }

    #[test]
    fn rejects_nul_and_empty() {
        assert!(Command::argv(Vec::<String>::new()).validate().is_err());
        assert!(Command::new("a\0b").validate().is_err());
        assert!(Command::new("ls").env("A=B", "c").validate().is_err());
        assert!(Command::new("ls").validate().is_ok());
    }

    #[test]
    fn signal_names_round_trip() {
        assert_eq!(signal_name(9), "KILL");
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(ExitStatus::Signal("KILL".into()).shell_code(), 137);
    }
}
