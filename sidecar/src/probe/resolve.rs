// SPDX-License-Identifier: Apache-2.0
//! Before anything is attached to a file: is it the map's build, and where does each function start?
//!
//! A uprobe at a wrong offset is accepted by the kernel and crashes the target (PLATFORM.md), so a file
//! whose build-id (or sha256, for files without one) differs from the map's gets nothing attached at all.
//! Offsets come from the running file's own symbols (`.dynsym` with versions, then `.symtab`); the offset
//! recorded in the map is used only when the symbol is gone (stripped) AND the identity matched. IFUNC
//! symbols are resolvers that run once at binding, so they are reported, not probed.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::elf::{self, Binding, DefinedFunction, ElfInfo};
use crate::observation::ProbeStatus;

use super::targets::{TargetFile, TargetSymbol};

/// `detail` of a probe record for an IFUNC symbol.
pub const DETAIL_IFUNC: &str = "ifunc";

/// One attach point: a file offset and the map's symbols that start there (aliases share an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPoint {
    pub offset: u64,
    /// Indexes into [`TargetFile::symbols`].
    pub symbols: Vec<usize>,
}

/// A symbol that will not be probed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolFailure {
    /// Index into [`TargetFile::symbols`].
    pub symbol: usize,
    pub status: ProbeStatus,
    pub detail: String,
}

/// The decision for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilePlan {
    /// Not the map's build: nothing may be attached.
    Mismatch {
        found_build_id: Option<String>,
        detail: String,
    },
    /// Attach these points; report these failures.
    Probe {
        build_id: Option<String>,
        points: Vec<PlannedPoint>,
        failures: Vec<SymbolFailure>,
    },
}

impl FilePlan {
    /// Build-id of the running file, when it has one.
    pub fn build_id(&self) -> Option<&str> {
        match self {
            FilePlan::Mismatch { found_build_id, .. } => found_build_id.as_deref(),
            FilePlan::Probe { build_id, .. } => build_id.as_deref(),
        }
    }
}

/// Whether the running file is the map's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// Build-id or sha256 equal: the map's offsets are valid for this file.
    Verified,
    /// The map records neither: the file's own symbols are still safe, the map's offsets are not.
    Unknown,
}

/// Plans `target` against the running file's bytes (`name` names it in details).
pub fn plan_file(target: &TargetFile, bytes: &[u8], name: &str) -> FilePlan {
    let info = match elf::parse(bytes, name) {
        Ok(info) => info,
        Err(err) => {
            return FilePlan::Mismatch {
                found_build_id: None,
                detail: format!("not the map's ELF file: {err}"),
            };
        }
    };
    let identity = match check_identity(target, &info, bytes) {
        Ok(identity) => identity,
        Err(detail) => {
            return FilePlan::Mismatch {
                found_build_id: info.build_id.clone(),
                detail,
            };
        }
    };
    let mut by_offset: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (index, symbol) in target.symbols.iter().enumerate() {
        match resolve(&info, symbol, identity) {
            Ok(offset) if x86_refuses(&info, bytes, offset) => failures.push(SymbolFailure {
                symbol: index,
                status: ProbeStatus::AttachFailed,
                detail: DETAIL_X86_PREFIX.to_owned(),
            }),
            Ok(offset) => by_offset.entry(offset).or_default().push(index),
            Err((status, detail)) => failures.push(SymbolFailure {
                symbol: index,
                status,
                detail,
            }),
        }
    }
    let points = by_offset
        .into_iter()
        .map(|(offset, symbols)| PlannedPoint { offset, symbols })
        .collect();
    FilePlan::Probe {
        build_id: info.build_id,
        points,
        failures,
    }
}

/// `detail` of a function whose first instruction x86 uprobes refuse.
pub const DETAIL_X86_PREFIX: &str = "its first instruction has a LOCK or ES/CS/SS/DS segment prefix, which x86 \
     uprobes refuse (ENOTSUPP, arch/x86/kernel/uprobes.c is_prefix_bad)";

