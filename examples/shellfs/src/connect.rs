//! The plugin's connect function: open the inner command transport through
//! the registry, then put [`ShellFiles`] on top of it.

use std::sync::Arc;

use async_trait::async_trait;
use tether_core::{
    BoxFuture, ConnectRequest, Connection, Error, ErrorKind, FileTransfer, HostConfig, Registry, Result, Transport,
};

use crate::options::{OPTIONS_TABLE, ShellFsOptions};
use tether_core::shell_files::ShellFiles;

/// A `shellfs` connection: the inner transport's connection plus the files
/// moved over it.
#[derive(Debug)]
struct ShellFsConnection {
    inner: Arc<dyn Connection>,
    files: Arc<ShellFiles>,
}

#[async_trait]
impl Connection for ShellFsConnection {
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        self.inner.transport()
    }

    async fn file_transfer(&self, _scheme: &str) -> Result<Arc<dyn FileTransfer>> {
        Ok(self.files.clone())
    }

    fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

pub(crate) fn connect(request: ConnectRequest) -> BoxFuture<'static, Result<Arc<dyn Connection>>> {
    Box::pin(async move {
        let options: ShellFsOptions = request.host.options.table(OPTIONS_TABLE)?;
        let inner = connect_inner(&request.host, &options.inner).await?;
        let Some(transport) = inner.transport() else {
            let _ = inner.close().await;
            return Err(Error::new(ErrorKind::InvalidConfig, "connect")
                .with_context(format!("{OPTIONS_TABLE}.inner: scheme `{}` gave no command transport", options.inner)));
        };
        let files = Arc::new(ShellFiles::new(transport));
        Ok(Arc::new(ShellFsConnection { inner, files }) as Arc<dyn Connection>)
    })
}

/// Connects the command transport `scheme` to the same host, the way the
/// host's own `term` would be connected.
///
/// The plugin only sees the global registry (a connect function gets no
/// other), so the inner scheme must be linked into the program.
async fn connect_inner(host: &HostConfig, scheme: &str) -> Result<Arc<dyn Connection>> {
    let invalid = |why: String| {
        Error::new(ErrorKind::InvalidConfig, "connect").with_context(format!("{OPTIONS_TABLE}.inner: {why}"))
    };
    if scheme == crate::PLUGIN.scheme {
        return Err(invalid(format!("`{scheme}` cannot run its own commands")));
    }
    let plugin = Registry::global()?.get(scheme)?;
    if !plugin.capabilities.exec {
        return Err(invalid(format!("scheme `{scheme}` runs no commands")));
    }
    if let Some(spec) = &plugin.options {
        spec.validate(&host.options)?;
    }
    // Same address, credentials and options: only the schemes change, so the
    // inner plugin sees the host as if it were its `term`.
    let mut config = host.clone();
    config.term = plugin.scheme.to_string();
    config.transfer = plugin.scheme.to_string();
    (plugin.connect)(ConnectRequest::direct(Arc::new(config), plugin.scheme)).await
}
