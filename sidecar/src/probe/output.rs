// SPDX-License-Identifier: Apache-2.0
//! Writing observation records: NDJSON appended to a file (or stdout), optionally gzip (one gzip member per
//! write, so a file cut short by a crash still decompresses up to the last complete write), rotation by
//! size and retention by count. Each write is flushed and fsync'ed: records handed to the writer survive a
//! crash of the sidecar. A failed write keeps the records (bounded) for the next attempt and counts what
//! did not fit, reported as a `drop` record.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::observation::{Compression, RECORD_VERSION, Record, RecordBody, RecordWriter};

use super::records::rfc3339;

/// Where and how records are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    /// The file to append to; `-` writes to stdout (no rotation).
    pub path: PathBuf,
    pub gzip: bool,
    /// Rotate when the file reaches this size (bytes).
    pub rotate_bytes: Option<u64>,
    /// Rotated files kept (`<path>.1` newest ... `<path>.<retain>` oldest; `.N` goes before a `.gz` suffix).
    pub retain: usize,
    /// Records held in memory while writes fail.
    pub max_unwritten: usize,
}

/// Writing observations failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "cannot open the observation output {path}: {source}; check that its directory exists and is writable"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "writing observations to {path} failed: {source} ({unwritten} records kept in memory for the next attempt)"
    )]
    Write {
        path: PathBuf,
        unwritten: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("rotating {path} failed: {source}")]
    Rotate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Appends records to the output, through [`observation::RecordWriter`](crate::observation::RecordWriter)
/// (the contract's writer), one complete write (and gzip member) per call.
#[derive(Debug)]
pub struct ObservationOutput {
    config: OutputConfig,
    size: u64,
    unwritten: Vec<Record>,
    dropped: u64,
    written: u64,
}

impl ObservationOutput {
    /// Opens (creates or appends to) the output.
    pub fn open(config: OutputConfig) -> Result<Self, OutputError> {
        let mut output = Self {
            config,
            size: 0,
            unwritten: Vec::new(),
            dropped: 0,
            written: 0,
        };
        if !output.is_stdout() {
            output.size = output.create()?;
        }
        Ok(output)
    }

    fn is_stdout(&self) -> bool {
        self.config.path == Path::new("-")
    }

    /// Creates the file if needed; returns its size.
    fn create(&self) -> Result<u64, OutputError> {
        let path = &self.config.path;
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|file| file.metadata())
            .map(|meta| meta.len())
            .map_err(|source| OutputError::Open {
                path: path.clone(),
                source,
            })
    }

    fn compression(&self) -> Compression {
        if self.config.gzip {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes `records` after any kept from a failed write. On failure they are kept (up to
    /// `max_unwritten`; the excess is counted and reported as a `drop` record by the next successful write).
    pub fn write(&mut self, records: Vec<Record>) -> Result<(), OutputError> {
        self.unwritten.extend(records);
        let limit = self.config.max_unwritten.max(1);
        if self.unwritten.len() > limit {
            let excess = self.unwritten.len() - limit;
            self.unwritten.drain(..excess);
            self.dropped += excess as u64;
        }
        if self.unwritten.is_empty() && self.dropped == 0 {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.unwritten);
        if self.dropped > 0 {
            let now = rfc3339(Utc::now());
            batch.push(Record {
                v: RECORD_VERSION,
                start: now.clone(),
                end: now,
                pod: None,
                container: None,
                pid: None,
                exe: None,
                body: RecordBody::Drop {
                    dropped: self.dropped,
                },
            });
        }
        match self.write_batch(&batch) {
            Ok(()) => {
                self.written += batch.len() as u64;
                self.dropped = 0;
                self.rotate_if_needed()
            }
            Err(source) => {
                if self.dropped > 0 {
                    batch.pop();
                }
                self.unwritten = batch;
                Err(OutputError::Write {
                    path: self.config.path.clone(),
                    unwritten: self.unwritten.len(),
                    source,
                })
            }
        }
    }

    fn write_batch(&mut self, batch: &[Record]) -> std::io::Result<()> {
        if self.is_stdout() {
            let mut writer = RecordWriter::new(std::io::stdout(), self.compression());
            for record in batch {
                writer.write(record)?;
            }
            return writer.finish();
        }
        let path = &self.config.path;
        let before = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let written = (|| {
            let mut writer = RecordWriter::append(path, self.compression())?;
            for record in batch {
                writer.write(record)?;
            }
            writer.finish()?;
            File::open(path)?.sync_data()
        })();
        if written.is_err() {
            // Leave the file as it was (whole lines, whole gzip members): the batch is retried next time,
            // and a torn line would make the whole file unreadable for `linkguard verify`.
            let _ = OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(before));
        }
        written?;
        self.size = std::fs::metadata(path)?.len();
        Ok(())
    }

    fn rotate_if_needed(&mut self) -> Result<(), OutputError> {
        let Some(limit) = self.config.rotate_bytes else {
            return Ok(());
        };
        if self.is_stdout() || self.size < limit {
            return Ok(());
        }
        let path = self.config.path.clone();
        let rotate_err = |source| OutputError::Rotate {
            path: path.clone(),
            source,
        };
        let retain = self.config.retain;
        // Shift .N-1 -> .N (the oldest falls off), then the current file becomes .1.
        if retain == 0 {
            std::fs::remove_file(&path).map_err(rotate_err)?;
        } else {
            let oldest = rotated_name(&path, retain);
            if oldest.exists() {
                std::fs::remove_file(&oldest).map_err(rotate_err)?;
            }
            for n in (1..retain).rev() {
                let from = rotated_name(&path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated_name(&path, n + 1)).map_err(rotate_err)?;
                }
            }
            std::fs::rename(&path, rotated_name(&path, 1)).map_err(rotate_err)?;
        }
        // A fresh, empty current file: whoever follows the path finds it at once.
        self.size = self.create()?;
        Ok(())
    }
}

