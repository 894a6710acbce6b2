//! When a key source is fetched, by which worker, and how the result reaches every worker.
//!
//! Each source has one entry in shared data (shared by every worker VM of the Envoy process): the last
//! good set, its version, when the next fetch is due, and a lease. On its tick a worker calls [`due`]:
//! when the next fetch is due and no lease is running, it takes the lease with a compare-and-swap (one
//! worker wins) and makes the call; [`complete`] records the answer. Every worker calls [`sync`] on its
//! tick and copies a new version into its [`KeyCache`]; a worker that has never loaded a source also
//! looks on requests ([`sync_unloaded`], at most every [`PROBE_NS`]), so the first set serves every
//! worker within milliseconds. A failed fetch or a refused set keeps the last good set and is tried again
//! sooner (1 s, doubling, at most the refresh interval).

use super::jwks::{self, KeySetError};
use super::{KeyCache, KeySource};
use crate::store::{SharedStore, StoreError};
use std::fmt;

/// Added to the call's timeout for the lease: a worker that took it and went away (a reload) holds
/// the next fetch back by at most this much more.
const LEASE_MARGIN_NS: u64 = 1_000_000_000;
/// A refresh comes this much early (at most a quarter of the interval), so that the fetch, and every
/// worker's copy on its next tick, are done within the refresh interval of a change.
const SYNC_MARGIN_NS: u64 = 1_000_000_000;
/// The first retry after a failure; it doubles up to the refresh interval.
const RETRY_NS: u64 = 1_000_000_000;
/// Compare-and-swap retries before an update gives up (another worker kept writing).
const CAS_RETRIES: usize = 8;
const MAGIC: &[u8; 4] = b"EWK1";

/// Where a source stands, as every worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No fetch has finished yet.
    Pending,
    /// The last fetch loaded a set.
    Loaded,
    /// The last fetch failed; the last good set is kept.
    Stale,
    /// Every fetch so far failed: no set.
    Unavailable,
}

impl State {
    fn byte(self) -> u8 {
        match self {
            State::Pending => 0,
            State::Loaded => 1,
            State::Stale => 2,
            State::Unavailable => 3,
        }
    }

    fn from_byte(b: u8) -> State {
        match b {
            1 => State::Loaded,
            2 => State::Stale,
            3 => State::Unavailable,
            _ => State::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Loaded => "loaded",
            State::Stale => "stale",
            State::Unavailable => "unavailable",
        }
    }
}

/// A source's shared entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Bumped whenever the set changes (0: never loaded).
    version: u64,
    next_fetch_ns: u64,
    lease_until_ns: u64,
    failures: u32,
    state: State,
    /// The last good set, in [`jwks::encode`]'s form.
    keys: Vec<u8>,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            version: 0,
            next_fetch_ns: 0,
            lease_until_ns: 0,
            failures: 0,
            state: State::Pending,
            keys: Vec::new(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.keys.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.next_fetch_ns.to_le_bytes());
        out.extend_from_slice(&self.lease_until_ns.to_le_bytes());
        out.extend_from_slice(&self.failures.to_le_bytes());
        out.push(self.state.byte());
        out.extend_from_slice(&self.keys);
        out
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        let u64_at = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
        if b.get(..4)? != MAGIC {
            return None;
        }
        Some(Entry {
            version: u64_at(4)?,
            next_fetch_ns: u64_at(12)?,
            lease_until_ns: u64_at(20)?,
            failures: u32::from_le_bytes(b.get(28..32)?.try_into().ok()?),
            state: State::from_byte(*b.get(32)?),
            keys: b.get(33..)?.to_vec(),
        })
    }
}

/// Reads a source's entry (a missing or unreadable one is a fresh entry) and its CAS token.
fn read(
    store: &dyn SharedStore,
    key: &str,
) -> Result<(Entry, Option<crate::store::Cas>), StoreError> {
    let (value, cas) = store.get(key)?;
    let entry = value
        .as_deref()
        .and_then(Entry::decode)
        .unwrap_or_else(Entry::new);
    Ok((entry, cas))
}

