//! The local backend: buckets in proxy-wasm shared data, one fixed set-associative table per limit.
//!
//! Layout: a keyed limit has `ceil(slots / WAYS)` sets; each set is ONE shared-data key
//! `edgeward.rl.<uid>.<set>` holding a header (parameter tag, share mark) and `WAYS` slots of
//! (fingerprint, arrival time). A keyed SipHash-1-3 of the key picks the set, the fingerprint and a
//! fallback way, so clients cannot aim at one set. `route` and `global` limits are one set of one slot.
//!
//! A key uses the slot holding its fingerprint; else it takes over the first idle (fully refilled) slot;
//! else every slot is busy and it shares its fallback way's bucket. Sharing only makes limiting
//! stricter: the sharer draws from a bucket that is at most full and always the same one, and the set
//! remembers the latest arrival time it handed out while shared ("share mark"), so a key that later
//! takes over an idle slot starts no fuller than the bucket it was drawing from
//! (`min(fallback, share mark)`); sets that never shared start new keys full.
//!
//! Every update is a compare-and-swap. A request first reads and checks every limit (a denial writes
//! nothing), then commits them in order; a lost race re-reads and re-checks that limit, at most
//! `MAX_ATTEMPTS` times. If it fails partway, the tokens already taken are refunded (each by its own
//! CAS loop; a refund that cannot land is dropped, which is again only stricter).

use super::gcra::{Gcra, LeaseSlots, Step};
use super::lease::{Leases, LEASE_ENTRIES};
use super::{BucketBackend, KeySpec, KeyValue, Limit, LimitState, Verdict};
use crate::store::{Cas, SharedStore, StoreError};
use siphasher::sip::SipHasher13;
use std::fmt;
use std::hash::Hasher;
use std::rc::Rc;

/// Slots per set of a keyed limit.
pub const WAYS: usize = 8;
/// Compare-and-swap attempts per limit and request before failing closed.
pub const MAX_ATTEMPTS: u32 = 8;

const HEADER_BYTES: usize = 8 + 16;
const SLOT_BYTES: usize = 8 + 16;
/// The largest set: the header and [`WAYS`] slots.
const MAX_SET_BYTES: usize = HEADER_BYTES + SLOT_BYTES * WAYS;

/// `edgeward.rl.` + 16 hex digits + `.` + a set number of up to 10 digits.
const STORE_KEY_BYTES: usize = 12 + 16 + 1 + 10;

/// Up to `N` bytes on the stack (no allocation per request).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fixed<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Fixed<N> {
    fn new() -> Self {
        Fixed {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `bytes`; what would pass `N` is dropped (the callers size `N` for what they push).
    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(N);
        if let (Some(dst), Some(src)) =
            (self.buf.get_mut(self.len..end), bytes.get(..end - self.len))
        {
            dst.copy_from_slice(src);
        }
        self.len = end;
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// A set's shared-data key; reads as the `&str` it holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreKey(Fixed<STORE_KEY_BYTES>);

impl std::ops::Deref for StoreKey {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII is ever pushed (the prefix is `edgeward.rl.` and hex digits).
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// An encoded set (at most [`MAX_SET_BYTES`]: a table has at most [`WAYS`] ways, and the store
/// refuses a set of the wrong length when it is read back).
type SetBytes = Fixed<MAX_SET_BYTES>;

/// One limit's table: where its sets live and how they are laid out.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// `edgeward.rl.<uid>.`; the uid is stable across worker VMs (same document → same uid).
    prefix: String,
    /// The table's identity (in its name): same document, same limit → same uid in every worker.
    uid: u64,
    sets: u32,
    ways: usize,
    /// Hash of the bucket parameters, also written into every set: a set whose tag differs (a foreign
    /// or corrupt value under this name) reads as empty.
    tag: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    fp: u64,
    tat: u128,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SetImage {
    /// The latest arrival time handed out to a key sharing another key's slot.
    share_tat: u128,
    slots: [Slot; WAYS],
}

/// Where a key lives in its limit's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) set: u32,
    pub(crate) fp: u64,
    pub(crate) fallback: usize,
}

/// A checked, not yet committed, update of one set.
#[derive(Debug, Clone)]
struct Plan {
    key: StoreKey,
    cas: Option<Cas>,
    image: SetImage,
    way: usize,
    step: Step,
    /// Where the key lives (a lease is held under it).
    place: Place,
    /// The lease size this update asked for (1: none); a retry asks for the same.
    asked: u64,
    /// The tokens this update also takes for this worker's lease.
    lease: Option<LeaseSlots>,
}

/// Where one limit's token for one request comes from.
// Kept by value in one Vec per request: boxing the plan would cost an allocation per limit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Source {
    /// The shared bucket (this update, once committed).
    Shared(Plan),
    /// Token `bit` of this worker's lease (started at `base`) on the key's bucket: nothing written.
    Leased {
        place: Place,
        base: u128,
        bit: u32,
        state: super::LimitState,
    },
}

impl Source {
    fn allowed(&self) -> bool {
        match self {
            Source::Shared(p) => p.step.allowed,
            Source::Leased { .. } => true,
        }
    }

    fn state(&self) -> super::LimitState {
        match self {
            Source::Shared(p) => p.step.state,
            Source::Leased { state, .. } => *state,
        }
    }
}

/// An unkeyed, stable hash (same value in every VM and on every architecture) for table names.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = SipHasher13::new_with_keys(0, 0);
    for p in parts {
        h.write_u64(p.len() as u64);
        h.write(p);
    }
    h.finish()
}