/// Whether the kernel will refuse a uprobe at `offset`: on x86 it rejects an instruction carrying a LOCK
/// or ES/CS/SS/DS prefix (`is_prefix_bad`), e.g. libcrypto's `OSSL_DECODER_up_ref` starts with `lock addl`.
/// One such offset makes the kernel refuse the whole uprobe.multi link, so they are left out up front
/// (`bisect` still catches what this does not know).
fn x86_refuses(info: &ElfInfo, bytes: &[u8], offset: u64) -> bool {
    if info.machine != object::elf::EM_X86_64 && info.machine != object::elf::EM_386 {
        return false;
    }
    let Some(code) = usize::try_from(offset)
        .ok()
        .and_then(|start| bytes.get(start..))
    else {
        return false;
    };
    // Legacy prefixes precede the opcode (at most 14 bytes in a valid instruction).
    for &byte in code.iter().take(14) {
        match byte {
            0xf0 | 0x26 | 0x2e | 0x36 | 0x3e => return true,
            0x66 | 0x67 | 0xf2 | 0xf3 | 0x64 | 0x65 => continue,
            _ => return false,
        }
    }
    false
}

fn check_identity(target: &TargetFile, info: &ElfInfo, bytes: &[u8]) -> Result<Identity, String> {
    if let Some(expected) = &target.binary.build_id {
        return match &info.build_id {
            Some(found) if found.eq_ignore_ascii_case(expected) => Ok(Identity::Verified),
            Some(found) => Err(format!(
                "build-id {found}, the map expects {expected}: regenerate the map for this image"
            )),
            None => Err(format!(
                "the file has no build-id, the map expects {expected}"
            )),
        };
    }
    if let Some(expected) = &target.binary.sha256 {
        let found = hex::encode(Sha256::digest(bytes));
        return if found.eq_ignore_ascii_case(expected) {
            Ok(Identity::Verified)
        } else {
            Err(format!(
                "sha256 {found}, the map expects {expected}: regenerate the map for this image"
            ))
        };
    }
    Ok(Identity::Unknown)
}

/// The file offset to attach `symbol` at.
fn resolve(
    info: &ElfInfo,
    symbol: &TargetSymbol,
    identity: Identity,
) -> Result<u64, (ProbeStatus, String)> {
    let unresolvable = |detail: String| (ProbeStatus::Unresolvable, detail);
    match find(info, symbol) {
        Some(function) if function.ifunc => Err(unresolvable(DETAIL_IFUNC.to_owned())),
        Some(DefinedFunction {
            offset: Some(offset),
            ..
        }) => Ok(*offset),
        found => match (symbol.map_offset, identity) {
            (Some(offset), Identity::Verified) => Ok(offset),
            _ => {
                let mut detail = match found {
                    Some(_) => format!("{} lies outside every loaded segment", symbol.name),
                    None if info.has_symtab => {
                        format!("{} is not defined in .dynsym or .symtab", symbol.name)
                    }
                    None => format!(
                        "{} is not in .dynsym, the file is stripped and the map records no offset",
                        symbol.name
                    ),
                };
                if let Some(reason) = &symbol.map_unresolved {
                    detail = format!("{detail} (map generator: {reason})");
                }
                Err(unresolvable(detail))
            }
        },
    }
}

