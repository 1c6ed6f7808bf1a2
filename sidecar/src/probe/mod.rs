// SPDX-License-Identifier: Apache-2.0
//! Probing the app's functions: from the function map and the discovered processes to observation records.
//!
//! ```text
//! Targets (map files + symbols) --+
//! Discovery (processes, maps) ----+--> resolve (build-id check, offsets) --> Session (links, cookies,
//!                                                                            modes) --> records --> output
//! ```
//!
//! - [`targets`]: what the map asks to probe, per file.
//! - [`resolve`]: is the running file the map's build; where each function starts (nothing is attached by
//!   offset to a file whose build-id differs: a stale offset crashes the target).
//! - [`session`]: one uprobe.multi link per (process, file) scoped to that process, cookies, count and
//!   coverage modes, counts -> records.
//! - [`observer`]: the poll loop that follows processes (new, exited, exec'd, dlopen'd files).
//! - [`records`], [`output`]: aggregation in a bounded buffer, NDJSON output with gzip and rotation.
//! - [`launch`]: `observe -- CMD`, a child held before exec until its probes are attached.
//! - [`backend`]: the kernel behind the [`ProbeBackend`] trait.

pub mod backend;
pub mod bisect;
pub mod cookies;
#[cfg(test)]
mod fake;
pub mod launch;
pub mod observer;
pub mod output;
pub mod records;
pub mod resolve;
pub mod session;
pub mod targets;

pub use backend::ProbeBackend;
pub use observer::{Observer, ObserverConfig, PollStats};
pub use output::{ObservationOutput, OutputConfig, OutputError};
pub use records::{Interval, Origin};
pub use resolve::{FilePlan, plan_file};
pub use session::{Mode, Session};
pub use targets::Targets;

use crate::discover::DiscoverError;

/// Probing failed as a whole (one process or file failing is reported as a `probe` record instead).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("reading the BPF call counters failed: {source}")]
    ReadCounts {
        #[source]
        source: linkguard_bpf::BpfError,
    },
    #[error(
        "cannot read /proc files of process {pid}: {source}; did it exit, or is it in another PID namespace?"
    )]
    ProcessUnreadable {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Discover(#[from] DiscoverError),
}