impl Table {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        policy: &str,
        name: &str,
        key: &KeySpec,
        limit: u64,
        window_s: u64,
        burst: u64,
        slots: u32,
        leasing: bool,
    ) -> Table {
        let params = [
            limit.to_le_bytes(),
            window_s.to_le_bytes(),
            burst.to_le_bytes(),
        ];
        // A limit that leases never shares a table with one that does not (one bucket, one kind of
        // token accounting; a lenient refund, as plain limits had, could free a leased slot). The
        // marker is added only for limits that lease, so the others keep the names they had.
        let [l, w, b] = &params;
        let hash = |parts: &[&[u8]]| {
            if leasing {
                stable_hash(&[parts, &[b"lease".as_slice()]].concat())
            } else {
                stable_hash(parts)
            }
        };
        // Every table's name includes its parameters (and a keyed table's shape), so that limits of
        // different sizes never share a table: two configurations loaded into one VM (one shared data)
        // with a same-named policy and limit keep separate buckets instead of resetting each other's
        // sets on every write. Same parameters give the same table, so a reload with unchanged limits
        // keeps its buckets (where a key lands still moves if the document text, and with it the hash
        // key, changed), and same-named limits with the same parameters in two configurations of one
        // VM share buckets. The price: changing a keyed limit's parameters starts a new table, and the
        // old one keeps its memory until Envoy restarts (shared data cannot be deleted).
        let (uid, sets, ways) = match key {
            KeySpec::Route => (
                hash(&[b"route", policy.as_bytes(), name.as_bytes(), l, w, b]),
                1,
                1,
            ),
            KeySpec::Global => (hash(&[b"global", name.as_bytes(), l, w, b]), 1, 1),
            _ => {
                let sets = slots.div_ceil(WAYS as u32).max(1);
                let shape = [(WAYS as u64).to_le_bytes(), u64::from(sets).to_le_bytes()];
                let [ways_b, sets_b] = &shape;
                let parts: [&[u8]; 8] = [
                    b"keyed-v2",
                    policy.as_bytes(),
                    name.as_bytes(),
                    l,
                    w,
                    b,
                    ways_b,
                    sets_b,
                ];
                (hash(&parts), sets, WAYS)
            }
        };
        Table {
            prefix: format!("edgeward.rl.{uid:016x}."),
            uid,
            sets,
            ways,
            tag: stable_hash(&[b"tag-v1", l, w, b, &(ways as u64).to_le_bytes()]),
        }
    }

    /// The table's identity (leases are held per table and key).
    #[cfg(test)]
    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }

    /// Number of shared-data keys this table can ever use.
    pub(crate) fn sets(&self) -> u32 {
        self.sets
    }

    /// The shared-data key of set `set`: `edgeward.rl.<uid>.<set>`, built on the stack.
    pub(crate) fn store_key(&self, set: u32) -> StoreKey {
        let mut key = Fixed::new();
        key.push(self.prefix.as_bytes());
        key.push(crate::num::decimal(u64::from(set), &mut [0u8; 20]));
        StoreKey(key)
    }

    fn bytes(&self) -> usize {
        HEADER_BYTES + SLOT_BYTES * self.ways
    }

    pub(crate) fn place(&self, key: &KeyValue<'_>, hash_key: &[u8; 16]) -> Place {
        if self.sets == 1 && self.ways == 1 {
            return Place {
                set: 0,
                fp: 0,
                fallback: 0,
            };
        }
        let mut h = siphasher::sip128::SipHasher13::new_with_key(hash_key);
        h.write(self.prefix.as_bytes());
        key.hash_into_128(&mut h);
        let (fp, spread) = siphasher::sip128::Hasher128::finish128(&h).as_u64();
        let sets = u64::from(self.sets);
        Place {
            set: u32::try_from(spread % sets).unwrap_or(0),
            fp,
            fallback: usize::try_from((spread / sets) % self.ways as u64).unwrap_or(0),
        }
    }

    fn decode(&self, value: Option<&[u8]>) -> SetImage {
        let mut img = SetImage::default();
        let Some(v) = value.filter(|v| v.len() == self.bytes()) else {
            return img;
        };
        if read_u64(v, 0) != Some(self.tag) {
            return img;
        }
        img.share_tat = read_u128(v, 8).unwrap_or(0);
        for (w, slot) in img.slots.iter_mut().take(self.ways).enumerate() {
            let at = HEADER_BYTES + w * SLOT_BYTES;
            slot.fp = read_u64(v, at).unwrap_or(0);
            slot.tat = read_u128(v, at + 8).unwrap_or(0);
        }
        img
    }

    /// The set's bytes as stored, written on the stack (a write per limit and request: no allocation).
    fn encode(&self, img: &SetImage) -> SetBytes {
        let mut out = SetBytes::new();
        out.push(&self.tag.to_le_bytes());
        out.push(&img.share_tat.to_le_bytes());
        for s in img.slots.iter().take(self.ways) {
            out.push(&s.fp.to_le_bytes());
            out.push(&s.tat.to_le_bytes());
        }
        out
    }

    pub(crate) fn prepare(&self, store: &mut dyn SharedStore) -> Result<usize, StoreError> {
        let empty = self.encode(&SetImage::default());
        let mut written = 0;
        for set in 0..self.sets {
            let key = self.store_key(set);
            if store.get(&key)?.0.is_none() {
                store.set(&key, empty.as_slice(), None)?;
                written += 1;
            }
        }
        Ok(written)
    }
}

