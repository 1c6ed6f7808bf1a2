// SPDX-License-Identifier: Apache-2.0
//! Counts and probe failures of one flush interval, aggregated in a bounded buffer and turned into
//! observation [`Record`]s. When the buffer is full a new entry is dropped and counted; the next records
//! include a `drop` record with that number, so a loss is never silent.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};

use crate::observation::{ProbeStatus, RECORD_VERSION, Record, RecordBody, format_time};

/// Where the records come from: the pod and container, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `namespace/name`.
    pub pod: Option<String>,
    pub container: Option<String>,
}

/// The process a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    /// Pid as the app sees it.
    pub pid: u32,
    /// Executable path inside the app's root.
    pub exe: Arc<str>,
}

/// The identity of a call record: one function of one file in one process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey {
    pub process: ProcessKey,
    pub binary: Arc<str>,
    pub build_id: Option<Arc<str>>,
    pub symbol: Arc<str>,
}

/// A function (or a whole file, `symbol: None`) that could not be probed in a process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    pub process: ProcessKey,
    pub binary: Arc<str>,
    pub build_id: Option<Arc<str>>,
    pub symbol: Option<Arc<str>>,
    pub status: ProbeStatus,
    pub detail: Option<Arc<str>>,
}

/// The time span a batch of records covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The records' timestamp form ([`format_time`]), truncated to milliseconds: finer is noise next to a
/// flush interval and costs bytes in every record.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    format_time(
        time.duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(time),
    )
}

/// The bounded in-memory buffer of one interval.
#[derive(Debug)]
pub struct Aggregator {
    calls: BTreeMap<CallKey, u64>,
    probes: BTreeMap<ProbeKey, ()>,
    capacity: usize,
    dropped: u64,
}

impl Aggregator {
    /// `capacity`: most distinct entries (call and probe records) held between two flushes.
    pub fn new(capacity: usize) -> Self {
        Self {
            calls: BTreeMap::new(),
            probes: BTreeMap::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    fn full(&self) -> bool {
        self.calls.len() + self.probes.len() >= self.capacity
    }

    /// Adds `count` calls (ignored when 0). A new key that does not fit is dropped and counted.
    pub fn add_call(&mut self, key: CallKey, count: u64) {
        if count == 0 {
            return;
        }
        if let Some(total) = self.calls.get_mut(&key) {
            *total = total.saturating_add(count);
        } else if self.full() {
            self.dropped += 1;
        } else {
            self.calls.insert(key, count);
        }
    }

    /// Adds a probe failure (once per interval).
    pub fn add_probe(&mut self, key: ProbeKey) {
        if self.probes.contains_key(&key) {
            return;
        }
        if self.full() {
            self.dropped += 1;
        } else {
            self.probes.insert(key, ());
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.calls.len() + self.probes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.dropped == 0
    }

    /// Entries dropped since the last [`drain`](Self::drain).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The records of `interval` (probe failures, then calls, then the drop count), emptying the buffer.
    pub fn drain(&mut self, interval: Interval, origin: &Origin, lower_bound: bool) -> Vec<Record> {
        let (start, end) = (rfc3339(interval.start), rfc3339(interval.end));
        let record = |process: Option<&ProcessKey>, body| Record {
            v: RECORD_VERSION,
            start: start.clone(),
            end: end.clone(),
            pod: origin.pod.clone(),
            container: origin.container.clone(),
            pid: process.map(|p| p.pid),
            exe: process.map(|p| p.exe.to_string()),
            body,
        };
        let mut out = Vec::with_capacity(self.len() + 1);
        for (key, ()) in std::mem::take(&mut self.probes) {
            out.push(record(
                Some(&key.process),
                RecordBody::Probe {
                    binary: key.binary.to_string(),
                    build_id: key.build_id.map(|b| b.to_string()),
                    symbol: key.symbol.map(|s| s.to_string()),
                    status: key.status,
                    detail: key.detail.map(|d| d.to_string()),
                },
            ));
        }
        for (key, count) in std::mem::take(&mut self.calls) {
            out.push(record(
                Some(&key.process),
                RecordBody::Call {
                    binary: key.binary.to_string(),
                    build_id: key.build_id.map(|b| b.to_string()),
                    symbol: key.symbol.to_string(),
                    count,
                    lower_bound,
                },
            ));
        }
        if self.dropped > 0 {
            out.push(record(
                None,
                RecordBody::Drop {
                    dropped: std::mem::take(&mut self.dropped),
                },
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn process() -> ProcessKey {
        ProcessKey {
            pid: 7,
            exe: "/usr/bin/app".into(),
        }
    }

    fn call(symbol: &str) -> CallKey {
        CallKey {
            process: process(),
            binary: "/usr/bin/app".into(),
            build_id: Some("bb22".into()),
            symbol: symbol.into(),
        }
    }

    fn interval() -> Interval {
        Interval {
            start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap(),
        }
    }

    #[test]
    fn calls_are_summed_per_key_and_written_as_records() {
        let mut agg = Aggregator::new(10);
        agg.add_call(call("lg_hot"), 3);
        agg.add_call(call("lg_hot"), 4);
        agg.add_call(call("lg_never"), 0);
        let origin = Origin {
            pod: Some("ns/web-0".into()),
            container: Some("app".into()),
        };
        let records = agg.drain(interval(), &origin, true);
        assert_eq!(records.len(), 1);
        let json = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "v": 1, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:10Z",
                "pod": "ns/web-0", "container": "app", "pid": 7, "exe": "/usr/bin/app",
                "kind": "call", "binary": "/usr/bin/app", "buildId": "bb22", "symbol": "lg_hot",
                "count": 7, "lowerBound": true
            })
        );
        // What was written is gone from the buffer.
        assert!(agg.drain(interval(), &origin, true).is_empty());
    }

    #[test]
    fn overflow_is_counted_and_reported_as_a_drop_record() {
        let mut agg = Aggregator::new(2);
        agg.add_call(call("a"), 1);
        agg.add_probe(ProbeKey {
            process: process(),
            binary: "/lib/x.so".into(),
            build_id: None,
            symbol: Some("f".into()),
            status: ProbeStatus::Unresolvable,
            detail: Some("ifunc".into()),
        });
        agg.add_call(call("b"), 5);
        agg.add_call(call("c"), 5);
        agg.add_call(call("a"), 1); // existing keys still count
        assert_eq!(agg.dropped(), 2);
        let records = agg.drain(interval(), &Origin::default(), false);
        let kinds: Vec<&str> = records
            .iter()
            .map(|r| match &r.body {
                RecordBody::Call { count, .. } => {
                    assert_eq!(*count, 2);
                    "call"
                }
                RecordBody::Probe { .. } => "probe",
                RecordBody::Drop { dropped } => {
                    assert_eq!(*dropped, 2);
                    "drop"
                }
            })
            .collect();
        assert_eq!(kinds, ["probe", "call", "drop"]);
        assert_eq!(records[2].pid, None);
        // Records round-trip through the reader's type unchanged.
        for record in &records {
            let line = serde_json::to_string(record).unwrap();
            assert_eq!(&serde_json::from_str::<Record>(&line).unwrap(), record);
        }
    }
}
