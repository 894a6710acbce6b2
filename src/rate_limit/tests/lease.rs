//! Token leases (`"lease"` on a local limit): fewer shared-data calls for a hot key, never more
//! admitted than a plain GCRA allows, and the stricter cases bounded.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A policy with one limit `name` (key `key`) that leases `lease` tokens.
fn leasing(key: &str, limit: u64, window_s: u64, burst: u64, lease: u64) -> RateLimits {
    limits(&format!(
        r#"[{{"name": "l", "key": "{key}", "limit": {limit}, "window_s": {window_s},
              "burst": {burst}, "lease": {lease}}}]"#
    ))
}

fn take(
    rl: &RateLimits,
    keys: &KeyInputs,
    now: u64,
    store: &mut dyn SharedStore,
    leases: &Leases,
) -> (RateOutcome, Receipt) {
    rl.acquire_held(keys, now, store, leases, &HK)
}

fn ok(rl: &RateLimits, keys: &KeyInputs, now: u64, store: &mut MemoryStore, w: &Leases) -> bool {
    allowed(&take(rl, keys, now, store, w).0)
}

/// `r` of the `RateLimit` header.
fn remaining(o: &RateOutcome) -> u64 {
    let v = header(response_headers(o), "RateLimit").unwrap();
    let r = v.split(';').find_map(|p| p.strip_prefix("r=")).unwrap();
    r.parse().unwrap()
}

/// How many requests at `now` from a worker without leases pass (what is left in the bucket).
fn left(rl: &RateLimits, keys: &KeyInputs, now: u64, store: &mut MemoryStore) -> usize {
    let exact = Leases::disabled();
    (0..10_000)
        .take_while(|_| ok(rl, keys, now, store, &exact))
        .count()
}

/// The CAS token of a set: one more for every write since it was created.
fn writes(store: &MemoryStore, rl: &RateLimits) -> Option<Cas> {
    store.get(&rl.limits()[0].table.store_key(0)).unwrap().1
}

/// The first of the admission times `times` (sorted) that beats a plain GCRA: in every interval,
/// at most `burst + floor(length × limit / window)` admissions. Checked over every pair in one pass:
/// `count - burst ≤ Δt·limit/W` ⇔ `(j + 1 - burst)·W - t_j·limit ≤ i·W - t_i·limit` for all `i ≤ j`.
fn over_gcra_bound(times: &[u64], limit: u64, window_s: u64, burst: u64) -> Option<usize> {
    let w = i128::from(window_s) * i128::from(S);
    let mut lowest = i128::MAX;
    for (j, &t) in times.iter().enumerate() {
        let at = j as i128;
        lowest = lowest.min(at * w - i128::from(t) * i128::from(limit));
        let need = (at + 1 - i128::from(burst)) * w - i128::from(t) * i128::from(limit);
        if need > lowest {
            return Some(j);
        }
    }
    None
}

// ---------------------------------------------------------------- configuration

#[test]
fn lease_is_checked_and_names_its_path() {
    for (lease, ok) in [(0, false), (1, true), (2, true), (64, true), (65, false)] {
        let json = format!(
            r#"[{{"name": "l", "key": "client_ip", "limit": 5, "window_s": 1, "lease": {lease}}}]"#
        );
        let errs = errors(&json, false);
        if ok {
            assert!(errs.is_empty(), "{lease}: {errs:?}");
        } else {
            assert_eq!(
                errs,
                vec![format!(
                    "policies.p.rate_limits[0].lease: {lease} is out of range (allowed 1..=64)"
                )]
            );
        }
    }
    let remote = r#"[{"name": "l", "key": "client_ip", "limit": 5, "window_s": 1,
                      "backend": "rls", "lease": 4}]"#;
    assert_eq!(
        errors(remote, false),
        vec![
            "policies.p.rate_limits[0].lease: applies only to local limits (the rate limit service counts every request)"
                .to_string()
        ]
    );
    let remote_one = r#"[{"name": "l", "key": "client_ip", "limit": 5, "window_s": 1,
                          "backend": "rls", "lease": 1}]"#;
    assert!(errors(remote_one, false).is_empty());
    assert_eq!(leasing("route", 5, 1, 5, 8).limits()[0].lease, 8);
    assert_eq!(limits(TABLE).limits()[0].lease, 1, "absent: no lease");
}

