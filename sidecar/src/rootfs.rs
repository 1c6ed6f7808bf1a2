// SPDX-License-Identifier: Apache-2.0
//! An image root filesystem on disk, seen the way the image's own processes see it: paths resolve inside the
//! root as in a chroot, and shared libraries are found the way the image's dynamic loader finds them - never on
//! the host outside the root.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::catalog::glob_match;

/// Linux's limit on symbolic links followed in one path lookup (MAXSYMLINKS, fs/namei.c); more is ELOOP.
const MAX_SYMLINKS: usize = 40;

/// Depth limit for `include` in ld.so.conf (ldconfig has none, but an include cycle must end).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The Debian multiarch triple of the machine this was compiled for: library directories such as
/// /usr/lib/x86_64-linux-gnu (images are inspected on the architecture they run on).
const MULTIARCH: &str = if cfg!(target_arch = "x86_64") {
    "x86_64-linux-gnu"
} else if cfg!(target_arch = "aarch64") {
    "aarch64-linux-gnu"
} else if cfg!(target_arch = "x86") {
    "i386-linux-gnu"
} else if cfg!(target_arch = "arm") {
    "arm-linux-gnueabihf"
} else if cfg!(target_arch = "riscv64") {
    "riscv64-linux-gnu"
} else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
    "powerpc64le-linux-gnu"
} else if cfg!(target_arch = "s390x") {
    "s390x-linux-gnu"
} else {
    "unknown-linux-gnu"
};

/// `$PLATFORM` in RPATH/RUNPATH: the AT_PLATFORM string the kernel passes to ld.so.
const PLATFORM: &str = if cfg!(target_arch = "x86") {
    "i686"
} else {
    std::env::consts::ARCH
};

/// Values tried for `$LIB`: glibc sets it at build time to its slibdir's last part, which is
/// `lib/<multiarch>` on Debian and Ubuntu and `lib64` (or `lib`) elsewhere; an image of unknown origin gets all
/// three, in that order.
fn lib_expansions() -> Vec<String> {
    let mut values = vec![format!("lib/{MULTIARCH}")];
    if cfg!(target_pointer_width = "64") {
        values.push("lib64".to_owned());
    }
    values.push("lib".to_owned());
    values
}

/// The trusted directories ld.so searches after ld.so.cache (glibc's system-dirs for a multiarch build).
fn default_dirs() -> Vec<String> {
    let mut dirs = vec![format!("/lib/{MULTIARCH}"), format!("/usr/lib/{MULTIARCH}")];
    if cfg!(target_pointer_width = "64") {
        dirs.push("/lib64".to_owned());
        dirs.push("/usr/lib64".to_owned());
    }
    dirs.push("/lib".to_owned());
    dirs.push("/usr/lib".to_owned());
    dirs
}

/// Resolving a path inside a root filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum RootFsError {
    #[error("cannot open root filesystem {root}: {source}")]
    Open {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("root filesystem {root} is not a directory")]
    RootNotADirectory { root: PathBuf },
    #[error("{path} in root {root}: {missing} does not exist")]
    NotFound {
        root: PathBuf,
        path: String,
        missing: String,
    },
    #[error("{path} in root {root}: {component} is not a directory")]
    NotADirectory {
        root: PathBuf,
        path: String,
        component: String,
    },
    #[error(
        "{path} in root {root}: too many levels of symbolic links (more than {MAX_SYMLINKS}; a symlink loop?)"
    )]
    SymlinkLoop { root: PathBuf, path: String },
    #[error("{path} in root {root}: {component} is not valid UTF-8")]
    NonUtf8 {
        root: PathBuf,
        path: String,
        component: String,
    },
    #[error("{path} in root {root}: cannot inspect {component}: {source}")]
    Io {
        root: PathBuf,
        path: String,
        component: String,
        #[source]
        source: io::Error,
    },
}

