// SPDX-License-Identifier: Apache-2.0
//! Conditions worth alerting on (registry down, disk full, map missing, app not probed) are logged when
//! they start and when they end, not at every loop: a sidecar retrying every few seconds must not bury
//! its own logs. The metrics carry the current state; the log carries the transitions.

use std::fmt::Display;
use std::time::Instant;

use tracing::{info, warn};

/// One condition, logged on its edges.
#[derive(Debug)]
pub struct Condition {
    name: &'static str,
    since: Option<Instant>,
    /// Times it was raised while already active (reported when it clears).
    repeats: u64,
}

impl Condition {
    /// A condition that does not hold yet. `name` is the `condition` field of its log lines.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            since: None,
            repeats: 0,
        }
    }

    /// The condition holds. Logs a warning with `detail` when it did not hold before; returns whether
    /// it just started.
    pub fn raise(&mut self, detail: &dyn Display) -> bool {
        if self.since.is_some() {
            self.repeats += 1;
            return false;
        }
        self.since = Some(Instant::now());
        self.repeats = 0;
        warn!(condition = self.name, "{detail}");
        true
    }

    /// The condition no longer holds. Logs once when it held; returns whether it just ended.
    pub fn clear(&mut self) -> bool {
        let Some(since) = self.since.take() else {
            return false;
        };
        info!(
            condition = self.name,
            after_seconds = since.elapsed().as_secs(),
            repeats = self.repeats,
            "{} resolved",
            self.name
        );
        true
    }

    /// Raises or clears on `problem`.
    pub fn update<E: Display>(&mut self, problem: Option<E>) -> bool {
        match problem {
            Some(detail) => self.raise(&detail),
            None => self.clear(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_edges_are_reported() {
        let mut c = Condition::new("registry-unreachable");
        assert!(!c.is_active());
        assert!(!c.clear(), "clearing an inactive condition is silent");
        assert!(c.raise(&"connection refused"));
        assert!(c.is_active());
        assert!(
            !c.raise(&"connection refused"),
            "still active: not logged again"
        );
        assert!(!c.update(Some("timeout")));
        assert!(c.update(None::<&str>), "resolved once");
        assert!(!c.clear());
        assert!(c.raise(&"again"), "a new episode is logged");
    }
}
