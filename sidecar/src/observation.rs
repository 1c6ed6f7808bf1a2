// SPDX-License-Identifier: Apache-2.0
//! Observation records: what the sidecar saw, one JSON object per NDJSON line.
//!
//! Contract: docs/contracts/observations.md. A record says what was seen (binary path + build-id,
//! symbol, count), where (pid, exe, pod/container identity) and when (interval start/end, RFC 3339).
//! `linkguard verify` reads exactly what the sidecar writes: [`Record`] and the zero-copy [`RecordView`]
//! used by the streaming [`ObservationReader`] are parsed and checked by the same code (`view`), so
//! they accept exactly the same lines.

mod chunks;
mod read;
mod view;
mod write;

pub use chunks::{CHUNK_BYTES, Chunk, ChunkLine, ChunkReader};
pub(crate) use read::parse_line;
pub use read::{MAX_LINE_BYTES, ObservationReader, ReadError};
pub use view::{BodyView, RecordError, RecordView};
pub use write::{Compression, RecordWriter};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the record format, written as `"v"` in every record.
pub const RECORD_VERSION: u32 = 1;

/// One NDJSON line.
///
/// Deserializing checks everything the contract requires (known fields only, the fields of its kind,
/// `v` = [`RECORD_VERSION`], RFC 3339 timestamps, `end` not before `start`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Record format version, [`RECORD_VERSION`].
    pub v: u32,
    /// Start of the flush interval (RFC 3339, UTC).
    pub start: String,
    /// End of the flush interval (RFC 3339, UTC).
    pub end: String,
    /// `pod-namespace/pod-name` when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Container name when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Process id as the app sees it (its own pid namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process's main executable, as a path inside the app's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(flatten)]
    pub body: RecordBody,
}

/// What a record reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RecordBody {
    /// Calls of one function during the interval.
    #[serde(rename_all = "camelCase")]
    Call {
        /// The probed file, as a path inside the app's root.
        binary: String,
        /// Build-id of the probed file, lowercase hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build_id: Option<String>,
        symbol: String,
        count: u64,
        /// True in coverage mode: the probe stops trapping after the first hit, so `count` is a lower bound.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lower_bound: bool,
    },
    /// A function that could not be probed.
    #[serde(rename_all = "camelCase")]
    Probe {
        binary: String,
        /// Build-id found on the running file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        symbol: Option<String>,
        status: ProbeStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Events lost because the in-memory buffer was full during the interval.
    #[serde(rename_all = "camelCase")]
    Drop { dropped: u64 },
}

/// Why a function was not probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeStatus {
    /// The symbol has no address in the running file (stripped, missing, not a function).
    Unresolvable,
    /// The running file's build-id differs from the map's: nothing was attached.
    BinaryMismatch,
    /// The kernel refused the attach.
    AttachFailed,
}

impl ProbeStatus {
    /// The wire name (`attach-failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unresolvable => "unresolvable",
            Self::BinaryMismatch => "binary-mismatch",
            Self::AttachFailed => "attach-failed",
        }
    }
}

impl<'de> Deserialize<'de> for Record {
    /// Goes through the same strict parser as the streaming reader (see `view`), so a line is accepted
    /// by `serde_json::from_str::<Record>` exactly when `linkguard verify` accepts it.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = view::RawRecord::deserialize(deserializer)?;
        // Keep the timestamps as written; the view only holds them parsed.
        let (start, end) = (raw.start_text().to_owned(), raw.end_text().to_owned());
        let view = RecordView::try_from(raw).map_err(serde::de::Error::custom)?;
        Ok(Record {
            start,
            end,
            ..view.to_record()
        })
    }
}

/// The canonical timestamp form of records and reports: RFC 3339, UTC, `Z`, fractional seconds only
/// when present (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250Z`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 timestamp with any offset into UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// serde `with` modules for timestamps in the canonical form.
pub mod time_serde {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// `DateTime<Utc>` as an RFC 3339 string.
    pub mod required {
        use super::*;

        pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&super::super::format_time(*t))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
            super::super::parse_time(&String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }

    /// `Option<DateTime<Utc>>` as an RFC 3339 string or `null`.
    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::required::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::super::parse_time(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

impl Record {
    /// Checks the record as the reader would (version, timestamps, interval) and borrows it as a view.
    pub fn view(&self) -> Result<RecordView<'_>, RecordError> {
        RecordView::from_record(self)
    }
}

#[cfg(test)]
mod tests;
