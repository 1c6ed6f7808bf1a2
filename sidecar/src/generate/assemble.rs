// SPDX-License-Identifier: Apache-2.0
//! Assembling the map from path drafts: binary references and purls, unique ids, watch scopes,
//! coverage and the closure summary.

use std::collections::{BTreeSet, HashMap};

use crate::catalog::HotSelector;
use crate::dpkg::DpkgDb;
use crate::function_map::{
    BinaryRef, Call, Coverage, DEFAULT_MIN_OBSERVATION_RATE, DEFAULT_WINDOW_SECONDS, ExpectedPath,
    WatchScope,
};
use crate::rootfs::RootFs;
use crate::sbom::Sbom;

use super::closure::{Closure, ObjectId, ObjectStore};
use super::paths::{self, Definer, PathDraft};
use super::{ClosureSummary, Diagnostic, DiagnosticKind, GenerateError, GenerateOptions};

/// Purls per object, looked up once each; objects without one are reported.
pub(super) struct PurlCache<'a> {
    pub sbom: &'a Sbom,
    pub root: &'a RootFs,
    pub dpkg: Option<&'a DpkgDb>,
    pub cache: HashMap<String, Option<String>>,
}

impl PurlCache<'_> {
    pub(super) fn purl(&mut self, path: &str) -> Option<String> {
        if let Some(found) = self.cache.get(path) {
            return found.clone();
        }
        let found = self
            .sbom
            .purl_for_file(path, self.root, self.dpkg)
            .map(|m| m.purl);
        self.cache.insert(path.to_owned(), found.clone());
        found
    }

    pub(super) fn diagnostics(&self) -> impl Iterator<Item = Diagnostic> + '_ {
        self.cache.iter().filter(|(_, purl)| purl.is_none()).map(|(path, _)| {
            Diagnostic::new(
                DiagnosticKind::NoPurl,
                format!(
                    "{path} belongs to no component of the SBOM (no evidence, property or package database \
                     entry): its calls carry no purl"
                ),
            )
        })
    }
}

pub(super) fn expected_path(
    store: &ObjectStore,
    purls: &mut PurlCache<'_>,
    draft: PathDraft,
) -> ExpectedPath {
    let entrypoint = store.get(draft.entrypoint);
    let (binary, file_name, purl) = match &draft.definer {
        Definer::Object(id) => {
            let object = store.get(*id);
            (
                object.binary.clone(),
                object.file_name.clone(),
                purls.purl(&object.path),
            )
        }
        // Where ld.so would look first by default; there is no file to identify.
        Definer::Missing { library } => {
            let path = if library.starts_with('/') {
                library.clone()
            } else {
                let dir = purls
                    .root
                    .library_dirs()
                    .first()
                    .map_or("/usr/lib", String::as_str);
                format!("{}/{library}", dir.trim_end_matches('/'))
            };
            let file_name = library.rsplit('/').next().unwrap_or(library).to_owned();
            (
                BinaryRef {
                    path,
                    build_id: None,
                    sha256: None,
                },
                file_name,
                None,
            )
        }
    };
    ExpectedPath {
        id: format!("{}:{}@{}", entrypoint.file_name, draft.symbol, file_name),
        entrypoint: entrypoint.path.clone(),
        calls: vec![Call {
            symbol: draft.symbol,
            version: draft.version,
            binary,
            caller: draft.caller.map(|id| store.get(id).binary.clone()),
            purl,
            offset: draft.offset,
            unresolved: draft.unresolved,
        }],
        tags: draft.tags,
        optional: false,
    }
}

/// Makes ids unique (`#2`, `#3`... in a stable order) and sorts the paths by id.
pub(super) fn assign_ids(mut paths: Vec<ExpectedPath>) -> Vec<ExpectedPath> {
    let order_key = |p: &ExpectedPath| {
        let call = p.calls.first();
        (
            p.id.clone(),
            p.entrypoint.clone(),
            call.map(|c| {
                (
                    c.binary.path.clone(),
                    c.version.clone(),
                    c.offset,
                    c.caller.as_ref().map(|b| b.path.clone()),
                )
            }),
        )
    };
    paths.sort_by_cached_key(order_key);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for path in &mut paths {
        let count = seen.entry(path.id.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            path.id = format!("{}#{count}", path.id);
        }
    }
    paths.sort_by(|a, b| a.id.cmp(&b.id));
    paths
}

pub(super) fn watch_scopes(
    store: &ObjectStore,
    closures: &[Closure],
    selector: &HotSelector,
    purls: &mut PurlCache<'_>,
) -> Vec<WatchScope> {
    let mut objects: BTreeSet<(String, ObjectId, bool)> = BTreeSet::new();
    for closure in closures {
        let info = &store.get(closure.entrypoint).info;
        if info.is_static || info.is_go {
            objects.insert((
                store.get(closure.entrypoint).path.clone(),
                closure.entrypoint,
                true,
            ));
        }
        for &id in closure.order.iter().skip(1) {
            objects.insert((store.get(id).path.clone(), id, false));
        }
    }
    let mut scopes = Vec::new();
    for (path, id, own_functions) in objects {
        let object = store.get(id);
        if let Some((tags, symbols)) = paths::watch_scope(object, selector, own_functions) {
            scopes.push(WatchScope {
                binary: object.binary.clone(),
                purl: purls.purl(&path),
                tags,
                symbols,
            });
        }
    }
    scopes
}

pub(super) fn coverage(
    opts: &GenerateOptions,
    paths: &[ExpectedPath],
) -> Result<Coverage, GenerateError> {
    let tags: BTreeSet<&str> = paths
        .iter()
        .flat_map(|p| p.tags.iter().map(String::as_str))
        .collect();
    if let Some(tag) = opts.per_tag.keys().find(|t| !tags.contains(t.as_str())) {
        return Err(GenerateError::TagWithoutPaths {
            tag: tag.clone(),
            available: tags.iter().map(|t| (*t).to_owned()).collect(),
        });
    }
    Ok(Coverage {
        min_observation_rate: opts.min_rate.unwrap_or(DEFAULT_MIN_OBSERVATION_RATE),
        window_seconds: opts.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS),
        fail_on_unexpected: opts.fail_on_unexpected,
        per_tag: opts.per_tag.clone(),
    })
}

pub(super) fn summarize(store: &ObjectStore, closure: &Closure) -> ClosureSummary {
    ClosureSummary {
        entrypoint: store.get(closure.entrypoint).path.clone(),
        libraries: closure
            .order
            .iter()
            .skip(1)
            .map(|&id| store.get(id).path.clone())
            .collect(),
        missing: closure
            .missing
            .iter()
            .map(|m| m.name.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}