/// An image root filesystem (a directory; "/" for the running machine).
#[derive(Debug, Clone)]
pub struct RootFs {
    root: PathBuf,
    library_dirs: Vec<String>,
}

impl RootFs {
    /// Opens an image root filesystem (a directory; "/" is allowed for the running machine) and reads its
    /// /etc/ld.so.conf.
    pub fn new(root: &Path) -> Result<Self, RootFsError> {
        let canonical = fs::canonicalize(root).map_err(|source| RootFsError::Open {
            root: root.to_owned(),
            source,
        })?;
        if !canonical.is_dir() {
            return Err(RootFsError::RootNotADirectory {
                root: root.to_owned(),
            });
        }
        let mut rootfs = RootFs {
            root: canonical,
            library_dirs: Vec::new(),
        };
        let mut dirs = Vec::new();
        let mut seen_confs = HashSet::new();
        rootfs.read_ld_so_conf("/etc/ld.so.conf", 0, &mut dirs, &mut seen_confs);
        dirs.extend(default_dirs());
        let mut seen = HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        rootfs.library_dirs = dirs;
        Ok(rootfs)
    }

    /// The root directory on the host (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of an in-root path, without following symlinks. `..` and `.` are removed lexically and never
    /// climb above the root.
    pub fn host_path(&self, path_in_root: &str) -> PathBuf {
        let mut host = self.root.clone();
        for component in lexical_components(path_in_root) {
            host.push(component);
        }
        host
    }

