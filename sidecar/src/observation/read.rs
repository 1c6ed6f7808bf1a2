// SPDX-License-Identifier: Apache-2.0
//! Streaming NDJSON reader over several files, plain or gzip.
//!
//! Records are handed out as views borrowing from the chunk being read, so reading costs no allocation
//! per record and memory does not grow with the input. Gzip is detected by
//! its magic bytes (RFC 1952 section 2.3.1: ID1 = 0x1f, ID2 = 0x8b), not by the file name; concatenated
//! members (what appending to a gzip file produces) are read as one stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flate2::bufread::MultiGzDecoder;

use super::chunks::{Chunk, ChunkReader};
use super::view::{RawRecord, VersionOnly};
use super::{RECORD_VERSION, Record, RecordError, RecordView};

/// The longest line accepted, newline excluded. Records are ~100-300 bytes; the limit bounds memory
/// against a corrupt or hostile file.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reading observations failed. Every variant names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot open observations: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: the gzip stream is truncated or corrupt: {source}")]
    Gzip {
        path: PathBuf,
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: read failed: {source}")]
    Io {
        path: PathBuf,
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}:{line}: line is longer than {MAX_LINE_BYTES} bytes (not an observation record)"
    )]
    LineTooLong { path: PathBuf, line: u64 },
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        path: PathBuf,
        line: u64,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}: {source}")]
    Record {
        path: PathBuf,
        line: u64,
        #[source]
        source: RecordError,
    },
}

/// One open observation file.
pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) reader: Box<dyn BufRead>,
    pub(super) gzip: bool,
    /// Lines read so far.
    pub(super) line: u64,
}

impl Source {
    pub(super) fn open(path: &Path) -> Result<Self, ReadError> {
        let open_err = |source| ReadError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = BufReader::with_capacity(64 * 1024, File::open(path).map_err(open_err)?);
        let gzip = file.fill_buf().map_err(open_err)?.starts_with(&GZIP_MAGIC);
        let reader: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::with_capacity(
                64 * 1024,
                MultiGzDecoder::new(file),
            ))
        } else {
            Box::new(file)
        };
        Ok(Self {
            path: path.to_owned(),
            reader,
            gzip,
            line: 0,
        })
    }

    /// A read error at `line`, named for what failed: the gzip stream or the file.
    pub(super) fn read_error(&self, line: u64, source: io::Error) -> ReadError {
        let path = self.path.clone();
        if self.gzip {
            ReadError::Gzip { path, line, source }
        } else {
            ReadError::Io { path, line, source }
        }
    }
}

/// serde_json appends " at line L column C" to its messages; in NDJSON the line is always 1 and we
/// print the file's line ourselves.
fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// What is wrong with one line, before its location is attached.
#[derive(Debug)]
pub(crate) enum LineError {
    TooLong,
    Utf8 { column: usize },
    Json { column: usize, message: String },
    Record(RecordError),
}

impl LineError {
    pub(crate) fn at(self, path: PathBuf, line: u64) -> ReadError {
        match self {
            Self::TooLong => ReadError::LineTooLong { path, line },
            Self::Utf8 { column } => ReadError::Json {
                path,
                line,
                column,
                message: "the line is not valid UTF-8".to_owned(),
            },
            Self::Json { column, message } => ReadError::Json {
                path,
                line,
                column,
                message,
            },
            Self::Record(source) => ReadError::Record { path, line, source },
        }
    }
}

/// Parses one line (with or without its newline) into its flat form.
pub(crate) fn parse_raw(line: &[u8]) -> Result<RawRecord<'_>, LineError> {
    // Validating UTF-8 once per line and parsing a `str` is ~35% faster than `from_slice`, which
    // validates every string it borrows (measured with the verify bench).
    let text = std::str::from_utf8(line).map_err(|e| LineError::Utf8 {
        column: e.valid_up_to() + 1,
    })?;
    serde_json::from_str::<RawRecord<'_>>(text).map_err(|err| {
        // A record of a newer format usually also fails the field checks: name the version instead.
        match serde_json::from_str::<VersionOnly>(text) {
            Ok(VersionOnly { v }) if v != RECORD_VERSION => {
                LineError::Record(RecordError::UnsupportedVersion { found: v })
            }
            _ => LineError::Json {
                column: err.column(),
                message: json_message(&err),
            },
        }
    })
}

/// Parses and checks one line.
pub(crate) fn parse_line(line: &[u8]) -> Result<RecordView<'_>, LineError> {
    RecordView::try_from(parse_raw(line)?).map_err(LineError::Record)
}

/// Whether a line holds only whitespace (skipped, but counted).
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Chunk size of the sequential reader: small, since it holds one chunk at a time.
const READER_CHUNK_BYTES: usize = 64 * 1024;

/// Streams records from files in order. Not an `Iterator`: each view borrows the reader's current chunk,
/// so use `while let Some(record) = reader.next_view() { .. }`, or [`ObservationReader::records`] for owned
/// records. Lines are cut by the same [`ChunkReader`] that `linkguard verify` reads with on all cores.
///
/// After an error the reader goes on with the next line (or, after an I/O or gzip error, the next file);
/// `linkguard verify` stops at the first error.
pub struct ObservationReader {
    chunks: ChunkReader,
    chunk: Option<Chunk>,
    /// Byte offset and index of the next line in `chunk`.
    next: (usize, u64),
    /// The line returned last: its bytes in `chunk`, file index and line number.
    current: Option<(Range<usize>, usize, u64)>,
}

