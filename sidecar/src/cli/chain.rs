// SPDX-License-Identifier: Apache-2.0
//! `linkguard reports verify-chain --image REF --key PUB [--pod NAME]`: pulls every report of the image,
//! checks each signature and subject, and verifies the per-pod chains (linkguard::chain::verify_chain).
//!
//! Exit status: 0 every chain is intact; 1 a problem (a missing, altered, duplicated or reordered
//! report, a bad signature, a report about another image, no chained report at all); 2 bad input or an
//! unreachable registry.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use linkguard::attest::{self, BUNDLE_MEDIA_TYPE, VerifyingKey};
use linkguard::chain::{self, ChainEntry, ChainFields, ChainReport, Rejected, verify_chain};
use linkguard::report::REPORT_PREDICATE_TYPE;
use linkguard_oci::{Client, Digest, Reference};

use super::registry::{Access, RegistryArgs, block_on, list_newest_first, report_from_artifact};
use super::{EXIT_FAIL, EXIT_OK};

/// `reports verify-chain` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every chain is intact, 1 a report is missing, altered, \
                  duplicated, reordered, badly signed or about another image (or there is no chained \
                  report), 2 bad input or registry errors.\n\n\
                  Example:\n  linkguard reports verify-chain --image registry.example/app:v1 --key signing.pub \
                  --pod prod/app-7d9f"
)]
pub struct VerifyChainArgs {
    /// The image whose reports are verified.
    #[arg(long, value_name = "REF")]
    image: String,
    /// The public key (SPKI PEM) every report must be signed with.
    #[arg(long, value_name = "PUB")]
    key: PathBuf,
    /// Only the chains of this pod: NAME or NAMESPACE/NAME (reports that fail their signature check
    /// are reported whatever their pod).
    #[arg(long, value_name = "NAME")]
    pod: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Every report of an image, sorted into chain entries and rejections.
#[derive(Debug, Default)]
struct Collected {
    entries: Vec<ChainEntry>,
    rejected: Vec<Rejected>,
    /// Bundles of other predicate types (not linkguard reports): not part of any chain.
    other: Vec<String>,
    listed: usize,
}

pub fn run(args: &VerifyChainArgs) -> anyhow::Result<ExitCode> {
    let key = VerifyingKey::from_pem_file(&args.key)
        .with_context(|| format!("reading the public key {}", args.key.display()))?;
    let image: Reference = args
        .image
        .parse()
        .with_context(|| format!("--image {:?} is not an image reference", args.image))?;
    if let Some(pod) = &args.pod
        && (pod.is_empty() || pod.split('/').count() > 2)
    {
        anyhow::bail!("--pod {pod:?} is not NAME or NAMESPACE/NAME");
    }
    let client = args.registry.client_for(&image, Access::Pull)?;
    let (subject, collected) = block_on(collect(client, &image, &key))??;
    let Collected {
        mut entries,
        rejected,
        other,
        listed,
    } = collected;
    if let Some(pod) = &args.pod {
        entries.retain(|e| pod_matches(&e.fields.pod, pod));
    }
    let report = verify_chain(entries, rejected);
    let mut out = String::new();
    let _ = writeln!(out, "{subject}: {listed} report(s), key {}", key.keyid());
    render(&mut out, &report, &other);
    let chained: usize = report.chains.iter().map(|c| c.count).sum();
    let verdict = if !report.intact() {
        let n = report.problems();
        let _ = writeln!(out, "FAIL: {n} problem(s)");
        EXIT_FAIL
    } else if chained == 0 {
        let what = match &args.pod {
            Some(pod) => format!("no chained report of pod {pod}"),
            None => "no chained report".to_owned(),
        };
        let _ = writeln!(out, "FAIL: {what} (nothing to verify)");
        EXIT_FAIL
    } else {
        let _ = writeln!(out, "OK: every chain is intact");
        EXIT_OK
    };
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to stdout")?,
    }
    Ok(verdict)
}

/// `--pod NAME` matches `NAME` and `*/NAME`; `--pod NS/NAME` matches exactly.
fn pod_matches(key: &str, wanted: &str) -> bool {
    key == wanted
        || (!wanted.contains('/') && key.rsplit_once('/').is_some_and(|(_, n)| n == wanted))
}

/// Reports pulled at the same time by `collect`.
const PARALLEL_PULLS: usize = 8;

