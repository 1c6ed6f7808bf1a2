// SPDX-License-Identifier: Apache-2.0
//! From a closure to expected paths: symbol binding as ld.so does it, the hot-function selector, and
//! the functions of static and Go binaries.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::HotSelector;
use crate::elf::{DefinedFunction, ImportedFunction};

use super::closure::{Closure, LoadedObject, ObjectId, ObjectStore};
use super::{Diagnostic, DiagnosticKind};

/// Where the function of a path lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Definer {
    /// An object of the closure.
    Object(ObjectId),
    /// A library that is not in the closure (missing or unreadable): the path is unresolvable.
    Missing { library: String },
}

/// An expected path before ids, purls and binary references are filled in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PathDraft {
    pub entrypoint: ObjectId,
    pub symbol: String,
    pub version: Option<String>,
    pub definer: Definer,
    pub caller: Option<ObjectId>,
    pub offset: Option<u64>,
    pub tags: Vec<String>,
    pub unresolved: Option<String>,
}

fn sorted_tags(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags.dedup();
    tags
}

/// Finds the definition an import binds to: the first object in the lookup scope (load order) that
/// defines the name with an acceptable version (glibc elf/dl-lookup.c `check_match`):
/// - a versioned reference binds to that exact version (default `@@` or hidden `@`), or to an
///   unversioned definition;
/// - an unversioned reference binds to an unversioned definition, else to the default version.
pub(super) fn resolve(
    store: &ObjectStore,
    order: &[ObjectId],
    import: &ImportedFunction,
) -> Option<(ObjectId, usize)> {
    for &id in order {
        let object = store.get(id);
        let mut fallback = None;
        for (index, function) in object.exports_named(&import.name) {
            match (&import.version, &function.version) {
                (Some(wanted), Some(have)) if wanted == have => return Some((id, index)),
                (_, None) => fallback = fallback.or(Some(index)),
                (None, Some(_)) if function.default_version => fallback = fallback.or(Some(index)),
                _ => {}
            }
        }
        if let Some(index) = fallback {
            return Some((id, index));
        }
    }
    None
}

