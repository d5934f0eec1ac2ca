//! The commands of a [`MemoryHost`] that no handler scripts: a small POSIX
//! shell and the handful of utilities tests reach for, working on the host's
//! memory filesystem and process table.
//!
//! It is deliberately small and says so: what it does not know (loops,
//! `$(…)`, background jobs) is a syntax error with exit code 2, never a
//! silent guess. What it knows behaves like `sh` and coreutils: separate
//! stdout and stderr, streaming pipes (`yes | head -c N` ends when `head`
//! has had enough, `yes` dies of SIGPIPE), `$$` and `kill`, exit codes,
//! `cd`, and files under the host's filesystem.
//!
//! Grammar: words with `'…'`, `"…"`, `\` escapes and `$NAME`, `${NAME}`,
//! `$$`, `$?` (no field splitting); `;`, newlines, `&&`, `||` and `|`;
//! redirections `>&2`, `1>&2`, `2>&1`, `> FILE`, `>> FILE`, `2> FILE` and
//! `< FILE`; comments from a `#` that starts a word.
//!
//! Utilities: `true`, `false`, `:`, `exit`, `echo`, `printf`, `cat`, `head
//! -c`, `yes`, `pwd`, `cd`, `sleep`, `printenv`, `env`, `kill`, `mkdir`,
//! `rmdir`, `rm`, `exec` and `sh -c`.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex as AsyncMutex;

use super::MemoryHost;
use crate::command::{Command, CommandLine};
use crate::files::{FileKind, FileTransfer, PutOptions, StatOptions};
use crate::process::join_all;

/// Bytes per write, so two writers on one pipe interleave fairly.
const CHUNK: usize = 64 * 1024;

/// How a script ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ended {
    /// `exit N`.
    Exit(i32),
    /// Killed by a signal (its name without `SIG`).
    Signal(&'static str),
}

type Flow<T = i32> = std::result::Result<T, Ended>;

/// A process's standard input, shared by the commands of one script in turn.
#[derive(Clone)]
pub(super) struct Source(Arc<AsyncMutex<Pin<Box<dyn AsyncRead + Send>>>>);

impl Source {
    pub(super) fn new(reader: impl AsyncRead + Send + 'static) -> Self {
        Source(Arc::new(AsyncMutex::new(Box::pin(reader))))
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.lock().await.read(buf).await
    }
}

/// A process's standard output or error; clones write to the same pipe.
#[derive(Clone)]
pub(super) enum Sink {
    Pipe(Arc<AsyncMutex<Pin<Box<dyn AsyncWrite + Send>>>>),
    /// `> FILE`: collected, written to the filesystem when the command ends.
    File(Arc<std::sync::Mutex<Vec<u8>>>),
    /// `/dev/null`.
    Discard,
}

impl Sink {
    pub(super) fn pipe(writer: impl AsyncWrite + Send + 'static) -> Self {
        Sink::Pipe(Arc::new(AsyncMutex::new(Box::pin(writer))))
    }

    async fn write(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Pipe(pipe) => {
                for chunk in data.chunks(CHUNK) {
                    pipe.lock().await.write_all(chunk).await?;
                }
                Ok(())
            }
            Sink::File(buffer) => {
                buffer.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(data);
                Ok(())
            }
            Sink::Discard => Ok(()),
        }
    }
}

/// Output redirected to a file: the path, whether to append, and the bytes
/// collected until the command ends.
type FileOutput = (String, bool, Arc<std::sync::Mutex<Vec<u8>>>);

/// Standard input, output and error of one command.
#[derive(Clone)]
pub(super) struct Stdio {
    pub(super) stdin: Source,
    pub(super) stdout: Sink,
    pub(super) stderr: Sink,
}

/// What a process carries from command to command.
struct Proc {
    host: MemoryHost,
    pid: u32,
    cwd: String,
    env: BTreeMap<String, String>,
    last: i32,
}

