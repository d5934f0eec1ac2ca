//! Checks for [`Transport`](crate::Transport): every exit code and signal,
//! stdout and stderr apart even when interleaved, exact bytes, hostile argv
//! words (also bytes that are not UTF-8), large and streamed output, stdin fed, streamed and closed early,
//! env and cwd, timeouts, `kill` that really ends the process, 32 commands
//! at once, and pending work failing when the connection is lost.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::{HEAVY, Subject, assert_unsupported, random_bytes, sha256_hex, within, within_limit};
use crate::command::{Command, ExitStatus, Pty};
use crate::error::ErrorKind;
use crate::process::join_all;

/// Bytes of output in the large-output checks: 64 MiB.
pub const LARGE_OUTPUT: usize = 64 << 20;

/// Shell lines the checks send.
pub mod lines {
    /// Writes `out` to stdout and `err` to stderr.
    pub const OUT_AND_ERR: &str = "printf out; printf err >&2";
    /// Writes the five bytes `a NUL b 0xff c`.
    pub const BINARY: &str = r"printf 'a\000b\377c'";
    /// Writes 64 MiB: the 16-byte line `0123456789abcde\n` repeated.
    pub const LARGE: &str = "yes 0123456789abcde | head -c 67108864";
    /// Copies stdin to stdout.
    pub const CAT: &str = "cat";
    /// Prints `$TETHER_PROBE` without a newline.
    pub const PRINT_ENV: &str = "printf %s \"$TETHER_PROBE\"";
    /// Prints the working directory.
    pub const PWD: &str = "pwd";
    /// Sleeps 30 s.
    pub const SLEEP: &str = "sleep 30";
    /// Exits 3 after a message on stderr.
    pub const FAIL_3: &str = "echo failing >&2; exit 3";
    /// Prints its own process id, then becomes a 60 s sleep.
    pub const PID_THEN_SLEEP: &str = "echo $$; exec sleep 60";
    /// A program that does not exist.
    pub const MISSING: &str = "tether-no-such-program-x9";
    /// argv `printf '%s|' 'a b' "c'd" '$HOME'` as a quoted line.
    pub const PRINTF_ARGV: &str = r"printf '%s|' 'a b' 'c'\''d' '$HOME'";
}

/// The 64 MiB [`lines::LARGE`] produces.
pub fn large_output_expected() -> Vec<u8> {
    b"0123456789abcde\n".iter().copied().cycle().take(LARGE_OUTPUT).collect()
}

/// Rounds of the interleaving check, and bytes per round and stream.
const ROUNDS: usize = 16;
const ROUND_BYTES: usize = 64 << 10;

/// A line that writes 1 MiB to stdout and 1 MiB to stderr in alternating
/// 64 KiB rounds, and the bytes each stream must then hold.
fn interleaving() -> (String, Vec<u8>, Vec<u8>) {
    let round = |word: &str| -> Vec<u8> { format!("{word}\n").bytes().cycle().take(ROUND_BYTES).collect() };
    let (out_word, err_word) = ("0123456789abcdef", "fedcba9876543210");
    let line = (0..ROUNDS)
        .map(|_| format!("yes {out_word} | head -c {ROUND_BYTES}; yes {err_word} | head -c {ROUND_BYTES} >&2"))
        .collect::<Vec<_>>()
        .join("; ");
    (line, round(out_word).repeat(ROUNDS), round(err_word).repeat(ROUNDS))
}

/// Exit codes 0 to 255 come back exactly.
pub async fn exit_codes(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    for code in 0..=255 {
        let line = format!("exit {code}");
        let out = within(&line, t.exec(&Command::shell(&line))).await.unwrap_or_else(|e| panic!("`{line}`: {e}"));
        assert_eq!(out.status, ExitStatus::Code(code), "`{line}`");
        assert_eq!(out.success(), code == 0);
    }
}

