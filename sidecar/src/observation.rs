// SPDX-License-Identifier: Apache-2.0
//! Observation records: what the sidecar saw, one JSON object per NDJSON line.
//!
//! Contract: docs/contracts/observations.md. A record says what was seen (binary path + build-id,
//! symbol, count), where (pid, exe, pod/container identity) and when (interval start/end, RFC 3339).
//! `linkguard verify` reads exactly what the sidecar writes.

use serde::{Deserialize, Serialize};

/// Version of the record format, written as `"v"` in every record.
pub const RECORD_VERSION: u32 = 1;

/// One NDJSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
