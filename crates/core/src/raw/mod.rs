//! Helpers for transport authors, apart from the API a user of the library
//! needs: what a plugin crate uses to implement the traits well (streaming
//! in even chunks, atomic puts through a temporary sibling, mapping I/O
//! errors, checking option values, files over a POSIX shell).
//!
//! The plugin API itself ([`Plugin`](crate::Plugin),
//! [`ConnectRequest`](crate::ConnectRequest), the traits) is at the crate
//! root; these are the tools around it.

pub mod shell_files;

pub use crate::config::{did_you_mean, invalid_option, is_secret_key};
pub use crate::error::kind_of_io;
pub use crate::files::{check_expected_size, read_full, temporary_sibling, utf8_path};
pub use crate::process::exec_with_process;
pub use crate::registry::{optional_seconds, positive_seconds};
pub use crate::tunnel::{accept, relay};
