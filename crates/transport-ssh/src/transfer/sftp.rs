//! The `sftp` scheme: [`FileTransfer`] over the SFTP subsystem.

use std::sync::Arc;

use tether_core::{Error, ErrorKind, FileTransfer, Result};

use crate::connect::SshSession;
use crate::options::SftpOptions;

/// Opens the SFTP subsystem on a channel of `session`.
pub(crate) async fn open(session: Arc<SshSession>, options: SftpOptions) -> Result<Arc<dyn FileTransfer>> {
    let _ = (session, options);
    Err(Error::new(ErrorKind::Unsupported, "open sftp").with_context("SFTP is not implemented yet"))
}
