// SPDX-License-Identifier: Apache-2.0
//! Appending records as NDJSON lines, plain or gzip.
//!
//! Appending to a gzip file adds a new gzip member; readers use a multi-member decoder (RFC 1952 section
//! 2.2: "A gzip file consists of a series of members"), so one file can collect many writer sessions.
//! A gzip member is only complete after [`RecordWriter::finish`]: until then the file reads as a
//! truncated stream, which `linkguard verify` rejects.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;

use super::Record;

/// Whether [`RecordWriter`] compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

enum Sink {
    Plain(BufWriter<Box<dyn Write + Send>>),
    Gzip(GzEncoder<BufWriter<Box<dyn Write + Send>>>),
}

/// Writes records, one JSON object and `\n` per record.
pub struct RecordWriter {
    sink: Sink,
    line: Vec<u8>,
    written: u64,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gzip = matches!(self.sink, Sink::Gzip(_));
        f.debug_struct("RecordWriter")
            .field("gzip", &gzip)
            .field("written", &self.written)
            .finish()
    }
}

impl RecordWriter {
    /// A writer on any byte sink (a file, a pipe, a `Vec<u8>` behind a shared handle).
    pub fn new(out: impl Write + Send + 'static, compression: Compression) -> Self {
        let out = BufWriter::with_capacity(64 * 1024, Box::new(out) as Box<dyn Write + Send>);
        let sink = match compression {
            Compression::None => Sink::Plain(out),
            Compression::Gzip => Sink::Gzip(GzEncoder::new(out, flate2::Compression::default())),
        };
        Self {
            sink,
            line: Vec::with_capacity(512),
            written: 0,
        }
    }

    /// Opens `path` for appending (creating it if needed).
    pub fn append(path: &Path, compression: Compression) -> io::Result<Self> {
        let file: File = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::new(file, compression))
    }

    /// Appends one record. Records are buffered: call [`Self::flush`] (plain) or [`Self::finish`] to make
    /// them visible to readers.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        match &mut self.sink {
            Sink::Plain(w) => w.write_all(&self.line)?,
            Sink::Gzip(w) => w.write_all(&self.line)?,
        }
        self.written += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Pushes buffered lines to the sink. For gzip this is a sync flush: the data becomes decodable, but
    /// the member is still incomplete until [`Self::finish`].
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }

    /// Writes the gzip trailer (if any) and flushes.
    pub fn finish(self) -> io::Result<()> {
        match self.sink {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gzip(w) => w.finish()?.flush(),
        }
    }
}