/// Runs `command` as process `pid` of `host` and returns its exit code, or
/// how it ended.
pub(super) async fn run(host: MemoryHost, pid: u32, command: &Command, io: Stdio) -> Flow {
    let mut proc = Proc {
        host,
        pid,
        cwd: "/".to_string(),
        env: command.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        last: 0,
    };
    // `spawn` refused words that are not UTF-8, so nothing is lost here.
    if let Some(dir) = &command.cwd
        && let Err(why) = proc.change_dir(&dir.to_string_lossy()).await
    {
        let _ = io.stderr.write(format!("mem: sh: cd: {}: {why}\n", dir.display()).as_bytes()).await;
        return Ok(1);
    }
    match &command.line {
        CommandLine::Argv(argv) => {
            proc.run_argv(argv.iter().map(|word| word.to_string_lossy().into_owned()).collect(), io).await
        }
        CommandLine::Shell(line) => proc.run_line(line, io).await,
    }
}

impl Proc {
    async fn run_line(&mut self, line: &str, io: Stdio) -> Flow {
        match parse(line) {
            Ok(script) => self.run_script(&script, io).await,
            Err(why) => {
                let _ = io.stderr.write(format!("mem: sh: syntax error: {why}\n").as_bytes()).await;
                Ok(2)
            }
        }
    }

    async fn run_script(&mut self, script: &[(Connector, Vec<Simple>)], io: Stdio) -> Flow {
        for (connector, pipeline) in script {
            let run = match connector {
                Connector::Always => true,
                Connector::IfSuccess => self.last == 0,
                Connector::IfFailure => self.last != 0,
            };
            if run {
                self.last = self.run_pipeline(pipeline, io.clone()).await?;
            }
        }
        Ok(self.last)
    }

