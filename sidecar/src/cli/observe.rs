// SPDX-License-Identifier: Apache-2.0
//! `linkguard observe`: probe the app's functions and write observation records.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use linkguard::discover::{Discovery, ProcFs, Selector};
use linkguard::function_map::FunctionMap;
use linkguard::probe::launch::{ChildExit, RunningChild, spawn_held};
use linkguard::probe::{
    Interval, Mode, ObservationOutput, Observer, ObserverConfig, Origin, OutputConfig, Targets,
};

use super::EXIT_OK;

const EXAMPLES: &str = "\
Examples:
  # exact counts of one running process for 60 s
  linkguard observe --function-map web.fmap.json --pid 4242 --mode count --duration 60 --output obs.ndjson

  # every process of the app's entrypoints, now and later (sidecar), gzip, rotated at 64 MiB
  linkguard observe --function-map web.fmap.json --all --output /var/lib/linkguard/obs.ndjson.gz --gzip \\
      --rotate-size 67108864

  # start a command with its probes attached before it runs; exits with the command's status
  linkguard observe --function-map web.fmap.json --mode count --output obs.ndjson -- ./server --once";

/// `linkguard observe ...`
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ObserveArgs {
    /// The function map: which functions of which files to probe.
    #[arg(long, value_name = "FILE")]
    function_map: PathBuf,
    /// Observe this process (pid as seen by linkguard). Repeatable.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Observe every process running one of the map's entrypoints, including those started later.
    #[arg(long)]
    all: bool,
    /// Only processes whose /proc/<pid>/cgroup contains TEXT (a container id); alone, all of them.
    #[arg(long, value_name = "TEXT")]
    cgroup: Option<String>,
    /// count: exact counts, every call traps. coverage: each function traps until first seen in a
    /// window (counts are lower bounds; near-zero steady-state cost).
    #[arg(long, value_enum, default_value_t = ModeArg::Coverage)]
    mode: ModeArg,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM, the command's exit, or the exit of
    /// every --pid process).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Write the counted calls every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "10")]
    flush_interval: Duration,
    /// Coverage window: every function traps again when a new one starts [default: the map's
    /// coverage.windowSeconds].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    window: Option<Duration>,
    /// How often to look for new and exited processes.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    poll_interval_ms: u64,
    /// Append NDJSON observation records to FILE (`-` for stdout).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Gzip the output (one gzip member per flush).
    #[arg(long)]
    gzip: bool,
    /// Rotate the output file when it reaches BYTES.
    #[arg(long, value_name = "BYTES")]
    rotate_size: Option<u64>,
    /// Rotated files to keep.
    #[arg(long, value_name = "N", default_value_t = 5)]
    retain: usize,
    /// Probe counters to allocate (one per function and process); memory is 8 bytes per counter per CPU.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    max_probes: u32,
    /// Records held in memory between flushes; more are dropped and reported as a `drop` record.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_records: usize,
    /// Pod identity written into records, `namespace/name`.
    #[arg(long, value_name = "NS/NAME", env = "LINKGUARD_POD")]
    pod: Option<String>,
    /// Container name written into records.
    #[arg(long, value_name = "NAME", env = "LINKGUARD_CONTAINER")]
    container: Option<String>,
    /// Start this command with the probes already attached, observe it (and its children), and exit
    /// with its exit status.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Count,
    Coverage,
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{value:?} must be a positive number of seconds"))
}

/// The last SIGINT/SIGTERM received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
}

/// SIGINT and SIGTERM only set a flag: the loop then flushes what was counted and exits cleanly.
fn install_signal_handlers() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic (async-signal-safe).
        let ret = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if ret != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How long a forwarded SIGINT/SIGTERM may take to end the command before it is killed.
const COMMAND_GRACE: Duration = Duration::from_secs(10);

pub fn run(args: ObserveArgs) -> anyhow::Result<ExitCode> {
    if args.pids.is_empty() && !args.all && args.cgroup.is_none() && args.command.is_empty() {
        anyhow::bail!(
            "say which processes to observe: --pid PID, --all, --cgroup TEXT, or -- CMD ARGS..."
        );
    }
    let map = FunctionMap::from_file(&args.function_map)
        .with_context(|| format!("reading the function map {}", args.function_map.display()))?;
    let mode = match args.mode {
        ModeArg::Count => Mode::Count,
        ModeArg::Coverage => Mode::Coverage,
    };
    let targets = Targets::from_map(&map, mode == Mode::Coverage);
    let proc = ProcFs::default();
    for pid in &args.pids {
        proc.stat(*pid)
            .with_context(|| format!("--pid {pid}: no such process visible in /proc"))?;
    }
    let window = args
        .window
        .unwrap_or(Duration::from_secs(map.predicate.coverage.window_seconds));
    let load = linkguard_bpf::LoadOptions {
        max_probes: args.max_probes,
        first_seen_events: mode == Mode::Coverage,
        ..linkguard_bpf::LoadOptions::default()
    };
    let probes = linkguard_bpf::Probes::load(&load).context(
        "loading the BPF probes (linkguard needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE)",
    )?;
    let selector = Selector {
        pids: args.pids.iter().copied().collect(),
        follow_children: !args.command.is_empty(),
        entrypoints: args.all,
        cgroup: args.cgroup.clone(),
    };
    info!(
        mode = ?mode,
        files = targets.files().len(),
        functions = targets.symbol_count(),
        output = %args.output.display(),
        "observing"
    );
    let discovery = Discovery::new(proc, selector, targets.entrypoints().iter().cloned());
    let config = ObserverConfig {
        mode,
        origin: Origin {
            pod: args.pod.clone(),
            container: args.container.clone(),
        },
        max_records: args.max_records,
    };
    let mut observer = Observer::new(probes, targets, discovery, config);
    let mut writer = ObservationOutput::open(OutputConfig {
        path: args.output.clone(),
        gzip: args.gzip,
        rotate_bytes: args.rotate_size,
        retain: args.retain,
        max_unwritten: args.max_records,
    })?;
    install_signal_handlers().context("installing the SIGINT/SIGTERM handlers")?;

    let mut child = match args.command.split_first() {
        Some((program, rest)) => Some(start_command(&mut observer, program, rest)?),
        None => None,
    };
    let mut run = Loop {
        interval_start: Utc::now(),
        stop: None,
        exit: None,
    };
    let result = run.observe(&args, window, &mut observer, &mut writer, child.as_mut());
    if let Some(child) = child.as_mut()
        && run.exit.is_none()
    {
        // An error or the end of --duration: the command does not outlive its observer.
        child.signal(libc::SIGKILL);
        run.exit = child.wait();
    }
    observer.detach_all();
    run.flush(&mut observer, &mut writer, true)
        .context("writing the last observations")?;
    result?;
    info!(records = writer.written(), output = %args.output.display(), reason = run.stop.unwrap_or("stopped"), "observation finished");
    match run.exit {
        Some(exit) => {
            match exit {
                ChildExit::Code(code) => info!(code, "command exited"),
                ChildExit::Signal(signal) => info!(signal, "command killed by signal"),
            }
            Ok(ExitCode::from(
                u8::try_from(exit.shell_code()).unwrap_or(u8::MAX),
            ))
        }
        None => Ok(EXIT_OK),
    }
}