fn read_u64(v: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = v.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

fn read_u128(v: &[u8], at: usize) -> Option<u128> {
    let b: [u8; 16] = v.get(at..at + 16)?.try_into().ok()?;
    Some(u128::from_le_bytes(b))
}

/// Reads a key's set and checks one token out of its bucket, and up to `lease - 1` more for this
/// worker's lease (nothing is written).
fn plan(
    limit: &Limit,
    place: Place,
    store: &dyn SharedStore,
    now_ns: u64,
    asked: u64,
) -> Result<Plan, StoreError> {
    let t = &limit.table;
    let key = t.store_key(place.set);
    let (value, cas) = store.get(&key)?;
    let mut image = t.decode(value.as_deref());
    let now = limit.gcra.ticks(now_ns);
    let ways = &image.slots[..t.ways.min(WAYS)];
    let fallback_tat = ways.get(place.fallback).map_or(0, |s| s.tat);
    // (way, arrival time to start from, sharing someone else's slot?)
    let (way, start, shared) = if let Some(w) = ways.iter().position(|s| s.fp == place.fp) {
        (w, ways.get(w).map_or(0, |s| s.tat), false)
    } else if let Some(w) = ways.iter().position(|s| Gcra::idle(s.tat, now)) {
        (w, fallback_tat.min(image.share_tat), false)
    } else {
        (place.fallback, fallback_tat, true)
    };
    let (step, lease) = if shared {
        // Another key's bucket: no lease on it.
        (limit.gcra.take(start, now), None)
    } else {
        limit.gcra.take_leasing(start, now, asked)
    };
    if step.allowed {
        if shared {
            image.share_tat = image.share_tat.max(step.tat);
        }
        if let Some(slot) = image.slots.get_mut(way) {
            if !shared {
                slot.fp = place.fp;
            }
            slot.tat = step.tat;
        }
    }
    Ok(Plan {
        key,
        cas,
        image,
        way,
        step,
        place,
        asked,
        lease,
    })
}

/// How many tokens this worker may lease from `limit` for the key at `place` (1: none): only into
/// a free entry that no earlier limit of this request claimed (`claimed`: one bit per entry).
fn lease_size(
    limit: &Limit,
    place: Place,
    leases: &Leases,
    now_ns: u64,
    claimed: &mut [u64; LEASE_ENTRIES / 64],
) -> u64 {
    if limit.lease < 2 || !leases.enabled() || !leases.free_for(limit.table.uid, place, now_ns) {
        return 1;
    }
    let entry = leases.entry(limit.table.uid, place);
    let Some(word) = claimed.get_mut(entry / 64) else {
        return 1;
    };
    let bit = 1u64 << (entry % 64);
    if *word & bit != 0 {
        return 1;
    }
    *word |= bit;
    limit.lease
}

/// This worker's next leased token for the key, if its lease has one usable now.
fn leased(limit: &Limit, place: Place, leases: &Leases, now: u128) -> Option<Source> {
    if limit.lease < 2 {
        return None;
    }
    let lease = leases.get(limit.table.uid, place)?;
    let (bit, _) = limit.gcra.lease_slot(lease, now)?;
    let left = (lease.bits & u64::MAX.checked_shl(bit + 1).unwrap_or(0)).count_ones();
    Some(Source::Leased {
        place,
        base: lease.base,
        bit,
        state: limit.gcra.leased_state(lease, left, now),
    })
}

/// Whether `key` would get a token from `limit` now, and the bucket's state: a read, no write.
/// A usable lease of this worker answers without a read.
pub(crate) fn peek(
    limit: &Limit,
    key: &KeyValue<'_>,
    hash_key: &[u8; 16],
    store: &dyn SharedStore,
    leases: &Leases,
    now_ns: u64,
) -> Result<(bool, LimitState), StoreError> {
    let place = limit.table.place(key, hash_key);
    if let Some(Source::Leased { state, .. }) =
        leased(limit, place, leases, limit.gcra.ticks(now_ns))
    {
        return Ok((true, state));
    }
    let p = plan(limit, place, store, now_ns, 1)?;
    Ok((p.step.allowed, p.step.state))
}

/// Gives back the token a committed plan took (one slot), if its slot in the set still belongs to
/// the key the plan wrote, and only if its arrival time is still what the plan wrote (every token
/// taken after it has been given back): then exactly this request's interval is freed. Otherwise
/// the token is dropped, which only makes limiting stricter. Moving a bucket's arrival time back
/// after others took from it would free the newest interval, not this one: after the bucket went
/// idle and was taken from again, or after an earlier held request's refund, that is a token
/// another request holds, and one request more than `burst` could pass. (Of a limit that leases,
/// the interval before the arrival time may also be a slot a worker's lease holds.)
fn refund(limit: &Limit, plan: &Plan, store: &mut dyn SharedStore) {
    let Some(written) = plan.image.slots.get(plan.way) else {
        return;
    };
    for _ in 0..MAX_ATTEMPTS {
        let Ok((Some(value), cas)) = store.get(&plan.key) else {
            return;
        };
        let mut image = limit.table.decode(Some(&value));
        let Some(slot) = image.slots.get_mut(plan.way) else {
            return;
        };
        if slot.fp != written.fp {
            return; // taken over since: the token went back to the refill already
        }
        if slot.tat != written.tat {
            return; // a later token is still held: dropped (stricter)
        }
        slot.tat = slot.tat.saturating_sub(limit.gcra.interval());
        match store.set(&plan.key, limit.table.encode(&image).as_slice(), cas) {
            Err(StoreError::CasMismatch) => continue,
            _ => return,
        }
    }
}

/// Buckets in the process's shared data (all Envoy workers), updated by compare-and-swap.
pub struct LocalBackend<'s> {
    store: &'s mut dyn SharedStore,
    hash_key: [u8; 16],
    /// This worker's leases (none: every token from the shared bucket, one at a time).
    leases: Option<Rc<Leases>>,
    /// Where the last admitted request's tokens came from (for a later refund).
    taken: Vec<Source>,
}

