// SPDX-License-Identifier: Apache-2.0
//! `#[repr(C)]` mirrors of `bpf/include/linkguard.h`: the names of the program, maps and load-time
//! globals, and the first-seen record layout. The sizes and offsets are asserted at compile time here and
//! with `_Static_assert` in the header, so a layout change on one side breaks the build instead of
//! misreading the ring buffer.

use std::mem::{offset_of, size_of};

/// The `SEC("uprobe.multi")` program.
pub(crate) const PROGRAM: &str = "linkguard_count";

pub(crate) const MAP_COUNTERS: &str = "lg_counters";
pub(crate) const MAP_SEEN: &str = "lg_seen";
pub(crate) const MAP_STATS: &str = "lg_stats";
pub(crate) const MAP_EVENTS: &str = "lg_events";
pub(crate) const MAP_INTERNAL: &str = "lg_internal";
pub(crate) const MAP_SEGMENTS: &str = "lg_segments";

pub(crate) const GLOBAL_FLAGS: &str = "lg_flags";
pub(crate) const GLOBAL_PIDNS_DEV: &str = "lg_pidns_dev";
pub(crate) const GLOBAL_PIDNS_INO: &str = "lg_pidns_ino";
pub(crate) const GLOBAL_MAX_PROBES: &str = "lg_max_probes";
pub(crate) const GLOBAL_WAKEUP_EVERY: &str = "lg_wakeup_every";
pub(crate) const GLOBAL_INTERNAL_BUDGET: &str = "lg_internal_budget";

/// `LG_FLAG_PIDNS_FILTER`
pub(crate) const FLAG_PIDNS_FILTER: u32 = 0x1;
/// `LG_FLAG_FIRST_SEEN`
pub(crate) const FLAG_FIRST_SEEN: u32 = 0x2;

/// `LG_COOKIE_EXTERNAL_ONLY`, a flag of the BPF cookie's high 32 bits.
pub(crate) const COOKIE_EXTERNAL_ONLY: u32 = 0x1;

/// `LG_EVENT_INTERNAL_BUDGET`, a bit of `lg_first_seen.flags`.
pub(crate) const EVENT_INTERNAL_BUDGET: u32 = 0x1;

/// `enum lg_stat`
pub(crate) const STAT_FILTERED: u32 = 0;
pub(crate) const STAT_BAD_COOKIE: u32 = 1;
pub(crate) const STAT_EVENTS_SENT: u32 = 2;
pub(crate) const STAT_EVENTS_DROPPED: u32 = 3;
pub(crate) const STAT_INTERNAL_CALLS: u32 = 4;
pub(crate) const STAT_CALLER_UNKNOWN: u32 = 5;
pub(crate) const STAT_INTERNAL_BUDGET: u32 = 6;

/// `struct lg_first_seen`, as the BPF program writes it into the ring buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawFirstSeen {
    pub(crate) ktime_ns: u64,
    pub(crate) pid: u32,
    pub(crate) cookie: u32,
    pub(crate) host_pid: u32,
    pub(crate) tid: u32,
    pub(crate) flags: u32,
    pub(crate) reserved: u32,
}

const _: () = {
    assert!(size_of::<RawFirstSeen>() == 32);
    assert!(offset_of!(RawFirstSeen, ktime_ns) == 0);
    assert!(offset_of!(RawFirstSeen, pid) == 8);
    assert!(offset_of!(RawFirstSeen, cookie) == 12);
    assert!(offset_of!(RawFirstSeen, host_pid) == 16);
    assert!(offset_of!(RawFirstSeen, tid) == 20);
    assert!(offset_of!(RawFirstSeen, flags) == 24);
    assert!(offset_of!(RawFirstSeen, reserved) == 28);
};

impl RawFirstSeen {
    /// Decodes one ring buffer record (native endianness: producer and consumer share the CPU).
    /// `None` for a record of the wrong size, which only a mismatched object could produce.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != size_of::<Self>() {
            return None;
        }
        let u32_at = |offset: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(
                bytes.get(offset..offset + 4)?.try_into().ok()?,
            ))
        };
        Some(Self {
            ktime_ns: u64::from_ne_bytes(bytes.get(0..8)?.try_into().ok()?),
            pid: u32_at(offset_of!(Self, pid))?,
            cookie: u32_at(offset_of!(Self, cookie))?,
            host_pid: u32_at(offset_of!(Self, host_pid))?,
            tid: u32_at(offset_of!(Self, tid))?,
            flags: u32_at(offset_of!(Self, flags))?,
            reserved: u32_at(offset_of!(Self, reserved))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_record_laid_out_like_the_c_struct() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x0102_0304_0506_0708u64.to_ne_bytes());
        bytes.extend_from_slice(&7u32.to_ne_bytes()); // pid
        bytes.extend_from_slice(&42u32.to_ne_bytes()); // cookie
        bytes.extend_from_slice(&1234u32.to_ne_bytes()); // host_pid
        bytes.extend_from_slice(&8u32.to_ne_bytes()); // tid
        bytes.extend_from_slice(&1u32.to_ne_bytes()); // flags
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // reserved
        let record = RawFirstSeen::parse(&bytes).unwrap();
        assert_eq!(
            record,
            RawFirstSeen {
                ktime_ns: 0x0102_0304_0506_0708,
                pid: 7,
                cookie: 42,
                host_pid: 1234,
                tid: 8,
                flags: 1,
                reserved: 0,
            }
        );
    }

    #[test]
    fn rejects_records_of_another_size() {
        assert_eq!(RawFirstSeen::parse(&[0u8; 24]), None);
        assert_eq!(RawFirstSeen::parse(&[0u8; 40]), None);
    }
}
