// SPDX-License-Identifier: Apache-2.0
//! One verification cycle's pieces: which observation files, which window, the signed report, and what
//! of it goes into the metrics. Kept free of I/O ordering concerns so each is unit-tested.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike as _, Utc};

use crate::attest::{self, SigningKey};
use crate::chain::ChainLink;
use crate::daemon::config::ObservationsConfig;
use crate::daemon::metrics::Metrics;
use crate::probe::output::rotated_name;
use crate::report::{self, PodIdentity, Producer, ReportContext};
use crate::verify::{Verdict, VerificationResult, Window};

use super::map_source::LoadedMap;

/// The observation files that exist, oldest first: `<current>.<retain>` ... `<current>.1`, `<current>`.
pub fn observation_files(config: &ObservationsConfig) -> Vec<PathBuf> {
    let current = config.current_file();
    (1..=config.retain)
        .rev()
        .map(|n| rotated_name(&current, n))
        .chain(std::iter::once(current.clone()))
        .filter(|p| p.is_file())
        .collect()
}

/// The window of `seconds` ending at `end` (the end of the interval just flushed).
pub fn window_ending(end: DateTime<Utc>, seconds: u64) -> Window {
    let from = i64::try_from(seconds)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|length| end.checked_sub_signed(length));
    Window {
        from,
        to: Some(end),
    }
}

/// The window verified at `end`: about `seconds` long, but starting on a flush boundary.
///
/// Observation records span the interval between two flushes, and verification counts a record only
/// when it lies wholly inside the window. `end - seconds` falls a few milliseconds after the boundary
/// it is meant to be (the timer drifts), which would leave every record of the window outside it. So
/// the window starts at the earliest `boundaries` instant (flushes at earlier verify ticks, and when
/// probing began) no earlier than `end - seconds - tolerance`, the tolerance being a quarter of the
/// window, at most 10 s. When probing began after that point (a restart), the window reaches back to
/// `end - seconds`, so that the previous run's records inside it still count.
pub fn window_at(
    end: DateTime<Utc>,
    seconds: u64,
    probing_since: Option<DateTime<Utc>>,
    boundaries: &[DateTime<Utc>],
) -> Window {
    let plain = window_ending(end, seconds);
    let Some(target) = plain.from else {
        return plain;
    };
    let tolerance_ms = i64::try_from(seconds.saturating_mul(250).min(10_000)).unwrap_or(10_000);
    let Some(earliest) = target.checked_sub_signed(TimeDelta::milliseconds(tolerance_ms)) else {
        return plain;
    };
    if probing_since.is_some_and(|since| since > target) {
        return plain;
    }
    let from = probing_since
        .iter()
        .chain(boundaries)
        .copied()
        .filter(|b| *b >= earliest && *b < end)
        .min()
        .map_or(target, to_record_precision);
    Window {
        from: Some(from),
        to: Some(end),
    }
}

/// `at` rounded down to the millisecond: records are written with millisecond timestamps, so a record
/// that starts at a flush boundary reads as starting up to 1 ms before the boundary's exact instant.
fn to_record_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(at)
}

/// Where the latest signed report is kept on disk: `latest-report.json` inside the observations
/// directory, the one place the sidecar is sure to be able to write (with a read-only root filesystem
/// only the observations and spool volumes are writable). [`observation_files`] lists the current
/// observation file and its rotated names only, so the report is never read as observations.
pub fn latest_report_path(config: &ObservationsConfig) -> PathBuf {
    config.directory.join("latest-report.json")
}

/// A signed report: the bundle bytes exactly as they are spooled and pushed.
#[derive(Debug, Clone)]
pub struct SignedReport {
    pub bundle: Vec<u8>,
}

/// Builds the statement for `result` with the pod identity and the chain `link`, and signs it.
pub fn sign_report(
    map: &LoadedMap,
    result: &VerificationResult,
    pod: Option<PodIdentity>,
    link: &ChainLink,
    key: &SigningKey,
    now: DateTime<Utc>,
) -> attest::Result<SignedReport> {
    let mut ctx = ReportContext {
        sidecar: Producer::default(),
        pod,
        generated_at: now,
        ..ReportContext::now()
    };
    link.apply(&mut ctx);
    let statement = report::build_statement(&map.map, &map.sha256, result, &ctx);
    let bundle = attest::sign_statement(&statement.to_json(), key)?.to_json_pretty();
    Ok(SignedReport { bundle })
}

/// The pod identity of the configuration, `None` when nothing is known.
pub fn pod_identity(pod: &crate::daemon::config::PodConfig) -> Option<PodIdentity> {
    let identity = PodIdentity {
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        node: pod.node.clone(),
        container: pod.container.clone(),
    };
    (identity != PodIdentity::default()).then_some(identity)
}

/// Sets the verification gauges.
pub fn record_metrics(metrics: &Metrics, result: &VerificationResult, took: Duration) {
    // No expected path: nothing to rate (the gauge keeps its previous value rather than inventing one).
    if let Some(rate) = result.observation_rate.rate {
        metrics.set_observation_rate(rate);
    }
    metrics.set_observation_rates_by_tag(
        result
            .per_tag
            .iter()
            .filter_map(|(tag, r)| r.rate.map(|rate| (tag.clone(), rate))),
    );
    let omitted = result.unexpected_omitted.as_ref().map_or(0, |o| o.calls);
    metrics.set_unexpected_symbols(result.unexpected_symbols.len() as u64 + omitted);
    metrics.set_verify_duration(took);
    metrics.set_verdict(result.verdict == Verdict::Pass);
}

