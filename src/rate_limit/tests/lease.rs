//! Token leases (`"lease"` on a local limit): fewer shared-data calls for a hot key, never more
//! admitted than a plain GCRA allows, and the stricter cases bounded.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::rate_limit::gcra::LeaseSlots;
use crate::rate_limit::local::Place;
use crate::testkit::Rng;
use std::rc::Rc;

/// A worker's lease table.
fn worker() -> Rc<Leases> {
    Rc::new(Leases::new())
}

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
    leases: &Rc<Leases>,
) -> (RateOutcome, Receipt) {
    rl.acquire_held(keys, now, store, leases, &HK)
}

fn ok(
    rl: &RateLimits,
    keys: &KeyInputs,
    now: u64,
    store: &mut MemoryStore,
    w: &Rc<Leases>,
) -> bool {
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
    let exact = Rc::new(Leases::disabled());
    (0..10_000)
        .take_while(|_| ok(rl, keys, now, store, &exact))
        .count()
}

/// The CAS token of the set of `keys` in the first limit's table: one more for every write since it
/// was created (`None`: never written).
fn writes(store: &MemoryStore, rl: &RateLimits, keys: &KeyInputs) -> Option<Cas> {
    let limit = &rl.limits()[0];
    let set = match (&limit.key, keys.client_ip) {
        (KeySpec::ClientIp { .. }, Some(ip)) => limit.table.place(&KeyValue::Ip(ip), &HK).set,
        _ => 0,
    };
    store.get(&limit.table.store_key(set)).unwrap().1
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
    for (worker, reads, cas) in [(worker(), 3, 4), (Rc::new(Leases::disabled()), 24, 25)] {
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
    let w = worker();
    let mut store = MemoryStore::new();
    assert!(ok(&rl, &k, T0, &mut store, &w));
    store.reads.set(0);
    assert_eq!(rl.check_head(&k, T0 + 1_000, &store, &w, &HK), None);
    assert_eq!(store.reads.get(), 0, "the lease answered");
    // Another worker holds no lease: it reads.
    assert_eq!(rl.check_head(&k, T0 + 1_000, &store, &worker(), &HK), None);
    assert_eq!(store.reads.get(), 1);
}

// ---------------------------------------------------------------- never exceeded

#[test]
fn one_worker_with_a_lease_gets_exactly_the_burst() {
    // Bursts below 64 give up no idle credit: one worker gets exactly `burst`, then 429.
    for (burst, lease) in [(10, 8), (10, 2), (63, 64), (3, 8), (1, 8)] {
        let rl = leasing("client_ip", burst, 3600, burst, lease);
        let k = from_ip("192.0.2.1");
        let w = worker();
        let mut store = MemoryStore::new();
        let passed = (0..3 * burst)
            .filter(|i| ok(&rl, &k, T0 + i * 1_000, &mut store, &w))
            .count();
        assert_eq!(passed as u64, burst, "burst {burst} lease {lease}");
        // Remaining counts down one by one in this worker's view.
        let w = worker();
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
    let (a, b) = (worker(), worker());
    let mut store = MemoryStore::new();
    // Worker a: its token and 4 more (half of 10 is 5, own token included).
    assert!(ok(&rl, &k, T0, &mut store, &a));
    let place = rl.limits()[0]
        .table
        .place(&KeyValue::Ip(k.client_ip.unwrap()), &HK);
    let uid = rl.limits()[0].table.uid();
    let held = |w: &Leases| w.get(uid, place).map_or(0, |s| s.bits.count_ones());
    assert_eq!(held(&a), 4);
    // Worker b: 5 left, so its own and 1 more.
    assert!(ok(&rl, &k, T0, &mut store, &b));
    assert_eq!(held(&b), 1);
    // 3 left in the bucket: too few to lease (half is 1).
    assert!(ok(&rl, &k, T0, &mut store, &worker()));
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

/// The randomized runs' next request, from the random word `r`: when it arrives (mostly 0–200 µs
/// after `now`, far over every limit here; one gap in 500 up to 3 s) and which of three workers
/// takes it.
fn arrival(r: u64, now: u64) -> (u64, usize) {
    let gap = if r.is_multiple_of(500) {
        (r >> 9) % (3 * S)
    } else {
        (r >> 9) % 200_000
    };
    (now + gap, ((r >> 40) % 3) as usize)
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
        let workers = [worker(), worker(), worker()];
        let exact = Rc::new(Leases::disabled());
        let (mut store, mut reference) = (MemoryStore::new(), MemoryStore::new());
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let mut now = T0;
        let (mut admitted, mut exact_admitted) = (Vec::new(), 0usize);
        for _ in 0..20_000 {
            let r = rng.next();
            let (at, worker) = arrival(r, now);
            now = at;
            let w = &workers[worker];
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
fn refunds_from_leases_and_buckets_never_admit_more_than_a_plain_bucket() {
    // As above, and about one admitted request in six is refunded a little later (the rate limit
    // service said no, its body failed): a refunded request is not admitted, and its token must
    // not let any slot be used twice.
    for (limit, window_s, burst, lease, seed) in [
        (100, 1, 100, 8, 11),
        (1, 1, 8, 4, 12),
        (10, 1, 64, 64, 13),
        (1_000, 1, 2_000, 16, 14),
        // Limits that do not lease: their refunds too.
        (100, 1, 100, 1, 15),
        (1, 1, 8, 1, 16),
        (10, 1, 64, 1, 17),
    ] {
        let rl = leasing("client_ip", limit, window_s, burst, lease);
        let k = from_ip("192.0.2.1");
        let workers = [worker(), worker(), worker()];
        let mut store = MemoryStore::new();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ seed);
        let mut now = T0;
        let mut admitted: Vec<(u64, bool)> = Vec::new();
        let mut pending: std::collections::VecDeque<(Receipt, usize)> = Default::default();
        let mut refunds = 0;
        for _ in 0..20_000 {
            let r = rng.next();
            let (at, worker) = arrival(r, now);
            now = at;
            let w = &workers[worker];
            let (o, receipt) = take(&rl, &k, now, &mut store, w);
            if allowed(&o) {
                admitted.push((now, true));
                if (r >> 20).is_multiple_of(6) {
                    pending.push_back((receipt, admitted.len() - 1));
                }
            }
            if (r >> 30).is_multiple_of(4) {
                if let Some((receipt, i)) = pending.pop_front() {
                    rl.refund(receipt, &mut store);
                    admitted[i].1 = false;
                    refunds += 1;
                }
            }
        }
        let times: Vec<u64> = admitted.iter().filter(|a| a.1).map(|a| a.0).collect();
        let what = format!("limit {limit}/{window_s}s burst {burst} lease {lease}");
        assert!(refunds >= 10, "{what}: {refunds} refunds");
        assert_eq!(
            over_gcra_bound(&times, limit, window_s, burst),
            None,
            "{what}: an admission more than the limit allows"
        );
    }
}

#[test]
fn the_bound_check_catches_one_admission_too_many() {
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
    let w = worker();
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
    let lease = w.get(rl.limits()[0].table.uid(), place).unwrap();
    assert_eq!(lease.base, rl.limits()[0].gcra.ticks(T0 + reserve));
    assert_eq!(lease.bits, 0b1111_0000, "slots 4 to 7 left");
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
    let w = worker();
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
    let w = worker();
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
fn a_failed_commit_leaves_the_lease_and_its_own_token_with_the_worker() {
    let rl = limits(
        r#"[{"name": "first", "key": "route", "limit": 100, "window_s": 60, "lease": 8},
            {"name": "second", "key": "client_ip", "limit": 100, "window_s": 60}]"#,
    );
    let k = from_ip("192.0.2.1");
    let w = worker();
    let mut mem = MemoryStore::new();
    rl.prepare(&mut mem).unwrap();
    let mut store = Racy::new(mem);
    store.fail_prefix = rl.limits()[1].table.store_key(0)[..28].to_string();
    store.fail_writes = u32::MAX;
    let (o, receipt) = rl.acquire_held(&k, T0, &mut store, &w, &HK);
    assert!(matches!(o, RateOutcome::Unavailable { .. }), "{o:?}");
    assert!(receipt.is_empty());
    // The 8 tokens `first` took (its own slot and 7 leased) stay with the worker: 100 - 1 reserve
    // - 8 left in the shared bucket, and the worker holds all 8.
    let uid = rl.limits()[0].table.uid();
    let route = rl.limits()[0].table.place(&KeyValue::Constant, &HK);
    assert_eq!(w.get(uid, route).map(|l| l.bits), Some(0xFF));
    let mut mem = store.inner;
    let first_only =
        limits(r#"[{"name": "first", "key": "route", "limit": 100, "window_s": 60, "lease": 8}]"#);
    assert_eq!(left(&first_only, &k, T0, &mut mem), 91);
}

#[test]
fn a_refunded_token_goes_back_to_the_lease_as_its_own_slot() {
    // Burst 100: a lease from the full bucket gives up 1 token (100/64) of idle credit.
    let rl = leasing("route", 100, 60, 100, 8);
    let k = from_ip("192.0.2.1");
    let a = worker();
    let mut store = MemoryStore::new();
    let (o, receipt) = take(&rl, &k, T0, &mut store, &a);
    assert_eq!(remaining(&o), 98, "the reserve and its own token");
    let before = writes(&store, &rl, &k);
    rl.refund(receipt, &mut store);
    // The request's own slot went to a's lease, not to the shared bucket (whose slot just before
    // its arrival time is one a's lease holds): nothing written, 100 - 1 - 8 left for the others.
    assert_eq!(writes(&store, &rl, &k), before);
    assert_eq!(left(&rl, &k, T0, &mut store), 91);
    // A leased token, refunded, goes back to the lease too.
    let (o, receipt) = take(&rl, &k, T0, &mut store, &a);
    assert!(allowed(&o));
    rl.refund(receipt, &mut store);
    let rest = (0..20).filter(|_| ok(&rl, &k, T0, &mut store, &a)).count();
    assert_eq!(rest, 8, "a's 8 tokens: 91 + 8 = burst - reserve");
}

#[test]
fn a_refunded_leased_token_goes_back_to_its_own_slot() {
    // 1 per second, burst 16, lease 8 from a full bucket: the request's own slot T0 (bit 0), the
    // lease's slots T0 + 1 s … T0 + 7 s (bits 1-7).
    let rl = leasing("client_ip", 1, 1, 16, 8);
    let k = from_ip("192.0.2.1");
    let a = worker();
    let mut store = MemoryStore::new();
    assert!(ok(&rl, &k, T0, &mut store, &a));
    // The next request uses bit 1 and is refunded: bit 1 (slot T0 + 1 s) is a's again, not bit 0
    // (slot T0, passed by T0 + 0.5 s).
    let (o, receipt) = take(&rl, &k, T0, &mut store, &a);
    assert!(allowed(&o));
    rl.refund(receipt, &mut store);
    let at = T0 + S / 2;
    let mut from_lease = 0;
    loop {
        let before = writes(&store, &rl, &k);
        assert!(before.is_some(), "the key's set");
        assert!(ok(&rl, &k, at, &mut store, &a), "after {from_lease}");
        if writes(&store, &rl, &k) != before {
            break;
        }
        from_lease += 1;
    }
    assert_eq!(from_lease, 7, "bits 1-7, with no write");
}

#[test]
fn a_plain_limit_never_shares_a_table_with_a_leasing_one() {
    // The review's case: a global limit of two policies (or of two configurations in one VM), one
    // leasing, one not. A lenient refund (as plain limits had) arriving after a lease was taken from
    // the same bucket would free a leased slot (used twice); so the two are different buckets.
    let leasing_g = leasing("global", 10, 1, 10, 8);
    let plain_g = leasing("global", 10, 1, 10, 1);
    assert_ne!(
        leasing_g.limits()[0].table.uid(),
        plain_g.limits()[0].table.uid()
    );
    let k = from_ip("192.0.2.1");
    let (w1, plain) = (worker(), Rc::new(Leases::disabled()));
    let mut store = MemoryStore::new();
    let (o, receipt) = take(&plain_g, &k, T0, &mut store, &plain);
    assert!(allowed(&o));
    assert!(ok(&leasing_g, &k, T0, &mut store, &w1));
    let at = T0 + 3 * S / 10;
    let before = writes(&store, &leasing_g, &k);
    plain_g.refund(receipt, &mut store);
    assert_eq!(writes(&store, &leasing_g, &k), before);
    // At 0.3 s: the lease's 2 slots not yet passed (0.3 s, 0.4 s) and the bucket's 8: the burst.
    let mut got = (0..20)
        .filter(|_| ok(&leasing_g, &k, at, &mut store, &w1))
        .count();
    got += left(&leasing_g, &k, at, &mut store);
    assert_eq!(got, 10);
    // Without a lease, as before: a refunded token goes back to its bucket.
    assert_eq!(left(&plain_g, &k, T0, &mut store), 10);
}

#[test]
fn a_refund_never_lets_a_slot_be_used_twice() {
    // The review's case: 1 per second, burst 8, lease 4, one worker. The first request takes
    // slot 0 and leases slots 1-3 (arrival time 4 s); it is refunded; at 2 s the lease has slots 2
    // and 3 and the shared bucket 6 more: 8, the burst, and not one more.
    let rl = leasing("client_ip", 1, 1, 8, 4);
    let k = from_ip("192.0.2.1");
    let a = worker();
    let mut store = MemoryStore::new();
    let (o, receipt) = take(&rl, &k, T0, &mut store, &a);
    assert!(allowed(&o));
    rl.refund(receipt, &mut store);
    let at = T0 + 2 * S;
    let mut got = 0;
    for w in [&a, &worker(), &Rc::new(Leases::disabled())] {
        got += (0..20).filter(|_| ok(&rl, &k, at, &mut store, w)).count();
    }
    assert_eq!(got, 8);
}

#[test]
fn a_refund_of_a_plain_token_on_a_leasing_limit_frees_only_its_own_slot() {
    let k = from_ip("192.0.2.1");
    let exact = Rc::new(Leases::disabled());
    // Worker b leases when 4 are left (its own and 1 more), worker a then takes plainly (too few
    // to lease); b's request is refunded: its own slot goes back to b's lease, not to the bucket,
    // whose slot just before its arrival time a holds.
    let rl = leasing("client_ip", 1, 3600, 10, 8);
    let (a, b) = (worker(), worker());
    let mut store = MemoryStore::new();
    for _ in 0..6 {
        assert!(ok(&rl, &k, T0, &mut store, &exact));
    }
    let (o, receipt_b) = take(&rl, &k, T0, &mut store, &b);
    assert!(allowed(&o));
    assert!(ok(&rl, &k, T0, &mut store, &exact));
    assert!(ok(&rl, &k, T0, &mut store, &a));
    let before = writes(&store, &rl, &k);
    assert!(before.is_some(), "the key's set");
    rl.refund(receipt_b, &mut store);
    assert_eq!(writes(&store, &rl, &k), before, "b's lease, not the bucket");
    let mut got = 0;
    for w in [&a, &b, &exact] {
        got += (0..20).filter(|_| ok(&rl, &k, T0, &mut store, w)).count();
    }
    assert_eq!(
        got, 2,
        "10 in all: 6 + 1 + 1 + b's lease (its leased token and its own back)"
    );
    // On a leasing limit, a plain token refunded after someone took another is dropped.
    let rl = leasing("route", 1, 3600, 3, 8);
    let mut store = MemoryStore::new();
    let (_, first) = take(&rl, &k, T0, &mut store, &exact);
    assert!(ok(&rl, &k, T0, &mut store, &exact));
    assert!(ok(&rl, &k, T0, &mut store, &exact));
    rl.refund(first, &mut store);
    assert!(
        !ok(&rl, &k, T0, &mut store, &exact),
        "dropped, not given back"
    );
    // Without a lease on the limit, the same (src/rate_limit/tests.rs has why).
    let plain = leasing("route", 1, 3600, 3, 1);
    let mut store = MemoryStore::new();
    let (_, first) = take(&plain, &k, T0, &mut store, &exact);
    assert!(ok(&plain, &k, T0, &mut store, &exact));
    assert!(ok(&plain, &k, T0, &mut store, &exact));
    plain.refund(first, &mut store);
    assert!(!ok(&plain, &k, T0, &mut store, &exact), "dropped");
}

#[test]
fn two_leasing_limits_on_one_entry_lease_for_the_first_only() {
    // Two route limits whose tables map to the same entry of a worker's table.
    let json = |name: &str, lease: u64| {
        format!(
            r#"{{"name": "{name}", "key": "route", "limit": 100, "window_s": 60, "lease": {lease}}}"#
        )
    };
    let route = Place {
        set: 0,
        fp: 0,
        fallback: 0,
    };
    let mut seen = std::collections::HashMap::new();
    let (first, second) = (0..10_000)
        .find_map(|i| {
            let name = format!("r{i}");
            let uid = limits(&format!("[{}]", json(&name, 8))).limits()[0]
                .table
                .uid();
            let entry = Leases::index(LEASE_ENTRIES, uid, route);
            seen.insert(entry, name.clone()).map(|other| (other, name))
        })
        .unwrap();
    let rl = limits(&format!("[{}, {}]", json(&first, 8), json(&second, 8)));
    let k = from_ip("192.0.2.1");
    let w = worker();
    let mut store = MemoryStore::new();
    assert!(ok(&rl, &k, T0, &mut store, &w));
    // The first holds its lease (7 tokens); the second took only its own token, none for a lease
    // nobody could hold: 99 left (counted by a worker without leases).
    let uid = rl.limits()[0].table.uid();
    assert_eq!(w.get(uid, route).map(|l| l.bits.count_ones()), Some(7));
    assert_eq!(
        left(
            &limits(&format!("[{}]", json(&second, 8))),
            &k,
            T0,
            &mut store
        ),
        99
    );
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
    assert_eq!(
        (lease.base, lease.end, lease.bits),
        (now, now + 5 * i, 0b11110)
    );
    assert_eq!(step.tat, now + 5 * i);
    assert_eq!(
        step.state.remaining, 9,
        "the leased tokens count as still there"
    );
    assert_eq!(g.leased_state(lease, 3, now).remaining, 8, "after slot 1");
    assert_eq!(g.leased_state(lease, 0, now).remaining, 5, "after slot 4");
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
    assert_eq!(g.lease_slot(lease, now + 4), Some((1, now + i)));
    assert_eq!(g.lease_slot(lease, now + i + 1), Some((2, now + 2 * i)));
    assert_eq!(g.lease_slot(lease, now + 4 * i), Some((4, now + 4 * i)));
    assert_eq!(g.lease_slot(lease, now + 4 * i + 1), None);
    // Only the tokens left: slot 2 used, slot 1 refunded (its bit back).
    let holes = LeaseSlots {
        bits: 0b11010,
        ..lease
    };
    assert_eq!(g.lease_slot(holes, now), Some((1, now + i)));
    assert_eq!(g.lease_slot(holes, now + i + 1), Some((3, now + 3 * i)));
    // A clock that steps back by more than the tolerance does not reach a slot.
    assert_eq!(g.lease_slot(lease, now - 6 * i), Some((1, now + i)));
    assert_eq!(g.lease_slot(lease, now - 9 * i), None);
    // A burst of 64 or more: the lease starts burst/64 tokens ahead.
    let g = Gcra::new(100, 1, 640);
    let i = g.interval();
    let (step, lease) = g.take_leasing(0, now, 8);
    assert_eq!(
        lease.map(|l| (l.base, l.end, l.bits)),
        Some((now + 10 * i, now + 18 * i, 0b1111_1110))
    );
    assert_eq!(step.state.remaining, 640 - 11);
}
