// SPDX-License-Identifier: Apache-2.0
//! The sidecar's Prometheus metrics: cheap setters for the daemon loop, rendered on scrape as text
//! exposition format 0.0.4.
//!
//! Gauges that only mean something after a verification (observation rate, unexpected symbols, verify
//! duration, verdict) are absent until the first one, not zero: a 0 observation rate would fire the
//! "rate < 0.5" alert on every fresh start. The BPF run-time counters are absent unless the kernel
//! collects them (`/proc/sys/kernel/bpf_stats_enabled` is 1, or a tool such as bpftop turned stats on
//! with `BPF_ENABLE_STATS` and the program has run since).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bit pattern for "never set" in the f64 gauges (a NaN no arithmetic produces).
const UNSET: u64 = u64::MAX;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Run time and run count of the BPF programs this process has loaded, as the kernel counts them
/// when `kernel.bpf_stats_enabled` is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BpfStats {
    /// Total time spent in the programs (`run_time_ns`).
    pub run_time: Duration,
    /// Number of program runs (`run_cnt`).
    pub run_count: u64,
}

impl BpfStats {
    /// Reads the stats of every BPF program this process holds a file descriptor for (the sidecar
    /// loads only linkguard's programs), from `/proc/self/fdinfo`. `None` when no program is loaded, or
    /// when the kernel does not collect the stats: `/proc/sys/kernel/bpf_stats_enabled` is not 1 and
    /// the counters are still 0. (The kernel also counts while any process holds a `BPF_ENABLE_STATS`
    /// descriptor, which the sysctl does not show; counters above 0 prove stats were on, so they are
    /// reported from then on, and a counter that stops advancing is still a correct counter.)
    ///
    /// Why fdinfo and not the kernel's list of all programs: with `hostPID` every linkguard sidecar of a
    /// node sees every other one's programs (same name), so only the descriptors this process holds say
    /// which programs are its own. The kernel prints `run_time_ns`/`run_cnt` for a program fd since 5.1
    /// (`bpf_prog_show_fdinfo`); they only advance while stats are enabled.
    pub fn read_self() -> Option<Self> {
        let mut seen = std::collections::BTreeSet::new();
        let mut total: Option<Self> = None;
        for entry in std::fs::read_dir("/proc/self/fdinfo").ok()?.flatten() {
            // A descriptor closed since read_dir listed it is simply gone.
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Some(prog) = parse_prog_fdinfo(&text) else {
                continue;
            };
            // Two descriptors of one program (a dup) count once.
            if seen.insert(prog.id) {
                let sum = total.get_or_insert_with(Self::default);
                sum.run_time += Duration::from_nanos(prog.run_time_ns);
                sum.run_count += prog.run_count;
            }
        }
        let counted = |t: &Self| t.run_count > 0 || !t.run_time.is_zero();
        total.filter(|t| counted(t) || kernel_stats_enabled())
    }
}

/// Whether `kernel.bpf_stats_enabled` is 1 (the kernel may count while it is 0 too, see
/// [`BpfStats::read_self`]).
pub fn kernel_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

/// One BPF program descriptor's fdinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProgFdinfo {
    id: u32,
    run_time_ns: u64,
    run_count: u64,
}

/// Parses `/proc/<pid>/fdinfo/<fd>` of a BPF program descriptor; `None` for any other descriptor
/// (files, maps, links: a link's fdinfo has `prog_id` too, but no `prog_type` and no run counters).
fn parse_prog_fdinfo(text: &str) -> Option<ProgFdinfo> {
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == key).then(|| v.trim())
        })
    };
    field("prog_type")?;
    Some(ProgFdinfo {
        id: field("prog_id")?.parse().ok()?,
        run_time_ns: field("run_time_ns")?.parse().ok()?,
        run_count: field("run_cnt")?.parse().ok()?,
    })
}

/// Registry operations whose error counter exists (at 0) from the start, so `rate()` over it works from
/// the first error on. Other operation names given to [`Metrics::inc_registry_errors`] appear when first
/// counted.
pub const REGISTRY_OPERATIONS: &[&str] = &["resolve", "pull_map", "push_report"];

