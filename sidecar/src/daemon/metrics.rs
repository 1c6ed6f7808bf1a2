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
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// One parsed sample: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// A strict parser of text format 0.0.4 as Prometheus reads it: metric and label names, label value
    /// escapes (only `\\`, `\"`, `\n`), Go float spellings, one HELP and TYPE per family before its
    /// samples, a family's samples together, no duplicate series, a final line feed. Returns the samples
    /// and each family's type.
    fn parse_strict(text: &str) -> Result<(Vec<Sample>, BTreeMap<String, String>), String> {
        fn metric_name(s: &str) -> bool {
            let mut chars = s.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        fn label_name(s: &str) -> bool {
            metric_name(s) && !s.contains(':') && !s.starts_with("__")
        }
        fn value(s: &str) -> Result<f64, String> {
            match s {
                "NaN" => Ok(f64::NAN),
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                s if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
                    s.parse().map_err(|e| format!("value {s:?}: {e}"))
                }
                s => Err(format!("value {s:?} is not a Go float")),
            }
        }
        if !text.ends_with('\n') {
            return Err("the exposition must end with a line feed".into());
        }
        let mut samples = Vec::new();
        let mut help = BTreeSet::new();
        let mut types = BTreeMap::new();
        let mut closed = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut series = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let (keyword, rest) = rest
                    .split_once(' ')
                    .ok_or(format!("bad comment {line:?}"))?;
                let (name, arg) = rest
                    .split_once(' ')
                    .ok_or(format!("bad {keyword} {line:?}"))?;
                if !metric_name(name) {
                    return Err(format!("bad metric name in {line:?}"));
                }
                if current.as_deref() != Some(name) {
                    if let Some(done) = current.take() {
                        closed.insert(done);
                    }
                    if closed.contains(name) {
                        return Err(format!("family {name} appears twice"));
                    }
                    current = Some(name.to_owned());
                }
                match keyword {
                    "HELP" => {
                        if !help.insert(name.to_owned()) {
                            return Err(format!("second HELP for {name}"));
                        }
                        let mut chars = arg.chars();
                        while let Some(c) = chars.next() {
                            if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                                return Err(format!("bad escape in HELP {line:?}"));
                            }
                        }
                    }
                    "TYPE" => {
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                            return Err(format!("bad type {arg:?}"));
                        }
                        if samples.iter().any(|(n, _, _): &Sample| n == name) {
                            return Err(format!("TYPE of {name} after its samples"));
                        }
                        if types.insert(name.to_owned(), arg.to_owned()).is_some() {
                            return Err(format!("second TYPE for {name}"));
                        }
                    }
                    _ => return Err(format!("unknown comment {line:?}")),
                }
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or(format!("sample without value {line:?}"))?;
            let name = &line[..name_end];
            if !metric_name(name) {
                return Err(format!("bad metric name in {line:?}"));
            }
            if current.as_deref() != Some(name) {
                return Err(format!(
                    "sample {name} outside its family (HELP/TYPE first, samples together)"
                ));
            }
            let mut rest = &line[name_end..];
            let mut labels = BTreeMap::new();
            if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.char_indices().peekable();
                loop {
                    let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
                    if body[start..].starts_with('}') {
                        rest = &body[start + 1..];
                        break;
                    }
                    let eq = body[start..]
                        .find('=')
                        .ok_or(format!("label without = in {line:?}"))?
                        + start;
                    let label = &body[start..eq];
                    if !label_name(label) {
                        return Err(format!("bad label name {label:?}"));
                    }
                    while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                        chars.next();
                    }
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("unquoted label value in {line:?}"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('"') => break,
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('\\') => value.push('\\'),
                                Some('"') => value.push('"'),
                                Some('n') => value.push('\n'),
                                other => return Err(format!("bad escape \\{other:?} in {line:?}")),
                            },
                            Some(c) => value.push(c),
                            None => return Err(format!("unterminated label value in {line:?}")),
                        }
                    }
                    if labels.insert(label.to_owned(), value).is_some() {
                        return Err(format!("duplicate label {label} in {line:?}"));
                    }
                    match chars.peek().map(|(_, c)| *c) {
                        Some(',') => {
                            chars.next();
                        }
                        Some('}') => {}
                        _ => return Err(format!("expected , or }} in {line:?}")),
                    }
                }
            }
            let value_text = rest
                .strip_prefix(' ')
                .ok_or(format!("no space before value in {line:?}"))?;
            if value_text.contains(' ') {
                return Err(format!("timestamps or extra fields in {line:?}"));
            }
            let key = format!("{name}{labels:?}");
            if !series.insert(key) {
                return Err(format!("duplicate series {line:?}"));
            }
            samples.push((name.to_owned(), labels, value(value_text)?));
        }
        for name in types.keys() {
            if !help.contains(name) {
                return Err(format!("{name} has no HELP"));
            }
        }
        Ok((samples, types))
    }

    fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        samples
            .iter()
            .find(|(n, l, _)| n == name && *l == labels)
            .map(|(_, _, v)| *v)
    }

    fn filled() -> Metrics {
        let m = Metrics::new("1.2.3");
        m.set_observation_rate(0.875);
        m.set_observation_rates_by_tag([("tls", 1.0), ("crypto \"legacy\"\\path\nnext", 0.25)]);
        m.set_unexpected_symbols(2);
        m.set_probes_attached(950);
        m.set_probe_attach_failures(50);
        m.set_observation_buffer_full(true);
        m.add_events_dropped(3);
        m.set_events_dropped_total(10);
        m.set_events_dropped_total(4);
        m.inc_reports_pushed();
        m.inc_reports_pushed();
        m.set_reports_spooled(5);
        m.inc_registry_errors("push_report");
        m.inc_registry_errors("push_report");
        m.inc_registry_errors("list_referrers");
        m.set_verify_duration(Duration::from_millis(1500));
        m.set_verdict(false);
        m.set_ready(true);
        m.set_bpf_stats(Some(BpfStats {
            run_time: Duration::from_nanos(2_500_000_000),
            run_count: 42,
        }));
        m
    }

    #[test]
    fn every_metric_renders_strictly_valid_with_its_value() {
        let text = filled().render();
        let (samples, types) = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let expect = [
            ("linkguard_observation_rate", vec![], 0.875, "gauge"),
            (
                "linkguard_observation_rate_by_tag",
                vec![("tag", "tls")],
                1.0,
                "gauge",
            ),
            (
                "linkguard_observation_rate_by_tag",
                vec![("tag", "crypto \"legacy\"\\path\nnext")],
                0.25,
                "gauge",
            ),
            ("linkguard_unexpected_symbols_count", vec![], 2.0, "gauge"),
            ("linkguard_probes_attached", vec![], 950.0, "gauge"),
            ("linkguard_probe_attach_failures", vec![], 50.0, "gauge"),
            ("linkguard_observation_buffer_full", vec![], 1.0, "gauge"),
            ("linkguard_events_dropped_total", vec![], 10.0, "counter"),
            ("linkguard_reports_pushed_total", vec![], 2.0, "counter"),
            ("linkguard_reports_spooled", vec![], 5.0, "gauge"),
            (
                "linkguard_registry_errors_total",
                vec![("operation", "push_report")],
                2.0,
                "counter",
            ),
            (
                "linkguard_registry_errors_total",
                vec![("operation", "list_referrers")],
                1.0,
                "counter",
            ),
            (
                "linkguard_registry_errors_total",
                vec![("operation", "resolve")],
                0.0,
                "counter",
            ),
            ("linkguard_verify_duration_seconds", vec![], 1.5, "gauge"),
            ("linkguard_verdict", vec![], 0.0, "gauge"),
            ("linkguard_ready", vec![], 1.0, "gauge"),
            (
                "linkguard_bpf_run_time_seconds_total",
                vec![],
                2.5,
                "counter",
            ),
            ("linkguard_bpf_run_count_total", vec![], 42.0, "counter"),
            (
                "linkguard_build_info",
                vec![("version", "1.2.3")],
                1.0,
                "gauge",
            ),
        ];
        for (name, labels, value, kind) in &expect {
            assert_eq!(
                value_of(&samples, name, labels),
                Some(*value),
                "{name}{labels:?} in\n{text}"
            );
            assert_eq!(types.get(*name).map(String::as_str), Some(*kind), "{name}");
        }
        // 3 registry operations are pre-created plus the one counted above.
        assert_eq!(samples.len(), expect.len() + 1, "{text}");
        for (name, kind) in &types {
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new("v\"1\\\n");
        m.set_observation_rates_by_tag([("a\"b\\c\nd", 0.5)]);
        let text = m.render();
        assert!(
            text.contains("linkguard_observation_rate_by_tag{tag=\"a\\\"b\\\\c\\nd\"} 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains("linkguard_build_info{version=\"v\\\"1\\\\\\n\"} 1\n"),
            "{text}"
        );
        // Every sample stays on one line.
        assert!(
            text.lines()
                .all(|l| l.starts_with("# ") || l.starts_with("linkguard_")),
            "{text}"
        );
    }

    #[test]
    fn values_without_a_measurement_are_absent_not_zero() {
        let text = Metrics::new("0.1.0").render();
        let (samples, _) = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for absent in [
            "linkguard_observation_rate",
            "linkguard_observation_rate_by_tag",
            "linkguard_unexpected_symbols_count",
            "linkguard_verify_duration_seconds",
            "linkguard_verdict",
            "linkguard_bpf_run_time_seconds_total",
            "linkguard_bpf_run_count_total",
        ] {
            assert!(
                !text.contains(absent),
                "{absent} must be absent before a measurement:\n{text}"
            );
        }
        // Counters and current-state gauges start at 0.
        for (name, labels) in [
            ("linkguard_events_dropped_total", vec![]),
            ("linkguard_reports_pushed_total", vec![]),
            ("linkguard_probes_attached", vec![]),
            ("linkguard_ready", vec![]),
            (
                "linkguard_registry_errors_total",
                vec![("operation", "push_report")],
            ),
        ] {
            assert_eq!(
                value_of(&samples, name, &labels),
                Some(0.0),
                "{name}\n{text}"
            );
        }
        // A rate of exactly 0 is a measurement: present.
        let m = Metrics::new("0.1.0");
        m.set_observation_rate(0.0);
        m.set_unexpected_symbols(0);
        let (samples, _) = parse_strict(&m.render()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            value_of(&samples, "linkguard_observation_rate", &[]),
            Some(0.0)
        );
        assert_eq!(
            value_of(&samples, "linkguard_unexpected_symbols_count", &[]),
            Some(0.0)
        );
        // BPF stats go away again when the kernel stops counting.
        m.set_bpf_stats(Some(BpfStats::default()));
        assert!(m.render().contains("linkguard_bpf_run_count_total 0\n"));
        m.set_bpf_stats(None);
        assert!(!m.render().contains("linkguard_bpf_"));
    }

    #[test]
    fn special_floats_use_prometheus_spellings() {
        let m = Metrics::new("0.1.0");
        m.set_observation_rates_by_tag([
            ("nan", f64::NAN),
            ("inf", f64::INFINITY),
            ("ninf", f64::NEG_INFINITY),
        ]);
        m.set_verify_duration(Duration::from_nanos(1));
        let text = m.render();
        assert!(text.contains("{tag=\"nan\"} NaN\n"), "{text}");
        assert!(text.contains("{tag=\"inf\"} +Inf\n"), "{text}");
        assert!(text.contains("{tag=\"ninf\"} -Inf\n"), "{text}");
        let (samples, _) = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            value_of(&samples, "linkguard_verify_duration_seconds", &[]),
            Some(1e-9)
        );
    }

    #[test]
    fn the_strict_parser_rejects_what_prometheus_rejects() {
        for bad in [
            "linkguard_x 1",                             // no final line feed
            "# TYPE linkguard_x gauge\nlinkguard_x 1\n", // no HELP
            "# HELP linkguard_x h\n# TYPE linkguard_x gauge\nlinkguard_x{a=\"\\t\"} 1\n", // bad escape
            "# HELP linkguard_x h\n# TYPE linkguard_x gauge\nlinkguard_x{a=\"b\"} one\n", // bad value
            "# HELP linkguard_x h\n# TYPE linkguard_x gauge\nlinkguard_x 1\nlinkguard_x 2\n", // duplicate
            "# HELP linkguard_x h\n# TYPE linkguard_x gauge\nlinkguard_y 1\n", // sample outside family
        ] {
            assert!(parse_strict(bad).is_err(), "accepted {bad:?}");
        }
    }

    /// The Prometheus project's Python client parses the exposition to the same samples (a parser we
    /// did not write). Needs `prometheus-client` from ci/requirements.txt in `LINKGUARD_PYTHON` (or
    /// `.venv`).
    #[test]
    fn prometheus_client_parser_reads_the_same_samples() {
        let python = std::env::var_os("LINKGUARD_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3")
            });
        let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, repr(s.value), family.type])
