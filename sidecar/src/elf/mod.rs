// SPDX-License-Identifier: Apache-2.0
//! ELF analysis: what one file links against and which functions it imports and defines.
//!
//! Parsing goes through the `object` crate's low-level ELF API, which bounds-checks every read, so a
//! malformed or truncated file gives an [`ElfError`], never a panic. On top of that, [`parse`]
//! checks that every section and segment the headers describe lies inside the file: a file cut short
//! is always an error, even when the part we happen to read is intact (a truncated library must not
//! yield offsets into bytes that do not exist).
//!
//! What is read, and why:
//! - the GNU build-id note (PT_NOTE, else SHT_NOTE): the identity the sidecar checks before probing;
//! - the dynamic section (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH): the input of the loader walk;
//! - `.dynsym` with `.gnu.version`/`.gnu.version_d`/`.gnu.version_r`: imported functions with the
//!   version they require (`SSL_connect@OPENSSL_3.0.0`) and exported functions with the version they
//!   define. Versioned duplicates are kept apart: `memcpy@GLIBC_2.2.5` (hidden, `@`) and
//!   `memcpy@@GLIBC_2.14` (default) are two functions at two addresses;
//! - `.symtab` function symbols when present (stripped files have none, which is not an error), and
//!   for a Go binary without them the function table of `.gopclntab` (module `gopclntab`);
//! - PT_LOAD segments, to turn a symbol's virtual address into the file offset a uprobe attaches to.

mod gopclntab;
mod parse;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};

/// A parsed ELF file: linkage, identity and function symbols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub class: ElfClass,
    pub little_endian: bool,
    /// `e_machine` (`EM_X86_64` = 62, `EM_AARCH64` = 183).
    pub machine: u16,
    pub kind: ElfKind,
    /// Lowercase hex GNU build-id.
    pub build_id: Option<String>,
    /// PT_INTERP: the program interpreter of a dynamically linked executable.
    pub interpreter: Option<String>,
    pub soname: Option<String>,
    /// DT_NEEDED in file order (the order ld.so loads them in).
    pub needed: Vec<String>,
    /// DT_RPATH entries (colon lists split), unexpanded (`$ORIGIN` kept).
    pub rpath: Vec<String>,
    /// DT_RUNPATH entries, unexpanded.
    pub runpath: Vec<String>,
    /// No program interpreter and no DT_NEEDED: nothing is linked at run time.
    pub is_static: bool,
    /// Built by the Go toolchain (`.go.buildinfo`, `.gopclntab` or a Go build-id note).
    pub is_go: bool,
    /// Whether the file has section headers at all (without them there are no symbol tables).
    pub has_sections: bool,
    /// Whether a `.symtab` was present.
    pub has_symtab: bool,
    /// Undefined function symbols of `.dynsym`.
    pub imports: Vec<ImportedFunction>,
    /// Defined, visible FUNC and GNU_IFUNC symbols of `.dynsym`.
    pub exports: Vec<DefinedFunction>,
    /// Defined FUNC and GNU_IFUNC symbols of `.symtab` (empty when stripped).
    pub symtab_functions: Vec<DefinedFunction>,
    /// For a Go binary without `.symtab`: its functions from `.gopclntab` (Go 1.16+ tables).
    pub go_functions: Vec<DefinedFunction>,
    /// PT_LOAD segments, for address to file offset translation.
    pub loads: Vec<LoadSegment>,
}

/// ELF class (`EI_CLASS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// `e_type`, reduced to what linkage analysis distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfKind {
    /// ET_EXEC: a position-dependent executable.
    Executable,
    /// ET_DYN: a shared library or a position-independent executable.
    SharedObject,
    /// ET_REL: an object file (not loadable).
    Relocatable,
    /// ET_CORE or anything else.
    Other(u16),
}

/// A function symbol the file needs from another object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFunction {
    pub name: String,
    /// The version required (`.gnu.version_r` vna_name), e.g. `GLIBC_2.34`.
    pub version: Option<String>,
    /// The library the version is expected from (`.gnu.version_r` vn_file), e.g. `libc.so.6`.
    pub version_file: Option<String>,
    /// STB_WEAK: the program runs (and never calls it) when nothing defines it.
    pub weak: bool,
}

/// A function the file defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinedFunction {
    pub name: String,
    /// The version it is defined with (`.gnu.version_d`), e.g. `GLIBC_2.14`.
    pub version: Option<String>,
    /// `name@@version` (the default that unversioned references bind to) rather than the hidden
    /// `name@version` kept for old binaries. True for unversioned symbols.
    pub default_version: bool,
    pub binding: Binding,
    /// `st_value`: the virtual address (for ET_DYN, relative to the load base).
    pub value: u64,
    pub size: u64,
    /// File offset of the first instruction: the uprobe attach point. `None` when the address is
    /// outside every PT_LOAD file range.
    pub offset: Option<u64>,
    /// STT_GNU_IFUNC: the symbol is a resolver run once at binding; probing it counts bindings, not calls.
    pub ifunc: bool,
}

/// Symbol binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Local,
    Global,
    Weak,
    /// STB_GNU_UNIQUE.
    Unique,
}

/// A PT_LOAD segment's file-backed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
}

