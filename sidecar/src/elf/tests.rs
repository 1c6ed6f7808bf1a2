// SPDX-License-Identifier: Apache-2.0
//! ELF parsing on real files of this machine and on the fixtures of tests/fixtures/elf (built by
//! tests/fixtures/elf/build.sh). Expected values come from binutils' readelf, an independent parser.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/elf")
        .join(name)
}

/// A system file resolved through symlinks (libc.so.6 is a symlink on some distributions).
fn system(path: &str) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path} is needed by this test: {e}"))
}

fn readelf(args: &[&str], path: &Path) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(path)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf {args:?} {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn readelf_build_id(path: &Path) -> String {
    let notes = readelf(&["-n"], path);
    let line = notes
        .lines()
        .find(|l| l.contains("Build ID:"))
        .expect("a Build ID note");
    line.rsplit(' ').next().unwrap_or_default().to_owned()
}

/// `readelf --dyn-syms -W` value of `name@version` (`@@` default or `@` hidden, as readelf prints).
fn readelf_symbol_value(path: &Path, versioned_name: &str) -> u64 {
    let syms = readelf(&["--dyn-syms", "-W"], path);
    let line = syms
        .lines()
        .find(|l| l.split_whitespace().nth(7) == Some(versioned_name))
        .unwrap_or_else(|| {
            panic!(
                "{versioned_name} in readelf --dyn-syms of {}",
                path.display()
            )
        });
    let value = line.split_whitespace().nth(1).expect("value column");
    u64::from_str_radix(value, 16).expect("hex value")
}

/// File offset by readelf's program headers: the LOAD whose [vaddr, vaddr+filesz) holds `vaddr`.
fn readelf_offset(path: &Path, vaddr: u64) -> u64 {
    let headers = readelf(&["-lW"], path);
    for line in headers
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("LOAD"))
    {
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(4)
            .map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).expect("hex"))
            .collect();
        let (offset, seg_vaddr, filesz) = (f[0], f[1], f[3]);
        if vaddr >= seg_vaddr && vaddr < seg_vaddr + filesz {
            return vaddr - seg_vaddr + offset;
        }
    }
    panic!("{vaddr:#x} is in no LOAD segment of {}", path.display())
}

fn export<'a>(info: &'a ElfInfo, name: &str, version: &str) -> &'a DefinedFunction {
    info.exports
        .iter()
        .find(|f| f.name == name && f.version.as_deref() == Some(version))
        .unwrap_or_else(|| panic!("export {name}@{version}"))
}