    /// Stages run at once, joined by pipes; the last stage's status counts.
    /// Boxed: `sh -c` and `exec` come back here.
    fn run_pipeline<'a>(
        &'a mut self,
        stages: &'a [Simple],
        io: Stdio,
    ) -> Pin<Box<dyn Future<Output = Flow> + Send + 'a>> {
        Box::pin(async move {
            if let [only] = stages {
                return self.run_simple(only, io).await;
            }
            let mut runs = Vec::new();
            // Each pipe's reading end goes to its stage alone: when that
            // stage ends the pipe closes, and the writer before it gets
            // SIGPIPE instead of blocking forever.
            let mut next_stdin = Some(io.stdin.clone());
            for (index, stage) in stages.iter().enumerate() {
                let last = index + 1 == stages.len();
                let stdin = next_stdin.take().unwrap_or_else(|| io.stdin.clone());
                let stdout = if last {
                    io.stdout.clone()
                } else {
                    let (writer, reader) = tokio::io::duplex(CHUNK);
                    next_stdin = Some(Source::new(reader));
                    Sink::pipe(writer)
                };
                let stage_io = Stdio { stdin, stdout, stderr: io.stderr.clone() };
                let mut stage_proc = Proc {
                    host: self.host.clone(),
                    pid: self.pid,
                    cwd: self.cwd.clone(),
                    env: self.env.clone(),
                    last: self.last,
                };
                runs.push(async move { stage_proc.run_simple(stage, stage_io).await });
            }
            let mut results = join_all(runs).await;
            // `exit` in a pipeline stage ends only that stage, as in sh.
            match results.pop() {
                Some(Err(Ended::Signal(signal))) if signal != "PIPE" => Err(Ended::Signal(signal)),
                Some(Err(Ended::Signal(_))) => Ok(128 + 13),
                Some(Err(Ended::Exit(code))) | Some(Ok(code)) => Ok(code),
                None => Ok(0),
            }
        })
    }

    async fn run_simple(&mut self, simple: &Simple, io: Stdio) -> Flow {
        let argv: Vec<String> = simple.words.iter().map(|w| self.expand(w)).collect();
        let mut stdio = io;
        let mut files: Vec<FileOutput> = Vec::new();
        for redirect in &simple.redirects {
            match redirect {
                Redirect::OutToErr => stdio.stdout = stdio.stderr.clone(),
                Redirect::ErrToOut => stdio.stderr = stdio.stdout.clone(),
                Redirect::Out { fd, target, append } => {
                    let path = self.absolute(&self.expand(target));
                    let sink = if path == "/dev/null" {
                        Sink::Discard
                    } else {
                        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
                        files.push((path, *append, buffer.clone()));
                        Sink::File(buffer)
                    };
                    if *fd == 2 {
                        stdio.stderr = sink;
                    } else {
                        stdio.stdout = sink;
                    }
                }
                Redirect::In(target) => {
                    let path = self.absolute(&self.expand(target));
                    match self.read_file(&path).await {
                        Ok(data) => stdio.stdin = Source::new(std::io::Cursor::new(data)),
                        Err(why) => {
                            let _ = stdio.stderr.write(format!("mem: sh: {path}: {why}\n").as_bytes()).await;
                            return Ok(1);
                        }
                    }
                }
            }
        }
        let status = self.run_argv(argv, stdio.clone()).await;
        for (path, append, buffer) in files {
            let mut data = std::mem::take(&mut *buffer.lock().unwrap_or_else(|p| p.into_inner()));
            if append && let Ok(mut old) = self.read_file(&path).await {
                old.append(&mut data);
                data = old;
            }
            let mut reader = data.as_slice();
            if let Err(err) = self.host.put(&mut reader, Path::new(&path), &PutOptions::default()).await {
                let _ = stdio.stderr.write(format!("mem: sh: {path}: {err}\n").as_bytes()).await;
                return Ok(1);
            }
        }
        status
    }

    fn run_argv(&mut self, argv: Vec<String>, io: Stdio) -> Pin<Box<dyn Future<Output = Flow> + Send + '_>> {
        Box::pin(async move {
            let Some(program) = argv.first() else { return Ok(0) };
            let name = program.rsplit('/').next().unwrap_or(program).to_string();
            let args = &argv[1..];
            let status = match name.as_str() {
                "true" | ":" => Ok(0),
                "false" => Ok(1),
                "exit" => {
                    let code = match args.first() {
                        Some(n) => n.parse::<i32>().unwrap_or(2),
                        None => self.last,
                    };
                    Err(Ended::Exit(code & 0xff))
                }
                "echo" => {
                    let (newline, words) = match args.first().map(String::as_str) {
                        Some("-n") => (false, &args[1..]),
                        _ => (true, args),
                    };
                    let mut text = words.join(" ").into_bytes();
                    if newline {
                        text.push(b'\n');
                    }
                    write_out(&io.stdout, &text).await
                }
                "printf" => match args.split_first() {
                    None => complain(&io, "printf", "usage: printf format [arguments]", 2).await,
                    Some((format, rest)) => write_out(&io.stdout, &printf(format, rest)).await,
                },
                "cat" => self.cat(args, &io).await,
                "head" => self.head(args, &io).await,
                "yes" => yes(args, &io).await,
                "pwd" => write_out(&io.stdout, format!("{}\n", self.cwd).as_bytes()).await,
                "cd" => {
                    let dir = args.first().cloned().unwrap_or_else(|| "/".to_string());
                    match self.change_dir(&dir).await {
                        Ok(()) => Ok(0),
                        Err(why) => complain(&io, "cd", &format!("{dir}: {why}"), 1).await,
                    }
                }
                "sleep" => match args
                    .first()
                    .and_then(|s| s.parse::<f64>().ok())
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                {
                    Some(pause) => {
                        tokio::time::sleep(pause).await;
                        Ok(0)
                    }
                    None => complain(&io, "sleep", "invalid time interval", 1).await,
                },
                "printenv" => match args.first() {
                    Some(name) => match self.env.get(name) {
                        Some(value) => write_out(&io.stdout, format!("{value}\n").as_bytes()).await,
                        None => Ok(1),
                    },
                    None => self.print_env(&io).await,
                },
                "env" if args.is_empty() => self.print_env(&io).await,
                "kill" => self.kill(args, &io).await,
                "mkdir" => self.mkdir(args, &io).await,
                "rmdir" | "rm" => self.remove(&name, args, &io).await,
                "exec" if args.is_empty() => Ok(0),
                "exec" => self.run_argv(args.to_vec(), io.clone()).await,
                "sh" | "bash" | "dash" => match args {
                    [flag, line, ..] if flag == "-c" => self.run_line(line, io.clone()).await,
                    _ => complain(&io, &name, "only `sh -c LINE` is supported", 2).await,
                },
                _ => complain(&io, "mem", &format!("{program}: command not found"), 127).await,
            };
            if let Ok(code) = status {
                self.last = code;
            }
            status
        })
    }

    fn expand(&self, word: &[Piece]) -> String {
        let mut text = String::new();
        for piece in word {
            match piece {
                Piece::Text(literal) => text.push_str(literal),
                Piece::Var(name) => match name.as_str() {
                    "$" => text.push_str(&self.pid.to_string()),
                    "?" => text.push_str(&self.last.to_string()),
                    name => text.push_str(self.env.get(name).map(String::as_str).unwrap_or_default()),
                },
            }
        }
        text
    }

    fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') { path.to_string() } else { format!("{}/{path}", self.cwd.trim_end_matches('/')) }
    }

    async fn change_dir(&mut self, dir: &str) -> std::result::Result<(), &'static str> {
        let path = self.absolute(dir);
        match self.host.stat(Path::new(&path), StatOptions { follow_links: true, sha512: false }).await {
            Ok(Some(meta)) if meta.kind == FileKind::Dir => {
                self.cwd = path;
                Ok(())
            }
            Ok(Some(_)) => Err("Not a directory"),
            _ => Err("No such file or directory"),
        }
    }

    async fn read_file(&self, path: &str) -> std::result::Result<Vec<u8>, String> {
        if path == "/dev/null" {
            return Ok(Vec::new());
        }
        let mut data = Vec::new();
        self.host.get(Path::new(path), &mut data).await.map_err(|e| e.kind().to_string())?;
        Ok(data)
    }

    async fn print_env(&self, io: &Stdio) -> Flow {
        let text: String = self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        write_out(&io.stdout, text.as_bytes()).await
    }

    async fn cat(&self, args: &[String], io: &Stdio) -> Flow {
        let files: Vec<&String> = args.iter().filter(|a| a.as_str() != "-").collect();
        if files.is_empty() {
            return copy(&io.stdin, &io.stdout, u64::MAX).await;
        }
        let mut status = 0;
        for file in files {
            let path = self.absolute(file);
            match self.read_file(&path).await {
                Ok(data) => {
                    write_out(&io.stdout, &data).await?;
                }
                Err(why) => status = complain(io, "cat", &format!("{file}: {why}"), 1).await?,
            }
        }
        Ok(status)
    }

    async fn head(&self, args: &[String], io: &Stdio) -> Flow {
        let (count, file) = match args {
            [flag, count, rest @ ..] if flag == "-c" && rest.len() <= 1 => (count.parse::<u64>().ok(), rest.first()),
            _ => (None, None),
        };
        let Some(count) = count else { return complain(io, "head", "only `head -c N [FILE]` is supported", 1).await };
        match file {
            None => copy(&io.stdin, &io.stdout, count).await,
            Some(file) => match self.read_file(&self.absolute(file)).await {
                Ok(data) => write_out(&io.stdout, &data[..data.len().min(count as usize)]).await,
                Err(why) => complain(io, "head", &format!("{file}: {why}"), 1).await,
            },
        }
    }

    async fn kill(&self, args: &[String], io: &Stdio) -> Flow {
        let (signal, pids) = match args {
            [flag, name, rest @ ..] if flag == "-s" => (signal_by_name(name), rest),
            [flag, rest @ ..] if flag.starts_with('-') && flag.len() > 1 => (signal_by_name(&flag[1..]), rest),
            rest => (Some("TERM"), rest),
        };
        let Some(signal) = signal else { return complain(io, "kill", "unknown signal", 1).await };
        if pids.is_empty() {
            return complain(io, "kill", "usage: kill [-s SIGNAL | -SIGNAL] PID...", 2).await;
        }
        let mut status = 0;
        for pid in pids {
            let Ok(pid) = pid.parse::<u32>() else {
                status = complain(io, "kill", &format!("{pid}: arguments must be process ids"), 1).await?;
                continue;
            };
            if pid == self.pid && signal != "0" {
                return Err(Ended::Signal(signal));
            }
            if !self.host.signal(pid, signal) {
                status = complain(io, "kill", &format!("({pid}) - No such process"), 1).await?;
            }
        }
        Ok(status)
    }

    async fn mkdir(&self, args: &[String], io: &Stdio) -> Flow {
        let parents = args.iter().any(|a| a == "-p");
        let mut status = 0;
        for dir in args.iter().filter(|a| !a.starts_with('-')) {
            if let Err(err) = self.host.mkdir(Path::new(&self.absolute(dir)), parents).await {
                status = complain(io, "mkdir", &format!("cannot create directory '{dir}': {}", err.kind()), 1).await?;
            }
        }
        Ok(status)
    }

    async fn remove(&self, name: &str, args: &[String], io: &Stdio) -> Flow {
        let force = name == "rm" && args.iter().any(|a| a == "-f");
        let mut status = 0;
        for path in args.iter().filter(|a| !a.starts_with('-')) {
            let absolute = self.absolute(path);
            let is_dir = matches!(
                self.host.stat(Path::new(&absolute), StatOptions::default()).await,
                Ok(Some(meta)) if meta.kind == FileKind::Dir
            );
            let result = match (name, is_dir) {
                ("rm", true) => Err(format!("cannot remove '{path}': Is a directory")),
                ("rmdir", false) => Err(format!("failed to remove '{path}': Not a directory")),
                _ => self
                    .host
                    .remove(Path::new(&absolute))
                    .await
                    .map_err(|e| format!("cannot remove '{path}': {}", e.kind())),
            };
            if let Err(why) = result
                && !(force && why.ends_with("not found"))
            {
                status = complain(io, name, &why, 1).await?;
            }
        }
        Ok(status)
    }
}

