use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::decision::Decision;
use crate::store::{Cas, MemoryStore};

mod lease;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;
const HK: [u8; 16] = *b"0123456789abcdef";

fn inputs(json: &str) -> Vec<LimitInput> {
    crate::json::from_str(json).unwrap()
}

fn compile_with(json: &str, policy: &str, slots: u32) -> RateLimits {
    let mut errs = Errors::default();
    let rl = compile(
        &inputs(json),
        "policies.p.rate_limits",
        policy,
        true,
        true,
        slots,
        &mut errs,
    );
    assert!(errs.is_empty(), "{:?}", errs.into_vec());
    rl.unwrap()
}

fn limits(json: &str) -> RateLimits {
    compile_with(json, "p", DEFAULT_SLOTS)
}

fn errors(json: &str, has_signature: bool) -> Vec<String> {
    let mut errs = Errors::default();
    let rl = compile(
        &inputs(json),
        "policies.p.rate_limits",
        "p",
        has_signature,
        true,
        DEFAULT_SLOTS,
        &mut errs,
    );
    let errs: Vec<String> = errs.into_vec().iter().map(|e| e.to_string()).collect();
    assert_eq!(rl.is_none(), !errs.is_empty());
    errs
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn from_ip(addr: &str) -> KeyInputs<'static> {
    KeyInputs {
        client_ip: ip(addr),
        key_id: None,
        headers: Headers::new(&[]),
    }
}

fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn allowed(o: &RateOutcome) -> bool {
    matches!(o, RateOutcome::Allowed { .. })
}

/// How many of `n` requests at one instant pass.
fn passes(
    rl: &RateLimits,
    keys: &KeyInputs,
    now: u64,
    store: &mut dyn SharedStore,
    n: usize,
) -> usize {
    (0..n)
        .filter(|_| allowed(&rl.acquire(keys, now, store, &HK)))
        .count()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn response_headers(o: &RateOutcome) -> &[(String, String)] {
    match o {
        RateOutcome::Allowed { headers } => headers,
        RateOutcome::Limited { reply, .. } | RateOutcome::Unavailable { reply } => &reply.headers,
    }
}

// ---------------------------------------------------------------- configuration

#[test]
fn compiles_every_key_kind_with_defaults() {
    let rl = limits(
        r#"[
        {"name": "per-client", "key": "client_ip", "limit": 100, "window_s": 60},
        {"name": "per-partner", "key": "key_id", "limit": 1000, "window_s": 60, "burst": 200},
        {"name": "per-user", "key": "header:X-User-Id", "limit": 10, "window_s": 1},
        {"name": "route-total", "key": "route", "limit": 5000, "window_s": 1, "status": 503},
        {"name": "all", "key": "global", "limit": 9, "window_s": 2, "headers": false, "backend": "local"},
        {"name": "v6", "key": "client_ip", "limit": 1, "window_s": 1, "ipv6_prefix": 48}
    ]"#,
    );
    let l = rl.limits();
    assert_eq!(l[0].key, KeySpec::ClientIp { ipv6_prefix: 64 });
    assert_eq!((l[0].burst, l[0].status, l[0].headers), (100, 429, true));
    assert_eq!((l[1].key.clone(), l[1].burst), (KeySpec::KeyId, 200));
    assert_eq!(
        l[2].key,
        KeySpec::Header {
            name: "x-user-id".into(),
            case: KeyCase::Fold
        }
    );
    assert_eq!((l[3].key.clone(), l[3].status), (KeySpec::Route, 503));
    assert_eq!((l[4].key.clone(), l[4].headers), (KeySpec::Global, false));
    assert_eq!(l[5].key, KeySpec::ClientIp { ipv6_prefix: 48 });
    assert_eq!(l[0].path, "policies.p.rate_limits[0]");
    assert_eq!(l[0].sets(), DEFAULT_SLOTS / WAYS as u32);
    assert_eq!(l[3].sets(), 1);
}

