// SPDX-License-Identifier: Apache-2.0
//! Shared by the privileged tests and the benchmark: the privilege gate, gcc-built targets, ELF offsets,
//! and target processes driven line by line (killed by pid and reaped when dropped, every wait bounded).
#![allow(
    dead_code,
    reason = "the tests and the bench each use a different subset"
)]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support: a failed setup is a test failure"
)]

use std::{
    collections::HashMap,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::{FileExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use linkguard_bpf::KernelSupport;
use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};

/// Longest wait for one reply of a target (a million trapped calls take ~5 s on the project's VM).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(180);

/// x86 `int3`, the breakpoint instruction uprobes write over the first byte of a probed instruction.
pub const INT3: u8 = 0xcc;

/// Whether this process can attach uprobe.multi links. When it cannot, prints `SKIP <test>: <reason>` to
/// the real stderr (bypassing the test harness's capture, so the skip is visible) and returns false; with
/// `LINKGUARD_REQUIRE_PRIVILEGED=1` it panics instead, so CI never skips silently.
pub fn privileged(test: &str) -> bool {
    match missing_privilege() {
        None => true,
        Some(reason) => {
            if std::env::var_os("LINKGUARD_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
                panic!("{test}: LINKGUARD_REQUIRE_PRIVILEGED=1 but {reason}");
            }
            let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
            false
        }
    }
}

fn missing_privilege() -> Option<String> {
    // CAP_PERFMON (38) + CAP_BPF (39), or CAP_SYS_ADMIN (21); CAP_SYS_ADMIN also for unshare(CLONE_NEWPID).
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    if !(has(21) || (has(38) && has(39))) {
        return Some(format!(
            "needs CAP_BPF + CAP_PERFMON or CAP_SYS_ADMIN (CapEff={cap_eff:#x}); run as root"
        ));
    }
    if !has(21) {
        return Some("needs CAP_SYS_ADMIN for unshare --pid and /proc/<pid>/mem".to_string());
    }
    match KernelSupport::probe() {
        Ok(support) if support.is_complete() => {}
        Ok(support) => return Some(format!("kernel lacks a feature: {support:?}")),
        Err(err) => return Some(format!("kernel feature probe failed: {err}")),
    }
    if Command::new("gcc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        return Some("gcc not found (apt-get install gcc)".to_string());
    }
    None
}

/// The source of a target under bpf/tests/targets/.
pub fn target_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/targets")
        .join(name)
}

/// Compiles `source` with gcc (once per test binary) into cargo's per-target temporary directory.
pub fn compile(source: &Path, extra_args: &[&str]) -> PathBuf {
    type Built = HashMap<(PathBuf, Vec<String>), PathBuf>;
    static BUILT: Mutex<Option<Built>> = Mutex::new(None);
    let key = (
        source.to_path_buf(),
        extra_args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(&key) {
        return path.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linkguard-bpf-targets");
    fs::create_dir_all(&dir).unwrap();
    // Named by a hash of source and flags so reruns reuse one file per variant instead of piling up;
    // built under a unique name and renamed into place, so concurrent test binaries never see half a file.
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(fs::read(source).unwrap(), &key.1), &mut hasher);
    let stem = source.file_stem().unwrap().to_string_lossy().into_owned();
    let out = dir.join(format!(
        "{stem}-{:016x}",
        std::hash::Hasher::finish(&hasher)
    ));
    let partial = dir.join(format!("{stem}.{}.partial", std::process::id()));
    // -fno-ipa-icf: identical trivial functions must keep distinct addresses.
    let status = Command::new("gcc")
        .args(["-O2", "-g", "-fno-ipa-icf", "-pthread", "-o"])
        .arg(&partial)
        .arg(source)
        .args(extra_args)
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed on {}", source.display());
    fs::rename(&partial, &out).unwrap();
    built
        .get_or_insert_with(HashMap::new)
        .insert(key, out.clone());
    out
}

/// Builds `library` (a C source) as the shared library `dir/<soname>` and `program` linked against it with
/// RUNPATH `$ORIGIN` and `program_args`, into `dir` (a fresh directory: both files are new inodes of their
/// own). Returns the program and the library.
pub fn compile_with_library(
    program: &Path,
    library: &Path,
    soname: &str,
    dir: &Path,
    program_args: &[&str],
) -> (PathBuf, PathBuf) {
    let lib = dir.join(soname);
    let status = Command::new("gcc")
        .args(["-O2", "-g", "-fno-ipa-icf", "-fPIC", "-shared"])
        .arg(format!("-Wl,-soname,{soname}"))
        .arg("-o")
        .arg(&lib)
        .arg(library)
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed on {}", library.display());
    let exe = dir.join(program.file_stem().unwrap());
    let status = Command::new("gcc")
        .args(["-O2", "-g", "-fno-ipa-icf", "-o"])
        .arg(&exe)
        .arg(program)
        .arg(&lib)
        .args(["-Wl,-rpath,$ORIGIN", "-ldl"])
        .args(program_args)
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed on {}", program.display());
    (exe, lib)
}

/// Start addresses of the executable mappings of `file` in process `pid` (from /proc/<pid>/maps).
pub fn exec_mappings(pid: u32, file: &Path) -> Vec<u64> {
    let inode = fs::metadata(file).unwrap().ino();
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (range, perms, map_inode) = (fields.first()?, fields.get(1)?, fields.get(4)?);
            (perms.contains('x') && map_inode.parse::<u64>().ok()? == inode)
                .then(|| u64::from_str_radix(range.split_once('-')?.0, 16).ok())
                .flatten()
        })
        .collect()
}

