// SPDX-License-Identifier: Apache-2.0
//! `linkguard doctor`: can probing work here, and if not, what to change. The checks are in
//! [`linkguard::doctor`] (which documents the JSON output).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use linkguard::doctor::{render_text, run_checks};

use super::{EXIT_FAIL, EXIT_OK};

/// `linkguard doctor [--format text|json]`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks the kernel (uprobe.multi, BPF cookies, BTF, pid namespace helper), the capabilities this \
                  process holds against those it needs, and attaches a real uprobe to a function of this binary.\n\n\
                  Exit status: 0 probing can work (warnings aside), 1 it cannot (the fix is printed), 2 bad flags."
)]
pub struct DoctorArgs {
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// An aligned table, then the fixes.
    Text,
    /// One JSON object (documented in the `linkguard::doctor` module).
    Json,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    // Runs on the main thread: the test attach's pid-scoped link then counts on every kernel (see
    // linkguard::doctor).
    let report = run_checks();
    let text = match args.format {
        Format::Text => render_text(&report),
        Format::Json => report.to_json(),
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) does not change the verdict, which is the exit code.
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e).context("cannot write to stdout");
    }
    Ok(if report.can_probe { EXIT_OK } else { EXIT_FAIL })
}
