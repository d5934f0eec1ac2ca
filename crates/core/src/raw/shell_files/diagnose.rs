//! Turning shell failures into typed errors.
//!
//! The scripts test the conditions callers match on themselves (`[ -e … ]`)
//! and report them with the exit codes below, so the common kinds do not
//! depend on the wording of the remote tools. Everything else is recognised
//! from the (C-locale) message on stderr, and what is not recognised stays
//! [`ErrorKind::CommandFailed`] with the command's output attached.

use crate::command::{ExitStatus, Output};
use crate::error::{Error, ErrorKind};

/// A script's "the path does not exist".
pub(crate) const EXIT_NOT_FOUND: i32 = 90;
/// A script's "the path exists already".
pub(crate) const EXIT_EXISTS: i32 = 91;
/// A script's "a directory was needed here".
pub(crate) const EXIT_NOT_DIR: i32 = 92;
/// A script's "a directory is in the way".
pub(crate) const EXIT_IS_DIR: i32 = 93;
/// A script's "the uploaded file has the wrong size" (the size is on stdout).
pub(crate) const EXIT_SIZE: i32 = 95;

/// Phrases of `strerror` (C locale) and of coreutils, with the kind each means.
const MESSAGES: &[(&str, ErrorKind)] = &[
    ("No such file or directory", ErrorKind::NotFound),
    ("invalid user", ErrorKind::NotFound),
    ("invalid group", ErrorKind::NotFound),
    ("Permission denied", ErrorKind::PermissionDenied),
    ("Operation not permitted", ErrorKind::PermissionDenied),
    ("Read-only file system", ErrorKind::PermissionDenied),
    ("File exists", ErrorKind::AlreadyExists),
    ("No space left on device", ErrorKind::StorageFull),
    ("Disk quota exceeded", ErrorKind::StorageFull),
    ("File too large", ErrorKind::StorageFull),
    ("Not a directory", ErrorKind::InvalidInput),
    ("Is a directory", ErrorKind::InvalidInput),
    ("Directory not empty", ErrorKind::DirectoryNotEmpty),
    ("Too many levels of symbolic links", ErrorKind::InvalidInput),
    ("File name too long", ErrorKind::InvalidInput),
];

/// The kind a failed script's output stands for, and a short reason.
fn diagnose(output: &Output) -> (ErrorKind, String) {
    let stderr = output.stderr_lossy();
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim).unwrap_or("");
    let by_code = match output.status.code() {
        Some(EXIT_NOT_FOUND) => Some((ErrorKind::NotFound, "no such file or directory")),
        Some(EXIT_EXISTS) => Some((ErrorKind::AlreadyExists, "already exists")),
        Some(EXIT_NOT_DIR) => Some((ErrorKind::InvalidInput, "not a directory")),
        Some(EXIT_IS_DIR) => Some((ErrorKind::InvalidInput, "is a directory")),
        Some(EXIT_SIZE) => {
            let found = String::from_utf8_lossy(&output.stdout);
            return (ErrorKind::Corrupted, format!("the host holds {} bytes, not the bytes sent", found.trim()));
        }
        // `sh` reports a missing tool as 127: the host lacks what shellfs needs.
        Some(127) => Some((ErrorKind::Unsupported, "a required command is missing on the host")),
        _ => None,
    };
    if let Some((kind, reason)) = by_code {
        let reason = if last_line.is_empty() { reason.to_string() } else { format!("{reason} ({last_line})") };
        return (kind, reason);
    }
    let kind = MESSAGES.iter().find(|(phrase, _)| stderr.contains(phrase)).map_or(ErrorKind::CommandFailed, |m| m.1);
    let reason = if last_line.is_empty() { output.status.to_string() } else { last_line.to_string() };
    (kind, reason)
}