/// A command killed by a signal reports that signal, not an exit code.
pub async fn signals_reported(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    for signal in ["KILL", "TERM"] {
        let line = format!("kill -{signal} $$");
        let out = within(&line, t.exec(&Command::shell(&line))).await.unwrap();
        if s.capabilities.terminal_io {
            // A terminal only sees the shell's `$?`.
            let code = 128 + crate::signal_number(signal).unwrap();
            assert_eq!(out.status, ExitStatus::Code(code), "`{line}` on a terminal");
            continue;
        }
        assert_eq!(out.status, ExitStatus::Signal(signal.into()), "`{line}`");
        assert!(!out.success());
    }
}

/// Stdout and stderr are kept apart.
pub async fn stdout_and_stderr_apart(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let out = t.exec(&Command::shell(lines::OUT_AND_ERR)).await.unwrap();
    if s.capabilities.terminal_io {
        // One stream on a terminal: both, in order, and nothing invented for stderr.
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"outerr"[..], &b""[..]));
        return;
    }
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out"[..], &b"err"[..]));
    assert_eq!(out.status, ExitStatus::Code(0));
}

/// 1 MiB on each of stdout and stderr, written in alternating rounds, comes
/// back on the right stream, byte for byte.
pub async fn interleaved_output_kept_apart(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let (line, stdout, stderr) = interleaving();
    let out = within("interleaved output", t.exec(&Command::shell(&line))).await.unwrap();
    assert_eq!(
        out.status,
        ExitStatus::Code(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(200)])
    );
    if s.capabilities.terminal_io {
        assert_eq!((out.stdout.len(), out.stderr.len()), (stdout.len() + stderr.len(), 0), "one stream on a terminal");
        return;
    }
    assert_eq!((out.stdout.len(), out.stderr.len()), (stdout.len(), stderr.len()), "bytes per stream");
    assert!(out.stdout == stdout, "stdout holds other bytes (stderr merged into it?)");
    assert!(out.stderr == stderr, "stderr holds other bytes");
}

/// NUL and invalid UTF-8 bytes survive.
pub async fn binary_output_kept(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let out = t.exec(&Command::shell(lines::BINARY)).await.unwrap();
    assert_eq!(out.stdout, b"a\0b\xffc");
}

/// Argv words reach the program exactly, with no shell expansion.
pub async fn argv_is_not_reinterpreted(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let cmd = Command::argv(["printf", "%s|", "a b", "c'd", "$HOME"]);
    assert_eq!(cmd.shell_line(), lines::PRINTF_ARGV);
    let out = t.exec(&cmd).await.unwrap();
    assert_eq!(out.stdout, b"a b|c'd|$HOME|");
}

/// Words that break naive quoting: each reaches the program unchanged.
pub const HOSTILE_WORDS: &[&str] = &[
    "",
    "with space",
    "it's",
    "say \"hi\"",
    "$HOME",
    "${PATH}",
    "*",
    "back\\slash",
    "-n",
    "--",
    "new\nline",
    "tab\there",
    "semi;colon && true",
    "`id`",
    "$(id)",
    "a|b>c<d",
    "~",
    "#hash",
    "ü日本",
];

/// Every hostile word passes through argv as one exact argument.
pub async fn hostile_argv_words(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let mut argv = vec!["printf", "[%s]"];
    argv.extend(HOSTILE_WORDS);
    let out = t.exec(&Command::argv(argv)).await.unwrap();
    let expected: String = HOSTILE_WORDS.iter().map(|w| format!("[{w}]")).collect();
    assert_eq!(out.stdout_lossy(), expected);
    assert_eq!(out.status, ExitStatus::Code(0));
}

