// SPDX-License-Identifier: Apache-2.0
//! Registry commands: `linkguard map push|pull` and `linkguard reports list|pull`.
//!
//! Function maps and reports travel as OCI referrers of the image (CONTRACTS.md: artifactType
//! `application/vnd.stellaops.function-map.v1+json` for maps, the Sigstore bundle type for reports).
//! The tokio runtime is built here, in the CLI layer, only for these commands; the libraries never
//! start one. Credentials (`LINKGUARD_*REGISTRY_*` variables, then docker config files), plain-HTTP
//! registries and timeouts come from [`RegistryArgs`]; loopback registries are reached over plain HTTP.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use linkguard::attest::{
    self, BUNDLE_MEDIA_TYPE, Envelope, FUNCTION_MAP_PAYLOAD_TYPE, SigningKey, VerifyingKey,
};
use linkguard::function_map::{self, FunctionMap};
use linkguard_oci::auth::{AuthConfig, CredentialSources, PULL_ENV_PREFIX, PUSH_ENV_PREFIX};
use linkguard_oci::transport::InsecurePolicy;
use linkguard_oci::{Client, ClientConfig, Descriptor, Digest, Layer, Reference, ReferrerFilter};

use super::{EXIT_FAIL, EXIT_OK};

/// Layer media type of a signed map.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Annotation carrying the push time (RFC 3339); "newest" is decided on it.
pub use linkguard::daemon::spool::{CREATED_ANNOTATION, sort_newest_first};
/// Annotation naming a report bundle's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// `map push` arguments.
#[derive(Debug, clap::Args)]
pub struct MapPushArgs {
    /// The image the map describes (NAME:TAG or NAME@sha256:HEX); the map is pushed as its referrer.
    #[arg(long, value_name = "REF")]
    image: String,
    /// The function map; its subject digest must be the image's.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Sign the map: push a DSSE envelope of it instead of the plain JSON.
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    /// Environment variable holding the password of an encrypted --key.
    #[arg(long, value_name = "VAR", default_value = attest::DEFAULT_PASSWORD_ENV)]
    password_env: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `map pull` arguments.
#[derive(Debug, clap::Args)]
pub struct MapPullArgs {
    /// The image whose newest function map is pulled.
    #[arg(long, value_name = "REF")]
    image: String,
    /// Where to write the map (atomically); stdout without it.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Require a DSSE signature on the map that verifies with this public key (SPKI PEM).
    #[arg(long, value_name = "PUB")]
    key: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `linkguard reports ...`
#[derive(Debug, clap::Subcommand)]
pub enum ReportsCommand {
    /// List the report bundles attached to an image, newest first.
    List(ReportsListArgs),
    /// Pull one report bundle of an image.
    Pull(ReportsPullArgs),
    /// Verify a report of an image: its signature, and that it is about this image's digest.
    Verify(ReportsVerifyArgs),
    /// Verify the chains of an image's reports, per pod: none missing, altered, duplicated or reordered.
    VerifyChain(super::chain::VerifyChainArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReportsListArgs {
    /// The image whose reports are listed.
    #[arg(long, value_name = "REF")]
    image: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    format: ListFormat,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["latest", "digest"])))]
pub struct ReportsPullArgs {
    /// The image whose report is pulled.
    #[arg(long, value_name = "REF")]
    image: String,
    /// The newest report (by its org.opencontainers.image.created annotation).
    #[arg(long)]
    latest: bool,
    /// The report with this manifest digest.
    #[arg(long, value_name = "sha256:HEX")]
    digest: Option<String>,
    /// Where to write the bundle (atomically).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("which").args(["latest", "digest"])),
    after_help = "Exit status: 0 the report is signed by KEY and its subject is the image's digest, \
                  1 it is not (or there is no report), 2 bad input or registry errors.\n\n\
                  Examples:\n  linkguard reports verify --image registry.example/app:v1 --key signing.pub\n  \
                  # offline, from `linkguard bundle export`, pinned to the expected image\n  \
                  linkguard reports verify --bundle app-v1.tar --image registry.example/app@sha256:HEX --key signing.pub\n\n\
                  With --bundle, --image REF pins the image: the bundle's image digest must be REF's digest \
                  (when REF has one), else the bundle's ref.name must be REF exactly. Without --image the \
                  image is whatever the bundle names (a warning says so)."
)]
pub struct ReportsVerifyArgs {
    /// The image whose report is verified; with --bundle, the image the bundle must be of.
    #[arg(long, value_name = "REF", required_unless_present = "bundle")]
    image: Option<String>,
    /// Verify offline from a bundle (`linkguard bundle export`, tar or tar.gz) instead of a registry.
    #[arg(long, value_name = "FILE.tar")]
    bundle: Option<PathBuf>,
    /// The public key (SPKI PEM) the report must be signed with.
    #[arg(long, value_name = "PUB")]
    key: PathBuf,
    /// The newest report (the default).
    #[arg(long)]
    latest: bool,
    /// The report with this manifest digest.
    #[arg(long, value_name = "sha256:HEX")]
    digest: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Registry access shared by the registry commands: credential files, plain-HTTP registries,
/// timeouts. Credentials are resolved per registry, separately for pulling and pushing.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Registry access")]
pub struct RegistryArgs {
    /// Pull credentials: a docker config.json, or a Kubernetes dockerconfigjson secret (the mounted
    /// .dockerconfigjson file, or the Secret itself as JSON).
    ///
    /// Credentials are chosen per registry; the first source that has some wins.
    ///
    /// Pull: LINKGUARD_REGISTRY_USERNAME + LINKGUARD_REGISTRY_PASSWORD (or LINKGUARD_REGISTRY_TOKEN;
    /// LINKGUARD_REGISTRY_HOST limits them to one registry), then this file (without it:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, when present), else anonymous.
    ///
    /// Push: LINKGUARD_PUSH_REGISTRY_USERNAME + LINKGUARD_PUSH_REGISTRY_PASSWORD (or _TOKEN, _HOST),
    /// then the --push-registry-config file (default: this file), else anonymous. Pull credentials
    /// from the environment are never used for pushing.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Push credentials, in the same formats (default: the --registry-config file).
    #[arg(long, value_name = "FILE")]
    pub push_registry_config: Option<PathBuf>,
    /// A registry reached over plain HTTP, HOST or HOST:PORT (repeatable); loopback registries
    /// (127.0.0.1, ::1, localhost) always are, every other one needs HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Connect and read timeout of each registry request, in seconds (uploads get extra time for
    /// their size).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_REGISTRY_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub registry_timeout: u64,
}

/// `--registry-timeout` default.
pub const DEFAULT_REGISTRY_TIMEOUT_SECS: u64 = 30;

impl Default for RegistryArgs {
    fn default() -> Self {
        Self {
            registry_config: None,
            push_registry_config: None,
            insecure_registries: Vec::new(),
            registry_timeout: DEFAULT_REGISTRY_TIMEOUT_SECS,
        }
    }
}

impl RegistryArgs {
    /// The credential sources the options describe.
    pub fn auth_config(&self) -> AuthConfig {
        let sources = |prefix: &str, file: Option<&PathBuf>| {
            let mut sources = CredentialSources::with_env_prefix(prefix);
            if let Some(path) = file {
                sources.default_docker_config = false;
                let secret = path
                    .file_name()
                    .is_some_and(|n| n == ".dockerconfigjson" || n == ".dockercfg");
                if secret {
                    sources.kubernetes_secret = Some(path.clone());
                } else {
                    sources.docker_config = Some(path.clone());
                }
            }
            sources
        };
        AuthConfig {
            pull: sources(PULL_ENV_PREFIX, self.registry_config.as_ref()),
            push: sources(
                PUSH_ENV_PREFIX,
                self.push_registry_config
                    .as_ref()
                    .or(self.registry_config.as_ref()),
            ),
            push_falls_back_to_pull: false,
        }
    }

