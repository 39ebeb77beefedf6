//! Which skip (and dry-run) decisions have been journaled already, so that a repeated alert
//! does not write the same decision again: bounded, because an alert storm of distinct
//! alerts must not grow memory without limit.

use std::collections::{HashMap, HashSet};

use super::plan::WorkKey;

/// Decisions seen, per work key. When more than `cap` are held, the oldest work key's are
/// forgotten first (a repeat of those is journaled once more, nothing else).
#[derive(Debug)]
pub struct Seen {
    by_key: HashMap<WorkKey, HashSet<(String, &'static str)>>,
    /// Work keys in the order they were first seen (some may have been removed since).
    order: std::collections::VecDeque<WorkKey>,
    len: usize,
    cap: usize,
}

impl Seen {
    /// An empty set holding at most `cap` decisions.
    pub fn new(cap: usize) -> Seen {
        Seen {
            by_key: HashMap::new(),
            order: Default::default(),
            len: 0,
            cap: cap.max(1),
        }
    }

    /// Records (key, fingerprint, kind); true when it was not seen before.
    pub fn insert(&mut self, key: &WorkKey, fingerprint: &str, kind: &'static str) -> bool {
        let set = match self.by_key.get_mut(key) {
            Some(s) => s,
            None => {
                self.order.push_back(key.clone());
                self.by_key.entry(key.clone()).or_default()
            }
        };
        if !set.insert((fingerprint.to_string(), kind)) {
            return false;
        }
        self.len += 1;
        // Forgotten keys leave stale entries behind; drop them before the queue outgrows
        // what it indexes.
        if self.order.len() > 2 * self.cap + 16 {
            let mut live: HashSet<WorkKey> = HashSet::new();
            let by_key = &self.by_key;
            self.order
                .retain(|k| by_key.contains_key(k) && live.insert(k.clone()));
        }
        while self.len > self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.by_key.remove(&old) {
                self.len -= s.len();
            }
        }
        true
    }

    /// Forgets every decision about `key` (new work for it starts a fresh story).
    pub fn forget(&mut self, key: &WorkKey) {
        if let Some(s) = self.by_key.remove(key) {
            self.len -= s.len();
        }
    }

    /// Forgets one decision (key, fingerprint, kind).
    pub fn forget_one(&mut self, key: &WorkKey, fingerprint: &str, kind: &'static str) {
        let Some(set) = self.by_key.get_mut(key) else {
            return;
        };
        if set.remove(&(fingerprint.to_string(), kind)) {
            self.len -= 1;
            if set.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    /// Forgets every decision about work in `scope`.
    pub fn forget_scope(&mut self, scope: &crate::engine::policy::Scope) {
        let keys: Vec<WorkKey> = self
            .by_key
            .keys()
            .filter(|k| scope.covers(&k.rule, k.target.as_deref()))
            .cloned()
            .collect();
        for k in keys {
            self.forget(&k);
        }
    }

    /// Decisions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str) -> WorkKey {
        WorkKey {
            rule: "r".into(),
            target: Some(t.into()),
            params: Default::default(),
        }
    }

    #[test]
    fn repeats_are_seen_and_the_oldest_keys_go_first() {
        let mut s = Seen::new(3);
        assert!(s.insert(&key("a"), "f1", "cooldown"));
        assert!(!s.insert(&key("a"), "f1", "cooldown"));
        assert!(s.insert(&key("a"), "f1", "circuit"));
        assert!(s.insert(&key("b"), "f2", "cooldown"));
        assert_eq!(s.len(), 3);
        // A fourth decision pushes out key a's two.
        assert!(s.insert(&key("c"), "f3", "cooldown"));
        assert_eq!(s.len(), 2);
        assert!(
            s.insert(&key("a"), "f1", "cooldown"),
            "forgotten, so new again"
        );
        assert!(!s.insert(&key("b"), "f2", "cooldown"));
        s.forget_scope(&crate::engine::policy::Scope::target("b"));
        assert!(s.insert(&key("b"), "f2", "cooldown"));
        s.forget(&key("c"));
        assert!(s.insert(&key("c"), "f3", "cooldown"));
    }
}
