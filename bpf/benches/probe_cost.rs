// SPDX-License-Identifier: Apache-2.0
//! What probing costs the probed process, and what attaching costs the sidecar (needs root).
//!
//! `cargo bench -p linkguard-bpf --bench probe_cost` prints two markdown tables:
//! 1. ns per call of a trivial noinline function in a gcc-built target that times its own loop: unprobed,
//!    count mode, coverage mode after the re-link without it, other processes, and bpftrace's counting probe,
//!    each with its ratio to the unprobed baseline of the same run; and a library function probed with and
//!    without the external-callers-only check, called from the program and from its own library;
//! 2. attach, detach and re-link times of one uprobe.multi link over 1..4,000 functions of a generated target.
//!
//! Environment: `LG_BENCH_CALLS` (untrapped loops, default 100,000,000), `LG_BENCH_TRAPPED_CALLS` (loops that
//! trap, default 200,000), `LG_BENCH_ROUNDS` (interleaved per-call rounds, default 5), `LG_BENCH_REPEAT`
//! (attach/detach repetitions, default 5); medians are printed. Without `--bench` (`cargo test --benches`)
//! it runs a quick smoke pass with tiny counts.

#![expect(
    clippy::unwrap_used,
    reason = "bench binary: a failed setup aborts the measurement"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use linkguard_bpf::{AttachPoint, LoadOptions, PidNamespace, Probes, Scope};
use support::{INT3, Target};

const FUNCTIONS: usize = 4_000;
const LINK_SIZES: [usize; 4] = [1, 100, 1_000, 4_000];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `(run_time_ns, run_cnt)` summed over the BPF programs this process holds (`/proc/self/fdinfo`); the
/// kernel counts them while an `aya::sys::enable_stats` fd is open.
fn bpf_run_stats() -> (u64, u64) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(time), Some(count)) = (field("run_time_ns:"), field("run_cnt:")) {
            total.0 += time;
            total.1 += count;
        }
    }
    total
}