/// Writes to stdout; a reader that went away ends the command by SIGPIPE,
/// as it would a real one.
async fn write_out(sink: &Sink, data: &[u8]) -> Flow {
    match sink.write(data).await {
        Ok(()) => Ok(0),
        Err(_) => Err(Ended::Signal("PIPE")),
    }
}

/// `program: message` on stderr, then `code`.
async fn complain(io: &Stdio, program: &str, message: &str, code: i32) -> Flow {
    let _ = io.stderr.write(format!("{program}: {message}\n").as_bytes()).await;
    Ok(code)
}

/// Copies at most `limit` bytes from `source` to `sink`, chunk by chunk.
async fn copy(source: &Source, sink: &Sink, limit: u64) -> Flow {
    let mut left = limit;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match source.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        write_out(sink, &buf[..n]).await?;
        left -= n as u64;
    }
    Ok(0)
}

async fn yes(args: &[String], io: &Stdio) -> Flow {
    let line = if args.is_empty() { "y".to_string() } else { args.join(" ") };
    let line = format!("{line}\n").into_bytes();
    let block: Vec<u8> = line.iter().copied().cycle().take(line.len() * (CHUNK / line.len()).max(1)).collect();
    loop {
        write_out(&io.stdout, &block).await?;
    }
}

fn signal_by_name(name: &str) -> Option<&'static str> {
    let name = name.strip_prefix("SIG").unwrap_or(name);
    Some(match name {
        "0" => "0",
        "1" | "HUP" => "HUP",
        "2" | "INT" => "INT",
        "9" | "KILL" => "KILL",
        "13" | "PIPE" => "PIPE",
        "15" | "TERM" => "TERM",
        "10" | "USR1" => "USR1",
        "12" | "USR2" => "USR2",
        _ => return None,
    })
}

