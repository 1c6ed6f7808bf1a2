// SPDX-License-Identifier: Apache-2.0
//! Benchmark of offline verification: a 10,000-path map against 1,000,000 observation records.
//!
//! `cargo bench -p linkguard --bench verify` generates both deterministically in a temporary directory,
//! then measures, in one run on the same files:
//! - baselines: reading the lines, and reading + parsing each line into a `serde_json::Value`;
//! - `verify_files` on the plain and the gzip file (best of 3), each in a child process of this binary
//!   that reports its own peak RSS (`VmHWM` of /proc/self/status), so the generator's memory is not
//!   counted;
//! - the `linkguard verify` release binary end to end (default window: a pre-pass for the latest record
//!   end, then verification; JSON report written), its peak RSS sampled from /proc/<pid>/status.
//!
//! Targets (issue "Foundation"): verification under 2 s and under 100 MB RSS on the 2-core machine.
//! `LINKGUARD_BENCH_RECORDS` and `LINKGUARD_BENCH_PATHS` scale the input for a quick run;
//! `LINKGUARD_BENCH_DIR` keeps the generated files there (for profiling).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use linkguard::function_map::FunctionMap;
use linkguard::observation::{Compression, ProbeStatus, Record, RecordBody, RecordWriter};
use linkguard::verify::{Window, verify_files};

const TAGS: [&str; 5] = ["crypto", "tls", "net", "auth", "file"];
const LIBRARIES: usize = 40;
const UNEXPECTED_SYMBOLS: usize = 500;
const WINDOW_SECONDS: i64 = 1800;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn library(i: usize) -> (String, String) {
    (
        format!("/usr/lib/x86_64-linux-gnu/libbench{i:02}.so.1"),
        format!("{:040x}", 0xb1d0_0000_u64 + i as u64),
    )
}

fn symbol(path: usize, hop: usize) -> String {
    format!("bench_function_{path:05}_{hop}")
}

/// A valid map of `paths` paths: one call each, every tenth a two-hop chain, every twentieth optional.
fn generate_map(paths: usize) -> Vec<u8> {
    let mut expected = Vec::with_capacity(paths);
    for p in 0..paths {
        let hops = if p % 10 == 0 { 2 } else { 1 };
        let calls: Vec<serde_json::Value> = (0..hops)
            .map(|h| {
                let (lib, id) = library((p + h) % LIBRARIES);
                serde_json::json!({ "symbol": symbol(p, h), "binary": { "path": lib, "buildId": id } })
            })
            .collect();
        expected.push(serde_json::json!({
            "id": format!("app:{}", symbol(p, 0)),
            "entrypoint": "/usr/bin/app",
            "calls": calls,
            "tags": [TAGS[p % TAGS.len()]],
            "optional": p % 20 == 19,
        }));
    }
    let digest = "5".repeat(64);
    let map = serde_json::json!({
        "_type": "https://stella.ops/predicates/function-map/v1",
        "subject": { "purl": format!("pkg:oci/bench@sha256:{digest}"), "digest": { "sha256": digest } },
        "predicate": {
            "schemaVersion": "1.0.0",
            "service": "bench",
            "expectedPaths": expected,
            "coverage": { "minObservationRate": 0.95, "windowSeconds": WINDOW_SECONDS, "failOnUnexpected": true, "perTag": { "tls": 0.9 } },
            "generatedAt": "2026-01-01T00:00:00Z"
        }
    });
    serde_json::to_vec_pretty(&map).unwrap_or_default()
}

/// `count` records over one window: 94% calls of mapped functions, 5% unexpected calls, the rest probe
/// and drop records. A simple LCG keeps it deterministic without a dependency.
fn generate_records(
    paths: usize,
    count: usize,
    base: DateTime<Utc>,
    out: &Path,
    compression: Compression,
) -> std::io::Result<()> {
    let mut writer = RecordWriter::append(out, compression)?;
    let mut state: u64 = 0x5eed;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    for i in 0..count {
        let offset =
            TimeDelta::milliseconds((i as i64 * (WINDOW_SECONDS - 10) * 1000) / count as i64);
        let start = base + offset;
        let end = start + TimeDelta::seconds(10);
        let roll = next() % 100;
        let p = next() % paths;
        let body = match roll {
            0..94 => {
                let hop = if p.is_multiple_of(10) { next() % 2 } else { 0 };
                let (binary, id) = library((p + hop) % LIBRARIES);
                RecordBody::Call {
                    binary,
                    build_id: Some(id),
                    symbol: symbol(p, hop),
                    count: 1 + (next() % 50) as u64,
                    lower_bound: false,
                }
            }
            94..99 => {
                let (binary, id) = library(p % LIBRARIES);
                let symbol = format!("unexpected_{:03}", next() % UNEXPECTED_SYMBOLS);
                RecordBody::Call {
                    binary,
                    build_id: Some(id),
                    symbol,
                    count: 1,
                    lower_bound: false,
                }
            }
            _ if i % 2 == 0 => {
                let (binary, id) = library(p % LIBRARIES);
                RecordBody::Probe {
                    binary,
                    build_id: Some(id),
                    symbol: Some(symbol(p, 0)),
                    status: ProbeStatus::AttachFailed,
                    detail: Some("bench".to_owned()),
                }
            }
            _ => RecordBody::Drop { dropped: 1 },
        };
        let record = Record {
            v: 1,
            start: linkguard::observation::format_time(start),
            end: linkguard::observation::format_time(end),
            pod: Some("bench/app-5d8f7c9b-x2k4q".to_owned()),
            container: Some("app".to_owned()),
            pid: Some(1 + (next() % 64) as u32),
            exe: Some("/usr/bin/app".to_owned()),
            body,
        };
        writer.write(&record)?;
    }
    writer.finish()
}

fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of a process (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of
/// 1/100 s on Linux).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let (utime, stime): (f64, f64) = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    Some((utime + stime) / 100.0)
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = None;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        let elapsed = t.elapsed();
        best = Some(best.map_or(elapsed, |b: Duration| b.min(elapsed)));
        last = Some(out);
    }
    (best.unwrap_or_default(), last.unwrap_or_else(f))
}

/// Child mode: `--child <map> <observations> <from> <to>`; prints
/// `<best wall seconds> <CPU seconds per run> <VmHWM KiB> <verdict> <records>`.
fn child(args: &[String]) -> ExitCode {
    let [map, obs, from, to] = args else {
        return ExitCode::from(2);
    };
    let parse = |s: &str| linkguard::observation::parse_time(s).ok();
    let map = match FunctionMap::from_file(Path::new(map)) {
        Ok(map) => map,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let window = Window {
        from: parse(from),
        to: parse(to),
    };
    let files = [PathBuf::from(obs)];
    let cpu_before = cpu_seconds("self").unwrap_or(0.0);
    let (elapsed, result) = best_of(3, || verify_files(&map, &files, window));
    let cpu = (cpu_seconds("self").unwrap_or(0.0) - cpu_before) / 3.0;
    match result {
        Ok(result) => {
            let hwm = vm_hwm_kib("self").unwrap_or(0);
            println!(
                "{} {cpu} {hwm} {:?} {}",
                elapsed.as_secs_f64(),
                result.verdict,
                result.observations.records
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

struct Row {
    what: String,
    seconds: f64,
    /// CPU time (all threads); on this shared 2-core machine the steadier number.
    cpu: Option<f64>,
    records: usize,
    rss_mib: Option<f64>,
}

/// Runs `verify_files` in a child process: (best wall seconds, CPU seconds per run, peak RSS MiB, verdict).
fn run_child(
    map: &Path,
    obs: &Path,
    window: (&str, &str),
) -> Result<(f64, f64, f64, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("--child")
        .args([map.as_os_str(), obs.as_os_str()])
        .args([window.0, window.1])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let numbers: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    match (out.status.success(), numbers.as_slice()) {
        (true, [secs, cpu, hwm]) => Ok((
            *secs,
            *cpu,
            hwm / 1024.0,
            text.split_whitespace()
                .skip(3)
                .collect::<Vec<_>>()
                .join(" "),
        )),
        _ => Err(format!(
            "child failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// Runs the CLI, sampling its VmHWM and CPU time every millisecond until it exits:
/// (wall seconds, CPU seconds, peak RSS MiB, exit code).
fn run_cli(map: &Path, obs: &Path, report: &Path) -> Result<(f64, f64, f64, Option<i32>), String> {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_linkguard"))
        .args(["verify", "--function-map"])
        .arg(map)
        .arg("--observations")
        .arg(obs)
        .args(["--format", "json", "--output"])
        .arg(report)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id().to_string();
    let (mut hwm, mut cpu) = (0, 0.0_f64);
    let status = loop {
        if let Some(kib) = vm_hwm_kib(&pid) {
            hwm = hwm.max(kib);
        }
        if let Some(secs) = cpu_seconds(&pid) {
            cpu = cpu.max(secs);
        }
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    Ok((
        t.elapsed().as_secs_f64(),
        cpu,
        hwm as f64 / 1024.0,
        status.code(),
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--child") {
        return child(&args[1..]);
    }
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<(), String> {
    let paths = env_or("LINKGUARD_BENCH_PATHS", 10_000);
    let records = env_or("LINKGUARD_BENCH_RECORDS", 1_000_000);
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    // LINKGUARD_BENCH_DIR keeps the generated files, e.g. to profile `linkguard verify` on them.
    let kept = std::env::var_os("LINKGUARD_BENCH_DIR").map(PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    let base =
        linkguard::observation::parse_time("2026-01-01T00:00:00Z").map_err(|e| e.to_string())?;
    let (map_path, plain, gz) = (
        dir.join("map.json"),
        dir.join("obs.ndjson"),
        dir.join("obs.ndjson.gz"),
    );

    for stale in [&plain, &gz] {
        // RecordWriter appends: start from empty files when LINKGUARD_BENCH_DIR is reused.
        let _ = std::fs::remove_file(stale);
    }
    let t = Instant::now();
    std::fs::write(&map_path, generate_map(paths)).map_err(|e| e.to_string())?;
    generate_records(paths, records, base, &plain, Compression::None).map_err(|e| e.to_string())?;
    generate_records(paths, records, base, &gz, Compression::Gzip).map_err(|e| e.to_string())?;
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1_048_576.0)
            .unwrap_or(0.0)
    };
    eprintln!(
        "generated {paths} paths ({:.1} MiB) and {records} records ({:.0} MiB plain, {:.1} MiB gzip) in {:.1} s",
        size(&map_path),
        size(&plain),
        size(&gz),
        t.elapsed().as_secs_f64()
    );

    let mut rows = Vec::new();
    let (secs, lines) = best_of(3, || {
        let mut reader = BufReader::with_capacity(64 * 1024, File::open(&plain).ok()?);
        let (mut buf, mut n) = (Vec::with_capacity(1024), 0usize);
        while reader.read_until(b'\n', &mut buf).ok()? > 0 {
            n += 1;
            buf.clear();
        }
        Some(n)
    });
    rows.push(Row {
        what: "baseline: read lines".into(),
        seconds: secs.as_secs_f64(),
        cpu: None,
        records: lines.unwrap_or(0),
        rss_mib: None,
    });
    let (secs, parsed) = best_of(3, || {
        let mut reader = BufReader::with_capacity(64 * 1024, File::open(&plain).ok()?);
        let (mut buf, mut n) = (Vec::with_capacity(1024), 0usize);
        while reader.read_until(b'\n', &mut buf).ok()? > 0 {
            let value: serde_json::Value = serde_json::from_slice(&buf).ok()?;
            n += usize::from(value.is_object());
            buf.clear();
        }
        Some(n)
    });
    let baseline = secs.as_secs_f64();
    rows.push(Row {
        what: "baseline: read + serde_json::Value per line".into(),
        seconds: baseline,
        cpu: None,
        records: parsed.unwrap_or(0),
        rss_mib: None,
    });

    let from = linkguard::observation::format_time(base);
    let to = linkguard::observation::format_time(base + TimeDelta::seconds(WINDOW_SECONDS));
    for (what, file) in [
        ("verify_files, plain NDJSON", &plain),
        ("verify_files, gzip", &gz),
    ] {
        let (secs, cpu, rss, verdict) = run_child(&map_path, file, (&from, &to))?;
        eprintln!("{what}: {verdict}");
        rows.push(Row {
            what: what.into(),
            seconds: secs,
            cpu: Some(cpu),
            records,
            rss_mib: Some(rss),
        });
    }
    let (secs, cpu, rss, code) = run_cli(&map_path, &plain, &dir.join("report.json"))?;
    if !matches!(code, Some(0 | 1)) {
        return Err(format!("linkguard verify exited with {code:?}"));
    }
    rows.push(Row {
        what: "`linkguard verify` (default window: pre-pass + verification, JSON report)".into(),
        seconds: secs,
        cpu: Some(cpu),
        records,
        rss_mib: Some(rss),
    });

    let mut table = String::new();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    let _ = writeln!(
        table,
        "\n{paths} paths, {records} records, {cores} cores, load average {load} at the end\n"
    );
    let _ = writeln!(
        table,
        "| measurement | wall time | CPU time | records/s (wall) | wall vs. Value baseline | peak RSS |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(
            table,
            "| {} | {:.3} s | {} | {:.2} M | {:.2}x | {} |",
            row.what,
            row.seconds,
            row.cpu.map_or("-".to_owned(), |c| format!("{c:.2} s")),
            row.records as f64 / row.seconds / 1e6,
            row.seconds / baseline,
            row.rss_mib
                .map_or("-".to_owned(), |m| format!("{m:.1} MiB"))
        );
    }
    println!("{table}");
    Ok(())
}