/// A private copy of `binary` (a new inode), so an all-processes uprobe of one test never fires in the
/// processes of another test running in parallel.
pub fn private_copy(binary: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join(binary.file_name().unwrap());
    fs::copy(binary, &copy).unwrap();
    copy
}

/// The FILE offset of `symbol` in the ELF file `path` (.symtab, then .dynsym): its virtual address
/// translated through the PT_LOAD segment that contains it (`vaddr - p_vaddr + p_offset`).
pub fn function_offset(path: &Path, symbol: &str) -> u64 {
    let data = fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let address = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(symbol) && s.is_definition())
        .unwrap_or_else(|| panic!("{symbol} not defined in {}", path.display()))
        .address();
    file.segments()
        .find_map(|segment| {
            let (file_offset, file_size) = segment.file_range();
            let start = segment.address();
            (address >= start && address < start + file_size).then(|| address - start + file_offset)
        })
        .unwrap_or_else(|| {
            panic!(
                "{symbol} at {address:#x} is in no PT_LOAD segment of {}",
                path.display()
            )
        })
}

/// [`function_offset`] of many symbols, parsing the file once.
pub fn function_offsets(path: &Path, symbols: &[String]) -> Vec<u64> {
    let data = fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let addresses: HashMap<&str, u64> = file
        .symbols()
        .filter(|s| s.is_definition())
        .filter_map(|s| Some((s.name().ok()?, s.address())))
        .collect();
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|segment| {
            let (file_offset, file_size) = segment.file_range();
            (segment.address(), file_size, file_offset)
        })
        .collect();
    symbols
        .iter()
        .map(|symbol| {
            let address = *addresses
                .get(symbol.as_str())
                .unwrap_or_else(|| panic!("{symbol} not defined"));
            segments
                .iter()
                .find_map(|&(start, size, offset)| {
                    (address >= start && address < start + size).then(|| address - start + offset)
                })
                .unwrap_or_else(|| panic!("{symbol} is in no PT_LOAD segment"))
        })
        .collect()
}

/// The byte at `file_offset` of `file` as it is in `pid`'s memory now (via /proc/<pid>/maps and
/// /proc/<pid>/mem). A uprobe replaces it with int3 in every process it is installed in.
pub fn text_byte(pid: u32, file: &Path, file_offset: u64) -> u8 {
    let inode = fs::metadata(file).unwrap().ino();
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let address = maps
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (range, offset, map_inode) = (fields.first()?, fields.get(2)?, fields.get(4)?);
            let (start, end) = range.split_once('-')?;
            let (start, end) = (
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            );
            let offset = u64::from_str_radix(offset, 16).ok()?;
            let inside = file_offset >= offset && file_offset < offset + (end - start);
            (map_inode.parse::<u64>().ok()? == inode && inside)
                .then(|| start + file_offset - offset)
        })
        .unwrap_or_else(|| {
            panic!(
                "offset {file_offset:#x} of {} is not mapped in {pid}",
                file.display()
            )
        });
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut byte = [0u8];
    mem.read_exact_at(&mut byte, address).unwrap();
    byte[0]
}