/// `printf FORMAT ARGS…`: `%s`, `%b`, `%d`, `%c` and `%%`, backslash escapes
/// (octal `\NNN` included), the format reused while arguments remain.
fn printf(format: &str, args: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut args = args.iter();
    loop {
        let mut consumed = false;
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => escape(&mut chars, &mut out),
                '%' => match chars.next() {
                    Some('%') => out.push(b'%'),
                    Some(conversion) => {
                        consumed = true;
                        let arg = args.next().map(String::as_str).unwrap_or_default();
                        match conversion {
                            'd' | 'i' | 'u' => out.extend(arg.parse::<i64>().unwrap_or(0).to_string().bytes()),
                            'c' => out.extend(arg.chars().next().map(String::from).unwrap_or_default().bytes()),
                            'b' => {
                                let mut inner = arg.chars().peekable();
                                while let Some(c) = inner.next() {
                                    if c == '\\' {
                                        escape(&mut inner, &mut out);
                                    } else {
                                        let mut utf8 = [0u8; 4];
                                        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                                    }
                                }
                            }
                            _ => out.extend_from_slice(arg.as_bytes()),
                        }
                    }
                    None => out.push(b'%'),
                },
                c => {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        if !consumed || args.len() == 0 {
            return out;
        }
    }
}

fn escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut Vec<u8>) {
    match chars.next() {
        Some('n') => out.push(b'\n'),
        Some('t') => out.push(b'\t'),
        Some('r') => out.push(b'\r'),
        Some('\\') => out.push(b'\\'),
        Some('a') => out.push(7),
        Some('b') => out.push(8),
        Some('f') => out.push(12),
        Some('v') => out.push(11),
        Some(digit @ '0'..='7') => {
            let mut value = digit.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.peek().and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        value = value * 8 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            out.push((value & 0xff) as u8);
        }
        Some(other) => {
            out.push(b'\\');
            let mut utf8 = [0u8; 4];
            out.extend_from_slice(other.encode_utf8(&mut utf8).as_bytes());
        }
        None => out.push(b'\\'),
    }
}

