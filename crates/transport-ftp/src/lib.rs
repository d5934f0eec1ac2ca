//! Tether's `ftp` transport: files on devices and servers that offer FTP,
//! or explicit FTPS, and nothing better.
//!
//! It is a [`tether_core::FileTransfer`] only (FTP runs no commands), built on
//! suppaftp and held to what Tether asks of every file transport:
//!
//! - **Binary mode always**: the bytes that arrive are the bytes sent.
//! - **Atomic puts**: data goes to a temporary sibling, its size is checked
//!   against what the server stored, mode and mtime are applied, and only
//!   then is it renamed over the destination. A failed or abandoned put
//!   leaves the destination as it was and removes its temporary file.
//! - **Resumed gets**: a download whose data connection breaks resumes from
//!   the bytes already written (`REST`), after checking that the file's size
//!   and modification time did not change (`extra.resume_attempts`).
//! - **Safe passive mode**: `EPSV` first, then `PASV`; the address a `PASV`
//!   reply names is ignored and data goes to the control connection's peer,
//!   so a server cannot make Tether, or a jump host, connect elsewhere.
//! - **Through jump hosts**: the control connection and every data
//!   connection go through the host's dialer, each data port forwarded for
//!   that one connection.
//! - **Time limits everywhere** (`connection_timeout`, `socket_timeout`,
//!   `path_timeout`); a session that hit one is closed, never reused.
//! - **Bounded input**: a multi-line reply is capped (256 KiB, by suppaftp),
//!   and so is a listing (`extra.max_listing_bytes`).
//! - **FTPS** with rustls: the certificate is checked against the system's
//!   roots or `extra.ca_file`, and the data connections resume the control
//!   connection's TLS session (vsftpd's `require_ssl_reuse`).
//!
//! **Secrets.** suppaftp logs every command, `PASS` with the password
//! included, at trace level under the log target [`LOG_TARGET_WITH_SECRETS`].
//! Cap that target at `debug` in any subscriber that may print trace
//! records; the `tether` CLI does. Tether itself never logs the password,
//! and it appears in no `Debug` output or error.
//!
//! What FTP cannot do, it refuses rather than pretends: owners and groups
//! (`PutOptions::owner`), and names that are not UTF-8 (or, with
//! `encoding = "latin-1"`, not Latin-1) answer [`tether_core::ErrorKind::Unsupported`].
//! `stat` with `sha512` downloads the file to hash it: FTP has no standard
//! checksum command.
//!
//! The options are `ftp_options` ([`FtpOptions`]).

#![deny(missing_docs)]

mod connect;
mod error;
mod listing;
mod options;
mod session;
mod throttle;
mod tls;
mod transfer;

pub use connect::{FtpConnection, FtpHost, connect_via};
pub use options::{FtpExtra, FtpOptions, NameEncoding, PassiveCommand};

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The log target under which suppaftp writes every command it sends,
/// `PASS <password>` included, at trace level. Subscribers must keep it at
/// `debug` or below.
pub const LOG_TARGET_WITH_SECRETS: &str = "suppaftp";

/// The `ftp` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin::new("ftp", connect::connect)
    .with_description("FTP and explicit FTPS: files on servers and devices that offer nothing better")
    .with_capabilities(Capabilities::NONE.with_files())
    .with_options(OptionsSpec::validated::<FtpOptions>(options::TABLE));

tether_core::inventory::submit!(PLUGIN);
