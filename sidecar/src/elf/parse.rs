// SPDX-License-Identifier: Apache-2.0
//! The class-generic part of ELF parsing, on `object`'s low-level `FileHeader` API.

use object::elf;
use object::read::StringTable;
use object::read::elf::{
    Dyn, FileHeader, ProgramHeader, SectionHeader, SectionTable, Sym, VersionTable,
};
use object::{Endianness, SymbolIndex};

use super::{
    Binding, DefinedFunction, ElfAbi, ElfError, ElfInfo, ElfKind, ImportedFunction, LoadSegment,
    Result,
};

/// Go's build-id note: name "Go", type 4 (cmd/link `ELF_NOTE_GOBUILDID_TAG`).
const NT_GO_BUILD_ID: u32 = 4;

pub(super) fn parse<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
    file: &str,
    abi: ElfAbi,
) -> Result<ElfInfo> {
    let malformed = |source| ElfError::Malformed {
        file: file.to_owned(),
        source,
    };
    let header_size = std::mem::size_of::<Elf>() as u64;
    if (data.len() as u64) < header_size {
        return Err(truncated(file, data, header_size));
    }
    let header = Elf::parse(data).map_err(malformed)?;
    let endian = header.endian().map_err(malformed)?;
    check_header_tables(header, endian, data, file)?;
    let segments = header.program_headers(endian, data).map_err(malformed)?;
    let sections = header.sections(endian, data).map_err(malformed)?;
    check_extents::<Elf>(segments, &sections, endian, data, file)?;

    let kind = match header.e_type(endian) {
        elf::ET_EXEC => ElfKind::Executable,
        elf::ET_DYN => ElfKind::SharedObject,
        elf::ET_REL => ElfKind::Relocatable,
        other => ElfKind::Other(other),
    };
    let loads: Vec<LoadSegment> = segments
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| LoadSegment {
            vaddr: p.p_vaddr(endian).into(),
            offset: p.p_offset(endian).into(),
            filesz: p.p_filesz(endian).into(),
        })
        .collect();
    let mut interpreter = None;
    for segment in segments {
        if let Some(interp) = segment.interpreter(endian, data).map_err(malformed)? {
            interpreter = Some(lossy(interp));
        }
    }
    let notes = read_notes::<Elf>(segments, &sections, endian, data).map_err(malformed)?;
    let dynamic =
        read_dynamic::<Elf>(segments, &sections, &loads, endian, data).map_err(malformed)?;
    let is_go = notes.go
        || [&b".go.buildinfo"[..], b".gopclntab", b".note.go.buildid"]
            .iter()
            .any(|name| sections.section_by_name(endian, name).is_some());
    let is_static = interpreter.is_none()
        && dynamic.needed.is_empty()
        && (kind == ElfKind::Executable || dynamic.pie);
    // 32-bit ARM marks Thumb functions with bit 0 of st_value; the instruction starts one byte lower.
    let code_mask = if abi.machine == elf::EM_ARM {
        !1u64
    } else {
        !0u64
    };
    let symbols = SymbolReader {
        endian,
        data,
        loads: &loads,
        code_mask,
    };
    let (imports, exports) = symbols.dynsym(&sections).map_err(malformed)?;
    let (has_symtab, symtab_functions) = symbols.symtab(&sections).map_err(malformed)?;
    let go_functions = if is_go && symtab_functions.is_empty() {
        go_functions::<Elf>(&sections, endian, data, abi.little_endian, &loads)
            .map_err(malformed)?
    } else {
        Vec::new()
    };

    Ok(ElfInfo {
        class: abi.class,
        little_endian: abi.little_endian,
        machine: abi.machine,
        kind,
        build_id: notes.build_id,
        interpreter,
        soname: dynamic.soname,
        needed: dynamic.needed,
        rpath: dynamic.rpath,
        runpath: dynamic.runpath,
        is_static,
        is_go,
        has_sections: !sections.is_empty(),
        has_symtab,
        imports,
        exports,
        symtab_functions,
        go_functions,
        loads,
    })
}

