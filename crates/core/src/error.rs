//! The one error type of the framework.
//!
//! Every failure, whatever transport it comes from, is an [`Error`] with a
//! [`ErrorKind`] callers can match on, the operation that failed, the host it
//! failed on and a short context (usually a path or an address). Transport
//! crates map their library's errors into this type in their `error.rs`, so no
//! library error type leaks through the public API.

use std::fmt;
use std::io;

use crate::command::Output;

/// What went wrong, independent of the transport that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file, directory, user, group, host or command does not exist.
    NotFound,
    /// The peer or the local system refused the operation.
    PermissionDenied,
    /// The destination exists and the operation does not overwrite.
    AlreadyExists,
    /// A directory to remove still has entries.
    DirectoryNotEmpty,
    /// A step did not finish within its time limit.
    Timeout,
    /// The connection could not be established.
    ConnectFailed,
    /// An established connection dropped while work was pending.
    ConnectionLost,
    /// Every authentication method was rejected.
    AuthFailed,
    /// The host presented a key that does not match the recorded one.
    HostKeyMismatch,
    /// A command ran and exited unsuccessfully while `check` was set.
    CommandFailed,
    /// The transport cannot do this (for example a PTY on a transport without one).
    Unsupported,
    /// The configuration (inventory, settings, options, URL) is wrong.
    InvalidConfig,
    /// An argument given by the caller is wrong.
    InvalidInput,
    /// The peer broke the protocol (malformed or oversized message).
    Protocol,
    /// The destination ran out of space or quota.
    StorageFull,
    /// Data did not survive the trip (size or checksum mismatch).
    Corrupted,
    /// Any other I/O failure.
    Io,
}

impl ErrorKind {
    /// A short human phrase for the kind, used in error lines.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::DirectoryNotEmpty => "directory not empty",
            ErrorKind::Timeout => "timed out",
            ErrorKind::ConnectFailed => "connection failed",
            ErrorKind::ConnectionLost => "connection lost",
            ErrorKind::AuthFailed => "authentication failed",
            ErrorKind::HostKeyMismatch => "host key mismatch",
            ErrorKind::CommandFailed => "command failed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::StorageFull => "storage full",
            ErrorKind::Corrupted => "data corrupted",
            ErrorKind::Io => "i/o error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure anywhere in Tether.
///
/// It prints as one line: `exec on dut1: command failed: `false` exited with code 1`.
pub struct Error {
    kind: ErrorKind,
    operation: String,
    host: Option<String>,
    context: Option<String>,
    output: Option<Box<Output>>,
    source: Option<Source>,
}

/// `Result` with Tether's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` while doing `operation` (`"exec"`, `"put"`, `"connect"`, …).
    pub fn new(kind: ErrorKind, operation: impl Into<String>) -> Self {
        Error { kind, operation: operation.into(), host: None, context: None, output: None, source: None }
    }

    /// Maps an I/O error onto the matching kind, keeping it as the source.
    pub fn io(operation: impl Into<String>, err: io::Error) -> Self {
        Error::new(kind_of_io(&err), operation).with_source(err)
    }

    /// Names the host the operation ran against (kept if one is already set,
    /// so the innermost, most precise host wins).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        if self.host.is_none() {
            self.host = Some(host.into());
        }
        self
    }

    /// Adds what the operation worked on: a path, an address, a command line.
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Keeps the underlying cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches the output of a failed command.
    pub fn with_output(mut self, output: Output) -> Self {
        self.output = Some(Box::new(output));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The host the operation ran against, when known.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// What the operation worked on, when known.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// The output of the command, for [`ErrorKind::CommandFailed`].
    pub fn output(&self) -> Option<&Output> {
        self.output.as_deref()
    }

    /// True when the error is of `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }
}

/// The `io::ErrorKind` → [`ErrorKind`] map used by every transport.
pub fn kind_of_io(err: &io::Error) -> ErrorKind {
    use io::ErrorKind as K;
    match err.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied | K::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
        K::AlreadyExists => ErrorKind::AlreadyExists,
        K::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
        K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
        K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
            ErrorKind::ConnectFailed
        }
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof | K::NotConnected => {
            ErrorKind::ConnectionLost
        }
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => ErrorKind::StorageFull,
        K::InvalidInput | K::InvalidFilename => ErrorKind::InvalidInput,
        K::InvalidData => ErrorKind::Protocol,
        K::Unsupported => ErrorKind::Unsupported,
        _ => ErrorKind::Io,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.operation)?;
        if let Some(host) = &self.host {
            write!(f, " on {host}")?;
        }
        write!(f, ": {}", self.kind)?;
        if let Some(context) = &self.context {
            write!(f, ": {context}")?;
        }
        if let Some(source) = &self.source {
            // Walk the whole chain so the one line tells the root cause.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(err) = cause {
                write!(f, ": {err}")?;
                cause = err.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output is what `unwrap()` prints: keep it the readable line,
        // plus the kind for matching in test failures.
        write!(f, "Error({:?}): {}", self.kind, self)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The source is already part of the Display line; exposing it as well
        // would make reporters that walk the chain print it twice.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_line_with_host_context_and_cause() {
        let err = Error::io("put", io::Error::new(io::ErrorKind::PermissionDenied, "nope"))
            .with_host("dut1")
            .with_context("/etc/shadow");
        assert_eq!(err.to_string(), "put on dut1: permission denied: /etc/shadow: nope");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn innermost_host_wins() {
        let err = Error::new(ErrorKind::Timeout, "connect").with_host("hop").with_host("target");
        assert_eq!(err.host(), Some("hop"));
    }
}
