use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::error::Errors;
use crate::keys::{compile_sources, KeySourceInput};
use crate::store::MemoryStore;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use std::collections::BTreeMap;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;

/// refresh 60 s, jitter 6 s, timeout 2 s.
fn source() -> KeySource {
    let inputs: BTreeMap<String, KeySourceInput> = crate::json::from_value(json!({
        "partners": {"type": "jwks", "cluster": "keys", "url": "https://keys.test/jwks",
                     "refresh_s": 60, "jitter_s": 6, "timeout_ms": 2000}
    }))
    .unwrap();
    let mut errs = Errors::default();
    let mut out = compile_sources(&inputs, "key_sources", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    out.remove(0)
}

fn jwks(seeds: &[u8]) -> Vec<u8> {
    let keys: Vec<_> = seeds
        .iter()
        .map(|s| {
            let k = ed25519_dalek::SigningKey::from_bytes(&[*s; 32]).verifying_key();
            json!({"kty": "OKP", "crv": "Ed25519", "kid": format!("k{s}"), "x": URL_SAFE_NO_PAD.encode(k.as_bytes())})
        })
        .collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

fn ok(body: &[u8]) -> Fetched<'_> {
    Fetched::Answer {
        status: Some(200),
        body,
    }
}

fn kids(cache: &KeyCache) -> Vec<String> {
    cache
        .get(0)
        .map(|s| s.keys.iter().filter_map(|k| k.kid.clone()).collect())
        .unwrap_or_default()
}

/// The first tick fetches; while the call runs nobody else does; after a load the next fetch waits for
/// the refresh interval (less at most the jitter), and every worker syncs the set once.
#[test]
fn one_fetch_per_refresh_and_every_worker_syncs() {
    let src = source();
    let mut store = MemoryStore::new();
    assert!(due(&mut store, &src, T0).unwrap());
    // A second worker on the same tick, and the first worker again before the answer.
    assert!(!due(&mut store, &src, T0).unwrap());
    assert!(!due(&mut store, &src, T0 + S).unwrap());
    let body = jwks(&[1, 2]);
    let r = complete(&mut store, &src, ok(&body), T0 + S, 0);
    assert_eq!(
        r.outcome,
        Outcome::Loaded {
            keys: 2,
            skipped: 0,
            changed: true
        }
    );
    assert_eq!((r.before, r.after), (State::Pending, State::Loaded));
    assert!(r.message(&src).unwrap().contains("loaded 2 keys"));
    let (mut w1, mut w2) = (KeyCache::new(1), KeyCache::new(1));
    assert!(sync(&store, &src, 0, &mut w1));
    assert!(sync(&store, &src, 0, &mut w2));
    assert!(
        !sync(&store, &src, 0, &mut w1),
        "same version: nothing to copy"
    );
    assert_eq!(kids(&w2), ["k1", "k2"]);
    // seed 0: no jitter taken, the next fetch is a refresh later less the 1 s sync margin.
    assert!(!due(&mut store, &src, T0 + 59 * S).unwrap());
    assert!(due(&mut store, &src, T0 + 60 * S).unwrap());
}

/// A worker that has never loaded a source copies the set on a request, before its tick, looking at most
/// once per PROBE_NS; once loaded, a request reads nothing (newer versions wait for the tick).
#[test]
fn a_request_copies_a_set_this_worker_never_loaded() {
    let src = source();
    let sources = [src.clone()];
    let mut store = MemoryStore::new();
    let mut worker = KeyCache::new(1);
    assert_eq!(
        sync_unloaded(&store, &sources, &mut worker, T0),
        0,
        "nothing fetched yet"
    );
    assert!(worker.get(0).is_none());
    // Requests within PROBE_NS of that look do not read shared data again.
    let reads = store.reads.get();
    for dt in [0, 1, PROBE_NS / 2, PROBE_NS - 1] {
        assert_eq!(sync_unloaded(&store, &sources, &mut worker, T0 + dt), 0);
    }
    assert_eq!(
        store.reads.get(),
        reads,
        "a never-loaded source is read once per PROBE_NS"
    );
    assert!(due(&mut store, &src, T0).unwrap());
    complete(&mut store, &src, ok(&jwks(&[1])), T0, 0);
    // Loaded meanwhile, but looked at less than PROBE_NS ago: the next look finds it.
    assert_eq!(
        sync_unloaded(&store, &sources, &mut worker, T0 + PROBE_NS - 1),
        0
    );
    assert_eq!(
        sync_unloaded(&store, &sources, &mut worker, T0 + PROBE_NS),
        1
    );
    assert_eq!(kids(&worker), ["k1"]);
    assert!(due(&mut store, &src, T0 + 60 * S).unwrap());
    complete(&mut store, &src, ok(&jwks(&[2])), T0 + 60 * S, 0);
    let before = store.reads.get();
    for dt in [0, PROBE_NS, 10 * S] {
        assert_eq!(
            sync_unloaded(&store, &sources, &mut worker, T0 + 60 * S + dt),
            0
        );
    }
    assert_eq!(store.reads.get(), before, "a loaded source costs no read");
    assert_eq!(kids(&worker), ["k1"]);
    assert!(
        sync(&store, &src, 0, &mut worker),
        "the tick copies the new version"
    );
    assert_eq!(kids(&worker), ["k2"]);
}

/// The jitter only brings a refresh forward, by at most `jitter_s` (and the 1 s sync margin).
#[test]
fn jitter_brings_the_refresh_forward() {
    let src = source();
    for seed in [1u64, 7, 123_456_789, u64::MAX] {
        let mut store = MemoryStore::new();
        assert!(due(&mut store, &src, T0).unwrap());
        complete(&mut store, &src, ok(&jwks(&[1])), T0, seed);
        let mut first_due = None;
        for t in (52..=61).map(|s| T0 + s * S) {
            let mut probe = MemoryStore::clone_of(&store, &src);
            if due(&mut probe, &src, t).unwrap() {
                first_due = Some(t);
                break;
            }
        }
        let t = first_due.expect("due within the refresh interval");
        assert!(
            (T0 + 53 * S..=T0 + 59 * S).contains(&t),
            "seed {seed}: {}",
            (t - T0) / S
        );
    }
}

/// A rotation: the next fetch replaces the set (new version), every worker copies it, the old key is
/// gone. The same set again is no new version.
#[test]
fn rotation_replaces_the_set() {
    let src = source();
    let mut store = MemoryStore::new();
    let mut cache = KeyCache::new(1);
    due(&mut store, &src, T0).unwrap();
    complete(&mut store, &src, ok(&jwks(&[1])), T0, 0);
    sync(&store, &src, 0, &mut cache);
    assert_eq!(kids(&cache), ["k1"]);
    let t1 = T0 + 61 * S;
    assert!(due(&mut store, &src, t1).unwrap());
    let same = complete(&mut store, &src, ok(&jwks(&[1])), t1, 0);
    assert!(matches!(
        same.outcome,
        Outcome::Loaded { changed: false, .. }
    ));
    assert_eq!(same.message(&src), None, "nothing changed: nothing logged");
    assert!(!sync(&store, &src, 0, &mut cache));
    let t2 = t1 + 61 * S;
    assert!(due(&mut store, &src, t2).unwrap());
    let rotated = complete(&mut store, &src, ok(&jwks(&[2])), t2, 0);
    assert!(matches!(
        rotated.outcome,
        Outcome::Loaded { changed: true, .. }
    ));
    assert!(sync(&store, &src, 0, &mut cache));
    assert_eq!(kids(&cache), ["k2"]);
}

/// Failures keep the last good set, retry sooner (1 s, doubling, at most the refresh interval), and
/// log once per change of state.
#[test]
fn failures_keep_the_last_good_set() {
    let src = source();
    let mut store = MemoryStore::new();
    let mut cache = KeyCache::new(1);
    due(&mut store, &src, T0).unwrap();
    complete(&mut store, &src, ok(&jwks(&[1])), T0, 0);
    sync(&store, &src, 0, &mut cache);
    let mut t = T0 + 61 * S;
    let answers: [Fetched; 4] = [
        Fetched::NoAnswer,
        Fetched::Answer {
            status: Some(503),
            body: b"",
        },
        ok(b"<html>garbage</html>"),
        ok(br#"{"keys": "#),
    ];
    let mut messages = 0;
    let mut waits = Vec::new();
    for (n, fetched) in answers.into_iter().enumerate() {
        assert!(due(&mut store, &src, t).unwrap(), "attempt {n}");
        let r = complete(&mut store, &src, fetched, t, 0);
        assert_eq!(r.after, State::Stale);
        assert_eq!(state(&store, &src), Some(State::Stale));
        if let Some(m) = r.message(&src) {
            assert!(m.contains("keeping the last good key set"), "{m}");
            messages += 1;
        }
        match (n, &r.outcome) {
            (0, Outcome::Failed(None)) | (1, Outcome::Failed(Some(503))) => {}
            (2 | 3, Outcome::Rejected(Rejection::Set(KeySetError::Malformed(_)))) => {}
            other => panic!("{other:?}"),
        }
        assert!(!sync(&store, &src, 0, &mut cache), "no new version");
        assert_eq!(kids(&cache), ["k1"], "the last good set stays");
        // When is the next attempt?
        let mut wait = 0;
        while !due(&mut MemoryStore::clone_of(&store, &src), &src, t + wait * S).unwrap() {
            wait += 1;
        }
        waits.push(wait);
        t += wait * S;
    }
    assert_eq!(messages, 1, "logged once, when the state changed");
    assert_eq!(waits, [1, 2, 4, 8]);
    // Back: logged again (a change of state), and the backoff resets.
    assert!(due(&mut store, &src, t).unwrap());
    let r = complete(&mut store, &src, ok(&jwks(&[1])), t, 0);
    assert_eq!((r.before, r.after), (State::Stale, State::Loaded));
    assert!(r.message(&src).is_some());
}

/// The backoff stops at the refresh interval.
#[test]
fn backoff_is_capped_by_the_refresh_interval() {
    let src = source();
    let mut store = MemoryStore::new();
    let mut t = T0;
    for _ in 0..12 {
        assert!(due(&mut store, &src, t).unwrap());
        complete(&mut store, &src, Fetched::NoAnswer, t, 0);
        t += 60 * S;
    }
    assert!(!due(&mut store, &src, t - S).unwrap());
}

/// No set ever loaded: the state says so (requests needing it get 503), and the message says what
/// requests get.
#[test]
fn never_loaded_is_unavailable() {
    let src = source();
    let mut store = MemoryStore::new();
    due(&mut store, &src, T0).unwrap();
    let r = complete(&mut store, &src, Fetched::NoAnswer, T0, 0);
    assert_eq!((r.before, r.after), (State::Pending, State::Unavailable));
    assert!(r.message(&src).unwrap().contains("503 keys_unavailable"));
    let mut cache = KeyCache::new(1);
    assert!(!sync(&store, &src, 0, &mut cache));
    assert!(cache.get(0).is_none());
    // Too large and too many keys are refusals too.
    let big = vec![b' '; src.max_bytes + 1];
    due(&mut store, &src, T0 + 10 * S).unwrap();
    let r = complete(&mut store, &src, ok(&big), T0 + 10 * S, 0);
    assert_eq!(
        r.outcome,
        Outcome::Rejected(Rejection::Set(KeySetError::TooLarge(src.max_bytes)))
    );
}

/// A lease whose holder never answers (the worker went away) expires: another worker fetches after
/// the timeout plus a margin.
#[test]
fn an_abandoned_lease_expires() {
    let src = source();
    let mut store = MemoryStore::new();
    assert!(due(&mut store, &src, T0).unwrap());
    assert!(!due(&mut store, &src, T0 + 2 * S).unwrap());
    assert!(due(&mut store, &src, T0 + 3 * S).unwrap());
}

/// Losing the race for the lease is not an error: the other worker fetches.
#[test]
fn a_lost_race_is_no_fetch() {
    let src = source();
    let mut store = MemoryStore::new();
    // The entry exists (a CAS write follows a read with a token).
    due(&mut store, &src, T0).unwrap();
    complete(&mut store, &src, Fetched::NoAnswer, T0, 0);
    store.inject_cas_conflicts = 1;
    assert!(!due(&mut store, &src, T0 + 10 * S).unwrap());
    assert!(due(&mut store, &src, T0 + 10 * S).unwrap());
}

/// A shared entry that is not ours (another version of edgeward, corruption) reads as a fresh one.
#[test]
fn an_unreadable_entry_starts_over() {
    let src = source();
    let mut store = MemoryStore::new();
    store.set(&src.store_key, b"garbage", None).unwrap();
    assert_eq!(state(&store, &src), Some(State::Pending));
    assert!(due(&mut store, &src, T0).unwrap());
    complete(&mut store, &src, ok(&jwks(&[3])), T0, 0);
    let mut cache = KeyCache::new(1);
    assert!(sync(&store, &src, 0, &mut cache));
    assert_eq!(kids(&cache), ["k3"]);
}

/// The fetch asks for the URL's authority and path with GET.
#[test]
fn the_request() {
    let h = request_headers(&source());
    let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
    assert_eq!(get(":method"), Some("GET"));
    assert_eq!(get(":authority"), Some("keys.test"));
    assert_eq!(get(":path"), Some("/jwks"));
    assert_eq!(get(":scheme"), Some("https"));
    assert!(get("accept").unwrap().contains("application/jwk-set+json"));
}

impl MemoryStore {
    /// A copy holding `source`'s entry only (probes the schedule without taking the lease).
    fn clone_of(from: &MemoryStore, source: &KeySource) -> MemoryStore {
        let mut out = MemoryStore::new();
        if let Ok((Some(v), _)) = from.get(&source.store_key) {
            let _ = out.set(&source.store_key, &v, None);
        }
        out
    }
}
