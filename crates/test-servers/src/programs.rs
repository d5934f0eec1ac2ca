//! Finding the distribution's programs.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// Directories searched after `PATH`: a non-root `PATH` usually lacks the
/// `sbin` directories, where `sshd` lives.
const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Finds `program` on `PATH` or in the usual system directories, or says which
/// package provides it.
pub(crate) fn find(program: &'static str, package: &'static str) -> Result<PathBuf, HarnessError> {
    let path_dirs = env::var_os("PATH").map(|p| env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs
        .iter()
        .map(PathBuf::as_path)
        .chain(FALLBACK_DIRS.iter().map(Path::new))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or(HarnessError::MissingProgram { program, package })
}

/// The first of `candidates` that is an executable file.
pub(crate) fn first_of(
    candidates: &[&str],
    program: &'static str,
    package: &'static str,
) -> Result<PathBuf, HarnessError> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|candidate| is_executable(candidate))
        .ok_or(HarnessError::MissingProgram { program, package })
}

pub(crate) fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
