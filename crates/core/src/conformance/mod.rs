//! The behaviour suite every transport runs against itself.
//!
//! A transport is judged through a [`Subject`]: a [`Host`] whose `term` and
//! `transfer` are the scheme under test, the capabilities the scheme
//! declares, a scratch directory and, for tunnels, services to reach. One
//! macro call in the transport's tests generates a `#[tokio::test]` per
//! check:
//!
//! ```text
//! async fn subject() -> tether_core::conformance::Subject { /* connect, make a scratch dir */ }
//! tether_core::conformance!(subject);
//! ```
//!
//! Every check runs whatever the scheme declares, because the declaration is
//! what is tested: a check of a declared capability must pass, and for an
//! absent one the host must answer [`ErrorKind::Unsupported`]. So `sftp`
//! runs the exec checks too, and passes them by refusing to run commands.
//!
//! The checks go after what breaks transports in practice, not just the
//! happy path: names with spaces, quotes, `$`, `*`, backslashes, a leading
//! `-`, newlines, 255-byte and non-ASCII names; stdout and stderr
//! interleaved; every exit code; `kill` that must really end the process;
//! puts that fail or are abandoned; half-closed streams. [`mutants`] holds
//! deliberately broken wrappers, and the repository proves the suite fails
//! each of them.
//!
//! The exec checks speak a small POSIX `sh`: sequences, pipes, `>&2`,
//! `printf`, `head -c`, `yes`, `cat`, `kill`, `sleep`, `mkdir`, `rmdir`.
//! `mem` runs them with its built-in shell, every real host with its own.

pub mod exec;
pub mod files;
pub mod mutants;
pub mod tunnel;

use std::any::Any;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ErrorKind;
use crate::files::FileTransfer;
use crate::host::Host;
use crate::registry::Capabilities;
use crate::transport::Transport;
use crate::tunnel::{BoxStream, Tunnel};

/// Makes a symbolic link: `(target, link)`.
pub type MakeLink = Box<dyn Fn(&str, &str) + Send + Sync>;

/// What the suite tests: a host whose `term` and `transfer` are the scheme
/// under test, and what that scheme declares.
pub struct Subject {
    /// The host; its `term` and `transfer` name the scheme under test.
    pub host: Arc<Host>,
    /// What the scheme declares (its plugin's capabilities).
    pub capabilities: Capabilities,
    /// An existing, empty directory on the host the file checks may fill
    /// (absolute, without a trailing `/`).
    pub scratch: String,
    /// Services reachable through the host's tunnel, for the tunnel checks
    /// (`None`: the scheme has no tunnel, or its far end is out of this
    /// process's reach and the tunnel is tested elsewhere).
    pub services: Option<Arc<dyn Services>>,
    /// Cuts the host's connection as a network failure would, for the check
    /// that pending work then fails promptly (`None`: the transport has no
    /// connection to lose, such as `local`).
    pub sever: Option<Box<dyn Fn() + Send + Sync>>,
    /// Makes a symbolic link `link` (an absolute path on the host) pointing
    /// at `target`, for the link checks (`None`: not checked).
    pub symlink: Option<MakeLink>,
    /// True when the host keeps files in this very process (`mem`), so the
    /// streaming check cannot measure the transport's memory.
    pub files_in_memory: bool,
    /// Kept alive for the duration of the check (temporary directories,
    /// servers, the lab).
    pub guard: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject")
            .field("host", &self.host.id())
            .field("capabilities", &self.capabilities)
            .field("scratch", &self.scratch)
            .finish_non_exhaustive()
    }
}

impl Subject {
    /// A subject with no tunnel services and nothing to sever.
    pub fn new(host: Arc<Host>, capabilities: Capabilities, scratch: impl Into<String>) -> Self {
        Subject {
            host,
            capabilities,
            scratch: scratch.into(),
            services: None,
            sever: None,
            symlink: None,
            files_in_memory: false,
            guard: Box::new(()),
        }
    }

    /// A subject for `host`, whose `term` and `transfer` name the scheme
    /// under test, with that scheme's declared capabilities.
    pub fn of_host(host: Arc<Host>, scratch: impl Into<String>) -> Self {
        let scheme = host.config().transfer.clone();
        let capabilities = host.capabilities(&scheme).unwrap_or_else(|e| panic!("scheme `{scheme}`: {e}"));
        Subject::new(host, capabilities, scratch)
    }

