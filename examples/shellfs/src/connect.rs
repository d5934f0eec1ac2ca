//! The plugin's connect function: borrow the host's own command transport,
//! then put [`ShellFiles`] on top of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tether_core::raw::shell_files::ShellFiles;
use tether_core::{
    BoxFuture, Command, ConnectRequest, Connection, Error, ErrorKind, FileTransfer, Output, Process, Result, Transport,
};

use crate::options::{OPTIONS_TABLE, ShellFsOptions};

/// A `shellfs` connection: the host's command connection it borrows, plus
/// the files moved over it.
#[derive(Debug)]
struct ShellFsConnection {
    /// The host's own connection (its `term`, or `shellfs_options.inner`):
    /// the host owns and closes it, this only keeps it alive.
    inner: Arc<dyn Connection>,
    files: Arc<ShellFiles>,
    closed: AtomicBool,
}

#[async_trait]
impl Connection for ShellFsConnection {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        let inner = self.inner.transport()?;
        Some(Arc::new(Commands { inner }))
    }

    async fn file_transfer(&self, _scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::ConnectionLost, "open file transfer").with_context("shellfs is closed"));
        }
        Ok(self.files.clone())
    }

    /// Dead with the connection it borrows: the host then opens both anew.
    fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.inner.is_alive()
    }

    /// Closes only what shellfs opened, which is nothing on the wire: the
    /// borrowed connection is the host's, and other users may share it.
    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// The borrowed command transport, held to what `shellfs` declares: plain
/// commands, no terminals and no other users (the scheme that lends it may
/// offer those under its own name).
#[derive(Debug)]
struct Commands {
    inner: Arc<dyn Transport>,
}

#[async_trait]
impl Transport for Commands {
    async fn exec(&self, command: &Command) -> Result<Output> {
        as_login_only(command)?;
        self.inner.exec(command).await
    }

    async fn spawn(&self, command: &Command) -> Result<Process> {
        as_login_only(command)?;
        self.inner.spawn(command).await
    }
}

fn as_login_only(command: &Command) -> Result<()> {
    if command.user.is_some() || command.group.is_some() {
        return Err(Error::new(ErrorKind::Unsupported, "exec")
            .with_context("shellfs runs commands as the login only; use the lending scheme as `term`"));
    }
    Ok(())
}

pub(crate) fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
    Box::pin(async move {
        let options: ShellFsOptions = request.host.options.table(OPTIONS_TABLE)?;
        let scheme = options.inner.unwrap_or_else(|| request.host.term.clone());
        // The host's own connection of that scheme: the same one its `term`
        // uses, through the same hops, never a second one.
        let inner = request.connections.connection(&scheme).await?;
        let Some(transport) = inner.transport() else {
            return Err(Error::new(ErrorKind::InvalidConfig, "connect")
                .with_context(format!("{OPTIONS_TABLE}.inner: scheme `{scheme}` runs no commands")));
        };
        let files = Arc::new(ShellFiles::new(transport));
        Ok(Arc::new(ShellFsConnection { inner, files, closed: AtomicBool::new(false) }) as Arc<dyn Connection>)
    })
}
