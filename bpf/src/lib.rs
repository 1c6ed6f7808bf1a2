// SPDX-License-Identifier: Apache-2.0
//! linkguard's eBPF side: which functions of a container actually execute, counted by uprobes.
//!
//! One BPF program (`src/bpf/linkguard.bpf.c`, compiled by clang in build.rs and embedded) is attached
//! with `uprobe.multi` links: one link per file, many function offsets per link, each offset carrying its
//! probe index as BPF cookie. Per-CPU counters are indexed by the cookie; an optional ring buffer reports
//! the first call of each index. Optionally the program ignores tasks outside one pid namespace, so an
//! all-processes link only counts the app's pod. A point can count only calls from outside the object that
//! defines the function ([`AttachPoint::external_callers_only`]): the program compares the call's return
//! address with the function's executable segment, so a library calling its own exported functions is not
//! counted.
//!
//! ```no_run
//! use linkguard_bpf::{AttachPoint, LoadOptions, Probes, Scope};
//! # fn main() -> Result<(), linkguard_bpf::BpfError> {
//! let mut probes = Probes::load(&LoadOptions { max_probes: 2, ..LoadOptions::default() })?;
//! let link = probes.attach(
//!     "/proc/4242/exe".as_ref(),
//!     &[AttachPoint { offset: 0x1139, cookie: 0 }, AttachPoint { offset: 0x1150, cookie: 1 }],
//!     Scope::OneProcess(4242),
//! )?;
//! let counts = probes.take_counts(&[0, 1])?;
//! // Coverage mode: stop trapping on what was seen.
//! let seen: Vec<u32> = (0..2).filter(|&c| counts[c as usize] > 0).collect();
//! let link = probes.relink_without(link, &seen)?;
//! # drop(link);
//! # Ok(()) }
//! ```
//!
//! What it does not do: find processes, resolve symbols or check build-ids. Callers give file offsets
//! that they verified belong to the file they open (a wrong offset crashes the target).

mod abi;
mod error;
mod probes;
mod system;

pub use error::{BpfError, Result};
pub use probes::{
    AttachPoint, DEFAULT_INTERNAL_CALL_BUDGET, FirstSeen, LinkHandle, LoadOptions,
    MAX_PROBES_LIMIT, ProbeStats, Probes, Scope,
};
pub use system::{KernelSupport, PidNamespace};

/// The compiled BPF object (empty when built with `LINKGUARD_BPF_STUB=1`).
fn bpf_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkguard.bpf.o"))
}