    /// Links made on this machine's filesystem (local hosts, and servers
    /// that share it).
    pub fn with_local_symlinks(mut self) -> Self {
        self.symlink = Some(Box::new(|target, link| {
            std::os::unix::fs::symlink(target, link).unwrap_or_else(|e| panic!("symlink {link}: {e}"));
        }));
        self
    }

    /// The command transport, or `None` after checking that a scheme which
    /// declares no `exec` refuses with [`ErrorKind::Unsupported`].
    pub async fn transport(&self) -> Option<Arc<dyn Transport>> {
        let result = self.host.transport().await;
        if self.capabilities.exec {
            return Some(result.unwrap_or_else(|e| panic!("the scheme declares exec, yet: {e}")));
        }
        assert_unsupported("exec", result.map(drop));
        None
    }

    /// The file transport, or `None` after checking the refusal of a scheme
    /// that declares no `files`.
    pub async fn files(&self) -> Option<Arc<dyn FileTransfer>> {
        let result = self.host.files().await;
        if self.capabilities.files {
            return Some(result.unwrap_or_else(|e| panic!("the scheme declares files, yet: {e}")));
        }
        assert_unsupported("files", result.map(drop));
        None
    }

    /// The tunnel and its services, or `None` after checking the refusal of
    /// a scheme that declares no `tunnel`. Also `None` for a subject that
    /// has no services to reach (behind jump hosts, where the far end is
    /// another network): its tunnel is proved by tests of its own.
    pub async fn tunnel(&self) -> Option<(Arc<dyn Tunnel>, Arc<dyn Services>)> {
        let result = self.host.tunnel().await;
        if self.capabilities.tunnel {
            let tunnel = result.unwrap_or_else(|e| panic!("the scheme declares tunnel, yet: {e}"));
            return Some((tunnel, self.services.clone()?));
        }
        assert_unsupported("tunnel", result.map(drop));
        None
    }
}

/// Panics unless `result` is an [`ErrorKind::Unsupported`] error.
pub fn assert_unsupported(what: &str, result: crate::Result<()>) {
    match result {
        Ok(()) => panic!("{what} is not declared, yet it worked: it must answer Unsupported"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported, "{what} is not declared, so: {e}"),
    }
}

/// A service a tunnel check connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Echoes every byte until the client half-closes, then half-closes too
    /// ([`echo_service`]).
    Echo,
    /// Sends [`GREETING`] and half-closes at once, then reads what the client
    /// sends until it half-closes and records it ([`greeter_service`]).
    Greeter,
}

/// What the [`ServiceKind::Greeter`] says before it half-closes.
pub const GREETING: &[u8] = b"tether greeting, then EOF\n";

/// Services reachable through a subject's tunnel.
#[async_trait]
pub trait Services: Send + Sync {
    /// Starts a service of `kind` and gives the host and port to reach it
    /// at, as the tunnelling host sees it. What a greeter receives arrives
    /// on the returned channel, one message per connection.
    async fn start(&self, kind: ServiceKind) -> ServiceAddress;

    /// A host and port where nothing listens, as the tunnelling host sees it.
    async fn closed_port(&self) -> (String, u16);
}

/// Where a started service listens, and what its greeters received.
#[derive(Debug)]
pub struct ServiceAddress {
    /// The host to ask the tunnel for.
    pub host: String,
    /// The port.
    pub port: u16,
    /// One message per greeter connection: what the client sent.
    pub received: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
}

/// Serves one connection of `kind`; `received` gets a greeter's input.
pub async fn serve<S>(kind: ServiceKind, stream: S, received: tokio::sync::mpsc::UnboundedSender<Vec<u8>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match kind {
        ServiceKind::Echo => echo_service(stream).await,
        ServiceKind::Greeter => {
            if let Some(data) = greeter_service(stream).await {
                let _ = received.send(data);
            }
        }
    }
}

/// Echoes until the client half-closes, then half-closes its own side.
pub async fn echo_service<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if writer.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = writer.shutdown().await;
    // Keep the read side until the client is done with the connection.
    let _ = reader.read(&mut buf).await;
}

/// Sends [`GREETING`], half-closes, then reads to EOF: what the client sent
/// after the server's half-close (`None` if the connection broke).
pub async fn greeter_service<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut reader, mut writer) = tokio::io::split(stream);
    writer.write_all(GREETING).await.ok()?;
    writer.shutdown().await.ok()?;
    let mut data = Vec::new();
    reader.read_to_end(&mut data).await.ok()?;
    Some(data)
}