/// The tokens one admitted request took, one per local limit, so that they can be given back when
/// a later check (the rate limit service) denies the request.
#[derive(Debug, Default)]
pub struct Receipt {
    taken: Vec<Source>,
    /// The worker's leases the tokens may have come from or gone to.
    leases: Option<Rc<Leases>>,
}

impl Receipt {
    /// Number of tokens held.
    pub fn len(&self) -> usize {
        self.taken.len()
    }

    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }

    /// Gives back each token to the limit it came from (`limits`: the same limits, same order), for
    /// the limits `which` selects.
    pub(crate) fn refund(
        self,
        limits: &[Limit],
        which: impl Fn(&Limit) -> bool,
        store: &mut dyn SharedStore,
    ) {
        if self.taken.len() != limits.len() {
            return;
        }
        for (source, limit) in self.taken.iter().zip(limits) {
            if which(limit) {
                give_back(limit, source, self.leases.as_deref(), store);
            }
        }
    }
}

/// Gives back one request's token of `limit`. A token that came from a lease, or whose request took
/// one, goes back to that lease as its own slot (if the worker still holds it); any other goes
/// back to the shared bucket ([`refund`]).
fn give_back(limit: &Limit, source: &Source, leases: Option<&Leases>, store: &mut dyn SharedStore) {
    match (source, leases) {
        (
            Source::Shared(Plan {
                lease: Some(lease),
                place,
                ..
            }),
            Some(leases),
        ) => leases.give_back(limit.table.uid, *place, lease.base, 0),
        // A lease with no table to return it to: dropped (freeing a slot would free a leased one).
        (Source::Shared(Plan { lease: Some(_), .. }), None) => {}
        (Source::Shared(plan), _) => refund(limit, plan, store),
        (
            Source::Leased {
                place, base, bit, ..
            },
            Some(leases),
        ) => leases.give_back(limit.table.uid, *place, *base, *bit),
        (Source::Leased { .. }, None) => {}
    }
}

