use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::rate_limit::{compile, KeyInputs, DEFAULT_SLOTS};
use crate::request::Headers;

fn rls(json: &str) -> (Option<RlsConfig>, Vec<String>) {
    let input: RlsInput = crate::json::from_str(json).unwrap();
    let mut errs = Errors::default();
    let out = compile_rls(&input, "rls", &mut errs);
    let errs = errs.into_vec().iter().map(|e| e.to_string()).collect();
    (out, errs)
}

#[test]
fn rls_section_defaults_and_errors() {
    let (c, errs) = rls(r#"{"cluster": "ratelimit", "domain": "edgeward"}"#);
    assert!(errs.is_empty(), "{errs:?}");
    let c = c.unwrap();
    assert_eq!((c.timeout_ms, c.failure_mode), (20, FailureMode::Deny));
    let (c, _) =
        rls(r#"{"cluster": "rl", "domain": "d", "timeout_ms": 250, "failure_mode": "allow"}"#);
    assert_eq!(
        c.map(|c| (c.timeout_ms, c.failure_mode)),
        Some((250, FailureMode::Allow))
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"cluster": "", "domain": "d"}"#,
            "rls.cluster",
            "not a valid cluster",
        ),
        (
            r#"{"cluster": "a b", "domain": "d"}"#,
            "rls.cluster",
            "not a valid cluster",
        ),
        // 'a' is field 12 of wire type fixed64, then 8 bytes: a valid protobuf message.
        (
            r#"{"cluster": "a12345678", "domain": "d"}"#,
            "rls.cluster",
            "GrpcService",
        ),
        (
            r#"{"cluster": "rl", "domain": ""}"#,
            "rls.domain",
            "not a valid domain",
        ),
        (
            r#"{"cluster": "rl", "domain": "d", "timeout_ms": 0}"#,
            "rls.timeout_ms",
            "1..=10000",
        ),
        (
            r#"{"cluster": "rl", "domain": "d", "timeout_ms": 10001}"#,
            "rls.timeout_ms",
            "out of range",
        ),
    ];
    for (json, path, why) in cases {
        let (c, errs) = rls(json);
        assert!(c.is_none(), "{json}");
        assert_eq!(errs.len(), 1, "{json}: {errs:?}");
        assert!(
            errs[0].starts_with(&format!("{path}: ")),
            "{json}: {errs:?}"
        );
        assert!(errs[0].contains(why), "{json}: {errs:?}");
    }
    for bad in [
        r#"{"cluster": "rl", "domain": "d", "failure_mode": "open"}"#,
        r#"{"cluster": "rl", "domain": "d", "timeout": 5}"#,
        r#"{"domain": "d"}"#,
    ] {
        assert!(crate::json::from_str::<RlsInput>(bad).is_err(), "{bad}");
    }
}

#[test]
fn cluster_names_that_envoy_would_misread() {
    let cases: &[(&[u8], bool)] = &[
        (b"ratelimit", false),
        (b"rls", false),
        (b"edgeward-rls", false),
        (b"rate_limit_cluster", false),
        (b"a12345678", true),
        (b"(a", true), // field 5, varint
        (b"0a", true), // field 6, varint
        (b"(", false), // truncated varint
        (b"\x0a\x03abc", true),
        (b"\x0a\x04abc", false), // length past the end
        (b"\x1b\x1c", true),     // group 3 opened and closed
        (b"\x1b", false),        // unclosed group
        (b"\x1c", false),        // close without open
        (b"\x07", false),        // field 0
        (b"\x0f", false),        // wire type 7
    ];
    for (bytes, parses) in cases {
        assert_eq!(parses_as_protobuf(bytes), *parses, "{bytes:?}");
    }
}

fn remote_limits(json: &str) -> crate::rate_limit::RateLimits {
    let inputs: Vec<crate::rate_limit::LimitInput> = crate::json::from_str(json).unwrap();
    let mut errs = Errors::default();
    let rl = compile(
        &inputs,
        "p.rate_limits",
        "pol",
        true,
        true,
        DEFAULT_SLOTS,
        &mut errs,
    );
    assert!(errs.is_empty(), "{:?}", errs.into_vec());
    rl.unwrap()
}

fn config() -> RlsConfig {
    RlsConfig {
        cluster: "ratelimit".into(),
        domain: "edgeward".into(),
        timeout_ms: 20,
        failure_mode: FailureMode::Deny,
    }
}