/// The functions of a Go binary without `.symtab`: from `.gopclntab`, else from a table found in
/// the file by its header (externally linked binaries have no such section).
fn go_functions<'data, Elf: FileHeader<Endian = Endianness>>(
    sections: &SectionTable<'data, Elf, &'data [u8]>,
    endian: Endianness,
    data: &'data [u8],
    little_endian: bool,
    loads: &[LoadSegment],
) -> object::read::Result<Vec<DefinedFunction>> {
    let text = sections
        .section_by_name(endian, b".text")
        .map_or(0, |(_, s)| s.sh_addr(endian).into());
    let found = match sections.section_by_name(endian, b".gopclntab") {
        Some((_, section)) => {
            super::gopclntab::functions(section.data(endian, data)?, text, little_endian, loads)
        }
        None => super::gopclntab::scan(data, text, little_endian, loads),
    };
    Ok(found.unwrap_or_default())
}

fn truncated(file: &str, data: &[u8], needed: u64) -> ElfError {
    ElfError::Truncated {
        file: file.to_owned(),
        len: data.len() as u64,
        needed,
    }
}

/// The program and section header tables must lie inside the file.
fn check_header_tables<Elf: FileHeader<Endian = Endianness>>(
    header: &Elf,
    endian: Endianness,
    data: &[u8],
    file: &str,
) -> Result<()> {
    let table_end = |offset: u64, count: u64, entsize: u64| {
        offset.saturating_add(count.saturating_mul(entsize))
    };
    let ph_end = table_end(
        header.e_phoff(endian).into(),
        header.e_phnum(endian).into(),
        header.e_phentsize(endian).into(),
    );
    let shoff: u64 = header.e_shoff(endian).into();
    // With e_shnum == 0 the real count is in section 0 (ELF gABI, extended numbering): at least
    // that entry must be present.
    let shnum = u64::from(header.e_shnum(endian)).max(1);
    let sh_end = if shoff == 0 {
        0
    } else {
        table_end(shoff, shnum, header.e_shentsize(endian).into())
    };
    let needed = ph_end.max(sh_end);
    if needed > data.len() as u64 {
        return Err(truncated(file, data, needed));
    }
    Ok(())
}

/// Every segment's and (non-NOBITS) section's file range must lie inside the file: a truncated copy
/// is always an error, never a partly filled answer.
fn check_extents<'data, Elf: FileHeader<Endian = Endianness>>(
    segments: &[Elf::ProgramHeader],
    sections: &SectionTable<'data, Elf, &'data [u8]>,
    endian: Endianness,
    data: &'data [u8],
    file: &str,
) -> Result<()> {
    let segment_end = segments.iter().map(|p| {
        let (offset, size) = p.file_range(endian);
        offset.saturating_add(size)
    });
    let section_end = sections
        .iter()
        .filter_map(|s| s.file_range(endian))
        .map(|(offset, size)| offset.saturating_add(size));
    let needed = segment_end.chain(section_end).max().unwrap_or(0);
    if needed > data.len() as u64 {
        return Err(truncated(file, data, needed));
    }
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[derive(Default)]
struct Notes {
    build_id: Option<String>,
    go: bool,
}

/// Build-id and Go notes, from PT_NOTE segments (present even without section headers), else from
/// SHT_NOTE sections.
fn read_notes<'data, Elf: FileHeader<Endian = Endianness>>(
    segments: &'data [Elf::ProgramHeader],
    sections: &SectionTable<'data, Elf, &'data [u8]>,
    endian: Endianness,
    data: &'data [u8],
) -> object::read::Result<Notes> {
    let mut notes = Notes::default();
    for segment in segments {
        if let Some(iter) = segment.notes(endian, data)? {
            scan_notes(iter, endian, &mut notes)?;
        }
    }
    if notes.build_id.is_none() {
        for section in sections.iter() {
            if let Some(iter) = section.notes(endian, data)? {
                scan_notes(iter, endian, &mut notes)?;
            }
        }
    }
    Ok(notes)
}