#[test]
fn curl_linkage_and_versioned_imports() {
    let path = system("/usr/bin/curl");
    let info = read_file(&path).unwrap();
    assert_eq!(
        info.abi(),
        ElfAbi {
            class: ElfClass::Elf64,
            little_endian: true,
            machine: 62
        }
    );
    assert_eq!(abi_of_file(&path), Some(info.abi()));
    assert_eq!(
        info.kind,
        ElfKind::SharedObject,
        "Debian builds curl as PIE"
    );
    assert_eq!(
        info.interpreter.as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    assert_eq!(
        info.build_id.as_deref(),
        Some(readelf_build_id(&path).as_str())
    );
    assert!(
        info.needed.iter().any(|n| n == "libcurl.so.4"),
        "{:?}",
        info.needed
    );
    assert!(!info.is_static && !info.is_go);
    let perform = info
        .imports
        .iter()
        .find(|i| i.name == "curl_easy_perform")
        .expect("curl imports curl_easy_perform");
    assert_eq!(perform.version.as_deref(), Some("CURL_OPENSSL_4"));
    assert_eq!(perform.version_file.as_deref(), Some("libcurl.so.4"));
    // Every import is undefined here, so none of them is also an export.
    assert!(info.exports.iter().all(|e| e.name != "curl_easy_perform"));
}

#[test]
fn libc_ifuncs_and_versioned_duplicates() {
    let path = system("/lib/x86_64-linux-gnu/libc.so.6");
    let info = read_file(&path).unwrap();
    assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
    let old = export(&info, "memcpy", "GLIBC_2.2.5");
    let new = export(&info, "memcpy", "GLIBC_2.14");
    assert!(
        !old.default_version,
        "memcpy@GLIBC_2.2.5 is the hidden compat version"
    );
    assert!(new.default_version, "memcpy@@GLIBC_2.14 is the default");
    // readelf: `memcpy@@GLIBC_2.14` is an IFUNC, the compat `memcpy@GLIBC_2.2.5` a plain FUNC.
    assert!(new.ifunc, "memcpy@@GLIBC_2.14 is an IFUNC in glibc");
    assert!(!old.ifunc, "memcpy@GLIBC_2.2.5 is a plain function");
    assert_ne!(old.value, new.value, "two functions at two addresses");
    assert_eq!(new.value, readelf_symbol_value(&path, "memcpy@@GLIBC_2.14"));
    assert_eq!(old.value, readelf_symbol_value(&path, "memcpy@GLIBC_2.2.5"));

    let connect = info
        .exports
        .iter()
        .find(|f| f.name == "connect")
        .expect("libc exports connect");
    assert!(!connect.ifunc);
    let readelf_value = readelf_symbol_value(
        &path,
        &format!("connect@@{}", connect.version.as_deref().unwrap()),
    );
    assert_eq!(connect.value, readelf_value);
    assert_eq!(connect.offset, Some(readelf_offset(&path, readelf_value)));
    assert!(
        info.exports.iter().filter(|f| f.ifunc).count() > 20,
        "glibc has dozens of IFUNCs"
    );
}

#[test]
fn libcrypto_exports_with_file_offsets() {
    let path = system("/lib/x86_64-linux-gnu/libcrypto.so.3");
    let info = read_file(&path).unwrap();
    assert_eq!(info.soname.as_deref(), Some("libcrypto.so.3"));
    assert!(info.needed.iter().any(|n| n == "libc.so.6"));
    assert_eq!(
        info.build_id.as_deref(),
        Some(readelf_build_id(&path).as_str())
    );
    assert!(
        info.exports.len() > 3000,
        "libcrypto exports thousands of functions"
    );
    for name in ["EVP_EncryptInit_ex", "EVP_DigestFinal_ex", "RAND_bytes"] {
        let f = export(&info, name, "OPENSSL_3.0.0");
        assert!(f.default_version);
        assert_eq!(
            f.value,
            readelf_symbol_value(&path, &format!("{name}@@OPENSSL_3.0.0"))
        );
        assert_eq!(f.offset, Some(readelf_offset(&path, f.value)), "{name}");
        assert!(f.size > 0);
    }
    let import = info
        .imports
        .iter()
        .find(|i| i.name == "memcpy")
        .expect("libcrypto imports memcpy");
    assert_eq!(import.version_file.as_deref(), Some("libc.so.6"));
}

#[test]
fn fixture_with_symtab_and_its_stripped_copy() {
    let full = read_file(&fixture("hello")).unwrap();
    let stripped = read_file(&fixture("hello-stripped")).unwrap();
    assert!(full.has_symtab);
    let own = full
        .symtab_functions
        .iter()
        .find(|f| f.name == "hello_checksum")
        .expect("hello_checksum in .symtab");
    assert_eq!(own.binding, Binding::Global);
    assert_eq!(own.offset, full.file_offset(own.value));
    assert_eq!(full.defined_functions().len(), full.symtab_functions.len());

    assert!(!stripped.has_symtab, "strip removes .symtab");
    assert!(stripped.symtab_functions.is_empty());
    assert_eq!(
        stripped.defined_functions(),
        &stripped.exports[..],
        "falls back to .dynsym"
    );
    assert_eq!(
        stripped.build_id, full.build_id,
        "strip keeps the build-id note"
    );
    assert_eq!(stripped.imports, full.imports, ".dynsym survives strip");
    let socket = stripped
        .imports
        .iter()
        .find(|i| i.name == "socket")
        .expect("imports socket");
    assert_eq!(socket.version.as_deref(), Some("GLIBC_2.2.5"));
    assert_eq!(stripped.needed, vec!["libc.so.6".to_owned()]);
}

#[test]
fn static_binaries() {
    let info = read_file(&fixture("hello-static")).unwrap();
    assert!(info.is_static);
    assert!(info.needed.is_empty() && info.interpreter.is_none());
    assert!(
        info.symtab_functions
            .iter()
            .any(|f| f.name == "hello_open_socket")
    );
    // glibc's own functions are linked in, IFUNCs included.
    assert!(info.symtab_functions.iter().any(|f| f.name == "socket"));
    assert!(info.symtab_functions.iter().any(|f| f.ifunc));

    let ldconfig = read_file(&system("/usr/sbin/ldconfig")).unwrap();
    assert_eq!(ldconfig.kind, ElfKind::SharedObject);
    assert!(
        ldconfig.is_static,
        "ldconfig is static-pie: ET_DYN without interpreter or DT_NEEDED"
    );

    let libc = read_file(&system("/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
    assert!(
        !libc.is_static,
        "a shared library is not a static executable"
    );
}

#[test]
fn go_binary_when_present() {
    let path = Path::new("/usr/local/bin/docker");
    if !path.exists() {
        println!(
            "SKIP go_binary_when_present: no Go binary at {}",
            path.display()
        );
        return;
    }
    let info = read_file(path).unwrap();
    assert!(info.is_go && info.is_static);
    assert!(
        info.symtab_functions
            .iter()
            .any(|f| f.name.starts_with("crypto/tls.(*Conn)."))
    );
}

#[test]
fn go_pclntab_agrees_with_symtab() {
    let path = Path::new("/usr/local/bin/docker");
    if !path.exists() {
        println!(
            "SKIP go_pclntab_agrees_with_symtab: no Go binary with .symtab at {}",
            path.display()
        );
        return;
    }
    let bytes = std::fs::read(path).unwrap();
    let info = parse(&bytes, "docker").unwrap();
    assert!(
        info.go_functions.is_empty(),
        "not needed when .symtab is there"
    );
    // Strip .symtab in memory by renaming its type: the parser then falls back to .gopclntab.
    let stripped = strip_symtab(&bytes);
    let go = parse(&stripped, "docker-stripped").unwrap();
    assert!(
        !go.has_symtab && go.go_functions.len() > 10_000,
        "{}",
        go.go_functions.len()
    );
    assert_eq!(go.defined_functions(), &go.go_functions[..]);
    for name in [
        "crypto/tls.(*Conn).Handshake",
        "main.main",
        "net/http.(*Client).Do",
    ] {
        let from_symtab = info
            .symtab_functions
            .iter()
            .find(|f| f.name == name)
            .unwrap();
        let from_pclntab = go.go_functions.iter().find(|f| f.name == name).unwrap();
        assert_eq!(from_pclntab.value, from_symtab.value, "{name}");
        assert_eq!(from_pclntab.offset, from_symtab.offset, "{name}");
    }
}

#[test]
fn stripped_go_binary_when_present() {
    let path = Path::new("/usr/local/bin/terraform");
    if !path.exists() {
        println!(
            "SKIP stripped_go_binary_when_present: no stripped Go binary at {}",
            path.display()
        );
        return;
    }
    let info = read_file(path).unwrap();
    assert!(info.is_go && !info.has_symtab);
    assert!(
        info.go_functions
            .iter()
            .any(|f| f.name == "crypto/tls.(*Conn).Handshake" && f.offset.is_some())
    );
}

/// A copy of an ELF64 little-endian file whose SHT_SYMTAB section is turned into SHT_PROGBITS.
fn strip_symtab(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    for i in 0..shnum {
        let sh_type = shoff + i * shentsize + 4;
        if bytes[sh_type..sh_type + 4] == object::elf::SHT_SYMTAB.to_le_bytes() {
            out[sh_type..sh_type + 4].copy_from_slice(&object::elf::SHT_PROGBITS.to_le_bytes());
        }
    }
    out
}

#[test]
fn errors_name_the_file() {
    let err = read_file(&fixture("not-elf")).unwrap_err();
    assert!(matches!(err, ElfError::NotElf { .. }), "{err}");
    assert!(err.to_string().contains("not-elf"), "{err}");

    let err = read_file(&fixture("hello-truncated")).unwrap_err();
    assert!(
        matches!(err, ElfError::Truncated { len: 5000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("hello-truncated"), "{err}");

    let err = read_file(&fixture("does-not-exist")).unwrap_err();
    assert!(matches!(err, ElfError::Read { .. }), "{err}");

    let mut bytes = std::fs::read(fixture("hello")).unwrap();
    bytes[4] = 3;
    let err = parse(&bytes, "odd-class").unwrap_err();
    assert!(
        matches!(err, ElfError::UnsupportedClass { class: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("odd-class"));
}

#[test]
fn every_truncation_of_a_fixture_is_an_error() {
    for name in ["hello", "hello-stripped"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert!(parse(&bytes, name).is_ok());
        for len in 0..bytes.len() {
            let result = parse(&bytes[..len], name);
            assert!(
                result.is_err(),
                "{name} cut at {len} of {} bytes parsed",
                bytes.len()
            );
        }
    }
}

#[test]
fn truncations_of_libcrypto_are_errors() {
    let bytes = std::fs::read(system("/lib/x86_64-linux-gnu/libcrypto.so.3")).unwrap();
    let step = bytes.len() / 97;
    for len in (0..bytes.len())
        .step_by(step)
        .chain([bytes.len() - 1, 63, 64, 65])
    {
        let err = parse(&bytes[..len], "libcrypto.so.3").unwrap_err();
        assert!(err.to_string().contains("libcrypto.so.3"), "{err}");
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let original = std::fs::read(fixture("hello")).unwrap();
    // A fixed linear congruential sequence: reproducible corruption without a rand dependency.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut errors = 0;
    for _ in 0..3000 {
        let mut bytes = original.clone();
        for _ in 0..4 {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        errors += usize::from(parse(&bytes, "hello").is_err());
    }
    assert!(
        errors > 0,
        "some corruptions hit the headers and must be reported"
    );
}

#[test]
fn file_offset_uses_the_file_backed_part_of_a_load() {
    let loads = [
        LoadSegment {
            vaddr: 0,
            offset: 0,
            filesz: 0x1000,
        },
        LoadSegment {
            vaddr: 0x3000,
            offset: 0x2000,
            filesz: 0x100,
        },
    ];
    assert_eq!(file_offset(&loads, 0x10), Some(0x10));
    assert_eq!(file_offset(&loads, 0x3010), Some(0x2010));
    assert_eq!(
        file_offset(&loads, 0x3100),
        None,
        "past p_filesz (bss) has no file offset"
    );
    assert_eq!(file_offset(&loads, 0x2000), None);
}
