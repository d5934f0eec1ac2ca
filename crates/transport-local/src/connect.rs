//! The plugin's connect function and [`LocalHost`], the one value behind the
//! transport, the file transfer and the tunnel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tether_core::{BoxFuture, ConnectRequest, Connection, Error, ErrorKind, FileTransfer, Result, Transport, Tunnel};

use crate::options::{LocalOptions, TABLE};

/// This machine as a host: implements [`Transport`](tether_core::Transport),
/// [`FileTransfer`](tether_core::FileTransfer) and
/// [`Tunnel`](tether_core::Tunnel).
#[derive(Debug)]
pub struct LocalHost {
    pub(crate) options: LocalOptions,
    closed: AtomicBool,
}

impl LocalHost {
    /// A local host with these options. Invalid option values surface as
    /// errors of the operations that use them.
    pub fn new(options: LocalOptions) -> Self {
        LocalHost { options, closed: AtomicBool::new(false) }
    }

    /// The options in use.
    pub fn options(&self) -> &LocalOptions {
        &self.options
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Fails once `close` was called, as the traits promise.
    pub(crate) fn ensure_open(&self, operation: &str) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::ConnectionLost, operation).with_context("local host was closed"));
        }
        Ok(())
    }

    /// The connection the registry hands out: this host for every capability.
    pub fn into_connection(self: Arc<Self>) -> Arc<dyn Connection> {
        Arc::new(LocalConnection { host: self })
    }
}

impl Default for LocalHost {
    fn default() -> Self {
        LocalHost::new(LocalOptions::default())
    }
}

/// The connection of a [`LocalHost`]: it for every capability; closing it
/// makes every handle refuse work.
#[derive(Debug)]
struct LocalConnection {
    host: Arc<LocalHost>,
}

#[async_trait]
impl Connection for LocalConnection {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(self.host.clone())
    }

    async fn file_transfer(&self, _scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        Ok(self.host.clone())
    }

    fn tunnel(&self) -> Option<Arc<dyn Tunnel>> {
        Some(self.host.clone())
    }

    fn is_alive(&self) -> bool {
        !self.host.closed.load(Ordering::SeqCst)
    }

    async fn close(&self) -> Result<()> {
        self.host.mark_closed();
        Ok(())
    }
}

/// A shared [`LocalHost`], for tests, benchmarks and programs that use the
/// local machine without going through the registry.
pub fn local_host(options: LocalOptions) -> Arc<LocalHost> {
    Arc::new(LocalHost::new(options))
}

pub(crate) fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
    Box::pin(async move {
        let options: LocalOptions = request.host.options.table(TABLE)?;
        options.checked()?;
        Ok(local_host(options).into_connection())
    })
}
