//! In-process network services reachable through a [`MemoryHost`]'s tunnel.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::DuplexStream;

use super::{MemoryHost, lock};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::BoxFuture;
use crate::tunnel::{BoxStream, Tunnel};

/// Serves one connection to an in-memory service.
pub type Service = Arc<dyn Fn(DuplexStream) -> BoxFuture<'static, ()> + Send + Sync>;

impl MemoryHost {
    /// Makes `host:port` reachable through this host's tunnel; each
    /// connection is handed to `serve` as one end of an in-memory pipe.
    pub fn serve<F>(&self, host: &str, port: u16, serve: impl Fn(DuplexStream) -> F + Send + Sync + 'static)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let service: Service = Arc::new(move |stream| Box::pin(serve(stream)));
        lock(&self.shared.services).insert((host.to_string(), port), service);
    }
}

#[async_trait]
impl Tunnel for MemoryHost {
    async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream> {
        self.ensure_alive("open_stream")?;
        let service = lock(&self.shared.services).get(&(host.to_string(), port)).cloned().ok_or_else(|| {
            Error::new(ErrorKind::ConnectFailed, "open_stream")
                .with_context(format!("{host}:{port}: connection refused"))
        })?;
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        tokio::spawn(service(theirs));
        Ok(Box::new(ours))
    }
}
