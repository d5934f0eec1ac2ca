//! Private servers for Tether's tests: each one runs from its own temporary
//! directory on a loopback ephemeral port and is stopped when the handle drops.
//!
//! This crate is a dev-dependency only (`publish = false`). It starts the real
//! server programs of the distribution, so transports are tested against what
//! users actually reach. A missing server program is an error that says which
//! package to install ([`HarnessError::MissingProgram`]), never a silent skip.
//!
//! # OpenSSH
//!
//! [`Sshd::start`] runs `/usr/sbin/sshd` with a generated config, an ed25519
//! host key and an ed25519 client key, and returns once the server answers with
//! its SSH banner:
//!
//! ```no_run
//! use tether_test_servers::Sshd;
//!
//! let sshd = Sshd::start()?;
//! let out = sshd.ssh_command("printf ok").output()?;
//! assert_eq!(out.stdout, b"ok");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`SshdBuilder`] adds config lines, changes `MaxSessions`, authorizes more
//! client keys or enables password authentication for a user.
//!
//! # Telnet
//!
//! [`Telnetd::builder`] starts busybox's `telnetd` (from `busybox-static`)
//! or inetutils' `telnetd` behind `socat`, with a shell at once or a login
//! ([`TelnetdBuilder::login`]).
//!
//! # FTP
//!
//! [`Vsftpd::start`] runs `/usr/sbin/vsftpd` (package `vsftpd`) for a login
//! of its own, `tetherftp`, which exists only in the server's private mount
//! namespace; [`VsftpdBuilder::tls`] requires explicit FTPS (`AUTH TLS`) with
//! a self-signed certificate ([`Vsftpd::ca_file`]), and
//! [`VsftpdBuilder::pasv_address`] makes `PASV` replies name another address:
//!
//! ```no_run
//! use tether_test_servers::Vsftpd;
//!
//! let ftp = Vsftpd::builder().tls().start()?;
//! let dir = ftp.scratch_dir(); // empty, owned by the login
//! // The path of an FTP URL is relative to the login's home.
//! let url = format!("ftp://{}:{}/{}/", ftp.ip(), ftp.port(), dir.strip_prefix(ftp.home())?.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Proftpd::start`] runs ProFTPD (package `proftpd-core`, which conflicts
//! with `vsftpd`'s, so `scripts/test` unpacks it into `/opt/tether` instead
//! of installing it), which unlike vsftpd answers `MLSD`, `MLST` and `MFMT`,
//! for a login of the same name that exists only in its private user file.
//!
//! # Network namespaces
//!
//! For jump-host tests, [`netns`] describes a chain of network namespaces
//! (built by `scripts/netns up`) in which each hop reaches only its
//! neighbours, and [`SshdBuilder::netns`] starts an sshd inside one of them.
//!
//! The harness is Linux-only: it needs `/proc` to stop every process a server
//! started, and mount namespaces for password authentication.

#![deny(missing_docs)]

mod error;
mod ftpd;
pub mod netns;
mod process;
mod proftpd;
mod programs;
mod sshd;
mod telnetd;
mod vsftpd;

pub use error::HarnessError;
pub use proftpd::{Proftpd, ProftpdBuilder};
pub use sshd::{LogLevel, Sshd, SshdBuilder};
pub use telnetd::{Telnetd, TelnetdBuilder, TelnetdKind};
pub use vsftpd::{Vsftpd, VsftpdBuilder};