// ---------------------------------------------------------------- fewer shared-data calls

#[test]
fn a_hot_key_reads_and_writes_the_bucket_once_per_lease() {
    // D's limit: a billion per second. 24 requests a microsecond apart.
    let rl = leasing("client_ip", 1_000_000_000, 1, 1_000_000_000, 8);
    let k = from_ip("192.0.2.1");
    for (worker, reads, cas) in [(Leases::new(), 3, 4), (Leases::disabled(), 24, 25)] {
        let mut store = MemoryStore::new();
        rl.prepare(&mut store).unwrap();
        let set = rl.limits()[0]
            .table
            .place(&KeyValue::Ip(k.client_ip.unwrap()), &HK);
        let key = rl.limits()[0].table.store_key(set.set);
        store.reads.set(0);
        for i in 0..24 {
            assert!(ok(&rl, &k, T0 + i * 1_000, &mut store, &worker));
        }
        assert_eq!(store.reads.get(), reads, "{worker:?}");
        assert_eq!(store.get(&key).unwrap().1, Some(cas), "{worker:?}: writes");
    }
}

#[test]
fn check_head_answers_from_a_lease_without_reading() {
    let rl = leasing("client_ip", 1_000_000_000, 1, 1_000_000_000, 8);
    let k = from_ip("192.0.2.1");
    let w = Leases::new();
    let mut store = MemoryStore::new();
    assert!(ok(&rl, &k, T0, &mut store, &w));
    store.reads.set(0);
    assert_eq!(rl.check_head(&k, T0 + 1_000, &store, &w, &HK), None);
    assert_eq!(store.reads.get(), 0, "the lease answered");
    // Another worker holds no lease: it reads.
    assert_eq!(
        rl.check_head(&k, T0 + 1_000, &store, &Leases::new(), &HK),
        None
    );
    assert_eq!(store.reads.get(), 1);
}

// ---------------------------------------------------------------- never exceeded

#[test]
fn one_worker_with_a_lease_gets_exactly_the_burst() {
    // Bursts below 64 give up no idle credit: one worker gets exactly `burst`, then 429.
    for (burst, lease) in [(10, 8), (10, 2), (63, 64), (3, 8), (1, 8)] {
        let rl = leasing("client_ip", burst, 3600, burst, lease);
        let k = from_ip("192.0.2.1");
        let w = Leases::new();
        let mut store = MemoryStore::new();
        let passed = (0..3 * burst)
            .filter(|i| ok(&rl, &k, T0 + i * 1_000, &mut store, &w))
            .count();
        assert_eq!(passed as u64, burst, "burst {burst} lease {lease}");
        // Remaining counts down one by one in this worker's view.
        let w = Leases::new();
        let mut store = MemoryStore::new();
        let seen: Vec<u64> = (0..burst)
            .map(|i| remaining(&take(&rl, &k, T0 + i, &mut store, &w).0))
            .collect();
        let want: Vec<u64> = (0..burst).rev().collect();
        assert_eq!(seen, want, "burst {burst} lease {lease}");
    }
}

#[test]
fn a_lease_takes_at_most_half_of_what_is_left_and_none_near_empty() {
    let rl = leasing("client_ip", 10, 3600, 10, 8);
    let k = from_ip("192.0.2.1");
    let (a, b) = (Leases::new(), Leases::new());
    let mut store = MemoryStore::new();
    // Worker a: its token and 4 more (half of 10 is 5, own token included).
    assert!(ok(&rl, &k, T0, &mut store, &a));
    let place = rl.limits()[0]
        .table
        .place(&KeyValue::Ip(k.client_ip.unwrap()), &HK);
    let uid = rl.limits()[0].table.uid();
    let held = |w: &Leases| {
        w.get(uid, place)
            .map_or(0, |s| (s.end - s.next) / rl.limits()[0].gcra.interval())
    };
    assert_eq!(held(&a), 4);
    // Worker b: 5 left, so its own and 1 more.
    assert!(ok(&rl, &k, T0, &mut store, &b));
    assert_eq!(held(&b), 1);
    // 3 left in the bucket: too few to lease (half is 1).
    assert!(ok(&rl, &k, T0, &mut store, &Leases::new()));
    assert_eq!(left(&rl, &k, T0, &mut store), 2);
    // Then every token held is still good, and not one more: 4 for a, 1 for b.
    for (w, n) in [(&a, 4), (&b, 1)] {
        let got = (0..10)
            .filter(|_| ok(&rl, &k, T0 + 1, &mut store, w))
            .count();
        assert_eq!(got, n);
        assert_eq!(held(w), 0);
    }
}

