// SPDX-License-Identifier: Apache-2.0
//! Benchmark of `map generate` on curl's closure (libcurl, libssl, libcrypto, libc and ~30 more
//! libraries) with `crypto/*`, `tls/*`, `net/*`. Target: under 1 s.
//!
//! Run: `cargo bench -p linkguard --bench generate [-- RUNS]`. Prints a markdown table: the median
//! and minimum of RUNS generations, next to two baselines measured in the same run on the same
//! files: reading every file of the closure once (the I/O floor) and parsing every file as ELF.
#![expect(
    clippy::expect_used,
    reason = "bench binary: a failed setup aborts the measurement"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use linkguard::generate::{GenerateOptions, generate};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect()
}

/// The distro2sbom fixture of the repository (tests/fixtures/sbom/README.md), else a minimal SBOM
/// (purls then come from the dpkg database).
fn sbom(scratch: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/sbom/curl-debian12.distro2sbom.cdx17.json");
    if fixture.exists() {
        return fixture;
    }
    let path = scratch.join("minimal.cdx.json");
    std::fs::write(
        &path,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"components":[]}"#,
    )
    .expect("write a minimal SBOM");
    path
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; the first numeric argument, if any, is the number of runs.
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(15)
        .max(1);
    let scratch = tempfile::tempdir().expect("temp dir");
    let opts = GenerateOptions {
        sbom: sbom(scratch.path()),
        rootfs: PathBuf::from("/"),
        service: "bench".into(),
        entrypoints: vec!["/usr/bin/curl".into()],
        hot_functions: vec!["crypto/*".into(), "tls/*".into(), "net/*".into()],
        generated_at: Some("2026-01-01T00:00:00Z".into()),
        ..GenerateOptions::default()
    };
    // Warm the page cache and check the workload once.
    let generated = generate(&opts).expect("generate for /usr/bin/curl");
    let closure = &generated.closures[0];
    let files: Vec<String> = std::iter::once(closure.entrypoint.clone())
        .chain(closure.libraries.iter().cloned())
        .collect();
    let bytes: usize = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len() as usize))
        .sum();

    let gen_times = time(runs, || generate(&opts).expect("generate"));
    let io_times = time(runs, || {
        files
            .iter()
            .map(|f| std::fs::read(f).map_or(0, |b| b.len()))
            .sum::<usize>()
    });
    let parse_times = time(runs, || {
        files
            .iter()
            .filter_map(|f| linkguard::elf::read_file(Path::new(f)).ok())
            .map(|i| i.exports.len())
            .sum::<usize>()
    });
    let (generation, io, parse) = (
        median(gen_times.clone()),
        median(io_times),
        median(parse_times),
    );
    let ratio = generation.as_secs_f64() / io.as_secs_f64().max(1e-9);

    println!(
        "workload: /usr/bin/curl, {} objects, {:.1} MB, {} expected paths, {} watch scopes, {runs} runs",
        files.len(),
        bytes as f64 / 1e6,
        generated.map.predicate.expected_paths.len(),
        generated.map.predicate.watch_scopes.len()
    );
    println!();
    println!(
        "| benchmark | median | min | baseline: read closure (I/O floor) | baseline: ELF parse of closure | ratio to I/O floor | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| map generate curl (crypto/*, tls/*, net/*) | {} | {} | {} | {} | {ratio:.1}x | < 1 s: {} |",
        ms(generation),
        ms(gen_times.iter().copied().min().unwrap_or_default()),
        ms(io),
        ms(parse),
        if generation < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}
