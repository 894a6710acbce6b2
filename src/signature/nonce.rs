//! The nonce replay table, over [`SharedStore`] so that all Envoy workers share it.
//!
//! Memory is bounded: `buckets` keys `edgeward.nonce.<n>`, each holding at most `slots` entries
//! `(fingerprint, created, expires_at)` plus a watermark. A (key id, nonce) pair hashes to one bucket and a
//! 64-bit fingerprint, keyed by the document's `nonce_key` (from `EDGEWARD_HASH_KEY` alone, public when it
//! is unset; not from the document text, so that reloads keep finding recorded nonces): with the variable
//! set, a client holding a key cannot pick nonces that land in one bucket of its choice. Entries whose `expires_at` has passed are reclaimed (the
//! freshness check refuses the signature by then anyway). When a bucket is full of live entries the one
//! with the oldest `created` is evicted and the bucket's watermark rises to its `created`: from then on a
//! request in that bucket whose `created` is at or below the watermark cannot be vouched for and is refused
//! (`StoreFull`), so a replay of an evicted nonce is never silently accepted. Legitimate traffic carries a
//! fresh `created` and passes.
//!
//! Bucket layout (little endian): `watermark u64`, then entries of `fingerprint u64, created u64, expires_at u64`.

use crate::store::{SharedStore, StoreError};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// Shape of the nonce table; the same for every worker (memory: `buckets * (8 + 24 * slots)` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceTableConfig {
    pub buckets: u32,
    pub slots: u32,
    /// CAS attempts before giving up with `StoreFull`.
    pub max_retries: u32,
}

impl Default for NonceTableConfig {
    /// 4096 buckets of 16 slots: 65,536 live nonces in about 1.6 MB of shared data.
    fn default() -> Self {
        NonceTableConfig {
            buckets: 4096,
            slots: 16,
            max_retries: 8,
        }
    }
}

/// The result of recording a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// First sighting; recorded.
    Fresh,
    /// Seen before and not yet expired: `signature_replayed`.
    Replayed,
    /// Cannot be vouched for (evicted range, CAS contention, store failure): `nonce_store_full`.
    StoreFull,
}