/// `.dynsym` first (the map's version, else the default `@@` one), then `.symtab` (global before local).
fn find<'a>(info: &'a ElfInfo, symbol: &TargetSymbol) -> Option<&'a DefinedFunction> {
    let exports: Vec<&DefinedFunction> = info
        .exports
        .iter()
        .filter(|f| f.name == symbol.name)
        .collect();
    let versioned = symbol
        .version
        .as_ref()
        .and_then(|v| exports.iter().find(|f| f.version.as_ref() == Some(v)));
    if let Some(found) = versioned
        .or_else(|| exports.iter().find(|f| f.default_version))
        .or(exports.first())
    {
        return Some(found);
    }
    let mut local = None;
    for function in info
        .symtab_functions
        .iter()
        .filter(|f| f.name == symbol.name)
    {
        if function.binding != Binding::Local {
            return Some(function);
        }
        local.get_or_insert(function);
    }
    local
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::function_map::BinaryRef;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/elf")
            .join(name)
    }

    fn symbol(name: &str, version: Option<&str>, map_offset: Option<u64>) -> TargetSymbol {
        TargetSymbol {
            name: name.into(),
            version: version.map(Into::into),
            map_offset,
            declared: true,
            map_unresolved: None,
        }
    }

    fn target(path: &str, build_id: Option<String>, symbols: Vec<TargetSymbol>) -> TargetFile {
        TargetFile {
            binary: BinaryRef {
                path: path.into(),
                build_id,
                sha256: None,
            },
            symbols,
        }
    }

    fn libc() -> (PathBuf, Vec<u8>, ElfInfo) {
        let path = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let info = elf::parse(&bytes, "libc").unwrap();
        (path, bytes, info)
    }

    #[test]
    fn build_id_mismatch_attaches_nothing() {
        let (_, bytes, info) = libc();
        let plan = plan_file(
            &target(
                "/lib/libc.so.6",
                Some("00ff".into()),
                vec![symbol("getpid", None, Some(1))],
            ),
            &bytes,
            "libc",
        );
        match plan {
            FilePlan::Mismatch {
                found_build_id,
                detail,
            } => {
                assert_eq!(found_build_id, info.build_id);
                assert!(detail.contains("the map expects 00ff"), "{detail}");
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn sha256_identity_is_checked_when_the_map_has_no_build_id() {
        let (_, bytes, _) = libc();
        let mut file = target("/lib/libc.so.6", None, vec![symbol("getpid", None, None)]);
        file.binary.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
        assert!(matches!(
            plan_file(&file, &bytes, "libc"),
            FilePlan::Probe { .. }
        ));
        file.binary.sha256 = Some("0".repeat(64));
        assert!(matches!(
            plan_file(&file, &bytes, "libc"),
            FilePlan::Mismatch { .. }
        ));
    }

    #[test]
    fn versioned_symbols_resolve_to_the_requested_or_default_version_and_ifuncs_are_flagged() {
        let (_, bytes, info) = libc();
        let default = info
            .exports
            .iter()
            .find(|f| f.name == "realpath" && f.default_version)
            .unwrap();
        let old = info
            .exports
            .iter()
            .find(|f| f.name == "realpath" && !f.default_version)
            .unwrap();
        assert_ne!(
            default.offset, old.offset,
            "realpath has two versions in glibc"
        );
        let file = target(
            "/lib/libc.so.6",
            info.build_id.clone(),
            vec![
                symbol("realpath", None, None),
                symbol("realpath", old.version.as_deref(), None),
                symbol("memcpy", None, None),
                symbol("no_such_function_lg", None, Some(0x1234)),
            ],
        );
        let FilePlan::Probe {
            points, failures, ..
        } = plan_file(&file, &bytes, "libc")
        else {
            panic!("probe plan")
        };
        let at = |index: usize| {
            points
                .iter()
                .find(|p| p.symbols.contains(&index))
                .map(|p| p.offset)
        };
        assert_eq!(at(0), default.offset);
        assert_eq!(at(1), old.offset);
        assert_eq!(
            failures
                .iter()
                .find(|f| f.symbol == 2)
                .map(|f| f.detail.as_str()),
            Some(DETAIL_IFUNC)
        );
        // Not in the file, but the build-id matched: the map's recorded offset is used.
        assert_eq!(at(3), Some(0x1234));
    }

    #[test]
    fn stripped_file_uses_the_map_offset_only_when_the_identity_matched() {
        let bytes = std::fs::read(fixture("hello-stripped")).unwrap();
        let info = elf::parse(&bytes, "hello-stripped").unwrap();
        assert!(!info.has_symtab);
        let file = target(
            "/hello",
            info.build_id.clone(),
            vec![symbol("main", None, Some(0x1139))],
        );
        let FilePlan::Probe {
            points, failures, ..
        } = plan_file(&file, &bytes, "hello")
        else {
            panic!()
        };
        assert_eq!(
            points,
            [PlannedPoint {
                offset: 0x1139,
                symbols: vec![0]
            }]
        );
        assert!(failures.is_empty());

        // Without any identity in the map, the offset cannot be trusted: unresolvable, never guessed.
        let file = target("/hello", None, vec![symbol("main", None, Some(0x1139))]);
        let FilePlan::Probe {
            points, failures, ..
        } = plan_file(&file, &bytes, "hello")
        else {
            panic!()
        };
        assert!(points.is_empty());
        assert_eq!(failures[0].status, ProbeStatus::Unresolvable);
        assert!(
            failures[0].detail.contains("stripped"),
            "{}",
            failures[0].detail
        );
    }

    #[test]
    fn symtab_functions_of_an_executable_resolve() {
        let bytes = std::fs::read(fixture("hello")).unwrap();
        let info = elf::parse(&bytes, "hello").unwrap();
        let main = info
            .symtab_functions
            .iter()
            .find(|f| f.name == "main")
            .unwrap();
        let file = target(
            "/hello",
            info.build_id.clone(),
            vec![symbol("main", None, None), symbol("absent_fn", None, None)],
        );
        let FilePlan::Probe {
            points, failures, ..
        } = plan_file(&file, &bytes, "hello")
        else {
            panic!()
        };
        assert_eq!(
            points,
            [PlannedPoint {
                offset: main.offset.unwrap(),
                symbols: vec![0]
            }]
        );
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].detail.contains("absent_fn is not defined"),
            "{}",
            failures[0].detail
        );
    }

    #[test]
    fn functions_starting_with_a_lock_prefix_are_left_out_for_the_kernel_would_refuse_them() {
        let path = std::fs::canonicalize("/usr/lib/x86_64-linux-gnu/libcrypto.so.3").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let info = elf::parse(&bytes, "libcrypto").unwrap();
        let offset = |name: &str| {
            info.exports
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.offset)
                .unwrap()
        };
        // objdump: OSSL_DECODER_up_ref starts with `f0 83 47 28 01  lock addl $0x1,0x28(%rdi)`.
        assert_eq!(bytes[offset("OSSL_DECODER_up_ref") as usize], 0xf0);
        let file = target(
            "/lib/libcrypto.so.3",
            info.build_id.clone(),
            vec![
                symbol("OSSL_DECODER_up_ref", None, None),
                symbol("SHA256", None, None),
            ],
        );
        let FilePlan::Probe {
            points, failures, ..
        } = plan_file(&file, &bytes, "libcrypto")
        else {
            panic!()
        };
        assert_eq!(
            points,
            [PlannedPoint {
                offset: offset("SHA256"),
                symbols: vec![1]
            }]
        );
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0].symbol, failures[0].status),
            (0, ProbeStatus::AttachFailed)
        );
        assert!(
            !x86_refuses(&info, &[0xf3, 0x0f, 0x1e, 0xfa], 0),
            "endbr64 (f3 prefix) is fine"
        );
        assert!(
            x86_refuses(&info, &[0x66, 0xf0, 0x0f, 0xb1], 0),
            "lock after an operand-size prefix"
        );
    }

    #[test]
    fn a_file_that_is_not_elf_is_a_mismatch() {
        let plan = plan_file(
            &target("/x", Some("aa".into()), vec![]),
            b"#!/bin/sh\n",
            "/x",
        );
        assert!(
            matches!(
                plan,
                FilePlan::Mismatch {
                    found_build_id: None,
                    ..
                }
            ),
            "{plan:?}"
        );
    }
}