print(json.dumps(out))
"#;
        let child = std::process::Command::new(&python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(err) => {
                let reason = format!("{} not runnable ({err}); run ci/setup", python.display());
                if std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
                    panic!("LINKGUARD_REQUIRE_INTEROP=1 but {reason}");
                }
                eprintln!("SKIP prometheus_client_parser_reads_the_same_samples: {reason}");
                return;
            }
        };
        let text = filled().render();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(text.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named 'prometheus_client'")
            && !std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
        {
            eprintln!(
                "SKIP prometheus_client_parser_reads_the_same_samples: prometheus-client not installed"
            );
            return;
        }
        assert!(
            output.status.success(),
            "prometheus_client rejected the exposition: {stderr}\n{text}"
        );
        let parsed: Vec<(String, BTreeMap<String, String>, String, String)> =
            serde_json::from_slice(&output.stdout).unwrap();
        let (mine, _) = parse_strict(&text).unwrap();
        assert_eq!(parsed.len(), mine.len(), "{parsed:?}");
        for (name, labels, value) in &mine {
            let theirs = parsed
                .iter()
                .find(|(n, l, _, _)| n == name && l == labels)
                .unwrap_or_else(|| panic!("prometheus_client lost {name}{labels:?}: {parsed:?}"));
            assert_eq!(theirs.2.parse::<f64>().unwrap(), *value, "{name}{labels:?}");
        }
        // It reads the counters as counters and the rest as gauges.
        let kind = |n: &str| parsed.iter().find(|p| p.0 == n).map(|p| p.3.clone());
        assert_eq!(
            kind("linkguard_reports_pushed_total").as_deref(),
            Some("counter")
        );
        assert_eq!(
            kind("linkguard_registry_errors_total").as_deref(),
            Some("counter")
        );
        assert_eq!(kind("linkguard_observation_rate").as_deref(), Some("gauge"));
    }

    #[test]
    fn fdinfo_of_a_program_is_parsed_and_others_are_not() {
        // As printed by bpf_prog_show_fdinfo (kernel/bpf/syscall.c), a uprobe.multi link and a map.
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2071\nprog_type:\t2\nprog_jited:\t1\n\
                    prog_tag:\t0123456789abcdef\nmemlock:\t4096\nprog_id:\t77\nrun_time_ns:\t123456\n\
                    run_cnt:\t89\nrecursion_misses:\t0\nverified_insns:\t42\n";
        assert_eq!(
            parse_prog_fdinfo(prog),
            Some(ProgFdinfo {
                id: 77,
                run_time_ns: 123_456,
                run_count: 89
            })
        );
        let link = "pos:\t0\nflags:\t02000000\nmnt_id:\t15\nino:\t2071\nlink_type:\tuprobe_multi\n\
                    link_id:\t12\nprog_tag:\t0123456789abcdef\nprog_id:\t77\n";
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t6\nkey_size:\t4\nvalue_size:\t8\nmax_entries:\t1\n\
                   map_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t4096\nmap_id:\t9\nfrozen:\t0\n";
        for other in [
            link,
            map,
            "pos:\t0\nflags:\t0100000\nmnt_id:\t24\nino:\t3\n",
            "",
        ] {
            assert_eq!(parse_prog_fdinfo(other), None, "{other}");
        }
    }

    /// Probed below; unmangled and not inlined so the symbol has one body every call goes through.
    #[unsafe(no_mangle)]
    #[inline(never)]
    extern "C" fn linkguard_metrics_probe_target(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(31).rotate_left(7)
    }

    /// Why this process cannot load and attach linkguard's program, if it cannot.
    fn missing_bpf_privilege() -> Option<String> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        // CAP_SYS_ADMIN (21): BPF_ENABLE_STATS needs it.
        if cap_eff & (1 << 21) == 0 {
            return Some(format!(
                "needs CAP_SYS_ADMIN (CapEff={cap_eff:#x}); run as root"
            ));
        }
        match linkguard_bpf::KernelSupport::probe() {
            Ok(support) if support.is_complete() => None,
            Ok(support) => Some(format!("kernel lacks a feature: {support:?}")),
            Err(err) => Some(format!("kernel feature probe failed: {err}")),
        }
    }

    /// Turns on the kernel's run-time stats while the returned descriptor is open (BPF_ENABLE_STATS,
    /// Linux 5.8), without touching the global sysctl (which keeps reading 0).
    fn enable_kernel_stats() -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd as _;
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr { struct { __u32 type; } enable_stats; }, BPF_STATS_RUN_TIME = 0.
        let attr = [0u32; 2];
        // SAFETY: attr outlives the call and the size passed is its size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        assert!(
            fd >= 0,
            "BPF_ENABLE_STATS: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
    }

    /// The real thing: linkguard's program attached to a function of this test binary, kernel stats on,
    /// the function called; the metrics report at least those runs, and nothing once stats are off.
    #[test]
    fn bpf_stats_count_the_runs_of_the_loaded_program() {
        use linkguard_bpf::{AttachPoint, LoadOptions, Probes, Scope};
        if let Some(reason) = missing_bpf_privilege() {
            if std::env::var("LINKGUARD_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
                panic!("LINKGUARD_REQUIRE_PRIVILEGED=1 but {reason}");
            }
            eprintln!("SKIP bpf_stats_count_the_runs_of_the_loaded_program: {reason}");
            return;
        }
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let info = crate::elf::read_file(&exe).unwrap();
        let offset = info
            .symtab_functions
            .iter()
            .find(|f| f.name == "linkguard_metrics_probe_target")
            .and_then(|f| f.offset)
            .expect("the probe target in .symtab");
        let mut probes = Probes::load(&LoadOptions {
            max_probes: 1,
            ..LoadOptions::default()
        })
        .unwrap();
        let _link = probes
            .attach(
                &exe,
                &[AttachPoint { offset, cookie: 0 }],
                Scope::AllProcesses,
            )
            .unwrap();
        if !kernel_stats_enabled() {
            assert_eq!(
                BpfStats::read_self(),
                None,
                "absent while the kernel has never counted"
            );
        }
        let guard = enable_kernel_stats();
        let before = BpfStats::read_self().unwrap_or_default();
        let target: extern "C" fn(u64) -> u64 =
            std::hint::black_box(linkguard_metrics_probe_target);
        const CALLS: u64 = 500;
        for i in 0..CALLS {
            std::hint::black_box(target(i));
        }
        let after = BpfStats::read_self().expect("stats of the loaded program");
        assert_eq!(
            probes.read_counts(&[0]).unwrap(),
            vec![CALLS],
            "the probe counted every call"
        );
        assert!(
            after.run_count >= before.run_count + CALLS,
            "{before:?} -> {after:?}"
        );
        assert!(after.run_time > before.run_time, "{before:?} -> {after:?}");
        let metrics = Metrics::new("0.1.0");
        metrics.set_bpf_stats(BpfStats::read_self());
        let (samples, _) = parse_strict(&metrics.render()).unwrap();
        assert!(
            value_of(&samples, "linkguard_bpf_run_count_total", &[])
                .is_some_and(|n| n >= CALLS as f64)
        );
        drop(guard);
        // Once counted, the counters stay: a counter never goes back to absent.
        assert!(BpfStats::read_self().is_some_and(|s| s.run_count >= after.run_count));
        drop(probes);
    }
}