impl<'s> LocalBackend<'s> {
    /// `hash_key` keys the set/fingerprint hash: the same in every worker VM, unknown to clients.
    pub fn new(store: &'s mut dyn SharedStore, hash_key: &[u8; 16]) -> LocalBackend<'s> {
        LocalBackend {
            store,
            hash_key: *hash_key,
            leases: None,
            taken: Vec::new(),
        }
    }

    /// Serves and takes leases of limits with `"lease"` from this worker's table.
    pub fn with_leases(mut self, leases: &Rc<Leases>) -> LocalBackend<'s> {
        self.leases = Some(Rc::clone(leases));
        self
    }

    /// What the last admitted request took (empty after a denial).
    pub fn into_receipt(self) -> Receipt {
        Receipt {
            taken: self.taken,
            leases: self.leases,
        }
    }
}

/// Hands the worker the lease a committed update took (`own`: with the request's own token too,
/// when the request did not get through).
fn hold(limit: &Limit, plan: &Plan, own: bool, leases: &Leases, now_ns: u64) {
    if let Some(mut lease) = plan.lease {
        if own {
            lease.bits |= 1;
        }
        let last = 63u32.saturating_sub(lease.bits.leading_zeros());
        let last_slot = lease.base + u128::from(last) * limit.gcra.interval();
        let until = limit.gcra.last_ns(last_slot);
        leases.hold(limit.table.uid, plan.place, lease, until, now_ns);
    }
}