// ---------------------------------------------------------------------------
// Parsing.

/// A piece of a word: literal text, or a parameter expanded when it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

type Word = Vec<Piece>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Redirect {
    OutToErr,
    ErrToOut,
    Out { fd: u8, target: Word, append: bool },
    In(Word),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Simple {
    words: Vec<Word>,
    redirects: Vec<Redirect>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connector {
    Always,
    IfSuccess,
    IfFailure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Word),
    Op(&'static str),
}

type Script = Vec<(Connector, Vec<Simple>)>;

fn parse(line: &str) -> std::result::Result<Script, String> {
    let tokens = tokenize(line)?;
    let mut script: Script = Vec::new();
    let mut connector = Connector::Always;
    let mut pipeline: Vec<Simple> = Vec::new();
    let mut simple = Simple::default();
    let mut tokens = tokens.into_iter().peekable();
    let finish_simple = |simple: &mut Simple, pipeline: &mut Vec<Simple>| -> std::result::Result<(), String> {
        if simple.words.is_empty() {
            return Err("a command is missing".to_string());
        }
        pipeline.push(std::mem::take(simple));
        Ok(())
    };
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => simple.words.push(word),
            Token::Op(op @ (">" | ">>" | "2>" | "<")) => {
                let Some(Token::Word(target)) = tokens.next() else {
                    return Err(format!("`{op}` needs a file"));
                };
                simple.redirects.push(match op {
                    "<" => Redirect::In(target),
                    "2>" => Redirect::Out { fd: 2, target, append: false },
                    _ => Redirect::Out { fd: 1, target, append: op == ">>" },
                });
            }
            Token::Op(">&2") => simple.redirects.push(Redirect::OutToErr),
            Token::Op("2>&1") => simple.redirects.push(Redirect::ErrToOut),
            Token::Op("|") => finish_simple(&mut simple, &mut pipeline)?,
            Token::Op(op @ (";" | "&&" | "||")) => {
                if simple.words.is_empty() && pipeline.is_empty() && op == ";" {
                    continue;
                }
                finish_simple(&mut simple, &mut pipeline)?;
                script.push((connector, std::mem::take(&mut pipeline)));
                connector = match op {
                    "&&" => Connector::IfSuccess,
                    "||" => Connector::IfFailure,
                    _ => Connector::Always,
                };
            }
            Token::Op(op) => return Err(format!("`{op}` is not supported")),
        }
    }
    if !simple.words.is_empty() || !pipeline.is_empty() {
        finish_simple(&mut simple, &mut pipeline)?;
        script.push((connector, pipeline));
    } else if connector != Connector::Always {
        return Err("a command is missing after `&&` or `||`".to_string());
    }
    Ok(script)
}

