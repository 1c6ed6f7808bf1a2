// SPDX-License-Identifier: Apache-2.0
//! `linkguard map`: generate, validate and inspect function maps.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use linkguard::catalog::Catalog;
use linkguard::function_map::{FunctionMap, MapError};
use linkguard::generate::{self, GenerateOptions, Generated};

use super::{EXIT_OK, exit_bad_input};

const GENERATE_LONG_ABOUT: &str = "\
Generate a function map from an SBOM, the image's root filesystem and its entrypoints.

The entrypoints and the libraries they load (DT_NEEDED, resolved inside --rootfs with RPATH, RUNPATH, \
$ORIGIN, ld.so.conf and the default directories, never the host's libraries) are analysed as ELF files. \
Every hot function that one object of this closure imports from another becomes an expected path: the \
symbol, the file that defines it (path inside the image + build-id), the caller, the file offset to probe, \
the package (purl from the SBOM, else from the rootfs' dpkg database) and tags. Static and Go binaries \
contribute their own functions that match the patterns.

Patterns are `category/glob` over the catalog (see `linkguard map catalog`), e.g. crypto/*, tls/SSL_*, \
net/connect, or a plain symbol glob such as SSL_*. Missing libraries, IFUNCs and files without a purl are \
reported as warnings on stderr. The map is written (atomically) only when generation succeeds and the \
result validates.";

const GENERATE_EXAMPLES: &str = "\
Examples:
  # curl's TLS and crypto calls, map bound to an image digest
  linkguard map generate --sbom sbom.cdx.json --rootfs ./rootfs --service web \\
      --entrypoint /usr/bin/curl --hot-functions 'crypto/*' 'tls/*' \\
      --subject ghcr.io/acme/web@sha256:<64 hex> --output web.fmap.json

  # every crypto call must be seen, the rest at 90%; reproducible output
  linkguard map generate --sbom sbom.json --service api --entrypoint /app/server \\
      --hot-functions 'crypto/*' 'net/*' --min-rate 0.9 --tag-min crypto=1.0 \\
      --generated-at 2026-01-01T00:00:00Z --output -";

/// `linkguard map ...`
#[derive(Debug, clap::Subcommand)]
pub enum MapCommand {
    /// Generate a function map from an SBOM, a root filesystem and entrypoints.
    #[command(long_about = GENERATE_LONG_ABOUT, after_help = GENERATE_EXAMPLES)]
    Generate(Box<GenerateArgs>),
    /// Check a function map file: prints "valid: N paths (M required)" or every problem (exit 2).
    Validate(ValidateArgs),
    /// Print the hot-function catalog: categories and the rules behind them.
    Catalog(CatalogArgs),
    /// Push a function map as a referrer of its image (signed as DSSE with --key).
    Push(super::registry::MapPushArgs),
    /// Pull an image's newest function map, checking its subject (and signature with --key).
    Pull(super::registry::MapPullArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// CycloneDX JSON SBOM of the image (any 1.x spec version, e.g. from distro2sbom or syft).
    #[arg(long, value_name = "FILE")]
    sbom: PathBuf,
    /// The image's root filesystem (an unpacked image); libraries are resolved inside it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    rootfs: PathBuf,
    /// The service the map is for (recorded as predicate.service).
    #[arg(long, value_name = "NAME")]
    service: String,
    /// Executable(s) the service runs, as paths inside the rootfs. Repeatable.
    #[arg(long = "entrypoint", value_name = "PATH", required = true, num_args = 1..)]
    entrypoints: Vec<String>,
    /// Hot-function patterns: `category/glob` (crypto/*, tls/SSL_*) or a symbol glob. Repeatable,
    /// or comma-separated.
    #[arg(long = "hot-functions", value_name = "PATTERN", required = true, num_args = 1.., value_delimiter = ',')]
    hot_functions: Vec<String>,
    /// Catalog extension file(s) adding categories or rules. Repeatable.
    #[arg(long = "catalog", value_name = "FILE", num_args = 1..)]
    catalogs: Vec<PathBuf>,
    /// Fraction of required paths that must be observed in a window [default: 0.95].
    #[arg(long, value_name = "F")]
    min_rate: Option<f64>,
    /// Verification window in seconds [default: 1800].
    #[arg(long, value_name = "SECS")]
    window: Option<u64>,
    /// Per-tag minimum observation rate, e.g. crypto=1.0. Repeatable.
    #[arg(long = "tag-min", value_name = "TAG=RATE", num_args = 1.., value_parser = parse_tag_min)]
    tag_min: Vec<(String, f64)>,
    /// Fail verification when a watched function that no path expects is called.
    #[arg(long)]
    fail_on_unexpected: bool,
    /// Build identifier of the application (recorded as predicate.buildId).
    #[arg(long, value_name = "ID")]
    build_id: Option<String>,
    /// The image the map describes, NAME@sha256:HEX. Without it the map is unbound.
    #[arg(long, value_name = "NAME@sha256:HEX")]
    subject: Option<String>,
    /// Fixes generatedAt (RFC 3339) so that the same inputs give byte-identical output.
    #[arg(long, value_name = "RFC3339")]
    generated_at: Option<String>,
    /// Where to write the map; `-` for stdout. Written atomically.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The function map (JSON, camelCase or snake_case form).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    /// Catalog extension file(s) to load on top of the built-in catalog.
    #[arg(long = "catalog", value_name = "FILE", num_args = 1..)]
    catalogs: Vec<PathBuf>,
}

fn parse_tag_min(value: &str) -> Result<(String, f64), String> {
    let (tag, rate) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not TAG=RATE (e.g. crypto=1.0)"))?;
    let rate: f64 = rate
        .parse()
        .map_err(|_| format!("{rate:?} in {value:?} is not a number"))?;
    if tag.is_empty() {
        return Err(format!("{value:?} has an empty tag"));
    }
    Ok((tag.to_owned(), rate))
}

pub fn run(cmd: MapCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MapCommand::Generate(args) => run_generate(*args),
        MapCommand::Validate(args) => run_validate(&args.file),
        MapCommand::Catalog(args) => run_catalog(&args.catalogs),
        MapCommand::Push(args) => super::registry::run_map_push(args),
        MapCommand::Pull(args) => super::registry::run_map_pull(args),
    }
}

fn run_generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let mut per_tag = BTreeMap::new();
    for (tag, rate) in args.tag_min {
        if per_tag.insert(tag.clone(), rate).is_some() {
            anyhow::bail!("--tag-min {tag} is given twice");
        }
    }
    let opts = GenerateOptions {
        sbom: args.sbom,
        rootfs: args.rootfs,
        service: args.service,
        entrypoints: args.entrypoints,
        hot_functions: args.hot_functions,
        catalog_files: args.catalogs,
        min_rate: args.min_rate,
        window_seconds: args.window,
        per_tag,
        fail_on_unexpected: args.fail_on_unexpected,
        build_id: args.build_id,
        subject: args.subject,
        generated_at: args.generated_at,
    };
    let generated = generate::generate(&opts)
        .with_context(|| format!("generating the function map of service {:?}", opts.service))?;
    print_summary(&generated);
    let json = generated.map.to_canonical_json();
    if args.output == Path::new("-") {
        std::io::stdout()
            .lock()
            .write_all(&json)
            .context("writing the map to stdout")?;
    } else {
        super::write_atomically(&args.output, &json, 0o644, true)
            .with_context(|| format!("writing the map to {}", args.output.display()))?;
        eprintln!("wrote {}", args.output.display());
    }
    Ok(EXIT_OK)
}

/// The summary on stderr. Write errors are ignored: a closed stderr must not lose the map.
fn print_summary(generated: &Generated) {
    let mut err = std::io::stderr().lock();
    let paths = &generated.map.predicate.expected_paths;
    let unresolved = paths
        .iter()
        .filter(|p| p.calls.iter().any(|c| c.unresolved.is_some()))
        .count();
    let _ = writeln!(
        err,
        "function map for {}: {} expected paths ({unresolved} unresolved), {} watch scopes",
        generated.map.predicate.service,
        paths.len(),
        generated.map.predicate.watch_scopes.len()
    );
    for closure in &generated.closures {
        let missing = if closure.missing.is_empty() {
            String::new()
        } else {
            format!(", missing: {}", closure.missing.join(", "))
        };
        let _ = writeln!(
            err,
            "  {}: {} libraries in the closure{missing}",
            closure.entrypoint,
            closure.libraries.len()
        );
    }
    let mut per_tag: BTreeMap<&str, usize> = BTreeMap::new();
    for tag in paths.iter().flat_map(|p| &p.tags) {
        *per_tag.entry(tag).or_default() += 1;
    }
    for (tag, count) in per_tag {
        let _ = writeln!(err, "  tag {tag}: {count} paths");
    }
    for diagnostic in &generated.diagnostics {
        let _ = writeln!(err, "warning: {diagnostic}");
    }
}

fn run_validate(file: &Path) -> anyhow::Result<ExitCode> {
    match FunctionMap::from_file(file) {
        Ok(map) => {
            let total = map.predicate.expected_paths.len();
            let required = map.required_paths().count();
            print_stdout(&format!("valid: {total} paths ({required} required)\n"))?;
            if !map.is_bound() {
                eprintln!(
                    "note: {} is unbound (no image digest in subject); bind it with --subject",
                    file.display()
                );
            }
            Ok(EXIT_OK)
        }
        Err(MapError::Invalid {
            source_name,
            source,
        }) => {
            let mut report = format!("invalid: {source_name}\n");
            for issue in &source.issues {
                report.push_str(&format!("  - {}: {}\n", issue.field, issue.problem));
            }
            print_stdout(&report)?;
            Ok(exit_bad_input())
        }
        Err(err) => Err(err.into()),
    }
}

fn run_catalog(extensions: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut catalog = Catalog::builtin();
    for path in extensions {
        catalog
            .load_extension(path)
            .with_context(|| format!("loading catalog extension {}", path.display()))?;
    }
    print_stdout(&catalog.to_string())?;
    Ok(EXIT_OK)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("writing to stdout")?),
    }
}
