// SPDX-License-Identifier: Apache-2.0
//! `linkguard bundle export|import`: an image with its referrers (function maps, signed reports,
//! their signatures) as an OCI image layout tar that crosses an air gap, and the bundle side of
//! `linkguard reports verify --bundle` (offline). The layout format is docs/contracts/bundle.md; the
//! work is in `linkguard_oci::layout`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use linkguard::attest::BUNDLE_MEDIA_TYPE;
use linkguard_oci::layout::{self, Compression, LayoutError, LayoutLimits, OciLayout};
use linkguard_oci::{CopyOptions, DEFAULT_MAX_BLOB_BYTES, Descriptor, Digest};

use super::EXIT_OK;
use super::mirror::{SummaryFormat, parse_ref, print_summary};
use super::registry::{
    Access, FetchedReport, RegistryArgs, block_on, report_from_artifact, sort_newest_first,
};

const EXPORT_EXAMPLES: &str = "\
Writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) as a tar: the image (every \
platform manifest of an index), then every referrer of it and of its manifests, recursively, byte for \
byte. index.json names the image with org.opencontainers.image.ref.name = --image and lists every \
referrer manifest (docs/contracts/bundle.md). The file is written only when the export is complete.

Examples:
  linkguard bundle export --image registry.example.com/team/app:1.4.2 --output app.tar
  linkguard bundle export --image registry.example.com/team/app:1.4.2 --output app.tar.gz --gzip

  # on the other side of the air gap, offline:
  linkguard reports verify --bundle app.tar --key signing.pub";

const IMPORT_EXAMPLES: &str = "\
Checks the whole archive before pushing anything: only oci-layout, index.json and blobs/sha256/<hex> \
entries (no links, no paths outside the layout), every blob hashing to its name, every blob a manifest \
names present, sizes within limits. A gzip-compressed archive is detected by its magic bytes. Then \
pushes the image (tagged as --to says) and its referrers; on a registry without the referrers API the \
`sha256-<hex>` fallback index is kept. Content the registry already has is not sent again.

Exit status: 0 imported, 2 the archive was refused (the error names the entry) or a registry error.

Examples:
  linkguard bundle import --input app.tar --to mirror.internal:5000/team/app:1.4.2";

/// `linkguard bundle ...`
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Export an image with all its referrers as an OCI image layout tar.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Push an OCI image layout tar (from `bundle export`) with its referrers to a registry.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The image to export (REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:HEX).
    #[arg(long, value_name = "REF")]
    image: String,
    /// The archive to write.
    #[arg(long, short, value_name = "FILE.tar")]
    output: PathBuf,
    /// Compress the archive with gzip.
    #[arg(long)]
    gzip: bool,
    /// Overwrite --output if it exists.
    #[arg(long)]
    force: bool,
    /// Largest blob exported, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BLOB_BYTES)]
    max_blob_bytes: u64,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    format: SummaryFormat,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The archive (tar or tar.gz) written by `linkguard bundle export`.
    #[arg(long, short, value_name = "FILE.tar")]
    input: PathBuf,
    /// Where to push the image: the tag is set to it; a digest, if given, must be the image's.
    #[arg(long, value_name = "REF")]
    to: String,
    /// Largest blob accepted from the archive, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BLOB_BYTES)]
    max_blob_bytes: u64,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    format: SummaryFormat,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(cmd: BundleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BundleCommand::Export(args) => run_export(&args),
        BundleCommand::Import(args) => run_import(&args),
    }
}

fn run_export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let image = parse_ref("--image", &args.image)?;
    if args.output.exists() && !args.force {
        anyhow::bail!(
            "{} already exists: pass --force to overwrite it",
            args.output.display()
        );
    }
    let client = args.registry.client_for(&image, Access::Pull)?;
    let dir = match args.output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Written beside --output and renamed into place only when complete.
    let tmp = tempfile::Builder::new()
        .prefix(".linkguard-bundle-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let (file, tmp_path) = tmp.into_parts();
    let compression = if args.gzip {
        Compression::Gzip
    } else {
        Compression::None
    };
    let options = CopyOptions {
        max_blob_bytes: args.max_blob_bytes,
        ..CopyOptions::default()
    };
    let out = std::io::BufWriter::new(file);
    let (summary, out) = block_on(layout::export_layout(
        &client,
        &image,
        out,
        compression,
        &options,
    ))?
    .with_context(|| format!("exporting {image}"))?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all().map(|()| f))
        .with_context(|| format!("writing {}", args.output.display()))?;
    drop(file);
    if args.force {
        tmp_path.persist(&args.output)
    } else {
        tmp_path.persist_noclobber(&args.output)
    }
    .map_err(|e| e.error)
    .with_context(|| format!("writing {}", args.output.display()))?;
    print_summary(
        &summary,
        &format!("{image} -> {}", args.output.display()),
        args.format,
    )?;
    Ok(EXIT_OK)
}