fn tokenize(line: &str) -> std::result::Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word: Option<Word> = None;
    let push_text = |word: &mut Option<Word>, c: char| {
        let word = word.get_or_insert_with(Vec::new);
        match word.last_mut() {
            Some(Piece::Text(text)) => text.push(c),
            _ => word.push(Piece::Text(c.to_string())),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(done) = word.take() {
                    tokens.push(Token::Word(done));
                }
            }
            '\n' | ';' => {
                if let Some(done) = word.take() {
                    tokens.push(Token::Word(done));
                }
                tokens.push(Token::Op(";"));
            }
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            '|' | '&' | '>' | '<' => {
                // `2>`, `2>&1` and `1>&2`: a lone digit just before the `>`.
                let fd = match word.as_deref() {
                    Some([Piece::Text(digit)]) if c == '>' && (digit == "1" || digit == "2") => {
                        let digit = digit.clone();
                        word = None;
                        Some(digit)
                    }
                    _ => None,
                };
                if let Some(done) = word.take() {
                    tokens.push(Token::Word(done));
                }
                let op = match (c, chars.peek().copied()) {
                    ('|', Some('|')) => {
                        chars.next();
                        "||"
                    }
                    ('|', _) => "|",
                    ('&', Some('&')) => {
                        chars.next();
                        "&&"
                    }
                    ('&', _) => return Err("background jobs (`&`) are not supported".to_string()),
                    ('<', _) => "<",
                    ('>', Some('>')) => {
                        chars.next();
                        ">>"
                    }
                    ('>', Some('&')) => {
                        chars.next();
                        match (fd.as_deref(), chars.next()) {
                            (None | Some("1"), Some('2')) => ">&2",
                            (Some("2"), Some('1')) => "2>&1",
                            _ => return Err("only `>&2` and `2>&1` duplicate descriptors".to_string()),
                        }
                    }
                    ('>', _) if fd.as_deref() == Some("2") => "2>",
                    ('>', _) => ">",
                    _ => return Err(format!("unexpected `{c}`")),
                };
                tokens.push(Token::Op(op));
            }
            '\'' => {
                word.get_or_insert_with(Vec::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => push_text(&mut word, c),
                        None => return Err("unterminated '".to_string()),
                    }
                }
            }
            '"' => {
                word.get_or_insert_with(Vec::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => push_text(&mut word, c),
                            Some('\n') => {}
                            Some(c) => {
                                push_text(&mut word, '\\');
                                push_text(&mut word, c);
                            }
                            None => return Err("unterminated \"".to_string()),
                        },
                        Some('$') => parameter(&mut chars, &mut word)?,
                        Some('`') => return Err("command substitution is not supported".to_string()),
                        Some(c) => push_text(&mut word, c),
                        None => return Err("unterminated \"".to_string()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => push_text(&mut word, c),
                None => push_text(&mut word, '\\'),
            },
            '$' => parameter(&mut chars, &mut word)?,
            '`' | '(' | ')' | '{' | '}' if word.is_none() => {
                return Err(format!("`{c}` (subshells, groups, substitutions) is not supported"));
            }
            c => push_text(&mut word, c),
        }
    }
    if let Some(done) = word.take() {
        tokens.push(Token::Word(done));
    }
    if let Some(Token::Word(first)) = tokens.first()
        && let [Piece::Text(keyword)] = first.as_slice()
        && ["if", "for", "while", "until", "case", "function"].contains(&keyword.as_str())
    {
        return Err(format!("`{keyword}` is not supported"));
    }
    Ok(tokens)
}