/// What identifies an ELF file's ABI: objects of different class, byte order or machine never link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ElfAbi {
    pub class: ElfClass,
    pub little_endian: bool,
    pub machine: u16,
}

/// Parsing an ELF file failed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not an ELF file (no \\x7fELF magic): give an executable or shared library")]
    NotElf { file: String },
    #[error(
        "{file} is truncated: {len} bytes, but its headers describe {needed} bytes (a partial copy or download?)"
    )]
    Truncated { file: String, len: u64, needed: u64 },
    #[error(
        "{file} has an unsupported ELF class {class} (only ELFCLASS32 = 1 and ELFCLASS64 = 2 exist)"
    )]
    UnsupportedClass { file: String, class: u8 },
    #[error(
        "{file} has an unsupported ELF byte order {data} (only 1 = little and 2 = big endian exist)"
    )]
    UnsupportedEndian { file: String, data: u8 },
    #[error("{file} is a malformed ELF file")]
    Malformed {
        file: String,
        #[source]
        source: object::read::Error,
    },
}

pub type Result<T, E = ElfError> = std::result::Result<T, E>;

/// Reads and parses the file at `path`; errors name `path`.
pub fn read_file(path: &Path) -> Result<ElfInfo> {
    let bytes = std::fs::read(path).map_err(|source| ElfError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&bytes, &path.display().to_string())
}

/// Parses an ELF image held in memory; `file` names it in errors.
pub fn parse(data: &[u8], file: &str) -> Result<ElfInfo> {
    let abi = abi_of(data, file)?;
    match abi.class {
        ElfClass::Elf32 => {
            parse::parse::<object::elf::FileHeader32<object::Endianness>>(data, file, abi)
        }
        ElfClass::Elf64 => {
            parse::parse::<object::elf::FileHeader64<object::Endianness>>(data, file, abi)
        }
    }
}

/// The ABI from `e_ident` and `e_machine` (the first 20 bytes), without parsing the rest.
pub fn abi_of(data: &[u8], file: &str) -> Result<ElfAbi> {
    if data.len() < 4 || data[..4] != object::elf::ELFMAG {
        return Err(ElfError::NotElf {
            file: file.to_owned(),
        });
    }
    let Some(&[class, endian, ..]) = data.get(4..) else {
        return Err(ElfError::Truncated {
            file: file.to_owned(),
            len: data.len() as u64,
            needed: 20,
        });
    };
    let class = match class {
        object::elf::ELFCLASS32 => ElfClass::Elf32,
        object::elf::ELFCLASS64 => ElfClass::Elf64,
        other => {
            return Err(ElfError::UnsupportedClass {
                file: file.to_owned(),
                class: other,
            });
        }
    };
    let little_endian = match endian {
        object::elf::ELFDATA2LSB => true,
        object::elf::ELFDATA2MSB => false,
        other => {
            return Err(ElfError::UnsupportedEndian {
                file: file.to_owned(),
                data: other,
            });
        }
    };
    // e_machine sits at offset 18 in both classes.
    let Some(&[m0, m1]) = data.get(18..20) else {
        return Err(ElfError::Truncated {
            file: file.to_owned(),
            len: data.len() as u64,
            needed: 20,
        });
    };
    let machine = if little_endian {
        u16::from_le_bytes([m0, m1])
    } else {
        u16::from_be_bytes([m0, m1])
    };
    Ok(ElfAbi {
        class,
        little_endian,
        machine,
    })
}

/// The ABI of the file at `path`, reading only its first bytes; `None` when it is not a readable ELF
/// file. This is the cheap check the library search uses to skip files of another class or machine,
/// as ld.so does.
pub fn abi_of_file(path: &Path) -> Option<ElfAbi> {
    let mut head = [0u8; 20];
    let mut file = std::fs::File::open(path).ok()?;
    file.read_exact(&mut head).ok()?;
    abi_of(&head, "").ok()
}

impl ElfInfo {
    /// The ABI (class, byte order, machine) of this file.
    pub fn abi(&self) -> ElfAbi {
        ElfAbi {
            class: self.class,
            little_endian: self.little_endian,
            machine: self.machine,
        }
    }

    /// Translates a virtual address to a file offset through the PT_LOAD segment whose file-backed
    /// part contains it. This is how uprobes are placed: the kernel takes an offset into the inode.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        file_offset(&self.loads, vaddr)
    }

    /// Defined functions usable for analysis of the file itself: `.symtab` when present (it also
    /// holds the local functions of a static or Go binary), else a stripped Go binary's
    /// `.gopclntab`, else the exports of `.dynsym`.
    pub fn defined_functions(&self) -> &[DefinedFunction] {
        if !self.symtab_functions.is_empty() {
            &self.symtab_functions
        } else if !self.go_functions.is_empty() {
            &self.go_functions
        } else {
            &self.exports
        }
    }
}

pub(crate) fn file_offset(loads: &[LoadSegment], vaddr: u64) -> Option<u64> {
    loads
        .iter()
        .find(|l| vaddr >= l.vaddr && vaddr - l.vaddr < l.filesz)
        .and_then(|l| l.offset.checked_add(vaddr - l.vaddr))
}

/// `err` and its causes, `: `-separated, for messages that carry an error as text.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