/// A request whose only key is its headers.
fn by_headers(h: &[(String, String)]) -> KeyInputs<'_> {
    KeyInputs {
        client_ip: None,
        key_id: None,
        headers: Headers::new(h),
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn leases_across_workers_never_admit_more_than_a_plain_bucket() {
    // Three workers, one key, rushes far over the limit and lulls long enough to refill: every
    // admission, leased or not, stays within the GCRA bound; a worker without leases on the same
    // arrivals is the reference for how much leasing can cost.
    for (limit, window_s, burst, lease, seed) in [
        (100, 1, 100, 8, 1),
        (100, 1, 100, 64, 2),
        (10, 1, 64, 4, 3),
        (1_000, 1, 2_000, 16, 4),
        (5, 2, 1, 8, 5),
        (1_000_000_000, 1, 1_000_000_000, 8, 6),
    ] {
        let rl = leasing("client_ip", limit, window_s, burst, lease);
        let k = from_ip("192.0.2.1");
        let workers = [Leases::new(), Leases::new(), Leases::new()];
        let exact = Leases::disabled();
        let (mut store, mut reference) = (MemoryStore::new(), MemoryStore::new());
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let mut now = T0;
        let (mut admitted, mut exact_admitted) = (Vec::new(), 0usize);
        for _ in 0..20_000 {
            let r = rng.next();
            // Mostly 0–200 µs apart (far over every limit here), one gap in 500 up to 3 s.
            now += if r.is_multiple_of(500) {
                (r >> 9) % (3 * S)
            } else {
                (r >> 9) % 200_000
            };
            let w = &workers[((r >> 40) % 3) as usize];
            if ok(&rl, &k, now, &mut store, w) {
                admitted.push(now);
            }
            exact_admitted += usize::from(ok(&rl, &k, now, &mut reference, &exact));
        }
        let what = format!("limit {limit}/{window_s}s burst {burst} lease {lease}");
        assert_eq!(
            over_gcra_bound(&admitted, limit, window_s, burst),
            None,
            "{what}: an admission more than the limit allows"
        );
        // Stricter, not starved: tokens held by other workers and the reserve only delay some.
        assert!(
            admitted.len() * 10 >= exact_admitted * 9,
            "{what}: {} admitted with leases, {exact_admitted} without",
            admitted.len()
        );
        assert!(admitted.len() <= exact_admitted + burst as usize, "{what}");
    }
}

#[test]
fn a_lease_used_after_its_slot_would_break_the_bound() {
    // The check above can fail: admissions that beat the bucket by one are caught.
    let mut times: Vec<u64> = (0..10).map(|i| T0 + i).collect();
    assert_eq!(
        over_gcra_bound(&times, 10, 3600, 10),
        None,
        "exactly the burst"
    );
    times.push(T0 + 20);
    assert_eq!(over_gcra_bound(&times, 10, 3600, 10), Some(10), "one more");
    // A token a window later is in; one more at that moment is not.
    let mut times = vec![T0, T0 + 360 * S];
    assert_eq!(over_gcra_bound(&times, 10, 3600, 1), None);
    times.push(T0 + 360 * S + 1);
    assert_eq!(over_gcra_bound(&times, 10, 3600, 1), Some(2));
}

#[test]
fn an_expired_lease_is_dropped_and_the_next_token_comes_from_the_bucket() {
    // A billion per second: the lease starts burst/64 tokens (15.625 ms) ahead, one slot per ns.
    let rl = leasing("client_ip", 1_000_000_000, 1, 1_000_000_000, 8);
    let k = from_ip("192.0.2.1");
    let w = Leases::new();
    let mut store = MemoryStore::new();
    assert!(ok(&rl, &k, T0, &mut store, &w));
    let reserve = 15_625_000;
    // Three slots passed: the fourth is used, the three before it dropped.
    store.reads.set(0);
    assert!(ok(&rl, &k, T0 + reserve + 3, &mut store, &w));
    assert_eq!(store.reads.get(), 0);
    let place = rl.limits()[0]
        .table
        .place(&KeyValue::Ip(k.client_ip.unwrap()), &HK);
    let ticks = rl.limits()[0].gcra.ticks(T0 + reserve + 4);
    assert_eq!(
        w.get(rl.limits()[0].table.uid(), place).map(|s| s.next),
        Some(ticks)
    );
    // Every slot passed: back to the shared bucket.
    assert!(ok(&rl, &k, T0 + S, &mut store, &w));
    assert_eq!(store.reads.get(), 1);
}

#[test]
fn a_flood_of_other_keys_cannot_take_a_lease_away() {
    let rl = leasing("header:x-user", 1_000_000_000, 1, 1_000_000_000, 8);
    let limit = &rl.limits()[0];
    let user = |v: &str| hdrs(&[("x-user", v)]);
    let place_of = |h: &[(String, String)]| {
        limit.table.place(
            &KeyValue::Header(Headers::new(h), "x-user", KeyCase::Fold),
            &HK,
        )
    };
    let slot_of =
        |h: &[(String, String)]| Leases::index(LEASE_ENTRIES, limit.table.uid(), place_of(h));
    let victim = user("victim");
    // Keys that share the victim's entry in the worker's table.
    let rivals: Vec<Vec<(String, String)>> = (0..20_000)
        .map(|i| user(&format!("u{i}")))
        .filter(|h| slot_of(h) == slot_of(&victim))
        .take(20)
        .collect();
    assert_eq!(rivals.len(), 20);
    let w = Leases::new();
    let mut store = MemoryStore::new();
    assert!(ok(&rl, &by_headers(&victim), T0, &mut store, &w));
    let held = w.get(limit.table.uid(), place_of(&victim));
    assert!(held.is_some());
    // Every rival is served (one token at a time: no lease for them) and the victim keeps its lease.
    store.reads.set(0);
    for (i, rival) in rivals.iter().enumerate() {
        assert!(ok(
            &rl,
            &by_headers(rival),
            T0 + 1 + i as u64,
            &mut store,
            &w
        ));
        assert!(ok(
            &rl,
            &by_headers(rival),
            T0 + 1 + i as u64,
            &mut store,
            &w
        ));
    }
    assert_eq!(store.reads.get(), 40, "no rival got a lease");
    assert_eq!(w.get(limit.table.uid(), place_of(&victim)), held);
    // Once the victim's lease has passed its last slot, the entry is free for the next key.
    let later = T0 + S;
    assert!(ok(&rl, &by_headers(&rivals[0]), later, &mut store, &w));
    assert!(w.get(limit.table.uid(), place_of(&rivals[0])).is_some());
    assert_eq!(w.get(limit.table.uid(), place_of(&victim)), None);
}

// ---------------------------------------------------------------- one token from every limit or none

#[test]
fn a_denial_by_another_limit_uses_no_leased_token() {
    let rl = limits(
        r#"[{"name": "big", "key": "client_ip", "limit": 1000000000, "window_s": 1, "lease": 8},
            {"name": "small", "key": "route", "limit": 2, "window_s": 3600}]"#,
    );
    let k = from_ip("192.0.2.1");
    let w = Leases::new();
    let mut store = MemoryStore::new();
    let place = rl.limits()[0]
        .table
        .place(&KeyValue::Ip(k.client_ip.unwrap()), &HK);
    let uid = rl.limits()[0].table.uid();
    assert!(ok(&rl, &k, T0, &mut store, &w));
    assert!(ok(&rl, &k, T0 + 1, &mut store, &w));
    let before = w.get(uid, place);
    let (o, receipt) = take(&rl, &k, T0 + 2, &mut store, &w);
    assert!(
        matches!(&o, RateOutcome::Limited { limit, .. } if limit == "small"),
        "{o:?}"
    );
    assert!(receipt.is_empty());
    assert_eq!(w.get(uid, place), before, "the lease is untouched");
}

