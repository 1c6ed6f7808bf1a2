// SPDX-License-Identifier: Apache-2.0
//! The spool: signed reports kept on disk until the registry takes them, pushed in chain order.
//!
//! Layout of the spool directory (`spool.directory`):
//!
//! ```text
//! chain.json                             the chain state (crate::chain), written after each kept report
//! pending/<sequence:020>-<sha256:12>.bundle   one signed bundle per file, the exact bytes pushed
//! quarantine/                            partial or unreadable files moved aside at startup (never deleted)
//! .lock                                  held (flock) by the one process using the directory
//! ```
//!
//! Durability: an entry is written to `pending/.tmp-*`, fsync'd, renamed to its final name and the
//! directory fsync'd before [`Spool::enqueue`] returns; only then is the chain advanced. At startup
//! [`Spool::open`] moves leftover temporary files and entries that do not parse as a signed report to
//! `quarantine/` with a log line, and never deletes a good entry. An entry is removed only after the
//! registry accepted its push; a crash between the push and the removal pushes it again after the
//! restart, which is harmless: the same bytes with the same annotations give the same manifest digest.
//!
//! Full spool (`spool.maxBytes`) or full disk: the new report is refused with
//! [`SpoolError::Full`] / [`SpoolError::DiskFull`] and everything already spooled is kept. An auditor
//! would rather have the older evidence, which is already part of the chain, than the newer report:
//! dropping the oldest would hide a gap in the middle of the chain; refusing the newest leaves the chain
//! whole and the refusal declared. The refused report is not part of the chain (the chain does not
//! advance), the next report that is kept says how many were refused (`missedReports`), and
//! [`SpoolStats::refused`] counts them for the metrics.
//!
//! Publishing: [`Publisher::drain`] pushes pending entries oldest first as referrers of the image
//! (artifactType [`BUNDLE_MEDIA_TYPE`], annotations [`PREDICATE_TYPE_ANNOTATION`] and
//! [`CREATED_ANNOTATION`] = the report's `generatedAt`), stops at the first failure so that order is
//! kept, and backs off exponentially with jitter between failed rounds. The timeout
//! ([`Publisher::with_push_timeout`], `registry.timeoutSeconds`) bounds each push, not the drain: a
//! backlog left by a long outage drains at the registry's pace without a spurious timeout, however
//! long the whole drain takes.

mod publish;

pub use publish::{BackoffPolicy, DrainOutcome, Publisher, PushedReport, push_report};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::attest::{BUNDLE_MEDIA_TYPE, Bundle, IN_TOTO_PAYLOAD_TYPE};
use crate::chain::{self, Chain, ChainError, ChainFields, ChainLink, Resumption};
use crate::report::REPORT_PREDICATE_TYPE;