impl BucketBackend for LocalBackend<'_> {
    fn take(&mut self, limits: &[Limit], keys: &[KeyValue<'_>], now_ns: u64) -> Verdict {
        self.taken.clear();
        if limits.len() != keys.len() {
            return Verdict::Unavailable;
        }
        let disabled = Leases::disabled();
        let leases: &Leases = self.leases.as_deref().unwrap_or(&disabled);
        let mut claimed = [0u64; LEASE_ENTRIES / 64];
        let mut sources = Vec::with_capacity(limits.len());
        for (l, k) in limits.iter().zip(keys) {
            let place = l.table.place(k, &self.hash_key);
            if let Some(source) = leased(l, place, leases, l.gcra.ticks(now_ns)) {
                sources.push(source);
                continue;
            }
            let asked = lease_size(l, place, leases, now_ns, &mut claimed);
            match plan(l, place, &*self.store, now_ns, asked) {
                Ok(p) => sources.push(Source::Shared(p)),
                Err(_) => return Verdict::Unavailable,
            }
        }
        let states = |sources: &[Source]| {
            sources
                .iter()
                .map(Source::state)
                .collect::<Vec<LimitState>>()
        };
        if sources.iter().any(|s| !s.allowed()) {
            return Verdict::Limited(states(&sources));
        }
        for i in 0..sources.len() {
            let Some(l) = limits.get(i) else {
                return Verdict::Unavailable;
            };
            let mut attempts = 1;
            loop {
                let p = match sources.get(i) {
                    Some(Source::Shared(p)) => p,
                    Some(Source::Leased { .. }) => break, // nothing to write
                    None => return Verdict::Unavailable,
                };
                let failure =
                    match self
                        .store
                        .set(&p.key, l.table.encode(&p.image).as_slice(), p.cas)
                    {
                        Ok(()) => break,
                        Err(StoreError::CasMismatch) if attempts < MAX_ATTEMPTS => {
                            attempts += 1;
                            match plan(l, p.place, &*self.store, now_ns, p.asked) {
                                Ok(np) => {
                                    let allowed = np.step.allowed;
                                    if let Some(slot) = sources.get_mut(i) {
                                        *slot = Source::Shared(np);
                                    }
                                    if allowed {
                                        continue;
                                    }
                                    None // another worker emptied the bucket meanwhile
                                }
                                Err(_) => Some(Verdict::Unavailable),
                            }
                        }
                        Err(_) => Some(Verdict::Unavailable),
                    };
                // The updates already committed give their tokens back: a lease keeps its tokens
                // and the request's own for this worker; a plain token returns to its bucket.
                for (done, lim) in sources.iter().zip(limits).take(i) {
                    if let Source::Shared(plan) = done {
                        if plan.lease.is_some() {
                            hold(lim, plan, true, leases, now_ns);
                        } else {
                            refund(lim, plan, &mut *self.store);
                        }
                    }
                }
                return failure.unwrap_or_else(|| Verdict::Limited(states(&sources)));
            }
        }
        // Every limit gave its token: only now does the worker use or hold leases.
        for (source, l) in sources.iter().zip(limits) {
            match source {
                Source::Leased {
                    place, base, bit, ..
                } => leases.used(l.table.uid, *place, *base, *bit),
                Source::Shared(plan) => hold(l, plan, false, leases, now_ns),
            }
        }
        let verdict = Verdict::Allowed(states(&sources));
        self.taken = sources;
        verdict
    }
}
