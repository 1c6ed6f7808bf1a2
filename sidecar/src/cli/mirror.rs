// SPDX-License-Identifier: Apache-2.0
//! `linkguard mirror`: copy an image with all its referrers (function maps, signed reports, their
//! signatures, recursively) to another registry, digests unchanged. The copy itself is
//! `linkguard_oci::copy_image`; this module parses flags, builds the clients and prints the summary.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use linkguard_oci::{CopyOptions, CopySummary, DEFAULT_MAX_BLOB_BYTES, Reference, ReferrersMode};

use super::EXIT_OK;
use super::registry::{Access, RegistryArgs, block_on};

const EXAMPLES: &str = "\
Copies the image (an image index with every platform manifest), then every referrer of it and of its \
manifests, recursively (signatures of reports too), byte for byte: every digest stays the same. On a \
registry without the referrers API the `sha256-<hex>` fallback index is kept. Content the target \
already has is not sent again, so a second run copies nothing.

Credentials: pull credentials for --from's registry, push credentials for --to's (see Registry access).

Exit status: 0 copied (or nothing to copy), 2 bad input or a registry error (the tag is set only once \
the image's content is on the target).

Examples:
  linkguard mirror --from registry.example.com/team/app:1.4.2 \\
      --to mirror.internal:5000/team/app:1.4.2
  linkguard mirror --from registry.example.com/team/app@sha256:<64 hex> \\
      --to mirror.internal:5000/team/app:1.4.2 --format json";

/// `linkguard mirror` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct MirrorArgs {
    /// The image to copy (REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:HEX).
    #[arg(long, value_name = "REF")]
    from: String,
    /// Where to copy it: the tag is set to the image; a digest, if given, must be the image's.
    #[arg(long, value_name = "REF")]
    to: String,
    /// Largest blob (layer, config, report) copied, in bytes; each is held in memory once.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BLOB_BYTES)]
    max_blob_bytes: u64,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    format: SummaryFormat,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Output format of a copy summary.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

/// Parses the value of `flag` as an image reference.
pub fn parse_ref(flag: &str, value: &str) -> anyhow::Result<Reference> {
    value
        .parse::<Reference>()
        .with_context(|| format!("{flag} {value:?} is not an image reference"))
}

pub fn run(args: MirrorArgs) -> anyhow::Result<ExitCode> {
    let from = parse_ref("--from", &args.from)?;
    let to = parse_ref("--to", &args.to)?;
    let source = args.registry.client_for(&from, Access::Pull)?;
    let target = args.registry.client_for(&to, Access::Push)?;
    let options = CopyOptions {
        max_blob_bytes: args.max_blob_bytes,
        ..CopyOptions::default()
    };
    let summary = block_on(linkguard_oci::copy_image(
        &source, &from, &target, &to, &options,
    ))?
    .with_context(|| format!("mirroring {from} to {to}"))?;
    print_summary(&summary, &format!("{from} -> {to}"), args.format)?;
    Ok(EXIT_OK)
}

fn mode_name(mode: Option<ReferrersMode>) -> Option<&'static str> {
    mode.map(|m| match m {
        ReferrersMode::Api => "referrers-api",
        ReferrersMode::FallbackTag => "fallback-tag",
    })
}

/// The summary as JSON: image, counts, every referrer.
pub fn summary_json(summary: &CopySummary) -> serde_json::Value {
    let referrers: Vec<_> = summary
        .referrers
        .iter()
        .map(|r| {
            serde_json::json!({
                "subject": r.subject.as_str(),
                "digest": r.descriptor.digest,
                "size": r.descriptor.size,
                "artifactType": r.descriptor.artifact_type,
                "copied": r.copied,
            })
        })
        .collect();
    serde_json::json!({
        "image": {
            "digest": summary.image.digest,
            "mediaType": summary.image.media_type,
            "size": summary.image.size,
        },
        "manifests": {"copied": summary.manifests.copied, "present": summary.manifests.present},
        "blobs": {"copied": summary.blobs.copied, "present": summary.blobs.present},
        "referrers": referrers,
        "referrersCopied": summary.referrers_copied(),
        "bytesCopied": summary.bytes_copied,
        "referrersMode": mode_name(summary.referrers_mode),
    })
}

/// Prints what a copy did (`what`: the source and target) on stdout.
pub fn print_summary(
    summary: &CopySummary,
    what: &str,
    format: SummaryFormat,
) -> anyhow::Result<()> {
    let out = match format {
        SummaryFormat::Json => {
            let mut out = serde_json::to_vec_pretty(&summary_json(summary))?;
            out.push(b'\n');
            out
        }
        SummaryFormat::Text => {
            let mut text = format!(
                "{what}\nimage      {} ({}, {} bytes)\nmanifests  {} copied, {} already there\n\
                 blobs      {} copied, {} already there\nreferrers  {} found, {} copied{}\nbytes      {} copied\n",
                summary.image.digest,
                summary.image.media_type,
                summary.image.size,
                summary.manifests.copied,
                summary.manifests.present,
                summary.blobs.copied,
                summary.blobs.present,
                summary.referrers.len(),
                summary.referrers_copied(),
                mode_name(summary.referrers_mode)
                    .map(|m| format!(" (target lists them by {m})"))
                    .unwrap_or_default(),
                summary.bytes_copied,
            );
            for r in &summary.referrers {
                text.push_str(&format!(
                    "  {} {} -> {}{}\n",
                    r.descriptor.digest,
                    r.descriptor.artifact_type.as_deref().unwrap_or("-"),
                    r.subject,
                    if r.copied { "" } else { " (already there)" }
                ));
            }
            text.into_bytes()
        }
    };
    match std::io::stdout().lock().write_all(&out) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