/// `obs.ndjson` -> `obs.ndjson.1`; `obs.ndjson.gz` -> `obs.ndjson.1.gz` (tools keep recognising gzip).
pub fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rotated = match name.strip_suffix(".gz") {
        Some(stem) => format!("{stem}.{n}.gz"),
        None => format!("{name}.{n}"),
    };
    path.with_file_name(rotated)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::MultiGzDecoder;

    use super::*;

    fn record(symbol: &str, count: u64) -> Record {
        Record {
            v: RECORD_VERSION,
            start: "2026-01-01T00:00:00.000Z".into(),
            end: "2026-01-01T00:00:10.000Z".into(),
            pod: None,
            container: None,
            pid: Some(1),
            exe: Some("/app".into()),
            body: RecordBody::Call {
                binary: "/app".into(),
                build_id: Some("aa".into()),
                symbol: symbol.into(),
                count,
                lower_bound: false,
            },
        }
    }

    fn config(path: PathBuf) -> OutputConfig {
        OutputConfig {
            path,
            gzip: false,
            rotate_bytes: None,
            retain: 2,
            max_unwritten: 100,
        }
    }

    /// The lines as JSON values (the writer is tested here; reading back through `Record` is the
    /// records module's round-trip test).
    fn read_records(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn values(records: &[Record]) -> Vec<serde_json::Value> {
        records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }

    #[test]
    fn records_are_appended_as_ndjson_across_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obs.ndjson");
        let mut writer = ObservationOutput::open(config(path.clone())).unwrap();
        writer.write(vec![record("a", 1), record("b", 2)]).unwrap();
        drop(writer);
        let mut writer = ObservationOutput::open(config(path.clone())).unwrap();
        writer.write(vec![record("c", 3)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            read_records(&text),
            values(&[record("a", 1), record("b", 2), record("c", 3)])
        );
    }

    #[test]
    fn gzip_output_is_one_member_per_write_and_decodes_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obs.ndjson.gz");
        let mut writer = ObservationOutput::open(OutputConfig {
            gzip: true,
            ..config(path.clone())
        })
        .unwrap();
        writer.write(vec![record("a", 1)]).unwrap();
        writer.write(vec![record("b", 2)]).unwrap();
        let mut text = String::new();
        MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            read_records(&text),
            values(&[record("a", 1), record("b", 2)])
        );
        // gzip(1) agrees.
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
    }

    #[test]
    fn rotation_by_size_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obs.ndjson");
        let mut writer = ObservationOutput::open(OutputConfig {
            rotate_bytes: Some(1),
            ..config(path.clone())
        })
        .unwrap();
        for i in 0..4 {
            writer.write(vec![record("f", i)]).unwrap();
        }
        let count = |p: &Path| {
            read_records(&std::fs::read_to_string(p).unwrap())[0]["count"]
                .as_u64()
                .unwrap()
        };
        // Every write exceeded 1 byte: the current file is empty, .1 is the newest, .2 the oldest kept.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        assert_eq!(count(&rotated_name(&path, 1)), 3);
        assert_eq!(count(&rotated_name(&path, 2)), 2);
        assert!(!rotated_name(&path, 3).exists(), "retention is 2");
        assert_eq!(
            rotated_name(Path::new("/x/o.ndjson.gz"), 2),
            PathBuf::from("/x/o.ndjson.2.gz")
        );
    }

    #[test]
    fn a_failed_write_keeps_records_and_counts_what_did_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("obs.ndjson");
        let mut output = ObservationOutput::open(OutputConfig {
            max_unwritten: 2,
            ..config(path.clone())
        })
        .unwrap();
        // The directory goes away (an unmounted volume): the write fails, the records stay in memory.
        std::fs::remove_dir_all(&sub).unwrap();
        let err = output
            .write(vec![record("a", 1), record("b", 2), record("c", 3)])
            .unwrap_err();
        assert!(err.to_string().contains("2 records kept"), "{err}");
        std::fs::create_dir(&sub).unwrap();
        output.write(vec![]).unwrap();
        let records = read_records(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(records.len(), 3);
        assert_eq!(records[..2], values(&[record("b", 2), record("c", 3)]));
        assert_eq!(
            (records[2]["kind"].as_str(), records[2]["dropped"].as_u64()),
            (Some("drop"), Some(1))
        );
        // What was written is what `linkguard verify` reads.
        let read: Vec<Record> = crate::observation::ObservationReader::new([&path])
            .records()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read[..2], [record("b", 2), record("c", 3)]);
    }
}
