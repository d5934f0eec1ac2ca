//! In-process servers for the tests that real FTP servers cannot stage: a
//! scripted server that misbehaves on cue ([`hostile`]). Every server listens
//! on 127.0.0.1, port 0.

// Each test binary uses its own part of the support code.
#![allow(dead_code)]

pub mod hostile;
