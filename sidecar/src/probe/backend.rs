// SPDX-License-Identifier: Apache-2.0
//! The kernel behind a small trait, the way youki puts syscalls behind `Syscall`: the planning, coverage
//! and record logic is unit-tested against an in-memory implementation of this trait (`fake.rs`, test
//! builds only); the real implementation is [`linkguard_bpf::Probes`], exercised as root by tests/observe.rs.

use std::path::Path;

pub use linkguard_bpf::{AttachPoint, BpfError, FirstSeen, Scope};

/// What the probe session needs from the kernel: uprobe.multi links with cookies, per-cookie counters and
/// first-seen events. Cookies index the counters; `take_counts` is lossless (each call counted once).
pub trait ProbeBackend {
    /// One attached link (one file, one scope, many offsets).
    type Link: std::fmt::Debug;

    /// Attaches `points` of the file opened by `target` (a `/proc/<pid>/...` path) for `scope`.
    fn attach(
        &mut self,
        target: &Path,
        points: &[AttachPoint],
        scope: Scope,
    ) -> Result<Self::Link, BpfError>;

    /// Removes the link; when it returns, its breakpoints are gone.
    fn detach(&mut self, link: Self::Link) -> Result<(), BpfError>;

    /// Calls per cookie since the last take, without consuming them.
    fn read_counts(&self, cookies: &[u32]) -> Result<Vec<u64>, BpfError>;

    /// Calls per cookie since the last take; the next take starts from there.
    fn take_counts(&mut self, cookies: &[u32]) -> Result<Vec<u64>, BpfError>;

    /// Up to `max` first-call events, oldest first (empty when the backend reports none).
    fn drain_first_seen(&mut self, max: usize) -> Vec<FirstSeen>;

    /// Re-arms the first-call events of `cookies`.
    fn reset_first_seen(&mut self, cookies: &[u32]) -> Result<(), BpfError>;

    /// The number of cookies (valid cookies are below it).
    fn max_probes(&self) -> u32;
}

impl ProbeBackend for linkguard_bpf::Probes {
    type Link = linkguard_bpf::LinkHandle;

    fn attach(
        &mut self,
        target: &Path,
        points: &[AttachPoint],
        scope: Scope,
    ) -> Result<Self::Link, BpfError> {
        linkguard_bpf::Probes::attach(self, target, points, scope)
    }

    fn detach(&mut self, link: Self::Link) -> Result<(), BpfError> {
        linkguard_bpf::Probes::detach(self, link)
    }

    fn read_counts(&self, cookies: &[u32]) -> Result<Vec<u64>, BpfError> {
        linkguard_bpf::Probes::read_counts(self, cookies)
    }

    fn take_counts(&mut self, cookies: &[u32]) -> Result<Vec<u64>, BpfError> {
        linkguard_bpf::Probes::take_counts(self, cookies)
    }

    fn drain_first_seen(&mut self, max: usize) -> Vec<FirstSeen> {
        linkguard_bpf::Probes::drain_first_seen(self, max)
    }

    fn reset_first_seen(&mut self, cookies: &[u32]) -> Result<(), BpfError> {
        linkguard_bpf::Probes::reset_first_seen(self, cookies)
    }

    fn max_probes(&self) -> u32 {
        linkguard_bpf::Probes::max_probes(self)
    }
}