    /// A client for these options. The credentials for `image`'s registry are resolved now, so a
    /// malformed credentials file fails before any request.
    pub fn client_for(&self, image: &Reference, access: Access) -> anyhow::Result<Client> {
        let insecure =
            InsecurePolicy::new(&self.insecure_registries).context("--insecure-registry")?;
        let timeout = std::time::Duration::from_secs(self.registry_timeout);
        let config = ClientConfig {
            insecure,
            connect_timeout: timeout,
            read_timeout: timeout,
            ..ClientConfig::default()
        };
        let client = Client::with_credentials(config, self.auth_config())?;
        let creds = client
            .credentials(image.registry())
            .with_context(|| format!("resolving credentials for {}", image.registry()))?;
        let resolved = match access {
            Access::Pull => creds.pull,
            Access::Push => creds.push,
        };
        tracing::debug!(credentials = %resolved, ?access, "registry credentials");
        Ok(client)
    }
}

/// Runs `fut` on a current-thread runtime built for this command.
pub(super) fn block_on<F: std::future::Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(fut))
}

/// What a command mainly does with a registry (reads use the pull credentials, writes the push ones).
#[derive(Debug, Clone, Copy)]
pub enum Access {
    Pull,
    Push,
}

fn parse_image(image: &str) -> anyhow::Result<Reference> {
    image
        .parse::<Reference>()
        .with_context(|| format!("--image {image:?} is not an image reference"))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Prints a refusal and returns exit code 1.
fn refuse(message: &str) -> ExitCode {
    eprintln!("refused: {message}");
    EXIT_FAIL
}

pub fn run_map_push(args: MapPushArgs) -> anyhow::Result<ExitCode> {
    let image = parse_image(&args.image)?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading the map {}", args.file.display()))?;
    let map = FunctionMap::from_slice(&bytes, &args.file.display().to_string())?;
    let key = match &args.key {
        Some(path) => Some(SigningKey::from_pem_file(path, &args.password_env)?),
        None => None,
    };
    let client = args.registry.client_for(&image, Access::Push)?;
    block_on(async {
        let digest = client
            .resolve(&image)
            .await
            .with_context(|| format!("resolving {image}"))?;
        let Some(map_hex) = map.subject.digest.get("sha256") else {
            let name = map
                .subject
                .name
                .clone()
                .unwrap_or_else(|| format!("{}/{}", image.registry(), image.repository()));
            return Ok(refuse(&format!(
                "{} is unbound (no image digest in its subject); regenerate with --subject {name}@{digest}",
                args.file.display()
            )));
        };
        if map_hex != digest.hex() {
            return Ok(refuse(&format!(
                "{} describes sha256:{map_hex}, but {image} is {digest}",
                args.file.display()
            )));
        }
        let layer = match &key {
            None => Layer {
                media_type: function_map::MEDIA_TYPE.to_owned(),
                data: bytes.clone(),
            },
            Some(key) => Layer {
                media_type: DSSE_MEDIA_TYPE.to_owned(),
                data: attest::sign_envelope(FUNCTION_MAP_PAYLOAD_TYPE, &bytes, key).to_json(),
            },
        };
        let annotations = BTreeMap::from([(CREATED_ANNOTATION.to_owned(), now_rfc3339())]);
        let pushed = client
            .push_artifact(
                &image.at_digest(digest.clone()),
                function_map::MEDIA_TYPE,
                vec![layer],
                annotations,
            )
            .await
            .with_context(|| format!("pushing the map to {image}"))?;
        eprintln!(
            "pushed {} map of {} as a referrer of {digest}",
            if key.is_some() { "signed" } else { "unsigned" },
            map.predicate.service
        );
        println!("{}", pushed.descriptor.digest);
        Ok(EXIT_OK)
    })?
}

pub fn run_map_pull(args: MapPullArgs) -> anyhow::Result<ExitCode> {
    let image = parse_image(&args.image)?;
    let key = match &args.key {
        Some(path) => Some(VerifyingKey::from_pem_file(path)?),
        None => None,
    };
    let client = args.registry.client_for(&image, Access::Pull)?;
    let outcome = block_on(async {
        let (subject, entries) =
            list_newest_first(&client, &image, function_map::MEDIA_TYPE).await?;
        let digest = subject
            .digest()
            .cloned()
            .context("a resolved reference carries its digest")?;
        let Some(newest) = entries.first() else {
            return Ok(Err(format!("{image} ({digest}) has no function map")));
        };
        let map_digest: Digest = newest.digest.parse()?;
        let artifact = client
            .pull_referrer(&subject, &map_digest)
            .await
            .with_context(|| format!("pulling the map {map_digest}"))?;
        Ok::<_, anyhow::Error>(Ok((digest, map_digest, artifact)))
    })??;
    let (digest, map_digest, artifact) = match outcome {
        Ok(pulled) => pulled,
        Err(message) => return Ok(refuse(&message)),
    };
    let [(layer, data)] = artifact.layers.as_slice() else {
        return Ok(refuse(&format!(
            "map {map_digest} has {} layers, expected one",
            artifact.layers.len()
        )));
    };
    let payload = match (layer.media_type.as_str(), &key) {
        (DSSE_MEDIA_TYPE, key) => {
            let envelope = match Envelope::from_json(data) {
                Ok(envelope) => envelope,
                Err(err) => {
                    return Ok(refuse(&format!(
                        "map {map_digest}: bad DSSE envelope: {err}"
                    )));
                }
            };
            if envelope.payload_type != FUNCTION_MAP_PAYLOAD_TYPE {
                return Ok(refuse(&format!(
                    "map {map_digest}: DSSE payloadType is {:?}, not {FUNCTION_MAP_PAYLOAD_TYPE:?}",
                    envelope.payload_type
                )));
            }
            match key {
                Some(key) => match attest::verify_envelope(&envelope, key) {
                    Ok(payload) => payload,
                    Err(err) => {
                        return Ok(refuse(&format!(
                            "map {map_digest}: signature does not verify with {}: {err}",
                            args.key
                                .as_deref()
                                .map_or_else(String::new, |p| p.display().to_string())
                        )));
                    }
                },
                None => {
                    eprintln!(
                        "warning: map {map_digest} is signed, but its signature was not checked: pass --key"
                    );
                    envelope.payload
                }
            }
        }
        (function_map::MEDIA_TYPE, Some(_)) => {
            return Ok(refuse(&format!(
                "map {map_digest} is not signed, and --key requires a signature"
            )));
        }
        (function_map::MEDIA_TYPE, None) => data.clone(),
        (other, _) => {
            return Ok(refuse(&format!(
                "map {map_digest} has a layer of type {other:?}"
            )));
        }
    };
    let map = match FunctionMap::from_slice(&payload, &format!("map {map_digest}")) {
        Ok(map) => map,
        Err(err) => return Ok(refuse(&err.to_string())),
    };
    match map.subject.digest.get("sha256") {
        Some(hex) if hex == digest.hex() => {}
        Some(hex) => {
            return Ok(refuse(&format!(
                "map {map_digest} describes sha256:{hex}, not {image} ({digest})"
            )));
        }
        None => {
            return Ok(refuse(&format!(
                "map {map_digest} is unbound: it names no image digest"
            )));
        }
    }
    write_output(args.output.as_deref(), &payload)?;
    eprintln!(
        "pulled map {map_digest} of {digest}{}",
        if key.is_some() {
            " (signature verified)"
        } else {
            ""
        }
    );
    Ok(EXIT_OK)
}

fn write_output(output: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        None => std::io::stdout()
            .lock()
            .write_all(bytes)
            .context("writing to stdout"),
        Some(path) => super::write_atomically(path, bytes, 0o644, true),
    }
}

