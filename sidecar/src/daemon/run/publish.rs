// SPDX-License-Identifier: Apache-2.0
//! The publisher task: pushes the spool whenever a report is kept, in chain order, backs off while the
//! registry fails, and on shutdown pushes until the deadline. What is not pushed stays in the spool (it
//! is durable before the publisher ever sees it).
//!
//! `registry.timeoutSeconds` bounds each push ([`Publisher::with_push_timeout`]), never a whole drain:
//! after an outage the backlog drains at the registry's pace, and only a push that hangs counts as a
//! timeout (`linkguard_registry_errors_total{operation="push_report"}`, then backoff).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::info;

use linkguard_oci::Reference;

use crate::daemon::http;
use crate::daemon::metrics::Metrics;
use crate::daemon::spool::{BackoffPolicy, DrainOutcome, Publisher, Spool, SpoolEntry, SpoolStats};

use super::alerts::Condition;

/// The running publisher task.
pub(super) struct PublisherTask {
    wake: Arc<Notify>,
    stop: watch::Sender<Option<Instant>>,
    handle: tokio::task::JoinHandle<()>,
}

impl PublisherTask {
    /// Starts pushing the spool as referrers of `subject` (the image at its digest), each push bounded
    /// by `push_timeout`; a previous run's spool goes first.
    pub(super) fn start(
        client: linkguard_oci::Client,
        subject: &Reference,
        spool: Spool,
        state: Arc<http::State>,
        push_timeout: Duration,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(None);
        let publisher = Publisher::new(client, subject.clone(), BackoffPolicy::default())
            .with_push_timeout(push_timeout);
        let handle = tokio::spawn(publish(publisher, spool, state, Arc::clone(&wake), stop_rx));
        Self { wake, stop, handle }
    }

    /// A report was kept: push it (unless backing off).
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Pushes what it can before `deadline`, then ends.
    pub(super) async fn stop(self, deadline: Instant) {
        let _ = self.stop.send(Some(deadline));
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), self.handle).await;
    }
}

/// The spool's metrics: `linkguard_reports_spooled`, `linkguard_spool_full` and
/// `linkguard_reports_refused_total`.
pub(super) fn record_spool(metrics: &Metrics, stats: SpoolStats) {
    metrics.set_reports_spooled(stats.entries as u64);
    metrics.set_spool_full(stats.full);
    metrics.set_reports_refused_total(stats.refused);
}

/// Waits for the stop request and returns its deadline; `None` (stop now) when the task's owner is
/// gone without asking.
async fn stop_requested(stop: &mut watch::Receiver<Option<Instant>>) -> Option<Instant> {
    match stop.wait_for(Option::is_some).await {
        Ok(deadline) => *deadline,
        Err(_) => None,
    }
}

async fn publish(
    mut publisher: Publisher,
    spool: Spool,
    state: Arc<http::State>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let mut failing = Condition::new("report-push-failing");
    loop {
        if !spool.pending().is_empty() {
            let before = spool.pending();
            let stopping = {
                let drain = publisher.drain(&spool);
                tokio::pin!(drain);
                tokio::select! {
                    outcome = &mut drain => {
                        account(&outcome, &before, &state, &mut failing);
                        None
                    }
                    // A stop during a long drain lets it go on until the deadline.
                    deadline = stop_requested(&mut stop) => {
                        if let Some(deadline) = deadline
                            && let Ok(outcome) = tokio::time::timeout_at(deadline, &mut drain).await
                        {
                            account(&outcome, &before, &state, &mut failing);
                        }
                        Some(deadline)
                    }
                }
            };
            if let Some(deadline) = stopping {
                return finish(&mut publisher, &spool, &state, &mut failing, deadline).await;
            }
        }
        record_spool(state.metrics(), spool.stats());
        let backoff = if publisher.failures() > 0 {
            publisher.retry_delay()
        } else {
            Duration::ZERO
        };
        tokio::select! {
            _ = wake.notified(), if backoff.is_zero() => {}
            _ = tokio::time::sleep(backoff), if !backoff.is_zero() => {}
            deadline = stop_requested(&mut stop) => {
                return finish(&mut publisher, &spool, &state, &mut failing, deadline).await;
            }
        }
    }
}

