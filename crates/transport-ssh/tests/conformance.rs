//! The conformance suite against a real OpenSSH sshd, for each of the three
//! schemes on one SSH connection: `ssh` (commands, terminals, tunnels), and
//! `sftp` and `scp` (files), each held to exactly what it declares.

mod common;

mod ssh {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::subject("ssh").await
    }
    tether_core::conformance!(subject);
}

mod sftp {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::subject("sftp").await
    }
    tether_core::conformance!(subject);
}

mod scp {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::subject("scp").await
    }
    tether_core::conformance!(subject);
}
