//! The `scp` scheme: [`FileTransfer`] speaking the scp protocol to a remote
//! `scp -t` (put) or `scp -f` (get).

use std::sync::Arc;

use tether_core::{Error, ErrorKind, FileTransfer, Result};

use crate::connect::SshSession;
use crate::options::ScpOptions;

/// The scp file transport on `session`.
pub(crate) fn open(session: Arc<SshSession>, options: ScpOptions) -> Result<Arc<dyn FileTransfer>> {
    let _ = (session, options);
    Err(Error::new(ErrorKind::Unsupported, "open scp").with_context("SCP is not implemented yet"))
}
