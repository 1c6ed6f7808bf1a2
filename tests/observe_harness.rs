// SPDX-License-Identifier: Apache-2.0
//! Harness of tests/observe.rs: the privilege gate, gcc-built targets, ELF facts from an independent parser
//! (`object`), function maps, target processes driven line by line and `linkguard observe` runs with JSON
//! logs. Every process started here is killed by pid and reaped when dropped; every wait is bounded.
#![allow(dead_code, reason = "each test uses a different subset")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a failed setup is a test failure"
)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};
use serde_json::{Value, json};

use linkguard_integration_tests::linkguard_bin;

/// Longest wait for anything a test waits on.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this machine can run the test: root capabilities for uprobes, BTF, gcc. When it cannot, prints
/// `SKIP <test>: <reason>` (to the real stderr) and returns false; with `LINKGUARD_REQUIRE_PRIVILEGED=1` a
/// missing capability fails the test instead.
pub fn privileged(test: &str) -> bool {
    linkguard_integration_tests::can_run(test, missing_privilege())
}

fn missing_privilege() -> Option<String> {
    // CAP_SYS_ADMIN (21) for unshare -m and mount; CAP_PERFMON (38) + CAP_BPF (39) for uprobe.multi.
    if let Some(reason) = linkguard_integration_tests::missing_capability(&[
        (21, "CAP_SYS_ADMIN"),
        (38, "CAP_PERFMON"),
        (39, "CAP_BPF"),
    ]) {
        return Some(reason);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    for tool in ["gcc", "strip", "unshare"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Some(format!(
                "{tool} not found (apt-get install gcc binutils util-linux)"
            ));
        }
    }
    None
}

/// `tests/targets/<name>`.
pub fn target_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("targets")
        .join(name)
}

/// Compiles `source` with gcc into `out`.
pub fn gcc(source: &str, out: &Path, extra: &[&str]) -> PathBuf {
    // -fno-ipa-icf: identical trivial functions keep distinct addresses.
    let output = Command::new("gcc")
        .args(["-O2", "-g", "-fno-ipa-icf", "-pthread", "-o"])
        .arg(out)
        .arg(target_source(source))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "gcc {source}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out.to_path_buf()
}

/// Build-id and function file offsets of an ELF file, from the `object` crate (not linkguard's parser).
#[derive(Debug, Clone)]
pub struct ElfFacts {
    pub build_id: String,
    pub offsets: HashMap<String, u64>,
    pub has_symtab: bool,
}

