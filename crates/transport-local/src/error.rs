//! Mapping the OS's errors into [`tether_core::Error`].

use std::io;

use nix::errno::Errno;
use tether_core::{Error, ErrorKind};

/// An I/O error of `operation` on `path`; the kind comes from
/// [`tether_core::raw::kind_of_io`].
pub(crate) fn at(operation: &str, path: impl AsRef<std::path::Path>, err: io::Error) -> Error {
    Error::io(operation, err).with_context(path.as_ref().display().to_string())
}

/// A failed system call, mapped through its `io::Error` so the kinds match
/// those of std's calls.
pub(crate) fn errno(operation: &str, err: Errno) -> Error {
    Error::io(operation, io::Error::from(err))
}

/// A blocking task that panicked or was cancelled with the runtime.
pub(crate) fn join(operation: &str, err: tokio::task::JoinError) -> Error {
    let why = if err.is_panic() { "worker thread panicked" } else { "worker thread cancelled" };
    Error::new(ErrorKind::Io, operation).with_context(why)
}

/// Runs `work` on the blocking pool: file and user-database calls may sleep
/// on disk or NSS and must not stall the async workers.
pub(crate) async fn blocking<T, F>(operation: &str, work: F) -> tether_core::Result<T>
where
    F: FnOnce() -> tether_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| join(operation, e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_keeps_the_kind() {
        assert_eq!(errno("chown", Errno::EPERM).kind(), ErrorKind::PermissionDenied);
        assert_eq!(errno("stat", Errno::ENOENT).kind(), ErrorKind::NotFound);
        let err = at("get", "/no/such", io::Error::from(io::ErrorKind::NotFound));
        assert!(err.to_string().contains("/no/such"), "{err}");
    }
}