impl NonceOutcome {
    /// The deny reason, if any: `Replayed` → `signature_replayed`, `StoreFull` → `nonce_store_full`.
    pub fn reason(self) -> Option<crate::decision::Reason> {
        match self {
            NonceOutcome::Fresh => None,
            NonceOutcome::Replayed => Some(crate::decision::Reason::SignatureReplayed),
            NonceOutcome::StoreFull => Some(crate::decision::Reason::NonceStoreFull),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    fingerprint: u64,
    created: u64,
    expires_at: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Bucket {
    watermark: u64,
    entries: Vec<Entry>,
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

impl Bucket {
    fn decode(b: &[u8]) -> Option<Bucket> {
        if b.len() < 8 || !(b.len() - 8).is_multiple_of(24) {
            return None;
        }
        let watermark = read_u64(b, 0)?;
        let mut entries = Vec::with_capacity((b.len() - 8) / 24);
        let mut at = 8;
        while at < b.len() {
            entries.push(Entry {
                fingerprint: read_u64(b, at)?,
                created: read_u64(b, at + 8)?,
                expires_at: read_u64(b, at + 16)?,
            });
            at += 24;
        }
        Some(Bucket { watermark, entries })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 24 * self.entries.len());
        out.extend_from_slice(&self.watermark.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.fingerprint.to_le_bytes());
            out.extend_from_slice(&e.created.to_le_bytes());
            out.extend_from_slice(&e.expires_at.to_le_bytes());
        }
        out
    }
}

/// The shared-data key of bucket `n`.
pub fn bucket_key(n: u32) -> String {
    format!("edgeward.nonce.{n}")
}

/// (bucket, fingerprint) for a key id and nonce; length-prefixed so `("ab","c")` ≠ `("a","bc")`.
/// `hash_key` (the document's `nonce_key`) keys the hash: with `EDGEWARD_HASH_KEY` set, clients cannot
/// predict where a nonce lands.
fn locate(cfg: &NonceTableConfig, hash_key: &[u8; 16], key_id: &str, nonce: &str) -> (u32, u64) {
    let mut h = SipHasher13::new_with_key(hash_key);
    h.write(b"edgeward nonce\0");
    h.write(&(key_id.len() as u64).to_le_bytes());
    h.write(key_id.as_bytes());
    h.write(nonce.as_bytes());
    let v = h.finish128();
    let buckets = u64::from(cfg.buckets.max(1));
    ((v.h1 % buckets) as u32, v.h2)
}

/// Creates every missing bucket (empty, watermark 0). Call once per worker at configure time, before
/// traffic: a bucket that [`check_nonce`] finds missing is created in a fail-closed state instead.
pub fn init_nonce_table(
    store: &mut dyn SharedStore,
    cfg: &NonceTableConfig,
) -> Result<(), StoreError> {
    let empty = Bucket::default().encode();
    for n in 0..cfg.buckets.max(1) {
        let key = bucket_key(n);
        if store.get(&key)?.0.is_none() {
            store.set(&key, &empty, None)?;
        }
    }
    Ok(())
}

/// Records `nonce` for `key_id` unless it was seen and has not expired. `expires_at` is when the
/// signature stops being acceptable anyway (`created + max_age_s`). `hash_key` places the nonce: the
/// document's [`nonce_key`](crate::document::Document::nonce_key) (not `hash_key`, which follows the
/// document text: a reload would lose every recorded nonce), the same in every worker VM.
#[expect(
    clippy::too_many_arguments,
    reason = "the table, its key, the (key id, nonce) pair and three times: nothing to bundle"
)]
pub fn check_nonce(
    store: &mut dyn SharedStore,
    cfg: &NonceTableConfig,
    hash_key: &[u8; 16],
    key_id: &str,
    nonce: &str,
    created: u64,
    expires_at: u64,
    now: u64,
) -> NonceOutcome {
    let (n, fingerprint) = locate(cfg, hash_key, key_id, nonce);
    let key = bucket_key(n);
    let slots = cfg.slots.max(1) as usize;
    for _ in 0..cfg.max_retries.max(1) {
        let Ok((value, cas)) = store.get(&key) else {
            return NonceOutcome::StoreFull;
        };
        let (mut bucket, reset) = match value.as_deref().map(Bucket::decode) {
            Some(Some(b)) => (b, false),
            // Missing (never initialized) or corrupt: whatever it held is lost, so nothing created up to
            // now can be vouched for. Start over with the watermark at `now`.
            _ => (
                Bucket {
                    watermark: now,
                    entries: Vec::new(),
                },
                true,
            ),
        };
        bucket.entries.retain(|e| e.expires_at >= now);
        if bucket.entries.iter().any(|e| e.fingerprint == fingerprint) {
            return NonceOutcome::Replayed;
        }
        let refused = created <= bucket.watermark;
        if !refused {
            while bucket.entries.len() >= slots {
                let oldest = bucket
                    .entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| (e.created, e.expires_at))
                    .map(|(i, _)| i);
                let Some(i) = oldest else { break };
                let evicted = bucket.entries.remove(i);
                bucket.watermark = bucket.watermark.max(evicted.created);
            }
            bucket.entries.push(Entry {
                fingerprint,
                created,
                expires_at,
            });
        } else if !reset {
            return NonceOutcome::StoreFull;
        }
        // A reset bucket is written even when this request is refused, so the next ones can proceed.
        match store.set(&key, &bucket.encode(), cas) {
            Ok(()) if refused => return NonceOutcome::StoreFull,
            Ok(()) => return NonceOutcome::Fresh,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable) => return NonceOutcome::StoreFull,
        }
    }
    NonceOutcome::StoreFull
}

