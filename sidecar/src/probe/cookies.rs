// SPDX-License-Identifier: Apache-2.0
//! Cookie allocation. A cookie is a BPF counter index: one per (process, file, function start), so counts
//! are attributed to the process that made the calls. Cookies of exited processes are reused last-freed-
//! last (FIFO), which keeps a late first-seen event of an old owner from landing on a fresh one.

use std::collections::VecDeque;

/// Hands out cookies `0..max`.
#[derive(Debug)]
pub struct CookieTable {
    next: u32,
    max: u32,
    free: VecDeque<u32>,
}

impl CookieTable {
    pub fn new(max: u32) -> Self {
        Self {
            next: 0,
            max,
            free: VecDeque::new(),
        }
    }

    /// `n` cookies, or `None` (and nothing taken) when fewer are left.
    pub fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        let fresh = (self.max - self.next) as usize;
        if n > fresh + self.free.len() {
            return None;
        }
        let from_fresh = n.min(fresh);
        let mut cookies: Vec<u32> = (self.next..self.next + from_fresh as u32).collect();
        self.next += from_fresh as u32;
        cookies.extend(self.free.drain(..n - from_fresh));
        Some(cookies)
    }

    pub fn free(&mut self, cookies: impl IntoIterator<Item = u32>) {
        self.free.extend(cookies);
    }

    /// Cookies handed out and not freed.
    pub fn in_use(&self) -> usize {
        self.next as usize - self.free.len()
    }

    pub fn capacity(&self) -> u32 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_unique_until_freed_and_reused_oldest_first() {
        let mut table = CookieTable::new(5);
        assert_eq!(table.alloc(3), Some(vec![0, 1, 2]));
        assert_eq!(table.alloc(3), None, "all or nothing");
        assert_eq!(table.in_use(), 3);
        table.free([1]);
        table.free([0]);
        assert_eq!(table.alloc(3), Some(vec![3, 4, 1]));
        assert_eq!(table.alloc(1), Some(vec![0]));
        assert_eq!(table.alloc(1), None);
        assert_eq!(table.in_use(), 5);
    }
}