/// Nanoseconds per run of the BPF program itself between two [`bpf_run_stats`], as a note.
fn program_ns(before: (u64, u64), after: (u64, u64)) -> String {
    let runs = after.1.saturating_sub(before.1);
    if runs == 0 {
        return "BPF program: no runs counted".into();
    }
    format!(
        "BPF program {:.0} ns/run",
        after.0.saturating_sub(before.0) as f64 / runs as f64
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if !support::privileged("probe_cost") {
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not: then run a quick smoke pass.
    let full = std::env::args().any(|arg| arg == "--bench");
    let calls = env_u64("LG_BENCH_CALLS", if full { 100_000_000 } else { 100_000 });
    let trapped = env_u64("LG_BENCH_TRAPPED_CALLS", if full { 200_000 } else { 2_000 });
    let repeat = env_u64("LG_BENCH_REPEAT", if full { 5 } else { 1 }).max(1) as usize;
    let rounds = env_u64("LG_BENCH_ROUNDS", if full { 5 } else { 1 }).max(1) as usize;
    let dir = tempfile::tempdir().unwrap();

    let mut out = String::new();
    per_call_table(&mut out, dir.path(), calls, trapped, rounds);
    link_table(&mut out, dir.path(), repeat);
    println!("{out}");
}

const BASELINE: &str = "unprobed baseline";
const COUNT: &str = "count mode (uprobe.multi + per-CPU counter)";
const BYSTANDER: &str = "another process of the same binary (OneProcess scope on the first)";
const COVERAGE: &str = "coverage mode after the first hit (re-linked without it)";
const FILTERED: &str = "AllProcesses + pid-namespace filter, caller outside the namespace";
const BPFTRACE: &str = "bpftrace `uprobe:...:lg_hot { @c = count(); }`";
const LIB_DECLARED: &str =
    "library function, count mode, unflagged point (called from the program)";
const LIB_EXTERNAL: &str =
    "library function, external-callers-only point, called from the program (counted)";
const LIB_INTERNAL: &str =
    "library function, external-callers-only point, called from its own library (not counted)";

/// Samples (ns per call) and notes per configuration, in table order.
#[derive(Default)]
struct Samples {
    rows: Vec<(&'static str, u64, Vec<f64>, String)>,
}

impl Samples {
    fn add(&mut self, configuration: &'static str, calls: u64, ns: f64, note: String) {
        match self.rows.iter_mut().find(|row| row.0 == configuration) {
            Some(row) => {
                row.2.push(ns);
                row.3 = note;
            }
            None => self.rows.push((configuration, calls, vec![ns], note)),
        }
    }
}

/// Per-call costs. The configurations are interleaved over `rounds` rounds and the median of each is
/// printed, because the VM's trap cost drifts by +-20% between runs.
fn per_call_table(out: &mut String, dir: &Path, calls: u64, trapped: u64, rounds: usize) {
    let built = support::compile(&support::target_source("counted.c"), &[]);
    let binary = support::private_copy(&built, dir);
    let hot = support::function_offset(&binary, "lg_hot");
    let cold = support::function_offset(&binary, "lg_cold");
    let points = [
        AttachPoint {
            offset: hot,
            cookie: 0,
        },
        AttachPoint {
            offset: cold,
            cookie: 1,
        },
    ];
    let mut samples = Samples::default();
    // The kernel times each BPF program run while this fd is open (as bpftop does).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).unwrap();

    // The library target (callers.c + callee_lib.c): lg_lib_f called by the program or by its own library.
    let lib_dir = dir.join("callers");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let (callers_exe, callee_lib) = support::compile_with_library(
        &support::target_source("callers.c"),
        &support::target_source("callee_lib.c"),
        "liblgcallee.so",
        &lib_dir,
        &[],
    );
    let lib_f = support::function_offset(&callee_lib, "lg_lib_f");
    let mut callers = Target::spawn(&callers_exe);

    let mut target = Target::spawn(&binary);
    let mut bystander = Target::spawn(&binary);
    let namespaced = Target::spawn_in_new_pid_namespace(&binary);
    target.call_hot(calls); // warm up (page faults, frequency)
    for _ in 0..5 {
        samples.add(BASELINE, calls, target.call_hot(calls), String::new());
    }

    for _ in 0..rounds {
        // A baseline sample in every round too: other work on the machine shifts all numbers over time.
        samples.add(BASELINE, calls, target.call_hot(calls), String::new());
        // Count mode, scoped to the target.
        let mut probes = Probes::load(&LoadOptions {
            max_probes: 2,
            ..LoadOptions::default()
        })
        .unwrap();
        let link = probes
            .attach(&binary, &points, Scope::OneProcess(target.pid))
            .unwrap();
        let runs = bpf_run_stats();
        let ns = target.call_hot(trapped);
        let program = program_ns(runs, bpf_run_stats());
        let counted = probes.take_counts(&[0]).unwrap()[0];
        samples.add(
            COUNT,
            trapped,
            ns,
            format!("counted {counted} of {trapped}; {program}"),
        );
        let ns = bystander.call_hot(calls);
        samples.add(BYSTANDER, calls, ns, "no breakpoint in its text".into());

        // Coverage steady state: the function was seen, the link now holds only the others.
        let link = probes.relink_without(link, &[0]).unwrap().unwrap();
        let ns = target.call_hot(calls);
        let after = probes.read_counts(&[0]).unwrap()[0];
        let removed = support::text_byte(target.pid, &binary, hot) != INT3;
        samples.add(
            COVERAGE,
            calls,
            ns,
            format!("counted {after} after re-link, int3 removed: {removed}"),
        );
        probes.detach(link).unwrap();
        drop(probes);

        // A process outside the filtered namespace still traps (a uprobe is per inode); it is only not counted.
        let mut probes = Probes::load(&LoadOptions {
            max_probes: 2,
            pid_namespace: Some(PidNamespace::of_process(namespaced.pid).unwrap()),
            ..LoadOptions::default()
        })
        .unwrap();
        let link = probes
            .attach(&binary, &points, Scope::AllProcesses)
            .unwrap();
        let ns = target.call_hot(trapped);
        let filtered = probes.stats().unwrap().filtered;
        let counted = probes.read_counts(&[0]).unwrap()[0];
        samples.add(
            FILTERED,
            trapped,
            ns,
            format!("filtered {filtered}, counted {counted}"),
        );
        probes.detach(link).unwrap();
        drop(probes);

        // The caller check of watch-only points, against an unflagged point on the same library function.
        for (configuration, point, command) in [
            (
                LIB_DECLARED,
                AttachPoint {
                    offset: lib_f,
                    cookie: 0,
                },
                "e",
            ),
            (
                LIB_EXTERNAL,
                AttachPoint::external_callers_only(lib_f, 0),
                "e",
            ),
            (
                LIB_INTERNAL,
                AttachPoint::external_callers_only(lib_f, 0),
                "i",
            ),
        ] {
            let mut probes = Probes::load(&LoadOptions {
                max_probes: 1,
                ..LoadOptions::default()
            })
            .unwrap();
            let link = probes
                .attach(&callee_lib, &[point], Scope::OneProcess(callers.pid))
                .unwrap();
            let runs = bpf_run_stats();
            let reply = callers.command(&format!("{command} {trapped}"));
            let program = program_ns(runs, bpf_run_stats());
            let ns: f64 = reply.trim_start_matches("ok ").parse().unwrap();
            let counted = probes.read_counts(&[0]).unwrap()[0];
            let internal = probes.stats().unwrap().internal_calls;
            samples.add(
                configuration,
                trapped,
                ns,
                format!("counted {counted}, internal {internal} of {trapped}; {program}"),
            );
            probes.detach(link).unwrap();
        }

        match bpftrace_run(&binary, &mut target, trapped) {
            Ok((ns, note)) => samples.add(BPFTRACE, trapped, ns, note),
            Err(note) => samples.add(BPFTRACE, 0, f64::NAN, note),
        }
    }
    for _ in 0..5 {
        samples.add(BASELINE, calls, target.call_hot(calls), String::new());
    }
    target.finish();
    callers.finish();
    bystander.finish();
    namespaced.finish();

    if std::env::var_os("LG_BENCH_VERBOSE").is_some() {
        for row in &samples.rows {
            eprintln!("{}: {:?}", row.0, row.2);
        }
    }
    let baseline = median(samples.rows[0].2.clone());
    writeln!(
        out,
        "### Per-call cost of a trivial noinline function (median of {rounds} interleaved rounds)\n"
    )
    .unwrap();
    writeln!(out, "| configuration | calls per run | ns per call (median) | min - max | ratio vs unprobed | note (last run) |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---|").unwrap();
    for (configuration, calls, values, note) in samples.rows {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ns = median(values);
        if ns.is_nan() {
            writeln!(out, "| {configuration} | - | - | - | - | {note} |").unwrap();
        } else {
            writeln!(
                out,
                "| {configuration} | {calls} | {ns:.1} | {min:.1} - {max:.1} | {:.2}x | {note} |",
                ns / baseline
            )
            .unwrap();
        }
    }
    writeln!(out).unwrap();
}

/// bpftrace's counting probe on the same function while the target loops: (ns per call, note), or why
/// it could not run.
fn bpftrace_run(binary: &Path, target: &mut Target, trapped: u64) -> Result<(f64, String), String> {
    let hot = support::function_offset(binary, "lg_hot");
    let script = format!("uprobe:{}:lg_hot {{ @c = count(); }}", binary.display());
    let mut bpftrace = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("skipped: bpftrace cannot run ({e}); apt-get install bpftrace"))?;
    let stdout = bpftrace.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Attached once its breakpoint is in the target's text (bpftrace probes every process of the file).
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::text_byte(target.pid, binary, hot) != INT3 {
        if Instant::now() > deadline || matches!(bpftrace.try_wait(), Ok(Some(_))) {
            let _ = bpftrace.kill();
            let _ = bpftrace.wait();
            return Err("skipped: bpftrace did not attach within 60 s".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let ns = target.call_hot(trapped);
    // SAFETY: kill(2) on the bpftrace process this bench started; SIGINT makes it print its maps and exit.
    unsafe { libc::kill(bpftrace.id() as libc::pid_t, libc::SIGINT) };
    let mut count = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(value) = line.strip_prefix("@c: ") {
            count = value.trim().parse::<u64>().ok();
            break;
        }
    }
    let _ = bpftrace.kill();
    let _ = bpftrace.wait();
    // Its detach must be complete before the next configuration runs on the same function.
    let deadline = Instant::now() + Duration::from_secs(30);
    while support::text_byte(target.pid, binary, hot) == INT3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let note = match count {
        Some(count) => format!("bpftrace counted {count} of {trapped}"),
        None => "bpftrace printed no count".into(),
    };
    Ok((ns, note))
}

/// A C file with `FUNCTIONS` distinct noinline functions; "a" calls each once.
fn generated_target(dir: &Path) -> std::path::PathBuf {
    let mut source = String::from(
        "// SPDX-License-Identifier: Apache-2.0\n#include <stdio.h>\n#include <unistd.h>\nvolatile unsigned long lg_sink;\n",
    );
    for i in 0..FUNCTIONS {
        writeln!(
            source,
            "__attribute__((noinline, noclone, used)) void lg_f{i:04}(void) {{ lg_sink += {i}; }}"
        )
        .unwrap();
    }
    source.push_str("int main(void) {\n\tchar line[64];\n\tsetvbuf(stdout, NULL, _IOLBF, 0);\n");
    source.push_str(
        "\tprintf(\"ready %d\\n\", (int)getpid());\n\twhile (fgets(line, sizeof(line), stdin)) {\n",
    );
    for i in 0..FUNCTIONS {
        writeln!(source, "\t\tlg_f{i:04}();").unwrap();
    }
    source.push_str("\t\tprintf(\"ok\\n\");\n\t}\n\treturn 0;\n}\n");
    let path = dir.join("many_functions.c");
    std::fs::write(&path, source).unwrap();
    support::compile(&path, &[])
}

fn link_table(out: &mut String, dir: &Path, repeat: usize) {
    let built = generated_target(dir);
    let binary = support::private_copy(&built, dir);
    let names: Vec<String> = (0..FUNCTIONS).map(|i| format!("lg_f{i:04}")).collect();
    let offsets = support::function_offsets(&binary, &names);
    let all: Vec<AttachPoint> = offsets
        .iter()
        .enumerate()
        .map(|(i, &offset)| AttachPoint {
            offset,
            cookie: i as u32,
        })
        .collect();
    let mut target = Target::spawn(&binary);
    let mut probes = Probes::load(&LoadOptions {
        max_probes: FUNCTIONS as u32,
        ..LoadOptions::default()
    })
    .unwrap();

    // Sanity: one link over all functions counts each call once.
    let link = probes
        .attach(&binary, &all, Scope::OneProcess(target.pid))
        .unwrap();
    target.command("a");
    let counts = probes.take_all_counts().unwrap();
    assert!(
        counts.iter().all(|&c| c == 1),
        "every one of the {FUNCTIONS} functions must count exactly 1"
    );
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    probes.detach(link).unwrap();

    writeln!(
        out,
        "### One uprobe.multi link over N functions (median of {repeat}, target process running)\n"
    )
    .unwrap();
    writeln!(
        out,
        "This bench process's VmRSS with {FUNCTIONS} probes attached: {rss}.\n"
    )
    .unwrap();
    writeln!(
        out,
        "| functions | scope | attach ms | detach ms | re-link without 1 ms | read_counts(N) ms | take_counts(N) ms |"
    )
    .unwrap();
    writeln!(out, "|---:|---|---:|---:|---:|---:|---:|").unwrap();
    for scope in [Scope::OneProcess(target.pid), Scope::AllProcesses] {
        for n in LINK_SIZES {
            let points = &all[..n];
            let cookies: Vec<u32> = points.iter().map(|p| p.cookie).collect();
            let (mut attach, mut detach, mut relink, mut read, mut take) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeat {
                let t = Instant::now();
                let link = probes.attach(&binary, points, scope).unwrap();
                attach.push(t.elapsed().as_secs_f64() * 1e3);

                let t = Instant::now();
                probes.read_counts(&cookies).unwrap();
                read.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                probes.take_counts(&cookies).unwrap();
                take.push(t.elapsed().as_secs_f64() * 1e3);

                let t = Instant::now();
                let link = probes.relink_without(link, &cookies[..1]).unwrap();
                relink.push(t.elapsed().as_secs_f64() * 1e3);
                let link = match link {
                    Some(link) => link,
                    None => probes.attach(&binary, points, scope).unwrap(),
                };

                let t = Instant::now();
                probes.detach(link).unwrap();
                detach.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let scope_name = match scope {
                Scope::OneProcess(_) => "one process",
                Scope::AllProcesses => "all processes",
            };
            writeln!(
                out,
                "| {n} | {scope_name} | {:.2} | {:.2} | {} | {:.2} | {:.2} |",
                median(attach),
                median(detach),
                if n == 1 {
                    "- (nothing left)".to_string()
                } else {
                    format!("{:.2}", median(relink))
                },
                median(read),
                median(take),
            )
            .unwrap();
        }
    }
    writeln!(out).unwrap();

    // Several links (one per file in the sidecar; here 8 x 500 functions of one file): closing them one by
    // one pays one grace period each, detach_all closes them concurrently.
    const LINKS: usize = 8;
    let chunk = FUNCTIONS / LINKS;
    let attach_links = |probes: &mut Probes| -> Vec<linkguard_bpf::LinkHandle> {
        all.chunks(chunk)
            .map(|points| {
                probes
                    .attach(&binary, points, Scope::OneProcess(target.pid))
                    .unwrap()
            })
            .collect()
    };
    let (mut serial, mut concurrent, mut relink_all) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        let links = attach_links(&mut probes);
        let t = Instant::now();
        for link in links {
            probes.detach(link).unwrap();
        }
        serial.push(t.elapsed().as_secs_f64() * 1e3);

        let links = attach_links(&mut probes);
        let t = Instant::now();
        probes.detach_all(links).unwrap();
        concurrent.push(t.elapsed().as_secs_f64() * 1e3);

        let links = attach_links(&mut probes);
        let first_of_each: Vec<u32> = (0..LINKS).map(|i| (i * chunk) as u32).collect();
        let t = Instant::now();
        let (links, errors) = probes.relink_all_without(links, &first_of_each);
        relink_all.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(errors.is_empty() && links.len() == LINKS, "{errors:?}");
        probes.detach_all(links).unwrap();
    }
    writeln!(
        out,
        "### {LINKS} links of {chunk} functions each (median of {repeat})\n"
    )
    .unwrap();
    writeln!(out, "| operation | ms |").unwrap();
    writeln!(out, "|---|---:|").unwrap();
    writeln!(out, "| detach one by one | {:.2} |", median(serial)).unwrap();
    writeln!(
        out,
        "| detach_all (concurrent close) | {:.2} |",
        median(concurrent)
    )
    .unwrap();
    writeln!(
        out,
        "| relink_all_without (one function removed from each link) | {:.2} |",
        median(relink_all)
    )
    .unwrap();

    // The target must have survived every breakpoint insertion and removal.
    target.command("a");
    target.finish();
}
