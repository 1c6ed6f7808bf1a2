// SPDX-License-Identifier: Apache-2.0
//! Compiles `src/bpf/linkguard.bpf.c` into `$OUT_DIR/linkguard.bpf.o` with clang (the BPF side is C
//! because aya-ebpf needs a bpf-linker built against rustc's own LLVM, which is fragile).
//!
//! - `CLANG` overrides the compiler; otherwise `clang-19`, then `clang`, is used.
//! - `LINKGUARD_BPF_STUB=1` writes an empty object instead (for `cargo check`/docs on a machine without
//!   clang, the way aya's integration tests stub their BPF objects); `Probes::load` then fails with
//!   `BpfError::StubObject` instead of loading garbage.

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const SOURCE: &str = "src/bpf/linkguard.bpf.c";
const HEADERS: &[&str] = &["include/linkguard.h"];
const OBJECT: &str = "linkguard.bpf.o";
const CLANG_CANDIDATES: &[&str] = &["clang-19", "clang"];
const MISSING_CLANG: &str = "clang not found: apt-get install clang-19 libbpf-dev (or set CLANG)";

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // cargo shows a build script's stderr when it fails; one line per problem keeps it readable.
            eprintln!("error: linkguard-bpf: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<(), String> {
    println!("cargo:rerun-if-changed={SOURCE}");
    for header in HEADERS {
        println!("cargo:rerun-if-changed={header}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=LINKGUARD_BPF_STUB");

    let out_dir =
        PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set (run through cargo)")?);
    let object = out_dir.join(OBJECT);

    if env::var_os("LINKGUARD_BPF_STUB").is_some_and(|v| v == "1") {
        println!(
            "cargo:warning=LINKGUARD_BPF_STUB=1: the BPF object is a stub, Probes::load will fail"
        );
        return fs::write(&object, [])
            .map_err(|e| format!("cannot write {}: {e}", object.display()));
    }

    let clang = find_clang()?;
    let (target_arch_define, multiarch) = arch_flags()?;
    let endian =
        env::var("CARGO_CFG_TARGET_ENDIAN").map_err(|_| "CARGO_CFG_TARGET_ENDIAN is not set")?;
    let bpf_target = if endian == "big" { "bpfeb" } else { "bpfel" };

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let mut cmd = Command::new(&clang);
    cmd.args(["-target", bpf_target])
        // v3 for the 32-bit jumps and the atomic fetch/cmpxchg instructions (kernel >= 5.12).
        .arg("-mcpu=v3")
        // -g: aya reads BTF-defined maps (`.maps`) and .rodata globals from the object's BTF.
        .args(["-O2", "-g", "-Wall", "-Werror"])
        .arg(&target_arch_define)
        .arg("-I")
        .arg(manifest_dir.join("include"))
        // <linux/types.h> includes <asm/types.h>, which Debian keeps under the multiarch directory.
        .arg("-I")
        .arg(Path::new("/usr/include").join(multiarch))
        .arg("-c")
        .arg(manifest_dir.join(SOURCE))
        .arg("-o")
        .arg(&object);

    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", clang.to_string_lossy()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("bpf/bpf_helpers.h") && stderr.contains("not found") {
            "\nhint: libbpf headers are missing: apt-get install libbpf-dev"
        } else if stderr.contains("asm/types.h") && stderr.contains("not found") {
            "\nhint: kernel uapi headers are missing: apt-get install linux-libc-dev"
        } else {
            ""
        };
        return Err(format!(
            "{cmd:?} failed ({}):\n{stderr}{hint}",
            output.status
        ));
    }
    Ok(())
}

/// `$CLANG`, or the first of `clang-19`, `clang` that runs.
fn find_clang() -> Result<OsString, String> {
    if let Some(clang) = env::var_os("CLANG") {
        return match Command::new(&clang).arg("--version").output() {
            Ok(out) if out.status.success() => Ok(clang),
            Ok(out) => Err(format!(
                "CLANG={} --version failed ({})",
                clang.to_string_lossy(),
                out.status
            )),
            Err(e) => Err(format!(
                "CLANG={} cannot be run: {e}; {MISSING_CLANG}",
                clang.to_string_lossy()
            )),
        };
    }
    CLANG_CANDIDATES
        .iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(OsString::from)
        .ok_or_else(|| MISSING_CLANG.to_string())
}

/// The `__TARGET_ARCH_*` define libbpf's bpf_tracing.h expects and the Debian multiarch include directory.
fn arch_flags() -> Result<(String, &'static str), String> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").map_err(|_| "CARGO_CFG_TARGET_ARCH is not set")?;
    let (define, multiarch) = match arch.as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        "riscv64" => ("riscv", "riscv64-linux-gnu"),
        "s390x" => ("s390", "s390x-linux-gnu"),
        "powerpc64" => ("powerpc", "powerpc64le-linux-gnu"),
        other => {
            return Err(format!(
                "unsupported target architecture {other} for the BPF object"
            ));
        }
    };
    Ok((format!("-D__TARGET_ARCH_{define}"), multiarch))
}