/// Argv words and a working directory that are not UTF-8 reach the
/// program as the exact bytes, where the scheme declares
/// [`crate::Capabilities::byte_names`]; elsewhere `exec` refuses them with
/// [`ErrorKind::Unsupported`] and runs nothing.
pub async fn byte_argv_words(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let words: Vec<OsString> =
        super::files::BYTE_NAMES.iter().map(|bytes| OsString::from_vec(bytes.to_vec())).collect();
    let mut argv = vec![OsString::from("printf"), OsString::from("[%s]")];
    argv.extend(words.iter().cloned());
    let dir = Path::new(&s.scratch).join(OsStr::from_bytes(b"cwd \xe9\xff"));
    if !s.capabilities.byte_names {
        let unsupported = |what: &str, result: crate::Result<crate::Output>| match result {
            Err(err) if err.kind() == ErrorKind::Unsupported => {}
            other => panic!("{what} without byte_names: {other:?}, expected Unsupported"),
        };
        unsupported("argv words that are not UTF-8", t.exec(&Command::argv(argv)).await);
        unsupported("a cwd that is not UTF-8", t.exec(&Command::argv(["mkdir", "x"]).cwd(&dir)).await);
        return;
    }
    let out = t.exec(&Command::argv(argv)).await.unwrap();
    let mut expected = Vec::new();
    for word in &words {
        expected.extend([&b"["[..], word.as_bytes(), b"]"].concat());
    }
    assert_eq!(out.stdout, expected, "{}", out.stdout_lossy());
    assert_eq!(out.status, ExitStatus::Code(0));

    t.exec(&Command::argv([OsStr::new("mkdir"), dir.as_os_str()]).check(true)).await.unwrap();
    let out = t.exec(&Command::shell(lines::PWD).cwd(&dir)).await.unwrap();
    assert_eq!(out.stdout, [dir.as_os_str().as_bytes(), b"\n"].concat(), "{}", out.stdout_lossy());
    t.exec(&Command::argv([OsStr::new("rmdir"), dir.as_os_str()]).check(true)).await.unwrap();
}

/// 64 MiB of output is collected whole by `exec`.
pub async fn large_output(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let _heavy = HEAVY.lock().await;
    let out = within("64 MiB of output", t.exec(&Command::shell(lines::LARGE))).await.unwrap();
    assert_eq!(out.stdout.len(), LARGE_OUTPUT);
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&large_output_expected()));
}

/// 64 MiB of output streams through `spawn` chunk by chunk.
pub async fn large_output_streamed(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let mut process = t.spawn(&Command::shell(lines::LARGE)).await.unwrap();
    // Input the check does not use is closed, as a careful caller does.
    drop(process.stdin.take());
    let mut stdout = process.stdout.take().expect("spawn gives stdout");
    let expected = large_output_expected();
    let (mut seen, mut reads) = (0usize, 0usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = within("streamed output", stdout.read(&mut buf)).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(seen + n <= LARGE_OUTPUT, "more output than produced");
        assert_eq!(&buf[..n], &expected[seen..seen + n], "stream differs at byte {seen}");
        seen += n;
        reads += 1;
    }
    assert_eq!(seen, LARGE_OUTPUT);
    assert!(reads > 1, "output arrived in one piece: not streamed");
    assert_eq!(within("exit", process.wait()).await.unwrap(), ExitStatus::Code(0));
}

/// `Command::stdin` reaches the command.
pub async fn stdin_fed(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let data = random_bytes(1 << 20, 7);
    let out = within("cat", t.exec(&Command::shell(lines::CAT).stdin(data.clone()))).await.unwrap();
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "cat returned different bytes");
}

/// A spawned process's stdin streams while its stdout is read.
pub async fn stdin_streamed(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let data = random_bytes(16 << 20, 8);
    let mut process = t.spawn(&Command::shell(lines::CAT)).await.unwrap();
    if s.capabilities.terminal_io {
        // No stdin pipe on a terminal, and cat sees end of input at once.
        assert!(process.stdin.is_none(), "a terminal_io scheme gave a stdin pipe");
        let mut stdout = process.stdout.take().expect("spawn gives stdout");
        let mut back = Vec::new();
        within("cat without stdin", stdout.read_to_end(&mut back)).await.unwrap();
        assert!(back.is_empty());
        assert_eq!(within("exit", process.wait()).await.unwrap(), ExitStatus::Code(0));
        return;
    }
    let mut stdin = process.stdin.take().expect("spawn gives stdin");
    let mut stdout = process.stdout.take().expect("spawn gives stdout");
    let writer = async {
        for chunk in data.chunks(100_000) {
            stdin.write_all(chunk).await.unwrap();
        }
        stdin.shutdown().await.unwrap();
        drop(stdin);
    };
    let reader = async {
        let mut back = Vec::new();
        stdout.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) = within("streamed cat", async { tokio::join!(writer, reader) }).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "streamed bytes differ");
    assert_eq!(within("exit", process.wait()).await.unwrap(), ExitStatus::Code(0));
}

