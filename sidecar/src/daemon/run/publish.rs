// SPDX-License-Identifier: Apache-2.0
//! The publisher task: pushes the spool whenever a report is kept, in chain order, backs off while the
//! registry fails, and on shutdown pushes until the deadline. What is not pushed stays in the spool (it
//! is durable before the publisher ever sees it).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::info;

use linkguard_oci::Reference;

use crate::daemon::http;
use crate::daemon::spool::{BackoffPolicy, DrainOutcome, Publisher, Spool, SpoolEntry};

use super::FIRST_RETRY;
use super::alerts::Condition;

/// The running publisher task.
pub(super) struct PublisherTask {
    wake: Arc<Notify>,
    stop: watch::Sender<Option<Instant>>,
    handle: tokio::task::JoinHandle<()>,
}

impl PublisherTask {
    /// Starts pushing the spool as referrers of `subject` (the image at its digest); a previous run's
    /// spool goes first.
    pub(super) fn start(
        client: linkguard_oci::Client,
        subject: &Reference,
        spool: Spool,
        state: Arc<http::State>,
        timeout: Duration,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(None);
        let publisher = Publisher::new(client, subject.clone(), BackoffPolicy::default());
        let handle = tokio::spawn(publish(
            publisher,
            spool,
            state,
            Arc::clone(&wake),
            stop_rx,
            timeout,
        ));
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

async fn publish(
    mut publisher: Publisher,
    spool: Spool,
    state: Arc<http::State>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<Option<Instant>>,
    timeout: Duration,
) {
    let mut failing = Condition::new("report-push-failing");
    let mut stalled = Duration::ZERO;
    loop {
        if !spool.pending().is_empty() {
            let before = spool.pending();
            match tokio::time::timeout(timeout, publisher.drain(&spool)).await {
                Ok(outcome) => {
                    stalled = Duration::ZERO;
                    account(&outcome, &before, &state, &mut failing);
                }
                Err(_) => {
                    state.metrics().inc_registry_errors("push_report");
                    failing.raise(&format_args!(
                        "pushing reports timed out after registry.timeoutSeconds; {} spooled (retrying)",
                        spool.stats().entries
                    ));
                    stalled = (stalled * 2).clamp(FIRST_RETRY, Duration::from_secs(60));
                }
            }
        }
        state
            .metrics()
            .set_reports_spooled(spool.stats().entries as u64);
        let backoff = if !stalled.is_zero() {
            stalled
        } else if publisher.failures() > 0 {
            publisher.retry_delay()
        } else {
            Duration::ZERO
        };
        tokio::select! {
            _ = wake.notified(), if backoff.is_zero() => {}
            _ = tokio::time::sleep(backoff), if !backoff.is_zero() => {}
            changed = stop.changed() => {
                let deadline = match changed {
                    Ok(()) => *stop.borrow(),
                    Err(_) => None,
                };
                if let Some(deadline) = deadline {
                    let before = spool.pending();
                    if !before.is_empty()
                        && let Ok(outcome) =
                            tokio::time::timeout_at(deadline, publisher.drain_until(&spool, deadline)).await
                    {
                        account(&outcome, &before, &state, &mut failing);
                    }
                }
                state.metrics().set_reports_spooled(spool.stats().entries as u64);
                return;
            }
        }
    }
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
        if err.registry_error().is_some() {
            state.metrics().inc_registry_errors("push_report");
        }
        failing.raise(&format_args!(
            "pushing reports failed: {err}; {} spooled, retrying with backoff",
            outcome.remaining
        ));
    } else {
        failing.clear();
    }
}
