//! The conformance suite's file checks (hostile and byte names included)
//! against `nc` over two terms: `local`, and `ssh` to a private OpenSSH
//! sshd on loopback. Each term is held to the whole suite in its own crate.

mod common;

mod over_local {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::local_subject(&[]).await
    }
    tether_core::conformance_files!(subject);
}

mod over_ssh {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::ssh_subject(&[]).await
    }
    tether_core::conformance_files!(subject);
}

mod busybox_over_ssh {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::ssh_subject(&[("exec_name", "busybox nc".into())]).await
    }
    tether_core::conformance_files!(subject);
}
