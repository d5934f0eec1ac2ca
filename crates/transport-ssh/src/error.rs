//! Mapping russh's errors into [`tether_core::Error`]. Only the message of a
//! library error is kept, so no russh type reaches the public API.

use std::future::Future;
use std::time::Duration;

use tether_core::{Error, ErrorKind, Result};

/// A russh error of `operation`, with a kind callers can match on.
pub(crate) fn ssh(operation: &str, err: russh::Error) -> Error {
    let kind = match &err {
        russh::Error::IO(io) => tether_core::raw::kind_of_io(io),
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

/// A refused channel open (`direct-tcpip` and friends) of `operation` to
/// `what`, typed by the server's reason code; `description` is the server's
/// own words when known (OpenSSH sends `strerror`, e.g. "Connection refused").
pub(crate) fn channel_open(operation: &str, what: &str, err: russh::Error, description: Option<String>) -> Error {
    let russh::Error::ChannelOpenFailure(reason) = err else {
        let context = format!("{what}: {err}");
        return ssh(operation, err).with_context(context);
    };
    let (kind, meaning) = match &reason {
        russh::ChannelOpenFailure::ConnectFailed => {
            (ErrorKind::ConnectFailed, "the server could not connect".to_string())
        }
        russh::ChannelOpenFailure::AdministrativelyProhibited => (
            ErrorKind::PermissionDenied,
            "the server forbids it (AllowTcpForwarding, PermitOpen or a Match block)".to_string(),
        ),
        russh::ChannelOpenFailure::UnknownChannelType => {
            (ErrorKind::Unsupported, "the server does not know this channel type".to_string())
        }
        russh::ChannelOpenFailure::ResourceShortage => {
            (ErrorKind::ConnectFailed, "the server is short of resources".to_string())
        }
        russh::ChannelOpenFailure::Other { code, reason } => {
            (ErrorKind::ConnectFailed, format!("the server refused it (code {code}: {reason})"))
        }
    };
    let context = match description.filter(|d| !d.trim().is_empty()) {
        Some(description) => format!("{what}: {meaning}: {}", description.trim()),
        None => format!("{what}: {meaning}"),
    };
    Error::new(kind, operation).with_context(context)
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

    #[test]
    fn channel_open_kinds_name_the_destination_and_reason() {
        let refused = russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed);
        let err = channel_open("open stream", "db:5432", refused, Some("Connection refused".into()));
        assert_eq!(err.kind(), ErrorKind::ConnectFailed);
        assert!(err.to_string().contains("db:5432") && err.to_string().contains("Connection refused"), "{err}");
        let forbidden = russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::AdministrativelyProhibited);
        assert_eq!(channel_open("open stream", "x:1", forbidden, None).kind(), ErrorKind::PermissionDenied);
        assert_eq!(
            channel_open("open stream", "x:1", russh::Error::Disconnect, None).kind(),
            ErrorKind::ConnectionLost
        );
    }
}