/// All sidecar metrics. Share it (`Arc`, or inside [`crate::daemon::http::State`]) and update it from
/// the loop; every setter is an atomic store (the per-tag and per-operation maps take a short lock).
#[derive(Debug)]
pub struct Metrics {
    version: String,
    observation_rate: AtomicU64,
    rate_by_tag: Mutex<BTreeMap<String, f64>>,
    unexpected_symbols: AtomicU64,
    probes_attached: AtomicU64,
    probe_attach_failures: AtomicU64,
    buffer_full: AtomicU64,
    events_dropped: AtomicU64,
    reports_pushed: AtomicU64,
    reports_spooled: AtomicU64,
    spool_full: AtomicU64,
    reports_refused: AtomicU64,
    registry_errors: Mutex<BTreeMap<String, u64>>,
    verify_duration: AtomicU64,
    verdict: AtomicU64,
    ready: AtomicU64,
    bpf: Mutex<Option<BpfStats>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(env!("CARGO_PKG_VERSION"))
    }
}

/// Locks `m`, going on with the data if a panicking holder poisoned it (metrics are plain numbers; a
/// half-done update of one of them is harmless).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn store_f64(cell: &AtomicU64, value: f64) {
    cell.store(value.to_bits(), Ordering::Relaxed);
}

fn load_f64(cell: &AtomicU64) -> Option<f64> {
    match cell.load(Ordering::Relaxed) {
        UNSET => None,
        bits => Some(f64::from_bits(bits)),
    }
}

impl Metrics {
    /// Empty metrics; `version` is the `linkguard_build_info{version}` label.
    pub fn new(version: &str) -> Self {
        let errors = REGISTRY_OPERATIONS
            .iter()
            .map(|op| ((*op).to_owned(), 0))
            .collect();
        Self {
            version: version.to_owned(),
            observation_rate: AtomicU64::new(UNSET),
            rate_by_tag: Mutex::new(BTreeMap::new()),
            unexpected_symbols: AtomicU64::new(UNSET),
            probes_attached: AtomicU64::new(0),
            probe_attach_failures: AtomicU64::new(0),
            buffer_full: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            reports_pushed: AtomicU64::new(0),
            reports_spooled: AtomicU64::new(0),
            spool_full: AtomicU64::new(0),
            reports_refused: AtomicU64::new(0),
            registry_errors: Mutex::new(errors),
            verify_duration: AtomicU64::new(UNSET),
            verdict: AtomicU64::new(UNSET),
            ready: AtomicU64::new(0),
            bpf: Mutex::new(None),
        }
    }

    /// `linkguard_observation_rate`: observed / expected paths of the last window (0.0..=1.0).
    pub fn set_observation_rate(&self, rate: f64) {
        store_f64(&self.observation_rate, rate);
    }

    /// `linkguard_observation_rate_by_tag{tag}`: replaces all per-tag rates with these (a tag not
    /// given disappears).
    pub fn set_observation_rates_by_tag<I, S>(&self, rates: I)
    where
        I: IntoIterator<Item = (S, f64)>,
        S: Into<String>,
    {
        let rates: BTreeMap<String, f64> = rates.into_iter().map(|(t, r)| (t.into(), r)).collect();
        *lock(&self.rate_by_tag) = rates;
    }

    /// `linkguard_unexpected_symbols_count`: symbols seen that the map does not allow, last window.
    pub fn set_unexpected_symbols(&self, count: u64) {
        store_f64(&self.unexpected_symbols, count as f64);
    }

    /// `linkguard_probes_attached`.
    pub fn set_probes_attached(&self, count: u64) {
        self.probes_attached.store(count, Ordering::Relaxed);
    }

    /// `linkguard_probe_attach_failures`.
    pub fn set_probe_attach_failures(&self, count: u64) {
        self.probe_attach_failures.store(count, Ordering::Relaxed);
    }

