//! suppaftp's errors and FTP reply codes as Tether's [`ErrorKind`]s. No
//! suppaftp type leaves this crate: the reply text goes into the error's
//! context, cleaned of control characters and cut to a readable length.

use std::io;

use suppaftp::FtpError;
use tether_core::raw::kind_of_io;
use tether_core::{Error, ErrorKind};

/// The longest piece of a server's reply quoted in an error.
const QUOTED_REPLY: usize = 200;

/// Whether the session is still in step with the server after `err`: a
/// refusal (`550 No such file`) leaves it usable, while a broken
/// connection, a malformed reply or a closing `421` does not.
pub(crate) fn keeps_session(err: &FtpError) -> bool {
    match err {
        FtpError::UnexpectedResponse(response) => response.status.code() != 421,
        FtpError::InvalidAddress(_) | FtpError::DataConnectionAlreadyOpen => true,
        FtpError::ConnectionError(e) => e.kind() == io::ErrorKind::InvalidInput,
        FtpError::BadResponse | FtpError::SecureError(_) => false,
    }
}

/// The reply code of a refusal, if `err` is one.
pub(crate) fn reply_code(err: &FtpError) -> Option<u32> {
    match err {
        FtpError::UnexpectedResponse(response) => Some(response.status.code()),
        _ => None,
    }
}

/// `err` as Tether's error for `operation` on `subject` (a path, or the
/// server's address).
pub(crate) fn from_ftp(err: &FtpError, operation: &str, subject: &str) -> Error {
    let (kind, why) = match err {
        FtpError::UnexpectedResponse(response) => {
            let code = response.status.code();
            (kind_of_code(code), quote(&String::from_utf8_lossy(&response.body)))
        }
        FtpError::ConnectionError(e) => {
            let kind = match e.kind() {
                io::ErrorKind::InvalidData => ErrorKind::Protocol,
                io::ErrorKind::UnexpectedEof => ErrorKind::ConnectionLost,
                _ => kind_of_io(e),
            };
            (kind, quote(&e.to_string()))
        }
        FtpError::SecureError(e) => (ErrorKind::ConnectFailed, format!("TLS: {}", quote(e))),
        FtpError::BadResponse => (ErrorKind::Protocol, "the server's reply is not an FTP reply".to_string()),
        FtpError::InvalidAddress(e) => (ErrorKind::Protocol, format!("the server named a bad address: {e}")),
        FtpError::DataConnectionAlreadyOpen => (ErrorKind::Protocol, "a data connection is already open".to_string()),
    };
    Error::new(kind, operation.to_string()).with_context(format!("{subject}: {why}"))
}

/// What a refusal's reply code means (RFC 959 and 3659). `550` is "not
/// found" here; callers that can tell a permission problem apart do so.
fn kind_of_code(code: u32) -> ErrorKind {
    match code {
        421 => ErrorKind::ConnectionLost,
        425 | 426 => ErrorKind::Io,
        430 | 530 | 532 => ErrorKind::AuthFailed,
        450 | 550 => ErrorKind::NotFound,
        452 | 552 => ErrorKind::StorageFull,
        553 => ErrorKind::PermissionDenied,
        500 | 502 | 504 => ErrorKind::Unsupported,
        501 => ErrorKind::InvalidInput,
        _ => ErrorKind::Protocol,
    }
}

/// `text` with control characters shown as `\u{..}` escapes and cut to
/// [`QUOTED_REPLY`] characters, so a hostile reply cannot forge log lines.
pub(crate) fn quote(text: &str) -> String {
    let text = text.trim_end();
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == QUOTED_REPLY {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::Status;
    use suppaftp::types::Response;

    fn reply(code: u32, text: &str) -> FtpError {
        FtpError::UnexpectedResponse(Response::new(Status::from(code), text.as_bytes().to_vec()))
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(from_ftp(&reply(550, "550 No such file.\r\n"), "get", "/x").kind(), ErrorKind::NotFound);
        assert_eq!(from_ftp(&reply(530, "530 Login incorrect.\r\n"), "login", "h").kind(), ErrorKind::AuthFailed);
        assert_eq!(from_ftp(&reply(552, "552 Quota\r\n"), "put", "/x").kind(), ErrorKind::StorageFull);
        assert_eq!(from_ftp(&reply(421, "421 Bye\r\n"), "put", "/x").kind(), ErrorKind::ConnectionLost);
        assert!(!keeps_session(&reply(421, "421 Bye")));
        assert!(keeps_session(&reply(550, "550 No")));
        let err =
            from_ftp(&FtpError::ConnectionError(io::Error::new(io::ErrorKind::InvalidData, "too big")), "list", "/");
        assert_eq!(err.kind(), ErrorKind::Protocol);
    }

    #[test]
    fn quoted_replies_are_clean_and_short() {
        let err = from_ftp(&reply(550, &format!("550 a\r\nfake log line\x1b[31m{}", "x".repeat(500))), "get", "/p");
        let text = err.to_string();
        assert!(!text.contains('\n') && !text.contains('\x1b'), "{text:?}");
        assert!(text.len() < 400, "{}", text.len());
    }
}