/// The request that fetches a source: pseudo-headers and headers for `dispatch_http_call`.
pub fn request_headers(source: &KeySource) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".to_string()),
        (":scheme", source.scheme.clone()),
        (":authority", source.authority.clone()),
        (":path", source.path.clone()),
        (
            "accept",
            "application/jwk-set+json, application/http-message-signatures-directory+json, application/json"
                .to_string(),
        ),
        ("user-agent", "edgeward".to_string()),
    ]
}

/// Takes the lease of `source` if a fetch is due at `now_ns` and no other worker holds it: `true`
/// means this worker must fetch now (and later call [`complete`]).
pub fn due(
    store: &mut dyn SharedStore,
    source: &KeySource,
    now_ns: u64,
) -> Result<bool, StoreError> {
    let (mut entry, cas) = read(store, &source.store_key)?;
    if now_ns < entry.next_fetch_ns || now_ns < entry.lease_until_ns {
        return Ok(false);
    }
    entry.lease_until_ns = now_ns
        .saturating_add(u64::from(source.timeout_ms).saturating_mul(1_000_000))
        .saturating_add(LEASE_MARGIN_NS);
    match store.set(&source.store_key, &entry.encode(), cas) {
        Ok(()) => Ok(true),
        // Another worker took it first.
        Err(StoreError::CasMismatch) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The end of a fetch, as the host reports it.
#[derive(Debug, Clone, Copy)]
pub enum Fetched<'a> {
    /// An HTTP answer: its status (`None` when unreadable) and its body (cut at `max_bytes + 1`).
    Answer { status: Option<u16>, body: &'a [u8] },
    /// No answer: the call could not start, timed out, or the connection failed.
    NoAnswer,
}

/// What one fetch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A set loaded: its usable keys, the entries left out, and whether it differs from the last one.
    Loaded {
        keys: usize,
        skipped: usize,
        changed: bool,
    },
    /// An answer that is not a usable set (the last good set stays).
    Rejected(Rejection),
    /// No answer, or not 200 (the last good set stays).
    Failed(Option<u16>),
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Set(KeySetError),
}

/// What [`complete`] did: the outcome, and the state before and after (a change is logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub before: State,
    pub after: State,
}