fn scan_notes<Elf: FileHeader<Endian = Endianness>>(
    mut iter: object::read::elf::NoteIterator<'_, Elf>,
    endian: Endianness,
    notes: &mut Notes,
) -> object::read::Result<()> {
    while let Some(note) = iter.next()? {
        match (note.name(), note.n_type(endian)) {
            (b"GNU", elf::NT_GNU_BUILD_ID)
                if notes.build_id.is_none() && !note.desc().is_empty() =>
            {
                notes.build_id = Some(hex::encode(note.desc()));
            }
            (b"Go", NT_GO_BUILD_ID) => notes.go = true,
            _ => {}
        }
    }
    Ok(())
}

#[derive(Default)]
struct Dynamic {
    soname: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    pie: bool,
}

/// The dynamic section: from SHT_DYNAMIC (its sh_link names the string table), or, for a file
/// without section headers, from PT_DYNAMIC with DT_STRTAB/DT_STRSZ translated through PT_LOAD.
fn read_dynamic<'data, Elf: FileHeader<Endian = Endianness>>(
    segments: &'data [Elf::ProgramHeader],
    sections: &SectionTable<'data, Elf, &'data [u8]>,
    loads: &[LoadSegment],
    endian: Endianness,
    data: &'data [u8],
) -> object::read::Result<Dynamic> {
    let (entries, strings) = if let Some((entries, link)) = sections.dynamic(endian, data)? {
        (entries, sections.strings(endian, data, link)?)
    } else {
        let mut found = None;
        for segment in segments {
            if let Some(entries) = segment.dynamic(endian, data)? {
                found = Some(entries);
            }
        }
        let Some(entries) = found else {
            return Ok(Dynamic::default());
        };
        (
            entries,
            segment_strings::<Elf>(entries, loads, endian, data),
        )
    };
    let mut dynamic = Dynamic::default();
    for entry in entries {
        let Some(tag) = entry.tag32(endian) else {
            continue;
        };
        let string = || entry.string(endian, strings).map(lossy);
        match tag {
            elf::DT_NULL => break,
            elf::DT_NEEDED => dynamic.needed.push(string()?),
            elf::DT_SONAME => dynamic.soname = Some(string()?),
            elf::DT_RPATH => dynamic.rpath.extend(split_path_list(&string()?)),
            elf::DT_RUNPATH => dynamic.runpath.extend(split_path_list(&string()?)),
            elf::DT_FLAGS_1 => {
                dynamic.pie = entry.val32(endian).is_some_and(|v| v & elf::DF_1_PIE != 0)
            }
            _ => {}
        }
    }
    Ok(dynamic)
}

fn segment_strings<'data, Elf: FileHeader<Endian = Endianness>>(
    entries: &[Elf::Dyn],
    loads: &[LoadSegment],
    endian: Endianness,
    data: &'data [u8],
) -> StringTable<'data> {
    let value = |tag: u32| {
        entries
            .iter()
            .find(|d| d.tag32(endian) == Some(tag))
            .map(|d| -> u64 { d.d_val(endian).into() })
    };
    match (
        value(elf::DT_STRTAB).and_then(|a| super::file_offset(loads, a)),
        value(elf::DT_STRSZ),
    ) {
        (Some(start), Some(size)) => StringTable::new(data, start, start.saturating_add(size)),
        _ => StringTable::default(),
    }
}

fn split_path_list(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(':').filter(|s| !s.is_empty()).map(str::to_owned)
}

struct SymbolReader<'a> {
    endian: Endianness,
    data: &'a [u8],
    loads: &'a [LoadSegment],
    code_mask: u64,
}

fn is_function(st_type: u8) -> bool {
    st_type == elf::STT_FUNC || st_type == elf::STT_GNU_IFUNC
}

