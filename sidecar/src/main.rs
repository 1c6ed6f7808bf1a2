// SPDX-License-Identifier: Apache-2.0
//! The linkguard command line: argument parsing, logging setup and exit codes. The work is in the library.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Proves which functions of a container actually execute, and publishes that proof signed.
#[derive(Debug, Parser)]
#[command(name = "linkguard", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LINKGUARD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate, validate and inspect function maps.
    #[command(subcommand)]
    Map(cli::map::MapCommand),
    /// Verify observations against a function map (offline).
    Verify(cli::verify::VerifyArgs),
    /// Create keys, sign reports as DSSE / Sigstore bundles, verify them.
    #[command(subcommand)]
    Attest(cli::attest::AttestCommand),
    /// Probe the app's functions with eBPF uprobes and write observation records.
    Observe(Box<cli::observe::ObserveArgs>),
    /// Check that this machine and container can probe: kernel, capabilities, a real test attach.
    Doctor(cli::doctor::DoctorArgs),
    /// List and pull the signed reports attached to an image in its registry.
    #[command(subcommand)]
    Reports(cli::registry::ReportsCommand),
    /// Copy an image with all its referrers (maps, signed reports) to another registry, digests unchanged.
    Mirror(cli::mirror::MirrorArgs),
    /// Export an image with its referrers as an OCI image layout tar, or import one (air gap).
    #[command(subcommand)]
    Bundle(cli::bundle::BundleCommand),
    /// Run beside the app: probe it, verify every interval, sign and push the reports, serve health and
    /// metrics.
    Sidecar(Box<cli::sidecar::SidecarArgs>),
    /// Add the linkguard sidecar to Kubernetes manifests (multi-document YAML in, YAML out).
    Inject(cli::inject::InjectArgs),
    /// GET an HTTP endpoint (the sidecar's /healthz) and exit 0 on a 2xx answer: container healthchecks.
    Healthcheck(cli::healthcheck::HealthcheckArgs),
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LINKGUARD_LOG")
        // aya logs its own feature probes at WARN when they are refused (an unprivileged `doctor`); linkguard
        // reports those refusals itself, with the fix. LINKGUARD_LOG=aya=debug brings them back.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aya=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The whole context chain - what we were doing, on what input, and the cause - with each cause printed
/// once: library errors often show their source in their own message too.
fn render_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if out.contains(&message) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&message);
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // The commands that probe use the binary's file capabilities (container image): make them effective.
    if matches!(
        cli.command,
        Command::Sidecar(_) | Command::Observe(_) | Command::Doctor(_)
    ) {
        cli::capabilities::raise_permitted();
    }
    let result = match cli.command {
        Command::Map(cmd) => cli::map::run(cmd),
        Command::Verify(args) => cli::verify::run(args),
        Command::Attest(cmd) => cli::attest::run(cmd),
        Command::Observe(args) => cli::observe::run(*args),
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Reports(cmd) => cli::registry::run_reports(cmd),
        Command::Mirror(args) => cli::mirror::run(args),
        Command::Bundle(cmd) => cli::bundle::run(cmd),
        Command::Sidecar(args) => cli::sidecar::run(*args),
        Command::Inject(args) => cli::inject::run(args),
        Command::Healthcheck(args) => cli::healthcheck::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", render_chain(&err));
            cli::exit_bad_input()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = anyhow::Error::new(io)
            .context("cannot read SBOM nope.json: No such file or directory")
            .context("generating the function map of service \"x\"");
        assert_eq!(
            render_chain(&err),
            "generating the function map of service \"x\": cannot read SBOM nope.json: No such file or directory"
        );
    }
}
