// SPDX-License-Identifier: Apache-2.0
//! The map, indexed for O(1) matching of records: (binary path, symbol) -> the calls of all paths that
//! probe it, and binary path -> the file's build-ids and calls.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::function_map::FunctionMap;

/// One call of one path, as seen from a record key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot<'m> {
    /// Index into the verifier's per-call state (calls of all paths, in map order).
    pub(super) call: usize,
    /// The path's entrypoint, compared with a record's `exe`.
    pub(super) entrypoint: &'m str,
    /// The map's build-id of the call's binary.
    pub(super) build_id: Option<&'m str>,
}

/// The calls probing one (binary, symbol), and the binary's index.
#[derive(Debug)]
pub(super) struct CallKey<'m> {
    pub(super) binary: usize,
    pub(super) slots: Vec<Slot<'m>>,
}

/// The multiply-rotate hash of rustc (FxHash). Every record costs one or two lookups, and SipHash was
/// ~5% of verification time. Only the map's own strings are inserted, so input records cannot choose
/// colliding keys to slow the table down.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let (words, rest) = bytes.as_chunks::<8>();
        for word in words {
            self.add(u64::from_le_bytes(*word));
        }
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Default)]
struct BinaryInfo<'m> {
    build_ids: Vec<&'m str>,
    calls: Vec<usize>,
}

#[derive(Debug)]
pub(super) struct MapIndex<'m> {
    by_call: FxMap<(&'m str, &'m str), CallKey<'m>>,
    by_binary: FxMap<&'m str, usize>,
    binaries: Vec<BinaryInfo<'m>>,
    /// Per path, the index of its first call in the per-call state.
    path_offsets: Vec<usize>,
    call_count: usize,
}

impl<'m> MapIndex<'m> {
    pub(super) fn new(map: &'m FunctionMap) -> Self {
        let mut index = Self {
            by_call: FxMap::default(),
            by_binary: FxMap::default(),
            binaries: Vec::new(),
            path_offsets: Vec::with_capacity(map.predicate.expected_paths.len()),
            call_count: 0,
        };
        for path in &map.predicate.expected_paths {
            index.path_offsets.push(index.call_count);
            for call in &path.calls {
                let slot = Slot {
                    call: index.call_count,
                    entrypoint: &path.entrypoint,
                    build_id: call.binary.build_id.as_deref(),
                };
                index.call_count += 1;
                let b = index.binary_entry(&call.binary.path, call.binary.build_id.as_deref());
                index.binaries[b].calls.push(slot.call);
                index
                    .by_call
                    .entry((call.binary.path.as_str(), call.symbol.as_str()))
                    .or_insert_with(|| CallKey {
                        binary: b,
                        slots: Vec::new(),
                    })
                    .slots
                    .push(slot);
            }
        }
        for scope in &map.predicate.watch_scopes {
            index.binary_entry(&scope.binary.path, scope.binary.build_id.as_deref());
        }
        index
    }

    fn binary_entry(&mut self, path: &'m str, build_id: Option<&'m str>) -> usize {
        let next = self.binaries.len();
        let b = *self.by_binary.entry(path).or_insert(next);
        if b == next {
            self.binaries.push(BinaryInfo::default());
        }
        if let Some(id) = build_id
            && !self.binaries[b].build_ids.contains(&id)
        {
            self.binaries[b].build_ids.push(id);
        }
        b
    }

    pub(super) fn call_count(&self) -> usize {
        self.call_count
    }

    pub(super) fn binary_count(&self) -> usize {
        self.binaries.len()
    }

    /// The per-call state index of call `call` of path `path`.
    pub(super) fn call_index(&self, path: usize, call: usize) -> usize {
        self.path_offsets[path] + call
    }

    /// The calls probing `symbol` in `binary`.
    pub(super) fn calls_of<'s>(
        &'s self,
        binary: &'s str,
        symbol: &'s str,
    ) -> Option<&'s CallKey<'m>> {
        // HashMap is covariant in its key type, so the map's `&'m str` keys can be looked up with
        // shorter-lived borrowed strings from a record, without allocating a key.
        let by_call: &'s FxMap<(&'s str, &'s str), CallKey<'m>> = &self.by_call;
        by_call.get(&(binary, symbol))
    }

    /// The index of a binary path of the map.
    pub(super) fn binary(&self, path: &str) -> Option<usize> {
        self.by_binary.get(path).copied()
    }

    /// Build-ids the map records for binary `b` (normally one; empty for files identified by sha256).
    pub(super) fn build_ids(&self, b: usize) -> &[&'m str] {
        &self.binaries[b].build_ids
    }

    /// Per-call state indexes of the calls defined in binary `b`.
    pub(super) fn calls_in_binary(&self, b: usize) -> &[usize] {
        &self.binaries[b].calls
    }
}
