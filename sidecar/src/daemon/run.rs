// SPDX-License-Identifier: Apache-2.0
//! The sidecar loop: `linkguard sidecar`.
//!
//! ```text
//! startup: signing key, trusted keys, directories (exit 2 when wrong) -> HTTP server -> spool + chain
//!          -> image digest -> publisher (pushes what a previous run spooled) -> function map (retried
//!          until present and trusted) -> BPF probes on the probe thread
//! loop:    probe thread: poll processes, attach, flush observations every flushIntervalSeconds
//!          every verify.intervalSeconds: flush + re-arm, verify the window over the observation files,
//!          sign the report (pod identity + chain link), spool it, keep it as the latest, wake the publisher
//!          publisher: push the spool in order, back off while the registry fails
//! SIGTERM: detach + last flush, final report, push until shutdown.deadlineSeconds; the rest stays spooled
//! ```
//!
//! One current-thread runtime runs everything async (HTTP, registry, timers); the probe side is a plain
//! thread ([`probing`]) and verification a blocking task. Conditions worth alerting on are logged when
//! they change ([`alerts::Condition`]); the metrics say how things are right now.

mod alerts;
mod cycle;
mod error;
mod map_source;
mod probing;
mod publish;
mod registry;

pub use alerts::Condition;
pub use error::DaemonError;
pub use map_source::{LoadedMap, MapProblem};
pub use probing::ProbeState;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument as _, info, info_span, warn};

use linkguard_oci::Reference;

use crate::attest::{SigningKey, VerifyingKey};
use crate::chain::{self, Chain, Resumption};
use crate::probe::{Mode, ObserverConfig, Origin, OutputConfig, Targets};
use crate::verify;

use super::config::{ObservationFormat, ProbeMode, Validated};
use super::http::{self, ServerOptions};
use super::metrics::{BpfStats, Metrics};
use super::spool::Spool;

use probing::{ProbeHandle, ProbeSettings};
use publish::{PublisherTask, record_spool};
use registry::{Registry, load_trusted_keys};

/// `/healthz` fails when the loop has not ticked for this long.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// The loop's housekeeping tick (heartbeat, readiness, gauges).
const TICK: Duration = Duration::from_secs(1);
/// First delay of the startup retries (image digest, function map); doubles up to pullRetrySeconds.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Runs the sidecar until SIGTERM/SIGINT; `Ok` after a clean shutdown.
pub async fn run(settings: Validated) -> Result<(), DaemonError> {
    let config = &settings.config;
    // What makes the sidecar useless when wrong is checked before anything starts (exit 2).
    let key = SigningKey::from_pem_file(&config.signing.key, &config.signing.password_env)
        .map_err(|source| DaemonError::SigningKey {
            path: config.signing.key.clone(),
            source,
        })?;
    let trusted = load_trusted_keys(&settings.trusted_keys)?;
    for (key, dir) in [
        ("observations.directory", &config.observations.directory),
        ("spool.directory", &config.spool.directory),
    ] {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::Directory {
            key,
            path: dir.clone(),
            source,
        })?;
    }
    let registry = Registry::new(&settings)?;
    let shutdown = Shutdown::install()?;

    let state = Arc::new(http::State::new(Metrics::default(), HEARTBEAT_TIMEOUT));
    let listener = http::bind(settings.listen)
        .await
        .map_err(|source| DaemonError::Listen { source })?;
    let (stop_http, mut http_stopped) = watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&state),
        ServerOptions::default(),
        async move {
            let _ = http_stopped.wait_for(|stopped| *stopped).await;
        },
    ));
    info!(listen = %settings.listen, image = %settings.image, keyid = %key.keyid(), "sidecar starting");

    let (spool, recovery) = Spool::open(&config.spool.directory, config.spool.max_bytes)
        .map_err(|source| DaemonError::Spool { source })?;
    if recovery.recovered > 0 || !recovery.quarantined.is_empty() {
        info!(
            pending = recovery.recovered,
            quarantined = recovery.quarantined.len(),
            "spool recovered from the previous run"
        );
    }
    let pod = cycle::pod_identity(&config.pod);
    let (chain, resumption) = spool
        .open_chain(&chain::pod_key(pod.as_ref()))
        .map_err(|source| DaemonError::Spool { source })?;
    match &resumption {
        Resumption::Resumed { sequence } => {
            info!(sequence, "report chain resumed from the spool directory")
        }
        Resumption::Fresh(reason) => info!(?reason, "report chain starts anew"),
    }
    record_spool(state.metrics(), spool.stats());
    restore_latest(&state, &settings, &key);

    let mut daemon = Daemon {
        settings,
        key,
        trusted,
        registry,
        state: Arc::clone(&state),
        spool,
        chain,
        pod,
        shutdown,
        publisher: None,
        conditions: Conditions::default(),
        ready: None,
        probe: ProbeState::default(),
        probing_since: None,
        boundaries: std::collections::VecDeque::new(),
    };
    let result = daemon.main().await;
    state.set_stopped("stopped");
    let _ = stop_http.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    info!(ok = result.is_ok(), "sidecar stopped");
    result
}

