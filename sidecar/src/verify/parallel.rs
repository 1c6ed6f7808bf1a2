// SPDX-License-Identifier: Apache-2.0
//! Verifying files on all cores.
//!
//! The calling thread cuts the files into chunks of whole lines (cheap: reading, gunzipping, counting
//! newlines) and deals them round-robin to one worker per core. Each worker parses its chunks into its
//! own [`Evidence`]; the results are merged, which gives exactly what one pass in reading order gives
//! (see `evidence`). Channels are bounded, so memory stays at a few chunks per worker.
//!
//! Errors: a worker stops counting at its first bad line and publishes the chunk number; every chunk
//! after the earliest failing one is skipped (the reader stops, workers drain their queues), every chunk
//! before it is still parsed, so the error reported is the first one in reading order, as with a
//! sequential read.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use super::evidence::{Evidence, Pos};
use super::index::MapIndex;
use super::{VerifyError, Window};
use crate::observation::{Chunk, ChunkReader, ReadError, parse_line};

/// More workers than this do not help: the reader thread becomes the limit.
const MAX_WORKERS: usize = 8;
/// Chunks queued per worker.
const QUEUE: usize = 2;

/// A worker's result: its evidence, or the first bad line it met.
type Outcome = (Evidence, Option<(Pos, ReadError)>);

fn work(
    index: &MapIndex<'_>,
    window: &Window,
    paths: &[PathBuf],
    chunks: Receiver<Chunk>,
    failed_at: &AtomicU64,
) -> Outcome {
    let mut evidence = Evidence::new(index);
    let mut error = None;
    for chunk in chunks {
        if error.is_some() || chunk.seq > failed_at.load(Ordering::Relaxed) {
            continue;
        }
        for line in chunk.lines() {
            let pos = Pos {
                seq: chunk.seq,
                line: line.index,
            };
            match line.check_length().and_then(|()| parse_line(line.text)) {
                Ok(record) => evidence.add(index, window, &record, pos),
                Err(e) => {
                    let path = paths.get(chunk.file).cloned().unwrap_or_default();
                    error = Some((pos, e.at(path, line.number)));
                    failed_at.fetch_min(chunk.seq, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    (evidence, error)
}

/// Reads `files` into one [`Evidence`]; returns it and the number the next chunk would get.
pub(super) fn read_files(
    index: &MapIndex<'_>,
    window: &Window,
    files: &[PathBuf],
    first_seq: u64,
    chunk_bytes: usize,
) -> Result<(Evidence, u64), VerifyError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .clamp(1, MAX_WORKERS);
    let failed_at = AtomicU64::new(u64::MAX);
    let mut reader = ChunkReader::new(files, first_seq, chunk_bytes);
    let (outcomes, read_error) = std::thread::scope(|scope| {
        let (mut senders, mut handles) = (Vec::new(), Vec::new());
        for _ in 0..workers {
            let (tx, rx) = sync_channel::<Chunk>(QUEUE);
            senders.push(tx);
            let failed_at = &failed_at;
            handles.push(scope.spawn(move || work(index, window, files, rx, failed_at)));
        }
        let mut read_error = None;
        let mut next = 0;
        while let Some(chunk) = reader.next_chunk() {
            match chunk {
                Ok(chunk) if chunk.seq > failed_at.load(Ordering::Relaxed) => break,
                Ok(chunk) => {
                    // A worker that is gone panicked; joining it below re-raises the panic.
                    if senders[next % workers].send(chunk).is_err() {
                        break;
                    }
                    next += 1;
                }
                Err(e) => {
                    read_error = Some((
                        Pos {
                            seq: reader.next_seq(),
                            line: 0,
                        },
                        e,
                    ));
                    break;
                }
            }
        }
        drop(senders);
        let outcomes: Vec<Outcome> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (outcomes, read_error)
    });
    let mut errors: Vec<(Pos, ReadError)> = read_error.into_iter().collect();
    let mut merged = Evidence::new(index);
    for (evidence, error) in outcomes {
        errors.extend(error);
        merged.merge(evidence);
    }
    match errors.into_iter().min_by_key(|(pos, _)| *pos) {
        Some((_, error)) => Err(error.into()),
        None => Ok((merged, reader.next_seq())),
    }
}
