// SPDX-License-Identifier: Apache-2.0
//! `linkguard sidecar`: the daemon users deploy beside their app. This module reads the configuration,
//! builds the (single-threaded) runtime and maps the outcome to an exit code; the daemon itself is
//! `linkguard::daemon::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use linkguard::daemon::config::{Config, Overrides};
use linkguard::daemon::run;
use linkguard_oci::auth::process_env;

use super::{EXIT_FAIL, EXIT_OK, exit_bad_input};

const EXAMPLES: &str = "\
Examples:
  # check a configuration (prints the effective configuration, exit 2 naming the bad key)
  linkguard sidecar --config /etc/linkguard/linkguard.yaml --check

  # run beside the app (image from the config, the environment or --image)
  linkguard --log-format json sidecar --config /etc/linkguard/linkguard.yaml --image registry.example/app:1.4.2

Exit status: 0 after SIGTERM/SIGINT once the last report is pushed or spooled; 2 bad configuration, signing
key or trusted keys; 1 the daemon could not run (no privileges for the probes, port in use, ...).
See examples/linkguard.yaml for every key.";

/// `linkguard sidecar ...`
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct SidecarArgs {
    /// The configuration file (YAML).
    #[arg(long, value_name = "FILE", env = "LINKGUARD_CONFIG")]
    config: PathBuf,
    /// The app image (overrides `image` and LINKGUARD_APP_IMAGE).
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Address of the HTTP endpoints (overrides `http.listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Validate the configuration, print the effective configuration as YAML and exit.
    #[arg(long)]
    check: bool,
}

pub fn run(args: SidecarArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        image: args.image,
        listen: args.listen,
    };
    let settings = Config::load(&args.config, &process_env, &overrides)?;
    if args.check {
        print!("{}", settings.config.to_yaml());
        eprintln!("{}: configuration OK", args.config.display());
        return Ok(EXIT_OK);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(run::run(settings));
    // A verification still running on a blocking thread must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => Ok(EXIT_OK),
        Err(err) => {
            let code = if err.is_bad_input() {
                exit_bad_input()
            } else {
                EXIT_FAIL
            };
            eprintln!("error: {}", crate::render_chain(&anyhow::Error::new(err)));
            Ok(code)
        }
    }
}
