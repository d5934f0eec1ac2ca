//! Files over the shared SSH connection: the `sftp` scheme (the SFTP
//! subsystem, pipelined) and the `scp` scheme (the scp protocol spoken to a
//! remote `scp -t` / `scp -f`).

pub(crate) mod scp;
pub(crate) mod sftp;