/// Annotation carrying the report's creation time (RFC 3339); `reports list` sorts on it.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// Sorts referrers (reports, maps) newest first by their [`CREATED_ANNOTATION`] (those without one
/// last), then by digest so that the order is deterministic.
pub fn sort_newest_first(entries: &mut [linkguard_oci::Descriptor]) {
    let created = |d: &linkguard_oci::Descriptor| {
        d.annotations
            .get(CREATED_ANNOTATION)
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
    };
    entries.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| b.digest.cmp(&a.digest))
    });
}
/// Annotation naming a report bundle's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// Subdirectory of the spool directory holding the entries.
pub const PENDING_DIR: &str = "pending";
/// Default `spool.maxBytes`: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Keeping the report would exceed `spool.maxBytes`; it was refused, the spool is unchanged.
    #[error(
        "spool {} is full: {used} of {max} bytes used, the report needs {needed}; the report was refused \
         and older reports are kept (raise spool.maxBytes or restore registry access)",
        dir.display()
    )]
    Full {
        /// The spool directory.
        dir: PathBuf,
        /// Bytes used by pending entries.
        used: u64,
        /// `spool.maxBytes`.
        max: u64,
        /// Size of the refused bundle.
        needed: u64,
    },
    /// The file system is full (ENOSPC, EDQUOT); the report was refused, the spool is unchanged.
    #[error(
        "no space left on the device of {}: the report was refused and older reports are kept (free \
         space or move spool.directory)",
        path.display()
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Any other I/O failure.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bytes given to [`Spool::enqueue`] are not a signed linkguard report with that sequence.
    #[error("not a spoolable report: {reason}")]
    NotAReport {
        /// Why.
        reason: String,
    },
    /// The registry did not take a report; it stays in the spool.
    #[error("pushing spooled report {sequence} to {subject}: {source}")]
    Push {
        /// The report's sequence.
        sequence: u64,
        /// The image it is pushed to.
        subject: String,
        /// The registry error.
        #[source]
        source: Box<linkguard_oci::Error>,
    },
    /// The registry did not answer a push within the push timeout; the report stays in the spool. The
    /// registry may still have stored it: pushing it again gives the same manifest, so that is harmless.
    #[error(
        "pushing spooled report {sequence} to {subject} timed out after {}s (registry.timeoutSeconds); \
         it stays in the spool and is pushed again",
        timeout.as_secs_f64()
    )]
    PushTimedOut {
        /// The report's sequence.
        sequence: u64,
        /// The image it is pushed to.
        subject: String,
        /// The push timeout.
        timeout: std::time::Duration,
    },
    /// Another process holds the spool directory (two sidecars configured with one directory).
    #[error(
        "spool {} is in use by another process: each sidecar needs its own spool.directory",
        dir.display()
    )]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// The chain state could not be read or written.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl SpoolError {
    /// The report was refused because the spool or the disk is full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. } | Self::DiskFull { .. })
    }

    /// The registry failed a push or did not answer it in time (`linkguard_registry_errors_total`),
    /// as opposed to a local failure of the spool.
    pub fn is_push_failure(&self) -> bool {
        matches!(self, Self::Push { .. } | Self::PushTimedOut { .. })
    }

    /// The registry error behind a failed push.
    pub fn registry_error(&self) -> Option<&linkguard_oci::Error> {
        match self {
            Self::Push { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// One pending report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    /// The report's chain sequence.
    pub sequence: u64,
    /// sha256 hex of the bundle bytes.
    pub digest: String,
    /// The pod key ([`chain::pod_key`]) of the report.
    pub pod: String,
    /// The report's `generatedAt`: the created annotation when pushed.
    pub generated_at: DateTime<Utc>,
    /// Size of the bundle in bytes.
    pub bytes: u64,
    /// The entry's file.
    pub path: PathBuf,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Good entries found, now pending.
    pub recovered: usize,
    /// Files moved to `quarantine/` (partial temporary files, unreadable entries).
    pub quarantined: Vec<PathBuf>,
}

/// Counters for metrics (`linkguard_reports_spooled` is `entries`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Pending entries.
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
    /// `spool.maxBytes`.
    pub max_bytes: u64,
    /// The last enqueue was refused (full spool or full disk) and nothing was removed since.
    pub full: bool,
    /// Reports refused since the spool was opened.
    pub refused: u64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    pending: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Holds the exclusive lock on `<dir>/.lock` while the spool is open.
    _lock: std::fs::File,
}

/// Name of the lock file in the spool directory.
pub const LOCK_FILE: &str = ".lock";

#[derive(Debug, Default)]
struct State {
    /// Ordered by (sequence, file name).
    entries: Vec<SpoolEntry>,
    bytes: u64,
    full: bool,
    refused: u64,
}

/// The on-disk spool. Cheap to clone (shared); enqueue from the verify loop while a publisher task
/// drains it.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl Spool {
    /// Opens (creating) the spool in `dir` with a cap of `max_bytes`, recovering what a previous run
    /// left: see the module documentation.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, Recovery), SpoolError> {
        let pending = dir.join(PENDING_DIR);
        chain::create_private_dir(&pending)?;
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io {
                action,
                path,
                source,
            }
        };
        // Two writers would fork the chain and race on the entries: one process per directory.
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(io("locking", &lock_path)(source));
            }
        }
        let mut recovery = Recovery::default();
        let mut entries = Vec::new();
        let listing = std::fs::read_dir(&pending).map_err(io("listing", &pending))?;
        for item in listing {
            let item = item.map_err(io("listing", &pending))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            let file_type = item.file_type().map_err(io("inspecting", &path))?;
            if !file_type.is_file() {
                tracing::warn!(path = %path.display(), "ignoring a spool entry that is not a regular file");
                continue;
            }
            let reason = if name.starts_with(".tmp-") {
                Err("a partial write from an interrupted run".to_owned())
            } else {
                std::fs::read(&path)
                    .map_err(|e| format!("unreadable: {e}"))
                    .and_then(|bytes| parse_entry(&name, &path, &bytes))
            };
            match reason {
                Ok(entry) => entries.push(entry),
                Err(reason) => {
                    let moved_to = chain::quarantine(dir, &path)?;
                    tracing::warn!(path = %path.display(), moved_to = %moved_to.display(), %reason,
                        "spool entry moved to quarantine");
                    recovery.quarantined.push(moved_to);
                }
            }
        }
        sort_entries(&mut entries);
        let bytes = entries.iter().map(|e| e.bytes).sum();
        recovery.recovered = entries.len();
        if !entries.is_empty() {
            tracing::info!(dir = %dir.display(), entries = entries.len(), bytes, "spooled reports recovered");
        }
        let state = State {
            entries,
            bytes,
            full: bytes > max_bytes,
            refused: 0,
        };
        let spool = Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                pending,
                max_bytes,
                state: Mutex::new(state),
                _lock: lock,
            }),
        };
        Ok((spool, recovery))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Opens the chain of `pod` (a [`chain::pod_key`]) stored in this spool's directory, continuing
    /// from the newest pending report of that pod if the state missed it (a stop between the spool
    /// write and the state write).
    pub fn open_chain(&self, pod: &str) -> Result<(Chain, Resumption), SpoolError> {
        let (mut chain, resumption) = Chain::open(&self.inner.dir, pod)?;
        let newest = self
            .lock()
            .entries
            .iter()
            .filter(|e| e.pod == pod)
            .max_by_key(|e| e.sequence)
            .cloned();
        let mut resumption = resumption;
        if let Some(e) = newest
            && chain.adopt(e.sequence, &e.digest)?
        {
            resumption = Resumption::Resumed {
                sequence: e.sequence,
            };
        }
        Ok((chain, resumption))
    }

    /// Keeps `bundle`, the signed report built with `link` (from `chain.next_link()`), durably, then
    /// advances `chain`. On [`SpoolError::Full`] or [`SpoolError::DiskFull`] the report is refused,
    /// nothing already spooled is touched, and the refusal is recorded in the chain
    /// (`missedReports` of the next kept report).
    pub fn enqueue(
        &self,
        chain: &mut Chain,
        link: &ChainLink,
        bundle: &[u8],
    ) -> Result<SpoolEntry, SpoolError> {
        chain.check_next(link)?;
        let parsed = parse_report(bundle).map_err(|reason| SpoolError::NotAReport { reason })?;
        if parsed.sequence != link.sequence || parsed.pod != chain.pod() {
            return Err(SpoolError::NotAReport {
                reason: format!(
                    "the bundle carries sequence {} of pod {:?}, but the chain's next link is {} of pod {:?}",
                    parsed.sequence,
                    parsed.pod,
                    link.sequence,
                    chain.pod()
                ),
            });
        }
        let digest = chain::bundle_digest(bundle);
        let name = entry_name(link.sequence, &digest);
        let path = self.inner.pending.join(&name);
        let size = bundle.len() as u64;
        let mut state = self.lock();
        let refused = if state.bytes.saturating_add(size) > self.inner.max_bytes {
            Some(SpoolError::Full {
                dir: self.inner.dir.clone(),
                used: state.bytes,
                max: self.inner.max_bytes,
                needed: size,
            })
        } else {
            match chain::write_durably(&path, bundle) {
                Ok(()) => None,
                Err((_, file, source)) if is_disk_full(&source) => {
                    Some(SpoolError::DiskFull { path: file, source })
                }
                Err((action, path, source)) => Some(SpoolError::Io {
                    action,
                    path,
                    source,
                }),
            }
        };
        if let Some(error) = refused {
            // `full` is what the metric and the alert say: no room. Other write errors refuse the
            // report too (and the chain declares it missed), but are not "full".
            state.full = matches!(error, SpoolError::Full { .. } | SpoolError::DiskFull { .. });
            state.refused += 1;
            drop(state);
            tracing::error!(%error, sequence = link.sequence, "report not kept");
            if let Err(e) = chain.record_missed() {
                tracing::error!(error = %e, "cannot persist the count of reports not kept");
            }
            return Err(error);
        }
        let entry = SpoolEntry {
            sequence: link.sequence,
            digest: digest.clone(),
            pod: parsed.pod,
            generated_at: parsed.generated_at,
            bytes: size,
            path,
        };
        state.entries.push(entry.clone());
        sort_entries(&mut state.entries);
        state.bytes += size;
        state.full = false;
        drop(state);
        chain.record_digest(link, digest)?;
        Ok(entry)
    }

    /// Pending entries, oldest (lowest sequence) first.
    pub fn pending(&self) -> Vec<SpoolEntry> {
        self.lock().entries.clone()
    }

    /// The bytes of `entry`.
    pub fn read(&self, entry: &SpoolEntry) -> Result<Vec<u8>, SpoolError> {
        std::fs::read(&entry.path).map_err(|source| SpoolError::Io {
            action: "reading the spooled report",
            path: entry.path.clone(),
            source,
        })
    }

    /// Removes `entry` (after the registry accepted it).
    pub fn remove(&self, entry: &SpoolEntry) -> Result<(), SpoolError> {
        match std::fs::remove_file(&entry.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SpoolError::Io {
                    action: "removing the pushed report",
                    path: entry.path.clone(),
                    source,
                });
            }
        }
        // Not fsync'ing the directory would at worst push the report again after a crash.
        if let Err(e) = chain::sync_dir(&self.inner.pending) {
            tracing::debug!(error = %e, "syncing the spool directory after a removal");
        }
        let mut state = self.lock();
        if let Some(i) = state.entries.iter().position(|e| e.path == entry.path) {
            let removed = state.entries.remove(i);
            state.bytes = state.bytes.saturating_sub(removed.bytes);
            state.full = state.bytes > self.inner.max_bytes;
        }
        Ok(())
    }

    /// Counters for metrics.
    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        SpoolStats {
            entries: state.entries.len(),
            bytes: state.bytes,
            max_bytes: self.inner.max_bytes,
            full: state.full,
            refused: state.refused,
        }
    }

    /// Drops `entry` from the index without touching its file (it was moved away).
    fn forget(&self, entry: &SpoolEntry) {
        let mut state = self.lock();
        if let Some(i) = state.entries.iter().position(|e| e.path == entry.path) {
            let removed = state.entries.remove(i);
            state.bytes = state.bytes.saturating_sub(removed.bytes);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is a single assignment
        // or push), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `<sequence:020>-<first 12 hex of the digest>.bundle`: sorts by sequence; the digest keeps two
/// reports with one sequence (chains of two pods in one directory) apart.
fn entry_name(sequence: u64, digest: &str) -> String {
    format!("{sequence:020}-{}.bundle", &digest[..12.min(digest.len())])
}

fn sort_entries(entries: &mut [SpoolEntry]) {
    entries.sort_by(|a, b| (a.sequence, &a.path).cmp(&(b.sequence, &b.path)));
}

/// What the spool needs from a report bundle.
#[derive(Debug)]
struct ParsedReport {
    sequence: u64,
    pod: String,
    generated_at: DateTime<Utc>,
}

/// Reads sequence, pod and generation time from a signed report without verifying the signature
/// (the spool holds what this sidecar signed; verifiers check signatures).
fn parse_report(bytes: &[u8]) -> Result<ParsedReport, String> {
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(format!("bundle mediaType is {:?}", bundle.media_type));
    }
    if bundle.dsse_envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "payloadType is {:?}",
            bundle.dsse_envelope.payload_type
        ));
    }
    let statement = crate::attest::parse_statement(&bundle.dsse_envelope.payload)
        .map_err(|e| format!("payload: {e}"))?;
    if statement.predicate_type != REPORT_PREDICATE_TYPE {
        return Err(format!("predicateType is {:?}", statement.predicate_type));
    }
    let fields = ChainFields::from_predicate(&statement.predicate)?;
    let sequence = fields
        .sequence
        .ok_or_else(|| "the report has no sequence".to_owned())?;
    let generated_at = fields
        .generated_at
        .ok_or_else(|| "the report has no generatedAt".to_owned())?;
    Ok(ParsedReport {
        sequence,
        pod: fields.pod,
        generated_at,
    })
}

/// Checks a spool file: its name, its content, and that the name matches the content.
fn parse_entry(name: &str, path: &Path, bytes: &[u8]) -> Result<SpoolEntry, String> {
    let (sequence, prefix) = name
        .strip_suffix(".bundle")
        .and_then(|stem| stem.split_once('-'))
        .and_then(|(seq, prefix)| Some((seq.parse::<u64>().ok()?, prefix)))
        .ok_or_else(|| "the name is not <sequence>-<digest>.bundle".to_owned())?;
    let digest = chain::bundle_digest(bytes);
    if !digest.starts_with(prefix) || prefix.len() != 12 {
        return Err(format!(
            "the content's digest sha256:{digest} does not match the name (damaged file)"
        ));
    }
    let parsed = parse_report(bytes)?;
    if parsed.sequence != sequence {
        return Err(format!(
            "the name says sequence {sequence}, the report {}",
            parsed.sequence
        ));
    }
    Ok(SpoolEntry {
        sequence,
        digest,
        pod: parsed.pod,
        generated_at: parsed.generated_at,
        bytes: bytes.len() as u64,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