/// Serves the latest report of the previous run (when it still verifies with our key) until a new one
/// is signed: a restart does not leave `/report/latest` empty for a whole verify interval.
fn restore_latest(state: &http::State, settings: &Validated, key: &SigningKey) {
    let path = cycle::latest_report_path(&settings.config.observations);
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    match crate::attest::verify_statement_bundle(&bytes, &key.verifying_key()) {
        Ok(_) => {
            let digest = state.set_latest_report(bytes);
            info!(path = %path.display(), %digest, "serving the latest report of the previous run");
        }
        Err(err) => {
            warn!(path = %path.display(), %err, "ignoring the latest report of the previous run")
        }
    }
}

/// SIGTERM/SIGINT, as a flag every wait selects on.
struct Shutdown {
    requested: watch::Receiver<bool>,
}

impl Shutdown {
    fn install() -> Result<Self, DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = |kind| signal(kind).map_err(|source| DaemonError::Signals { source });
        let mut term = signals(SignalKind::terminate())?;
        let mut int = signals(SignalKind::interrupt())?;
        let (tx, requested) = watch::channel(false);
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            info!(
                signal = name,
                "signal received: flushing, final report, pushing"
            );
            let _ = tx.send(true);
            // A second signal means "now": what is spooled stays spooled (it is durable already).
            let code = tokio::select! {
                _ = term.recv() => 128 + libc::SIGTERM,
                _ = int.recv() => 128 + libc::SIGINT,
            };
            warn!("second signal: exiting now; reports not pushed stay in the spool");
            std::process::exit(code);
        });
        Ok(Self { requested })
    }

    fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    async fn wait(&mut self) {
        let _ = self.requested.wait_for(|r| *r).await;
    }
}

/// The conditions logged on their edges.
struct Conditions {
    resolve: Condition,
    map: Condition,
    app_not_probed: Condition,
    app_not_found: Condition,
    verify: Condition,
    keep: Condition,
    latest: Condition,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            resolve: Condition::new("image-unresolved"),
            map: Condition::new("function-map-unavailable"),
            app_not_probed: Condition::new("app-not-probed"),
            app_not_found: Condition::new("app-not-found"),
            verify: Condition::new("verification-failing"),
            keep: Condition::new("report-not-kept"),
            latest: Condition::new("latest-report-write-failing"),
        }
    }
}

struct Daemon {
    settings: Validated,
    key: SigningKey,
    trusted: Vec<VerifyingKey>,
    registry: Registry,
    state: Arc<http::State>,
    spool: Spool,
    chain: Chain,
    pod: Option<crate::report::PodIdentity>,
    shutdown: Shutdown,
    publisher: Option<PublisherTask>,
    conditions: Conditions,
    ready: Option<bool>,
    /// The probe thread's last published state.
    probe: ProbeState,
    /// When the probe thread started counting: no record of this run starts earlier.
    probing_since: Option<chrono::DateTime<Utc>>,
    /// The ends of the flushes at earlier verify ticks, oldest first: where windows may start.
    boundaries: std::collections::VecDeque<chrono::DateTime<Utc>>,
}

