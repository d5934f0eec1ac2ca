//! Mapping russh's errors into [`tether_core::Error`]. Only the message of a
//! library error is kept, so no russh type reaches the public API.

use std::future::Future;
use std::time::Duration;

use tether_core::{Error, ErrorKind, Result};

/// A russh error of `operation`, with a kind callers can match on.
pub(crate) fn ssh(operation: &str, err: russh::Error) -> Error {
    let kind = match &err {
        russh::Error::IO(io) => tether_core::kind_of_io(io),
        russh::Error::Disconnect | russh::Error::HUP | russh::Error::SendError | russh::Error::RecvError => {
            ErrorKind::ConnectionLost
        }
        russh::Error::KeepaliveTimeout | russh::Error::InactivityTimeout | russh::Error::ConnectionTimeout => {
            ErrorKind::ConnectionLost
        }
        russh::Error::ChannelOpenFailure(_) => ErrorKind::PermissionDenied,
        russh::Error::NoCommonAlgo { .. } => ErrorKind::ConnectFailed,
        russh::Error::UnknownKey | russh::Error::WrongServerSig => ErrorKind::HostKeyMismatch,
        _ => ErrorKind::Protocol,
    };
    Error::new(kind, operation).with_context(err.to_string())
}

/// Runs one network step under `limit`; running out is [`ErrorKind::Timeout`]
/// naming the step.
pub(crate) async fn timed<T>(
    operation: &str,
    step: &str,
    limit: Duration,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            Err(Error::new(ErrorKind::Timeout, operation).with_context(format!("{step}: no answer within {limit:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(ssh("exec", russh::Error::Disconnect).kind(), ErrorKind::ConnectionLost);
        assert_eq!(ssh("connect", russh::Error::UnknownKey).kind(), ErrorKind::HostKeyMismatch);
        let io = russh::Error::IO(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(ssh("connect", io).kind(), ErrorKind::ConnectFailed);
    }
}