/// A command that stops reading early ends normally while input is still
/// coming, and one whose stdin is closed at once sees end of input.
pub async fn stdin_closed_early(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let data = random_bytes(8 << 20, 9);
    let out =
        within("head -c 5 of 8 MiB", t.exec(&Command::argv(["head", "-c", "5"]).stdin(data.clone()))).await.unwrap();
    assert_eq!((out.stdout.as_slice(), &out.status), (&data[..5], &ExitStatus::Code(0)));

    let mut process = t.spawn(&Command::shell(lines::CAT)).await.unwrap();
    drop(process.stdin.take());
    let mut stdout = process.stdout.take().expect("spawn gives stdout");
    let mut back = Vec::new();
    within("cat after its stdin closed", stdout.read_to_end(&mut back)).await.unwrap();
    assert!(back.is_empty());
    assert_eq!(within("exit", process.wait()).await.unwrap(), ExitStatus::Code(0));
}

/// Environment variables arrive with their exact value, several at once.
pub async fn env_passed(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let value = "va lue 'quoted' \"double\" $HOME `x` \\ ü";
    let out = t.exec(&Command::shell(lines::PRINT_ENV).env("TETHER_PROBE", value)).await.unwrap();
    assert_eq!(out.stdout_lossy(), value);
    let both =
        Command::shell("printf '%s|%s' \"$TETHER_A\" \"$TETHER_B\"").env("TETHER_A", "one two").env("TETHER_B", "=x=");
    assert_eq!(t.exec(&both).await.unwrap().stdout_lossy(), "one two|=x=");
}

/// The working directory is applied.
pub async fn cwd_applied(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let out = t.exec(&Command::shell(lines::PWD).cwd("/")).await.unwrap();
    assert_eq!(out.stdout, b"/\n");
}

/// A working directory with spaces, quotes and `$` is entered as is.
pub async fn cwd_with_spaces(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let dir = format!("{}/cwd with 'quotes' \"and\" $x", s.scratch);
    let made = t.exec(&Command::argv(["mkdir", "-p", &dir]).check(true)).await;
    made.unwrap_or_else(|e| panic!("mkdir -p {dir:?}: {e}"));
    let out = t.exec(&Command::shell(lines::PWD).cwd(&dir)).await.unwrap();
    assert_eq!(out.stdout_lossy(), format!("{dir}\n"));
    assert_eq!(out.status, ExitStatus::Code(0));
    t.exec(&Command::argv(["rmdir", &dir]).check(true)).await.unwrap();
}