/// Re-types an error of the inner transport: a failed script becomes the
/// kind its exit code or message stands for; anything else (a lost
/// connection, a timeout) is already typed and passes through.
pub(crate) fn from_script(operation: &str, path: impl std::fmt::Display, err: Error) -> Error {
    match err.output() {
        Some(output) if err.kind() == ErrorKind::CommandFailed => failed(operation, path, output.clone()),
        _ => err,
    }
}

/// The error for a command that ended with `output` (non-zero or by signal):
/// its kind is read from the exit code of the [`ShellFiles`](super::ShellFiles)
/// scripts or from the C-locale message on stderr (`No space left on
/// device`, `Permission denied`, …), and the output is attached.
pub fn failed(operation: &str, path: impl std::fmt::Display, output: Output) -> Error {
    let (kind, reason) = diagnose(&output);
    Error::new(kind, operation).with_context(format!("{path}: {reason}")).with_output(output)
}

/// The error for a reply shellfs cannot make sense of.
pub(crate) fn protocol(operation: &str, command: &str, detail: impl std::fmt::Display) -> Error {
    let mut command = command.replace('\n', "; ");
    if command.chars().count() > 200 {
        command = command.chars().take(200).collect::<String>() + "…";
    }
    Error::new(ErrorKind::Protocol, operation).with_context(format!("unexpected reply to `{command}`: {detail}"))
}

/// An [`Output`] for a spawned process, whose status arrives separately.
pub(crate) fn output_of(status: ExitStatus, stderr: Vec<u8>) -> Output {
    Output { stdout: Vec::new(), stderr, status }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(code: i32, stderr: &str) -> Output {
        Output { stdout: Vec::new(), stderr: stderr.as_bytes().to_vec(), status: ExitStatus::Code(code) }
    }

    #[test]
    fn exit_codes_decide_first() {
        assert_eq!(failed("stat", "/x", output(EXIT_NOT_FOUND, "")).kind(), ErrorKind::NotFound);
        assert_eq!(failed("mkdir", "/x", output(EXIT_EXISTS, "")).kind(), ErrorKind::AlreadyExists);
        assert_eq!(failed("put", "/x", output(EXIT_IS_DIR, "")).kind(), ErrorKind::InvalidInput);
        assert_eq!(failed("put", "/x", output(127, "sh: 1: stat: not found")).kind(), ErrorKind::Unsupported);
        let short = Output { stdout: b"17".to_vec(), ..output(EXIT_SIZE, "") };
        let err = failed("put", "/x", short);
        assert_eq!(err.kind(), ErrorKind::Corrupted);
        assert!(err.to_string().contains("holds 17 bytes"), "{err}");
    }

    #[test]
    fn messages_are_recognised() {
        let err = failed("remove", "/d", output(1, "rmdir: failed to remove '/d': Directory not empty\n"));
        assert_eq!(err.kind(), ErrorKind::DirectoryNotEmpty);
        assert_eq!(
            err.to_string(),
            "remove: directory not empty: /d: rmdir: failed to remove '/d': Directory not empty"
        );
        let err = failed("put", "/f", output(1, "cat: write error: No space left on device\n"));
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        let err = failed("put", "/f", output(2, "sh: 1: cannot create /f: Permission denied\n"));
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        let err = failed("put", "/f", output(1, "something odd\n"));
        assert_eq!(err.kind(), ErrorKind::CommandFailed);
        assert!(err.output().is_some());
    }

    #[test]
    fn signals_are_command_failures() {
        let out = Output { stdout: vec![], stderr: vec![], status: ExitStatus::Signal("KILL".into()) };
        let err = failed("get", "/f", out);
        assert_eq!(err.kind(), ErrorKind::CommandFailed);
        assert!(err.to_string().contains("killed by signal KILL"), "{err}");
    }

    #[test]
    fn protocol_errors_name_the_command() {
        let err = protocol("stat", "stat -c %s x", "no output");
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert!(err.to_string().contains("`stat -c %s x`"), "{err}");
    }
}
