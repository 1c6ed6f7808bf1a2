// SPDX-License-Identifier: Apache-2.0
//! Unit tests of the metrics: the exposition checked by a strict parser and by the Prometheus
//! client's parser, and the BPF run-time stats.

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
    m.set_spool_full(true);
    m.set_reports_refused_total(3);
    m.set_reports_refused_total(1);
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
        ("linkguard_spool_full", vec![], 1.0, "gauge"),
        ("linkguard_reports_refused_total", vec![], 3.0, "counter"),
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
        ("linkguard_reports_refused_total", vec![]),
        ("linkguard_spool_full", vec![]),
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
    let target: extern "C" fn(u64) -> u64 = std::hint::black_box(linkguard_metrics_probe_target);
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
        value_of(&samples, "linkguard_bpf_run_count_total", &[]).is_some_and(|n| n >= CALLS as f64)
    );
    drop(guard);
    // Once counted, the counters stay: a counter never goes back to absent.
    assert!(BpfStats::read_self().is_some_and(|s| s.run_count >= after.run_count));
    drop(probes);
}