#[test]
fn a_refund_gives_back_the_request_token_and_keeps_the_lease() {
    // Burst 100: a lease from the full bucket gives up 1 token (100/64) of idle credit.
    let rl = leasing("route", 100, 60, 100, 8);
    let k = from_ip("192.0.2.1");
    let a = Leases::new();
    let mut store = MemoryStore::new();
    let (o, receipt) = take(&rl, &k, T0, &mut store, &a);
    assert_eq!(remaining(&o), 98, "the reserve and its own token");
    rl.refund(receipt, &mut store);
    // 100 - 1 reserve - 7 leased: 92 left for every other worker, and a's 7 still good.
    assert_eq!(left(&rl, &k, T0, &mut store), 92);
    // A leased token costs no write; refunded, it goes back to the shared bucket, where another
    // worker finds it.
    let before = writes(&store, &rl);
    let (o, receipt) = take(&rl, &k, T0, &mut store, &a);
    assert!(allowed(&o));
    assert_eq!(writes(&store, &rl), before);
    rl.refund(receipt, &mut store);
    assert_eq!(left(&rl, &k, T0, &mut store), 1);
    let rest = (0..10).filter(|_| ok(&rl, &k, T0, &mut store, &a)).count();
    assert_eq!(rest, 6);
}

#[test]
fn a_failed_commit_gives_back_the_whole_lease() {
    let rl = limits(
        r#"[{"name": "first", "key": "route", "limit": 100, "window_s": 60, "lease": 8},
            {"name": "second", "key": "client_ip", "limit": 100, "window_s": 60}]"#,
    );
    let k = from_ip("192.0.2.1");
    let w = Leases::new();
    let mut mem = MemoryStore::new();
    rl.prepare(&mut mem).unwrap();
    let mut store = Racy::new(mem);
    store.fail_prefix = rl.limits()[1].table.store_key(0)[..28].to_string();
    store.fail_writes = u32::MAX;
    let (o, receipt) = rl.acquire_held(&k, T0, &mut store, &w, &HK);
    assert!(matches!(o, RateOutcome::Unavailable { .. }), "{o:?}");
    assert!(receipt.is_empty());
    let uid = rl.limits()[0].table.uid();
    let route = rl.limits()[0].table.place(&KeyValue::Constant, &HK);
    assert_eq!(w.get(uid, route), None, "no lease was handed to the worker");
    // Its own token and the 7 leased came back; only the reserve (1 token) is gone.
    let mut mem = store.inner;
    let first_only = limits(r#"[{"name": "first", "key": "route", "limit": 100, "window_s": 60}]"#);
    assert_eq!(left(&first_only, &k, T0, &mut mem), 99);
}

