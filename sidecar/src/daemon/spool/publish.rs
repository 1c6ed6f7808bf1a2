// SPDX-License-Identifier: Apache-2.0
//! The publisher: pushes spooled reports oldest first as referrers of the image, stops at the first
//! failure so that order is kept, removes an entry only after the registry accepted it, and backs off
//! exponentially with jitter between failed rounds.
//!
//! The push timeout bounds one push (one registry operation, as `registry.timeoutSeconds` says), never
//! a whole round: after a long outage the backlog is hundreds of reports, and a round-wide timeout
//! would fire while every single push is going fine, leaving the spool forever "timing out" with the
//! registry healthy.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use linkguard_oci::{Client, Layer, Pushed, Reference};
use tokio::time::Instant;

use super::{CREATED_ANNOTATION, PREDICATE_TYPE_ANNOTATION, Spool, SpoolError};
use crate::attest::BUNDLE_MEDIA_TYPE;
use crate::chain;
use crate::report::REPORT_PREDICATE_TYPE;

/// Pushes `bundle` (a signed report) as a referrer of `subject`: artifactType and layer media type
/// [`BUNDLE_MEDIA_TYPE`], annotations [`PREDICATE_TYPE_ANNOTATION`] = [`REPORT_PREDICATE_TYPE`] and
/// [`CREATED_ANNOTATION`] = `created` (the report's `generatedAt`, so that pushing the same report
/// twice gives the same manifest).
pub async fn push_report(
    client: &Client,
    subject: &Reference,
    bundle: Vec<u8>,
    created: DateTime<Utc>,
) -> linkguard_oci::Result<Pushed> {
    let annotations = BTreeMap::from([
        (
            PREDICATE_TYPE_ANNOTATION.to_owned(),
            REPORT_PREDICATE_TYPE.to_owned(),
        ),
        (
            CREATED_ANNOTATION.to_owned(),
            created.to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    ]);
    let layer = Layer {
        media_type: BUNDLE_MEDIA_TYPE.to_owned(),
        data: bundle,
    };
    client
        .push_artifact(subject, BUNDLE_MEDIA_TYPE, vec![layer], annotations)
        .await
}

/// Exponential backoff with jitter between failed drain rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Upper bound of the first delay.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl BackoffPolicy {
    /// The delay after `failures` failed rounds in a row (0: none), with `random` a uniform random
    /// number: "equal jitter", half the capped exponential delay plus a random part of the other
    /// half, so that sidecars that lost the registry together do not retry in lockstep and none
    /// retries immediately.
    pub fn delay(&self, failures: u32, random: u64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        let cap = self
            .initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max);
        let half = cap / 2;
        let spread = (cap - half).as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            random % (spread + 1)
        };
        half + Duration::from_nanos(jitter)
    }
}

impl Default for BackoffPolicy {
    /// 1 s doubling up to 5 min.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

/// A report the publisher pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedReport {
    /// Its chain sequence.
    pub sequence: u64,
    /// sha256 hex of its bundle.
    pub bundle: String,
    /// The referrer manifest's digest.
    pub manifest: String,
}

/// What a drain did, for logs and metrics.
#[derive(Debug, Default)]
pub struct DrainOutcome {
    /// Reports pushed, in order.
    pub pushed: Vec<PushedReport>,
    /// Entries still pending.
    pub remaining: usize,
    /// The failure that stopped the drain: [`SpoolError::Push`] or [`SpoolError::PushTimedOut`] (see
    /// [`SpoolError::is_push_failure`], for `linkguard_registry_errors_total`) or a spool read failure.
    pub last_error: Option<SpoolError>,
    /// [`Publisher::drain_until`] stopped at its deadline (not a failure: what is left stays spooled).
    pub deadline_reached: bool,
}

impl DrainOutcome {
    fn absorb(&mut self, round: DrainOutcome) {
        self.pushed.extend(round.pushed);
        self.remaining = round.remaining;
        self.last_error = round.last_error;
        self.deadline_reached = round.deadline_reached;
    }
}

/// Pushes the spool to the registry, in order, with backoff after failures.
#[derive(Debug)]
pub struct Publisher {
    client: Client,
    subject: Reference,
    policy: BackoffPolicy,
    push_timeout: Option<Duration>,
    failures: u32,
}

/// How one push ended.
enum PushEnd {
    Pushed(Pushed),
    Failed(linkguard_oci::Error),
    /// The push timeout elapsed.
    TimedOut(Duration),
    /// The drain's deadline came first.
    Deadline,
}

impl Publisher {
    /// A publisher pushing referrers of `subject` (the app image; a digest reference avoids resolving
    /// the tag on every push).
    pub fn new(client: Client, subject: Reference, policy: BackoffPolicy) -> Self {
        Self {
            client,
            subject,
            policy,
            push_timeout: None,
            failures: 0,
        }
    }

    /// Bounds each push by `timeout` (`registry.timeoutSeconds`); a push that takes longer fails the
    /// round with [`SpoolError::PushTimedOut`] and the entry stays spooled. Without it a push is
    /// bounded only by the client's own timeouts.
    pub fn with_push_timeout(mut self, timeout: Duration) -> Self {
        self.push_timeout = Some(timeout);
        self
    }

    /// Failed rounds in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long to wait before the next round: zero after a successful round, else the backoff.
    pub fn retry_delay(&self) -> Duration {
        self.policy.delay(
            self.failures,
            rand_core::RngCore::next_u64(&mut rand_core::OsRng),
        )
    }

