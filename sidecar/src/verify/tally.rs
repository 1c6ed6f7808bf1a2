// SPDX-License-Identifier: Apache-2.0
//! A map of sums that keeps at most `cap` keys: the smallest ones (docs/contracts/verification.md
//! section 8). Everything else is summed into an "omitted" total, so memory is bounded whatever the input
//! holds, and the kept entries do not depend on the order in which keys arrive.
//!
//! Why the smallest keys are exact: a key is only evicted when `cap` smaller keys are present, and from
//! then on the largest kept key only decreases, so an evicted key can never qualify again.

use std::collections::BTreeMap;

/// What an entry contributes to the omitted totals when it is left out.
pub(crate) trait Weight {
    /// Records summed into the entry.
    fn records(&self) -> u64;
    /// The entry's total (calls for unexpected symbols, records for probe failures).
    fn total(&self) -> u64;
    /// Adds another entry of the same key.
    fn merge(&mut self, other: Self);
}

/// Totals of what was left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Omitted {
    pub(crate) records: u64,
    pub(crate) total: u64,
}

#[derive(Debug)]
pub(crate) struct BoundedTally<V> {
    cap: usize,
    entries: BTreeMap<Box<str>, V>,
    omitted: Omitted,
}

impl<V: Weight> BoundedTally<V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            entries: BTreeMap::new(),
            omitted: Omitted::default(),
        }
    }

    /// Whether a new `key` may be inserted, evicting the largest key if that is larger.
    fn make_room(&mut self, key: &str) -> bool {
        if self.entries.len() < self.cap {
            return true;
        }
        if !self
            .entries
            .last_key_value()
            .is_some_and(|(k, _)| **k > *key)
        {
            return false;
        }
        if let Some((_, evicted)) = self.entries.pop_last() {
            self.omitted.records += evicted.records();
            self.omitted.total = self.omitted.total.saturating_add(evicted.total());
        }
        true
    }

    /// The entry of `key`, created with `make` if it qualifies. `None` means the key is left out: the
    /// caller adds its record to [`Self::omit`].
    pub(crate) fn entry(&mut self, key: &str, make: impl FnOnce() -> V) -> Option<&mut V> {
        if !self.entries.contains_key(key) {
            if !self.make_room(key) {
                return None;
            }
            self.entries.insert(key.into(), make());
        }
        self.entries.get_mut(key)
    }

    /// Adds a tally of another part of the input. The result keeps the smallest keys of both with exact
    /// sums: a key among the `cap` smallest overall is among the `cap` smallest of every part.
    pub(crate) fn merge(&mut self, other: Self) {
        for (key, value) in other.entries {
            if let Some(mine) = self.entries.get_mut(&key) {
                mine.merge(value);
            } else if self.make_room(&key) {
                self.entries.insert(key, value);
            } else {
                self.omitted.records += value.records();
                self.omitted.total = self.omitted.total.saturating_add(value.total());
            }
        }
        self.omitted.records += other.omitted.records;
        self.omitted.total = self.omitted.total.saturating_add(other.omitted.total);
    }

    /// Counts one record of a key that was left out.
    pub(crate) fn omit(&mut self, total: u64) {
        self.omitted.records += 1;
        self.omitted.total = self.omitted.total.saturating_add(total);
    }

    /// The kept entries in key order, and the omitted totals (`None` when nothing was left out).
    pub(crate) fn into_parts(self) -> (BTreeMap<Box<str>, V>, Option<Omitted>) {
        let omitted = (self.omitted.records > 0).then_some(self.omitted);
        (self.entries, omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Sum(u64, u64);
    impl Weight for Sum {
        fn records(&self) -> u64 {
            self.0
        }
        fn total(&self) -> u64 {
            self.1
        }
        fn merge(&mut self, other: Self) {
            self.0 += other.0;
            self.1 += other.1;
        }
    }

    fn feed(order: &[(&str, u64)]) -> (Vec<(String, u64)>, Option<Omitted>) {
        let mut t = BoundedTally::new(2);
        for (k, n) in order {
            match t.entry(k, Sum::default) {
                Some(e) => {
                    e.0 += 1;
                    e.1 += n;
                }
                None => t.omit(*n),
            }
        }
        let (entries, omitted) = t.into_parts();
        (
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.1))
                .collect(),
            omitted,
        )
    }

    #[test]
    fn keeps_the_smallest_keys_with_exact_sums_in_any_order() {
        let input = [("c", 1), ("a", 2), ("d", 4), ("b", 8), ("c", 16), ("a", 32)];
        let (kept, omitted) = feed(&input);
        assert_eq!(kept, vec![("a".to_owned(), 34), ("b".to_owned(), 8)]);
        let omitted = omitted.expect("c and d were left out");
        assert_eq!((omitted.records, omitted.total), (3, 21));
        let mut reversed = input;
        reversed.reverse();
        let (kept_rev, omitted_rev) = feed(&reversed);
        assert_eq!(kept_rev, kept);
        assert_eq!(omitted_rev.map(|o| (o.records, o.total)), Some((3, 21)));
    }

    #[test]
    fn merging_parts_equals_one_pass() {
        let input = [
            ("e", 1),
            ("a", 2),
            ("d", 4),
            ("b", 8),
            ("c", 16),
            ("a", 32),
            ("e", 64),
            ("b", 128),
        ];
        let tally = |part: &[(&str, u64)]| {
            let mut t = BoundedTally::new(2);
            for (k, n) in part {
                match t.entry(k, Sum::default) {
                    Some(e) => e.merge(Sum(1, *n)),
                    None => t.omit(*n),
                }
            }
            t
        };
        let one = tally(&input).into_parts();
        for split in 0..input.len() {
            let mut left = tally(&input[..split]);
            left.merge(tally(&input[split..]));
            let merged = left.into_parts();
            assert_eq!(merged.0, one.0, "split at {split}");
            assert_eq!(merged.1, one.1, "split at {split}");
        }
    }

    #[test]
    fn nothing_omitted_under_the_cap() {
        let (kept, omitted) = feed(&[("x", 1), ("x", 1)]);
        assert_eq!(kept, vec![("x".to_owned(), 2)]);
        assert_eq!(omitted, None);
    }
}