impl Daemon {
    fn metrics(&self) -> &Metrics {
        self.state.metrics()
    }

    async fn main(&mut self) -> Result<(), DaemonError> {
        let loaded = match self.settings.config.function_map.file.clone() {
            Some(path) => Some(self.map_from_file(&path)?),
            None => None,
        };
        let Some(subject) = self.subject(loaded.as_ref()).await? else {
            return self.stop_publisher(self.deadline_from_now()).await;
        };
        self.start_publisher(&subject);
        let map = match loaded {
            Some(map) => map,
            None => match self.pull_map(&subject).await {
                Some(map) => map,
                None => return self.stop_publisher(self.deadline_from_now()).await,
            },
        };
        info!(
            origin = %map.origin,
            service = %map.map.predicate.service,
            paths = map.map.predicate.expected_paths.len(),
            signed_by = map.signed_by.as_deref().unwrap_or("-"),
            "function map loaded"
        );
        let map = Arc::new(map);
        let probes = self.start_probes(&map)?;
        let result = self.observe(&map, &probes).await;
        self.set_not_ready("shutting down");
        let deadline = self.deadline_from_now();
        // The last flush, then the final report over everything observed.
        let stopped = tokio::time::timeout_at(deadline, probes.stop()).await;
        match stopped {
            Ok(Ok(end)) if result.is_ok() => self.report(&map, end, Instant::now()).await,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => warn!(%err, "the last observations could not be written"),
            Err(_) => warn!("the probe thread did not stop before the shutdown deadline"),
        }
        self.stop_publisher(deadline).await?;
        result
    }

    /// The shutdown deadline when shutdown starts now.
    fn deadline_from_now(&self) -> Instant {
        Instant::now() + self.settings.shutdown_deadline()
    }

    /// The image at its digest: the map file's subject, the reference's digest, or resolved (retried).
    /// `None` on shutdown.
    async fn subject(
        &mut self,
        file_map: Option<&LoadedMap>,
    ) -> Result<Option<Reference>, DaemonError> {
        let image = self.settings.image.clone();
        if let Some(map) = file_map {
            let hex = map
                .map
                .subject
                .digest
                .get("sha256")
                .cloned()
                .unwrap_or_default();
            let digest = format!("sha256:{hex}")
                .parse()
                .map_err(|e: linkguard_oci::Error| DaemonError::MapFile {
                    path: PathBuf::from(&map.origin),
                    reason: format!("its subject digest: {e}"),
                })?;
            return Ok(Some(image.at_digest(digest)));
        }
        if image.digest().is_some() {
            return Ok(Some(image));
        }
        let mut delay = FIRST_RETRY;
        loop {
            self.set_not_ready(format!("resolving the app image {image}"));
            let resolved =
                tokio::time::timeout(self.registry.timeout, self.registry.pull.resolve(&image))
                    .await;
            match resolved {
                Ok(Ok(digest)) => {
                    self.conditions.resolve.clear();
                    info!(%image, %digest, "app image resolved");
                    return Ok(Some(image.at_digest(digest)));
                }
                Ok(Err(err)) => {
                    self.metrics().inc_registry_errors("resolve");
                    self.conditions.resolve.raise(&format_args!(
                        "cannot resolve the app image {image}: {err} (retrying; not ready meanwhile)"
                    ));
                }
                Err(_) => {
                    self.metrics().inc_registry_errors("resolve");
                    self.conditions.resolve.raise(&format_args!(
                        "resolving the app image {image} timed out after registry.timeoutSeconds (retrying)"
                    ));
                }
            }
            if !self.pause(delay).await {
                return Ok(None);
            }
            delay = (delay * 2).min(self.settings.pull_retry());
        }
    }

    fn map_from_file(&self, path: &std::path::Path) -> Result<LoadedMap, DaemonError> {
        let bad = |reason: String| DaemonError::MapFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let image_hex = self.settings.image.digest().map(|d| d.hex().to_owned());
        map_source::decode(
            &path.display().to_string(),
            None,
            &bytes,
            &self.trusted,
            image_hex.as_deref(),
        )
        .map_err(|problem| bad(problem.to_string()))
    }

