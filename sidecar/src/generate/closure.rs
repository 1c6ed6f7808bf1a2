// SPDX-License-Identifier: Apache-2.0
//! Loading ELF objects of the rootfs once each, and walking an entrypoint's DT_NEEDED closure in the
//! order ld.so loads it (breadth-first, ld.so(8) "Rpath token expansion" and search order).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::elf::{self, DefinedFunction, ElfError, ElfInfo};
use crate::function_map::BinaryRef;
use crate::rootfs::RootFs;

use super::{Diagnostic, DiagnosticKind};

/// Index of an object in an [`ObjectStore`].
pub(super) type ObjectId = usize;

/// One parsed file of the rootfs.
#[derive(Debug)]
pub(super) struct LoadedObject {
    /// Canonical path inside the rootfs.
    pub path: String,
    /// The last path component, what catalog rules match (`libssl.so.3`).
    pub file_name: String,
    pub info: ElfInfo,
    /// Path + build-id (sha256 of the file when it has no build-id).
    pub binary: BinaryRef,
    /// Indices into `info.exports`, sorted by name: an index for symbol lookup without a hash map of
    /// owned strings.
    exports_by_name: Vec<u32>,
}

impl LoadedObject {
    pub fn new(path: String, info: ElfInfo, sha256: Option<String>) -> Self {
        let file_name = path.rsplit('/').next().unwrap_or(&path).to_owned();
        let binary = BinaryRef {
            path: path.clone(),
            build_id: info.build_id.clone(),
            sha256: if info.build_id.is_none() {
                sha256
            } else {
                None
            },
        };
        let mut exports_by_name: Vec<u32> = (0..info.exports.len() as u32).collect();
        exports_by_name.sort_by(|&a, &b| {
            info.exports[a as usize]
                .name
                .cmp(&info.exports[b as usize].name)
        });
        Self {
            path,
            file_name,
            info,
            binary,
            exports_by_name,
        }
    }

    /// The exports named `name` (all versions), with their index in `info.exports`.
    pub fn exports_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (usize, &'a DefinedFunction)> + 'a {
        let exports = &self.info.exports;
        let start = self
            .exports_by_name
            .partition_point(|&i| exports[i as usize].name.as_str() < name);
        self.exports_by_name[start..]
            .iter()
            .map(|&i| (i as usize, &exports[i as usize]))
            .take_while(move |(_, f)| f.name == name)
    }

    /// The directory `$ORIGIN` expands to for this object.
    pub fn origin_dir(&self) -> &str {
        match self.path.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((dir, _)) => dir,
        }
    }
}

/// Every object parsed so far, shared by the closures of all entrypoints (libc is parsed once).
#[derive(Debug, Default)]
pub(super) struct ObjectStore {
    objects: Vec<LoadedObject>,
    by_path: HashMap<String, ObjectId>,
}

impl ObjectStore {
    /// The object at canonical in-root `path`, parsing it on first use.
    pub fn load(&mut self, root: &RootFs, path: &str) -> Result<ObjectId, ElfError> {
        if let Some(&id) = self.by_path.get(path) {
            return Ok(id);
        }
        let host = root.host_path(path);
        let bytes = std::fs::read(&host).map_err(|source| ElfError::Read {
            path: host.clone(),
            source,
        })?;
        let info = elf::parse(&bytes, &host.display().to_string())?;
        // Only files without a build-id need their digest: hashing every library would double the
        // cost of generation for nothing.
        let sha256 = info
            .build_id
            .is_none()
            .then(|| hex::encode(Sha256::digest(&bytes)));
        Ok(self.insert(LoadedObject::new(path.to_owned(), info, sha256)))
    }

    pub fn insert(&mut self, object: LoadedObject) -> ObjectId {
        let id = self.objects.len();
        self.by_path.insert(object.path.clone(), id);
        self.objects.push(object);
        id
    }

    pub fn get(&self, id: ObjectId) -> &LoadedObject {
        &self.objects[id]
    }
}

/// A DT_NEEDED entry that no directory of the search path satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MissingLibrary {
    pub name: String,
    pub needed_by: ObjectId,
}

/// An entrypoint and everything ld.so would load for it, in load order.
#[derive(Debug)]
pub(super) struct Closure {
    pub entrypoint: ObjectId,
    /// Load order: the entrypoint, then breadth-first DT_NEEDED. This is also ld.so's global symbol
    /// lookup scope order.
    pub order: Vec<ObjectId>,
    pub missing: Vec<MissingLibrary>,
    /// DT_NEEDED names and sonames of loaded objects: ld.so reuses an object whose name matches.
    pub by_name: HashMap<String, ObjectId>,
}

