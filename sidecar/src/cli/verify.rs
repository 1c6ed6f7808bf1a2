// SPDX-License-Identifier: Apache-2.0
//! `linkguard verify`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}

pub fn run(_args: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
