// SPDX-License-Identifier: Apache-2.0
//! `linkguard attest`: key generation, signing reports into Sigstore bundles, verifying them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use linkguard::attest::{
    self, AttestError, DEFAULT_PASSWORD_ENV, SigningKey, Statement, VerifyingKey,
};
use serde_json::json;

use super::{EXIT_FAIL, EXIT_OK};

const KEYGEN_EXAMPLES: &str = "\
Examples:
  linkguard attest keygen --output-key linkguard.key --output-pub linkguard.pub
  linkguard attest keygen --output-key k.pem --output-pub k.pub --force   # replace an existing pair

The private key is unencrypted PKCS#8 PEM, mode 0600: keep it in a secret store. Keys made by
`cosign generate-key-pair` work too (see `linkguard attest sign --help`).";

const SIGN_EXAMPLES: &str = "\
Examples:
  linkguard attest sign --input report.json --key linkguard.key --output report.bundle.json
  COSIGN_PASSWORD=... linkguard attest sign --input report.json --key cosign.key --output report.bundle.json
  linkguard attest sign --input report.json --key cosign.key --password-env SIGNING_PASSWORD \\
      --output report.bundle.json

The input must be an in-toto Statement v1 whose subjects carry digests. Keys: PKCS#8 PEM
(\"PRIVATE KEY\"), SEC1 PEM (\"EC PRIVATE KEY\"), or cosign's encrypted format (\"ENCRYPTED SIGSTORE
PRIVATE KEY\"), all ECDSA P-256. The output is a Sigstore bundle v0.3 (DSSE, no transparency log).";

const VERIFY_EXAMPLES: &str = "\
Examples:
  linkguard attest verify --input report.bundle.json --key linkguard.pub
  linkguard attest verify --input report.bundle.json --key cosign.pub --format json

Exit status: 0 the signature is valid, 1 invalid (tampered payload or signature, wrong key, not a
v0.3 DSSE bundle), 2 the bundle or the key cannot be read.";

/// `linkguard attest` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AttestCommand {
    /// Create an ECDSA P-256 key pair (PKCS#8 PEM private key, SPKI PEM public key).
    #[command(after_help = KEYGEN_EXAMPLES)]
    Keygen(KeygenArgs),
    /// Sign an in-toto Statement (a verification report) into a Sigstore bundle.
    #[command(after_help = SIGN_EXAMPLES)]
    Sign(SignArgs),
    /// Verify a Sigstore bundle with a public key and print what it states.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

/// `attest keygen` arguments.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "KEY")]
    output_key: PathBuf,
    /// Where to write the public key (SPKI PEM).
    #[arg(long, value_name = "PUB")]
    output_pub: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// `attest sign` arguments.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The in-toto Statement v1 to sign (JSON).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// The private key (PEM: PKCS#8, SEC1 or cosign encrypted).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Environment variable holding the password of an encrypted (cosign) key.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PASSWORD_ENV)]
    password_env: String,
    /// Where to write the Sigstore bundle (written atomically).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
}

/// Output format of `attest verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for a person.
    Text,
    /// One JSON object.
    Json,
}

/// `attest verify` arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The Sigstore bundle to verify.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// The public key (SPKI PEM, e.g. from `attest keygen --output-pub` or cosign.pub).
    #[arg(long, value_name = "PUB")]
    key: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs an `attest` subcommand.
pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Keygen(args) => keygen(&args),
        AttestCommand::Sign(args) => sign(&args),
        AttestCommand::Verify(args) => verify(&args),
    }
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    if args.output_key == args.output_pub {
        bail!(
            "--output-key and --output-pub are the same file ({})",
            args.output_key.display()
        );
    }
    if !args.force {
        for path in [&args.output_key, &args.output_pub] {
            if path.exists() {
                bail!(
                    "{} already exists: pass --force to overwrite it",
                    path.display()
                );
            }
        }
    }
    let key = SigningKey::generate();
    let private = key.to_pkcs8_pem()?;
    super::write_atomically(&args.output_key, private.as_bytes(), 0o600, args.force)?;
    super::write_atomically(
        &args.output_pub,
        key.verifying_key().to_spki_pem().as_bytes(),
        0o644,
        args.force,
    )?;
    println!(
        "private key: {} (PKCS#8 PEM, mode 0600)",
        args.output_key.display()
    );
    println!("public key:  {}", args.output_pub.display());
    println!("keyid:       {}", key.keyid());
    Ok(EXIT_OK)
}

fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let statement = std::fs::read(&args.input)
        .with_context(|| format!("reading the statement {}", args.input.display()))?;
    let key = SigningKey::from_pem_file(&args.key, &args.password_env)?;
    let bundle = attest::sign_statement(&statement, &key)
        .with_context(|| format!("refusing to sign {}", args.input.display()))?;
    super::write_atomically(&args.output, &bundle.to_json_pretty(), 0o644, true)?;
    println!(
        "signed {} -> {} (keyid {})",
        args.input.display(),
        args.output.display(),
        key.keyid()
    );
    Ok(EXIT_OK)
}

fn verdict_text(statement: &Statement) -> Option<String> {
    statement.verdict().map(|v| match v.as_str() {
        Some(s) => s.to_owned(),
        None => v.to_string(),
    })
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let bundle = std::fs::read(&args.input)
        .with_context(|| format!("reading the bundle {}", args.input.display()))?;
    let key = VerifyingKey::from_pem_file(&args.key)?;
    let statement = match attest::verify_statement_bundle(&bundle, &key) {
        Ok(statement) => statement,
        Err(err) if err.is_verification_failure() => return Ok(report_invalid(args, &key, &err)),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("reading the bundle {}", args.input.display()));
        }
    };
    match args.format {
        Format::Text => {
            println!(
                "OK: {} is signed by key {}",
                args.input.display(),
                key.keyid()
            );
            for subject in &statement.subject {
                println!("subject:       {subject}");
            }
            println!("predicateType: {}", statement.predicate_type);
            if let Some(verdict) = verdict_text(&statement) {
                println!("verdict:       {verdict}");
            }
        }
        Format::Json => {
            let out = json!({
                "verified": true,
                "keyid": key.keyid(),
                "subject": statement.subject,
                "predicateType": statement.predicate_type,
                "verdict": statement.verdict(),
            });
            println!("{out}");
        }
    }
    Ok(EXIT_OK)
}

/// The error and its causes, "outer: inner: innermost", as anyhow's `{:#}` prints them.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        cause = inner.source();
    }
    out
}

fn report_invalid(args: &VerifyArgs, key: &VerifyingKey, err: &AttestError) -> ExitCode {
    match args.format {
        Format::Text => eprintln!("INVALID: {}: {}", args.input.display(), with_causes(err)),
        Format::Json => {
            println!(
                "{}",
                json!({ "verified": false, "keyid": key.keyid(), "error": with_causes(err) })
            );
        }
    }
    EXIT_FAIL
}
