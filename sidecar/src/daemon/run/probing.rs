// SPDX-License-Identifier: Apache-2.0
//! The probe side of the sidecar: one plain thread owns the [`Observer`] (BPF probes, discovery) and the
//! observation writer, polls for processes, flushes on its timer and on request, and publishes its state
//! on a watch channel. The async side talks to it by message: probing is synchronous, syscall-bound work
//! that must keep its poll rhythm whatever the registry or the HTTP server do.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info};

use crate::discover::{Discovery, ProcFs, Selector};
use crate::observation::{ProbeStatus, Record, RecordBody};
use crate::probe::{
    Interval, ObservationOutput, Observer, ObserverConfig, OutputConfig, OutputError, ProbeBackend,
    Targets,
};

use super::alerts::Condition;

/// Records held in memory between flushes (and while writes fail); more are counted as dropped.
pub const MAX_RECORDS: usize = 100_000;

/// What the probe thread needs besides the backend.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub observer: ObserverConfig,
    pub cgroup: Option<String>,
    pub poll_interval: Duration,
    pub flush_interval: Duration,
    /// Coverage mode: every function traps again at least this often (verification ticks re-arm too).
    pub rearm_every: Duration,
    pub output: OutputConfig,
}

/// The probe thread's state, as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// Followed app processes.
    pub followed: usize,
    /// Function probes in place over all followed processes (coverage mode: including those that
    /// stopped trapping after their first call in this window).
    pub attached: u64,
    /// Functions of followed processes the kernel refused to probe.
    pub attach_failures: u64,
    /// Whether any probe was ever attached.
    pub ever_attached: bool,
    /// Whether any app process was ever found.
    pub ever_followed: bool,
    /// Records lost since start (full in-memory buffer, or writes failing for too long).
    pub events_dropped: u64,
    /// Records are being lost, or waiting in memory because writes fail.
    pub buffer_full: bool,
    /// The last observation write failed (with this error).
    pub write_error: Option<String>,
    /// Processes could not be listed (with this error).
    pub poll_error: Option<String>,
}

/// The end of the interval a flush wrote (or tried to write).
pub type FlushResult = Result<DateTime<Utc>, String>;

enum Command {
    Flush {
        rearm: bool,
        reply: oneshot::Sender<FlushResult>,
    },
    Stop {
        reply: oneshot::Sender<FlushResult>,
    },
}

/// The handle the async side holds.
#[derive(Debug)]
pub struct ProbeHandle {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ProbeState>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Flush { .. } => "Flush",
            Command::Stop { .. } => "Stop",
        })
    }
}

/// Wraps the kernel backend to learn how many probes are in place: [`Session::flush`] takes the counts
/// of every attached function of every followed process, so the length of its last take is that number.
///
/// [`Session::flush`]: crate::probe::Session::flush
#[derive(Debug)]
pub struct Metered<B> {
    inner: B,
    last_take: usize,
}

impl<B> Metered<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            last_take: 0,
        }
    }
}

impl<B: ProbeBackend> ProbeBackend for Metered<B> {
    type Link = B::Link;

    fn attach(
        &mut self,
        target: &std::path::Path,
        points: &[crate::probe::backend::AttachPoint],
        scope: crate::probe::backend::Scope,
    ) -> Result<Self::Link, crate::probe::backend::BpfError> {
        self.inner.attach(target, points, scope)
    }

    fn detach(&mut self, link: Self::Link) -> Result<(), crate::probe::backend::BpfError> {
        self.inner.detach(link)
    }

    fn read_counts(&self, cookies: &[u32]) -> Result<Vec<u64>, crate::probe::backend::BpfError> {
        self.inner.read_counts(cookies)
    }

    fn take_counts(
        &mut self,
        cookies: &[u32],
    ) -> Result<Vec<u64>, crate::probe::backend::BpfError> {
        self.last_take = cookies.len();
        self.inner.take_counts(cookies)
    }

    fn drain_first_seen(&mut self, max: usize) -> Vec<crate::probe::backend::FirstSeen> {
        self.inner.drain_first_seen(max)
    }

    fn reset_first_seen(&mut self, cookies: &[u32]) -> Result<(), crate::probe::backend::BpfError> {
        self.inner.reset_first_seen(cookies)
    }

    fn max_probes(&self) -> u32 {
        self.inner.max_probes()
    }
}

