// SPDX-License-Identifier: Apache-2.0
//! What the function map asks to probe, per file: the declared calls of the expected paths and the
//! watch-scope symbols (probed too in coverage mode, to find calls nobody declared).

use std::collections::{BTreeMap, BTreeSet};

use tracing::warn;

use crate::function_map::{BinaryRef, FunctionMap};

/// One function to probe in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSymbol {
    pub name: String,
    /// The ELF version the map names (`OPENSSL_3.0.0`); `None` binds to the default (`@@`) version.
    pub version: Option<String>,
    /// The file offset recorded in the map: valid only for the map's build of the file.
    pub map_offset: Option<u64>,
    /// Declared by an expected path (else only in a watch scope).
    pub declared: bool,
    /// Why the map's generator could not resolve it, when it could not.
    pub map_unresolved: Option<String>,
}

/// One file to probe: its identity in the map and its functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFile {
    pub binary: BinaryRef,
    pub symbols: Vec<TargetSymbol>,
}

/// Every file the map names, by path inside the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    files: Vec<TargetFile>,
    by_path: BTreeMap<String, usize>,
    entrypoints: BTreeSet<String>,
}

/// Index of a file in [`Targets`].
pub type TargetIndex = usize;

impl Targets {
    /// Collects the map's files. `with_watch_scopes` adds the watch-scope symbols (coverage mode's
    /// unexpected-call detection); declared calls are always included.
    pub fn from_map(map: &FunctionMap, with_watch_scopes: bool) -> Self {
        let mut targets = Self::default();
        for path in &map.predicate.expected_paths {
            targets.entrypoints.insert(path.entrypoint.clone());
            for call in &path.calls {
                let file = targets.file_mut(&call.binary);
                let symbol = TargetSymbol {
                    name: call.symbol.clone(),
                    version: call.version.clone(),
                    map_offset: call.offset,
                    declared: true,
                    map_unresolved: call.unresolved.clone(),
                };
                merge(file, symbol);
            }
        }
        if let Some(from) = &map.predicate.generated_from {
            targets.entrypoints.extend(from.entrypoints.iter().cloned());
        }
        if with_watch_scopes {
            for scope in &map.predicate.watch_scopes {
                let file = targets.file_mut(&scope.binary);
                for name in &scope.symbols {
                    let symbol = TargetSymbol {
                        name: name.clone(),
                        version: None,
                        map_offset: None,
                        declared: false,
                        map_unresolved: None,
                    };
                    merge(file, symbol);
                }
            }
        }
        targets
    }

    fn file_mut(&mut self, binary: &BinaryRef) -> &mut TargetFile {
        let index = match self.by_path.get(&binary.path) {
            Some(&index) => {
                let known = &self.files[index].binary;
                if known.build_id != binary.build_id || known.sha256 != binary.sha256 {
                    // The validator should have caught it; the first identity wins and the build-id check
                    // before attaching keeps a wrong one from being probed by offset.
                    warn!(path = %binary.path, "the map gives two identities for one file; using the first");
                }
                index
            }
            None => {
                self.files.push(TargetFile {
                    binary: binary.clone(),
                    symbols: Vec::new(),
                });
                self.by_path
                    .insert(binary.path.clone(), self.files.len() - 1);
                self.files.len() - 1
            }
        };
        &mut self.files[index]
    }

    pub fn files(&self) -> &[TargetFile] {
        &self.files
    }

    pub fn file(&self, index: TargetIndex) -> Option<&TargetFile> {
        self.files.get(index)
    }

    pub fn index_of(&self, path: &str) -> Option<TargetIndex> {
        self.by_path.get(path).copied()
    }

    /// The map's binary paths (what discovery looks for in a process's maps).
    pub fn paths(&self) -> BTreeSet<String> {
        self.by_path.keys().cloned().collect()
    }

    /// The map's entrypoints (what `--all` selects processes by).
    pub fn entrypoints(&self) -> &BTreeSet<String> {
        &self.entrypoints
    }

    /// Total functions over all files.
    pub fn symbol_count(&self) -> usize {
        self.files.iter().map(|f| f.symbols.len()).sum()
    }
}

/// Adds `symbol`, or upgrades the existing one: declared wins over watched, and a recorded offset is kept.
fn merge(file: &mut TargetFile, symbol: TargetSymbol) {
    let existing = file.symbols.iter_mut().find(|s| {
        s.name == symbol.name && (s.version == symbol.version || !symbol.declared || !s.declared)
    });
    match existing {
        Some(existing) => {
            if symbol.declared && !existing.declared {
                *existing = symbol;
            } else if existing.map_offset.is_none() {
                existing.map_offset = symbol.map_offset;
            }
        }
        None => file.symbols.push(symbol),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid map: `app` calls `SSL_connect` in libssl and `lg_hot` in itself; libssl is watched.
    pub(crate) fn sample_map() -> FunctionMap {
        let json = serde_json::json!({
            "_type": "https://stella.ops/predicates/function-map/v1",
            "subject": { "purl": "pkg:oci/app", "digest": {} },
            "predicate": {
                "schemaVersion": "1.0.0",
                "service": "app",
                "expectedPaths": [
                    { "id": "app:SSL_connect", "entrypoint": "/usr/bin/app", "tags": ["tls"], "calls": [
                        { "symbol": "SSL_connect", "version": "OPENSSL_3.0.0",
                          "binary": { "path": "/usr/lib/libssl.so.3", "buildId": "aa11" }, "offset": 4096 } ] },
                    { "id": "app:lg_hot", "entrypoint": "/usr/bin/app", "calls": [
                        { "symbol": "lg_hot", "binary": { "path": "/usr/bin/app", "buildId": "bb22" } } ] }
                ],
                "watchScopes": [
                    { "binary": { "path": "/usr/lib/libssl.so.3", "buildId": "aa11" }, "tags": ["tls"],
                      "symbols": ["SSL_connect", "SSL_read", "SSL_write"] }
                ],
                "generatedAt": "2026-01-01T00:00:00Z"
            }
        });
        let map: FunctionMap = serde_json::from_value(json).unwrap();
        map.validate().unwrap();
        map
    }

    #[test]
    fn files_group_declared_calls_and_watched_symbols() {
        let map = sample_map();
        let targets = Targets::from_map(&map, true);
        assert_eq!(targets.files().len(), 2);
        assert_eq!(
            targets.entrypoints().iter().collect::<Vec<_>>(),
            ["/usr/bin/app"]
        );
        let ssl = targets
            .file(targets.index_of("/usr/lib/libssl.so.3").unwrap())
            .unwrap();
        let names: Vec<(&str, bool)> = ssl
            .symbols
            .iter()
            .map(|s| (s.name.as_str(), s.declared))
            .collect();
        // SSL_connect is both declared and watched: one target, declared, with the map's version and offset.
        assert_eq!(
            names,
            [
                ("SSL_connect", true),
                ("SSL_read", false),
                ("SSL_write", false)
            ]
        );
        assert_eq!(ssl.symbols[0].version.as_deref(), Some("OPENSSL_3.0.0"));
        assert_eq!(ssl.symbols[0].map_offset, Some(4096));
        assert_eq!(targets.symbol_count(), 4);
    }

    #[test]
    fn watch_scopes_are_left_out_when_not_wanted() {
        let targets = Targets::from_map(&sample_map(), false);
        assert_eq!(targets.symbol_count(), 2);
        assert_eq!(targets.paths().len(), 2);
    }
}
