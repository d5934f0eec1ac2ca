//! What every kind of channel shares: waiting for the server's answer to a
//! request (`env`, `pty-req`, `exec`, `subsystem`), and the byte stream over
//! a channel ([`ChannelStream`]).

use std::future::Future;

use russh::ChannelMsg;
use russh::client::Msg;
use tether_core::{Error, Result};

mod stream;

pub(crate) use stream::ChannelStream;

/// Where a channel's messages come from: a whole channel, or its read half.
pub(crate) trait Messages: Send {
    /// The next message; `None` once the channel is gone.
    fn next_message(&mut self) -> impl Future<Output = Option<ChannelMsg>> + Send;
}

impl Messages for russh::Channel<Msg> {
    async fn next_message(&mut self) -> Option<ChannelMsg> {
        self.wait().await
    }
}

impl Messages for russh::ChannelReadHalf {
    async fn next_message(&mut self) -> Option<ChannelMsg> {
        self.wait().await
    }
}

/// The server's answer to the last request sent with want-reply: `true` for
/// success, `false` for failure. Whatever arrives first is kept in `early`
/// in order (a command's output may come before the answer to its `exec`),
/// and `gone` is the error when the channel closes before any answer.
pub(crate) async fn reply(
    messages: &mut impl Messages,
    early: &mut Vec<ChannelMsg>,
    gone: impl FnOnce() -> Error,
) -> Result<bool> {
    loop {
        match messages.next_message().await {
            Some(ChannelMsg::Success) => return Ok(true),
            Some(ChannelMsg::Failure) => return Ok(false),
            Some(other) => early.push(other),
            None => return Err(gone()),
        }
    }
}
