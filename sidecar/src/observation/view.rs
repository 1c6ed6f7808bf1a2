// SPDX-License-Identifier: Apache-2.0
//! The strict record parser shared by [`Record`](super::Record) and the streaming reader.
//!
//! Lines are first deserialized into a flat [`RawRecord`] that borrows its strings from the line (no
//! allocation unless a string contains JSON escapes) and rejects unknown fields, then checked against
//! the rules of its `kind` (docs/contracts/observations.md) into a [`RecordView`].

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{ProbeStatus, RECORD_VERSION, Record, RecordBody};

/// A record that violates the observation contract (without its location: the reader adds file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record version {found} is not supported (this build reads version {RECORD_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("{field} {value:?} is not an RFC 3339 timestamp: {reason}")]
    Timestamp {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("end {end} is before start {start}")]
    EndBeforeStart { start: String, end: String },
    #[error("a {kind:?} record needs the field {field:?}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("the field {field:?} does not belong in a {kind:?} record")]
    FieldNotAllowed {
        kind: &'static str,
        field: &'static str,
    },
    #[error("{field} {value:?} is not an absolute path inside the app's root")]
    NotAbsolute { field: &'static str, value: String },
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} contains a NUL character (not a path or an ELF symbol name)")]
    Nul { field: &'static str },
    #[error("buildId {value:?} is not lowercase hex")]
    BuildId { value: String },
}

/// A checked record borrowing its strings from the line it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView<'a> {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub pod: Option<Cow<'a, str>>,
    pub container: Option<Cow<'a, str>>,
    pub pid: Option<u32>,
    pub exe: Option<Cow<'a, str>>,
    pub body: BodyView<'a>,
}

/// The kind-specific part of a [`RecordView`]; mirrors [`RecordBody`].
#[derive(Debug, Clone, PartialEq)]
pub enum BodyView<'a> {
    Call {
        binary: Cow<'a, str>,
        build_id: Option<Cow<'a, str>>,
        symbol: Cow<'a, str>,
        count: u64,
        lower_bound: bool,
    },
    Probe {
        binary: Cow<'a, str>,
        build_id: Option<Cow<'a, str>>,
        symbol: Option<Cow<'a, str>>,
        status: ProbeStatus,
        detail: Option<Cow<'a, str>>,
    },
    Drop {
        dropped: u64,
    },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Call,
    Probe,
    Drop,
}

/// Every field of every kind, flat: one pass of serde with `deny_unknown_fields`, then [`RecordView::try_from`]
/// checks which fields the kind needs and allows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawRecord<'a> {
    v: u32,
    #[serde(borrow)]
    start: Cow<'a, str>,
    #[serde(borrow)]
    end: Cow<'a, str>,
    #[serde(default, borrow)]
    pod: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    container: Option<Cow<'a, str>>,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default, borrow)]
    exe: Option<Cow<'a, str>>,
    kind: Kind,
    #[serde(default, borrow)]
    binary: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    build_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    lower_bound: Option<bool>,
    #[serde(default)]
    status: Option<ProbeStatus>,
    #[serde(default, borrow)]
    detail: Option<Cow<'a, str>>,
    #[serde(default)]
    dropped: Option<u64>,
}

impl RawRecord<'_> {
    pub(crate) fn start_text(&self) -> &str {
        &self.start
    }
    pub(crate) fn end_text(&self) -> &str {
        &self.end
    }
}

/// Only `v`, for a useful message when a newer record format also fails the field checks.
#[derive(Deserialize)]
pub(crate) struct VersionOnly {
    pub(crate) v: u32,
}

