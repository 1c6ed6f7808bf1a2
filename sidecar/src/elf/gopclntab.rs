// SPDX-License-Identifier: Apache-2.0
//! Function names and entry points of a Go binary from its `.gopclntab`, the table the Go runtime
//! itself uses for stack traces. It survives `go build -ldflags="-s -w"` and `strip`, which remove
//! `.symtab`: for a stripped Go binary it is the only list of functions.
//!
//! Layout (Go's `runtime/symtab.go` `pcHeader` and `debug/gosym/pclntab.go`), for the formats of
//! Go 1.16 and later; older tables give no functions:
//!
//! ```text
//! magic u32 | 0 | 0 | minLC u8 | ptrSize u8 | nfunc | nfiles | [textStart (1.18+)] | funcnameOffset
//!   | cuOffset | filetabOffset | pctabOffset | pclnOffset            (each a ptrSize word)
//! functab at pclnOffset: (nfunc + 1) pairs (entry, funcOffset); 1.18+: u32 offsets from textStart,
//!   1.16: ptrSize addresses. The func record at pclnOffset + funcOffset holds entry, then the i32
//!   offset of the name in the funcname table (NUL-terminated).
//! ```

use super::{Binding, DefinedFunction, LoadSegment};

const GO_116_MAGIC: u32 = 0xffff_fffa;
const GO_118_MAGIC: u32 = 0xffff_fff0;
const GO_120_MAGIC: u32 = 0xffff_fff1;

struct Reader<'a> {
    data: &'a [u8],
    little_endian: bool,
    ptr_size: usize,
}

impl Reader<'_> {
    fn uint(&self, at: usize, size: usize) -> Option<u64> {
        let bytes = self.data.get(at..at.checked_add(size)?)?;
        let mut buf = [0u8; 8];
        if self.little_endian {
            buf[..size].copy_from_slice(bytes);
            Some(u64::from_le_bytes(buf))
        } else {
            buf[8 - size..].copy_from_slice(bytes);
            Some(u64::from_be_bytes(buf))
        }
    }

    fn word(&self, index: usize) -> Option<usize> {
        usize::try_from(self.uint(8 + index * self.ptr_size, self.ptr_size)?).ok()
    }
}

/// The NUL-terminated string at `at`.
fn c_str(data: &[u8], at: usize) -> Option<&[u8]> {
    let rest = data.get(at..)?;
    rest.iter().position(|&b| b == 0).map(|end| &rest[..end])
}

/// The functions of a Go 1.16+ pclntab that starts at `pclntab[0]`; `None` for other versions or a
/// malformed table. `text_section` is the address of `.text`, used when the header's own text
/// start is 0 (unrelocated in a position-independent binary).
pub(super) fn functions(
    pclntab: &[u8],
    text_section: u64,
    little_endian: bool,
    loads: &[LoadSegment],
) -> Option<Vec<DefinedFunction>> {
    read(pclntab, text_section, little_endian, loads).filter(|f| !f.is_empty())
}

/// Finds the table in a Go binary whose `.gopclntab` section is gone (external linking places it
/// in `.data.rel.ro`; stripping then removes the only symbol naming it): the first offset in
/// `data` that starts a plausible header and parses completely, as Go tooling such as GoReSym does.
pub(super) fn scan(
    data: &[u8],
    text_section: u64,
    little_endian: bool,
    loads: &[LoadSegment],
) -> Option<Vec<DefinedFunction>> {
    let magics = [GO_120_MAGIC, GO_118_MAGIC, GO_116_MAGIC].map(|m| {
        if little_endian {
            m.to_le_bytes()
        } else {
            m.to_be_bytes()
        }
    });
    let mut at = 0;
    while let Some(found) = data.get(at..)?.windows(8).position(|w| {
        magics.iter().any(|m| w[..4] == *m)
            && w[4] == 0
            && w[5] == 0
            && matches!(w[6], 1 | 2 | 4)
            && matches!(w[7], 4 | 8)
    }) {
        let start = at + found;
        if let Some(functions) = functions(&data[start..], text_section, little_endian, loads) {
            return Some(functions);
        }
        at = start + 1;
    }
    None
}

fn read(
    data: &[u8],
    text_section: u64,
    little_endian: bool,
    loads: &[LoadSegment],
) -> Option<Vec<DefinedFunction>> {
    let probe = Reader {
        data,
        little_endian,
        ptr_size: 4,
    };
    let magic = probe.uint(0, 4)? as u32;
    let ptr_size = usize::from(*data.get(7)?);
    if !matches!(ptr_size, 4 | 8) || data.get(4..6)? != [0, 0] {
        return None;
    }
    let r = Reader {
        data,
        little_endian,
        ptr_size,
    };
    // Word indices of the header fields, and the width of a functab field.
    let (funcname_word, pcln_word, field) = match magic {
        GO_118_MAGIC | GO_120_MAGIC => (3, 7, 4),
        GO_116_MAGIC => (2, 6, ptr_size),
        _ => return None,
    };
    let nfunc = r.word(0)?;
    let text_start = match magic {
        GO_118_MAGIC | GO_120_MAGIC => Some(r.word(2)? as u64)
            .filter(|&t| t != 0)
            .unwrap_or(text_section),
        _ => text_section,
    };
    let funcnames = data.get(r.word(funcname_word)?..)?;
    let pcln = r.word(pcln_word)?;
    // The table must hold (nfunc + 1) pairs: reject a count the data cannot contain before
    // allocating for it.
    let functab_len = nfunc.checked_add(1)?.checked_mul(2 * field)?;
    data.get(pcln..pcln.checked_add(functab_len)?)?;

    let entry = |i: usize| -> Option<u64> {
        let raw = r.uint(pcln + 2 * i * field, field)?;
        Some(if magic == GO_116_MAGIC {
            raw
        } else {
            text_start.checked_add(raw)?
        })
    };
    let mut functions = Vec::with_capacity(nfunc);
    for i in 0..nfunc {
        let (start, end) = (entry(i)?, entry(i + 1)?);
        let func_offset = usize::try_from(r.uint(pcln + (2 * i + 1) * field, field)?).ok()?;
        let name_at = pcln.checked_add(func_offset)?.checked_add(field)?;
        let name_offset = usize::try_from(r.uint(name_at, 4)? as u32 as i32).ok()?;
        let name = c_str(funcnames, name_offset)?;
        if name.is_empty() {
            continue;
        }
        functions.push(DefinedFunction {
            name: String::from_utf8_lossy(name).into_owned(),
            version: None,
            default_version: true,
            binding: Binding::Global,
            value: start,
            size: end.saturating_sub(start),
            offset: super::file_offset(loads, start),
            ifunc: false,
        });
    }
    Some(functions)
}
