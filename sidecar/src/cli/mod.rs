// SPDX-License-Identifier: Apache-2.0
//! Subcommands of the linkguard binary. Each module defines its clap arguments and a `run` function
//! returning the process exit code; the library does the work.

pub mod attest;
pub mod map;
pub mod observe;
pub mod verify;

use std::process::ExitCode;

/// Exit code for a passing verdict or a successful command.
pub const EXIT_OK: ExitCode = ExitCode::SUCCESS;
/// Exit code for a failing verdict (the input was fine, the evidence was not).
pub const EXIT_FAIL: ExitCode = ExitCode::FAILURE;
/// Exit code for bad input: unreadable or malformed files, bad flags, bad keys.
pub fn exit_bad_input() -> ExitCode {
    ExitCode::from(2)
}