fn timestamp(field: &'static str, value: &str) -> Result<DateTime<Utc>, RecordError> {
    super::parse_time(value).map_err(|e| RecordError::Timestamp {
        field,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

fn interval(v: u32, start: &str, end: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), RecordError> {
    if v != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion { found: v });
    }
    let (s, e) = (timestamp("start", start)?, timestamp("end", end)?);
    if e < s {
        return Err(RecordError::EndBeforeStart {
            start: start.to_owned(),
            end: end.to_owned(),
        });
    }
    Ok((s, e))
}

/// Paths and symbols are C strings in the kernel and in ELF files: they cannot contain NUL, and the
/// verifier relies on that to build its keys.
fn no_nul(field: &'static str, value: &str) -> Result<(), RecordError> {
    if value.contains('\0') {
        Err(RecordError::Nul { field })
    } else {
        Ok(())
    }
}

fn absolute(field: &'static str, value: &str) -> Result<(), RecordError> {
    if !value.starts_with('/') {
        return Err(RecordError::NotAbsolute {
            field,
            value: value.to_owned(),
        });
    }
    no_nul(field, value)
}

fn non_empty(field: &'static str, value: &str) -> Result<(), RecordError> {
    if value.is_empty() {
        return Err(RecordError::Empty { field });
    }
    no_nul(field, value)
}

fn build_id(value: Option<&str>) -> Result<(), RecordError> {
    match value {
        Some(id)
            if id.is_empty()
                || id.len() % 2 != 0
                || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Err(RecordError::BuildId {
                value: id.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// Checks the parts common to every kind; `exe` and the body's strings.
fn check_strings(exe: Option<&str>, body: &BodyView<'_>) -> Result<(), RecordError> {
    if let Some(exe) = exe {
        absolute("exe", exe)?;
    }
    match body {
        BodyView::Call {
            binary,
            build_id: id,
            symbol,
            ..
        } => {
            absolute("binary", binary)?;
            build_id(id.as_deref())?;
            non_empty("symbol", symbol)
        }
        BodyView::Probe {
            binary,
            build_id: id,
            symbol,
            ..
        } => {
            absolute("binary", binary)?;
            build_id(id.as_deref())?;
            symbol.as_deref().map_or(Ok(()), |s| non_empty("symbol", s))
        }
        BodyView::Drop { .. } => Ok(()),
    }
}

fn required<T>(
    kind: &'static str,
    field: &'static str,
    value: Option<T>,
) -> Result<T, RecordError> {
    value.ok_or(RecordError::MissingField { kind, field })
}

fn forbidden<T>(
    kind: &'static str,
    field: &'static str,
    value: &Option<T>,
) -> Result<(), RecordError> {
    if value.is_some() {
        Err(RecordError::FieldNotAllowed { kind, field })
    } else {
        Ok(())
    }
}

impl<'a> TryFrom<RawRecord<'a>> for RecordView<'a> {
    type Error = RecordError;

    fn try_from(raw: RawRecord<'a>) -> Result<Self, RecordError> {
        let (start, end) = interval(raw.v, &raw.start, &raw.end)?;
        let body = match raw.kind {
            Kind::Call => {
                const K: &str = "call";
                forbidden(K, "status", &raw.status)?;
                forbidden(K, "detail", &raw.detail)?;
                forbidden(K, "dropped", &raw.dropped)?;
                BodyView::Call {
                    binary: required(K, "binary", raw.binary)?,
                    build_id: raw.build_id,
                    symbol: required(K, "symbol", raw.symbol)?,
                    count: required(K, "count", raw.count)?,
                    lower_bound: raw.lower_bound.unwrap_or(false),
                }
            }
            Kind::Probe => {
                const K: &str = "probe";
                forbidden(K, "count", &raw.count)?;
                forbidden(K, "lowerBound", &raw.lower_bound)?;
                forbidden(K, "dropped", &raw.dropped)?;
                BodyView::Probe {
                    binary: required(K, "binary", raw.binary)?,
                    build_id: raw.build_id,
                    symbol: raw.symbol,
                    status: required(K, "status", raw.status)?,
                    detail: raw.detail,
                }
            }
            Kind::Drop => {
                const K: &str = "drop";
                forbidden(K, "binary", &raw.binary)?;
                forbidden(K, "buildId", &raw.build_id)?;
                forbidden(K, "symbol", &raw.symbol)?;
                forbidden(K, "count", &raw.count)?;
                forbidden(K, "lowerBound", &raw.lower_bound)?;
                forbidden(K, "status", &raw.status)?;
                forbidden(K, "detail", &raw.detail)?;
                BodyView::Drop {
                    dropped: required(K, "dropped", raw.dropped)?,
                }
            }
        };
        check_strings(raw.exe.as_deref(), &body)?;
        Ok(RecordView {
            start,
            end,
            pod: raw.pod,
            container: raw.container,
            pid: raw.pid,
            exe: raw.exe,
            body,
        })
    }
}

impl<'a> RecordView<'a> {
    /// Checks an in-memory record exactly as a parsed line is checked, and borrows it.
    pub fn from_record(record: &'a Record) -> Result<Self, RecordError> {
        let (start, end) = interval(record.v, &record.start, &record.end)?;
        let body = match &record.body {
            RecordBody::Call {
                binary,
                build_id,
                symbol,
                count,
                lower_bound,
            } => BodyView::Call {
                binary: Cow::Borrowed(binary),
                build_id: build_id.as_deref().map(Cow::Borrowed),
                symbol: Cow::Borrowed(symbol),
                count: *count,
                lower_bound: *lower_bound,
            },
            RecordBody::Probe {
                binary,
                build_id,
                symbol,
                status,
                detail,
            } => BodyView::Probe {
                binary: Cow::Borrowed(binary),
                build_id: build_id.as_deref().map(Cow::Borrowed),
                symbol: symbol.as_deref().map(Cow::Borrowed),
                status: *status,
                detail: detail.as_deref().map(Cow::Borrowed),
            },
            RecordBody::Drop { dropped } => BodyView::Drop { dropped: *dropped },
        };
        check_strings(record.exe.as_deref(), &body)?;
        Ok(RecordView {
            start,
            end,
            pod: record.pod.as_deref().map(Cow::Borrowed),
            container: record.container.as_deref().map(Cow::Borrowed),
            pid: record.pid,
            exe: record.exe.as_deref().map(Cow::Borrowed),
            body,
        })
    }

    /// An owned [`Record`]; timestamps are written in the canonical form (`2026-01-01T00:00:00Z`).
    pub fn to_record(&self) -> Record {
        let owned = |s: &Option<Cow<'_, str>>| s.as_deref().map(str::to_owned);
        let body = match &self.body {
            BodyView::Call {
                binary,
                build_id,
                symbol,
                count,
                lower_bound,
            } => RecordBody::Call {
                binary: binary.to_string(),
                build_id: owned(build_id),
                symbol: symbol.to_string(),
                count: *count,
                lower_bound: *lower_bound,
            },
            BodyView::Probe {
                binary,
                build_id,
                symbol,
                status,
                detail,
            } => RecordBody::Probe {
                binary: binary.to_string(),
                build_id: owned(build_id),
                symbol: owned(symbol),
                status: *status,
                detail: owned(detail),
            },
            BodyView::Drop { dropped } => RecordBody::Drop { dropped: *dropped },
        };
        Record {
            v: RECORD_VERSION,
            start: crate::observation::format_time(self.start),
            end: crate::observation::format_time(self.end),
            pod: owned(&self.pod),
            container: owned(&self.container),
            pid: self.pid,
            exe: owned(&self.exe),
            body,
        }
    }
}