impl Report {
    /// The line to log for this report, when there is one: a change of state, or a new set. Per-fetch
    /// results are counted, not logged. Names only the source and counts (keys are public anyway).
    pub fn message(&self, source: &KeySource) -> Option<String> {
        let name = &source.name;
        match &self.outcome {
            Outcome::Loaded {
                keys,
                skipped,
                changed,
            } if *changed || self.before != self.after => Some(format!(
                "edgeward: key source {name:?}: loaded {keys} keys ({skipped} entries not usable)"
            )),
            Outcome::Loaded { .. } => None,
            _ if self.before == self.after => None,
            outcome => {
                let why = match outcome {
                    Outcome::Rejected(Rejection::Set(e)) => e.to_string(),
                    Outcome::Failed(Some(status)) => format!("answered status {status}"),
                    _ => "no answer (connection failed, timed out, or unknown cluster)".to_string(),
                };
                let kept = if self.after == State::Stale {
                    "keeping the last good key set"
                } else {
                    "no key set yet: requests needing its keys get 503 keys_unavailable"
                };
                Some(format!(
                    "edgeward: key source {name:?}: fetch from cluster {:?} failed: {why}; {kept}",
                    source.cluster
                ))
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Loaded { keys, .. } => write!(f, "loaded {keys} keys"),
            Outcome::Rejected(Rejection::Set(e)) => write!(f, "{e}"),
            Outcome::Failed(Some(s)) => write!(f, "status {s}"),
            Outcome::Failed(None) => f.write_str("no answer"),
        }
    }
}

/// Records the end of this worker's fetch of `source` at `now_ns`: the new set (if any), when the next
/// fetch is due, and the lease released. `seed` spreads the next refresh over the jitter.
pub fn complete(
    store: &mut dyn SharedStore,
    source: &KeySource,
    fetched: Fetched,
    now_ns: u64,
    seed: u64,
) -> Report {
    let parsed = match fetched {
        Fetched::Answer {
            status: Some(200),
            body,
        } => jwks::parse(body, source.max_bytes, source.max_keys)
            .map(|p| (jwks::encode(&p.set), p.set.keys.len(), p.skipped))
            .map_err(|e| Outcome::Rejected(Rejection::Set(e))),
        Fetched::Answer { status, .. } => Err(Outcome::Failed(status)),
        Fetched::NoAnswer => Err(Outcome::Failed(None)),
    };
    let mut last = None;
    for _ in 0..CAS_RETRIES {
        let Ok((entry, cas)) = read(store, &source.store_key) else {
            break;
        };
        let before = entry.state;
        let mut next = entry.clone();
        next.lease_until_ns = 0;
        let outcome = match &parsed {
            Ok((keys, count, skipped)) => {
                let changed = next.version == 0 || *keys != next.keys;
                if changed {
                    next.version = next.version.saturating_add(1);
                    next.keys.clone_from(keys);
                }
                next.failures = 0;
                next.state = State::Loaded;
                let jitter = if source.jitter_ns == 0 {
                    0
                } else {
                    seed % source.jitter_ns.saturating_add(1)
                };
                let margin = SYNC_MARGIN_NS.min(source.refresh_ns / 4);
                next.next_fetch_ns = now_ns
                    .saturating_add(source.refresh_ns)
                    .saturating_sub(jitter)
                    .saturating_sub(margin);
                Outcome::Loaded {
                    keys: *count,
                    skipped: *skipped,
                    changed,
                }
            }
            Err(outcome) => {
                next.failures = next.failures.saturating_add(1);
                next.state = if next.version == 0 {
                    State::Unavailable
                } else {
                    State::Stale
                };
                let backoff = RETRY_NS
                    .saturating_mul(1u64 << next.failures.saturating_sub(1).min(20))
                    .min(source.refresh_ns);
                next.next_fetch_ns = now_ns.saturating_add(backoff);
                outcome.clone()
            }
        };
        let report = Report {
            outcome,
            before,
            after: next.state,
        };
        match store.set(&source.store_key, &next.encode(), cas) {
            Ok(()) => return report,
            Err(StoreError::CasMismatch) => last = Some(report),
            Err(StoreError::Unavailable) => return report,
        }
    }
    last.unwrap_or(Report {
        outcome: Outcome::Failed(None),
        before: State::Pending,
        after: State::Pending,
    })
}

/// Copies a newer version of source `i`'s set from shared data into `cache`: `true` when it did.
pub fn sync(store: &dyn SharedStore, source: &KeySource, i: usize, cache: &mut KeyCache) -> bool {
    let Ok((entry, _)) = read(store, &source.store_key) else {
        return false;
    };
    if entry.version == 0 || entry.version == cache.version(i) {
        return false;
    }
    match jwks::decode(&entry.keys) {
        Some(set) => {
            cache.install(i, entry.version, set);
            true
        }
        None => false,
    }
}

/// How often a worker's requests may look in shared data for a source it has never loaded.
pub const PROBE_NS: u64 = 5_000_000;

/// On a request at `now_ns`, before its checks: copies the set of every source this worker has never
/// loaded, when shared data holds one (returns how many it copied). Without it a worker answers 503
/// `keys_unavailable` for up to a tick after another worker's first fetch loaded the set. It reads shared
/// data at most once per [`PROBE_NS`] per never-loaded source (a directory that never answers costs at
/// most 200 reads a second per worker, whatever the request rate) and not at all once every source has
/// loaded; newer versions of a loaded set still arrive on the tick ([`sync`]).
pub fn sync_unloaded(
    store: &dyn SharedStore,
    sources: &[KeySource],
    cache: &mut KeyCache,
    now_ns: u64,
) -> usize {
    let mut copied = 0;
    for (i, source) in sources.iter().enumerate() {
        if cache.probe_due(i, now_ns, PROBE_NS) && sync(store, source, i, cache) {
            copied += 1;
        }
    }
    copied
}

/// The state of `source` in shared data (for `edgeward` tests and diagnostics).
pub fn state(store: &dyn SharedStore, source: &KeySource) -> Option<State> {
    read(store, &source.store_key).ok().map(|(e, _)| e.state)
}

#[cfg(test)]
mod tests;
