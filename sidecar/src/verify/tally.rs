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
}

/// Totals of what was left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Omitted {
    pub(crate) keys_evicted: u64,
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

    /// The entry of `key`, created with `make` if it qualifies. `None` means the key is left out: the
    /// caller adds its record to [`Self::omit`].
    pub(crate) fn entry(&mut self, key: &str, make: impl FnOnce() -> V) -> Option<&mut V> {
        if !self.entries.contains_key(key) {
            if self.entries.len() >= self.cap {
                let largest_is_bigger = self
                    .entries
                    .last_key_value()
                    .is_some_and(|(k, _)| **k > *key);
                if !largest_is_bigger {
                    return None;
                }
                if let Some((_, evicted)) = self.entries.pop_last() {
                    self.omitted.keys_evicted += 1;
                    self.omitted.records += evicted.records();
                    self.omitted.total = self.omitted.total.saturating_add(evicted.total());
                }
            }
            self.entries.insert(key.into(), make());
        }
        self.entries.get_mut(key)
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
    fn nothing_omitted_under_the_cap() {
        let (kept, omitted) = feed(&[("x", 1), ("x", 1)]);
        assert_eq!(kept, vec![("x".to_owned(), 2)]);
        assert_eq!(omitted, None);
    }
}