/// Lists, pulls and checks every report of `image`, [`PARALLEL_PULLS`] at a time; each bundle is checked
/// as soon as it arrives and only its chain fields are kept. A report that cannot be used (bad
/// signature, about another image, not a report, unpullable content) is a rejection; an unreachable
/// registry is an error.
async fn collect(
    client: Client,
    image: &Reference,
    key: &VerifyingKey,
) -> anyhow::Result<(Reference, Collected)> {
    let (subject, listing) = list_newest_first(&client, image, BUNDLE_MEDIA_TYPE).await?;
    let image_digest = subject
        .digest()
        .cloned()
        .context("a resolved reference carries its digest")?;
    let mut collected = Collected {
        listed: listing.len(),
        ..Collected::default()
    };
    let mut queue = Vec::new();
    for descriptor in listing {
        match descriptor.digest.parse::<Digest>() {
            Ok(digest) => queue.push(digest),
            Err(e) => collected.rejected.push(Rejected {
                manifest: descriptor.digest,
                reason: e.to_string(),
            }),
        }
    }
    let client = Arc::new(client);
    let mut queue = queue.into_iter();
    let mut pulls = tokio::task::JoinSet::new();
    loop {
        while pulls.len() < PARALLEL_PULLS
            && let Some(digest) = queue.next()
        {
            let (client, subject) = (Arc::clone(&client), subject.clone());
            pulls.spawn(async move {
                let pulled = client.pull_referrer(&subject, &digest).await;
                (digest, pulled)
            });
        }
        let Some(joined) = pulls.join_next().await else {
            break;
        };
        let (digest, pulled) = joined.context("a report pull task failed")?;
        let manifest = digest.to_string();
        let artifact = match pulled {
            Ok(artifact) => artifact,
            Err(e @ linkguard_oci::Error::Http { .. }) => {
                pulls.abort_all();
                return Err(e).with_context(|| format!("pulling the report {manifest}"));
            }
            Err(e) => {
                collected.rejected.push(Rejected {
                    manifest,
                    reason: format!("cannot be pulled: {e}"),
                });
                continue;
            }
        };
        match check(&subject, &image_digest, artifact, key) {
            Checked::Entry(fields, bundle) => collected.entries.push(ChainEntry {
                manifest,
                bundle,
                fields,
            }),
            Checked::Other(predicate_type) => {
                collected
                    .other
                    .push(format!("{manifest} ({predicate_type})"));
            }
            Checked::Rejected(reason) => collected.rejected.push(Rejected { manifest, reason }),
        }
    }
    // Completion order is arbitrary; the output is not.
    collected
        .rejected
        .sort_by(|a, b| a.manifest.cmp(&b.manifest));
    collected.other.sort();
    Ok((subject, collected))
}

enum Checked {
    Entry(ChainFields, String),
    Other(String),
    Rejected(String),
}

/// Signature, subject, predicate type and chain fields of one pulled referrer.
fn check(
    subject: &Reference,
    image_digest: &Digest,
    artifact: linkguard_oci::Artifact,
    key: &VerifyingKey,
) -> Checked {
    let report = match report_from_artifact(subject.to_string(), image_digest.clone(), artifact) {
        Ok(report) => report,
        Err(reason) => return Checked::Rejected(reason),
    };
    let statement = match attest::verify_statement_bundle(&report.bundle, key) {
        Ok(statement) => statement,
        Err(err) if err.is_verification_failure() => {
            return Checked::Rejected(format!("bad signature: {err}"));
        }
        Err(err) => return Checked::Rejected(format!("not a valid report bundle: {err}")),
    };
    let about_image = statement.subject.iter().any(|s| {
        s.digest
            .get("sha256")
            .is_some_and(|hex| hex == image_digest.hex())
    });
    if !about_image {
        let named: Vec<String> = statement.subject.iter().map(ToString::to_string).collect();
        return Checked::Rejected(format!(
            "signed, but about {}, not {image_digest}",
            named.join(", ")
        ));
    }
    if statement.predicate_type != REPORT_PREDICATE_TYPE {
        return Checked::Other(statement.predicate_type);
    }
    match ChainFields::from_predicate(&statement.predicate) {
        Ok(fields) => Checked::Entry(fields, chain::bundle_digest(&report.bundle)),
        Err(reason) => Checked::Rejected(format!("malformed chain fields: {reason}")),
    }
}

fn render(out: &mut String, report: &ChainReport, other: &[String]) {
    let mut seen: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for c in &report.chains {
        let nth = seen.entry(c.pod.as_str()).or_default();
        *nth += 1;
        let pod = if c.pod.is_empty() {
            "(no pod)"
        } else {
            c.pod.as_str()
        };
        // A pod's later chains (started again after a lost state) are numbered.
        let which = if *nth > 1 {
            format!(" (chain {nth})")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "pod {pod}{which}: sequences {}..{}, {} report(s){}{}",
            c.first,
            c.last,
            c.count,
            if c.started { ", chain starts at 1" } else { "" },
            if c.problems.is_empty() {
                ", intact"
            } else {
                ""
            }
        );
        for p in &c.problems {
            let _ = writeln!(out, "  {p}");
        }
        for n in &c.notices {
            let _ = writeln!(out, "  notice: {n}");
        }
    }
    for r in &report.rejected {
        let _ = writeln!(out, "rejected: report {}: {}", r.manifest, r.reason);
    }
    if !report.unchained.is_empty() {
        let _ = writeln!(
            out,
            "unchained: {} report(s) without a sequence (not produced by the sidecar): {}",
            report.unchained.len(),
            report.unchained.join(", ")
        );
    }
    if !other.is_empty() {
        let _ = writeln!(
            out,
            "ignored: {} bundle(s) of other predicate types: {}",
            other.len(),
            other.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_filter_matches_name_or_namespace_and_name() {
        assert!(pod_matches("prod/app-1", "app-1"));
        assert!(pod_matches("prod/app-1", "prod/app-1"));
        assert!(pod_matches("app-1", "app-1"));
        assert!(!pod_matches("prod/app-1", "dev/app-1"));
        assert!(!pod_matches("prod/app-10", "app-1"));
        assert!(!pod_matches("", "app-1"));
    }
}
