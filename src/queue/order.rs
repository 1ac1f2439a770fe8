//! An order-statistic set of `u64` keys: insert, remove, minimum and rank in O(log n).
//!
//! A treap in an arena. Node priorities are a hash of the key, so the shape is deterministic
//! for a given key set (no randomness in the core) and balanced in expectation for any keys
//! that are not chosen adversarially against the hash.

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    key: u64,
    heap: u64,
    size: u32,
    left: u32,
    right: u32,
}

/// A set of distinct `u64` keys that can tell the rank of any key.
#[derive(Debug, Clone)]
pub struct OrderSet {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
}

impl Default for OrderSet {
    fn default() -> Self {
        Self::new()
    }
}

/// splitmix64: a well-mixed hash used as the treap's heap priority.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl OrderSet {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.size(self.root) as usize
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.root == NIL
    }

    fn size(&self, n: u32) -> u32 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].size
        }
    }

    fn update(&mut self, n: u32) {
        let (l, r) = {
            let node = &self.nodes[n as usize];
            (node.left, node.right)
        };
        self.nodes[n as usize].size = 1 + self.size(l) + self.size(r);
    }

    /// Splits `t` into keys `< key` and keys `>= key`.
    fn split(&mut self, t: u32, key: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.nodes[t as usize].key < key {
            let (l, r) = self.split(self.nodes[t as usize].right, key);
            self.nodes[t as usize].right = l;
            self.update(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.nodes[t as usize].left, key);
            self.nodes[t as usize].left = r;
            self.update(t);
            (l, t)
        }
    }

    /// Joins two treaps where every key of `a` is below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].heap > self.nodes[b as usize].heap {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = r;
            self.update(a);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = l;
            self.update(b);
            b
        }
    }

    /// True when `key` is in the set.
    pub fn contains(&self, key: u64) -> bool {
        let mut n = self.root;
        while n != NIL {
            let node = &self.nodes[n as usize];
            if key == node.key {
                return true;
            }
            n = if key < node.key {
                node.left
            } else {
                node.right
            };
        }
        false
    }

    /// Adds `key`; returns false (and changes nothing) if it was already present.
    pub fn insert(&mut self, key: u64) -> bool {
        if self.contains(key) {
            return false;
        }
        let heap = mix(key);
        // Descend while the path's nodes outrank the new one, counting it in their sizes.
        let (mut parent, mut went_left, mut n) = (NIL, false, self.root);
        while n != NIL && self.nodes[n as usize].heap > heap {
            let node = &mut self.nodes[n as usize];
            node.size += 1;
            parent = n;
            went_left = key < node.key;
            n = if went_left { node.left } else { node.right };
        }
        let (left, right) = self.split(n, key);
        let node = Node {
            key,
            heap,
            size: 1 + self.size(left) + self.size(right),
            left,
            right,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.link(parent, went_left, id);
        true
    }

    /// Points `parent`'s left or right child (or the root when `parent` is NIL) at `child`.
    fn link(&mut self, parent: u32, left: bool, child: u32) {
        if parent == NIL {
            self.root = child;
        } else if left {
            self.nodes[parent as usize].left = child;
        } else {
            self.nodes[parent as usize].right = child;
        }
    }

    /// Removes `key`; returns false if it was not present.
    pub fn remove(&mut self, key: u64) -> bool {
        if !self.contains(key) {
            return false;
        }
        // Descend to the node, uncounting it from every ancestor, then splice its children.
        let (mut parent, mut went_left, mut n) = (NIL, false, self.root);
        while self.nodes[n as usize].key != key {
            let node = &mut self.nodes[n as usize];
            node.size -= 1;
            parent = n;
            went_left = key < node.key;
            n = if went_left { node.left } else { node.right };
        }
        let (left, right) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let merged = self.merge(left, right);
        self.link(parent, went_left, merged);
        self.free.push(n);
        true
    }

    /// The smallest key.
    pub fn first(&self) -> Option<u64> {
        let mut n = self.root;
        if n == NIL {
            return None;
        }
        while self.nodes[n as usize].left != NIL {
            n = self.nodes[n as usize].left;
        }
        Some(self.nodes[n as usize].key)
    }

    /// The keys in ascending order.
    pub fn iter(&self) -> Iter<'_> {
        let mut iter = Iter {
            set: self,
            stack: Vec::new(),
        };
        iter.descend(self.root);
        iter
    }

    /// The smallest key at or above `key`.
    pub fn first_from(&self, key: u64) -> Option<u64> {
        let mut n = self.root;
        let mut best = None;
        while n != NIL {
            let node = &self.nodes[n as usize];
            if node.key >= key {
                best = Some(node.key);
                n = node.left;
            } else {
                n = node.right;
            }
        }
        best
    }

    /// Number of keys strictly below `key`.
    pub fn rank(&self, key: u64) -> usize {
        let mut n = self.root;
        let mut rank = 0u32;
        while n != NIL {
            let node = &self.nodes[n as usize];
            if node.key < key {
                rank += 1 + self.size(node.left);
                n = node.right;
            } else {
                n = node.left;
            }
        }
        rank as usize
    }
}

/// The keys of an [`OrderSet`] in ascending order, O(1) amortised per key.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    set: &'a OrderSet,
    /// Nodes whose key and right subtree are still to come, the next on top.
    stack: Vec<u32>,
}

impl Iter<'_> {
    fn descend(&mut self, mut n: u32) {
        while n != NIL {
            self.stack.push(n);
            n = self.set.nodes[n as usize].left;
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let n = self.stack.pop()?;
        let node = &self.set.nodes[n as usize];
        self.descend(node.right);
        Some(node.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn first_from_is_the_successor(keys in proptest::collection::btree_set(0u64..1000, 0..60), probe in 0u64..1100) {
            let mut s = OrderSet::new();
            for k in &keys {
                s.insert(*k);
            }
            prop_assert_eq!(s.first_from(probe), keys.range(probe..).next().copied());
        }
    }

    #[test]
    fn basic_operations() {
        let mut s = OrderSet::new();
        assert!(s.is_empty());
        assert_eq!(s.first(), None);
        for k in [50, 10, 30, 20, 40] {
            assert!(s.insert(k));
        }
        assert!(!s.insert(30));
        assert_eq!(s.len(), 5);
        assert_eq!(s.first(), Some(10));
        assert_eq!(s.rank(10), 0);
        assert_eq!(s.rank(30), 2);
        assert_eq!(s.rank(35), 3);
        assert_eq!(s.rank(1000), 5);
        assert!(s.remove(10));
        assert!(!s.remove(10));
        assert_eq!(s.first(), Some(20));
        assert_eq!(s.rank(30), 1);
        assert!(s.insert(u64::MAX));
        assert!(s.remove(u64::MAX));
        assert_eq!(s.len(), 4);
    }

    proptest! {
        #[test]
        fn matches_a_btreeset(ops in proptest::collection::vec((any::<bool>(), 0u64..64), 0..400)) {
            let mut s = OrderSet::new();
            let mut model = BTreeSet::new();
            for (insert, k) in ops {
                if insert {
                    prop_assert_eq!(s.insert(k), model.insert(k));
                } else {
                    prop_assert_eq!(s.remove(k), model.remove(&k));
                }
                prop_assert_eq!(s.len(), model.len());
                prop_assert_eq!(s.first(), model.iter().next().copied());
                let probe = k ^ 17;
                prop_assert_eq!(s.rank(probe), model.range(..probe).count());
                prop_assert_eq!(s.contains(k), model.contains(&k));
                prop_assert!(s.iter().eq(model.iter().copied()));
            }
        }
    }
}
