//! Checks for [`Transport`]: exit codes, exact output bytes, large and
//! streamed output, stdin, env, cwd, timeouts, `check`, signals.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{random_bytes, sha256_hex};
use crate::command::{Command, ExitStatus};
use crate::error::ErrorKind;
use crate::transport::Transport;

/// Bytes of output in the large-output checks: 64 MiB.
pub const LARGE_OUTPUT: usize = 64 << 20;

/// Every shell line the checks send, for transports with scripted commands.
pub mod lines {
    /// Exits 0.
    pub const EXIT_0: &str = "exit 0";
    /// Exits 1.
    pub const EXIT_1: &str = "exit 1";
    /// Exits 255.
    pub const EXIT_255: &str = "exit 255";
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
    /// Kills itself with SIGKILL.
    pub const SELF_KILL: &str = "kill -9 $$";
    /// A program that does not exist.
    pub const MISSING: &str = "tether-no-such-program-x9";
    /// argv `printf '%s|' 'a b' "c'd" '$HOME'` as a quoted line.
    pub const PRINTF_ARGV: &str = r"printf '%s|' 'a b' 'c'\''d' '$HOME'";
}

/// The 64 MiB [`lines::LARGE`] produces.
pub fn large_output_expected() -> Vec<u8> {
    b"0123456789abcde\n".iter().copied().cycle().take(LARGE_OUTPUT).collect()
}

/// Exit codes 0, 1 and 255 come back exactly.
pub async fn exit_codes(t: &dyn Transport) {
    for (line, code) in [(lines::EXIT_0, 0), (lines::EXIT_1, 1), (lines::EXIT_255, 255)] {
        let out = t.exec(&Command::shell(line)).await.unwrap_or_else(|e| panic!("`{line}`: {e}"));
        assert_eq!(out.status, ExitStatus::Code(code), "`{line}`");
        assert_eq!(out.success(), code == 0);
    }
}

/// Stdout and stderr are kept apart.
pub async fn stdout_and_stderr_apart(t: &dyn Transport) {
    let out = t.exec(&Command::shell(lines::OUT_AND_ERR)).await.unwrap();
    assert_eq!(out.stdout, b"out");
    assert_eq!(out.stderr, b"err");
    assert_eq!(out.status, ExitStatus::Code(0));
}

/// NUL and invalid UTF-8 bytes survive.
pub async fn binary_output_kept(t: &dyn Transport) {
    let out = t.exec(&Command::shell(lines::BINARY)).await.unwrap();
    assert_eq!(out.stdout, b"a\0b\xffc");
}

/// Argv words reach the program exactly, with no shell expansion.
pub async fn argv_is_not_reinterpreted(t: &dyn Transport) {
    let cmd = Command::argv(["printf", "%s|", "a b", "c'd", "$HOME"]);
    assert_eq!(cmd.shell_line(), lines::PRINTF_ARGV);
    let out = t.exec(&cmd).await.unwrap();
    assert_eq!(out.stdout, b"a b|c'd|$HOME|");
}

/// 64 MiB of output is collected whole by `exec`.
pub async fn large_output(t: &dyn Transport) {
    let out = t.exec(&Command::shell(lines::LARGE)).await.unwrap();
    assert_eq!(out.stdout.len(), LARGE_OUTPUT);
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&large_output_expected()));
}

/// 64 MiB of output streams through `spawn` chunk by chunk.
pub async fn large_output_streamed(t: &dyn Transport) {
    let mut process = t.spawn(&Command::shell(lines::LARGE)).await.unwrap();
    // Input the check does not use is closed, as a careful caller does (scripted
    // transports such as `mem` run a command once its input has ended).
    drop(process.stdin.take());
    let mut stdout = process.stdout.take().expect("spawn gives stdout");
    let expected = large_output_expected();
    let (mut seen, mut reads) = (0usize, 0usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout.read(&mut buf).await.unwrap();
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
    assert_eq!(process.wait().await.unwrap(), ExitStatus::Code(0));
}

/// `Command::stdin` reaches the command.
pub async fn stdin_fed(t: &dyn Transport) {
    let data = random_bytes(1 << 20, 7);
    let out = t.exec(&Command::shell(lines::CAT).stdin(data.clone())).await.unwrap();
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "cat returned different bytes");
}

/// A spawned process's stdin streams while its stdout is read.
pub async fn stdin_streamed(t: &dyn Transport) {
    let data = random_bytes(16 << 20, 8);
    let mut process = t.spawn(&Command::shell(lines::CAT)).await.unwrap();
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
    let ((), back) = tokio::join!(writer, reader);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "streamed bytes differ");
    assert_eq!(process.wait().await.unwrap(), ExitStatus::Code(0));
}

/// Environment variables arrive with their exact value.
pub async fn env_passed(t: &dyn Transport) {
    let value = "va lue 'quoted' \"double\" $HOME `x` ü";
    let out = t.exec(&Command::shell(lines::PRINT_ENV).env("TETHER_PROBE", value)).await.unwrap();
    assert_eq!(out.stdout_lossy(), value);
}

/// The working directory is applied.
pub async fn cwd_applied(t: &dyn Transport) {
    let out = t.exec(&Command::shell(lines::PWD).cwd("/")).await.unwrap();
    assert_eq!(out.stdout, b"/\n");
}

/// A command past its time limit is killed and reported as a timeout,
/// promptly.
pub async fn timeout_kills(t: &dyn Transport) {
    let started = Instant::now();
    let err = t.exec(&Command::shell(lines::SLEEP).timeout(Duration::from_millis(300))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "timeout took {:?}", started.elapsed());
}

/// `check` turns a non-zero exit into an error carrying the output; without
/// it the exit code is simply returned.
pub async fn check_fails_with_output(t: &dyn Transport) {
    let unchecked = t.exec(&Command::shell(lines::FAIL_3)).await.unwrap();
    assert_eq!(unchecked.status, ExitStatus::Code(3));
    let err = t.exec(&Command::shell(lines::FAIL_3).check(true)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandFailed);
    let output = err.output().expect("the error carries the output");
    assert_eq!(output.status, ExitStatus::Code(3));
    assert_eq!(output.stderr, b"failing\n");
    assert!(err.to_string().contains("exited with code 3"), "{err}");
}

/// A command killed by a signal reports the signal.
pub async fn signal_reported(t: &dyn Transport) {
    let out = t.exec(&Command::shell(lines::SELF_KILL)).await.unwrap();
    assert_eq!(out.status, ExitStatus::Signal("KILL".into()));
}

/// A missing program is exit code 127 (as `sh` reports it) or a not-found error.
pub async fn missing_program(t: &dyn Transport) {
    match t.exec(&Command::new(lines::MISSING)).await {
        Ok(out) => assert_eq!(out.status, ExitStatus::Code(127)),
        Err(err) => assert_eq!(err.kind(), ErrorKind::NotFound, "{err}"),
    }
}
