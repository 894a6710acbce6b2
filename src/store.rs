//! A key-value store with compare-and-swap, the shape of proxy-wasm shared data.
//!
//! The core's shared-state algorithms (nonce table, rate-limit buckets) are written against this trait,
//! so they are tested natively with [`MemoryStore`] (which can inject CAS conflicts) and run in Envoy over
//! `get_shared_data`/`set_shared_data`, shared by all worker threads of one Envoy process.

use std::collections::HashMap;

/// A compare-and-swap token as returned by [`SharedStore::get`].
pub type Cas = u32;

/// Why a write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read: read again and retry.
    CasMismatch,
    /// The host refused or failed the operation.
    Unavailable,
}

/// Shared data: `get` returns the value and a CAS token; `set` with `Some(cas)` succeeds only if the
/// value was not written since (with `None` it always writes).
pub trait SharedStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError>;
    fn set(&mut self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError>;
}

/// An in-process store for `edgeward eval`, tests and any single-threaded host.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: HashMap<String, (Vec<u8>, Cas)>,
    /// Test hook: the next `n` CAS writes fail with `CasMismatch` (as if another worker won the race).
    pub inject_cas_conflicts: u32,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys the store holds (bounded-memory tests).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total bytes of all values.
    pub fn value_bytes(&self) -> usize {
        self.map.values().map(|(v, _)| v.len()).sum()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError> {
        Ok(match self.map.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        if cas.is_some() && self.inject_cas_conflicts > 0 {
            self.inject_cas_conflicts -= 1;
            return Err(StoreError::CasMismatch);
        }
        let current = self.map.get(key).map(|(_, c)| *c);
        if let Some(expected) = cas {
            if current != Some(expected) {
                return Err(StoreError::CasMismatch);
            }
        }
        let next = current.map_or(1, |c| c.wrapping_add(1).max(1));
        self.map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn cas_semantics() {
        let mut s = MemoryStore::new();
        assert_eq!(s.get("k").unwrap(), (None, None));
        s.set("k", b"a", None).unwrap();
        let (v, cas) = s.get("k").unwrap();
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        s.set("k", b"b", cas).unwrap();
        assert_eq!(s.set("k", b"c", cas), Err(StoreError::CasMismatch));
        s.inject_cas_conflicts = 1;
        let (_, cas) = s.get("k").unwrap();
        assert_eq!(s.set("k", b"c", cas), Err(StoreError::CasMismatch));
        s.set("k", b"c", cas).unwrap();
        assert_eq!(s.get("k").unwrap().0.as_deref(), Some(&b"c"[..]));
    }
}