pub fn run_reports(cmd: ReportsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportsCommand::List(args) => run_reports_list(&args),
        ReportsCommand::Pull(args) => run_reports_pull(&args),
        ReportsCommand::Verify(args) => run_reports_verify(&args),
        ReportsCommand::VerifyChain(args) => super::chain::run(&args),
    }
}

/// The image at its digest, and its referrers of `artifact_type`, newest first.
pub(super) async fn list_newest_first(
    client: &Client,
    image: &Reference,
    artifact_type: &str,
) -> anyhow::Result<(Reference, Vec<Descriptor>)> {
    let digest = client
        .resolve(image)
        .await
        .with_context(|| format!("resolving {image}"))?;
    let subject = image.at_digest(digest);
    let filter = ReferrerFilter {
        artifact_type: Some(artifact_type.to_owned()),
        ..ReferrerFilter::default()
    };
    let mut entries = client
        .list_referrers(&subject, &filter)
        .await
        .with_context(|| format!("listing the referrers of {subject}"))?;
    sort_newest_first(&mut entries);
    Ok((subject, entries))
}

fn run_reports_list(args: &ReportsListArgs) -> anyhow::Result<ExitCode> {
    let image = parse_image(&args.image)?;
    let client = args.registry.client_for(&image, Access::Pull)?;
    let (_, entries) = block_on(list_newest_first(&client, &image, BUNDLE_MEDIA_TYPE))??;
    let annotation = |d: &Descriptor, key: &str| d.annotations.get(key).cloned();
    let out = match args.format {
        ListFormat::Json => {
            let list: Vec<_> = entries
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "digest": d.digest,
                        "size": d.size,
                        "created": annotation(d, CREATED_ANNOTATION),
                        "predicateType": annotation(d, PREDICATE_TYPE_ANNOTATION),
                        "annotations": d.annotations,
                    })
                })
                .collect();
            let mut out = serde_json::to_vec_pretty(&list)?;
            out.push(b'\n');
            out
        }
        ListFormat::Text => entries
            .iter()
            .map(|d| {
                format!(
                    "{}  {}  {}\n",
                    d.digest,
                    annotation(d, CREATED_ANNOTATION).unwrap_or_else(|| "-".to_owned()),
                    annotation(d, PREDICATE_TYPE_ANNOTATION).unwrap_or_else(|| "-".to_owned())
                )
            })
            .collect::<String>()
            .into_bytes(),
    };
    match std::io::stdout().lock().write_all(&out) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to stdout")?,
    }
    Ok(EXIT_OK)
}

