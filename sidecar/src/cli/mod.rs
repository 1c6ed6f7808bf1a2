// SPDX-License-Identifier: Apache-2.0
//! Subcommands of the linkguard binary. Each module defines its clap arguments and a `run` function
//! returning the process exit code; the library does the work.

pub mod attest;
pub mod bundle;
pub mod capabilities;
pub mod chain;
pub mod doctor;
pub mod healthcheck;
pub mod inject;
pub mod map;
pub mod mirror;
pub mod observe;
pub mod registry;
pub mod sidecar;
pub mod verify;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

/// Exit code for a passing verdict or a successful command.
pub const EXIT_OK: ExitCode = ExitCode::SUCCESS;
/// Exit code for a failing verdict (the input was fine, the evidence was not).
pub const EXIT_FAIL: ExitCode = ExitCode::FAILURE;
/// Exit code for bad input: unreadable or malformed files, bad flags, bad keys.
pub fn exit_bad_input() -> ExitCode {
    ExitCode::from(2)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so that readers see either
/// the old file or the whole new one. Without `overwrite`, an existing `path` is an error (checked
/// atomically by the final link).
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    overwrite: bool,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".linkguard-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if overwrite {
        tmp.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{} already exists: pass --force to overwrite it",
                    path.display()
                )
            } else {
                anyhow::Error::new(e.error).context(format!("writing {}", path.display()))
            }
        })?;
    }
    Ok(())
}