impl std::fmt::Debug for ObservationReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservationReader")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl ObservationReader {
    /// A reader over `files`, read one after the other. Files are opened lazily.
    pub fn new<P: Into<PathBuf>>(files: impl IntoIterator<Item = P>) -> Self {
        let files: Vec<PathBuf> = files.into_iter().map(Into::into).collect();
        Self {
            chunks: ChunkReader::new(&files, 0, READER_CHUNK_BYTES),
            chunk: None,
            next: (0, 0),
            current: None,
        }
    }

    /// The file and line of the record returned last.
    pub fn location(&self) -> Option<(&Path, u64)> {
        self.current
            .as_ref()
            .map(|(_, file, line)| (self.chunks.path(*file), *line))
    }

    /// The text of the line returned last.
    fn text(&self) -> &[u8] {
        match (&self.chunk, &self.current) {
            (Some(chunk), Some((range, ..))) => &chunk.data[range.clone()],
            _ => &[],
        }
    }

    /// Advances to the next non-blank line, which [`Self::text`] then returns.
    fn advance(&mut self) -> Option<Result<(), ReadError>> {
        loop {
            if let Some(chunk) = &self.chunk
                && let Some((line, next)) = chunk.line_at(self.next.0, self.next.1)
            {
                let start = self.next.0;
                self.current = Some((start..start + line.text.len(), chunk.file, line.number));
                self.next = (next, self.next.1 + 1);
                if let Err(e) = line.check_length() {
                    return Some(Err(
                        e.at(self.chunks.path(chunk.file).to_owned(), line.number)
                    ));
                }
                if !is_blank(line.text) {
                    return Some(Ok(()));
                }
                continue;
            }
            self.next = (0, 0);
            match self.chunks.next_chunk()? {
                Ok(chunk) => self.chunk = Some(chunk),
                Err(e) => {
                    self.chunk = None;
                    return Some(Err(e));
                }
            }
        }
    }

    fn error_here(&self, make: impl FnOnce(PathBuf, u64) -> ReadError) -> ReadError {
        let (path, line) = self
            .location()
            .map_or((PathBuf::new(), 0), |(p, l)| (p.to_owned(), l));
        make(path, line)
    }

    /// Parses the current line into its flat form.
    fn raw(&self) -> Result<RawRecord<'_>, ReadError> {
        parse_raw(self.text()).map_err(|e| self.error_here(|path, line| e.at(path, line)))
    }

    /// The next record, checked, borrowing from the reader; `None` after the last line of the last file.
    pub fn next_view(&mut self) -> Option<Result<RecordView<'_>, ReadError>> {
        if let Err(e) = self.advance()? {
            return Some(Err(e));
        }
        Some(self.raw().and_then(|raw| {
            RecordView::try_from(raw).map_err(|source| {
                self.error_here(|path, line| ReadError::Record { path, line, source })
            })
        }))
    }

    /// The next record as an owned [`Record`], timestamps as written.
    pub fn next_record(&mut self) -> Option<Result<Record, ReadError>> {
        if let Err(e) = self.advance()? {
            return Some(Err(e));
        }
        Some(self.raw().and_then(|raw| {
            let (start, end) = (raw.start_text().to_owned(), raw.end_text().to_owned());
            match RecordView::try_from(raw) {
                Ok(view) => Ok(Record {
                    start,
                    end,
                    ..view.to_record()
                }),
                Err(source) => {
                    Err(self.error_here(|path, line| ReadError::Record { path, line, source }))
                }
            }
        }))
    }

    /// The latest `end` of the remaining records, reading them without checking them fully.
    ///
    /// For the default window of `linkguard verify`, which needs this before it can count anything. It is
    /// ~8x cheaper than [`Self::next_view`]: in a line that is a valid record, the bytes `"end":"` can only
    /// be the key `end` and the start of its value, because records are flat objects and every `"` inside
    /// a JSON string is escaped. Lines where that shortcut does not apply (other spacing, escaped keys)
    /// are parsed in full. A line that is not a valid record may yield a wrong time here, but then the
    /// verification pass rejects the input anyway; so the answer is exact whenever it is used.
    pub fn latest_end(mut self) -> Result<Option<DateTime<Utc>>, ReadError> {
        const KEY: &str = "\"end\":\"";
        let mut latest = None;
        while let Some(next) = self.advance() {
            next?;
            let quick = std::str::from_utf8(self.text()).ok().and_then(|text| {
                let value = &text[text.find(KEY)? + KEY.len()..];
                let value = &value[..value.find('"')?];
                super::parse_time(value).ok()
            });
            let end = match quick {
                Some(end) => end,
                None => {
                    let raw = self.raw()?;
                    RecordView::try_from(raw)
                        .map_err(|source| {
                            self.error_here(|path, line| ReadError::Record { path, line, source })
                        })?
                        .end
                }
            };
            latest = latest.max(Some(end));
        }
        Ok(latest)
    }

    /// An iterator of owned records (one allocation per record; the verifier uses [`Self::next_view`]).
    pub fn records(self) -> Records {
        Records { reader: self }
    }
}

/// Owned records of an [`ObservationReader`].
#[derive(Debug)]
pub struct Records {
    reader: ObservationReader,
}

impl Iterator for Records {
    type Item = Result<Record, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next_record()
    }
}