/// [`Services`] on this machine's loopback, for transports whose tunnel
/// starts on this machine (`local`, SSH to a server here): each service is
/// a listener on `127.0.0.1` in this process, stopped when this is dropped.
#[derive(Debug, Default)]
pub struct LoopbackServices {
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[async_trait]
impl Services for LoopbackServices {
    async fn start(&self, kind: ServiceKind) -> ServiceAddress {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback service");
        let port = listener.local_addr().expect("a bound address").port();
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(kind, stream, sender.clone()));
            }
        });
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        ServiceAddress { host: "127.0.0.1".to_string(), port, received }
    }

    async fn closed_port(&self) -> (String, u16) {
        // Bound, then closed: nothing listens there now, and nothing else
        // is likely to take it within the check.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        drop(listener);
        ("127.0.0.1".to_string(), port)
    }
}

impl Drop for LoopbackServices {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// [`Services`] of a [`MemoryHost`](crate::memory::MemoryHost): each
/// service is registered on the host under `services.internal`.
#[derive(Debug)]
pub struct MemoryServices {
    host: crate::memory::MemoryHost,
    next_port: std::sync::atomic::AtomicU16,
}

impl MemoryServices {
    /// Services on `host`.
    pub fn new(host: crate::memory::MemoryHost) -> Self {
        MemoryServices { host, next_port: std::sync::atomic::AtomicU16::new(1000) }
    }
}

#[async_trait]
impl Services for MemoryServices {
    async fn start(&self, kind: ServiceKind) -> ServiceAddress {
        let port = self.next_port.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        self.host.serve("services.internal", port, move |stream| serve(kind, stream, sender.clone()));
        ServiceAddress { host: "services.internal".to_string(), port, received }
    }

    async fn closed_port(&self) -> (String, u16) {
        ("services.internal".to_string(), 1)
    }
}

/// A subject on a fresh `mem` host, reached as `mem://NAME` through
/// `factory`: a scratch directory, in-memory services, links, and a
/// network that can drop. What `mem` and the suite's own mutant test run.
pub async fn memory_subject(factory: Arc<dyn crate::ConnectionFactory>) -> Subject {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!("conformance-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let memory = crate::memory::MemoryHost::named(&name);
    FileTransfer::mkdir(&memory, Path::new("/scratch"), false).await.expect("a scratch directory in memory");
    let mut config = crate::HostConfig::new(name.clone(), "mem", "mem");
    config.address = Some(name);
    let host = Arc::new(Host::with_factory(config, factory));
    let mut subject = Subject::of_host(host, "/scratch");
    subject.services = Some(Arc::new(MemoryServices::new(memory.clone())));
    let (sever, link) = (memory.clone(), memory.clone());
    subject.sever = Some(Box::new(move || sever.drop_connections()));
    subject.symlink = Some(Box::new(move |target, path| link.symlink(target, path)));
    subject.files_in_memory = true;
    subject.guard = Box::new(memory);
    subject
}

/// A stream opened through a subject's tunnel, with a time limit so a
/// broken tunnel fails the check instead of hanging it.
pub async fn open_stream(tunnel: &dyn Tunnel, host: &str, port: u16) -> BoxStream {
    match tokio::time::timeout(STEP_LIMIT, tunnel.open_stream(host, port)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => panic!("open_stream {host}:{port}: {e}"),
        Err(_) => panic!("open_stream {host}:{port} did not answer within {STEP_LIMIT:?}"),
    }
}

/// The longest one step of a check may take before the check fails as
/// hung (a stream that never ends, a process that never exits).
pub const STEP_LIMIT: Duration = Duration::from_secs(60);

/// Awaits `future` for at most [`STEP_LIMIT`], failing the check with `what`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_limit(what, STEP_LIMIT, future).await
}

/// Awaits `future` for at most `limit`, failing the check with `what`.
pub async fn within_limit<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {limit:?}"),
    }
}

/// A boxed, sendable future (what a check's runner awaits).
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// How a check run by [`run_checks`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `area::check`.
    pub check: &'static str,
    /// The panic message.
    pub message: String,
}

/// Runs the checks named in `names` (all of [`CHECKS`] when empty), each
/// against a fresh subject from `make` in its own task, and returns those
/// that failed. With `stop_at_first`, it returns after the first failure.
pub async fn run_checks<F, Fut>(make: F, names: &[&str], stop_at_first: bool) -> Vec<Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Subject> + Send + 'static,
{
    let mut failures = Vec::new();
    for check in CHECKS.iter().filter(|c| names.is_empty() || names.contains(c)) {
        let subject = make();
        let name = *check;
        let task = tokio::spawn(async move {
            let subject = subject.await;
            run_check(name, &subject).await;
        });
        if let Err(err) = task.await {
            let message = match err.try_into_panic() {
                Ok(payload) => panic_message(payload),
                Err(err) => err.to_string(),
            };
            failures.push(Failure { check: name, message });
            if stop_at_first {
                break;
            }
        }
    }
    failures
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "a panic".to_string(), |s| s.to_string()),
    }
}

