// SPDX-License-Identifier: Apache-2.0
//! `linkguard verify`: observations against a function map, verdict as exit code, report as text or JSON.
//! Semantics: docs/contracts/verification.md.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use linkguard::function_map::FunctionMap;
use linkguard::report::{ReportContext, build_statement, render_text};
use linkguard::verify::{Verdict, resolve_window, verify_files};

use super::{EXIT_FAIL, EXIT_OK};

/// Exit status: 0 pass, 1 fail, 2 bad input (unreadable or malformed map or observations, bad flags).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 pass, 1 fail, 2 bad input. Semantics: docs/contracts/verification.md"
)]
pub struct VerifyArgs {
    /// The function map (JSON).
    #[arg(long, value_name = "FILE")]
    function_map: PathBuf,
    /// Observation file: NDJSON, plain or gzip (detected by content). Repeat for several files, read in
    /// the order given.
    #[arg(long = "observations", value_name = "FILE", required = true)]
    observations: Vec<PathBuf>,
    /// Start of the window (RFC 3339). Default: the end minus the map's coverage.windowSeconds.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// End of the window (RFC 3339). Default: --from plus windowSeconds, or else the latest record end.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// With --format text: list at most N paths, problems first (0 lists every path).
    #[arg(long, value_name = "N", default_value_t = 40)]
    max_rows: usize,
    /// Also write the JSON report (an in-toto Statement) to FILE, atomically.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Use local files only. This command never contacts a registry, so the flag changes nothing; it
    /// exists so that scripts can already say what they mean for the registry-aware verify to come.
    #[arg(long)]
    offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A table for people.
    Text,
    /// The report, an in-toto Statement v1 (docs/contracts/report.md).
    Json,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    linkguard::observation::parse_time(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z: {e}"))
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let map_bytes = fs::read(&args.function_map)
        .with_context(|| format!("cannot read function map {}", args.function_map.display()))?;
    let map = FunctionMap::from_slice(&map_bytes, &args.function_map.display().to_string())?;
    let map_sha256 = hex::encode(Sha256::digest(&map_bytes));

    let window = resolve_window(&map, &args.observations, args.from, args.to)?;
    let result = verify_files(&map, &args.observations, window)?;
    let statement = build_statement(&map, &map_sha256, &result, &ReportContext::now());
    let json = statement.to_json();

    if let Some(output) = &args.output {
        super::write_atomically(output, &json, 0o644, true).context("cannot write the report")?;
    }
    let stdout = match args.format {
        Format::Text => {
            render_text(&statement, (args.max_rows > 0).then_some(args.max_rows)).into_bytes()
        }
        Format::Json => json,
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not bad input: the verdict is still the exit code.
    if let Err(e) = out.write_all(&stdout).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e).context("cannot write to stdout");
    }
    Ok(match result.verdict {
        Verdict::Pass => EXIT_OK,
        Verdict::Fail => EXIT_FAIL,
    })
}