/// A command past its time limit is killed and reported as a timeout,
/// promptly.
pub async fn timeout_kills(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let started = Instant::now();
    let err = within("a timed-out command", t.exec(&Command::shell(lines::SLEEP).timeout(Duration::from_millis(300))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "timeout took {:?}", started.elapsed());
}

/// `kill` ends the process for real: its id is gone from the host soon
/// after, and waiting for it returns.
pub async fn kill_ends_the_process(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let mut process = t.spawn(&Command::shell(lines::PID_THEN_SLEEP)).await.unwrap();
    let stdout = process.stdout.take().expect("spawn gives stdout");
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    within("the process's id", reader.read_line(&mut line)).await.unwrap();
    let pid: u32 = line.trim().parse().unwrap_or_else(|_| panic!("`echo $$` printed {line:?}"));
    let alive = |pid: u32| {
        let t = t.clone();
        async move { t.exec(&Command::argv(["kill", "-0", &pid.to_string()])).await.unwrap().status == ExitStatus::Code(0) }
    };
    assert!(alive(pid).await, "process {pid} should be running before the kill");
    within("kill", process.kill()).await.unwrap();
    let status = within_limit("wait after kill", Duration::from_secs(15), process.wait()).await;
    assert!(!matches!(status, Ok(ExitStatus::Code(0))), "a killed process cannot exit 0: {status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid).await {
        assert!(Instant::now() < deadline, "process {pid} still runs 10 s after kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `check` turns a non-zero exit into an error carrying the output; without
/// it the exit code is simply returned.
pub async fn check_fails_with_output(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let unchecked = t.exec(&Command::shell(lines::FAIL_3)).await.unwrap();
    assert_eq!(unchecked.status, ExitStatus::Code(3));
    let err = t.exec(&Command::shell(lines::FAIL_3).check(true)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandFailed);
    let output = err.output().expect("the error carries the output");
    assert_eq!(output.status, ExitStatus::Code(3));
    if s.capabilities.terminal_io {
        assert_eq!(output.stdout, b"failing\n", "stderr arrives in stdout on a terminal");
    } else {
        assert_eq!(output.stderr, b"failing\n");
    }
    assert!(err.to_string().contains("exited with code 3"), "{err}");
}

/// A missing program is exit code 127 (as `sh` reports it) or a not-found error.
pub async fn missing_program(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    match t.exec(&Command::new(lines::MISSING)).await {
        Ok(out) => assert_eq!(out.status, ExitStatus::Code(127)),
        Err(err) => assert_eq!(err.kind(), ErrorKind::NotFound, "{err}"),
    }
}

/// 32 commands at once on one host all run, each with its own output.
pub async fn concurrent_commands(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let runs = (0..32).map(|i| {
        let t = t.clone();
        async move { (i, t.exec(&Command::argv(["printf", "%s", &format!("run {i}")])).await) }
    });
    let results = within("32 commands at once", join_all(runs)).await;
    for (i, result) in results {
        let out = result.unwrap_or_else(|e| panic!("command {i} of 32: {e}"));
        assert_eq!(out.stdout_lossy(), format!("run {i}"), "command {i} got another's output");
    }
}

/// A scheme that declares user switching runs a command as another user;
/// one that does not refuses.
pub async fn user_switch_declared(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let as_nobody = Command::argv(["id", "-u"]).user("nobody");
    if !s.capabilities.user_switch {
        assert_unsupported("user switching", s.host.exec(&as_nobody).await.map(drop));
        assert_unsupported("user switching (transport)", t.exec(&as_nobody).await.map(drop));
        return;
    }
    let expected = t.exec(&Command::argv(["id", "-u", "nobody"]).check(true)).await.unwrap();
    let out = t.exec(&as_nobody.check(true)).await.unwrap();
    assert_eq!(out.stdout_lossy(), expected.stdout_lossy(), "the command did not run as nobody");
}

/// A scheme that declares an interactive shell gives one that runs what is
/// typed and ends with its exit code; one that does not refuses.
pub async fn shell_declared(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let pty = Pty::default();
    if !s.capabilities.shell {
        assert_unsupported("an interactive shell", t.shell(&pty).await.map(drop));
        return;
    }
    let mut process = within("start a shell", t.shell(&pty)).await.unwrap();
    let mut stdin = process.stdin.take().expect("a shell takes input");
    let mut stdout = process.stdout.take().expect("a shell gives output");
    // Read what the shell prints so it never blocks on a full terminal.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while matches!(stdout.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    stdin.write_all(b"exit 7\n").await.unwrap();
    stdin.flush().await.unwrap();
    let status = within("the shell's exit", process.wait()).await.unwrap();
    if s.capabilities.terminal_io {
        // A terminal session ends when the host hangs up; it carries no status.
        assert_eq!(status, ExitStatus::Unknown);
    } else {
        assert_eq!(status, ExitStatus::Code(7));
    }
    drain.abort();
}

/// When the connection is lost, a running command fails promptly with
/// [`ErrorKind::ConnectionLost`] (only for subjects that can sever it).
pub async fn lost_connection_fails_pending(s: &Subject) {
    let Some(t) = s.transport().await else { return };
    let Some(sever) = &s.sever else { return };
    let mut process = t.spawn(&Command::shell(lines::SLEEP)).await.unwrap();
    drop(process.stdin.take());
    // The happy path first: the command is running.
    assert_eq!(t.exec(&Command::new("true")).await.unwrap().status, ExitStatus::Code(0));
    sever();
    let started = Instant::now();
    let result = within_limit("a command on a lost connection", Duration::from_secs(20), process.wait()).await;
    let err = result.expect_err("a command cannot finish once its connection is gone");
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
