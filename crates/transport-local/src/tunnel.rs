//! TCP connections from this machine.

use async_trait::async_trait;
use tether_core::{BoxStream, Error, ErrorKind, Result, Tunnel};
use tokio::net::TcpStream;

use crate::connect::LocalHost;

#[async_trait]
impl Tunnel for LocalHost {
    async fn open_stream(&self, host: &str, port: u16) -> Result<BoxStream> {
        self.ensure_open("open_stream")?;
        let limit = self.options.connect_timeout()?;
        let target = format!("{host}:{port}");
        let stream = match tokio::time::timeout(limit, TcpStream::connect((host, port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(Error::io("open_stream", err).with_context(target)),
            Err(_) => {
                return Err(Error::new(ErrorKind::Timeout, "open_stream")
                    .with_context(format!("{target}: no connection within {limit:?}")));
            }
        };
        stream.set_nodelay(true).map_err(|e| Error::io("open_stream", e).with_context(target))?;
        Ok(Box::new(stream))
    }
}
