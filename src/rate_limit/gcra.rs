//! GCRA, the exact equivalent of a token bucket, in integer arithmetic.
//!
//! Time is counted in ticks of `1/limit` ns (`ticks = now_ns × limit`), so the emission interval is
//! exactly `window_ns` ticks and nothing is ever rounded: `limit` tokens per `window_s`, for ever.

use super::LimitState;

/// Nanoseconds per second.
pub(crate) const NS_PER_S: u64 = 1_000_000_000;

/// The arithmetic of one limit: `limit` tokens per `window_s`, at most `burst` in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    limit: u64,
    burst: u64,
    /// One token, in ticks (= window in ns).
    interval: u128,
    /// `(burst - 1) × interval`: how far ahead of now the arrival time may run and still admit.
    tolerance: u128,
}

/// The result of offering one request to one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub allowed: bool,
    /// The bucket's theoretical arrival time after this request (unchanged when denied).
    pub tat: u128,
    pub state: LimitState,
}

/// Tokens a worker holds: bit `j` of `bits` is the slot `base + j × interval`. Bit 0 is the slot of
/// the request that took the lease (held again only if that request is refunded); `end` is the
/// bucket's arrival time the lease left. A token keeps its own slot from lease to use or refund, so
/// that no slot is ever handed out twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseSlots {
    pub base: u128,
    pub end: u128,
    pub bits: u64,
}

impl Gcra {
    /// `limit` ≥ 1, `window_s` ≥ 1, `burst` ≥ 1 (checked at compile time by the caller).
    pub fn new(limit: u64, window_s: u64, burst: u64) -> Gcra {
        let limit = limit.max(1);
        let burst = burst.max(1);
        let interval = u128::from(window_s.max(1)) * u128::from(NS_PER_S);
        Gcra {
            limit,
            burst,
            interval,
            tolerance: u128::from(burst - 1) * interval,
        }
    }

    /// Host time in this limit's ticks.
    pub fn ticks(&self, now_ns: u64) -> u128 {
        u128::from(now_ns) * u128::from(self.limit)
    }

    /// The last nanosecond whose ticks do not pass `ticks`.
    pub fn last_ns(&self, ticks: u128) -> u64 {
        u64::try_from(ticks / u128::from(self.limit)).unwrap_or(u64::MAX)
    }

    /// One token, in ticks (what a refund gives back).
    pub fn interval(&self) -> u128 {
        self.interval
    }

    /// A bucket is idle (fully refilled) when its arrival time is not in the future.
    pub fn idle(tat: u128, now: u128) -> bool {
        tat <= now
    }