/// A report bundle pulled from the registry, or why there is none to use.
pub(super) struct FetchedReport {
    /// The image, for messages.
    pub(super) subject: String,
    /// The image's digest.
    pub(super) image: Digest,
    pub(super) digest: Digest,
    pub(super) bundle: Vec<u8>,
}

/// Pulls the report `wanted` (or the newest) of `image`. `Ok(Err(reason))`: nothing usable (no report, not
/// a report); `Err`: bad input or a registry error.
fn fetch_report(
    image: &str,
    wanted: Option<&str>,
    registry: &RegistryArgs,
) -> anyhow::Result<Result<FetchedReport, String>> {
    let image = parse_image(image)?;
    let wanted: Option<Digest> = match wanted {
        Some(d) => Some(
            d.parse()
                .with_context(|| format!("--digest {d:?} is not sha256:<64 hex>"))?,
        ),
        None => None,
    };
    let client = registry.client_for(&image, Access::Pull)?;
    let pulled = block_on(async {
        let (subject, entries) = list_newest_first(&client, &image, BUNDLE_MEDIA_TYPE).await?;
        let digest = match wanted {
            Some(d) => d,
            None => match entries.first() {
                Some(newest) => newest.digest.parse()?,
                None => return Ok(Err(format!("{subject} has no reports"))),
            },
        };
        let artifact = client
            .pull_referrer(&subject, &digest)
            .await
            .with_context(|| format!("pulling the report {digest}"))?;
        Ok::<_, anyhow::Error>(Ok((subject, artifact)))
    })??;
    let (subject, artifact) = match pulled {
        Ok(pulled) => pulled,
        Err(message) => return Ok(Err(message)),
    };
    let image = subject
        .digest()
        .cloned()
        .context("a resolved reference carries its digest")?;
    Ok(report_from_artifact(subject.to_string(), image, artifact))
}