fn binding(st_bind: u8) -> Binding {
    match st_bind {
        elf::STB_LOCAL => Binding::Local,
        elf::STB_WEAK => Binding::Weak,
        elf::STB_GNU_UNIQUE => Binding::Unique,
        _ => Binding::Global,
    }
}

impl<'a> SymbolReader<'a> {
    fn defined<S: Sym<Endian = Endianness>>(
        &self,
        sym: &S,
        name: String,
        version: Option<String>,
        default_version: bool,
    ) -> DefinedFunction {
        let value: u64 = sym.st_value(self.endian).into();
        DefinedFunction {
            name,
            version,
            default_version,
            binding: binding(sym.st_bind()),
            value,
            size: sym.st_size(self.endian).into(),
            offset: super::file_offset(self.loads, value & self.code_mask),
            ifunc: sym.st_type() == elf::STT_GNU_IFUNC,
        }
    }

    /// Imports and exports of `.dynsym`, with symbol versions.
    fn dynsym<Elf: FileHeader<Endian = Endianness>>(
        &self,
        sections: &SectionTable<'a, Elf, &'a [u8]>,
    ) -> object::read::Result<(Vec<ImportedFunction>, Vec<DefinedFunction>)> {
        let (endian, data) = (self.endian, self.data);
        let table = sections.symbols(endian, data, elf::SHT_DYNSYM)?;
        let versions: Option<VersionTable<'_, Elf>> = sections.versions(endian, data)?;
        let mut imports = Vec::new();
        let mut exports = Vec::new();
        for (index, sym) in table.enumerate() {
            if index == SymbolIndex(0) || !is_function(sym.st_type()) {
                continue;
            }
            let name = table.symbol_name(endian, sym)?;
            if name.is_empty() {
                continue;
            }
            let (version_index, version) = match &versions {
                Some(v) => {
                    let vi = v.version_index(endian, index);
                    (Some(vi), v.version(vi)?)
                }
                None => (None, None),
            };
            if sym.is_undefined(endian) {
                imports.push(ImportedFunction {
                    name: lossy(name),
                    version: version.map(|v| lossy(v.name())),
                    version_file: version.and_then(|v| v.file()).map(lossy),
                    weak: sym.st_bind() == elf::STB_WEAK,
                });
                continue;
            }
            // Local and hidden symbols, and those a version script made local (index 0), are not
            // visible to other objects.
            let visible = sym.st_bind() != elf::STB_LOCAL
                && matches!(sym.st_visibility(), elf::STV_DEFAULT | elf::STV_PROTECTED)
                && !version_index.is_some_and(|vi| vi.is_local());
            if visible && sym.st_shndx(endian) != elf::SHN_ABS {
                let default_version = !version_index.is_some_and(|vi| vi.is_hidden());
                exports.push(self.defined(
                    sym,
                    lossy(name),
                    version.map(|v| lossy(v.name())),
                    default_version,
                ));
            }
        }
        Ok((imports, exports))
    }

    /// Defined function symbols of `.symtab`, all bindings (a static or Go binary's own functions
    /// are often local). Returns whether the table exists.
    fn symtab<Elf: FileHeader<Endian = Endianness>>(
        &self,
        sections: &SectionTable<'a, Elf, &'a [u8]>,
    ) -> object::read::Result<(bool, Vec<DefinedFunction>)> {
        let (endian, data) = (self.endian, self.data);
        let table = sections.symbols(endian, data, elf::SHT_SYMTAB)?;
        let mut functions = Vec::new();
        for sym in table.iter() {
            if !is_function(sym.st_type())
                || sym.is_undefined(endian)
                || sym.st_shndx(endian) == elf::SHN_ABS
            {
                continue;
            }
            let value: u64 = sym.st_value(endian).into();
            let name = table.symbol_name(endian, sym)?;
            if value == 0 || name.is_empty() {
                continue;
            }
            functions.push(self.defined(sym, lossy(name), None, true));
        }
        Ok((!table.is_empty(), functions))
    }
}