    /// Offers one request at tick `now` to the bucket whose arrival time is `tat`.
    pub fn take(&self, tat: u128, now: u128) -> Step {
        let base = tat.max(now);
        let ahead = base - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return Step {
                allowed: false,
                tat,
                state: LimitState {
                    remaining: 0,
                    reset_s: self.ceil_s(ahead),
                    retry_after_s: self.ceil_s(wait).max(1),
                },
            };
        }
        let tat = base + self.interval;
        Step {
            allowed: true,
            tat,
            state: self.state(tat, now),
        }
    }

    /// Idle credit a lease may give up so that it lasts while the bucket is (nearly) full:
    /// `burst / 64` tokens' worth of refill (none below a burst of 64).
    pub fn lease_reserve(&self) -> u128 {
        u128::from(self.burst / 64) * self.interval
    }

    /// Offers one request at tick `now` that may also lease up to `max - 1` more tokens for this
    /// worker (see `lease.rs`). The request's own token takes the first slot handed out; the lease
    /// holds the slots after it, each usable while `now` has not passed it, so that every admission
    /// stays inside the bound of a plain GCRA. A lease never takes more than half of
    /// what the bucket can give now, and none when that is fewer than 2 (such a bucket is served one
    /// token at a time, exactly). The state reported counts the leased tokens as still in the bucket.
    pub fn take_leasing(&self, tat: u128, now: u128, max: u64) -> (Step, Option<LeaseSlots>) {
        let plain = self.take(tat, now);
        if max < 2 || !plain.allowed {
            return (plain, None);
        }
        // How many tokens a request at `now` could take from a bucket whose next slot is `base`
        // (`base - now` is within the tolerance: the plain take was allowed).
        let avail = |base: u128| {
            self.tolerance.saturating_sub(base.saturating_sub(now)) / self.interval + 1
        };
        let base0 = tat.max(now);
        if avail(base0) / 2 < 2 {
            return (plain, None);
        }
        // `lease_reserve` ≤ tolerance (burst / 64 ≤ burst - 1), so `base` still admits.
        let base = base0.max(now.saturating_add(self.lease_reserve()));
        let k = u128::from(max).min(avail(base) / 2);
        if k < 2 {
            return (plain, None);
        }
        // k ≤ max ≤ 64 (`MAX_LEASE`): bits 1 … k-1.
        let k = k.min(64);
        let end = base + k * self.interval;
        let step = Step {
            allowed: true,
            tat: end,
            state: self.state(base + self.interval, now),
        };
        let bits = (u64::MAX >> (64 - k)) & !1;
        (step, Some(LeaseSlots { base, end, bits }))
    }

    /// The token a lease can hand out at `now`: its first slot not yet passed (and not further ahead
    /// than the tolerance, should the host clock step back), as (bit, slot).
    pub fn lease_slot(&self, lease: LeaseSlots, now: u128) -> Option<(u32, u128)> {
        let passed = if now > lease.base {
            (now - lease.base).div_ceil(self.interval)
        } else {
            0
        };
        let open = if passed >= 64 {
            0
        } else {
            lease.bits & (u64::MAX << passed)
        };
        if open == 0 {
            return None;
        }
        let bit = open.trailing_zeros();
        let slot = lease.base + u128::from(bit) * self.interval;
        (slot.saturating_sub(now) <= self.tolerance).then_some((bit, slot))
    }

    /// The state a request served from a lease reports once it used a token (`left`: the lease's
    /// tokens after it): the bucket as the lease left it, with those tokens counted as still there.
    pub fn leased_state(&self, lease: LeaseSlots, left: u32, now: u128) -> LimitState {
        let unused = u128::from(left) * self.interval;
        self.state(lease.end.saturating_sub(unused), now)
    }

    /// Remaining tokens and seconds until full of a bucket (no token taken).
    pub fn state(&self, tat: u128, now: u128) -> LimitState {
        let ahead = tat.saturating_sub(now);
        let capacity = u128::from(self.burst) * self.interval;
        let remaining = capacity.saturating_sub(ahead) / self.interval;
        LimitState {
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
            reset_s: self.ceil_s(ahead),
            retry_after_s: 0,
        }
    }

    /// Ticks → whole seconds, rounded up.
    fn ceil_s(&self, ticks: u128) -> u64 {
        let per_s = u128::from(self.limit) * u128::from(NS_PER_S);
        u64::try_from(ticks.div_ceil(per_s)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: u64 = 1_700_000_000 * NS_PER_S;

    /// Runs `n` requests at one instant; returns how many were allowed and the final arrival time.
    fn burst_at(g: &Gcra, mut tat: u128, now_ns: u64, n: u32) -> (u32, u128) {
        let mut ok = 0;
        for _ in 0..n {
            let s = g.take(tat, g.ticks(now_ns));
            if s.allowed {
                ok += 1;
                tat = s.tat;
            }
        }
        (ok, tat)
    }

    #[test]
    fn full_bucket_admits_burst_then_denies() {
        for (limit, window, burst) in [
            (10, 1, 10),
            (100, 60, 100),
            (1000, 60, 200),
            (1, 1, 1),
            (5, 10, 50),
        ] {
            let g = Gcra::new(limit, window, burst);
            let (ok, _) = burst_at(&g, 0, T0, (burst as u32) * 3);
            assert_eq!(
                u64::from(ok),
                burst,
                "limit {limit} window {window} burst {burst}"
            );
        }
    }

    #[test]
    fn refills_evenly_and_exactly() {
        // 3 per second does not divide 1e9 ns: over 1000 s exactly burst + 3000 pass.
        let g = Gcra::new(3, 1, 3);
        let mut tat = 0;
        let mut ok = 0u64;
        let step = 1_000_000; // 1 ms
        for i in 0..=1_000_000u64 {
            let s = g.take(tat, g.ticks(T0 + i * step));
            if s.allowed {
                ok += 1;
                tat = s.tat;
            }
        }
        assert_eq!(ok, 3 + 3000);
    }

    #[test]
    fn retry_after_and_state_values() {
        let g = Gcra::new(100, 60, 100); // one token per 0.6 s
        let (ok, tat) = burst_at(&g, 0, T0, 100);
        assert_eq!(ok, 100);
        let denied = g.take(tat, g.ticks(T0));
        assert!(!denied.allowed);
        assert_eq!(denied.tat, tat, "a denial changes nothing");
        assert_eq!(
            denied.state,
            LimitState {
                remaining: 0,
                reset_s: 60,
                retry_after_s: 1
            }
        );
        // 0.599 s later still empty; at 0.6 s exactly one token.
        assert!(!g.take(tat, g.ticks(T0 + 599_999_999)).allowed);
        let s = g.take(tat, g.ticks(T0 + 600_000_000));
        assert!(s.allowed);
        assert_eq!(s.state.remaining, 0);
        assert!(!g.take(s.tat, g.ticks(T0 + 600_000_000)).allowed);
        // Fresh bucket: one taken, 99 left, full again in 0.6 s → t=1.
        let s = g.take(0, g.ticks(T0));
        assert_eq!(
            s.state,
            LimitState {
                remaining: 99,
                reset_s: 1,
                retry_after_s: 0
            }
        );
    }

    #[test]
    fn retry_after_rounds_up_whole_seconds() {
        let g = Gcra::new(1, 10, 1);
        let s = g.take(0, g.ticks(T0));
        let d = g.take(s.tat, g.ticks(T0 + 1));
        assert_eq!(d.state.retry_after_s, 10, "9.999999999 s rounds up to 10");
        let d = g.take(s.tat, g.ticks(T0 + 9 * NS_PER_S));
        assert_eq!(d.state.retry_after_s, 1);
        let d = g.take(s.tat, g.ticks(T0 + 9 * NS_PER_S + 999_999_999));
        assert_eq!(d.state.retry_after_s, 1, "never 0");
    }

    #[test]
    fn idle_bucket_is_full_burst_not_more() {
        let g = Gcra::new(10, 1, 5);
        let (ok, tat) = burst_at(&g, 0, T0, 5);
        assert_eq!(ok, 5);
        // After a long idle time the bucket holds burst, not limit × idle time.
        let later = T0 + 3600 * NS_PER_S;
        assert!(Gcra::idle(tat, g.ticks(later)));
        assert_eq!(burst_at(&g, tat, later, 50).0, 5);
    }

    #[test]
    fn extreme_parameters_do_not_overflow() {
        let g = Gcra::new(1_000_000_000, 31_536_000, 1_000_000_000);
        let s = g.take(0, g.ticks(u64::MAX));
        assert!(s.allowed);
        assert_eq!(s.state.remaining, 999_999_999);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// GCRA equals a token bucket kept in exact rational arithmetic (tokens scaled by window_ns).
        #[test]
        fn equals_token_bucket(limit in 1u64..50, window in 1u64..5, burst in 1u64..20,
                               gaps in prop::collection::vec(0u64..400_000_000, 1..200)) {
            let g = Gcra::new(limit, window, burst);
            let one = u128::from(window) * u128::from(NS_PER_S);
            let cap = u128::from(burst) * one;
            let (mut tokens, mut tat) = (cap, 0u128);
            let mut now = 1_000 * NS_PER_S;
            let mut last = now;
            for gap in gaps {
                now += gap;
                tokens = (tokens + u128::from(now - last) * u128::from(limit)).min(cap);
                last = now;
                let bucket_allows = tokens >= one;
                if bucket_allows { tokens -= one; }
                let s = g.take(tat, g.ticks(now));
                prop_assert_eq!(s.allowed, bucket_allows);
                if s.allowed { tat = s.tat; prop_assert_eq!(u128::from(s.state.remaining), tokens / one); }
            }
        }
    }
}