/// Forks the command held before exec, attaches its probes, releases it.
fn start_command<B>(
    observer: &mut Observer<B>,
    program: &OsString,
    args: &[OsString],
) -> anyhow::Result<RunningChild>
where
    B: linkguard::probe::ProbeBackend,
{
    let held = spawn_held(program, args)
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    // What /proc/<pid>/exe will show after the exec (absolute, symlinks resolved): records name the
    // command like the map's entrypoints, even when it exits before a poll sees it.
    let exe = std::fs::canonicalize(held.program())
        .unwrap_or_else(|_| held.program().to_path_buf())
        .display()
        .to_string();
    if let Err(err) = observer.hold(held.pid(), &exe) {
        // Dropping the held child closes its pipe: it exits (126) without running the command.
        let pid = held.pid();
        drop(held);
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
        return Err(err).context("attaching the probes of the command before it starts");
    }
    Ok(held.release()?)
}

struct Loop {
    interval_start: DateTime<Utc>,
    stop: Option<&'static str>,
    exit: Option<ChildExit>,
}

impl Loop {
    fn observe<B>(
        &mut self,
        args: &ObserveArgs,
        window: Duration,
        observer: &mut Observer<B>,
        writer: &mut ObservationOutput,
        mut child: Option<&mut RunningChild>,
    ) -> anyhow::Result<()>
    where
        B: linkguard::probe::ProbeBackend,
    {
        let started = Instant::now();
        let mut next_flush = started + args.flush_interval;
        let mut window_end = started + window;
        let mut kill_at: Option<Instant> = None;
        let explicit_only = !args.all && args.cgroup.is_none() && child.is_none();
        loop {
            observer.poll()?;
            if let Some(child) = child.as_deref_mut() {
                if let Some(exit) = child.try_wait() {
                    self.exit = Some(exit);
                    self.stop = Some("command exited");
                    return Ok(());
                }
                if kill_at.is_some_and(|at| Instant::now() >= at) {
                    warn!(
                        pid = child.pid(),
                        "the command did not exit after the signal: killing it"
                    );
                    child.signal(libc::SIGKILL);
                    self.exit = child.wait();
                    self.stop = Some("signal");
                    return Ok(());
                }
            }
            let signal = SIGNAL.swap(0, Ordering::SeqCst);
            if signal != 0 {
                info!(signal, "signal received: flushing and stopping");
                match child.as_deref_mut() {
                    // Let the command end on the signal so its last calls are counted.
                    Some(child) => {
                        child.signal(signal);
                        kill_at.get_or_insert(Instant::now() + COMMAND_GRACE);
                    }
                    None => {
                        self.stop = Some("signal");
                        return Ok(());
                    }
                }
            }
            if args.duration.is_some_and(|d| started.elapsed() >= d) {
                self.stop = Some("duration elapsed");
                return Ok(());
            }
            if explicit_only && observer.followed() == 0 {
                self.stop = Some("every observed process exited");
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_flush {
                self.flush(observer, writer, false)?;
                next_flush = now + args.flush_interval;
                if now >= window_end {
                    observer.rearm();
                    window_end = now + window;
                }
            }
            std::thread::sleep(Duration::from_millis(args.poll_interval_ms.max(1)));
        }
    }

    /// Writes the interval's records. A failed write keeps them for the next one (a warning) unless it
    /// is the last.
    fn flush<B>(
        &mut self,
        observer: &mut Observer<B>,
        writer: &mut ObservationOutput,
        last: bool,
    ) -> anyhow::Result<()>
    where
        B: linkguard::probe::ProbeBackend,
    {
        let end = Utc::now();
        let records = observer.flush(Interval {
            start: self.interval_start,
            end,
        })?;
        self.interval_start = end;
        let count = records.len();
        match writer.write(records) {
            Ok(()) => {
                info!(
                    records = count,
                    processes = observer.followed(),
                    armed = observer.session().armed_points(),
                    "flushed"
                );
                Ok(())
            }
            Err(err) if !last => {
                warn!(%err, "writing observations failed; retrying at the next flush");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }
}