/// Shutdown: rounds until the spool is empty or `deadline` (none: nothing more is pushed).
async fn finish(
    publisher: &mut Publisher,
    spool: &Spool,
    state: &http::State,
    failing: &mut Condition,
    deadline: Option<Instant>,
) {
    let before = spool.pending();
    if let Some(deadline) = deadline
        && !before.is_empty()
    {
        let outcome = publisher.drain_until(spool, deadline).await;
        account(&outcome, &before, state, failing);
    }
    record_spool(state.metrics(), spool.stats());
}

fn account(
    outcome: &DrainOutcome,
    before: &[SpoolEntry],
    state: &http::State,
    failing: &mut Condition,
) {
    for pushed in &outcome.pushed {
        state.metrics().inc_reports_pushed();
        let latency_ms = before
            .iter()
            .find(|e| e.sequence == pushed.sequence)
            .map(|e| (Utc::now() - e.generated_at).num_milliseconds());
        info!(
            sequence = pushed.sequence,
            manifest = %pushed.manifest,
            bundle = %pushed.bundle,
            signed_to_pushed_ms = latency_ms,
            "report pushed"
        );
    }
    if let Some(err) = &outcome.last_error {
        if err.is_push_failure() {
            state.metrics().inc_registry_errors("push_report");
        }
        failing.raise(&format_args!(
            "pushing reports failed: {err}; {} spooled, retrying with backoff",
            outcome.remaining
        ));
    } else if !outcome.deadline_reached {
        failing.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::SigningKey;
    use crate::chain::ChainLink;
    use crate::daemon::spool::tests::{bundle, produce};

    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// A full spool shows as `linkguard_spool_full 1` with the refusals counted, and the gauge goes back
    /// to 0 once a push made room, while the counter keeps its count.
    #[test]
    fn a_full_spool_and_its_refusals_reach_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let first = ChainLink {
            sequence: 1,
            previous: None,
            chain_start: true,
            chain_resumed: false,
            missed_reports: 0,
        };
        let size = bundle(&key, "pod", &first, 1).len() as u64;
        let (spool, _) = Spool::open(dir.path(), size * 2 + size / 2).unwrap();
        let (mut chain, _) = spool.open_chain("pod").unwrap();
        let metrics = Metrics::new("test");
        record_spool(&metrics, spool.stats());
        let text = metrics.render();
        assert_eq!(sample(&text, "linkguard_spool_full"), Some(0.0), "{text}");
        assert_eq!(
            sample(&text, "linkguard_reports_refused_total"),
            Some(0.0),
            "{text}"
        );

        let oldest = produce(&spool, &mut chain, &key).unwrap();
        produce(&spool, &mut chain, &key).unwrap();
        for _ in 0..2 {
            assert!(produce(&spool, &mut chain, &key).unwrap_err().is_full());
        }
        record_spool(&metrics, spool.stats());
        let text = metrics.render();
        assert_eq!(sample(&text, "linkguard_spool_full"), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "linkguard_reports_refused_total"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "linkguard_reports_spooled"),
            Some(2.0),
            "{text}"
        );

        // The registry took the oldest report: room again; the refusals stay counted.
        spool.remove(&oldest).unwrap();
        record_spool(&metrics, spool.stats());
        let text = metrics.render();
        assert_eq!(sample(&text, "linkguard_spool_full"), Some(0.0), "{text}");
        assert_eq!(
            sample(&text, "linkguard_reports_refused_total"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "linkguard_reports_spooled"),
            Some(1.0),
            "{text}"
        );
    }
}