/// Serialises the checks that hold or measure a lot of memory, so one does
/// not see another's allocations.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The every-check list, written once: it makes [`CHECKS`], [`run_check`]'s
/// dispatch and the tests of [`conformance!`](crate::conformance!).
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($then:ident ! ($($prefix:tt)*)) => {
        $crate::$then! { ($($prefix)*)
            exec: exit_codes, signals_reported, stdout_and_stderr_apart, interleaved_output_kept_apart,
                binary_output_kept, argv_is_not_reinterpreted, hostile_argv_words, byte_argv_words, large_output,
                large_output_streamed, stdin_fed, stdin_streamed, stdin_closed_early, env_passed,
                cwd_applied, cwd_with_spaces, timeout_kills, kill_ends_the_process, check_fails_with_output,
                missing_program, concurrent_commands, user_switch_declared, shell_declared, lost_connection_fails_pending;
            files: round_trip_empty, round_trip_one_byte, round_trip_100_mib, mode_kept, overwrite_keeps_mode,
                mtime_kept, owner_kept, stat_describes, stat_sha512, stat_links, missing_path_not_found,
                put_into_missing_dir_fails, failed_put_keeps_destination, short_put_keeps_destination,
                abandoned_put_leaves_nothing, directories, nested_mkdir, rename_replaces, remove_non_empty_dir,
                hostile_names, byte_names, long_and_unicode_names, large_file_streams;
            tunnel: echo_through_stream, echo_through_forwarded_port, client_half_close, server_half_close,
                concurrent_streams, refused_port_is_an_error;
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_registry {
    (() $($area:ident: $($check:ident),* ;)*) => {
        /// Every check, as `area::check`, in the order [`run_checks`] runs them.
        pub const CHECKS: &[&str] = &[$($(concat!(stringify!($area), "::", stringify!($check))),*),*];

        /// Runs the check `name` (`area::check`) against `subject`; panics
        /// with the check's message when the transport fails it.
        pub async fn run_check(name: &str, subject: &Subject) {
            match name {
                $($(concat!(stringify!($area), "::", stringify!($check)) => $area::$check(subject).await,)*)*
                other => panic!("no conformance check is called `{other}` (see CHECKS)"),
            }
        }
    };
}

__for_each_check!(__check_registry!());

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (($make:path) $($area:ident: $($check:ident),* ;)*) => {
        $(
            mod $area {
                $(
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $check() {
                        let subject = $make().await;
                        $crate::conformance::run_check(
                            concat!(stringify!($area), "::", stringify!($check)),
                            &subject,
                        ).await;
                    }
                )*
            }
        )*
    };
}

/// Generates one `#[tokio::test]` per conformance check, each calling
/// `$make().await` for a fresh [`Subject`]. `$make` is a path from the
/// calling module (`subject`, `super::subject`).
#[macro_export]
macro_rules! conformance {
    ($make:ident) => {
        mod conformance {
            $crate::__for_each_check!(__conformance_tests!(super::super::$make));
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_file_tests {
    (($make:path) exec: $($exec:ident),* ; files: $($check:ident),* ; tunnel: $($tunnel:ident),* ;) => {
        mod files {
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let subject = $make().await;
                    $crate::conformance::run_check(concat!("files::", stringify!($check)), &subject).await;
                }
            )*
        }
    };
}

/// [`conformance!`](crate::conformance!)'s file checks only, for a scheme
/// that moves files over another scheme's commands (`nc`, `shellfs` with a
/// separate `term`): the host's `term` answers for commands and tunnels,
/// and is tested under its own name.
#[macro_export]
macro_rules! conformance_files {
    ($make:ident) => {
        mod conformance {
            $crate::__for_each_check!(__conformance_file_tests!(super::super::$make));
        }
    };
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
    sent: usize,
}

impl tokio::io::AsyncRead for StalledSource {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (1000 - self.sent).min(buf.remaining());
        if n == 0 {
            return std::task::Poll::Pending;
        }
        self.sent += n;
        buf.put_slice(&[b'x'; 1000][..n]);
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