/// Unpacks and checks `archive` into a fresh temporary directory (removed when the result drops).
fn unpack(
    archive: &Path,
    limits: &LayoutLimits,
) -> anyhow::Result<(tempfile::TempDir, Result<OciLayout, LayoutError>)> {
    let dir = tempfile::Builder::new()
        .prefix("linkguard-bundle-")
        .tempdir()
        .context("creating a temporary directory to unpack the bundle in")?;
    let layout = layout::unpack_layout(archive, dir.path(), limits);
    Ok((dir, layout))
}

fn run_import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let to = parse_ref("--to", &args.to)?;
    let limits = LayoutLimits {
        max_blob_bytes: args.max_blob_bytes,
        ..LayoutLimits::default()
    };
    let (_dir, layout) = unpack(&args.input, &limits)?;
    let layout = layout.with_context(|| format!("reading the bundle {}", args.input.display()))?;
    let client = args.registry.client_for(&to, Access::Push)?;
    let options = CopyOptions {
        max_blob_bytes: args.max_blob_bytes,
        ..CopyOptions::default()
    };
    let summary = block_on(layout::import_layout(&layout, &client, &to, &options))?
        .with_context(|| format!("importing {} to {to}", args.input.display()))?;
    print_summary(
        &summary,
        &format!("{} -> {to}", args.input.display()),
        args.format,
    )?;
    Ok(EXIT_OK)
}

/// The report `wanted` (or the newest) of the image a bundle names, read offline. `Ok(Err(reason))`:
/// nothing usable, or the bundle was refused (altered, incomplete, unsafe); `Err`: the file cannot be
/// read.
/// With `pinned` (`--image REF`), the bundle must be of that image: its manifest digest must be REF's
/// digest when REF has one, else its ref.name must be REF exactly. Without it the image is whatever
/// the bundle names, and a warning says so.
pub(super) fn fetch_report(
    bundle: &Path,
    wanted: Option<&str>,
    pinned: Option<&str>,
) -> anyhow::Result<Result<FetchedReport, String>> {
    let pinned_digest: Option<Option<Digest>> = match pinned {
        Some(r) => Some(parse_ref("--image", r)?.digest().cloned()),
        None => None,
    };
    let wanted: Option<Digest> = match wanted {
        Some(d) => Some(
            d.parse()
                .with_context(|| format!("--digest {d:?} is not sha256:<64 hex>"))?,
        ),
        None => None,
    };
    let (_dir, layout) = unpack(bundle, &LayoutLimits::default())?;
    let layout = match layout {
        Ok(layout) => layout,
        Err(err @ LayoutError::Io { .. }) => {
            return Err(err).with_context(|| format!("reading the bundle {}", bundle.display()));
        }
        Err(err) => return Ok(Err(err.to_string())),
    };
    let image = layout.image_digest()?;
    let subject = format!("{} ({image}, from {})", layout.ref_name(), bundle.display());
    match (pinned, pinned_digest) {
        (Some(r), Some(Some(d))) if d != image => {
            return Ok(Err(format!(
                "--image {r} pins {d}, but the bundle {} is of {} ({image})",
                bundle.display(),
                layout.ref_name()
            )));
        }
        (Some(r), Some(None)) if r != layout.ref_name() => {
            return Ok(Err(format!(
                "--image {r}, but the bundle {} is of {} ({image}); pass --image NAME@sha256:HEX to pin by digest",
                bundle.display(),
                layout.ref_name()
            )));
        }
        (Some(_), _) => {}
        (None, _) => eprintln!(
            "warning: the image was not pinned: verifying against {} as named by the bundle itself; pass --image REF to pin it",
            layout.ref_name()
        ),
    }
    let referrers = layout.referrers(&image);
    let mut reports: Vec<Descriptor> = referrers
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE_MEDIA_TYPE))
        .cloned()
        .collect();
    sort_newest_first(&mut reports);
    let digest = match wanted {
        Some(d) => d,
        None => match reports.first() {
            Some(newest) => newest.digest.parse()?,
            None => return Ok(Err(format!("{subject} has no reports"))),
        },
    };
    // Only a referrer of the bundle's image counts: its manifest must name the image as subject.
    if !referrers.iter().any(|d| d.digest == digest.as_str()) {
        return Ok(Err(format!("{digest} is not a referrer of {subject}")));
    }
    let artifact = match layout.read_artifact(&digest) {
        Ok(artifact) => artifact,
        Err(err) => return Ok(Err(err.to_string())),
    };
    Ok(report_from_artifact(subject, image, artifact))
}
