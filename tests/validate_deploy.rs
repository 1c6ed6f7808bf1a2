// SPDX-License-Identifier: Apache-2.0
//! Runs ci/validate-deploy (the Python driver of the schema validators that ci/setup installs) for the
//! deployment tests. Shared by tests/deploy.rs and tests/inject.rs.
#![allow(
    dead_code,
    reason = "each test crate that includes this module uses a part of it"
)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use linkguard_integration_tests::{interop_required, linkguard_bin, workspace_root};

/// The installed validators.
pub struct Validator {
    python: PathBuf,
}

/// The Python of the venv ci/setup makes: `$LINKGUARD_PYTHON`, else `<workspace>/.venv/bin/python3`.
/// `None` (with a SKIP line) when it is missing and CI does not require it.
#[allow(
    clippy::panic,
    reason = "test helper: missing validators under CI fail the test"
)]
pub fn validator(test: &str) -> Option<Validator> {
    let python = std::env::var_os("LINKGUARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python3"));
    if python.is_file() {
        return Some(Validator { python });
    }
    let reason = format!("{} is missing: run ci/setup", python.display());
    if interop_required() {
        panic!("{test}: LINKGUARD_REQUIRE_INTEROP=1 but {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    None
}

impl Validator {
    /// `ci/validate-deploy ARGS --linkguard <bin>`, from the workspace root. `None` (SKIP) when a
    /// validator is not installed (exit status 2) and CI does not require it.
    #[allow(clippy::panic, clippy::expect_used, reason = "test helper")]
    pub fn run<S: AsRef<OsStr>>(&self, test: &str, args: &[S]) -> Option<Output> {
        let out = Command::new(&self.python)
            .arg(workspace_root().join("ci/validate-deploy"))
            .args(args)
            .arg("--linkguard")
            .arg(linkguard_bin())
            .current_dir(workspace_root())
            .output()
            .expect("run ci/validate-deploy");
        if out.status.code() == Some(2) {
            let reason = format!(
                "ci/validate-deploy could not run its validators: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if interop_required() {
                panic!("{test}: LINKGUARD_REQUIRE_INTEROP=1 but {reason}");
            }
            eprintln!("SKIP {test}: {reason}");
            return None;
        }
        Some(out)
    }
}

/// Asserts a validation passed, showing what the validator said when not.
#[allow(clippy::panic, reason = "test helper")]
pub fn assert_valid(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} should validate:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a validation failed (status 1) with a problem line containing `expected`.
#[allow(clippy::panic, reason = "test helper")]
pub fn assert_caught(what: &str, out: &Output, expected: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: the validator should have refused it:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(expected),
        "{what}: expected a problem mentioning {expected:?}, got:\n{stdout}"
    );
}

/// A copy of `examples/`, `Dockerfile` and `rust-toolchain.toml` in a temporary directory, to break.
#[allow(clippy::expect_used, reason = "test helper")]
pub fn copy_of_examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = workspace_root();
    copy_tree(&root.join("examples"), &dir.path().join("examples"));
    for file in ["Dockerfile", "rust-toolchain.toml", ".dockerignore"] {
        std::fs::copy(root.join(file), dir.path().join(file)).expect("copy");
    }
    dir
}

#[allow(clippy::expect_used, reason = "test helper")]
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Replaces `old` (which must occur) with `new` in `path`.
#[allow(clippy::expect_used, reason = "test helper")]
pub fn edit(path: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(
        text.contains(old),
        "{} does not contain {old:?}",
        path.display()
    );
    std::fs::write(path, text.replacen(old, new, 1)).expect("write");
}