impl ProbeHandle {
    /// Starts the probe thread with `backend` (loaded by the caller: a load failure is a startup error).
    pub fn start<B>(
        backend: B,
        targets: Targets,
        settings: ProbeSettings,
    ) -> Result<Self, OutputError>
    where
        B: ProbeBackend + Send + 'static,
        B::Link: Send,
    {
        let output = ObservationOutput::open(settings.output.clone())?;
        let selector = Selector {
            entrypoints: true,
            cgroup: settings.cgroup.clone(),
            ..Selector::default()
        };
        let discovery = Discovery::new(
            ProcFs::default(),
            selector,
            targets.entrypoints().iter().cloned(),
        );
        let observer = Observer::new(
            Metered::new(backend),
            targets,
            discovery,
            settings.observer.clone(),
        );
        let (commands, receiver) = mpsc::channel();
        let (publish, state) = watch::channel(ProbeState::default());
        let mut worker = Worker {
            observer,
            output,
            settings,
            publish,
            state: ProbeState::default(),
            interval_start: Utc::now(),
            unwritten: 0,
            write_failing: Condition::new("observation-write-failing"),
            poll_failing: Condition::new("process-listing-failing"),
            dropping: Condition::new("observations-dropped"),
        };
        let thread = std::thread::Builder::new()
            .name("linkguard-probe".to_owned())
            .spawn(move || worker.run(&receiver))
            .map_err(|source| OutputError::Open {
                path: "probe thread".into(),
                source,
            })?;
        Ok(Self {
            commands,
            state,
            thread: Some(thread),
        })
    }

    /// A receiver of the published state.
    pub fn state(&self) -> watch::Receiver<ProbeState> {
        self.state.clone()
    }

