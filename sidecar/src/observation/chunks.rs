// SPDX-License-Identifier: Apache-2.0
//! Observation files cut into chunks of whole lines, so that several threads can parse them.
//!
//! Parsing JSON is what verification spends its time on; reading and cutting is ~20 times cheaper. The
//! reader thread cuts ~1 MiB chunks at line ends and numbers them in reading order; workers parse them
//! with [`parse_line`](super::read::parse_line) and attach locations with the chunk's first line number.
//! Memory per chunk is bounded: a line longer than [`MAX_LINE_BYTES`] is cut (the rest of it skipped) and
//! reported as too long by whoever parses the chunk.

use std::io::{self, BufRead, Read as _};
use std::path::{Path, PathBuf};

use super::read::{LineError, MAX_LINE_BYTES, ReadError, Source};

/// Default chunk size: large enough to make channel traffic negligible, small enough to keep a few in
/// flight per worker without noticeable memory.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Whole lines of one file.
#[derive(Debug)]
pub struct Chunk {
    /// Index of the file in the reader's list.
    pub file: usize,
    /// Position of the chunk in reading order over all files, counted from the reader's first number.
    pub seq: u64,
    /// Line number (1-based) of the first line in `data`.
    pub first_line: u64,
    /// Lines, each ending in `\n` except possibly the last line of a file (or a line cut as too long).
    pub data: Vec<u8>,
}

/// One line of a chunk.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLine<'c> {
    /// Line number in the file.
    pub number: u64,
    /// Index of the line in the chunk (blank lines included).
    pub index: u64,
    /// The line without its newline; longer than [`MAX_LINE_BYTES`] when it was cut.
    pub text: &'c [u8],
}

impl ChunkLine<'_> {
    /// Rejects a line that was too long (see [`CHUNK_BYTES`]) before it is parsed.
    pub(crate) fn check_length(&self) -> Result<(), LineError> {
        if self.text.len() > MAX_LINE_BYTES {
            Err(LineError::TooLong)
        } else {
            Ok(())
        }
    }
}

impl Chunk {
    /// The non-blank lines of the chunk.
    pub fn lines(&self) -> impl Iterator<Item = ChunkLine<'_>> {
        self.data
            .split_inclusive(|&b| b == b'\n')
            .enumerate()
            .map(|(i, line)| ChunkLine {
                number: self.first_line + i as u64,
                index: i as u64,
                text: line.strip_suffix(b"\n").unwrap_or(line),
            })
            .filter(|line| !super::read::is_blank(line.text))
    }
}

fn count_lines(data: &[u8]) -> u64 {
    // A plain byte count vectorizes well (~10 GB/s); it keeps the reader thread far ahead of parsing.
    let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
}

/// Reads `chunk_bytes` (or up to the end of the stream), then up to the end of the line. Returns
/// whether the stream ended.
fn fill(reader: &mut dyn BufRead, data: &mut Vec<u8>, chunk_bytes: usize) -> io::Result<bool> {
    while data.len() < chunk_bytes {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(true);
        }
        let n = available.len().min(chunk_bytes - data.len());
        data.extend_from_slice(&available[..n]);
        reader.consume(n);
    }
    if data.ends_with(b"\n") {
        return Ok(false);
    }
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = (&mut *reader).take(limit).read_until(b'\n', data)?;
    if n as u64 == limit && !data.ends_with(b"\n") {
        // Keep what shows the line is too long, drop the rest of it.
        reader.skip_until(b'\n')?;
    }
    Ok(n == 0)
}

/// Cuts files into [`Chunk`]s, in order.
pub struct ChunkReader {
    files: Vec<PathBuf>,
    next_file: usize,
    current: Option<(usize, Source)>,
    next_seq: u64,
    chunk_bytes: usize,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("files", &self.files)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl ChunkReader {
    /// A reader over `files` whose first chunk is numbered `first_seq`.
    pub fn new(files: &[PathBuf], first_seq: u64, chunk_bytes: usize) -> Self {
        Self {
            files: files.to_vec(),
            next_file: 0,
            current: None,
            next_seq: first_seq,
            chunk_bytes: chunk_bytes.max(1),
        }
    }

    /// The path of file `index`.
    pub fn path(&self, index: usize) -> &Path {
        self.files
            .get(index)
            .map_or(Path::new(""), PathBuf::as_path)
    }

    /// The number the next chunk will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next chunk; `None` after the last file.
    pub fn next_chunk(&mut self) -> Option<Result<Chunk, ReadError>> {
        loop {
            let (file, source) = match &mut self.current {
                Some(current) => current,
                None => {
                    let file = self.next_file;
                    let path = self.files.get(file)?;
                    self.next_file += 1;
                    match Source::open(path) {
                        Ok(source) => self.current.insert((file, source)),
                        Err(e) => return Some(Err(e)),
                    }
                }
            };
            let mut data = Vec::with_capacity(self.chunk_bytes + 4096);
            match fill(&mut source.reader, &mut data, self.chunk_bytes) {
                Ok(ended) => {
                    let (file, first_line) = (*file, source.line + 1);
                    source.line += count_lines(&data);
                    if ended {
                        self.current = None;
                    }
                    if data.is_empty() {
                        continue;
                    }
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    return Some(Ok(Chunk {
                        file,
                        seq,
                        first_line,
                        data,
                    }));
                }
                Err(e) => {
                    let line =
                        source.line + 1 + data.iter().filter(|&&b| b == b'\n').count() as u64;
                    let err = source.read_error(line, e);
                    self.current = None;
                    return Some(Err(err));
                }
            }
        }
    }
}
