// SPDX-License-Identifier: Apache-2.0
//! Memory and attach latency of `linkguard observe` with N functions probed in one real process.
//! Target (issue "Kernel probing"): RSS under 40 MB with 4,000 probes attached.
//!
//! Run as root: `cargo bench -p linkguard --bench observe_rss [-- N...]` (default 1 100 1000 4000).
//! A gcc-built target (tests/targets/observe_crypto.c) maps libcrypto; the map declares SHA256 and puts
//! the first N-1 other plain (non-IFUNC) functions of libcrypto in a watch scope, so coverage mode
//! attaches N functions in one uprobe.multi link. Prints a markdown table: time from process discovery
//! to "attached" (read + ELF parse + build-id check + resolve + attach), and VmRSS / VmHWM of the
//! observe process once attached and after a few flushes.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "bench binary: a failed setup aborts the measurement"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("observe's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("a kB field")
}

fn timestamp(event: &Value) -> chrono::DateTime<chrono::Utc> {
    event["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a JSON log timestamp")
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 100, 1000, 4000]
    } else {
        sizes
    };
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let app = scratch.path().join("crypto-app");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/targets/observe_crypto.c");
    let built = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&app)
        .arg(&source)
        .arg("-lcrypto")
        .status();
    assert!(
        built.is_ok_and(|s| s.success()),
        "gcc and libssl-dev are needed"
    );

    let mut target = Command::new(&app)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("target");
    let mut stdin = target.stdin.take().expect("stdin");
    let mut lines = BufReader::new(target.stdout.take().expect("stdout")).lines();
    let target = Killed(target);
    lines.next().expect("ready line").expect("ready line");
    let pid = target.0.id();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let libcrypto = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libcrypto.so"))
        .map(PathBuf::from)
        .expect("libcrypto mapped");
    let info = linkguard::elf::read_file(&libcrypto).expect("libcrypto parses");
    let mut names: Vec<String> = info
        .exports
        .iter()
        .filter(|f| !f.ifunc && f.offset.is_some() && f.name != "SHA256" && f.default_version)
        .map(|f| f.name.clone())
        .collect();
    names.sort();
    names.dedup();

    println!(
        "| functions | discovery -> attached | VmRSS attached | VmRSS after 3 flushes | VmHWM |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in sizes {
        let scope: Vec<&String> = names.iter().take(n.saturating_sub(1)).collect();
        let binary = json!({ "path": libcrypto.display().to_string(), "buildId": info.build_id });
        let map = json!({
            "_type": "https://stella.ops/predicates/function-map/v1",
            "subject": { "purl": "pkg:oci/bench" , "digest": {} },
            "predicate": {
                "schemaVersion": "1.0.0", "service": "bench", "generatedAt": "2026-01-01T00:00:00Z",
                "expectedPaths": [{ "id": "bench:SHA256", "entrypoint": app.display().to_string(),
                    "calls": [{ "symbol": "SHA256", "binary": binary }] }],
                "watchScopes": [{ "binary": binary, "tags": ["crypto"], "symbols": scope }]
            }
        });
        let map_path = scratch.path().join(format!("map-{n}.json"));
        std::fs::write(&map_path, serde_json::to_vec(&map).unwrap()).unwrap();
        let mut observe = Command::new(env!("CARGO_BIN_EXE_linkguard"))
            .args([
                "--log-format",
                "json",
                "observe",
                "--flush-interval",
                "1",
                "--function-map",
            ])
            .arg(&map_path)
            .args(["--pid", &pid.to_string(), "--output"])
            .arg(scratch.path().join(format!("obs-{n}.ndjson")))
            .stderr(Stdio::piped())
            .spawn()
            .expect("linkguard observe");
        let (tx, events) = mpsc::channel();
        let stderr = observe.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(event) => {
                        if event["level"] != "INFO" && event["level"] != "DEBUG" {
                            eprintln!("{line}");
                        }
                        let _ = tx.send(event);
                    }
                    Err(_) => eprintln!("{line}"),
                }
            }
        });
        let observe = Killed(observe);
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut following, mut attached) = (None, None);
        while attached.is_none() {
            let event = events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("attached in 60 s");
            match event["fields"]["message"].as_str() {
                Some("following process") => following = Some(timestamp(&event)),
                Some("attached") => {
                    attached = Some((timestamp(&event), event["fields"]["functions"].clone()))
                }
                _ => {}
            }
        }
        let (at, functions) = attached.unwrap();
        let latency = following.map(|f| (at - f).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        let rss_attached = status_kb(observe.0.id(), "VmRSS:");
        writeln!(stdin, "s 10").unwrap();
        lines.next().expect("ok line").expect("ok line");
        std::thread::sleep(Duration::from_millis(3200));
        let rss = status_kb(observe.0.id(), "VmRSS:");
        let hwm = status_kb(observe.0.id(), "VmHWM:");
        println!(
            "| {functions} | {} ms | {:.1} MB | {:.1} MB | {:.1} MB |",
            latency.map_or("?".into(), |l| format!("{l:.1}")),
            rss_attached as f64 / 1024.0,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        drop(observe);
    }
    drop(target);
}
