//! `mem`: an in-memory host for testing code that uses Tether with no server.
//!
//! A [`MemoryHost`] has a filesystem, scripted command handlers (canned
//! outputs or closures, every call recorded) and in-memory network services
//! for its tunnel. Hosts are shared by name, so `mem://dut` in a URL or an
//! inventory reaches the same host a test scripted with
//! [`MemoryHost::named`].
//!
//! ```
//! # tokio_test_main(async {
//! use tether_core::{Command, Output, ExitStatus, Transport, memory::MemoryHost};
//! let dut = MemoryHost::new();
//! dut.respond("uname -r", Output { stdout: b"6.1.0\n".to_vec(), stderr: vec![], status: ExitStatus::Code(0) });
//! let out = dut.exec(&Command::argv(["uname", "-r"])).await.unwrap();
//! assert_eq!(out.stdout, b"6.1.0\n");
//! assert_eq!(dut.calls()[0].line, "uname -r");
//! # });
//! # fn tokio_test_main(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

mod exec;
mod fs;
mod shell;
mod tunnel;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;

pub use exec::{Call, Handler};
pub use tunnel::Service;

use crate::connection::ConnectRequest;
use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{BoxFuture, Capabilities, Plugin};

/// The state every handle of one named host shares.
#[derive(Default)]
struct Shared {
    fs: Mutex<fs::Tree>,
    handlers: Mutex<Vec<(exec::Matcher, Handler)>>,
    calls: Mutex<Vec<Call>>,
    services: Mutex<HashMap<(String, u16), Service>>,
    /// Bumped by [`MemoryHost::drop_connections`]: handles of an older
    /// generation are dead.
    generation: AtomicU64,
    /// Tells running commands that the network dropped, so they fail at once.
    dropped: tokio::sync::Notify,
    /// Running commands by process id, each with the channel its signal
    /// arrives on (`kill PID` from another command, or `Process::kill`).
    processes: Mutex<HashMap<u32, tokio::sync::mpsc::UnboundedSender<&'static str>>>,
    /// The last process id handed out.
    last_pid: AtomicU32,
}

/// An in-memory host; clones share everything. See the [module docs](self).
#[derive(Clone)]
pub struct MemoryHost {
    name: String,
    shared: Arc<Shared>,
    generation: u64,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for MemoryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHost").field("name", &self.name).field("alive", &self.is_alive()).finish()
    }
}

fn named_hosts() -> &'static Mutex<BTreeMap<String, Arc<Shared>>> {
    static HOSTS: OnceLock<Mutex<BTreeMap<String, Arc<Shared>>>> = OnceLock::new();
    HOSTS.get_or_init(Default::default)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked must not wedge every later test: take the data as is.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for MemoryHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryHost {
    /// A fresh host nobody else can reach by name.
    pub fn new() -> Self {
        Self::from_shared("anonymous".into(), Arc::new(Shared::default()))
    }

    /// The process-wide host called `name`, created empty on first use.
    pub fn named(name: &str) -> Self {
        let shared = lock(named_hosts()).entry(name.to_string()).or_default().clone();
        Self::from_shared(name.to_string(), shared)
    }

    fn from_shared(name: String, shared: Arc<Shared>) -> Self {
        let generation = shared.generation.load(Ordering::SeqCst);
        MemoryHost { name, shared, generation, closed: Arc::new(AtomicBool::new(false)) }
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection handle to the same host (what `mem://name` connects give).
    pub fn connect(&self) -> MemoryHost {
        Self::from_shared(self.name.clone(), self.shared.clone())
    }

    /// Simulates a dropped network: every handle open so far fails with
    /// [`ErrorKind::ConnectionLost`] and reports itself dead; new handles work.
    pub fn drop_connections(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.dropped.notify_waiters();
    }

    /// Sends `signal` (`KILL`, `TERM`, … or `0` to only ask) to the running
    /// command `pid`; false when there is no such process.
    pub(crate) fn signal(&self, pid: u32, signal: &'static str) -> bool {
        let processes = lock(&self.shared.processes);
        match processes.get(&pid) {
            Some(_) if signal == "0" => true,
            Some(sender) => sender.send(signal).is_ok(),
            None => false,
        }
    }

    /// False once closed or dropped.
    pub fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.generation == self.shared.generation.load(Ordering::SeqCst)
    }

    fn ensure_alive(&self, operation: &str) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::ConnectionLost, operation).with_context("connection closed"));
        }
        if !self.is_alive() {
            return Err(Error::new(ErrorKind::ConnectionLost, operation).with_context("connection dropped"));
        }
        Ok(())
    }
}

#[async_trait]
impl Connection for MemoryHost {
    fn transport(&self) -> Option<Arc<dyn crate::Transport>> {
        Some(Arc::new(self.clone()))
    }
    async fn file_transfer(&self, _scheme: &str) -> Result<Arc<dyn crate::FileTransfer>> {
        Ok(Arc::new(self.clone()))
    }
    fn tunnel(&self) -> Option<Arc<dyn crate::Tunnel>> {
        Some(Arc::new(self.clone()))
    }
    fn is_alive(&self) -> bool {
        MemoryHost::is_alive(self)
    }
    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
    Box::pin(async move {
        let name = request.host.address.clone().unwrap_or_else(|| request.host.id.clone());
        Ok(Arc::new(MemoryHost::named(&name).connect()) as Arc<dyn Connection>)
    })
}

/// The `mem` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin::new("mem", connect)
    .with_description("in-memory host for tests: scripted commands, a memory filesystem, in-process services")
    .with_capabilities(Capabilities::NONE.with_exec().with_files().with_tunnel());

inventory::submit!(PLUGIN);