    /// The newest trusted map of `subject`, retried with backoff; `None` on shutdown.
    async fn pull_map(&mut self, subject: &Reference) -> Option<LoadedMap> {
        let mut delay = FIRST_RETRY;
        loop {
            let pulled = tokio::time::timeout(
                self.registry.timeout,
                map_source::pull(&self.registry.pull, subject, &self.trusted),
            )
            .await
            .unwrap_or_else(|_| {
                Err(MapProblem::Registry {
                    reason: "timed out after registry.timeoutSeconds".to_owned(),
                })
            });
            match pulled {
                Ok(map) => {
                    self.conditions.map.clear();
                    return Some(map);
                }
                Err(problem) => {
                    if problem.is_registry_error() {
                        self.metrics().inc_registry_errors("pull_map");
                    }
                    self.set_not_ready(format!("no usable function map: {problem}"));
                    self.conditions.map.raise(&problem);
                }
            }
            if !self.pause(delay).await {
                return None;
            }
            delay = (delay * 2).min(self.settings.pull_retry());
        }
    }

    /// Waits `delay` while keeping the heartbeat; false when shutdown was requested.
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            self.state.heartbeat();
            let step = (until - Instant::now()).min(TICK);
            if step.is_zero() {
                return !self.shutdown.is_requested();
            }
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = self.shutdown.wait() => return false,
            }
        }
    }

    fn set_not_ready(&mut self, reason: impl Into<String>) {
        let reason = reason.into();
        if self.ready != Some(false) || self.state.not_ready_reason().as_deref() != Some(&reason) {
            self.state.set_not_ready(reason);
        }
        self.metrics().set_ready(false);
        self.ready = Some(false);
    }

    fn set_ready(&mut self) {
        if self.ready != Some(true) {
            info!("ready: function map loaded and probes attached");
            self.state.set_ready();
        }
        self.metrics().set_ready(true);
        self.ready = Some(true);
    }

    fn start_probes(&mut self, map: &LoadedMap) -> Result<ProbeHandle, DaemonError> {
        let config = &self.settings.config;
        let mode = match config.probe.mode {
            ProbeMode::Coverage => Mode::Coverage,
            ProbeMode::Count => Mode::Count,
        };
        let load = linkguard_bpf::LoadOptions {
            max_probes: config.probe.max_probes,
            first_seen_events: mode == Mode::Coverage,
            ..linkguard_bpf::LoadOptions::default()
        };
        let backend =
            linkguard_bpf::Probes::load(&load).map_err(|source| DaemonError::Probes { source })?;
        let targets = Targets::from_map(&map.map, mode == Mode::Coverage);
        info!(
            mode = ?mode,
            files = targets.files().len(),
            functions = targets.symbol_count(),
            cgroup = config.probe.cgroup.as_deref().unwrap_or("-"),
            "looking for the app's processes"
        );
        let settings = ProbeSettings {
            observer: ObserverConfig {
                mode,
                origin: Origin {
                    pod: cycle::record_pod(&config.pod),
                    container: config.pod.container.clone(),
                },
                max_records: probing::MAX_RECORDS,
            },
            cgroup: config.probe.cgroup.clone(),
            poll_interval: self.settings.poll_interval(),
            flush_interval: self.settings.flush_interval(),
            rearm_every: Duration::from_secs(self.window_seconds(map)),
            output: OutputConfig {
                path: config.observations.current_file(),
                gzip: config.observations.format == ObservationFormat::NdjsonGzip,
                rotate_bytes: Some(config.observations.rotate_size_bytes),
                retain: config.observations.retain,
                max_unwritten: probing::MAX_RECORDS,
            },
        };
        self.set_not_ready("no app process probed yet");
        self.probing_since = Some(Utc::now());
        ProbeHandle::start(backend, targets, settings)
            .map_err(|source| DaemonError::Output { source })
    }

    /// Keeps `end` as a place where a later window may start, and forgets those no window reaches.
    fn remember_boundary(&mut self, end: chrono::DateTime<Utc>, window_seconds: u64) {
        self.boundaries.push_back(end);
        let horizon = i64::try_from(window_seconds.saturating_mul(2))
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|keep| end.checked_sub_signed(keep));
        while self
            .boundaries
            .front()
            .is_some_and(|b| horizon.is_some_and(|h| *b < h))
        {
            self.boundaries.pop_front();
        }
    }

    fn window_seconds(&self, map: &LoadedMap) -> u64 {
        self.settings
            .config
            .verify
            .window_seconds
            .unwrap_or(map.map.predicate.coverage.window_seconds)
            // The map's window is not bounded by validation: clamp it (as verify.windowSeconds is)
            // so `Instant::now() + rearm_every` cannot overflow.
            .clamp(1, 86_400 * 31)
    }

    /// The steady state, until shutdown.
    async fn observe(
        &mut self,
        map: &Arc<LoadedMap>,
        probes: &ProbeHandle,
    ) -> Result<(), DaemonError> {
        let interval = self.settings.verify_interval();
        let attach_deadline = Instant::now() + self.settings.attach_timeout();
        let mut next_verify = Instant::now() + interval;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe_state = probes.state();
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_verify) => {
                    let tick_at = Instant::now();
                    next_verify = tick_at + interval;
                    match probes.flush(true).await {
                        Ok(end) => self.report(map, end, tick_at).await,
                        // The probe thread logged why; the files hold what was written before.
                        Err(_) => self.report(map, Utc::now(), tick_at).await,
                    }
                }
                changed = probe_state.changed() => {
                    if changed.is_err() {
                        return Err(DaemonError::ProbeThread);
                    }
                    let state = probe_state.borrow_and_update().clone();
                    self.apply_probe_state(&state, attach_deadline);
                }
                _ = tick.tick() => {
                    self.state.heartbeat();
                    ticks += 1;
                    let state = probe_state.borrow().clone();
                    self.apply_probe_state(&state, attach_deadline);
                    if ticks % 10 == 1 {
                        self.metrics().set_bpf_stats(BpfStats::read_self());
                    }
                }
                _ = self.shutdown.wait() => return Ok(()),
            }
        }
    }

    fn apply_probe_state(&mut self, probe: &ProbeState, attach_deadline: Instant) {
        self.probe = probe.clone();
        let metrics = self.metrics();
        metrics.set_probes_attached(probe.attached);
        metrics.set_probe_attach_failures(probe.attach_failures);
        metrics.set_observation_buffer_full(probe.buffer_full);
        metrics.set_events_dropped_total(probe.events_dropped);
        if probe.attached > 0 {
            self.conditions.app_not_probed.clear();
            self.set_ready();
            return;
        }
        let reason = if probe.followed == 0 {
            "no process of the app found yet (looking for the map's entrypoints)".to_owned()
        } else {
            format!(
                "{} app process(es) found but no probe attached ({} functions refused; see the \
                 binary-mismatch and attach-failed warnings)",
                probe.followed, probe.attach_failures
            )
        };
        if Instant::now() >= attach_deadline {
            self.conditions.app_not_probed.raise(&format_args!(
                "{reason} after probe.attachTimeoutSeconds; still looking (not ready)"
            ));
        }
        self.set_not_ready(reason);
    }

    /// Verifies the window ending at `end`, signs the report, keeps it and hands it to the publisher.
    async fn report(&mut self, map: &Arc<LoadedMap>, end: chrono::DateTime<Utc>, tick: Instant) {
        // One span per verification cycle; instrumented (not entered) because the cycle awaits.
        let span = info_span!("verification", window_end = %verify_end_text(end));
        self.verify_sign_keep(map, end, tick).instrument(span).await;
    }

    async fn verify_sign_keep(
        &mut self,
        map: &Arc<LoadedMap>,
        end: chrono::DateTime<Utc>,
        tick: Instant,
    ) {
        if !self.probe.ever_followed {
            self.conditions.app_not_found.raise(&format_args!(
                "no report: no process of the app has been found yet (entrypoints {:?})",
                map.map
                    .predicate
                    .expected_paths
                    .iter()
                    .map(|p| p.entrypoint.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
            ));
            return;
        }
        self.conditions.app_not_found.clear();
        let window_seconds = self.window_seconds(map);
        let window = cycle::window_at(
            end,
            window_seconds,
            self.probing_since,
            self.boundaries.make_contiguous(),
        );
        self.remember_boundary(end, window_seconds);
        let files = cycle::observation_files(&self.settings.config.observations);
        let started = std::time::Instant::now();
        let verify_map = Arc::clone(map);
        let verified = tokio::task::spawn_blocking(move || {
            verify::verify_files(&verify_map.map, &files, window)
        })
        .await;
        let result = match verified {
            Ok(Ok(result)) => {
                self.conditions.verify.clear();
                result
            }
            Ok(Err(err)) => {
                self.conditions.verify.raise(&format_args!(
                    "verification failed, no report this cycle: {err}"
                ));
                return;
            }
            Err(err) => {
                self.conditions
                    .verify
                    .raise(&format_args!("verification task failed: {err}"));
                return;
            }
        };
        let took = started.elapsed();
        cycle::record_metrics(self.metrics(), &result, took);
        let link = self.chain.next_link();
        let signed = match cycle::sign_report(
            map,
            &result,
            self.pod.clone(),
            &link,
            &self.key,
            Utc::now(),
        ) {
            Ok(signed) => signed,
            Err(err) => {
                self.conditions
                    .keep
                    .raise(&format_args!("signing the report failed: {err}"));
                return;
            }
        };
        let kept = if self.settings.config.registry.push_reports {
            self.spool
                .enqueue(&mut self.chain, &link, &signed.bundle)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            self.chain
                .record(&link, &signed.bundle)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        match kept {
            Ok(()) => {
                self.conditions.keep.clear();
            }
            Err(err) => {
                self.conditions.keep.raise(&format_args!(
                    "report {} was not kept: {err}",
                    link.sequence
                ));
            }
        }
        record_spool(self.metrics(), self.spool.stats());
        if let Some(publisher) = &self.publisher {
            publisher.wake();
        }
        let path = cycle::latest_report_path(&self.settings.config.observations);
        match cycle::write_latest(&path, &signed.bundle) {
            Ok(()) => {
                self.conditions.latest.clear();
            }
            Err(err) => {
                self.conditions.latest.raise(&format_args!(
                    "writing the latest report to {} failed: {err}{}",
                    path.display(),
                    if crate::daemon::spool::is_disk_full(&err) {
                        " (disk full)"
                    } else {
                        ""
                    }
                ));
            }
        }
        let digest = self.state.set_latest_report(signed.bundle);
        let rate = &result.observation_rate;
        info!(
            sequence = link.sequence,
            verdict = ?result.verdict,
            observed = rate.observed,
            expected = rate.total,
            unexpected = result.unexpected_symbols.len(),
            records = result.observations.records,
            %digest,
            verify_ms = took.as_millis() as u64,
            tick_to_signed_ms = tick.elapsed().as_millis() as u64,
            "report signed"
        );
    }

    fn start_publisher(&mut self, subject: &Reference) {
        if !self.settings.config.registry.push_reports {
            info!(
                "registry.pushReports is false: reports are kept locally and served on /report/latest"
            );
            return;
        }
        let Some(client) = self.registry.push.take() else {
            return;
        };
        self.publisher = Some(PublisherTask::start(
            client,
            subject,
            self.spool.clone(),
            Arc::clone(&self.state),
            self.registry.timeout,
        ));
    }

    /// Tells the publisher to push what it can before the shutdown deadline, and waits for it.
    async fn stop_publisher(&mut self, deadline: Instant) -> Result<(), DaemonError> {
        if let Some(task) = self.publisher.take() {
            task.stop(deadline).await;
        }
        let left = self.spool.stats().entries;
        if left > 0 {
            warn!(
                spooled = left,
                directory = %self.spool.dir().display(),
                "reports not pushed before the shutdown deadline stay in the spool; the next start pushes them first"
            );
        }
        Ok(())
    }
}

fn verify_end_text(end: chrono::DateTime<Utc>) -> String {
    crate::observation::format_time(end)
}
