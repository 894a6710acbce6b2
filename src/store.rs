//! A key-value store with compare-and-swap, the shape of proxy-wasm shared data.
//!
//! The core's shared-state algorithms (nonce table, rate-limit buckets) are written against this trait,
//! so they are tested natively with [`MemoryStore`] (which can inject CAS conflicts) and run in Envoy over
//! `get_shared_data`/`set_shared_data`, shared by all worker threads of one Envoy process.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

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
    /// How many `get` calls reached the store (tests count host calls saved by [`ReadAhead`]).
    pub reads: Cell<u32>,
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
        self.reads.set(self.reads.get().saturating_add(1));
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

/// A store that fails every operation (`Unavailable`): the tests' host whose shared data is down.
#[cfg(test)]
pub struct DownStore;

#[cfg(test)]
impl SharedStore for DownStore {
    fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError> {
        Err(StoreError::Unavailable)
    }
    fn set(&mut self, _: &str, _: &[u8], _: Option<Cas>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
}

/// One read: the key, its value and CAS token.
type Read = (String, Option<Vec<u8>>, Option<Cas>);

/// Reads made early (a rate-limit bucket read on the request head) kept for the same request's later
/// step, so that the step costs no second host call. Each kept read serves ONE `get` of its key: a
/// compare-and-swap that then fails (someone wrote since) re-reads from the real store, so a stale
/// read costs a retry (one of the step's compare-and-swap attempts and one more read), never a wrong
/// write. Reads without a CAS token (absent keys) are not kept: their write would be unconditional.
#[derive(Default)]
pub struct ReadAhead {
    reads: Cell<Vec<Read>>,
}

// Values are bucket images and keys hold hashes of client keys: neither is printed.
impl fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadAhead")
            .field("reads", &self.len())
            .finish()
    }
}

impl ReadAhead {
    /// A read-only view of `inner` that keeps a copy of every successful read.
    pub fn recording<'a>(&'a self, inner: &'a dyn SharedStore) -> Recording<'a> {
        Recording { inner, ahead: self }
    }

    /// `inner`, with the kept reads served first (once each).
    pub fn replaying<'a>(&'a self, inner: &'a mut dyn SharedStore) -> Replaying<'a> {
        Replaying { inner, ahead: self }
    }

    /// How many reads are kept.
    pub fn len(&self) -> usize {
        let reads = self.reads.take();
        let n = reads.len();
        self.reads.set(reads);
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keep(&self, read: Read) {
        let mut reads = self.reads.take();
        reads.retain(|(k, _, _)| *k != read.0);
        reads.push(read);
        self.reads.set(reads);
    }

    fn take(&self, key: &str) -> Option<(Option<Vec<u8>>, Option<Cas>)> {
        let mut reads = self.reads.take();
        let found = reads
            .iter()
            .position(|(k, _, _)| k == key)
            .map(|i| reads.swap_remove(i));
        self.reads.set(reads);
        found.map(|(_, v, c)| (v, c))
    }

    fn forget(&self, key: &str) {
        let mut reads = self.reads.take();
        reads.retain(|(k, _, _)| k != key);
        self.reads.set(reads);
    }
}

/// See [`ReadAhead::recording`]. Writes are refused (`Unavailable`): it is for checks that only read.
pub struct Recording<'a> {
    inner: &'a dyn SharedStore,
    ahead: &'a ReadAhead,
}

impl SharedStore for Recording<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError> {
        let (value, cas) = self.inner.get(key)?;
        // A read without a CAS token cannot be replayed safely: its write would be unconditional.
        if cas.is_some() {
            self.ahead.keep((key.to_string(), value.clone(), cas));
        }
        Ok((value, cas))
    }

    fn set(&mut self, _key: &str, _value: &[u8], _cas: Option<Cas>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
}

/// See [`ReadAhead::replaying`].
pub struct Replaying<'a> {
    inner: &'a mut dyn SharedStore,
    ahead: &'a ReadAhead,
}

impl SharedStore for Replaying<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError> {
        match self.ahead.take(key) {
            Some(read) => Ok(read),
            None => self.inner.get(key),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        self.ahead.forget(key);
        self.inner.set(key, value, cas)
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

    #[test]
    fn read_ahead_serves_each_read_once_then_the_store() {
        let mut s = MemoryStore::new();
        s.set("k", b"a", None).unwrap();
        let ahead = ReadAhead::default();
        let (v, cas) = ahead.recording(&s).get("k").unwrap();
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        assert_eq!((ahead.len(), s.reads.get()), (1, 1));
        // Someone writes meanwhile: the kept read is served once (stale), the CAS write then fails and
        // the retry reads the store.
        s.set("k", b"b", cas).unwrap();
        let mut r = ahead.replaying(&mut s);
        let (v1, cas1) = r.get("k").unwrap();
        assert_eq!((v1.as_deref(), cas1), (Some(&b"a"[..]), cas));
        assert_eq!(r.set("k", b"c", cas1), Err(StoreError::CasMismatch));
        let (v2, cas2) = r.get("k").unwrap();
        assert_eq!(v2.as_deref(), Some(&b"b"[..]));
        r.set("k", b"c", cas2).unwrap();
        assert!(ahead.is_empty());
        assert_eq!(s.reads.get(), 2);
        assert_eq!(s.get("k").unwrap().0.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn recording_is_read_only_keeps_reads_with_a_cas_and_debug_prints_no_values() {
        let mut s = MemoryStore::new();
        s.set("edgeward.rl.x.0", b"secret-ish", None).unwrap();
        let ahead = ReadAhead::default();
        let mut rec = ahead.recording(&s);
        assert_eq!(rec.set("k", b"v", None), Err(StoreError::Unavailable));
        rec.get("edgeward.rl.x.0").unwrap();
        // An absent key has no CAS token: replaying it would make the step's write unconditional.
        assert_eq!(rec.get("absent").unwrap(), (None, None));
        let dbg = format!("{ahead:?}");
        assert_eq!(dbg, "ReadAhead { reads: 1 }");
        assert_eq!(ahead.len(), 1);
    }
}