/// The byte at `file_offset` in the file itself.
pub fn file_byte(file: &Path, file_offset: u64) -> u8 {
    let mut byte = [0u8];
    fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut byte, file_offset)
        .unwrap();
    byte[0]
}

/// A running target process driven over stdin/stdout. Dropping it kills it by pid and reaps it.
pub struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The pid of the process that runs the target, as seen from this (the test's) pid namespace.
    pub pid: u32,
    /// The pid the target printed: as seen in its own pid namespace.
    pub own_pid: u32,
    reaped: bool,
}

impl Target {
    /// Starts `binary` directly.
    pub fn spawn(binary: &Path) -> Self {
        Self::start(Command::new(binary), false)
    }

    /// Starts `binary` as pid 1 of a new pid namespace (`unshare --pid --fork --kill-child`).
    pub fn spawn_in_new_pid_namespace(binary: &Path) -> Self {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child"]).arg(binary);
        Self::start(cmd, true)
    }

    /// Starts `binary` in a new mount namespace where `bind_over` (a host path) shows `binary` instead:
    /// the same path names a different inode inside and outside (`unshare --mount`, then `exec`, so the
    /// target keeps the direct child's pid).
    pub fn spawn_in_new_mount_namespace(binary: &Path, bind_over: &Path) -> Self {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount --bind \"$0\" \"$1\" && exec \"$1\"",
        ])
        .arg(binary)
        .arg(bind_over);
        Self::start(cmd, false)
    }

    fn start(mut cmd: Command, forked: bool) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut target = Self {
            pid: child.id(),
            own_pid: 0,
            child,
            stdin,
            lines,
            reaped: false,
        };
        let ready = target.next_line();
        target.own_pid = ready
            .strip_prefix("ready ")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from target: {ready:?}"));
        if forked {
            // The target is unshare's only child; its pid in our namespace is listed in unshare's children.
            let children =
                fs::read_to_string(format!("/proc/{0}/task/{0}/children", target.pid)).unwrap();
            target.pid = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap();
        }
        target
    }

    fn next_line(&self) -> String {
        self.lines.recv_timeout(REPLY_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "no reply from target {} within {REPLY_TIMEOUT:?}: {e}",
                self.pid
            )
        })
    }

    /// Sends one command and returns its reply (which must start with "ok").
    pub fn command(&mut self, command: &str) -> String {
        self.send(command);
        let reply = self.next_line();
        assert!(
            reply.starts_with("ok"),
            "target {} answered {reply:?} to {command:?}",
            self.pid
        );
        reply
    }

    /// Sends one command without waiting for its reply (see [`Target::try_reply`]).
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// The reply to a [`Target::send`], if it has arrived.
    pub fn try_reply(&mut self) -> Option<String> {
        match self.lines.try_recv() {
            Ok(reply) => Some(reply),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                panic!("target {} closed its output", self.pid)
            }
        }
    }

    /// `h N` and the measured nanoseconds per call.
    pub fn call_hot(&mut self, n: u64) -> f64 {
        let reply = self.command(&format!("h {n}"));
        reply.trim_start_matches("ok ").parse().unwrap()
    }

    /// Closes stdin and waits (bounded) for a clean exit; a target that crashed (e.g. SIGSEGV from a wrong
    /// probe) fails here.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.reaped = true;
                assert!(status.success(), "target {} exited with {status}", self.pid);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "target {} did not exit",
                self.pid
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.reaped {
            return;
        }
        // Kill the target by its pid (for the namespaced case that is unshare's child), then the direct
        // child, and reap the direct child.
        // While unshare is alive it has not reaped its child, so that pid cannot have been reused.
        let unshare_alive = matches!(self.child.try_wait(), Ok(None));
        if self.pid != self.child.id() && unshare_alive {
            // SAFETY: kill(2) on a pid this test started; no memory is involved.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