#[test]
fn config_errors_name_the_path() {
    let base = r#""name": "n", "key": "client_ip", "limit": 10, "window_s": 1"#;
    let cases: &[(&str, &str, &str)] = &[
        (
            r#""name": "n", "key": "client_ip", "limit": 0, "window_s": 1"#,
            "[0].limit",
            "out of range",
        ),
        (
            r#""name": "n", "key": "client_ip", "limit": 1000000001, "window_s": 1"#,
            "[0].limit",
            "out of range",
        ),
        (
            r#""name": "n", "key": "client_ip", "limit": 1, "window_s": 0"#,
            "[0].window_s",
            "out of range",
        ),
        (
            r#""name": "n", "key": "client_ip", "limit": 1, "window_s": 31536001"#,
            "[0].window_s",
            "out of range",
        ),
        (
            &format!(r#"{base}, "burst": 0"#),
            "[0].burst",
            "out of range",
        ),
        (
            &format!(r#"{base}, "status": 500"#),
            "[0].status",
            "429 or 503",
        ),
        (
            &format!(r#"{base}, "status": 200"#),
            "[0].status",
            "429 or 503",
        ),
        (
            &format!(r#"{base}, "ipv6_prefix": 0"#),
            "[0].ipv6_prefix",
            "1..=128",
        ),
        (
            &format!(r#"{base}, "ipv6_prefix": 129"#),
            "[0].ipv6_prefix",
            "1..=128",
        ),
        (
            r#""name": "n", "key": "route", "limit": 1, "window_s": 1, "ipv6_prefix": 64"#,
            "[0].ipv6_prefix",
            "only to key \"client_ip\"",
        ),
        (
            &format!(r#"{base}, "backend": "redis""#),
            "[0].backend",
            "unknown backend",
        ),
        (
            r#""name": "n", "key": "header:", "limit": 1, "window_s": 1"#,
            "[0].key",
            "not a valid header name",
        ),
        (
            r#""name": "n", "key": "header:x user", "limit": 1, "window_s": 1"#,
            "[0].key",
            "not a valid header name",
        ),
        (
            r#""name": "n", "key": "header::path", "limit": 1, "window_s": 1"#,
            "[0].key",
            "not a valid header name",
        ),
        (
            r#""name": "n", "key": "Header:x", "limit": 1, "window_s": 1"#,
            "[0].key",
            "unknown key",
        ),
        (
            r#""name": "n", "key": "ip", "limit": 1, "window_s": 1"#,
            "[0].key",
            "unknown key",
        ),
        (
            r#""name": "", "key": "route", "limit": 1, "window_s": 1"#,
            "[0].name",
            "not a valid limit name",
        ),
        (
            r#""name": "a\"b", "key": "route", "limit": 1, "window_s": 1"#,
            "[0].name",
            "not a valid limit name",
        ),
    ];
    for (fields, at, why) in cases {
        let errs = errors(&format!("[{{{fields}}}]"), true);
        assert_eq!(errs.len(), 1, "{fields}: {errs:?}");
        assert!(
            errs[0].starts_with(&format!("policies.p.rate_limits{at}: ")),
            "{fields}: {errs:?}"
        );
        assert!(errs[0].contains(why), "{fields}: {errs:?}");
    }
    // The same entries minus the fault compile (allow case).
    assert!(errors(
        &format!("[{{{base}, \"burst\": 1, \"status\": 503, \"ipv6_prefix\": 128}}]"),
        true
    )
    .is_empty());
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = errors(
        r#"[{"name": "", "key": "nope", "limit": 0, "window_s": 0, "status": 1},
            {"name": "ok", "key": "route", "limit": 1, "window_s": 1, "backend": "remote"}]"#,
        true,
    );
    assert_eq!(errs.len(), 6, "{errs:?}");
}

#[test]
fn key_id_needs_a_signature_section() {
    let json = r#"[{"name": "per-partner", "key": "key_id", "limit": 10, "window_s": 60}]"#;
    let errs = errors(json, false);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("policies.p.rate_limits[0].key: "),
        "{errs:?}"
    );
    assert!(errs[0].contains("signature"), "{errs:?}");
    assert!(errors(json, true).is_empty());
}

#[test]
fn duplicate_names_are_an_error() {
    let errs = errors(
        r#"[{"name": "a", "key": "route", "limit": 1, "window_s": 1},
            {"name": "a", "key": "client_ip", "limit": 1, "window_s": 1}]"#,
        true,
    );
    assert_eq!(
        errs,
        vec!["policies.p.rate_limits[1].name: duplicate limit name \"a\" in this policy"]
    );
}

#[test]
fn unknown_and_missing_fields_are_rejected() {
    assert!(crate::json::from_str::<LimitInput>(
        r#"{"name": "a", "key": "route", "limit": 1, "window_s": 1, "rate": 2}"#
    )
    .is_err());
    assert!(
        crate::json::from_str::<LimitInput>(r#"{"name": "a", "key": "route", "limit": 1}"#)
            .is_err()
    );
    assert!(crate::json::from_str::<LimitInput>(
        r#"{"name": "a", "key": "route", "limit": -1, "window_s": 1}"#
    )
    .is_err());
    assert!(crate::json::from_str::<LimitInput>(
        r#"{"name": "a", "key": "route", "limit": 1, "window_s": 1}"#
    )
    .is_ok());
}

#[test]
fn slots_range() {
    for (v, ok) in [
        (0, false),
        (63, false),
        (64, true),
        (DEFAULT_SLOTS, true),
        (MAX_SLOTS, true),
        (MAX_SLOTS + 1, false),
        (u32::MAX, false),
    ] {
        let mut errs = Errors::default();
        let got = validate_slots(v, "rate_limit_slots", &mut errs);
        let errs = errs.into_vec();
        assert_eq!(errs.is_empty(), ok, "{v}");
        if ok {
            assert_eq!(got, v);
        } else {
            assert_eq!(errs[0].path, "rate_limit_slots");
        }
    }
}

#[test]
fn same_named_globals_must_agree() {
    let a = limits(r#"[{"name": "all", "key": "global", "limit": 10, "window_s": 1}]"#);
    let b = compile_with(
        r#"[{"name": "all", "key": "global", "limit": 10, "window_s": 1}]"#,
        "q",
        DEFAULT_SLOTS,
    );
    let c = compile_with(
        r#"[{"name": "all", "key": "global", "limit": 11, "window_s": 1}]"#,
        "r",
        DEFAULT_SLOTS,
    );
    let mut errs = Errors::default();
    check_globals(&[&a, &b], &mut errs);
    assert!(errs.is_empty());
    check_globals(&[&a, &b, &c], &mut errs);
    assert_eq!(errs.into_vec().len(), 1);
    // One leasing, one not: refused (one bucket, one kind of token accounting).
    let d = compile_with(
        r#"[{"name": "all", "key": "global", "limit": 10, "window_s": 1, "lease": 4}]"#,
        "s",
        DEFAULT_SLOTS,
    );
    let mut errs = Errors::default();
    check_globals(&[&a, &d], &mut errs);
    let errs = errs.into_vec();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].to_string().contains("lease must match"),
        "{}",
        errs[0]
    );
}

// ---------------------------------------------------------------- buckets

#[test]
fn burst_then_429_then_refill() {
    let rl = limits(r#"[{"name": "per-client", "key": "client_ip", "limit": 10, "window_s": 1}]"#);
    let mut store = MemoryStore::new();
    let k = from_ip("192.0.2.1");
    assert_eq!(passes(&rl, &k, T0, &mut store, 30), 10);
    let o = rl.acquire(&k, T0, &mut store, &HK);
    let RateOutcome::Limited { reply, limit } = &o else {
        panic!("{o:?}")
    };
    assert_eq!(
        (reply.status, reply.reason, reply.decision),
        (429, Reason::RateLimited, Decision::Deny)
    );
    assert_eq!(limit, "per-client");
    assert_eq!(header(&reply.headers, "Retry-After"), Some("1"));
    // One token per 100 ms.
    assert_eq!(passes(&rl, &k, T0 + 99_999_999, &mut store, 5), 0);
    assert_eq!(passes(&rl, &k, T0 + 100_000_000, &mut store, 5), 1);
    assert_eq!(passes(&rl, &k, T0 + 450_000_000, &mut store, 5), 3);
    // After a whole window the bucket is full again, never fuller.
    assert_eq!(passes(&rl, &k, T0 + 60 * S, &mut store, 30), 10);
}

#[test]
fn burst_smaller_and_larger_than_limit() {
    for (burst, expect) in [(1, 1), (3, 3), (25, 25)] {
        let rl = limits(&format!(
            r#"[{{"name": "r", "key": "route", "limit": 10, "window_s": 1, "burst": {burst}}}]"#
        ));
        let mut store = MemoryStore::new();
        let k = from_ip("192.0.2.1");
        assert_eq!(passes(&rl, &k, T0, &mut store, 40), expect, "burst {burst}");
        // The refill rate is `limit`, whatever the burst.
        assert_eq!(
            passes(&rl, &k, T0 + 200_000_000, &mut store, 40),
            2.min(expect),
            "burst {burst}"
        );
    }
}

#[test]
fn header_values_exact() {
    let rl =
        limits(r#"[{"name": "per-client", "key": "client_ip", "limit": 100, "window_s": 60}]"#);
    let mut store = MemoryStore::new();
    let k = from_ip("192.0.2.1");
    let o = rl.acquire(&k, T0, &mut store, &HK);
    assert_eq!(
        response_headers(&o),
        &hdrs(&[
            ("RateLimit-Policy", "\"per-client\";q=100;w=60"),
            ("RateLimit", "\"per-client\";r=99;t=1")
        ])[..]
    );
    assert_eq!(passes(&rl, &k, T0, &mut store, 98), 98);
    let o = rl.acquire(&k, T0, &mut store, &HK);
    assert_eq!(
        header(response_headers(&o), "RateLimit"),
        Some("\"per-client\";r=0;t=60")
    );
    let o = rl.acquire(&k, T0 + 1, &mut store, &HK);
    let RateOutcome::Limited { reply, .. } = &o else {
        panic!("{o:?}")
    };
    assert_eq!(
        reply.headers,
        hdrs(&[
            ("Retry-After", "1"),
            ("RateLimit-Policy", "\"per-client\";q=100;w=60"),
            ("RateLimit", "\"per-client\";r=0;t=60"),
        ])
    );
    // 30 s later: 50 tokens back, full in 30 s.
    let o = rl.acquire(&k, T0 + 30 * S, &mut store, &HK);
    assert_eq!(
        header(response_headers(&o), "RateLimit"),
        Some("\"per-client\";r=49;t=31")
    );
}

#[test]
fn retry_after_counts_whole_seconds_up() {
    let rl = limits(r#"[{"name": "slow", "key": "route", "limit": 1, "window_s": 30}]"#);
    let mut store = MemoryStore::new();
    let k = from_ip("192.0.2.1");
    assert!(allowed(&rl.acquire(&k, T0, &mut store, &HK)));
    for (at, want) in [
        (T0, "30"),
        (T0 + 1, "30"),
        (T0 + 10 * S + 1, "20"),
        (T0 + 29 * S + 1, "1"),
    ] {
        let o = rl.acquire(&k, at, &mut store, &HK);
        assert_eq!(header(response_headers(&o), "Retry-After"), Some(want));
    }
    assert!(allowed(&rl.acquire(&k, T0 + 30 * S, &mut store, &HK)));
}

#[test]
fn headers_false_adds_none_and_closest_to_exhaustion_wins() {
    let rl = limits(
        r#"[{"name": "quiet", "key": "route", "limit": 2, "window_s": 1, "headers": false}]"#,
    );
    let mut store = MemoryStore::new();
    let k = from_ip("192.0.2.1");
    assert!(response_headers(&rl.acquire(&k, T0, &mut store, &HK)).is_empty());
    rl.acquire(&k, T0, &mut store, &HK);
    let o = rl.acquire(&k, T0, &mut store, &HK);
    assert!(matches!(o, RateOutcome::Limited { .. }));
    assert_eq!(
        response_headers(&o),
        &hdrs(&[("Retry-After", "1")])[..],
        "Retry-After is HTTP, not a RateLimit header"
    );

    let rl = limits(
        r#"[{"name": "big", "key": "route", "limit": 100, "window_s": 10},
            {"name": "small", "key": "client_ip", "limit": 5, "window_s": 10},
            {"name": "hidden", "key": "global", "limit": 2, "window_s": 10, "headers": false}]"#,
    );
    let mut store = MemoryStore::new();
    let o = rl.acquire(&k, T0, &mut store, &HK);
    assert_eq!(
        header(response_headers(&o), "RateLimit"),
        Some("\"small\";r=4;t=2")
    );
    assert_eq!(
        header(response_headers(&o), "RateLimit-Policy"),
        Some("\"small\";q=5;w=10")
    );
}

#[test]
fn tightest_limit_wins_and_a_denial_takes_no_token() {
    let rl = limits(
        r#"[{"name": "per-client", "key": "client_ip", "limit": 2, "window_s": 60},
            {"name": "route-total", "key": "route", "limit": 10, "window_s": 60}]"#,
    );
    let mut store = MemoryStore::new();
    let x = from_ip("192.0.2.1");
    assert_eq!(passes(&rl, &x, T0, &mut store, 7), 2);
    let o = rl.acquire(&x, T0, &mut store, &HK);
    assert!(matches!(&o, RateOutcome::Limited { limit, .. } if limit == "per-client"));
    // The 6 denials took nothing from route-total: 8 left for everyone else.
    let others: usize = (0..20)
        .map(|i| passes(&rl, &from_ip(&format!("198.51.100.{i}")), T0, &mut store, 1))
        .sum();
    assert_eq!(others, 8);
    let o = rl.acquire(&from_ip("203.0.113.9"), T0, &mut store, &HK);
    assert!(matches!(&o, RateOutcome::Limited { limit, .. } if limit == "route-total"));
    // A route denial took no per-client token either.
    let fresh = from_ip("203.0.113.7");
    assert_eq!(passes(&rl, &fresh, T0, &mut store, 3), 0);
    assert_eq!(
        passes(&rl, &fresh, T0 + 12 * S, &mut store, 3),
        2,
        "per-client still full: 2 pass once the route refills"
    );
}

#[test]
fn binding_limit_sets_status_and_retry_after() {
    let rl = limits(
        r#"[{"name": "a", "key": "route", "limit": 1, "window_s": 5},
            {"name": "b", "key": "client_ip", "limit": 1, "window_s": 50, "status": 503}]"#,
    );
    let mut store = MemoryStore::new();
    let k = from_ip("192.0.2.1");
    assert!(allowed(&rl.acquire(&k, T0, &mut store, &HK)));
    let o = rl.acquire(&k, T0, &mut store, &HK);
    let RateOutcome::Limited { reply, limit } = &o else {
        panic!("{o:?}")
    };
    assert_eq!((reply.status, limit.as_str()), (503, "b"));
    assert_eq!(header(&reply.headers, "Retry-After"), Some("50"));
}

#[test]
fn client_ip_keys_are_separate_budgets() {
    let rl = limits(r#"[{"name": "c", "key": "client_ip", "limit": 3, "window_s": 60}]"#);
    let mut store = MemoryStore::new();
    assert_eq!(passes(&rl, &from_ip("127.0.0.1"), T0, &mut store, 9), 3);
    assert_eq!(passes(&rl, &from_ip("127.0.0.2"), T0, &mut store, 9), 3);
    // IPv4-mapped IPv6 is the same client as its IPv4 form.
    assert_eq!(
        passes(&rl, &from_ip("::ffff:127.0.0.1"), T0, &mut store, 9),
        0
    );
    // No client address: one shared bucket for all of them.
    let none = KeyInputs {
        client_ip: None,
        key_id: None,
        headers: Headers::new(&[]),
    };
    assert_eq!(passes(&rl, &none, T0, &mut store, 9), 3);
}

#[test]
fn ipv6_grouped_by_prefix() {
    let cases: &[(&str, &str, &str, bool)] = &[
        // (ipv6_prefix field, a, b, same bucket?)
        (
            "",
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            true,
        ),
        ("", "2001:db8:1:2::1", "2001:db8:1:3::1", false),
        (
            r#", "ipv6_prefix": 128"#,
            "2001:db8:1:2::1",
            "2001:db8:1:2::2",
            false,
        ),
        (
            r#", "ipv6_prefix": 128"#,
            "2001:db8:1:2::1",
            "2001:db8:1:2::1",
            true,
        ),
        (
            r#", "ipv6_prefix": 48"#,
            "2001:db8:1:2::1",
            "2001:db8:1:ff::1",
            true,
        ),
        (
            r#", "ipv6_prefix": 48"#,
            "2001:db8:1:2::1",
            "2001:db8:2:2::1",
            false,
        ),
        (r#", "ipv6_prefix": 1"#, "::1", "7fff::1", true),
        // IPv4 is never grouped.
        (r#", "ipv6_prefix": 8"#, "10.0.0.1", "10.0.0.2", false),
    ];
    for (extra, a, b, same) in cases {
        let rl = limits(&format!(
            r#"[{{"name": "c", "key": "client_ip", "limit": 2, "window_s": 60{extra}}}]"#
        ));
        let mut store = MemoryStore::new();
        assert_eq!(passes(&rl, &from_ip(a), T0, &mut store, 2), 2);
        let got = passes(&rl, &from_ip(b), T0, &mut store, 2);
        assert_eq!(got, if *same { 0 } else { 2 }, "{extra} {a} {b}");
    }
}

#[test]
fn key_id_keys() {
    let rl = limits(r#"[{"name": "k", "key": "key_id", "limit": 2, "window_s": 60}]"#);
    let mut store = MemoryStore::new();
    let key = |id: Option<&'static str>| KeyInputs {
        client_ip: ip("192.0.2.1"),
        key_id: id,
        headers: Headers::new(&[]),
    };
    assert_eq!(passes(&rl, &key(Some("partner-a")), T0, &mut store, 5), 2);
    assert_eq!(passes(&rl, &key(Some("partner-b")), T0, &mut store, 5), 2);
    assert_eq!(passes(&rl, &key(Some("partner-a")), T0, &mut store, 5), 0);
    assert_eq!(passes(&rl, &key(None), T0, &mut store, 5), 2);
}

#[test]
fn header_keys() {
    let rl = limits(r#"[{"name": "u", "key": "header:X-User-Id", "limit": 2, "window_s": 60}]"#);
    let mut store = MemoryStore::new();
    let alice = hdrs(&[("x-user-id", "alice")]);
    let alice_ows = hdrs(&[("x-user-id", " alice ")]);
    let bob = hdrs(&[("x-user-id", "bob")]);
    let both = hdrs(&[("x-user-id", "alice"), ("x-user-id", "bob")]);
    let none = hdrs(&[("x-other", "alice")]);
    let none2 = hdrs(&[]);
    let k = |h: &'static [(String, String)]| KeyInputs {
        client_ip: ip("192.0.2.1"),
        key_id: None,
        headers: Headers::new(h),
    };
    let leak = |v: Vec<(String, String)>| -> &'static [(String, String)] {
        Box::leak(v.into_boxed_slice())
    };
    let (alice, alice_ows, bob, both, none, none2) = (
        leak(alice),
        leak(alice_ows),
        leak(bob),
        leak(both),
        leak(none),
        leak(none2),
    );
    assert_eq!(passes(&rl, &k(alice), T0, &mut store, 5), 2);
    assert_eq!(
        passes(&rl, &k(alice_ows), T0, &mut store, 5),
        0,
        "surrounding whitespace is not a new key"
    );
    assert_eq!(passes(&rl, &k(bob), T0, &mut store, 5), 2);
    assert_eq!(
        passes(&rl, &k(both), T0, &mut store, 5),
        2,
        "a repeated header is its own key"
    );
    assert_eq!(passes(&rl, &k(none), T0, &mut store, 1), 1);
    assert_eq!(
        passes(&rl, &k(none2), T0, &mut store, 5),
        1,
        "requests lacking the header share one bucket"
    );
}

#[test]
fn route_is_per_policy_and_global_is_per_document() {
    let route = r#"[{"name": "r", "key": "route", "limit": 3, "window_s": 60}]"#;
    let global = r#"[{"name": "g", "key": "global", "limit": 3, "window_s": 60}]"#;
    let (p, q) = (compile_with(route, "p", 64), compile_with(route, "q", 64));
    let mut store = MemoryStore::new();
    assert_eq!(passes(&p, &from_ip("192.0.2.1"), T0, &mut store, 2), 2);
    assert_eq!(
        passes(&p, &from_ip("192.0.2.2"), T0, &mut store, 5),
        1,
        "route: one bucket for all clients"
    );
    assert_eq!(
        passes(&q, &from_ip("192.0.2.3"), T0, &mut store, 5),
        3,
        "another policy has its own"
    );
    let (p, q) = (compile_with(global, "p", 64), compile_with(global, "q", 64));
    let mut store = MemoryStore::new();
    assert_eq!(passes(&p, &from_ip("192.0.2.1"), T0, &mut store, 2), 2);
    assert_eq!(
        passes(&q, &from_ip("192.0.2.2"), T0, &mut store, 5),
        1,
        "global: one bucket across policies"
    );
    assert_eq!(store.len(), 1);
}

#[test]
fn debug_output_hides_keys() {
    let h = hdrs(&[("x-user", "alice")]);
    let k = KeyInputs {
        client_ip: ip("192.0.2.77"),
        key_id: Some("partner-secret-id"),
        headers: Headers::new(&h),
    };
    let shown = format!(
        "{k:?} {:?} {:?}",
        KeyValue::Ip(k.client_ip.unwrap()),
        KeyValue::Header(k.headers, "x-user", KeyCase::Fold)
    );
    for secret in ["192.0.2.77", "partner-secret-id", "alice"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("redacted"));
}

#[test]
fn worker_vms_compiling_the_same_document_share_buckets() {
    let json = r#"[{"name": "c", "key": "client_ip", "limit": 3, "window_s": 60}]"#;
    let (vm1, vm2) = (limits(json), limits(json));
    let mut store = MemoryStore::new();
    let k = from_ip("192.0.2.1");
    assert_eq!(passes(&vm1, &k, T0, &mut store, 2), 2);
    assert_eq!(passes(&vm2, &k, T0, &mut store, 5), 1);
    assert_eq!(passes(&vm1, &k, T0, &mut store, 5), 0);
}

#[test]
fn changed_parameters_start_a_new_table() {
    let old = limits(r#"[{"name": "c", "key": "client_ip", "limit": 3, "window_s": 60}]"#);
    let new = limits(r#"[{"name": "c", "key": "client_ip", "limit": 5, "window_s": 60}]"#);
    let mut store = MemoryStore::new();
    let k = from_ip("192.0.2.1");
    assert_eq!(passes(&old, &k, T0, &mut store, 9), 3);
    assert_eq!(
        passes(&new, &k, T0, &mut store, 9),
        5,
        "new size, fresh state"
    );
    assert_eq!(store.len(), 2, "a table of its own (the old one stays)");
    assert_eq!(
        passes(&old, &k, T0, &mut store, 9),
        0,
        "the old one untouched"
    );
}

#[test]
fn a_store_key_is_the_table_prefix_and_the_set_number() {
    let rl = compile_with(
        r#"[{"name": "c", "key": "client_ip", "limit": 3, "window_s": 60}]"#,
        "p",
        DEFAULT_SLOTS,
    );
    let table = &rl.limits()[0].table;
    let zero = table.store_key(0);
    let prefix = zero.strip_suffix('0').unwrap();
    assert_eq!(prefix.len(), "edgeward.rl.".len() + 16 + 1);
    assert!(prefix.starts_with("edgeward.rl."));
    assert!(prefix.ends_with('.'));
    assert!(prefix[12..28].bytes().all(|b| b.is_ascii_hexdigit()));
    for set in [0, 7, 10, 65_535, u32::MAX] {
        assert_eq!(&*table.store_key(set), format!("{prefix}{set}"));
    }
}

#[test]
fn the_table_name_covers_every_parameter() {
    let table = |json: &str, policy: &str, slots: u32| {
        compile_with(json, policy, slots).limits()[0]
            .table
            .store_key(0)
    };
    for kind in ["client_ip", "header:x-user", "route"] {
        let base = format!(r#"[{{"name": "c", "key": "{kind}", "limit": 3, "window_s": 60}}]"#);
        let first = table(&base, "p", 64);
        assert_eq!(
            first,
            table(&base, "p", 64),
            "{kind}: same parameters, same table"
        );
        let others = [
            (base.replace(r#""limit": 3"#, r#""limit": 4"#), "p", 64),
            (
                base.replace(r#""window_s": 60"#, r#""window_s": 61"#),
                "p",
                64,
            ),
            (
                base.replace(r#""limit": 3"#, r#""limit": 3, "burst": 4"#),
                "p",
                64,
            ),
            (base.replace(r#""name": "c""#, r#""name": "d""#), "p", 64),
            (base.clone(), "q", 64),
            (
                base.replace(r#""limit": 3"#, r#""limit": 3, "lease": 2"#),
                "p",
                64,
            ),
        ];
        for (json, policy, slots) in &others {
            assert_ne!(
                first,
                table(json, policy, *slots),
                "{kind}: {json} in {policy}"
            );
        }
        // The number of sets names keyed tables; a single-slot table has one set whatever it is.
        assert_eq!(
            first != table(&base, "p", 128),
            kind != "route",
            "{kind}: other slots"
        );
    }
}

#[test]
fn same_named_limits_of_two_configurations_keep_separate_budgets() {
    // Two documents in one VM (one shared data), same policy and limit names, other sizes.
    let a = limits(r#"[{"name": "c", "key": "client_ip", "limit": 1, "window_s": 3600}]"#);
    let b = limits(r#"[{"name": "c", "key": "client_ip", "limit": 100, "window_s": 3600}]"#);
    let mut store = MemoryStore::new();
    a.prepare(&mut store).unwrap();
    b.prepare(&mut store).unwrap();
    let k = from_ip("192.0.2.1");
    assert_eq!(passes(&a, &k, T0, &mut store, 1), 1);
    assert_eq!(passes(&b, &k, T0, &mut store, 5), 5);
    assert_eq!(
        passes(&a, &k, T0, &mut store, 5),
        0,
        "b's writes left a's bucket empty"
    );
    assert_eq!(passes(&b, &k, T0, &mut store, 95), 95);
}

#[test]
fn foreign_or_corrupt_values_read_as_empty() {
    let rl = limits(r#"[{"name": "r", "key": "route", "limit": 2, "window_s": 60}]"#);
    let key = rl.limits()[0].table.store_key(0);
    for junk in [&b""[..], b"x", &[0xff; 40], &[0u8; 1000]] {
        let mut store = MemoryStore::new();
        store.set(&key, junk, None).unwrap();
        assert_eq!(passes(&rl, &from_ip("192.0.2.1"), T0, &mut store, 5), 2);
    }
}

// ---------------------------------------------------------------- the table

/// Header values that land in one set of `limit`'s table, with their places.
fn same_set(limit: &Limit, n: usize) -> Vec<(String, local::Place)> {
    let mut by_set: std::collections::HashMap<u32, Vec<(String, local::Place)>> =
        Default::default();
    for i in 0.. {
        let v = format!("user-{i}");
        let h = hdrs(&[("x-user", &v)]);
        let place = limit.table.place(
            &KeyValue::Header(Headers::new(&h), "x-user", KeyCase::Fold),
            &HK,
        );
        let group = by_set.entry(place.set).or_default();
        group.push((v, place));
        if group.len() == n {
            return group.clone();
        }
    }
    unreachable!()
}

struct User(Vec<(String, String)>);
impl User {
    fn new(v: &str) -> User {
        User(hdrs(&[("x-user", v)]))
    }
    fn keys(&self) -> KeyInputs<'_> {
        KeyInputs {
            client_ip: ip("192.0.2.1"),
            key_id: None,
            headers: Headers::new(&self.0),
        }
    }
}

const TABLE: &str = r#"[{"name": "u", "key": "header:x-user", "limit": 10, "window_s": 10}]"#;

#[test]
fn idle_slots_are_taken_over() {
    let rl = compile_with(TABLE, "p", 64);
    let group = same_set(&rl.limits()[0], WAYS + 1);
    let mut store = MemoryStore::new();
    for (v, _) in &group[..WAYS] {
        assert_eq!(passes(&rl, &User::new(v).keys(), T0, &mut store, 1), 1);
    }
    let bytes = store.value_bytes();
    // One second later every slot has refilled (1 token per second): the newcomer takes one over, full.
    let late = User::new(&group[WAYS].0);
    let o = rl.acquire(&late.keys(), T0 + S, &mut store, &HK);
    assert_eq!(
        header(response_headers(&o), "RateLimit"),
        Some("\"u\";r=9;t=1")
    );
    assert_eq!(store.value_bytes(), bytes);
    // It owns that slot now: its next requests use its own bucket.
    assert_eq!(passes(&rl, &late.keys(), T0 + S, &mut store, 20), 9);
    // The slot it took was idle; its former owner, returning, starts full again too (nothing was lost).
    let mut full = 0;
    for (v, _) in &group[..WAYS] {
        full += passes(&rl, &User::new(v).keys(), T0 + S, &mut store, 10);
    }
    assert!(full >= 7 * 10, "{full}");
}

#[test]
fn a_full_set_shares_buckets_which_is_only_stricter() {
    let rl = compile_with(TABLE, "p", 64);
    let group = same_set(&rl.limits()[0], WAYS + 1);
    let (newcomer, place) = &group[WAYS];
    let owner = &group[place.fallback].0;
    let mut store = MemoryStore::new();
    for (v, _) in &group[..WAYS] {
        assert_eq!(passes(&rl, &User::new(v).keys(), T0, &mut store, 1), 1);
    }
    // Every slot is busy: the newcomer draws from its fallback way's bucket (the owner has 9 left).
    let nc = User::new(newcomer);
    let o = rl.acquire(&nc.keys(), T0, &mut store, &HK);
    assert_eq!(
        header(response_headers(&o), "RateLimit"),
        Some("\"u\";r=8;t=2")
    );
    assert_eq!(
        passes(&rl, &nc.keys(), T0, &mut store, 20),
        8,
        "never more than one bucket"
    );
    assert_eq!(
        passes(&rl, &User::new(owner).keys(), T0, &mut store, 5),
        0,
        "the owner shares the cost"
    );
    for (v, _) in group[..WAYS].iter().filter(|(v, _)| v != owner) {
        assert_eq!(
            passes(&rl, &User::new(v).keys(), T0, &mut store, 1),
            1,
            "other slots untouched"
        );
    }
    // 1 s later the other slots are idle again; the newcomer takes one over but starts no fuller than
    // the bucket it drained (one token back), not with a fresh burst of 10.
    assert_eq!(passes(&rl, &nc.keys(), T0 + 2 * S, &mut store, 20), 2);
    assert_eq!(store.len(), 1);
}

#[test]
fn memory_is_bounded_by_the_table() {
    let rl = limits(r#"[{"name": "u", "key": "header:x-user", "limit": 10, "window_s": 1}]"#);
    let sets = rl.limits()[0].sets() as usize;
    assert_eq!(sets, 8192);
    let mut store = MemoryStore::new();
    let mut h = hdrs(&[("x-user", "")]);
    for i in 0..100_000u32 {
        h[0].1 = i.to_string();
        let k = KeyInputs {
            client_ip: None,
            key_id: None,
            headers: Headers::new(&h),
        };
        rl.acquire(&k, T0 + u64::from(i) * 1_000, &mut store, &HK);
    }
    assert!(store.len() <= sets, "{}", store.len());
    assert!(store.value_bytes() <= sets * (24 + 24 * WAYS));
}

#[test]
fn the_hash_key_decides_placement() {
    let rl = compile_with(TABLE, "p", 64);
    let l = &rl.limits()[0];
    let moved = (0..32).any(|i| {
        let h = hdrs(&[("x-user", &format!("user-{i}"))]);
        let k = KeyValue::Header(Headers::new(&h), "x-user", KeyCase::Fold);
        l.table.place(&k, &HK) != l.table.place(&k, b"fedcba9876543210")
    });
    assert!(moved);
}

#[test]
fn prepare_creates_every_set_once() {
    let rl = compile_with(
        r#"[{"name": "u", "key": "header:x-user", "limit": 1, "window_s": 1},
            {"name": "r", "key": "route", "limit": 1, "window_s": 1}]"#,
        "p",
        128,
    );
    let mut store = MemoryStore::new();
    assert_eq!(rl.prepare(&mut store), Ok(16 + 1));
    assert_eq!(store.len(), 17);
    assert_eq!(rl.prepare(&mut store), Ok(0));
    assert!(allowed(&rl.acquire(
        &from_ip("192.0.2.1"),
        T0,
        &mut store,
        &HK
    )));
    assert_eq!(store.len(), 17);
}

// ---------------------------------------------------------------- concurrency

/// Runs as "another worker" just before a write.
type Interloper<'h> = Box<dyn FnOnce(&mut MemoryStore) + 'h>;

/// A store that loses CAS races on chosen keys and can run "another worker" just before a write.
struct Racy<'h> {
    inner: MemoryStore,
    fail_prefix: String,
    fail_writes: u32,
    fail_gets: bool,
    before_write: Option<(String, Interloper<'h>)>,
}

impl<'h> Racy<'h> {
    fn new(inner: MemoryStore) -> Racy<'h> {
        Racy {
            inner,
            fail_prefix: String::new(),
            fail_writes: 0,
            fail_gets: false,
            before_write: None,
        }
    }
}

impl SharedStore for Racy<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError> {
        if self.fail_gets {
            return Err(StoreError::Unavailable);
        }
        self.inner.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        if self.before_write.as_ref().is_some_and(|(k, _)| k == key) {
            if let Some((_, f)) = self.before_write.take() {
                f(&mut self.inner);
            }
        }
        if cas.is_some() && self.fail_writes > 0 && key.starts_with(&self.fail_prefix) {
            self.fail_writes -= 1;
            return Err(StoreError::CasMismatch);
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn cas_conflicts_are_retried_then_fail_closed() {
    let rl = limits(r#"[{"name": "r", "key": "route", "limit": 5, "window_s": 60}]"#);
    let k = from_ip("192.0.2.1");
    let mut store = MemoryStore::new();
    rl.prepare(&mut store).unwrap();
    store.inject_cas_conflicts = MAX_ATTEMPTS - 1;
    assert!(
        allowed(&rl.acquire(&k, T0, &mut store, &HK)),
        "retries succeed"
    );
    store.inject_cas_conflicts = MAX_ATTEMPTS;
    let o = rl.acquire(&k, T0, &mut store, &HK);
    let RateOutcome::Unavailable { reply } = &o else {
        panic!("{o:?}")
    };
    assert_eq!(
        (reply.status, reply.reason),
        (503, Reason::RateLimitUnavailable)
    );
    assert_eq!(reply.headers, hdrs(&[("Retry-After", "1")]));
    assert_eq!(store.inject_cas_conflicts, 0);
    // The failed request took nothing: 4 tokens left.
    assert_eq!(passes(&rl, &k, T0, &mut store, 9), 4);
}

#[test]
fn store_failure_fails_closed() {
    let rl = limits(r#"[{"name": "r", "key": "route", "limit": 5, "window_s": 60}]"#);
    let mut store = Racy::new(MemoryStore::new());
    store.fail_gets = true;
    let o = rl.acquire(&from_ip("192.0.2.1"), T0, &mut store, &HK);
    assert!(matches!(o, RateOutcome::Unavailable { reply } if reply.status == 503));
}

#[test]
fn partial_commit_is_refunded() {
    let rl = limits(
        r#"[{"name": "first", "key": "route", "limit": 3, "window_s": 60},
            {"name": "second", "key": "client_ip", "limit": 100, "window_s": 60}]"#,
    );
    let k = from_ip("192.0.2.1");
    let mut mem = MemoryStore::new();
    rl.prepare(&mut mem).unwrap();
    let mut store = Racy::new(mem);
    store.fail_prefix = rl.limits()[1].table.store_key(0)[..28].to_string();
    store.fail_writes = u32::MAX;
    // `first` commits, `second` never does: the request fails closed and `first` gets its token back.
    assert!(matches!(
        rl.acquire(&k, T0, &mut store, &HK),
        RateOutcome::Unavailable { .. }
    ));
    store.fail_writes = 0;
    assert_eq!(passes(&rl, &k, T0, &mut store, 9), 3);
}

/// A token goes back only while its bucket's arrival time is what its take wrote. Moving the
/// arrival time back later would free the newest interval, which by then is another request's: each
/// case below let one request more than `burst` through when refunds went back whatever came after.
#[test]
fn a_refund_never_frees_a_token_another_request_holds() {
    let leases = std::rc::Rc::new(Leases::disabled());
    let k = from_ip("192.0.2.1");
    let held = |rl: &RateLimits, now: u64, store: &mut MemoryStore| {
        let (o, receipt) = rl.acquire_held(&k, now, store, &leases, &HK);
        assert!(allowed(&o));
        receipt
    };
    // The latest token, given back at once: it comes back.
    let rl = limits(r#"[{"name": "c", "key": "client_ip", "limit": 10, "window_s": 1}]"#);
    let mut store = MemoryStore::new();
    assert_eq!(passes(&rl, &k, T0, &mut store, 9), 9);
    let last = held(&rl, T0, &mut store);
    rl.refund(last, &mut store);
    assert_eq!(passes(&rl, &k, T0, &mut store, 20), 1);
    // Held, the bucket refills (idle), another burst empties it, then the late refund.
    let t1 = T0 + 5 * S;
    let late = held(&rl, t1, &mut store);
    let t2 = t1 + 2 * S;
    assert_eq!(passes(&rl, &k, t2, &mut store, 20), 10, "full again");
    rl.refund(late, &mut store);
    assert_eq!(
        passes(&rl, &k, t2, &mut store, 20),
        0,
        "at most burst at t2"
    );
    // Two held at once (1 per second, burst 2): the first given back early, the bucket taken from,
    // then the second given back: only the exact one comes back.
    let rl =
        limits(r#"[{"name": "c", "key": "client_ip", "limit": 1, "window_s": 1, "burst": 2}]"#);
    let mut store = MemoryStore::new();
    let (a, b) = (held(&rl, T0, &mut store), held(&rl, T0, &mut store));
    rl.refund(b, &mut store);
    let t = T0 + 990_000_000;
    assert_eq!(passes(&rl, &k, t, &mut store, 1), 1);
    rl.refund(a, &mut store);
    assert_eq!(
        passes(&rl, &k, t, &mut store, 5) + passes(&rl, &k, T0 + S, &mut store, 5),
        1,
        "2 in 10 ms from a bucket of 2"
    );
}

#[test]
fn losing_the_last_token_to_another_worker_refunds_and_denies() {
    let rl = limits(
        r#"[{"name": "per-client", "key": "client_ip", "limit": 5, "window_s": 60},
            {"name": "route-total", "key": "route", "limit": 2, "window_s": 60}]"#,
    );
    let me = from_ip("192.0.2.1");
    let other = from_ip("192.0.2.2");
    let mut store = Racy::new(MemoryStore::new());
    assert!(allowed(&rl.acquire(&other, T0, &mut store, &HK)));
    // Between my check and my write of route-total, another worker takes its last token.
    let route_key = rl.limits()[1].table.store_key(0).to_string();
    let rl2 = &rl;
    store.before_write = Some((
        route_key,
        Box::new(move |inner: &mut MemoryStore| {
            assert!(allowed(&rl2.acquire(&other, T0, inner, &HK)));
        }),
    ));
    let o = rl.acquire(&me, T0, &mut store, &HK);
    assert!(
        matches!(&o, RateOutcome::Limited { limit, .. } if limit == "route-total"),
        "{o:?}"
    );
    assert!(store.before_write.is_none());
    // My per-client token was refunded: its bucket is still full.
    let solo =
        limits(r#"[{"name": "per-client", "key": "client_ip", "limit": 5, "window_s": 60}]"#);
    assert_eq!(
        passes(&solo, &me, T0, &mut store, 9),
        5,
        "the denied request cost nothing"
    );
}

#[test]
fn a_custom_backend_can_decide() {
    struct Deny;
    impl BucketBackend for Deny {
        fn take(&mut self, limits: &[Limit], keys: &[KeyValue<'_>], _now: u64) -> Verdict {
            assert_eq!(limits.len(), keys.len());
            Verdict::Limited(vec![
                LimitState {
                    remaining: 0,
                    reset_s: 7,
                    retry_after_s: 3
                };
                limits.len()
            ])
        }
    }
    struct Broken;
    impl BucketBackend for Broken {
        fn take(&mut self, _: &[Limit], _: &[KeyValue<'_>], _now: u64) -> Verdict {
            Verdict::Allowed(Vec::new()) // wrong length: never trusted
        }
    }
    let rl = limits(r#"[{"name": "r", "key": "route", "limit": 5, "window_s": 60}]"#);
    let k = from_ip("192.0.2.1");
    let o = rl.decide(&mut Deny, &k, T0);
    assert_eq!(header(response_headers(&o), "Retry-After"), Some("3"));
    assert_eq!(
        header(response_headers(&o), "RateLimit"),
        Some("\"r\";r=0;t=7")
    );
    assert!(matches!(
        rl.decide(&mut Broken, &k, T0),
        RateOutcome::Unavailable { .. }
    ));
    assert!(allowed(&RateLimits::default().decide(&mut Broken, &k, T0)));
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// However keys collide, take over and share slots in a tiny table, no key ever gets more than its
        /// own bucket would give: in any interval, at most burst + interval × limit / window requests.
        #[test]
        fn sharing_never_loosens(
            burst in 1u64..6,
            limit in 1u64..5,
            hot in 1usize..12,
            ops in prop::collection::vec((0usize..200, 0u64..60_000_000, any::<bool>()), 1..800),
        ) {
            let window = 10u64;
            let rl = compile_with(
                &format!(r#"[{{"name": "u", "key": "header:x-user", "limit": {limit}, "window_s": {window}, "burst": {burst}}}]"#),
                "p",
                64,
            );
            let users: Vec<User> = (0..200).map(|i| User::new(&format!("u{i}"))).collect();
            let mut store = MemoryStore::new();
            let mut passed: Vec<Vec<u64>> = vec![Vec::new(); users.len()];
            let mut now = T0;
            for (who, gap, from_hot) in ops {
                now += gap;
                // Half the traffic comes from a few hot keys, the rest from many: sets fill and share.
                let who = if from_hot { who % hot } else { who };
                if allowed(&rl.acquire(&users[who].keys(), now, &mut store, &HK)) {
                    passed[who].push(now);
                }
            }
            let window_ns = u128::from(window * S);
            for times in &passed {
                for i in 0..times.len() {
                    for j in i..times.len() {
                        let span = u128::from(times[j] - times[i]);
                        let bound = u128::from(burst) + span * u128::from(limit) / window_ns;
                        prop_assert!((j - i + 1) as u128 <= bound, "{} requests in {} ns", j - i + 1, span);
                    }
                }
            }
            prop_assert!(store.len() <= 8);
        }
    }
}

#[test]
fn check_head_reads_client_ip_limits_only_and_takes_nothing() {
    let user = hdrs(&[("x-user", "alice")]);
    let user: &'static [(String, String)] = Box::leak(user.into_boxed_slice());
    let keys = KeyInputs {
        client_ip: ip("192.0.2.1"),
        key_id: Some("k1"),
        headers: Headers::new(user),
    };
    // (limits, denied on the head once their buckets are empty): client_ip only; other keys would
    // tell an unproven client about others' buckets, and key_id is not known yet.
    let cases = [
        (
            r#"{"name": "c", "key": "client_ip", "limit": 2, "window_s": 60}"#,
            true,
        ),
        (
            r#"{"name": "c", "key": "client_ip", "limit": 2, "window_s": 60, "ipv6_prefix": 48}"#,
            true,
        ),
        (
            r#"{"name": "u", "key": "header:x-user", "limit": 2, "window_s": 60}"#,
            false,
        ),
        (
            r#"{"name": "r", "key": "route", "limit": 2, "window_s": 60}"#,
            false,
        ),
        (
            r#"{"name": "g", "key": "global", "limit": 2, "window_s": 60}"#,
            false,
        ),
        (
            r#"{"name": "k", "key": "key_id", "limit": 2, "window_s": 60}"#,
            false,
        ),
        (
            r#"{"name": "k", "key": "key_id", "limit": 2, "window_s": 60},
               {"name": "c", "key": "client_ip", "limit": 9, "window_s": 60}"#,
            false,
        ),
    ];
    for (json, denied) in cases {
        let rl = limits(&format!("[{json}]"));
        let mut store = MemoryStore::new();
        for _ in 0..3 {
            assert_eq!(
                rl.check_head(&keys, T0, &store, &Leases::disabled(), &HK),
                None,
                "{json}"
            );
        }
        assert_eq!(
            passes(&rl, &keys, T0, &mut store, 5),
            2,
            "{json}: checks took no token"
        );
        let reply = rl.check_head(&keys, T0, &store, &Leases::disabled(), &HK);
        assert_eq!(reply.is_some(), denied, "{json}");
        if let Some(r) = reply {
            assert_eq!((r.status, r.reason), (429, Reason::RateLimited));
            assert_eq!(header(&r.headers, "Retry-After"), Some("30"), "{json}");
            assert!(header(&r.headers, "RateLimit").is_some_and(|v| v.ends_with(";r=0;t=60")));
        }
        // A store that cannot be read decides nothing on the head.
        assert_eq!(
            rl.check_head(
                &keys,
                T0,
                &crate::store::DownStore,
                &Leases::disabled(),
                &HK
            ),
            None
        );
    }
}

/// `key_case` for `header:` keys: `fold` (the default) makes `Alice` and `alice` one budget, locally and
/// in the key sent to the rate limit service; `exact` keeps them apart in both.
#[test]
fn header_key_case_fold_and_exact() {
    let upper = hdrs(&[("x-user-id", "Alice")]);
    let lower = hdrs(&[("x-user-id", "alice")]);
    for (case, shared) in [(None, true), (Some("fold"), true), (Some("exact"), false)] {
        let field = case.map_or(String::new(), |c| format!(r#", "key_case": "{c}""#));
        let rl = limits(&format!(
            r#"[{{"name": "u", "key": "header:x-user-id", "limit": 2, "window_s": 60{field}}}]"#
        ));
        let mut store = MemoryStore::new();
        let inputs = |h: &[(String, String)]| -> Vec<(String, String)> { h.to_vec() };
        let (upper, lower) = (
            Box::leak(inputs(&upper).into_boxed_slice()),
            Box::leak(inputs(&lower).into_boxed_slice()),
        );
        let key = |h: &'static [(String, String)]| KeyInputs {
            client_ip: ip("192.0.2.1"),
            key_id: None,
            headers: Headers::new(h),
        };
        assert_eq!(passes(&rl, &key(upper), T0, &mut store, 5), 2, "{case:?}");
        assert_eq!(
            passes(&rl, &key(lower), T0, &mut store, 5),
            if shared { 0 } else { 2 },
            "{case:?}: one budget for Alice and alice: {shared}"
        );
        let limit = &rl.limits[0];
        let remote = |h: &'static [(String, String)]| {
            remote::key_text(limit, &limit.key_value(&key(h)), "p")
        };
        assert_eq!(remote(upper) == remote(lower), shared, "{case:?}");
        assert_eq!(remote(lower), "alice", "{case:?}");
    }
}