// ---------------------------------------------------------------- the arithmetic

#[test]
fn take_leasing_gives_the_request_the_first_slot_and_the_lease_the_next() {
    let g = Gcra::new(10, 1, 10);
    let now = g.ticks(T0);
    let i = g.interval();
    // Full bucket, burst 10 < 64: no reserve; half of 10 is 5: the request's slot, then 4 leased.
    let (step, lease) = g.take_leasing(0, now, 8);
    let lease = lease.unwrap();
    assert_eq!((lease.next, lease.end), (now + i, now + 5 * i));
    assert_eq!(step.tat, now + 5 * i);
    assert_eq!(
        step.state.remaining, 9,
        "the leased tokens count as still there"
    );
    assert_eq!(g.leased_state(now + i, now).remaining, 8);
    assert_eq!(g.leased_state(now + 4 * i, now).remaining, 5);
    // max 1, burst 1, a nearly empty bucket: exactly a plain take.
    for (g, tat, max) in [
        (g, 0, 1),
        (Gcra::new(10, 1, 1), 0, 8),
        (g, now + 7 * i, 8),
        (g, now + 20 * i, 8),
    ] {
        assert_eq!(g.take_leasing(tat, now, max), (g.take(tat, now), None));
    }
    // A leased slot is usable until the moment it passes, then the next.
    assert_eq!(g.lease_slot(lease, now + 4), Some(now + i));
    assert_eq!(g.lease_slot(lease, now + i + 1), Some(now + 2 * i));
    assert_eq!(g.lease_slot(lease, now + 4 * i), Some(now + 4 * i));
    assert_eq!(g.lease_slot(lease, now + 4 * i + 1), None);
    // A burst of 64 or more: the lease starts burst/64 tokens ahead.
    let g = Gcra::new(100, 1, 640);
    let i = g.interval();
    let (step, lease) = g.take_leasing(0, now, 8);
    assert_eq!(
        lease.map(|l| (l.next, l.end)),
        Some((now + 11 * i, now + 18 * i))
    );
    assert_eq!(step.state.remaining, 640 - 11);
}