/// Expands `$ORIGIN` / `${ORIGIN}` (ld.so(8)) against the directory of the object whose RPATH it is.
fn expand_origin(entry: &str, origin_dir: &str) -> String {
    entry
        .replace("${ORIGIN}", origin_dir)
        .replace("$ORIGIN", origin_dir)
}

/// Walks the DT_NEEDED closure of `entrypoint` breadth-first.
///
/// Search path per ld.so(8): DT_RPATH of the needing object and then of each object that loaded it
/// (only when the needing object has no DT_RUNPATH), DT_RUNPATH of the needing object, then the
/// rootfs' ld.so.conf and default directories (inside [`RootFs::find_library`]). Only objects of the
/// entrypoint's class, byte order and machine are accepted, as ld.so skips e.g. 32-bit libraries.
/// A library that is missing or unreadable becomes a diagnostic; the walk goes on without it.
pub(super) fn walk(
    store: &mut ObjectStore,
    root: &RootFs,
    entrypoint: ObjectId,
    diagnostics: &mut Vec<Diagnostic>,
) -> Closure {
    let abi = store.get(entrypoint).info.abi();
    let accept = move |path: &Path| elf::abi_of_file(path) == Some(abi);
    let mut closure = Closure {
        entrypoint,
        order: vec![entrypoint],
        missing: Vec::new(),
        by_name: HashMap::new(),
    };
    // The RPATH entries inherited from the loader chain, already expanded against their own $ORIGIN.
    let mut inherited: Vec<Vec<String>> = vec![Vec::new()];
    let mut in_closure: HashSet<ObjectId> = HashSet::from([entrypoint]);
    if let Some(soname) = &store.get(entrypoint).info.soname {
        closure.by_name.insert(soname.clone(), entrypoint);
    }
    let mut next = 0;
    while next < closure.order.len() {
        let (needer, chain) = (closure.order[next], inherited[next].clone());
        next += 1;
        let object = store.get(needer);
        let needed = object.info.needed.clone();
        let runpath = object.info.runpath.clone();
        let origin_dir = object.origin_dir().to_owned();
        let rpath: Vec<String> = if runpath.is_empty() {
            object
                .info
                .rpath
                .iter()
                .cloned()
                .chain(chain.iter().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let child_chain: Vec<String> = object
            .info
            .rpath
            .iter()
            .map(|entry| expand_origin(entry, &origin_dir))
            .chain(chain.iter().cloned())
            .collect();
        let needer_path = object.path.clone();
        for name in needed {
            if closure.by_name.contains_key(&name) {
                continue;
            }
            let Some(found) = root.find_library(&name, &rpath, &runpath, &origin_dir, &accept)
            else {
                closure.missing.push(MissingLibrary {
                    name,
                    needed_by: needer,
                });
                continue;
            };
            let id = match store.load(root, &found) {
                Ok(id) => id,
                Err(err) => {
                    diagnostics.push(Diagnostic::new(
                        DiagnosticKind::UnreadableLibrary,
                        format!(
                            "library {name} needed by {needer_path} is unusable: {}",
                            elf::error_chain(&err)
                        ),
                    ));
                    closure.missing.push(MissingLibrary {
                        name,
                        needed_by: needer,
                    });
                    continue;
                }
            };
            closure.by_name.insert(name, id);
            if let Some(soname) = &store.get(id).info.soname {
                closure.by_name.entry(soname.clone()).or_insert(id);
            }
            if in_closure.insert(id) {
                closure.order.push(id);
                inherited.push(child_chain.clone());
            }
        }
    }
    report_missing(store, root, &closure, diagnostics);
    closure
}

/// One diagnostic per missing library, naming every object that needs it.
fn report_missing(
    store: &ObjectStore,
    root: &RootFs,
    closure: &Closure,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut needers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for missing in &closure.missing {
        needers
            .entry(&missing.name)
            .or_default()
            .push(&store.get(missing.needed_by).path);
    }
    for (name, by) in needers {
        diagnostics.push(Diagnostic::new(
            DiagnosticKind::MissingLibrary,
            format!(
                "library {name} needed by {} was not found in the rootfs {} (searched DT_RPATH, DT_RUNPATH, \
                 ld.so.conf and the default directories for a {}-bit object): hot functions expected from \
                 it are recorded as unresolved",
                by.join(", "),
                root.root().display(),
                match store.get(closure.entrypoint).info.class {
                    elf::ElfClass::Elf32 => 32,
                    elf::ElfClass::Elf64 => 64,
                }
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_expansion() {
        assert_eq!(
            expand_origin("$ORIGIN/../lib", "/opt/app/bin"),
            "/opt/app/bin/../lib"
        );
        assert_eq!(expand_origin("${ORIGIN}/lib:/x", "/a"), "/a/lib:/x");
        assert_eq!(expand_origin("/usr/lib", "/a"), "/usr/lib");
    }
}