    /// Resolves an absolute path inside the root, following symlinks the way the kernel would inside a chroot:
    /// absolute link targets are relative to the root, `..` never climbs above it, more than 40 links in one
    /// lookup is a loop. A relative `path_in_root` is taken relative to "/". Returns the canonical absolute
    /// in-root path of an existing file or directory (e.g. "/usr/lib/x86_64-linux-gnu/libssl.so.3").
    pub fn canonicalize(&self, path_in_root: &str) -> Result<String, RootFsError> {
        // `pending` is a stack: its last element is the next component to resolve.
        let mut pending: Vec<String> = path_in_root.split('/').rev().map(str::to_owned).collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut host = self.root.clone();
        let mut links = 0usize;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "" | "." => continue,
                ".." => {
                    if resolved.pop().is_some() {
                        host.pop();
                    }
                    continue;
                }
                _ => {}
            }
            host.push(&component);
            resolved.push(component);
            let metadata = fs::symlink_metadata(&host)
                .map_err(|e| self.lookup_error(path_in_root, &resolved, e))?;
            if metadata.file_type().is_symlink() {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(RootFsError::SymlinkLoop {
                        root: self.root.clone(),
                        path: path_in_root.to_owned(),
                    });
                }
                let target = fs::read_link(&host)
                    .map_err(|e| self.lookup_error(path_in_root, &resolved, e))?;
                let target = target.to_str().ok_or_else(|| RootFsError::NonUtf8 {
                    root: self.root.clone(),
                    path: path_in_root.to_owned(),
                    component: join_in_root(&resolved),
                })?;
                resolved.pop();
                host.pop();
                if target.starts_with('/') {
                    // Absolute targets are relative to the root, as in a chroot.
                    resolved.clear();
                    host = self.root.clone();
                }
                pending.extend(target.split('/').rev().map(str::to_owned));
            } else if !metadata.is_dir() && pending.iter().any(|c| !c.is_empty()) {
                // "file/..." and "file/." fail with ENOTDIR in the kernel too.
                return Err(RootFsError::NotADirectory {
                    root: self.root.clone(),
                    path: path_in_root.to_owned(),
                    component: join_in_root(&resolved),
                });
            }
        }
        Ok(join_in_root(&resolved))
    }

    fn lookup_error(&self, path: &str, resolved: &[String], error: io::Error) -> RootFsError {
        let component = join_in_root(resolved);
        match error.kind() {
            io::ErrorKind::NotFound => RootFsError::NotFound {
                root: self.root.clone(),
                path: path.to_owned(),
                missing: component,
            },
            io::ErrorKind::NotADirectory => RootFsError::NotADirectory {
                root: self.root.clone(),
                path: path.to_owned(),
                component,
            },
            _ => RootFsError::Io {
                root: self.root.clone(),
                path: path.to_owned(),
                component,
                source: error,
            },
        }
    }

    /// Library directories from the root's /etc/ld.so.conf (and its `include` globs, relative to the root),
    /// then the default directories (/lib/<multiarch>, /usr/lib/<multiarch>, /lib64, /usr/lib64, /lib,
    /// /usr/lib), deduplicated, in search order.
    pub fn library_dirs(&self) -> &[String] {
        &self.library_dirs
    }

    /// Finds a DT_NEEDED entry the way ld.so does, never looking at the host outside the root: a name with
    /// '/' is resolved directly (relative to "/" when relative: the process's working directory is unknown);
    /// otherwise DT_RPATH (only when there is no DT_RUNPATH), then DT_RUNPATH, then [`RootFs::library_dirs`].
    /// Entries may be colon-separated lists. `$ORIGIN`/`${ORIGIN}` expand to `origin_dir` (the in-root
    /// directory of the object that needs the library), `$LIB` to `lib/<multiarch>`, `lib64` and `lib` (tried in
    /// that order), `$PLATFORM` to the machine's platform string; empty and relative entries (relative to the
    /// unknown working directory) are skipped. `accept` is called with the host path of each existing regular
    /// file candidate (the caller checks ELF class and machine); a rejected candidate is skipped, as ld.so
    /// skips a library of the wrong class. Returns the canonical in-root path of the library found.
    pub fn find_library(
        &self,
        name: &str,
        rpath: &[String],
        runpath: &[String],
        origin_dir: &str,
        accept: &dyn Fn(&Path) -> bool,
    ) -> Option<String> {
        if name.is_empty() {
            return None;
        }
        if name.contains('/') {
            return self.try_candidate(name, accept);
        }
        let mut dirs: Vec<String> = Vec::new();
        if runpath.is_empty() {
            dirs.extend(rpath.iter().flat_map(|e| expand_search_path(e, origin_dir)));
        }
        dirs.extend(
            runpath
                .iter()
                .flat_map(|e| expand_search_path(e, origin_dir)),
        );
        dirs.extend(self.library_dirs.iter().cloned());
        let mut tried = HashSet::new();
        for dir in dirs {
            if !tried.insert(dir.clone()) {
                continue;
            }
            let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
            if let Some(found) = self.try_candidate(&candidate, accept) {
                return Some(found);
            }
        }
        None
    }

    fn try_candidate(&self, path_in_root: &str, accept: &dyn Fn(&Path) -> bool) -> Option<String> {
        let canonical = self.canonicalize(path_in_root).ok()?;
        let host = self.host_path(&canonical);
        let is_file = fs::metadata(&host).map(|m| m.is_file()).unwrap_or(false);
        (is_file && accept(&host)).then_some(canonical)
    }

    /// Reads one ld.so.conf-format file: directory lines (separated by whitespace, ':' or ','; an old-style
    /// `=TYPE` suffix is dropped), `include GLOB...` (relative globs are relative to the including file's
    /// directory, as in ldconfig), `hwcap` lines (ignored) and `#` comments. Unreadable files are skipped, as
    /// ldconfig does with a warning.
    fn read_ld_so_conf(
        &self,
        conf: &str,
        depth: usize,
        dirs: &mut Vec<String>,
        seen: &mut HashSet<String>,
    ) {
        if depth > MAX_INCLUDE_DEPTH {
            tracing::warn!(conf, "ld.so.conf includes nested too deeply; ignoring");
            return;
        }
        let Ok(canonical) = self.canonicalize(conf) else {
            return;
        };
        if !seen.insert(canonical.clone()) {
            return;
        }
        let text = match fs::read(self.host_path(&canonical)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => {
                tracing::warn!(conf, %error, "cannot read ld.so.conf file; ignoring it");
                return;
            }
        };
        let conf_dir = parent_dir(conf);
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            match words.next() {
                Some("include") => {
                    for pattern in words {
                        let pattern = if pattern.starts_with('/') {
                            pattern.to_owned()
                        } else {
                            format!("{}/{pattern}", conf_dir.trim_end_matches('/'))
                        };
                        for file in self.expand_glob(&pattern) {
                            self.read_ld_so_conf(&file, depth + 1, dirs, seen);
                        }
                    }
                }
                Some("hwcap") => {}
                _ => {
                    for dir in line.split(|c: char| c.is_whitespace() || c == ':' || c == ',') {
                        let dir = dir.split('=').next().unwrap_or("");
                        if dir.starts_with('/') {
                            dirs.push(normalize_lexically(dir));
                        }
                    }
                }
            }
        }
    }

    /// Expands a glob over in-root paths (`*` and `?` per component; names starting with '.' only match a
    /// pattern that starts with '.', as in glob(3)). Results are sorted, as glob(3) sorts them.
    fn expand_glob(&self, pattern: &str) -> Vec<String> {
        let mut current = vec![String::new()];
        for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
            let mut next = Vec::new();
            for base in &current {
                if !component.contains(['*', '?']) {
                    next.push(format!("{base}/{component}"));
                    continue;
                }
                let dir = if base.is_empty() { "/" } else { base.as_str() };
                let Ok(canonical) = self.canonicalize(dir) else {
                    continue;
                };
                let Ok(entries) = fs::read_dir(self.host_path(&canonical)) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| {
                        (!n.starts_with('.') || component.starts_with('.'))
                            && glob_match(component, n)
                    })
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| format!("{base}/{n}")));
            }
            current = next;
        }
        current.retain(|p| !p.is_empty());
        current
    }
}