fn entries(req: &RateLimitRequest) -> Vec<Vec<(String, String)>> {
    req.descriptors
        .iter()
        .map(|d| {
            d.entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn one_descriptor_per_remote_limit_with_the_documented_shape() {
    let rl = remote_limits(
        r#"[{"name": "local", "key": "route", "limit": 5, "window_s": 1},
                {"name": "per-client", "key": "client_ip", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "per-partner", "key": "key_id", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "per-user", "key": "header:x-user", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "total", "key": "route", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "all", "key": "global", "limit": 5, "window_s": 1, "backend": "rls"}]"#,
    );
    assert_eq!((rl.limits().len(), rl.remote().len()), (1, 5));
    let headers = vec![
        ("x-user".to_string(), " alice ".to_string()),
        ("x-user".to_string(), "bob".to_string()),
    ];
    let cases: &[(&str, Option<&str>, &[(String, String)], [&str; 3])] = &[
        (
            "192.0.2.7",
            Some("partner-a"),
            &headers,
            ["192.0.2.7", "partner-a", "alice, bob"],
        ),
        (
            "2001:db8:1:2:3:4:5:6",
            None,
            &[],
            ["2001:db8:1:2::/64", "-", "-"],
        ),
        ("::ffff:192.0.2.9", None, &[], ["192.0.2.9", "-", "-"]),
    ];
    for (ip, key_id, hdrs, [ip_text, key_text, user_text]) in cases {
        let keys = KeyInputs {
            client_ip: Some(ip.parse().unwrap()),
            key_id: *key_id,
            headers: Headers::new(hdrs),
        };
        let msg = rl.remote_message(&config(), "pol", None, &keys).unwrap();
        let req = RateLimitRequest::decode(msg.as_slice()).unwrap();
        assert_eq!(req.domain, "edgeward");
        assert_eq!(req.hits_addend, 1);
        let e = |a: &str, b: &str| {
            vec![
                ("limit".to_string(), a.to_string()),
                ("key".to_string(), b.to_string()),
            ]
        };
        assert_eq!(
            entries(&req),
            vec![
                e("per-client", ip_text),
                e("per-partner", key_text),
                e("per-user", user_text),
                e("total", "pol"),
                e("all", "global"),
            ],
            "{ip}"
        );
    }
    // An empty header value is the missing key, never an empty descriptor value.
    let empty = vec![("x-user".to_string(), "  ".to_string())];
    let keys = KeyInputs {
        client_ip: None,
        key_id: None,
        headers: Headers::new(&empty),
    };
    let req = RateLimitRequest::decode(
        rl.remote_message(&config(), "pol", None, &keys)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert!(req
        .descriptors
        .iter()
        .all(|d| d.entries.iter().all(|e| !e.value.is_empty())));
    assert_eq!(req.descriptors[0].entries[1].value, "-");
    assert_eq!(req.descriptors[2].entries[1].value, "-");
    // Without remote limits there is no call.
    let local = remote_limits(r#"[{"name": "l", "key": "route", "limit": 5, "window_s": 1}]"#);
    assert!(local
        .remote_message(&config(), "pol", None, &keys)
        .is_none());
}

#[test]
fn request_wire_bytes_use_the_rls_field_numbers() {
    let rl = remote_limits(
        r#"[{"name": "n", "key": "route", "limit": 5, "window_s": 1, "backend": "rls"}]"#,
    );
    let keys = KeyInputs {
        client_ip: None,
        key_id: None,
        headers: Headers::new(&[]),
    };
    let mut cfg = config();
    cfg.domain = "d".into();
    let msg = rl.remote_message(&cfg, "k", None, &keys).unwrap();
    let mut want = vec![0x0a, 1, b'd', 0x12, 22];
    want.extend_from_slice(&[0x0a, 10, 0x0a, 5]);
    want.extend_from_slice(b"limit");
    want.extend_from_slice(&[0x12, 1, b'n', 0x0a, 8, 0x0a, 3]);
    want.extend_from_slice(b"key");
    want.extend_from_slice(&[0x12, 1, b'k', 0x18, 1]);
    assert_eq!(msg, want);
}

fn header(k: &str, v: &str) -> HeaderValue {
    HeaderValue {
        key: k.into(),
        value: v.into(),
        raw_value: Vec::new(),
    }
}

fn status(code: i32, secs: i64, nanos: i32) -> DescriptorStatus {
    DescriptorStatus {
        code,
        limit_remaining: 0,
        duration_until_reset: Some(Duration {
            seconds: secs,
            nanos,
        }),
    }
}

fn answer(
    code: i32,
    statuses: Vec<DescriptorStatus>,
    headers: Vec<HeaderValue>,
    n: usize,
) -> RemoteAnswer {
    let bytes = RateLimitResponse {
        overall_code: code,
        statuses,
        response_headers_to_add: headers,
    }
    .encode_to_vec();
    read_response(&bytes, n)
}

#[test]
fn reading_the_engines_answer() {
    let hdrs = vec![
        header("X-RateLimit-Limit", "10, 10;w=60"),
        header("X-RateLimit-Remaining", "3"),
    ];
    assert_eq!(
        answer(CODE_OK, vec![], hdrs.clone(), 1),
        RemoteAnswer::Allowed {
            headers: vec![
                ("X-RateLimit-Limit".into(), "10, 10;w=60".into()),
                ("X-RateLimit-Remaining".into(), "3".into())
            ]
        }
    );
    // Over limit: Retry-After from the over-limit statuses (rounded up), which names the descriptor.
    assert_eq!(
        answer(
            CODE_OVER_LIMIT,
            vec![status(CODE_OK, 50, 0), status(CODE_OVER_LIMIT, 4, 1)],
            vec![],
            2
        ),
        RemoteAnswer::OverLimit {
            headers: vec![],
            retry_after_s: 5,
            descriptor: Some(1)
        }
    );
    // An engine Retry-After header wins, and is not forwarded twice.
    assert_eq!(
        answer(
            CODE_OVER_LIMIT,
            vec![status(CODE_OVER_LIMIT, 4, 0)],
            vec![header("retry-after", "9")],
            1
        ),
        RemoteAnswer::OverLimit {
            headers: vec![],
            retry_after_s: 9,
            descriptor: Some(0)
        }
    );
    // No statuses (Limitador): X-RateLimit-Reset, and no descriptor.
    assert_eq!(
        answer(
            CODE_OVER_LIMIT,
            vec![],
            vec![header("X-RateLimit-Reset", "42")],
            1
        ),
        RemoteAnswer::OverLimit {
            headers: vec![("X-RateLimit-Reset".into(), "42".into())],
            retry_after_s: 42,
            descriptor: None
        }
    );
    // Statuses of the wrong length are ignored; nothing at all → 1 second.
    assert_eq!(
        answer(
            CODE_OVER_LIMIT,
            vec![status(CODE_OVER_LIMIT, 30, 0)],
            vec![],
            2
        ),
        RemoteAnswer::OverLimit {
            headers: vec![],
            retry_after_s: 1,
            descriptor: None
        }
    );
    assert_eq!(
        answer(
            CODE_OVER_LIMIT,
            vec![status(CODE_OVER_LIMIT, 0, 0)],
            vec![],
            1
        ),
        RemoteAnswer::OverLimit {
            headers: vec![],
            retry_after_s: 1,
            descriptor: Some(0)
        }
    );
    // UNKNOWN, an unset code, bytes that are no message: no answer.
    assert_eq!(answer(0, vec![], vec![], 1), RemoteAnswer::Unavailable);
    assert_eq!(answer(7, vec![], vec![], 1), RemoteAnswer::Unavailable);
    assert_eq!(read_response(&[], 1), RemoteAnswer::Unavailable);
    assert_eq!(
        read_response(&[0xff, 0xff, 0xff], 1),
        RemoteAnswer::Unavailable
    );
    // Hand-written wire bytes: overall_code = OVER_LIMIT (field 1), one header (field 3).
    let mut wire = vec![0x08, 0x02, 0x1a, 16, 0x0a, 11];
    wire.extend_from_slice(b"retry-after");
    wire.extend_from_slice(&[0x12, 1, b'7']);
    assert_eq!(
        read_response(&wire, 1),
        RemoteAnswer::OverLimit {
            headers: vec![],
            retry_after_s: 7,
            descriptor: None
        }
    );
}

#[test]
fn engine_headers_are_filtered_before_they_reach_the_client() {
    let mut many: Vec<HeaderValue> = (0..40).map(|i| header(&format!("x-h{i}"), "v")).collect();
    many.extend([
        header("x-split", "a\r\nset-cookie: evil=1"),
        header("content-length", "0"),
        header("Transfer-Encoding", "chunked"),
        header("bad name", "v"),
        header(":status", "200"),
        header("", "v"),
    ]);
    let got = match answer(CODE_OK, vec![], many, 1) {
        RemoteAnswer::Allowed { headers } => headers,
        other => panic!("{other:?}"),
    };
    assert_eq!(got.len(), MAX_FORWARDED_HEADERS);
    assert!(got.iter().all(|(k, _)| k.starts_with("x-h")), "{got:?}");
    let bad_only = vec![
        header("x-split", "a\r\nb"),
        header("content-length", "0"),
        header("x-long", &"v".repeat(MAX_HEADER_VALUE + 1)),
        HeaderValue {
            key: "x-raw".into(),
            value: String::new(),
            raw_value: b"raw".to_vec(),
        },
        HeaderValue {
            key: "x-bin".into(),
            value: String::new(),
            raw_value: vec![0xff],
        },
    ];
    assert_eq!(
        answer(CODE_OK, vec![], bad_only, 1),
        RemoteAnswer::Allowed {
            headers: vec![("x-raw".into(), "raw".into())]
        }
    );
}