    /// One round: pushes pending entries oldest first until the spool is empty or a push fails or
    /// times out (it then stops, so that reports reach the registry in chain order). Does not wait.
    /// An entry is removed only after the registry accepted it.
    pub async fn drain(&mut self, spool: &Spool) -> DrainOutcome {
        self.round(spool, None).await
    }

    /// One push of `bytes`, bounded by the push timeout and by `deadline`.
    async fn push(
        &self,
        bytes: Vec<u8>,
        created: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> PushEnd {
        let push = push_report(&self.client, &self.subject, bytes, created);
        let timeout_at = self.push_timeout.map(|t| Instant::now() + t);
        let limit = match (timeout_at, deadline) {
            (Some(at), Some(deadline)) => Some(at.min(deadline)),
            (at, deadline) => at.or(deadline),
        };
        let Some(limit) = limit else {
            return push.await.map_or_else(PushEnd::Failed, PushEnd::Pushed);
        };
        match tokio::time::timeout_at(limit, push).await {
            Ok(Ok(pushed)) => PushEnd::Pushed(pushed),
            Ok(Err(e)) => PushEnd::Failed(e),
            // Whichever limit was the nearer one ended the push.
            Err(_) => match (self.push_timeout, timeout_at) {
                (Some(timeout), Some(at)) if deadline.is_none_or(|d| at <= d) => {
                    PushEnd::TimedOut(timeout)
                }
                _ => PushEnd::Deadline,
            },
        }
    }

    /// A round; with a `deadline`, no push starts after it and none runs past it.
    async fn round(&mut self, spool: &Spool, deadline: Option<Instant>) -> DrainOutcome {
        let mut out = DrainOutcome::default();
        for entry in spool.pending() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                out.deadline_reached = true;
                break;
            }
            let bytes = match spool.read(&entry) {
                Ok(bytes) => bytes,
                Err(e) => {
                    // An entry that cannot be read (or is gone) would hold back every later report until
                    // a restart: set it aside (kept in quarantine when it still exists), which leaves a
                    // gap that verify-chain names.
                    tracing::error!(sequence = entry.sequence, error = %e,
                        "spooled report unreadable; set aside, pushing the next ones");
                    if entry.path.exists()
                        && let Err(moved) = chain::quarantine(spool.dir(), &entry.path)
                    {
                        out.last_error = Some(moved.into());
                        break;
                    }
                    spool.forget(&entry);
                    continue;
                }
            };
            if chain::bundle_digest(&bytes) != entry.digest {
                // Changed on disk since it was written: pushing it would break the chain silently;
                // keeping it aside leaves a gap that verify-chain names.
                match chain::quarantine(spool.dir(), &entry.path) {
                    Ok(moved_to) => {
                        tracing::error!(sequence = entry.sequence, moved_to = %moved_to.display(),
                        "spooled report changed on disk since it was written; moved to quarantine")
                    }
                    Err(e) => {
                        out.last_error = Some(e.into());
                        break;
                    }
                }
                spool.forget(&entry);
                continue;
            }
            match self.push(bytes, entry.generated_at, deadline).await {
                PushEnd::Pushed(pushed) => {
                    tracing::info!(sequence = entry.sequence, manifest = %pushed.descriptor.digest,
                        "spooled report pushed");
                    out.pushed.push(PushedReport {
                        sequence: entry.sequence,
                        bundle: entry.digest.clone(),
                        manifest: pushed.descriptor.digest,
                    });
                    if let Err(e) = spool.remove(&entry) {
                        out.last_error = Some(e);
                        break;
                    }
                }
                PushEnd::Failed(source) => {
                    out.last_error = Some(SpoolError::Push {
                        sequence: entry.sequence,
                        subject: self.subject.to_string(),
                        source: Box::new(source),
                    });
                    break;
                }
                PushEnd::TimedOut(timeout) => {
                    out.last_error = Some(SpoolError::PushTimedOut {
                        sequence: entry.sequence,
                        subject: self.subject.to_string(),
                        timeout,
                    });
                    break;
                }
                PushEnd::Deadline => {
                    out.deadline_reached = true;
                    break;
                }
            }
        }
        if out.last_error.is_some() {
            self.failures = self.failures.saturating_add(1);
        } else if !out.deadline_reached {
            self.failures = 0;
        }
        out.remaining = spool.stats().entries;
        out
    }

    /// Rounds separated by [`Publisher::retry_delay`] until the spool is empty or `deadline` passes:
    /// no push starts after it and no push or wait runs past it. For startup (a restarted sidecar
    /// pushes its spool first) and shutdown.
    pub async fn drain_until(
        &mut self,
        spool: &Spool,
        deadline: tokio::time::Instant,
    ) -> DrainOutcome {
        let mut out = DrainOutcome::default();
        loop {
            let round = self.round(spool, Some(deadline)).await;
            let failed = round.last_error.is_some();
            out.absorb(round);
            if (out.remaining == 0 && !failed) || out.deadline_reached {
                return out;
            }
            let delay = if failed {
                self.retry_delay()
            } else {
                Duration::ZERO
            };
            if tokio::time::Instant::now() + delay >= deadline {
                return out;
            }
            if let Some(e) = &out.last_error {
                tracing::warn!(error = %e, remaining = out.remaining, retry_in = ?delay, "spool not drained; retrying");
            }
            tokio::time::sleep(delay).await;
        }
    }
}