/// Removes a nonce recorded by [`check_nonce`] (a reservation whose request was then refused for a reason
/// other than a replay: it never reached the upstream, so the signature may still be used once). Leaves
/// the watermark alone; a nonce that is no longer there (expired, evicted) is nothing to do. Best effort:
/// a release that cannot land leaves the nonce recorded, which only refuses a later copy (the stricter
/// direction).
pub fn release_nonce(
    store: &mut dyn SharedStore,
    cfg: &NonceTableConfig,
    hash_key: &[u8; 16],
    key_id: &str,
    nonce: &str,
) {
    let (n, fingerprint) = locate(cfg, hash_key, key_id, nonce);
    let key = bucket_key(n);
    for _ in 0..cfg.max_retries.max(1) {
        let Ok((Some(value), cas)) = store.get(&key) else {
            return;
        };
        let Some(mut bucket) = Bucket::decode(&value) else {
            return;
        };
        let before = bucket.entries.len();
        bucket.entries.retain(|e| e.fingerprint != fingerprint);
        if bucket.entries.len() == before {
            return;
        }
        match store.set(&key, &bucket.encode(), cas) {
            Err(StoreError::CasMismatch) => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T: u64 = 1_700_000_000;
    const HK: [u8; 16] = *b"0123456789abcdef";

    fn small() -> NonceTableConfig {
        NonceTableConfig {
            buckets: 1,
            slots: 3,
            max_retries: 4,
        }
    }

    fn fresh_store(cfg: &NonceTableConfig) -> MemoryStore {
        let mut s = MemoryStore::new();
        init_nonce_table(&mut s, cfg).unwrap();
        s
    }

    #[test]
    fn first_use_fresh_then_replayed_until_expiry() {
        let cfg = NonceTableConfig::default();
        let mut s = fresh_store(&cfg);
        let c = |s: &mut MemoryStore, k: &str, n: &str, now: u64| {
            check_nonce(s, &cfg, &HK, k, n, T, T + 300, now)
        };
        assert_eq!(c(&mut s, "k", "n1", T), NonceOutcome::Fresh);
        assert_eq!(c(&mut s, "k", "n1", T + 1), NonceOutcome::Replayed);
        assert_eq!(c(&mut s, "k", "n1", T + 300), NonceOutcome::Replayed);
        // Same nonce, other key: independent.
        assert_eq!(c(&mut s, "k2", "n1", T + 1), NonceOutcome::Fresh);
        // After expiry the entry is reclaimed (the signature itself is stale by then).
        assert_eq!(c(&mut s, "k", "n1", T + 301), NonceOutcome::Fresh);
    }

    /// A reservation given back lets the same signature through once more; a replay is still refused
    /// while it is held, and releasing twice or releasing what was never recorded changes nothing.
    #[test]
    fn a_released_nonce_can_be_used_once_more() {
        let cfg = NonceTableConfig::default();
        let mut s = fresh_store(&cfg);
        let c = |s: &mut MemoryStore, n: &str| check_nonce(s, &cfg, &HK, "k", n, T, T + 300, T);
        assert_eq!(c(&mut s, "n1"), NonceOutcome::Fresh);
        assert_eq!(c(&mut s, "n1"), NonceOutcome::Replayed);
        assert_eq!(c(&mut s, "n2"), NonceOutcome::Fresh);
        release_nonce(&mut s, &cfg, &HK, "k", "n1");
        assert_eq!(c(&mut s, "n2"), NonceOutcome::Replayed, "n2 untouched");
        assert_eq!(c(&mut s, "n1"), NonceOutcome::Fresh);
        assert_eq!(c(&mut s, "n1"), NonceOutcome::Replayed);
        release_nonce(&mut s, &cfg, &HK, "other", "n1");
        release_nonce(&mut s, &cfg, &HK, "k", "never");
        assert_eq!(c(&mut s, "n1"), NonceOutcome::Replayed);
        // The table stays bounded: each release removes at most the entry it recorded.
        let bytes = s.value_bytes();
        for i in 0..1000 {
            let n = format!("x{i}");
            assert_eq!(c(&mut s, &n), NonceOutcome::Fresh);
            release_nonce(&mut s, &cfg, &HK, "k", &n);
        }
        assert!(s.value_bytes() <= bytes, "{} > {bytes}", s.value_bytes());
    }

    #[test]
    fn two_workers_share_the_table() {
        // Two "workers" are two callers on one store; the second sees the first's nonce.
        let cfg = NonceTableConfig::default();
        let mut shared = fresh_store(&cfg);
        let worker = |s: &mut dyn SharedStore| check_nonce(s, &cfg, &HK, "k", "n", T, T + 300, T);
        assert_eq!(worker(&mut shared), NonceOutcome::Fresh);
        assert_eq!(worker(&mut shared), NonceOutcome::Replayed);
    }

    #[test]
    fn cas_conflicts_retried_then_given_up() {
        let cfg = small();
        let mut s = fresh_store(&cfg);
        s.inject_cas_conflicts = 3;
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "a", T, T + 300, T),
            NonceOutcome::Fresh
        );
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "a", T, T + 300, T),
            NonceOutcome::Replayed
        );
        s.inject_cas_conflicts = 4;
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "b", T, T + 300, T),
            NonceOutcome::StoreFull
        );
        // Giving up recorded nothing; the next try (no conflicts) records it.
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "b", T, T + 300, T),
            NonceOutcome::Fresh
        );
    }

    #[test]
    fn full_bucket_evicts_oldest_and_refuses_its_replay() {
        let cfg = small();
        let mut s = fresh_store(&cfg);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            let created = T + i as u64;
            assert_eq!(
                check_nonce(&mut s, &cfg, &HK, "k", n, created, created + 300, T + 3),
                NonceOutcome::Fresh
            );
        }
        // A fourth live nonce evicts "a" (created T) and raises the watermark to T.
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "d", T + 3, T + 303, T + 3),
            NonceOutcome::Fresh
        );
        // "a" replayed: no longer in the table, but refused, never accepted.
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "a", T, T + 300, T + 4),
            NonceOutcome::StoreFull
        );
        // Any request created at or before the watermark is refused too.
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "zz", T, T + 300, T + 4),
            NonceOutcome::StoreFull
        );
        // Still-recorded nonces are reported as replays; fresh traffic passes.
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "c", T + 2, T + 302, T + 4),
            NonceOutcome::Replayed
        );
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "e", T + 4, T + 304, T + 4),
            NonceOutcome::Fresh
        );
        // Memory stays bounded: one key, 8 + 3 * 24 bytes.
        assert_eq!(s.len(), 1);
        assert_eq!(s.value_bytes(), 8 + 3 * 24);
    }

    #[test]
    fn bounded_under_many_nonces() {
        let cfg = NonceTableConfig {
            buckets: 8,
            slots: 4,
            max_retries: 4,
        };
        let mut s = fresh_store(&cfg);
        let mut outcomes = [0usize; 3];
        for i in 0..1000u64 {
            let o = check_nonce(
                &mut s,
                &cfg,
                &HK,
                "k",
                &format!("n{i}"),
                T + i,
                T + i + 300,
                T + i,
            );
            outcomes[o as usize] += 1;
        }
        assert_eq!(outcomes[NonceOutcome::Fresh as usize], 1000);
        assert_eq!(s.len(), 8);
        assert!(s.value_bytes() <= 8 * (8 + 4 * 24));
    }

    #[test]
    fn missing_or_corrupt_bucket_fails_closed_then_recovers() {
        let cfg = small();
        let mut s = MemoryStore::new();
        // Never initialized: requests created up to now are refused, the bucket is created.
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "a", T, T + 300, T),
            NonceOutcome::StoreFull
        );
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "b", T + 1, T + 301, T + 1),
            NonceOutcome::Fresh
        );
        s.set(&bucket_key(0), b"junk", None).unwrap();
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "c", T + 1, T + 301, T + 2),
            NonceOutcome::StoreFull
        );
        assert_eq!(
            check_nonce(&mut s, &cfg, &HK, "k", "d", T + 3, T + 303, T + 3),
            NonceOutcome::Fresh
        );
    }

    #[test]
    fn unavailable_store_refuses() {
        let cfg = small();
        assert_eq!(
            check_nonce(
                &mut crate::store::DownStore,
                &cfg,
                &HK,
                "k",
                "a",
                T,
                T + 300,
                T
            ),
            NonceOutcome::StoreFull
        );
    }

    #[test]
    fn fingerprint_is_length_prefixed() {
        let cfg = NonceTableConfig::default();
        assert_ne!(locate(&cfg, &HK, "ab", "c"), locate(&cfg, &HK, "a", "bc"));
    }

    #[test]
    fn the_hash_key_places_nonces() {
        let cfg = NonceTableConfig::default();
        let other = *b"fedcba9876543210";
        let nonces: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
        // Another key places them elsewhere: clients that do not know the key cannot aim nonces at one
        // bucket. (Every worker VM computes the same key: see the engine's nonce-across-reload test.)
        assert!(nonces
            .iter()
            .any(|n| locate(&cfg, &HK, "k", n).0 != locate(&cfg, &other, "k", n).0));
        // Through check_nonce: a nonce recorded under one key is looked up in its own bucket only.
        let small = NonceTableConfig { buckets: 64, ..cfg };
        let n = nonces
            .iter()
            .find(|n| locate(&small, &HK, "k", n).0 != locate(&small, &other, "k", n).0)
            .unwrap();
        let mut s = fresh_store(&small);
        let (b1, b2) = (
            locate(&small, &HK, "k", n).0,
            locate(&small, &other, "k", n).0,
        );
        assert_eq!(
            check_nonce(&mut s, &small, &HK, "k", n, T, T + 300, T),
            NonceOutcome::Fresh
        );
        assert_eq!(s.get(&bucket_key(b1)).unwrap().0.unwrap().len(), 8 + 24);
        assert_eq!(s.get(&bucket_key(b2)).unwrap().0.unwrap().len(), 8);
        assert_eq!(
            check_nonce(&mut s, &small, &HK, "k", n, T, T + 300, T + 1),
            NonceOutcome::Replayed
        );
    }
}