/// The report bundle layer of `artifact`, a referrer of `image`; `Err(reason)` when it is not a report.
pub(super) fn report_from_artifact(
    subject: String,
    image: Digest,
    artifact: linkguard_oci::Artifact,
) -> Result<FetchedReport, String> {
    // Without `artifactType` an artifact's type is its config's mediaType (image-spec 1.1; how referrers
    // lists report it, and how image-spec 1.0 clients such as oras-py's push() type an artifact).
    let artifact_type = artifact
        .manifest
        .artifact_type
        .as_deref()
        .unwrap_or(artifact.manifest.config.media_type.as_str());
    if artifact_type != BUNDLE_MEDIA_TYPE {
        return Err(format!(
            "{} is not a report: its artifactType is {artifact_type:?}",
            artifact.digest
        ));
    }
    let Some((_, bundle)) = artifact
        .layers
        .iter()
        .find(|(d, _)| d.media_type == BUNDLE_MEDIA_TYPE)
    else {
        return Err(format!(
            "report {} has no {BUNDLE_MEDIA_TYPE} layer",
            artifact.digest
        ));
    };
    Ok(FetchedReport {
        subject,
        image,
        digest: artifact.digest.clone(),
        bundle: bundle.clone(),
    })
}

fn run_reports_pull(args: &ReportsPullArgs) -> anyhow::Result<ExitCode> {
    let report = match fetch_report(&args.image, args.digest.as_deref(), &args.registry)? {
        Ok(report) => report,
        Err(message) => return Ok(refuse(&message)),
    };
    super::write_atomically(&args.output, &report.bundle, 0o644, true)?;
    eprintln!(
        "wrote report {} to {}",
        report.digest,
        args.output.display()
    );
    Ok(EXIT_OK)
}