pub fn elf_facts(path: &Path) -> ElfFacts {
    let data = fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let build_id = hex(file.build_id().unwrap().expect("a GNU build-id note"));
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| {
            let (offset, size) = s.file_range();
            (s.address(), size, offset)
        })
        .collect();
    let mut offsets = HashMap::new();
    for symbol in file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.is_definition())
    {
        let (Ok(name), address) = (symbol.name(), symbol.address()) else {
            continue;
        };
        let offset = segments.iter().find_map(|&(start, size, offset)| {
            (address >= start && address < start + size).then(|| address - start + offset)
        });
        if let Some(offset) = offset {
            offsets.entry(name.to_owned()).or_insert(offset);
        }
    }
    ElfFacts {
        build_id,
        offsets,
        has_symtab: file.symbol_table().is_some(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One call of a map path.
#[derive(Debug, Clone)]
pub struct MapCall {
    pub symbol: String,
    pub version: Option<String>,
    pub binary: PathBuf,
    pub build_id: String,
    pub offset: Option<u64>,
}

impl MapCall {
    pub fn new(symbol: &str, binary: &Path, facts: &ElfFacts) -> Self {
        Self {
            symbol: symbol.into(),
            version: None,
            binary: binary.into(),
            build_id: facts.build_id.clone(),
            offset: None,
        }
    }

    pub fn with_offset(mut self, facts: &ElfFacts) -> Self {
        self.offset = Some(facts.offsets[&self.symbol]);
        self
    }

    pub fn with_version(mut self, version: &str) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// Writes a function map with one required single-call path per call (id `<entrypoint name>:<symbol>`).
pub fn write_map(dir: &Path, entrypoint: &Path, calls: &[MapCall]) -> PathBuf {
    let name = entrypoint
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let paths: Vec<Value> = calls
        .iter()
        .map(|c| {
            let mut call = json!({
                "symbol": c.symbol,
                "binary": { "path": c.binary.display().to_string(), "buildId": c.build_id },
            });
            if let Some(version) = &c.version {
                call["version"] = json!(version);
            }
            if let Some(offset) = c.offset {
                call["offset"] = json!(offset);
            }
            json!({ "id": format!("{name}:{}", c.symbol), "entrypoint": entrypoint.display().to_string(), "calls": [call] })
        })
        .collect();
    let map = json!({
        "_type": "https://stella.ops/predicates/function-map/v1",
        "subject": { "purl": format!("pkg:oci/{name}@sha256:{}", "ab".repeat(32)), "digest": { "sha256": "ab".repeat(32) } },
        "predicate": {
            "schemaVersion": "1.0.0",
            "service": name,
            "expectedPaths": paths,
            "coverage": { "minObservationRate": 1.0, "windowSeconds": 1800 },
            "generatedAt": "2026-01-01T00:00:00Z"
        }
    });
    let path = dir.join(format!("{name}.fmap.json"));
    fs::write(&path, serde_json::to_vec_pretty(&map).unwrap()).unwrap();
    path
}

/// An interactive target: one command per line, one answer line each.
pub struct Target {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub pid: u32,
}

impl Target {
    /// Starts `command` (stdin/stdout piped) and waits for its `ready <pid>` line.
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut target = Self {
            stdin: child.stdin.take(),
            child,
            lines,
            pid: 0,
        };
        let ready = target.line();
        target.pid = ready
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{ready:?}"));
        target
    }

    pub fn program(path: &Path) -> Self {
        Self::start(Command::new(path))
    }

    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("target {} did not answer: {e}", self.child.id()))
    }

    /// Sends one command, returns the answer.
    pub fn cmd(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let answer = self.line();
        assert!(
            answer.starts_with("ok"),
            "target answered {answer:?} to {command:?}"
        );
        answer
    }

    /// `x`: the target execs its own path again (same pid) and is ready again.
    pub fn reexec(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "x").unwrap();
        stdin.flush().unwrap();
        let ready = self.line();
        assert_eq!(ready, format!("ready {}", self.pid), "the re-exec'd target");
    }

    /// `h N`: N calls of lg_hot; returns the target's ns per call.
    pub fn hot(&mut self, n: u64) -> f64 {
        let answer = self.cmd(&format!("h {n}"));
        answer.trim_start_matches("ok ").parse().unwrap()
    }

    /// Closes stdin and waits for the exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        wait_bounded(&mut self.child, "target")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_bounded(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} {} did not exit within {TIMEOUT:?}", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `linkguard observe` with JSON logs collected from its stderr.
pub struct Observe {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    pub output: PathBuf,
}

impl Observe {
    /// `linkguard --log-format json observe --function-map MAP --output OUT --flush-interval 1 ARGS...`.
    pub fn start(map: &Path, output: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(linkguard_bin())
            .args(["--log-format", "json", "observe", "--function-map"])
            .arg(map)
            .arg("--output")
            .arg(output)
            .args(["--flush-interval", "1", "--poll-interval-ms", "100"])
            .args(args)
            .env_remove("LINKGUARD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (events, stderr) = collect_stderr(child.stderr.take().unwrap());
        Self {
            child,
            events,
            stderr,
            output: output.to_path_buf(),
        }
    }

    /// Waits until a log event's fields satisfy `matches` (fails the test after [`TIMEOUT`] or if observe
    /// exits).
    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_from(0, what, matches).1
    }

    /// [`wait_for`](Self::wait_for) among the events from index `from` on; returns the event's index too.
    pub fn wait_for_from(
        &mut self,
        from: usize,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let found = self
                .events
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, e)| matches(&e["fields"]))
                .map(|(i, e)| (i, e["fields"].clone()));
            if let Some(found) = found {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "observe exited ({status}) before {what}; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `attached` of `binary` in process `pid`.
    pub fn wait_attached(&mut self, pid: u32, binary: &Path) {
        let binary = binary.display().to_string();
        self.wait_for(&format!("attach of {binary} in {pid}"), |f| {
            f["message"] == "attached" && f["pid"] == pid && f["binary"] == binary.as_str()
        });
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for the exit; returns the status and the records written.
    pub fn stop(mut self) -> (ExitStatus, Vec<Value>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = wait_bounded(&mut self.child, "observe");
        (status, read_records(&self.output))
    }

    /// Waits for observe to exit by itself.
    pub fn wait(mut self) -> (ExitStatus, Vec<Value>) {
        let status = wait_bounded(&mut self.child, "observe");
        (status, read_records(&self.output))
    }
}

impl Drop for Observe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_stderr(
    stderr: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<Value>>>, Arc<Mutex<String>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let text = Arc::new(Mutex::new(String::new()));
    let (e, t) = (Arc::clone(&events), Arc::clone(&text));
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                e.lock().unwrap().push(event);
            }
            let mut text = t.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    (events, text)
}