    /// Flushes now (and, with `rearm`, starts a new coverage window); returns the interval's end.
    pub async fn flush(&self, rearm: bool) -> FlushResult {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Flush { rearm, reply })
            .map_err(|_| "the probe thread has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the probe thread has stopped".to_owned())?
    }

    /// Detaches every probe, writes the last observations and ends the thread.
    pub async fn stop(mut self) -> FlushResult {
        let (reply, answer) = oneshot::channel();
        let sent = self.commands.send(Command::Stop { reply });
        let result = match sent {
            Ok(()) => answer
                .await
                .map_err(|_| "the probe thread has stopped".to_owned())
                .and_then(|r| r),
            Err(_) => Err("the probe thread has stopped".to_owned()),
        };
        if let Some(thread) = self.thread.take() {
            // It has answered (or is gone): joining does not block for long.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }
}

struct Worker<B: ProbeBackend> {
    observer: Observer<Metered<B>>,
    output: ObservationOutput,
    settings: ProbeSettings,
    publish: watch::Sender<ProbeState>,
    state: ProbeState,
    interval_start: DateTime<Utc>,
    /// Records the writer keeps in memory after a failed write.
    unwritten: usize,
    write_failing: Condition,
    poll_failing: Condition,
    dropping: Condition,
}

/// At most one flush per this period outside the timer (after attaches and exits, so that the number of
/// probes in place is current).
const EARLY_FLUSH_SPACING: Duration = Duration::from_secs(1);

impl<B: ProbeBackend> Worker<B> {
    fn run(&mut self, commands: &mpsc::Receiver<Command>) {
        let mut next_flush = Instant::now() + self.settings.flush_interval;
        let mut next_rearm = Instant::now() + self.settings.rearm_every;
        let mut early_flush: Option<Instant> = None;
        let mut last_flush = Instant::now();
        loop {
            match commands.recv_timeout(self.settings.poll_interval) {
                Ok(Command::Flush { rearm, reply }) => {
                    let result = self.flush();
                    if rearm {
                        self.observer.rearm();
                        next_rearm = Instant::now() + self.settings.rearm_every;
                    }
                    let _ = reply.send(result);
                    last_flush = Instant::now();
                    next_flush = last_flush + self.settings.flush_interval;
                }
                Ok(Command::Stop { reply }) => {
                    let _ = reply.send(self.finish());
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.finish();
                    return;
                }
            }
            match self.observer.poll() {
                Ok(stats) => {
                    self.poll_failing.clear();
                    self.state.poll_error = None;
                    if stats.attached_files > 0 || stats.exited > 0 {
                        early_flush.get_or_insert(last_flush + EARLY_FLUSH_SPACING);
                    }
                    if self.state.followed != stats.followed {
                        self.state.followed = stats.followed;
                        self.state.ever_followed |= stats.followed > 0;
                        self.publish();
                    }
                }
                Err(err) => {
                    self.poll_failing.raise(&err);
                    self.state.poll_error = Some(err.to_string());
                    self.publish();
                }
            }
            let now = Instant::now();
            if now >= next_flush || early_flush.is_some_and(|at| now >= at) {
                let _ = self.flush();
                early_flush = None;
                last_flush = now;
                next_flush = now + self.settings.flush_interval;
            }
            if now >= next_rearm {
                self.observer.rearm();
                next_rearm = now + self.settings.rearm_every;
            }
        }
    }

    /// Detaches everything and writes what was counted.
    fn finish(&mut self) -> FlushResult {
        self.observer.detach_all();
        let result = self.flush();
        info!(
            records = self.output.written(),
            unwritten = self.unwritten,
            "probes detached, last observations written"
        );
        result
    }

    /// Takes the interval's counts, writes them, updates the published state.
    fn flush(&mut self) -> FlushResult {
        let end = Utc::now();
        let records = self
            .observer
            .flush(Interval {
                start: self.interval_start,
                end,
            })
            .map_err(|e| e.to_string())?;
        self.interval_start = end;
        self.account(&records);
        let attempted = self.unwritten + records.len();
        let count = records.len();
        let written = match self.output.write(records) {
            Ok(()) => {
                self.unwritten = 0;
                self.write_failing.clear();
                self.state.write_error = None;
                Ok(end)
            }
            Err(OutputError::Write {
                unwritten, source, ..
            }) => {
                let lost = attempted.saturating_sub(unwritten);
                self.state.events_dropped += lost as u64;
                self.unwritten = unwritten;
                let message = format!(
                    "writing observations to {} failed: {source}; {unwritten} records kept in memory, the \
                     probes keep counting and the next flush retries",
                    self.settings.output.path.display()
                );
                self.write_failing.raise(&message);
                self.state.write_error = Some(source.to_string());
                Err(message)
            }
            // Rotation failed after a successful write: the records are on disk.
            Err(other) => {
                self.unwritten = 0;
                self.write_failing.raise(&other);
                self.state.write_error = Some(other.to_string());
                Ok(end)
            }
        };
        self.state.buffer_full = self.unwritten > 0 || self.dropping.is_active();
        debug!(
            records = count,
            processes = self.state.followed,
            attached = self.state.attached,
            armed = self.observer.session().armed_points(),
            "flushed"
        );
        self.publish();
        written
    }

    /// Probes in place, attach failures and drops, from the flushed records.
    fn account(&mut self, records: &[Record]) {
        let targets = std::sync::Arc::clone(self.observer.session().targets());
        let mut failures = 0u64;
        let mut dropped = 0u64;
        for record in records {
            match &record.body {
                RecordBody::Probe {
                    status: ProbeStatus::AttachFailed,
                    symbol,
                    binary,
                    ..
                } => {
                    failures += match symbol {
                        Some(_) => 1,
                        // A whole file failed: every function of it the map asked for.
                        None => targets
                            .index_of(binary)
                            .and_then(|i| targets.file(i))
                            .map_or(1, |f| f.symbols.len() as u64),
                    };
                }
                RecordBody::Drop { dropped: n } => dropped += n,
                _ => {}
            }
        }
        let attached = self.observer.session().backend().last_take as u64;
        self.state.attached = attached;
        self.state.ever_attached |= attached > 0;
        self.state.attach_failures = failures;
        self.state.events_dropped += dropped;
        self.state.followed = self.observer.followed();
        self.state.ever_followed |= self.state.followed > 0;
        if dropped > 0 {
            self.dropping.raise(&format_args!(
                "{dropped} observation records were dropped: the in-memory buffer ({MAX_RECORDS} records) \
                 filled between two flushes; lower observations.flushIntervalSeconds"
            ));
        } else {
            self.dropping.clear();
        }
    }

    fn publish(&self) {
        self.publish.send_if_modified(|state| {
            if *state == self.state {
                false
            } else {
                *state = self.state.clone();
                true
            }
        });
    }
}