/// Splits one RPATH/RUNPATH entry (a colon-separated list) into absolute in-root directories, expanding the
/// dynamic string tokens (ld.so(8) "Dynamic string tokens").
fn expand_search_path(entry: &str, origin_dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in entry.split(':').filter(|p| !p.is_empty()) {
        let piece = piece
            .replace("${ORIGIN}", origin_dir)
            .replace("$ORIGIN", origin_dir)
            .replace("${PLATFORM}", PLATFORM)
            .replace("$PLATFORM", PLATFORM);
        let expanded: Vec<String> = if piece.contains("$LIB") || piece.contains("${LIB}") {
            lib_expansions()
                .iter()
                .map(|lib| piece.replace("${LIB}", lib).replace("$LIB", lib))
                .collect()
        } else {
            vec![piece]
        };
        out.extend(expanded.into_iter().filter(|p| p.starts_with('/')));
    }
    out
}

/// The components of a path with `.` removed and `..` applied lexically (never above the root).
fn lexical_components(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// An absolute in-root path with `.`, `..` and repeated or trailing slashes removed, without touching the disk.
pub(crate) fn normalize_lexically(path: &str) -> String {
    let components = lexical_components(path);
    let mut out = String::with_capacity(path.len() + 1);
    if components.is_empty() {
        out.push('/');
    }
    for c in components {
        out.push('/');
        out.push_str(c);
    }
    out
}

fn join_in_root(components: &[String]) -> String {
    if components.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::new();
    for c in components {
        out.push('/');
        out.push_str(c);
    }
    out
}

/// The in-root directory containing an in-root path ("/" for top-level entries).
pub(crate) fn parent_dir(path: &str) -> String {
    let normalized = normalize_lexically(path);
    match normalized.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => normalized[..i].to_owned(),
    }
}

#[cfg(test)]
mod tests;
