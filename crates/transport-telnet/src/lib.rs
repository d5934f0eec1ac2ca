//! Tether's `telnet` transport: commands on a Linux or busybox `telnetd`,
//! or on an RTOS console behind a UART bridge, with real exit codes.
//!
//! A connection logs in (`login_prompt`, then the host's user and
//! password), turns the terminal's echo and output processing off, and runs
//! each command between unique markers, so the output bytes are exact and
//! the exit status is the command's own. What a terminal cannot do, it does
//! not pretend to:
//!
//! - **stderr is merged into stdout**: a terminal has one output stream.
//! - **stdin is not a stream**: the bytes of `Command::stdin` go out inside
//!   the command line; a spawned command's stdin is `None`.
//! - **death by a signal** shows as the shell's `128 + n` exit code, except
//!   after our own `kill`, which is reported as the signal it sent.
//!
//! The plugin declares these as the `terminal-io` capability.
//!
//! **Telnet sends the password in the clear.** Use it on lab networks, or
//! behind an SSH jump host (`hop`), whose tunnel carries the Telnet stream
//! encrypted up to the hop. The password never appears in logs, `Debug`
//! output or errors.
//!
//! The options are `telnet_options` ([`TelnetOptions`]).

#![deny(missing_docs)]

pub mod codec;
mod connect;
mod exec;
mod login;
pub mod negotiation;
mod options;
mod terminal;

pub use connect::{TelnetConnection, TelnetHost, connect_via};
pub use options::TelnetOptions;

use tether_core::{Capabilities, OptionsSpec, Plugin};

/// The `telnet` scheme's registry entry.
pub const PLUGIN: Plugin = Plugin::new("telnet", connect::connect)
    .with_description("Telnet: logins, prompts and exit codes on telnetd hosts and UART consoles")
    .with_capabilities(Capabilities::NONE.with_exec().with_shell().with_byte_names().with_terminal_io())
    .with_options(OptionsSpec::validated::<TelnetOptions>(options::TABLE));

tether_core::inventory::submit!(PLUGIN);