/// `$NAME`, `${NAME}`, `$$` or `$?`; a lone `$` is literal.
fn parameter(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    word: &mut Option<Word>,
) -> std::result::Result<(), String> {
    let word = word.get_or_insert_with(Vec::new);
    match chars.peek().copied() {
        Some(c @ ('$' | '?')) => {
            chars.next();
            word.push(Piece::Var(c.to_string()));
        }
        Some('{') => {
            chars.next();
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                    _ => return Err("only `${NAME}` is supported".to_string()),
                }
            }
            word.push(Piece::Var(name));
        }
        Some('(') => return Err("command substitution is not supported".to_string()),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            let mut name = String::new();
            while let Some(c) = chars.peek().copied().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
                name.push(c);
                chars.next();
            }
            word.push(Piece::Var(name));
        }
        _ => match word.last_mut() {
            Some(Piece::Text(text)) => text.push('$'),
            _ => word.push(Piece::Text("$".to_string())),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Word {
        vec![Piece::Text(s.to_string())]
    }

    #[test]
    fn parses_sequences_pipes_and_redirections() {
        let script = parse("printf out; printf err >&2 && a | b 2>&1 || exit 3").unwrap();
        assert_eq!(script.len(), 4);
        assert_eq!(script[0].1[0].words, [text("printf"), text("out")]);
        assert_eq!(script[1].0, Connector::Always);
        assert_eq!(script[1].1[0].redirects, [Redirect::OutToErr]);
        assert_eq!(script[2].0, Connector::IfSuccess);
        assert_eq!(script[2].1.len(), 2);
        assert_eq!(script[2].1[1].redirects, [Redirect::ErrToOut]);
        assert_eq!(script[2].1[1].words, [text("b")]);
        assert_eq!(script[3].0, Connector::IfFailure);
        let script = parse("kill -9 $$").unwrap();
        assert_eq!(script[0].1[0].words[2], vec![Piece::Var("$".into())]);
    }

    #[test]
    fn quotes_and_parameters() {
        let script = parse(r#"printf '%s|' 'a b' 'c'\''d' "x $HOME ${Y}z" \$q"#).unwrap();
        let words = &script[0].1[0].words;
        assert_eq!(words[1], text("%s|"));
        assert_eq!(words[2], text("a b"));
        assert_eq!(words[3], text("c'd"));
        assert_eq!(
            words[4],
            vec![
                Piece::Text("x ".into()),
                Piece::Var("HOME".into()),
                Piece::Text(" ".into()),
                Piece::Var("Y".into()),
                Piece::Text("z".into())
            ]
        );
        assert_eq!(words[5], text("$q"));
    }

    #[test]
    fn what_it_does_not_know_is_a_syntax_error() {
        for line in
            ["echo $(id)", "echo `id`", "sleep 1 &", "while true; do :; done", "( echo )", "a |", "&& b", "echo >"]
        {
            assert!(parse(line).is_err(), "{line}");
        }
    }

    #[test]
    fn printf_formats_like_coreutils() {
        assert_eq!(printf(r"a\000b\377c", &[]), b"a\0b\xffc");
        assert_eq!(printf("%s|", &["a".into(), "b".into()]), b"a|b|");
        assert_eq!(printf("%d%%\\n", &["42".into()]), b"42%\n");
        assert_eq!(printf("%b", &[r"x\ty".into()]), b"x\ty");
    }
}
