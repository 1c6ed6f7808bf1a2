// SPDX-License-Identifier: Apache-2.0
//! The test attach of `linkguard doctor`: a uprobe.multi link on a function of linkguard's own binary,
//! placed exactly as `observe` places them on an app (a FILE offset computed by our ELF code, opened
//! through a `/proc` path), called a known number of times.
//!
//! The offset comes from `.symtab`/`.dynsym` through [`crate::elf`] and is checked against where the
//! kernel actually mapped the function (`/proc/self/maps`): a wrong offset would put the breakpoint inside
//! an instruction and crash this very process, so a disagreement attaches nothing. A stripped binary has no
//! symbol for it; then the `/proc/self/maps` offset is used alone.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use linkguard_bpf::{AttachPoint, BpfError, LoadOptions, Probes, Scope};
use serde::Serialize;

use crate::elf;

/// The file the test attach opens: this process's executable, as the kernel resolves it for this process.
pub const TARGET: &str = "/proc/self/exe";

/// The symbol of [`linkguard_doctor_probe_target`].
pub const TARGET_FUNCTION: &str = "linkguard_doctor_probe_target";

/// How many calls the test attach makes and expects counted (each traps: ~5 us on the project's VM).
pub const TEST_CALLS: u64 = 1000;

/// The probed function. Not inlined, unmangled and with a body of its own, so the symbol names exactly one
/// function that every call goes through.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn linkguard_doctor_probe_target(x: u64) -> u64 {
    std::hint::black_box(x)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(23)
}

/// Calls the target `times` times through an opaque pointer, so the compiler keeps every call.
fn call_target(times: u64) {
    let target: extern "C" fn(u64) -> u64 = std::hint::black_box(linkguard_doctor_probe_target);
    let mut acc = 0u64;
    for i in 0..times {
        acc = acc.wrapping_add(target(std::hint::black_box(i)));
    }
    std::hint::black_box(acc);
}

/// Where the attach offset came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetSource {
    /// `.symtab` via [`crate::elf`], confirmed by `/proc/self/maps` when readable.
    Symtab,
    /// `.dynsym` via [`crate::elf`], confirmed by `/proc/self/maps` when readable.
    Dynsym,
    /// The function's runtime address in `/proc/self/maps` (the binary has no symbol for it).
    ProcMaps,
}

impl OffsetSource {
    /// The word printed and serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Symtab => "symtab",
            Self::Dynsym => "dynsym",
            Self::ProcMaps => "proc-maps",
        }
    }
}

/// What the test attach measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfTestOutcome {
    /// The file offset attached to.
    pub offset: u64,
    pub offset_source: OffsetSource,
    /// Calls made while attached.
    pub calls: u64,
    /// What the counter read after them.
    pub counted: u64,
    /// Counted during as many calls again after the detach (0 when the detach removed the probe).
    pub counted_after_detach: u64,
    /// Time to create the link.
    pub attach: Duration,
    /// Time to close it (includes the kernel's RCU grace period).
    pub detach: Duration,
}

/// Why the test attach could not count.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// Neither our ELF code nor `/proc/self/maps` located the function.
    #[error("cannot locate {TARGET_FUNCTION} in {TARGET}: {reason}")]
    TargetNotFound { reason: String },
    /// Our ELF code and the kernel's mapping disagree: attaching could crash this process.
    #[error(
        "{TARGET_FUNCTION}: the ELF symbol gives file offset {elf:#x} but /proc/self/maps gives {maps:#x}; \
         nothing attached (a wrong offset crashes the probed process)"
    )]
    OffsetMismatch { elf: u64, maps: u64 },
    /// linkguard-bpf failed at `step`.
    #[error("{step} failed")]
    Bpf {
        step: &'static str,
        #[source]
        source: BpfError,
    },
}

impl SelfTestError {
    /// One line for the report: the step, linkguard-bpf's message, and the root cause (often an errno
    /// that the intermediate messages leave out) unless the message already says it.
    pub fn describe(&self) -> String {
        let Self::Bpf { step, source } = self else {
            return self.to_string();
        };
        let mut text = format!("{step} failed: {source}");
        let mut root: &dyn std::error::Error = source;
        while let Some(next) = root.source() {
            root = next;
        }
        let root = root.to_string();
        if !text.contains(&root) {
            text.push_str(&format!(" ({root})"));
        }
        // One line for the table: a verifier log spans many (and an empty one leaves a dangling label).
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        line.trim_end_matches("; verifier log:").to_owned()
    }
}

fn bpf(step: &'static str) -> impl FnOnce(BpfError) -> SelfTestError {
    move |source| SelfTestError::Bpf { step, source }
}

