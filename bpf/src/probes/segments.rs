// SPDX-License-Identifier: Apache-2.0
//! Where a function lies in its file's executable segment: what the BPF program needs to tell a call from
//! the function's own object apart from a call from elsewhere ([`AttachPoint::EXTERNAL_CALLERS_ONLY`]).
//!
//! The dynamic loader maps each `PT_LOAD` segment whole, at one offset: inside a segment, memory addresses
//! and file offsets differ by a constant. So for a function at file offset `o` in a segment starting at file
//! offset `p` with `m` bytes in memory, the segment spans `[ip - (o - p), ip + (p + m - o))` around the
//! function's address `ip` in every process, whatever the load address. Only the two distances are stored
//! (per cookie, packed in a `u64`: before in the low half, after in the high half); 0 means unknown.
//!
//! [`AttachPoint::EXTERNAL_CALLERS_ONLY`]: crate::AttachPoint::EXTERNAL_CALLERS_ONLY

use std::{fs::File, io, os::unix::fs::FileExt as _, path::Path};

/// `PT_LOAD`
const PT_LOAD: u32 = 1;
/// `PF_X`
const PF_X: u32 = 1;
/// ELF64 program header size.
const PHDR64_SIZE: usize = 56;

/// One executable `PT_LOAD` segment: its file offset, its size in the file and in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) offset: u64,
    pub(crate) file_size: u64,
    pub(crate) mem_size: u64,
}

impl Segment {
    /// The packed distances for a function at file offset `function`, or 0 when it is not in this segment
    /// or a distance does not fit in 32 bits.
    pub(crate) fn distances(&self, function: u64) -> Option<u64> {
        let inside = function >= self.offset && function - self.offset < self.file_size;
        if !inside {
            return None;
        }
        let before = u32::try_from(function - self.offset).ok()?;
        let after = u32::try_from((self.offset + self.mem_size).checked_sub(function)?).ok()?;
        Some(u64::from(before) | (u64::from(after) << 32))
    }
}

/// The packed distances of `function` (a file offset) within `segments`, 0 when no segment holds it.
pub(crate) fn packed_distances(segments: &[Segment], function: u64) -> u64 {
    segments
        .iter()
        .find_map(|segment| segment.distances(function))
        .unwrap_or(0)
}

/// The executable `PT_LOAD` segments of the ELF64 file at `path` (either byte order). Anything else (not ELF,
/// ELF32, truncated) is an error: the caller then records no segment, and the points count every call.
pub(crate) fn executable_segments(path: &Path) -> io::Result<Vec<Segment>> {
    let file = File::open(path)?;
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0)?;
    parse(&header, |offset, buf| file.read_exact_at(buf, offset))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Parses the ELF header `header` and reads the program headers through `read_at`.
fn parse(
    header: &[u8; 64],
    mut read_at: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<Vec<Segment>> {
    if header[..4] != *b"\x7fELF" {
        return Err(invalid("not an ELF file"));
    }
    if header[4] != 2 {
        return Err(invalid("not a 64-bit ELF file"));
    }
    let big_endian = match header[5] {
        1 => false,
        2 => true,
        _ => return Err(invalid("unknown ELF byte order")),
    };
    let u16_at = |bytes: &[u8], at: usize| -> u16 {
        let raw = [bytes[at], bytes[at + 1]];
        if big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        }
    };
    let u32_at = |bytes: &[u8], at: usize| -> u32 {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(&bytes[at..at + 4]);
        if big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        }
    };
    let u64_at = |bytes: &[u8], at: usize| -> u64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[at..at + 8]);
        if big_endian {
            u64::from_be_bytes(raw)
        } else {
            u64::from_le_bytes(raw)
        }
    };
    let phoff = u64_at(header, 0x20);
    let phentsize = usize::from(u16_at(header, 0x36));
    let phnum = usize::from(u16_at(header, 0x38));
    if phentsize < PHDR64_SIZE {
        return Err(invalid("program header entries are too small"));
    }
    // 0xffff (PN_XNUM) would move the count to section 0: never the case for loadable objects.
    let mut table = vec![0u8; phentsize * phnum];
    read_at(phoff, &mut table)?;
    Ok(table
        .chunks_exact(phentsize)
        .filter(|ph| u32_at(ph, 0) == PT_LOAD && u32_at(ph, 4) & PF_X != 0)
        .map(|ph| Segment {
            offset: u64_at(ph, 8),
            file_size: u64_at(ph, 32),
            mem_size: u64_at(ph, 40),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_packed_before_low_after_high() {
        let text = Segment {
            offset: 0x1000,
            file_size: 0x3000,
            mem_size: 0x3000,
        };
        assert_eq!(text.distances(0x1000), Some(0x3000 << 32));
        assert_eq!(text.distances(0x1234), Some(0x234 | (0x2dcc << 32)));
        assert_eq!(text.distances(0x3fff), Some(0x2fff | (1 << 32)));
        assert_eq!(text.distances(0x4000), None, "the end is outside");
        assert_eq!(text.distances(0xfff), None);
        assert_eq!(packed_distances(&[text], 0x5000), 0, "unknown");
    }

    #[test]
    fn the_executable_segments_of_this_test_binary_hold_its_code() {
        // This very function is code of the running test binary: its file offset lies in an executable
        // segment, and the segment found from the file matches the process's own r-x mapping.
        let exe = std::env::current_exe().unwrap();
        let segments = executable_segments(&exe).unwrap();
        assert!(!segments.is_empty());
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let here = the_executable_segments_of_this_test_binary_hold_its_code as *const () as u64;
        let (start, end, file_offset) = maps
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                let (range, perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
                let (start, end) = range.split_once('-')?;
                let (start, end) = (
                    u64::from_str_radix(start, 16).ok()?,
                    u64::from_str_radix(end, 16).ok()?,
                );
                (perms.contains('x') && (start..end).contains(&here))
                    .then(|| (start, end, u64::from_str_radix(offset, 16).ok()))
            })
            .unwrap();
        let function = here - start + file_offset.unwrap();
        let packed = packed_distances(&segments, function);
        assert_ne!(packed, 0);
        let (before, after) = (packed & 0xffff_ffff, packed >> 32);
        // The segment as computed is the process's r-x mapping, up to the page rounding of its ends.
        let (segment_start, segment_end) = (here - before, here + after);
        assert!(
            (start..start + 0x1000).contains(&segment_start),
            "{segment_start:#x} {start:#x}"
        );
        assert!(
            (end - 0x1000..=end).contains(&segment_end),
            "{segment_end:#x} {end:#x}"
        );
    }

    #[test]
    fn other_files_are_errors() {
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 1; // ELF32
        assert!(parse(&header, |_, _| Ok(())).is_err());
        assert!(parse(&[0u8; 64], |_, _| Ok(())).is_err());
    }
}
