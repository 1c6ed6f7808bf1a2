// SPDX-License-Identifier: Apache-2.0
//! Which files of the function map a process has mapped, and how to open each one from here.
//!
//! A file of another container must be opened through that process: `/proc/<pid>/root/<path>` when the
//! path still names the mapped inode, else `/proc/<pid>/map_files/<range>` (the mapped inode itself, even
//! after the file was replaced; needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE) or `/proc/<pid>/exe` for the
//! main executable. Never the path as this process sees it: with another mount namespace that is another
//! inode, and a uprobe on it silently counts nothing (PLATFORM.md).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use tracing::{debug, warn};

use super::procfs::{FileId, Mapping, ProcFs};

/// A file of the map, mapped by a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFile {
    /// The map's path for the file (`BinaryRef::path`).
    pub image_path: String,
    /// The path the process maps it by (differs from `image_path` when the map names it through a
    /// symlinked directory such as `/lib` -> `/usr/lib`).
    pub mapped_path: String,
    /// The mapped inode.
    pub file: FileId,
    /// Where to open exactly that inode from this process.
    pub open: Result<PathBuf, Unopenable>,
}

/// Why a mapped file cannot be opened from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unopenable {
    /// The path now names another file (or none) and /proc/<pid>/map_files is not readable.
    Replaced,
}

/// What [`mapped_files`] found among the files it had not seen before.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MappedScan {
    /// Files of the map.
    pub targets: Vec<MappedFile>,
    /// Other mapped files: the caller can skip them next time.
    pub others: Vec<FileId>,
}

/// Scans `/proc/<pid>/maps` for files whose path is in `wanted` (the map's binary paths), skipping files the
/// caller has already handled (`known`). A file mapped by another path (a symlinked directory) is matched by
/// inode against `wanted` resolved inside the process's root.
pub fn mapped_files(
    proc: &ProcFs,
    pid: u32,
    wanted: &BTreeSet<String>,
    known: &dyn Fn(&FileId) -> bool,
) -> std::io::Result<MappedScan> {
    let maps = proc.maps(pid)?;
    let mut seen: HashMap<FileId, &Mapping> = HashMap::new();
    for mapping in &maps {
        if !known(&mapping.file) {
            // Prefer the executable mapping: its range is what map_files must name for text.
            let entry = seen.entry(mapping.file).or_insert(mapping);
            if mapping.executable && !entry.executable {
                *entry = mapping;
            }
        }
    }
    let mut scan = MappedScan::default();
    let mut aliases: Option<HashMap<FileId, String>> = None;
    for (file, mapping) in seen {
        let image_path = if wanted.contains(&mapping.path) {
            Some(mapping.path.clone())
        } else {
            // Resolve the map's paths inside the process's root once per scan, only when needed.
            let aliases = aliases.get_or_insert_with(|| {
                wanted
                    .iter()
                    .filter_map(|w| Some((FileId::of_path(&proc.in_root(pid, w)).ok()?, w.clone())))
                    .collect()
            });
            aliases.get(&file).cloned()
        };
        match image_path {
            Some(image_path) => scan.targets.push(MappedFile {
                open: open_path(proc, pid, mapping),
                image_path,
                mapped_path: mapping.path.clone(),
                file,
            }),
            None => scan.others.push(file),
        }
    }
    scan.targets.sort_by(|a, b| a.image_path.cmp(&b.image_path));
    Ok(scan)
}

/// The path that opens exactly the mapped inode.
fn open_path(proc: &ProcFs, pid: u32, mapping: &Mapping) -> Result<PathBuf, Unopenable> {
    let same = |path: &PathBuf| FileId::of_path(path).is_ok_and(|id| id == mapping.file);
    let in_root = proc.in_root(pid, &mapping.path);
    if !mapping.deleted && same(&in_root) {
        return Ok(in_root);
    }
    let exe = proc.path(pid, "exe");
    if same(&exe) {
        return Ok(exe);
    }
    let map_files = mapping.map_files_path(proc.root(), pid);
    if same(&map_files) {
        return Ok(map_files);
    }
    if !mapping.deleted && in_root.exists() {
        // Overlay filesystems on kernels before 6.8 show the backing inode in maps and the overlay inode to
        // stat; the build-id check before attaching still guarantees the offsets fit the file opened.
        warn!(pid, path = %mapping.path, "mapped inode not confirmed through the process's root; using its root path");
        return Ok(in_root);
    }
    debug!(pid, path = %mapping.path, "mapped file was replaced and map_files is not readable");
    Err(Unopenable::Replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself maps its own executable and libc: a real process to scan.
    #[test]
    fn finds_wanted_files_of_a_live_process_and_opens_them_through_its_root() {
        let proc = ProcFs::default();
        let me = std::process::id();
        let (exe, _) = proc.exe(me).unwrap();
        let wanted: BTreeSet<String> =
            [exe.clone(), "/nonexistent/libnothing.so".to_owned()].into();
        let scan = mapped_files(&proc, me, &wanted, &|_| false).unwrap();
        assert_eq!(scan.targets.len(), 1, "{scan:?}");
        let found = &scan.targets[0];
        assert_eq!(found.image_path, exe);
        assert_eq!(found.open, Ok(proc.in_root(me, &exe)));
        assert!(
            !scan.others.is_empty(),
            "libc and ld.so are other mapped files"
        );

        // Files the caller already handled are not reported again.
        let again = mapped_files(&proc, me, &wanted, &|id| *id == found.file).unwrap();
        assert!(again.targets.is_empty());
    }

    #[test]
    fn a_file_mapped_through_a_symlinked_directory_matches_by_inode() {
        let proc = ProcFs::default();
        let me = std::process::id();
        let (exe, _) = proc.exe(me).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let parent = std::path::Path::new(&exe).parent().unwrap();
        let link = dir.path().join("bin");
        std::os::unix::fs::symlink(parent, &link).unwrap();
        let alias = link
            .join(std::path::Path::new(&exe).file_name().unwrap())
            .display()
            .to_string();
        let wanted: BTreeSet<String> = [alias.clone()].into();
        let scan = mapped_files(&proc, me, &wanted, &|_| false).unwrap();
        assert_eq!(scan.targets.len(), 1, "{scan:?}");
        assert_eq!(scan.targets[0].image_path, alias);
        assert_eq!(scan.targets[0].mapped_path, exe);
    }
}