/// `namespace/name` of the pod for observation records.
pub fn record_pod(pod: &crate::daemon::config::PodConfig) -> Option<String> {
    match (&pod.namespace, &pod.name) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
        (None, Some(name)) => Some(name.clone()),
        _ => None,
    }
}

/// Writes the latest report through a temporary file so readers see the old or the new one whole.
pub fn write_latest(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    use std::os::unix::fs::PermissionsExt as _;
    let mut tmp = tempfile::Builder::new()
        .prefix(".latest-report-")
        .tempfile_in(dir)?;
    // A signed report is public evidence, not a secret.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::{ObservationFormat, PodConfig};

    #[test]
    fn observation_files_are_listed_oldest_first_and_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let config = ObservationsConfig {
            directory: dir.path().to_path_buf(),
            format: ObservationFormat::NdjsonGzip,
            retain: 3,
            ..ObservationsConfig::default()
        };
        assert!(observation_files(&config).is_empty());
        for name in [
            "observations.ndjson.gz",
            "observations.ndjson.1.gz",
            "observations.ndjson.3.gz",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        // The latest report (and its temporary file) share the directory but are not observations.
        std::fs::write(latest_report_path(&config), b"{}").unwrap();
        std::fs::write(dir.path().join(".latest-report-x"), b"{}").unwrap();
        let names: Vec<String> = observation_files(&config)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "observations.ndjson.3.gz",
                "observations.ndjson.1.gz",
                "observations.ndjson.gz"
            ]
        );
    }

    #[test]
    fn the_window_ends_at_the_flush() {
        let end = DateTime::parse_from_rfc3339("2026-01-01T00:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = window_ending(end, 1800);
        assert_eq!(w.to, Some(end));
        assert_eq!(w.from.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_drifted_tick_still_starts_the_window_at_the_previous_flush() {
        // 3 s windows, verified every 3 s; the second tick comes 4 ms late.
        let since = at("2026-01-01T00:00:00.000Z");
        let first = at("2026-01-01T00:00:03.002Z");
        let second = at("2026-01-01T00:00:06.006Z");
        let w = window_at(second, 3, Some(since), &[first]);
        assert_eq!(w.from, Some(first));
        assert_eq!(w.to, Some(second));
        // The plain window would start 4 ms after the boundary, leaving the interval's records out.
        assert!(window_ending(second, 3).from.unwrap() > first);
    }

    #[test]
    fn the_window_starts_at_the_millisecond_records_are_written_with() {
        let since = at("2026-01-01T00:00:00Z");
        let boundary = at("2026-01-01T00:00:45.127402206Z");
        let end = at("2026-01-01T00:00:47.533Z");
        let w = window_at(end, 2, Some(since), &[boundary]);
        assert_eq!(w.from, Some(at("2026-01-01T00:00:45.127Z")));
        // A record from that boundary, as written to the observations file, lies inside.
        assert!(w.contains(
            at("2026-01-01T00:00:45.127Z"),
            at("2026-01-01T00:00:46.231Z")
        ));
    }

    #[test]
    fn the_first_window_starts_when_probing_began() {
        let since = at("2026-01-01T00:00:00.000Z");
        let end = at("2026-01-01T00:00:03.010Z");
        assert_eq!(window_at(end, 3, Some(since), &[]).from, Some(since));
    }

    #[test]
    fn a_long_window_takes_the_boundary_nearest_its_nominal_start() {
        let since = at("2026-01-01T00:00:00Z");
        let ticks: Vec<_> = (1..=12)
            .map(|i| since + TimeDelta::milliseconds(i * 300_000 + i * 7))
            .collect();
        let end = *ticks.last().unwrap();
        let w = window_at(end, 1800, Some(since), &ticks[..11]);
        // end - 1800 s is 84 ms after the 6th tick: that tick is where the window starts.
        assert_eq!(w.from, Some(ticks[5]));
    }

    #[test]
    fn after_a_restart_the_window_reaches_back_into_the_previous_run() {
        let end = at("2026-01-01T01:00:00Z");
        let since = at("2026-01-01T00:59:00Z");
        let w = window_at(end, 1800, Some(since), &[]);
        assert_eq!(w.from, Some(at("2026-01-01T00:30:00Z")));
    }

    #[test]
    fn a_window_shorter_than_the_verify_interval_keeps_its_length() {
        let since = at("2026-01-01T00:00:00Z");
        let previous = at("2026-01-01T00:05:00Z");
        let end = at("2026-01-01T00:10:00Z");
        let w = window_at(end, 60, Some(since), &[previous]);
        assert_eq!(w.from, Some(at("2026-01-01T00:09:00Z")));
    }

    #[test]
    fn the_latest_report_sits_inside_the_observations_directory() {
        let config = ObservationsConfig::default();
        assert_eq!(
            latest_report_path(&config),
            Path::new("/var/lib/linkguard/observations/latest-report.json")
        );
        let relative = ObservationsConfig {
            directory: PathBuf::from("obs"),
            ..ObservationsConfig::default()
        };
        assert_eq!(
            latest_report_path(&relative),
            Path::new("obs/latest-report.json")
        );
    }

    #[test]
    fn pod_identity_and_record_pod() {
        assert_eq!(pod_identity(&PodConfig::default()), None);
        let pod = PodConfig {
            name: Some("web-0".into()),
            namespace: Some("shop".into()),
            ..PodConfig::default()
        };
        assert_eq!(pod_identity(&pod).unwrap().name.as_deref(), Some("web-0"));
        assert_eq!(record_pod(&pod).as_deref(), Some("shop/web-0"));
        assert_eq!(record_pod(&PodConfig::default()), None);
    }
}
