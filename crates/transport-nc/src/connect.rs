//! The plugin's connect function: borrow the host's command connection
//! (its `term`), and reach the host's address the way the host is reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tether_core::{BoxFuture, ConnectRequest, Connection, Error, ErrorKind, FileTransfer, Result};

use crate::options::{NcOptions, TABLE};
use crate::transfer::NcFiles;

/// An `nc` connection: the host's command connection it borrows, and the
/// files moved with it. It opens nothing on the wire itself; each transfer
/// opens (and closes) its own data connection.
#[derive(Debug)]
pub struct NcConnection {
    /// The host's own connection of its `term`: the host owns and closes it.
    inner: Arc<dyn Connection>,
    files: Arc<NcFiles>,
    closed: AtomicBool,
}

#[async_trait]
impl Connection for NcConnection {
    async fn file_transfer(&self, _scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::ConnectionLost, "open file transfer").with_context("nc is closed"));
        }
        Ok(self.files.clone())
    }

    /// Dead with the connection it borrows: the host then opens both anew.
    fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.inner.is_alive()
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

pub(crate) fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
    Box::pin(async move {
        let options: NcOptions = request.host.options.table(TABLE)?;
        let term = request.host.term.clone();
        // The very connection the host's commands use, through the same hops.
        let inner = request.connections.connection(&term).await?;
        let Some(transport) = inner.transport() else {
            return Err(Error::new(ErrorKind::InvalidConfig, "connect")
                .with_context(format!("nc drives the host through its term, and `{term}` runs no commands")));
        };
        // A host without an address is this machine (`local`).
        let address = request.host.address.clone().unwrap_or_else(|| "127.0.0.1".to_string());
        let files = NcFiles::new(transport, options, request.dialer.clone(), address);
        Ok(Arc::new(NcConnection { inner, files: Arc::new(files), closed: AtomicBool::new(false) })
            as Arc<dyn Connection>)
    })
}
