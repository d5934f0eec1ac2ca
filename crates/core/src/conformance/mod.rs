//! The behaviour suite every transport runs against itself.
//!
//! Plain async functions over `&dyn Transport`, `&dyn FileTransfer` and
//! `&dyn Tunnel` that panic with a clear message when the transport
//! misbehaves. A transport crate runs all of them with one macro call in its
//! tests, so third-party transports are held to the same bar:
//!
//! ```text
//! async fn transport() -> Arc<dyn Transport> { /* connect */ }
//! async fn files() -> tether_core::conformance::FilesFixture { /* connect, make a scratch dir */ }
//! tether_core::transport_conformance!(transport);
//! tether_core::files_conformance!(files);
//! ```
//!
//! The exec checks use POSIX `sh` lines (`exit 3`, `printf`, `cat`, `pwd`,
//! `sleep`); [`exec::LINES`] lists every line, so a transport with scripted
//! commands (like `mem`) knows what to answer.

pub mod exec;
pub mod files;
pub mod tunnel;

use std::any::Any;
use std::sync::Arc;

use crate::files::FileTransfer;

/// A file transport and an empty scratch directory on it.
pub struct FilesFixture {
    /// The transport under test.
    pub files: Arc<dyn FileTransfer>,
    /// An existing, empty directory the checks may fill.
    pub base: String,
    /// Kept alive for the duration of the check (a temporary directory, a server).
    pub guard: Box<dyn Any + Send>,
}

impl std::fmt::Debug for FilesFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesFixture").field("files", &self.files).field("base", &self.base).finish_non_exhaustive()
    }
}

/// A connect function that always refuses, for test plugins that exist only
/// to register a scheme and an options table (configuration and registry
/// tests need no connection).
pub fn refuse_connect(
    request: crate::ConnectRequest,
) -> crate::BoxFuture<'static, crate::Result<Arc<dyn crate::Connection>>> {
    Box::pin(async move {
        Err(crate::Error::new(crate::ErrorKind::Unsupported, "connect")
            .with_context(format!("`{}` is a test plugin that does not connect", request.scheme)))
    })
}

/// A source that gives 1,000 bytes and then never ends (nor fails): a put
/// fed from it can only finish by being cancelled, which is what tests of
/// abandoned transfers need.
#[derive(Debug, Default)]
pub struct StalledSource {
    sent: bool,
}

impl tokio::io::AsyncRead for StalledSource {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.sent {
            return std::task::Poll::Pending;
        }
        self.sent = true;
        buf.put_slice(&[b'x'; 1000]);
        std::task::Poll::Ready(Ok(()))
    }
}

/// What [`local_tree`] found at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalEntry {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// Anything else: a link, a pipe, a device (so a copied one is noticed).
    Other,
}

/// Everything below the local directory `root`, by path relative to it,
/// without following links: what tree-transfer tests compare.
pub fn local_tree(root: &std::path::Path) -> std::collections::BTreeMap<String, LocalEntry> {
    let mut found = std::collections::BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a test directory") {
            let entry = entry.expect("read a test directory entry");
            let kind = entry.file_type().expect("a test entry's type");
            let relative = entry.path().strip_prefix(root).expect("below the root").display().to_string();
            let found_entry = if kind.is_dir() {
                pending.push(entry.path());
                LocalEntry::Dir
            } else if kind.is_file() {
                LocalEntry::File(std::fs::read(entry.path()).expect("read a test file"))
            } else {
                LocalEntry::Other
            };
            found.insert(relative, found_entry);
        }
    }
    found
}

/// Deterministic pseudo-random bytes (so a failure can be reproduced).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    data
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Generates one `#[tokio::test]` per exec check, each calling `$make().await`
/// for an `Arc<dyn Transport>`.
#[macro_export]
macro_rules! transport_conformance {
    ($make:ident) => {
        mod transport_conformance {
            $crate::__conformance_tests!(exec $make;
                exit_codes, stdout_and_stderr_apart, binary_output_kept, argv_is_not_reinterpreted,
                large_output, large_output_streamed, stdin_fed, stdin_streamed, env_passed, cwd_applied,
                timeout_kills, check_fails_with_output, signal_reported, missing_program);
        }
    };
}

/// Generates one `#[tokio::test]` per file check, each calling `$make().await`
/// for a [`FilesFixture`].
#[macro_export]
macro_rules! files_conformance {
    ($make:ident) => {
        mod files_conformance {
            $crate::__conformance_tests!(files $make;
                round_trip_empty, round_trip_one_byte, round_trip_100_mib, mode_kept, overwrite_keeps_mode,
                stat_describes, stat_sha512, missing_path_not_found, put_into_missing_dir_fails,
                failed_put_keeps_destination, short_put_keeps_destination, directories);
        }
    };
}

/// Generates the tunnel checks; `$make().await` gives
/// `(Arc<dyn Tunnel>, host, port, guard)` where `host:port` is an echo service
/// reachable through the tunnel.
#[macro_export]
macro_rules! tunnel_conformance {
    ($make:ident) => {
        mod tunnel_conformance {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn echo_through_stream() {
                let (tunnel, host, port, _guard) = super::$make().await;
                $crate::conformance::tunnel::echo_through_stream(&*tunnel, &host, port).await;
            }
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn echo_through_forwarded_port() {
                let (tunnel, host, port, _guard) = super::$make().await;
                $crate::conformance::tunnel::echo_through_forwarded_port(tunnel, &host, port).await;
            }
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn refused_port_is_an_error() {
                let (tunnel, host, _port, _guard) = super::$make().await;
                $crate::conformance::tunnel::refused_port_is_an_error(&*tunnel, &host).await;
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (exec $make:ident; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let transport = super::$make().await;
                $crate::conformance::exec::$check(&*transport).await;
            }
        )*
    };
    (files $make:ident; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = super::$make().await;
                $crate::conformance::files::$check(&*fixture.files, &fixture.base).await;
            }
        )*
    };
}