/// Runs `linkguard observe ... -- CMD` to completion.
pub fn observe_command(
    map: &Path,
    output: &Path,
    args: &[&str],
    command: &[&str],
) -> (ExitStatus, Vec<Value>, String) {
    let mut child = Command::new(linkguard_bin())
        .args(["--log-format", "json", "observe", "--function-map"])
        .arg(map)
        .arg("--output")
        .arg(output)
        .args(args)
        .arg("--")
        .args(command)
        .env_remove("LINKGUARD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_bounded(&mut child, "observe");
    (status, read_records(output), reader.join().unwrap())
}

/// The NDJSON records of `path`; every line must be a JSON object with `v` 1 and RFC 3339 bounds.
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let record: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(record["v"], 1, "{line}");
            assert!(
                record["start"].as_str().unwrap() <= record["end"].as_str().unwrap(),
                "{line}"
            );
            record
        })
        .collect()
}

/// Sum of `count` of the call records of `symbol` in process `pid`.
pub fn calls(records: &[Value], pid: u32, symbol: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["kind"] == "call" && r["pid"] == pid && r["symbol"] == symbol)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// The `probe` records.
pub fn probes(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["kind"] == "probe").collect()
}

/// The byte at `file_offset` of the file `path` as mapped in process `pid` now (found by inode in
/// /proc/<pid>/maps, read from /proc/<pid>/mem). An installed uprobe shows as int3 (0xcc).
pub fn text_byte(pid: u32, path: &Path, file_offset: u64) -> u8 {
    let ino = fs::metadata(path).unwrap().ino();
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let address = maps
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (range, perms, offset, inode) = (fields[0], fields[1], fields[2], fields.get(4)?);
            if inode.parse::<u64>().ok()? != ino || !perms.contains('x') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let (start, end) = (
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            );
            let offset = u64::from_str_radix(offset, 16).ok()?;
            (file_offset >= offset && file_offset < offset + (end - start))
                .then(|| start + file_offset - offset)
        })
        .unwrap_or_else(|| {
            panic!(
                "offset {file_offset:#x} of {} is not mapped executable in {pid}",
                path.display()
            )
        });
    let mut mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    mem.seek(SeekFrom::Start(address)).unwrap();
    let mut byte = [0u8];
    mem.read_exact(&mut byte).unwrap();
    byte[0]
}

/// x86 int3: the byte a uprobe writes over a probed instruction.
pub const INT3: u8 = 0xcc;

/// `linkguard verify --offline --function-map MAP --observations OBS --format json`: the exit code and the
/// report's predicate.
pub fn verify(map: &Path, observations: &Path) -> (i32, Value) {
    let output = Command::new(linkguard_bin())
        .args(["verify", "--offline", "--format", "json", "--function-map"])
        .arg(map)
        .arg("--observations")
        .arg(observations)
        .output()
        .unwrap();
    let code = output.status.code().unwrap();
    assert!(
        code == 0 || code == 1,
        "verify rejected the observations ({code}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    (code, report["predicate"].clone())
}

/// `(path id, status)` of every path of a verification report, in map order.
pub fn path_statuses(predicate: &Value) -> Vec<(String, String)> {
    predicate["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `[(id, status)]` from `(symbol, status)` pairs for a map written by [`write_map`] for `entrypoint`.
pub fn expected_statuses(entrypoint: &Path, statuses: &[(&str, &str)]) -> Vec<(String, String)> {
    let name = entrypoint
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    statuses
        .iter()
        .map(|(symbol, status)| (format!("{name}:{symbol}"), (*status).to_owned()))
        .collect()
}
