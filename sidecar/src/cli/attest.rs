// SPDX-License-Identifier: Apache-2.0
//! `linkguard attest`.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum AttestCommand {}

pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
