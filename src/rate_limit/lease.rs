//! Token leases: a worker's own tokens of hot buckets (a limit's `"lease": N`), so that most requests
//! of a busy key take their token from worker memory instead of two shared-data calls.
//!
//! A request that finds no usable lease takes its token from the shared bucket as usual, and in the
//! same compare-and-swap up to `N - 1` more for this worker ([`super::gcra::Gcra::take_leasing`]).
//! The key's next requests on this worker then use those, with no host call.
//!
//! - **Never exceeded.** A leased token is usable only until the moment the shared bucket would
//!   have handed out its slot. Every admission therefore happens no later than its slot and no
//!   earlier than the tolerance allows. That is a plain GCRA's bound: at most `burst` plus `limit`
//!   per `window_s` in any interval, whatever the workers do.
//! - **Stricter, by a bounded amount.** Tokens sitting in one worker's lease are not available to
//!   the other workers: a request can be refused while up to `(workers - 1) × N` tokens of its
//!   bucket sit unused elsewhere (a lease never takes more than half of what is left, and none from a
//!   nearly empty bucket). A lease taken from a bucket that is (nearly) full starts `burst / 64`
//!   tokens' refill ahead ([`super::gcra::Gcra::lease_reserve`]), so that it lasts: that idle
//!   credit is given up. A leased token that expires is dropped.
//! - **Refunds.** Every token keeps its own slot (a bit of the lease), so a refund gives the token
//!   back to the lease it came from (the request's own token too, when it took the lease). A token
//!   this limit took without a lease goes back to the shared bucket only if nobody took one after
//!   it (`local::refund`): the slot before the bucket's arrival time may be one a worker holds. A
//!   limit without `lease` never shares a table with one that leases (the lease is in its name).
//! - **Headers.** `RateLimit` reports this worker's view: the bucket as its lease left it, with the
//!   lease's unused tokens counted as still there and the reserve as taken.
//!
//! The table is a fixed number of entries per worker (no allocation per request). An entry that
//! holds a usable lease is never taken over: another key that maps to it takes its tokens one at a
//! time, exactly as without leases, until the lease is used up or its last slot passes. So a flood of
//! other keys cannot make a key lose its leased tokens.

use super::gcra::LeaseSlots;
use super::local::Place;
use std::cell::RefCell;
use std::fmt;

/// Entries per worker (and configuration): 256 × 80 bytes.
pub const LEASE_ENTRIES: usize = 256;

/// Largest accepted `lease`.
pub const MAX_LEASE: u64 = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    /// The limit's table.
    uid: u64,
    set: u32,
    fp: u64,
    slots: LeaseSlots,
    /// The last nanosecond at which the lease's last slot is still usable.
    until_ns: u64,
}

impl Entry {
    fn is(&self, uid: u64, place: Place) -> bool {
        self.uid == uid && self.set == place.set && self.fp == place.fp
    }

    fn free_for(&self, uid: u64, place: Place, now_ns: u64) -> bool {
        self.is(uid, place) || self.slots.bits == 0 || now_ns > self.until_ns
    }
}

/// One worker's leases, for every leasing limit of one configuration.
pub struct Leases {
    entries: RefCell<Vec<Entry>>,
}

// Entries hold hashes of client keys: not printed.
impl fmt::Debug for Leases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leases")
            .field("entries", &self.entries.borrow().len())
            .finish()
    }
}

impl Default for Leases {
    fn default() -> Self {
        Leases::new()
    }
}

impl Leases {
    /// A worker's table, empty.
    pub fn new() -> Leases {
        Leases {
            entries: RefCell::new(vec![Entry::default(); LEASE_ENTRIES]),
        }
    }

    /// A table that holds nothing: every token comes from the shared bucket, one at a time (the CLI,
    /// one-shot evaluations).
    pub fn disabled() -> Leases {
        Leases {
            entries: RefCell::new(Vec::new()),
        }
    }

    /// Whether leases can be held at all.
    pub(crate) fn enabled(&self) -> bool {
        !self.entries.borrow().is_empty()
    }

    pub(super) fn index(len: usize, uid: u64, place: Place) -> usize {
        // `fp` and `set` come from a keyed hash; `uid` separates limits (route and global limits
        // have fp = set = 0).
        let h = place.fp ^ uid.rotate_left(29) ^ u64::from(place.set).rotate_left(47);
        usize::try_from(h % (len.max(1) as u64)).unwrap_or(0)
    }

    /// The entry this key's lease would use (requests with two leasing limits on one entry lease
    /// for the first only).
    pub(crate) fn entry(&self, uid: u64, place: Place) -> usize {
        Self::index(self.entries.borrow().len(), uid, place)
    }

    /// This key's lease, if this worker holds one.
    pub(crate) fn get(&self, uid: u64, place: Place) -> Option<LeaseSlots> {
        let entries = self.entries.borrow();
        let e = entries.get(Self::index(entries.len(), uid, place))?;
        (e.is(uid, place) && e.slots.bits != 0).then_some(e.slots)
    }

    /// The entry of this key's lease that started at `base`, to change.
    fn with_lease(&self, uid: u64, place: Place, base: u128, change: impl FnOnce(&mut u64)) {
        let mut entries = self.entries.borrow_mut();
        let len = entries.len();
        if let Some(e) = entries.get_mut(Self::index(len, uid, place)) {
            if e.is(uid, place) && e.slots.base == base {
                change(&mut e.slots.bits);
            }
        }
    }

    /// A request used token `bit` of this key's lease (tokens before it have passed: dropped).
    pub(crate) fn used(&self, uid: u64, place: Place, base: u128, bit: u32) {
        self.with_lease(uid, place, base, |bits| {
            *bits &= u64::MAX.checked_shl(bit + 1).unwrap_or(0);
        });
    }

    /// A refunded request gives token `bit` (its own slot) back to the lease it came from, if this
    /// worker still holds that lease; else the token is dropped (stricter).
    pub(crate) fn give_back(&self, uid: u64, place: Place, base: u128, bit: u32) {
        self.with_lease(uid, place, base, |bits| {
            *bits |= 1u64.checked_shl(bit).unwrap_or(0);
        });
    }

    /// Whether this key may take a lease now: its entry is free (never used, used up, or past its
    /// last slot) or already this key's.
    pub(crate) fn free_for(&self, uid: u64, place: Place, now_ns: u64) -> bool {
        let entries = self.entries.borrow();
        entries
            .get(Self::index(entries.len(), uid, place))
            .is_some_and(|e| e.free_for(uid, place, now_ns))
    }

    /// A new lease for this key, `until_ns` the last nanosecond its last slot is usable (nothing when
    /// another key's lease holds the entry).
    pub(crate) fn hold(
        &self,
        uid: u64,
        place: Place,
        slots: LeaseSlots,
        until_ns: u64,
        now_ns: u64,
    ) {
        let mut entries = self.entries.borrow_mut();
        let len = entries.len();
        if let Some(e) = entries.get_mut(Self::index(len, uid, place)) {
            if e.free_for(uid, place, now_ns) {
                *e = Entry {
                    uid,
                    set: place.set,
                    fp: place.fp,
                    slots,
                    until_ns,
                };
            }
        }
    }
}