    /// `linkguard_observation_buffer_full` (1 while events are being lost to a full buffer).
    pub fn set_observation_buffer_full(&self, full: bool) {
        self.buffer_full.store(u64::from(full), Ordering::Relaxed);
    }

    /// `linkguard_events_dropped_total`: adds `count` dropped events.
    pub fn add_events_dropped(&self, count: u64) {
        self.events_dropped.fetch_add(count, Ordering::Relaxed);
    }

    /// `linkguard_events_dropped_total` from a cumulative source (e.g. the BPF drop counter): the
    /// counter becomes `total` unless it is already higher (a counter never goes back).
    pub fn set_events_dropped_total(&self, total: u64) {
        self.events_dropped.fetch_max(total, Ordering::Relaxed);
    }

    /// `linkguard_reports_pushed_total`: one more report reached the registry.
    pub fn inc_reports_pushed(&self) {
        self.reports_pushed.fetch_add(1, Ordering::Relaxed);
    }

    /// `linkguard_reports_spooled`: reports waiting in the spool now.
    pub fn set_reports_spooled(&self, count: u64) {
        self.reports_spooled.store(count, Ordering::Relaxed);
    }

    /// `linkguard_spool_full`: the spool (`spool.maxBytes`) or its disk is full; new reports are refused
    /// until the registry takes some of the spooled ones.
    pub fn set_spool_full(&self, full: bool) {
        self.spool_full.store(u64::from(full), Ordering::Relaxed);
    }

    /// `linkguard_reports_refused_total` from the spool's cumulative count of refused reports: the
    /// counter becomes `total` unless it is already higher (a counter never goes back).
    pub fn set_reports_refused_total(&self, total: u64) {
        self.reports_refused.fetch_max(total, Ordering::Relaxed);
    }

    /// `linkguard_registry_errors_total{operation}`: one more failed registry `operation` (see
    /// [`REGISTRY_OPERATIONS`]).
    pub fn inc_registry_errors(&self, operation: &str) {
        let mut errors = lock(&self.registry_errors);
        match errors.get_mut(operation) {
            Some(n) => *n += 1,
            None => {
                errors.insert(operation.to_owned(), 1);
            }
        }
    }

    /// `linkguard_verify_duration_seconds`: how long the last verification took.
    pub fn set_verify_duration(&self, duration: Duration) {
        store_f64(&self.verify_duration, duration.as_secs_f64());
    }

    /// `linkguard_verdict`: 1 when the last report passed, 0 when it failed.
    pub fn set_verdict(&self, pass: bool) {
        store_f64(&self.verdict, if pass { 1.0 } else { 0.0 });
    }