/// Expected paths of one closure: every hot function an object of the closure imports, bound to
/// its definer. One path per (entrypoint, definer, definition); the caller is the entrypoint when it
/// imports the function itself, else the first importer in load order.
pub(super) fn linkage_paths(
    store: &ObjectStore,
    closure: &Closure,
    selector: &HotSelector,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PathDraft> {
    // (definer, export index) -> the draft, or None when the function is not hot.
    let mut bound: BTreeMap<(ObjectId, usize), Option<PathDraft>> = BTreeMap::new();
    let mut unresolved: BTreeMap<(Definer, String), PathDraft> = BTreeMap::new();
    for &caller in &closure.order {
        let object = store.get(caller);
        let mut not_found = 0usize;
        for import in &object.info.imports {
            match resolve(store, &closure.order, import) {
                Some((definer, index)) => {
                    // Load order starts with the entrypoint, so the first importer is the
                    // entrypoint itself whenever it imports the function.
                    bound.entry((definer, index)).or_insert_with(|| {
                        hot_binding(
                            store,
                            closure.entrypoint,
                            caller,
                            definer,
                            index,
                            selector,
                            diagnostics,
                        )
                    });
                }
                // A weak reference that nothing defines binds to address 0 and is never called.
                None if import.weak => {}
                None => {
                    not_found += 1;
                    if let Some(draft) = unresolved_path(store, closure, caller, import, selector) {
                        let key = (draft.definer.clone(), import.name.clone());
                        unresolved.entry(key).or_insert(draft);
                    }
                }
            }
        }
        if not_found > 0 {
            diagnostics.push(Diagnostic::new(
                DiagnosticKind::UnresolvedSymbol,
                format!(
                    "{not_found} function(s) imported by {} are defined by no object of the closure of {}",
                    object.path,
                    store.get(closure.entrypoint).path
                ),
            ));
        }
    }
    bound
        .into_values()
        .flatten()
        .chain(unresolved.into_values())
        .collect()
}

fn hot_binding(
    store: &ObjectStore,
    entrypoint: ObjectId,
    caller: ObjectId,
    definer: ObjectId,
    index: usize,
    selector: &HotSelector,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<PathDraft> {
    let object = store.get(definer);
    let function = &object.info.exports[index];
    let tags = selector.tags_for(
        &object.file_name,
        object.info.soname.as_deref(),
        &function.name,
    );
    if tags.is_empty() {
        return None;
    }
    Some(PathDraft {
        entrypoint,
        symbol: function.name.clone(),
        version: function.version.clone(),
        definer: Definer::Object(definer),
        caller: Some(caller),
        offset: probe_offset(object, function, diagnostics),
        tags: sorted_tags(tags),
        unresolved: None,
    })
}

/// The offset to record for a function, with a diagnostic when there is none to record.
fn probe_offset(
    object: &LoadedObject,
    function: &DefinedFunction,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<u64> {
    let versioned = match (&function.version, function.default_version) {
        (Some(v), true) => format!("{}@@{v}", function.name),
        (Some(v), false) => format!("{}@{v}", function.name),
        (None, _) => function.name.clone(),
    };
    if function.ifunc {
        diagnostics.push(Diagnostic::new(
            DiagnosticKind::Ifunc,
            format!(
                "{versioned} in {} is a GNU IFUNC: a probe on it fires once per binding, not per call; \
                 no offset is recorded (the resolver is not the function)",
                object.path
            ),
        ));
        return None;
    }
    if function.offset.is_none() {
        diagnostics.push(Diagnostic::new(
            DiagnosticKind::NoOffset,
            format!(
                "{versioned} in {} lies outside every PT_LOAD segment: no offset recorded",
                object.path
            ),
        ));
    }
    function.offset
}

/// A hot import that no object of the closure defines. The library it was meant to come from is the
/// version's vn_file when the import is versioned, else a missing DT_NEEDED library of the importer
/// whose catalog rules select the symbol.
fn unresolved_path(
    store: &ObjectStore,
    closure: &Closure,
    caller: ObjectId,
    import: &ImportedFunction,
    selector: &HotSelector,
) -> Option<PathDraft> {
    let missing_of_caller = closure
        .missing
        .iter()
        .filter(|m| m.needed_by == caller)
        .map(|m| m.name.as_str());
    let candidates: Vec<&str> = import
        .version_file
        .as_deref()
        .into_iter()
        .chain(missing_of_caller)
        .collect();
    for library in candidates {
        let (file_name, soname, definer) = match closure.by_name.get(library) {
            Some(&id) => {
                let object = store.get(id);
                (
                    object.file_name.as_str(),
                    object.info.soname.as_deref(),
                    Definer::Object(id),
                )
            }
            None => (
                library,
                Some(library),
                Definer::Missing {
                    library: library.to_owned(),
                },
            ),
        };
        let tags = selector.tags_for(file_name, soname, &import.name);
        if tags.is_empty() {
            continue;
        }
        let versioned = match &import.version {
            Some(v) => format!("{}@{v}", import.name),
            None => import.name.clone(),
        };
        let reason = match &definer {
            Definer::Object(id) => format!("{} does not define {versioned}", store.get(*id).path),
            Definer::Missing { library } => {
                format!(
                    "{library} (needed by {}) is not in the rootfs",
                    store.get(caller).path
                )
            }
        };
        return Some(PathDraft {
            entrypoint: closure.entrypoint,
            symbol: import.name.clone(),
            version: import.version.clone(),
            definer,
            caller: Some(caller),
            offset: None,
            tags: sorted_tags(tags),
            unresolved: Some(reason),
        });
    }
    None
}

/// Paths of a static or Go entrypoint: its own functions that the selector marks hot (`.symtab`,
/// else `.dynsym`). There is no caller: the call happens inside the binary.
pub(super) fn own_function_paths(
    store: &ObjectStore,
    entrypoint: ObjectId,
    selector: &HotSelector,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PathDraft> {
    let object = store.get(entrypoint);
    if object.info.defined_functions().is_empty() {
        diagnostics.push(Diagnostic::new(
            DiagnosticKind::NoSymbols,
            format!(
                "{} is statically linked or a Go binary without .symtab or exported functions (stripped): \
                 none of its functions can be selected",
                object.path
            ),
        ));
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut drafts = Vec::new();
    for function in object.info.defined_functions() {
        if !seen.insert((function.name.as_str(), function.value)) {
            continue;
        }
        let tags = selector.tags_for(
            &object.file_name,
            object.info.soname.as_deref(),
            &function.name,
        );
        if tags.is_empty() {
            continue;
        }
        drafts.push(PathDraft {
            entrypoint,
            symbol: function.name.clone(),
            version: function.version.clone(),
            definer: Definer::Object(entrypoint),
            caller: None,
            offset: probe_offset(object, function, diagnostics),
            tags: sorted_tags(tags),
            unresolved: None,
        });
    }
    drafts
}

/// The watch scope of one object: every function it defines that the hot categories cover, with
/// the union of their tags. `None` when there is none.
pub(super) fn watch_scope(
    object: &LoadedObject,
    selector: &HotSelector,
    own_functions: bool,
) -> Option<(Vec<String>, Vec<String>)> {
    let functions = if own_functions {
        object.info.defined_functions()
    } else {
        &object.info.exports
    };
    let mut tags = BTreeSet::new();
    let mut symbols = BTreeSet::new();
    for function in functions {
        let found = selector.watch_tags_for(
            &object.file_name,
            object.info.soname.as_deref(),
            &function.name,
        );
        if !found.is_empty() {
            tags.extend(found);
            symbols.insert(function.name.clone());
        }
    }
    (!symbols.is_empty()).then(|| (tags.into_iter().collect(), symbols.into_iter().collect()))
}