fn run_reports_verify(args: &ReportsVerifyArgs) -> anyhow::Result<ExitCode> {
    let key = VerifyingKey::from_pem_file(&args.key)
        .with_context(|| format!("reading the public key {}", args.key.display()))?;
    let fetched = match (&args.bundle, &args.image) {
        (Some(bundle), image) => {
            super::bundle::fetch_report(bundle, args.digest.as_deref(), image.as_deref())?
        }
        (None, Some(image)) => fetch_report(image, args.digest.as_deref(), &args.registry)?,
        (None, None) => anyhow::bail!("pass --image REF, or --bundle FILE to verify offline"),
    };
    let report = match fetched {
        Ok(report) => report,
        Err(message) => return Ok(refuse(&message)),
    };
    let statement = match attest::verify_statement_bundle(&report.bundle, &key) {
        Ok(statement) => statement,
        Err(err) if err.is_verification_failure() => {
            return Ok(refuse(&format!("report {}: {err}", report.digest)));
        }
        Err(err) => return Err(err).with_context(|| format!("report {}", report.digest)),
    };
    // The signature proves who wrote the statement; the subject proves which image it is about.
    let image_hex = report.image.hex().to_owned();
    let about_image = statement
        .subject
        .iter()
        .any(|s| s.digest.get("sha256").is_some_and(|hex| *hex == image_hex));
    if !about_image {
        return Ok(refuse(&format!(
            "report {} is signed by key {} but is about {:?}, not {}",
            report.digest,
            key.keyid(),
            statement
                .subject
                .iter()
                .map(|s| &s.digest)
                .collect::<Vec<_>>(),
            report.subject
        )));
    }
    println!(
        "OK: report {} of {} is signed by key {}\npredicateType: {}\nverdict:       {}",
        report.digest,
        report.subject,
        key.keyid(),
        statement.predicate_type,
        statement.verdict().and_then(|v| v.as_str()).unwrap_or("-")
    );
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(digest: &str, created: Option<&str>) -> Descriptor {
        let mut annotations = BTreeMap::new();
        if let Some(c) = created {
            annotations.insert(CREATED_ANNOTATION.to_owned(), c.to_owned());
        }
        Descriptor {
            media_type: linkguard_oci::OCI_MANIFEST.to_owned(),
            digest: digest.to_owned(),
            size: 1,
            artifact_type: None,
            annotations,
        }
    }

    #[test]
    fn newest_first_by_created_then_undated_last() {
        let mut entries = vec![
            desc("sha256:a", Some("2026-11-22T04:00:00Z")),
            desc("sha256:b", None),
            desc("sha256:c", Some("2026-11-22T05:00:00.500+01:00")),
            desc("sha256:d", Some("2026-11-22T04:30:00.001Z")),
        ];
        sort_newest_first(&mut entries);
        let order: Vec<_> = entries.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(order, ["sha256:d", "sha256:c", "sha256:a", "sha256:b"]);
    }
}
