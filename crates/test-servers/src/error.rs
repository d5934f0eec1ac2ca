use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why a test server could not be prepared, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program the server needs is not installed.
    #[error("{program} not found: install it with `apt-get install {package}`")]
    MissingProgram {
        /// The program looked for, e.g. `sshd`.
        program: &'static str,
        /// The Debian package that provides it, e.g. `openssh-server`.
        package: &'static str,
    },
    /// A program that `scripts/test` provides another way than by
    /// installing its package (the package conflicts with another server's).
    #[error("{program} not found: {how}")]
    NotProvided {
        /// The program looked for, e.g. `proftpd`.
        program: &'static str,
        /// How to provide it.
        how: &'static str,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A helper program (`ssh-keygen`, `openssl`, …) exited with an error.
    #[error("{program} failed ({status}): {stderr}")]
    Helper {
        /// The program that failed.
        program: PathBuf,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The builder was given something the server cannot use.
    #[error("invalid test server setup: {0}")]
    Config(String),
    /// The network namespaces of the hop tests (`scripts/netns`) are not
    /// set up, or not completely; `detail` says what is missing.
    #[error(
        "network namespaces for the hop tests are missing: run `scripts/netns up` as root (scripts/test does this); {detail}"
    )]
    NetnsMissing {
        /// The first thing found missing, e.g. `namespace tether-hop2 does not exist`.
        detail: String,
    },
    /// The server did not come up; `log` is everything it wrote to stderr.
    #[error("the test server did not start: {reason}\n--- its stderr ---\n{log}")]
    Start {
        /// What went wrong (exited, timed out, wrong banner, …).
        reason: String,
        /// The server's stderr from the last attempt.
        log: String,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        HarnessError::Io { what: what.into(), source }
    }
}