    /// `linkguard_ready` (also kept in step by [`crate::daemon::http::State::set_ready`]).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(u64::from(ready), Ordering::Relaxed);
    }

    /// `linkguard_bpf_run_time_seconds_total` / `linkguard_bpf_run_count_total`; `None` removes them
    /// (the kernel does not count, see [`BpfStats::read_self`]).
    pub fn set_bpf_stats(&self, stats: Option<BpfStats>) {
        *lock(&self.bpf) = stats;
    }

    /// The metrics in Prometheus text exposition format 0.0.4 (see [`CONTENT_TYPE`]): one `# HELP` and
    /// `# TYPE` per family, families without a value left out.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        let gauge = |out: &mut Exposition, name: &str, help: &str, value: Option<f64>| {
            if let Some(value) = value {
                out.family(name, help, "gauge");
                out.sample(name, &[], value);
            }
        };
        let int = |cell: &AtomicU64| Some(cell.load(Ordering::Relaxed) as f64);

        gauge(
            &mut out,
            "linkguard_observation_rate",
            "Share of the function map's expected paths observed in the last verification window (0 to 1).",
            load_f64(&self.observation_rate),
        );
        let by_tag = lock(&self.rate_by_tag).clone();
        if !by_tag.is_empty() {
            let name = "linkguard_observation_rate_by_tag";
            out.family(
                name,
                "Observation rate of the last window per function map tag (0 to 1).",
                "gauge",
            );
            for (tag, rate) in &by_tag {
                out.sample(name, &[("tag", tag)], *rate);
            }
        }
        gauge(
            &mut out,
            "linkguard_unexpected_symbols_count",
            "Functions observed in the last window that the function map does not allow.",
            load_f64(&self.unexpected_symbols),
        );
        gauge(
            &mut out,
            "linkguard_probes_attached",
            "Uprobes attached now.",
            int(&self.probes_attached),
        );
        gauge(
            &mut out,
            "linkguard_probe_attach_failures",
            "Uprobes that could not be attached.",
            int(&self.probe_attach_failures),
        );
        gauge(
            &mut out,
            "linkguard_observation_buffer_full",
            "1 while observation events are lost because the buffer is full, else 0.",
            int(&self.buffer_full),
        );
        counter(
            &mut out,
            "linkguard_events_dropped_total",
            "Observation events dropped since start.",
            self.events_dropped.load(Ordering::Relaxed) as f64,
        );
        counter(
            &mut out,
            "linkguard_reports_pushed_total",
            "Signed reports pushed to the registry since start.",
            self.reports_pushed.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "linkguard_reports_spooled",
            "Signed reports waiting in the spool for the registry.",
            int(&self.reports_spooled),
        );
        gauge(
            &mut out,
            "linkguard_spool_full",
            "1 while the spool or its disk is full and new reports are refused, else 0.",
            int(&self.spool_full),
        );
        counter(
            &mut out,
            "linkguard_reports_refused_total",
            "Signed reports refused since start because the spool or its disk was full.",
            self.reports_refused.load(Ordering::Relaxed) as f64,
        );
        let errors = lock(&self.registry_errors).clone();
        if !errors.is_empty() {
            let name = "linkguard_registry_errors_total";
            out.family(
                name,
                "Failed registry operations since start, per operation.",
                "counter",
            );
            for (operation, n) in &errors {
                out.sample(name, &[("operation", operation)], *n as f64);
            }
        }
        gauge(
            &mut out,
            "linkguard_verify_duration_seconds",
            "Duration of the last verification.",
            load_f64(&self.verify_duration),
        );
        gauge(
            &mut out,
            "linkguard_verdict",
            "Verdict of the last report: 1 pass, 0 fail.",
            load_f64(&self.verdict),
        );
        gauge(
            &mut out,
            "linkguard_ready",
            "1 once probes are attached and the function map is loaded, else 0.",
            int(&self.ready),
        );
        if let Some(bpf) = *lock(&self.bpf) {
            counter(
                &mut out,
                "linkguard_bpf_run_time_seconds_total",
                "Time spent in linkguard's BPF programs (counted while kernel.bpf_stats_enabled is 1).",
                bpf.run_time.as_secs_f64(),
            );
            counter(
                &mut out,
                "linkguard_bpf_run_count_total",
                "Runs of linkguard's BPF programs (counted while kernel.bpf_stats_enabled is 1).",
                bpf.run_count as f64,
            );
        }
        let name = "linkguard_build_info";
        out.family(
            name,
            "linkguard build information; the value is always 1.",
            "gauge",
        );
        out.sample(name, &[("version", &self.version)], 1.0);
        out.text
    }
}

fn counter(out: &mut Exposition, name: &str, help: &str, value: f64) {
    out.family(name, help, "counter");
    out.sample(name, &[], value);
}

/// A text exposition (format 0.0.4) being written.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        use std::fmt::Write as _;
        // HELP text escapes only backslash and line feed (the format's rule; quotes stay as they are).
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_label_value(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&format_value(value));
        self.text.push('\n');
    }
}

/// Label values escape backslash, double quote and line feed (text format 0.0.4).
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

/// A sample value the way Prometheus (Go's strconv) spells it: `NaN`, `+Inf`, `-Inf`, else the
/// shortest decimal that reads back to the same float.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests;