/// Loads, attaches to [`TARGET_FUNCTION`] scoped to this process, calls it `calls` times, reads the
/// counter, detaches, and calls it `calls` times again to see the probe is gone.
///
/// The link is scoped to this process's pid: another linkguard running the same binary (a second doctor,
/// the sidecar) does not add to the count. On a kernel without the uprobe.multi process-scope fix the pid
/// selects only the main thread, so call this from the main thread.
pub(super) fn run(calls: u64) -> Result<SelfTestOutcome, SelfTestError> {
    let (offset, offset_source) = locate()?;
    let mut probes = Probes::load(&LoadOptions {
        max_probes: 1,
        ..LoadOptions::default()
    })
    .map_err(bpf("loading linkguard's BPF program"))?;
    let started = Instant::now();
    let link = probes
        .attach(
            Path::new(TARGET),
            &[AttachPoint { offset, cookie: 0 }],
            Scope::OneProcess(std::process::id()),
        )
        .map_err(bpf("attaching a uprobe.multi link"))?;
    let attach = started.elapsed();
    call_target(calls);
    let counted = first(
        probes
            .read_counts(&[0])
            .map_err(bpf("reading the counter"))?,
    );
    let started = Instant::now();
    probes.detach(link).map_err(bpf("detaching the link"))?;
    let detach = started.elapsed();
    call_target(calls);
    let total = first(
        probes
            .read_counts(&[0])
            .map_err(bpf("reading the counter"))?,
    );
    Ok(SelfTestOutcome {
        offset,
        offset_source,
        calls,
        counted,
        counted_after_detach: total.saturating_sub(counted),
        attach,
        detach,
    })
}

fn first(counts: Vec<u64>) -> u64 {
    counts.first().copied().unwrap_or(0)
}

/// The file offset of [`TARGET_FUNCTION`] in [`TARGET`], and where it came from.
pub(super) fn locate() -> Result<(u64, OffsetSource), SelfTestError> {
    let from_elf = elf::read_file(Path::new(TARGET))
        .map_err(|err| elf::error_chain(&err))
        .and_then(|info| symbol_offset(&info));
    let target: extern "C" fn(u64) -> u64 = linkguard_doctor_probe_target;
    let address = target as usize as u64;
    let from_maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|err| format!("cannot read /proc/self/maps: {err}"))
        .and_then(|maps| {
            maps_offset(&maps, address).ok_or_else(|| {
                format!("no executable file mapping in /proc/self/maps contains {address:#x}")
            })
        });
    choose_offset(from_elf, from_maps)
}

/// The symbol's file offset per our ELF code, `.symtab` first (what `observe` uses for an app's own
/// functions), then `.dynsym`.
pub(super) fn symbol_offset(info: &elf::ElfInfo) -> Result<(u64, OffsetSource), String> {
    let find = |functions: &[elf::DefinedFunction]| {
        functions
            .iter()
            .find(|f| f.name == TARGET_FUNCTION)
            .map(|f| f.offset)
    };
    for (functions, source) in [
        (&info.symtab_functions, OffsetSource::Symtab),
        (&info.exports, OffsetSource::Dynsym),
    ] {
        match find(functions) {
            Some(Some(offset)) => return Ok((offset, source)),
            Some(None) => {
                return Err(format!(
                    "its {} address is outside every PT_LOAD segment",
                    source.as_str()
                ));
            }
            None => {}
        }
    }
    Err("no .symtab or .dynsym symbol (stripped binary)".to_owned())
}

/// The file offset of `address` from `/proc/<pid>/maps` text (fs/proc/task_mmu.c `show_map_vma`:
/// `start-end perms pgoff dev inode path`): `address - start + pgoff` of the executable, file-backed
/// mapping containing it.
pub(super) fn maps_offset(maps: &str, address: u64) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let pgoff = u64::from_str_radix(fields.next()?, 16).ok()?;
        let _dev = fields.next()?;
        let inode: u64 = fields.next()?.parse().ok()?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        let hit = (start..end).contains(&address) && perms.contains('x') && inode != 0;
        hit.then(|| pgoff.checked_add(address - start)).flatten()
    })
}

/// Both sources must agree; either alone is used when the other is unavailable.
pub(super) fn choose_offset(
    from_elf: Result<(u64, OffsetSource), String>,
    from_maps: Result<u64, String>,
) -> Result<(u64, OffsetSource), SelfTestError> {
    match (from_elf, from_maps) {
        (Ok((elf, _)), Ok(maps)) if elf != maps => Err(SelfTestError::OffsetMismatch { elf, maps }),
        (Ok(found), _) => Ok(found),
        (Err(_), Ok(maps)) => Ok((maps, OffsetSource::ProcMaps)),
        (Err(elf), Err(maps)) => Err(SelfTestError::TargetNotFound {
            reason: format!("{elf}; {maps}"),
        }),
    }
}
