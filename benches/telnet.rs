//! The telnet benchmark: being written.
fn main() {}
