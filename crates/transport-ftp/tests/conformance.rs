//! The conformance suite against a real vsftpd, plain and with explicit
//! FTPS: `ftp` declares files only, so its exec and tunnel checks pass by
//! refusing, and every file check (hostile names included) must pass.
//! ProFTPD runs the file checks in `proftpd.rs`.

mod common;

mod plain {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::subject(false).await
    }
    tether_core::conformance!(subject);
}

mod ftps {
    async fn subject() -> tether_core::conformance::Subject {
        super::common::subject(true).await
    }
    tether_core::conformance!(subject);
}
