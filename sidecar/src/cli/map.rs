// SPDX-License-Identifier: Apache-2.0
//! `linkguard map`.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum MapCommand {}

pub fn run(cmd: MapCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
