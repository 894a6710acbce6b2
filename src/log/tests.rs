use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::secret::NoEnv;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PATH: &str = "policies.p.log";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The test key: 32 bytes of 0x4b, and the key of another period for rotation tests.
fn key_json(fill: u8) -> Value {
    json!({ "base64": b64(&[fill; 32]) })
}

fn parse(v: Value) -> Result<LogInput, String> {
    crate::json::from_value(v).map_err(|e| e.to_string())
}

fn compile_value(v: Value) -> Result<LogPolicy, Vec<String>> {
    let input = parse(v).map_err(|e| vec![e])?;
    let mut errs = Errors::default();
    let p = compile(&input, PATH, &NoEnv, &mut errs);
    let errs: Vec<String> = errs.into_vec().iter().map(|e| e.to_string()).collect();
    match p {
        Some(p) if errs.is_empty() => Ok(p),
        _ => {
            assert!(!errs.is_empty(), "None without an error");
            Err(errs)
        }
    }
}

fn policy(v: Value) -> LogPolicy {
    compile_value(v).unwrap()
}

fn full_policy(fill: u8) -> LogPolicy {
    policy(json!({
        "ipv4_prefix": 24,
        "ipv6_prefix": 48,
        "pseudonym_key": key_json(fill),
        "pseudonymize": ["client_ip", "key_id", "header:x-user-id"],
        "headers": ["user-agent", "referer", "x-forwarded-for"],
        "keep_query": ["page"],
        "upstream_xff": "truncate",
        "fields": true
    }))
}

fn hdrs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn request_headers() -> Vec<(String, String)> {
    hdrs(&[
        ("user-agent", "curl/8.5"),
        ("authorization", "Bearer SECRET-BEARER-TOKEN"),
        ("cookie", "session=SECRET-COOKIE"),
        ("signature", "sig1=:SECRETSIGNATURE:"),
        ("signature-input", "sig1=(\"@method\");keyid=\"k1\""),
        ("x-api-key", "SECRET-API-KEY"),
        ("x-user-id", "alice@example.com"),
        ("x-forwarded-for", "203.0.113.9, 10.1.77.77"),
        ("x-other", "not-listed-value"),
    ])
}

fn input<'a>(headers: &'a [(String, String)]) -> RecordInput<'a> {
    RecordInput {
        now_s: 951_782_400,
        now_nanos: 5_000_000,
        route: Some("partner-api"),
        policy: Some("partner"),
        mode: "enforce",
        decision: "allow",
        reason: None,
        shadow_decision: None,
        shadow_reason: None,
        status: 200,
        method: "GET",
        host: "api.example.com",
        path: "/v1/items?token=SECRET-QUERY-TOKEN&page=2&email=bob%40example.com",
        tls: Some("1.3"),
        client_ip: Some("10.1.77.77".parse().unwrap()),
        key_id: Some("partner-key-1"),
        agent: None,
        headers: Headers::new(headers),
    }
}

fn record_json(p: &LogPolicy, r: &RecordInput) -> (String, Value) {
    let s = p.record(r);
    let v: Value = serde_json::from_str(&s).unwrap();
    (s, v)
}

// ---- configuration ----

#[test]
fn defaults() {
    let input = parse(json!({})).unwrap();
    assert_eq!(input.ipv4_prefix, None);
    assert_eq!(input.ipv6_prefix, None);
    assert_eq!(input.upstream_xff, None);
    assert_eq!(input.fields, None);
    let p = policy(json!({}));
    assert_eq!(
        p.truncate("192.0.2.77".parse().unwrap()).to_string(),
        "192.0.2.0"
    );
    assert_eq!(p.upstream_xff(), UpstreamXff::Keep);
    assert!(!p.remove_external_address());
    assert!(!p.fields_enabled());
}

#[test]
fn the_issue_example_compiles() {
    let p = policy(json!({
      "ipv4_prefix": 24,
      "ipv6_prefix": 48,
      "pseudonym_key": key_json(1),
      "pseudonymize": ["client_ip", "key_id", "header:x-user-id"],
      "headers": ["user-agent", "referer"],
      "keep_query": ["page", "sort"],
      "upstream_xff": "truncate"
    }));
    assert_eq!(p.upstream_xff(), UpstreamXff::Truncate);
    assert!(p.remove_external_address());
}

#[test]
fn unknown_fields_and_values_are_rejected() {
    assert!(parse(json!({"ipv4_prefx": 24})).is_err());
    assert!(parse(json!({"upstream_xff": "anonymize"})).is_err());
    assert!(parse(json!({"upstream_xff": "Keep"})).is_err());
    assert!(parse(json!({"ipv4_prefix": -1})).is_err());
    assert!(parse(json!({"fields": "yes"})).is_err());
    for mode in ["keep", "truncate", "remove"] {
        assert!(
            compile_value(json!({ "upstream_xff": mode })).is_ok(),
            "{mode}"
        );
    }
}

#[test]
fn prefix_ranges() {
    let ok = [(0, 0), (32, 128), (16, 96), (24, 48)];
    for (v4, v6) in ok {
        assert!(compile_value(json!({"ipv4_prefix": v4, "ipv6_prefix": v6})).is_ok());
    }
    let e = compile_value(json!({"ipv4_prefix": 33, "ipv6_prefix": 129})).unwrap_err();
    assert_eq!(
        e,
        vec![
            "policies.p.log.ipv4_prefix: 33 is not between 0 and 32",
            "policies.p.log.ipv6_prefix: 129 is not between 0 and 128"
        ]
    );
    assert!(compile_value(json!({ "ipv4_prefix": 4_294_967_295u64 })).is_err());
}

#[test]
fn pseudonymize_requires_a_key() {
    let e = compile_value(json!({"pseudonymize": ["client_ip"]})).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("policies.p.log.pseudonymize: "), "{e:?}");
    assert!(e[0].contains("pseudonym_key"));

    let e = compile_value(json!({"upstream_xff": "pseudonymize"})).unwrap_err();
    assert!(e[0].starts_with("policies.p.log.upstream_xff: "), "{e:?}");

    assert!(
        compile_value(json!({"upstream_xff": "pseudonymize", "pseudonym_key": key_json(1)}))
            .is_ok()
    );
    assert!(
        compile_value(json!({"pseudonymize": ["client_ip"], "pseudonym_key": key_json(1)})).is_ok()
    );
    // A key without anything to pseudonymize is allowed (prepared rotation).
    assert!(compile_value(json!({"pseudonym_key": key_json(1)})).is_ok());
}

#[test]
fn short_or_missing_keys_are_rejected_without_printing_them() {
    let short = b64(&[0x5a; 31]);
    let e = compile_value(json!({"pseudonym_key": {"base64": short}, "pseudonymize": ["key_id"]}))
        .unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("policies.p.log.pseudonym_key: "), "{e:?}");
    assert!(!e[0].contains(&short));

    let e = compile_value(json!({"pseudonym_key": {"env": "EDGEWARD_LOG_KEY"}})).unwrap_err();
    assert!(e[0].contains("EDGEWARD_LOG_KEY"), "{e:?}");

    // From the environment (base64 in the variable).
    let value = b64(&[0x33; 48]);
    let env = |name: &str| (name == "EDGEWARD_LOG_KEY").then(|| value.clone());
    let input =
        parse(json!({"pseudonym_key": {"env": "EDGEWARD_LOG_KEY"}, "pseudonymize": ["client_ip"]}))
            .unwrap();
    let mut errs = Errors::default();
    let p = compile(&input, PATH, &env, &mut errs).unwrap();
    assert!(errs.is_empty());
    assert!(!format!("{p:?}").contains(&value));
    let direct = PseudonymKey::new(&[0x33; 48]).unwrap();
    let r = p.record(&input_with_ip("192.0.2.1"));
    assert!(r.contains(&direct.pseudonym_ip("client_ip", "192.0.2.1".parse().unwrap())));
}

fn input_with_ip(ip: &str) -> RecordInput<'static> {
    RecordInput {
        client_ip: Some(ip.parse().unwrap()),
        headers: Headers::new(&[]),
        key_id: None,
        agent: None,
        ..input(&[])
    }
}

#[test]
fn forbidden_headers_cannot_be_listed() {
    for (i, name) in FORBIDDEN_HEADERS.iter().enumerate() {
        for spelled in [name.to_string(), name.to_ascii_uppercase()] {
            let e = compile_value(json!({"headers": ["user-agent", spelled]})).unwrap_err();
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].starts_with("policies.p.log.headers[1]: "), "{i} {e:?}");
            assert!(e[0].contains("credentials"));
            let e = compile_value(json!({
                "pseudonym_key": key_json(1),
                "pseudonymize": [format!("header:{spelled}")]
            }))
            .unwrap_err();
            assert!(
                e[0].starts_with("policies.p.log.pseudonymize[0]: "),
                "{e:?}"
            );
        }
    }
    let e = compile_value(json!({"headers": ["forwarded"]})).unwrap_err();
    assert!(e[0].starts_with("policies.p.log.headers[0]: "));
    assert!(compile_value(json!({"headers": ["user-agent", "x-request-id"]})).is_ok());
}

#[test]
fn bad_names_and_conflicts_are_reported_together() {
    let e = compile_value(json!({
        "pseudonym_key": key_json(1),
        "pseudonymize": ["client_ip", "ip", "header:", "header:x user", "header:x-user-id"],
        "headers": [":authority", "X-User-Id", "user-agent", ""],
        "keep_query": ["page", ""],
        "redact_query": ["token"]
    }))
    .unwrap_err();
    let want = [
        "policies.p.log.pseudonymize[1]: ",
        "policies.p.log.pseudonymize[2]: ",
        "policies.p.log.pseudonymize[3]: ",
        "policies.p.log.headers[0]: ",
        "policies.p.log.headers[1]: ",
        "policies.p.log.headers[3]: ",
        "policies.p.log.redact_query: replaced by keep_query",
        "policies.p.log.keep_query[1]: ",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, prefix) in e.iter().zip(want) {
        assert!(got.starts_with(prefix), "{got} vs {prefix}");
    }
    assert!(e[4].contains("pseudonymized"), "{}", e[4]);
}

// ---- the record ----

#[test]
fn full_record() {
    let h = request_headers();
    let p = full_policy(0x4b);
    let r = input(&h);
    let (s, v) = record_json(&p, &r);
    assert!(!s.contains('\n'));
    let k = PseudonymKey::new(&[0x4b; 32]).unwrap();
    assert_eq!(
        v,
        json!({
            "ts": "2000-02-29T00:00:00.005Z",
            "route": "partner-api",
            "policy": "partner",
            "mode": "enforce",
            "decision": "allow",
            "reason": null,
            "status": 200,
            "method": "GET",
            "host": "api.example.com",
            "path": "/v1/items?token=REDACTED&page=2&email=REDACTED",
            "tls": "1.3",
            "client_ip": "10.1.77.0",
            "client": k.pseudonym_ip("client_ip", "10.1.77.77".parse().unwrap()),
            "key_id": k.pseudonym("key_id", b"partner-key-1"),
            "header:x-user-id": k.pseudonym("header:x-user-id", b"alice@example.com"),
            "headers": {
                "user-agent": "curl/8.5",
                "x-forwarded-for": "203.0.113.0, 10.1.77.0"
            }
        })
    );
    // Field order is stable (ts first, headers last).
    assert!(s.starts_with("{\"ts\":\"2000-02-29T00:00:00.005Z\",\"route\":"));
    assert!(s.ends_with("}}"));
}

#[test]
fn nothing_secret_or_raw_reaches_the_record() {
    let h = request_headers();
    let raw_everywhere = [
        "10.1.77.77",
        "77.77",
        "SECRET-BEARER",
        "SECRET-COOKIE",
        "SECRETSIGNATURE",
        "SECRET-API-KEY",
        "not-listed-value",
        "authorization",
        "cookie",
        "203.0.113.9",
        "k1",
    ];
    for s in [
        full_policy(0x4b).record(&input(&h)),
        LogPolicy::default().record(&input(&h)),
    ] {
        for needle in raw_everywhere {
            assert!(!s.contains(needle), "{needle} in {s}");
        }
    }
    // With the full policy, query values and the pseudonymized header are gone too.
    let s = full_policy(0x4b).record(&input(&h));
    {
        for needle in [
            "SECRET",
            "bob",
            "alice",
            "not-listed-value",
            "authorization",
            "cookie",
            "203.0.113.9",
            "k1",
        ] {
            assert!(!s.contains(needle), "{needle} in {s}");
        }
    }
}

#[test]
fn record_input_debug_hides_personal_data() {
    let h = request_headers();
    let dbg = format!("{:?}", input(&h));
    assert!(dbg.contains("partner-api"));
    for needle in ["10.1.77", "SECRET", "alice", "partner-key-1"] {
        assert!(!dbg.contains(needle), "{needle} in {dbg}");
    }
}

#[test]
fn default_policy_record() {
    let h = request_headers();
    let (_, v) = record_json(&LogPolicy::default(), &input(&h));
    assert_eq!(v["client_ip"], "10.1.77.0");
    assert!(v.get("client").is_none());
    assert_eq!(v["key_id"], "partner-key-1");
    assert_eq!(v["headers"], json!({}));
    // Private by default: every query value is redacted, names stay.
    assert_eq!(
        v["path"],
        "/v1/items?token=REDACTED&page=REDACTED&email=REDACTED"
    );
    assert!(LogPolicy::default().fields(&input(&h)).is_empty());
}

/// `"status": false` leaves the status out of the record and of `fields` (the adapter then does not read
/// it); the default and `true` keep it.
#[test]
fn the_status_can_be_left_out_of_the_record() {
    let h = request_headers();
    let r = input(&h);
    for (section, logged) in [
        (json!({"fields": true}), true),
        (json!({"fields": true, "status": true}), true),
        (json!({"fields": true, "status": false}), false),
    ] {
        let p = policy(section.clone());
        assert_eq!(p.logs_status(), logged, "{section}");
        let (s, v) = record_json(&p, &r);
        assert_eq!(
            v.get("status").cloned(),
            logged.then(|| json!(200)),
            "{section}"
        );
        assert_eq!(s.contains("status"), logged, "{s}");
        let f = p.fields(&r);
        assert_eq!(
            f.iter().any(|(n, _)| *n == "edgeward.status"),
            logged,
            "{section}"
        );
        // Everything else is as before.
        assert_eq!(v["method"], "GET", "{section}");
        assert_eq!(v["decision"], "allow", "{section}");
        assert!(f.iter().any(|(n, _)| *n == "edgeward.method"), "{section}");
    }
    assert!(LogPolicy::default().logs_status());
    assert!(parse(json!({"status": "no"})).is_err());
    assert!(parse(json!({"status": null})).is_err());
    // A policy's section over the document's: given wins, absent inherits.
    let off = parse(json!({"status": false})).unwrap();
    let on = parse(json!({"status": true})).unwrap();
    let unset = parse(json!({})).unwrap();
    assert_eq!(unset.over(&off).status, Some(false));
    assert_eq!(on.over(&off).status, Some(true));
    assert_eq!(off.over(&on).status, Some(false));
}

#[test]
fn no_route_and_missing_values_are_null() {
    let r = RecordInput {
        route: None,
        policy: None,
        decision: "deny",
        reason: Some("no_route"),
        status: 403,
        tls: None,
        client_ip: None,
        key_id: None,
        agent: None,
        ..input(&[])
    };
    let (_, v) = record_json(&full_policy(1), &r);
    assert_eq!(v["route"], Value::Null);
    assert_eq!(v["policy"], Value::Null);
    assert_eq!(v["reason"], "no_route");
    assert_eq!(v["status"], 403);
    assert_eq!(v["tls"], Value::Null);
    assert_eq!(v["client_ip"], Value::Null);
    assert_eq!(v["client"], Value::Null);
    assert_eq!(v["key_id"], Value::Null);
    assert_eq!(v["header:x-user-id"], Value::Null);
    assert_eq!(v["headers"], json!({}));
}

#[test]
fn shadow_records_say_what_would_have_happened() {
    let r = RecordInput {
        mode: "shadow",
        shadow_decision: Some("deny"),
        shadow_reason: Some("ip_denied"),
        ..input(&[])
    };
    let (_, v) = record_json(&LogPolicy::default(), &r);
    assert_eq!(v["mode"], "shadow");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["reason"], Value::Null);
    assert_eq!(v["shadow_decision"], "deny");
    assert_eq!(v["shadow_reason"], "ip_denied");
    // Enforce records carry no shadow fields.
    let (_, v) = record_json(&LogPolicy::default(), &input(&[]));
    assert!(v.get("shadow_reason").is_none() && v.get("shadow_decision").is_none());
}

#[test]
fn ipv6_and_mapped_clients() {
    let p = full_policy(2);
    let k = PseudonymKey::new(&[2; 32]).unwrap();
    let cases = [
        ("2001:db8:85a3:8d3::1", "2001:db8:85a3::"),
        ("::ffff:192.0.2.77", "192.0.2.0"),
        ("::1", "::"),
    ];
    for (ip, want) in cases {
        let (_, v) = record_json(&p, &input_with_ip(ip));
        assert_eq!(v["client_ip"], want, "{ip}");
        assert_eq!(
            v["client"],
            k.pseudonym_ip("client_ip", ip.parse().unwrap())
        );
    }
    let (_, a) = record_json(&p, &input_with_ip("::ffff:192.0.2.77"));
    let (_, b) = record_json(&p, &input_with_ip("192.0.2.77"));
    assert_eq!(a["client"], b["client"]);
}

#[test]
fn pseudonyms_rotate_with_the_key() {
    let h = request_headers();
    let (_, a) = record_json(&full_policy(1), &input(&h));
    let (_, a2) = record_json(&full_policy(1), &input(&h));
    let (_, b) = record_json(&full_policy(2), &input(&h));
    for f in ["client", "key_id", "header:x-user-id"] {
        assert_eq!(a[f], a2[f], "{f}");
        assert_ne!(a[f], b[f], "{f}");
    }
    // Equal input in different fields does not link.
    let same = hdrs(&[("x-user-id", "partner-key-1")]);
    let (_, v) = record_json(&full_policy(1), &input(&same));
    assert_ne!(v["key_id"], v["header:x-user-id"]);
}

/// Key ids of the policy's own keys get their pseudonym at configure; records and fields give the same
/// value as computing it, for known and unknown ids alike, and nothing is computed when key ids are
/// not pseudonymized.
#[test]
fn key_id_pseudonyms_computed_at_configure_are_the_same_value() {
    let k = PseudonymKey::new(&[0x4b; 32]).unwrap();
    let mut p = full_policy(0x4b);
    p.precompute_key_ids(["partner-key-1", "other", "partner-key-1"]);
    assert_eq!(p.known_key_ids.len(), 2, "one entry per id");
    assert_eq!(
        p.known_key_id("partner-key-1"),
        Some(k.pseudonym("key_id", b"partner-key-1").as_str())
    );
    assert_eq!(p.known_key_id("unknown"), None);
    let h = request_headers();
    for id in ["partner-key-1", "other", "unknown"] {
        let mut r = input(&h);
        r.key_id = Some(id);
        let (_, v) = record_json(&p, &r);
        assert_eq!(v["key_id"], k.pseudonym("key_id", id.as_bytes()), "{id}");
        let (_, fresh) = record_json(&full_policy(0x4b), &r);
        assert_eq!(v, fresh, "{id}");
        let f = p.fields(&r);
        let field = f
            .iter()
            .find(|(n, _)| *n == "edgeward.key_id")
            .map(|(_, v)| v);
        assert_eq!(field.map(String::as_str), v["key_id"].as_str(), "{id}");
    }
    // The table is bounded; ids past it are computed per record.
    let many: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    p.precompute_key_ids(many.iter().map(String::as_str));
    assert_eq!(p.known_key_ids.len(), MAX_KNOWN_KEY_IDS);
    let mut r = input(&h);
    r.key_id = Some("k99");
    assert_eq!(
        record_json(&p, &r).1["key_id"],
        k.pseudonym("key_id", b"k99")
    );
    // Key ids logged as they are: nothing computed.
    let mut raw = policy(json!({"pseudonym_key": key_json(1), "pseudonymize": ["client_ip"]}));
    raw.precompute_key_ids(["partner-key-1"]);
    assert!(raw.known_key_ids.is_empty());
    assert_eq!(record_json(&raw, &input(&h)).1["key_id"], "partner-key-1");
}

/// A compiled document computes the pseudonyms of its signature policies' key ids, and only where the
/// log pseudonymizes key ids.
#[test]
fn documents_compute_their_key_id_pseudonyms_at_configure() {
    let top = format!(
        r#""log": {{ "pseudonym_key": {}, "pseudonymize": ["key_id"] }},"#,
        key_json(7)
    );
    let doc =
        crate::document::Document::from_json(&crate::testkit::partner_and_public(&top, ""), &NoEnv)
            .unwrap();
    let by_name = |n: &str| doc.policies.iter().find(|p| p.name == n).unwrap();
    let k = PseudonymKey::new(&[7; 32]).unwrap();
    assert_eq!(
        by_name("partner").log.known_key_id("k1"),
        Some(k.pseudonym("key_id", b"k1").as_str())
    );
    assert_eq!(by_name("public").log.known_key_id("k1"), None);
    let plain =
        crate::document::Document::from_json(&crate::testkit::partner_and_public("", ""), &NoEnv)
            .unwrap();
    assert!(plain
        .policies
        .iter()
        .all(|p| p.log.known_key_ids.is_empty()));
}

#[test]
fn key_id_is_raw_unless_listed() {
    let p = policy(json!({"pseudonym_key": key_json(1), "pseudonymize": ["client_ip"]}));
    let (_, v) = record_json(&p, &input(&[]));
    assert_eq!(v["key_id"], "partner-key-1");
    let (_, v) = record_json(&full_policy(1), &input(&[]));
    assert_ne!(v["key_id"], "partner-key-1");
    assert_eq!(v["key_id"].as_str().unwrap().len(), 22);
}

#[test]
fn repeated_headers_are_combined() {
    let h = hdrs(&[
        ("user-agent", "a"),
        ("x-forwarded-for", "192.0.2.1"),
        ("user-agent", "b"),
        ("x-forwarded-for", "not-an-ip, [2001:db8::1]:80"),
    ]);
    let (_, v) = record_json(&full_policy(1), &input(&h));
    assert_eq!(v["headers"]["user-agent"], "a, b");
    assert_eq!(
        v["headers"]["x-forwarded-for"],
        "192.0.2.0, unknown, 2001:db8::"
    );
}

/// The README's example lists `referer`: the Referer's query is redacted like `path`, in the record and
/// in the `fields` properties, each repeated value on its own, and each URL of a comma-joined value on
/// its own (Envoy joins two `Referer` lines with `,`).
#[test]
fn referer_queries_are_redacted_like_the_path() {
    let p = full_policy(1);
    let h = hdrs(&[("referer", "https://x/?token=S3CR3T")]);
    let (s, v) = record_json(&p, &input(&h));
    assert_eq!(v["headers"]["referer"], "https://x/?token=REDACTED");
    assert!(!s.contains("S3CR3T"), "{s}");
    let fields = p.fields(&input(&h));
    let referer = fields
        .iter()
        .find(|(k, _)| *k == "edgeward.headers.referer")
        .map(|(_, v)| v.as_str());
    assert_eq!(referer, Some("https://x/?token=REDACTED"));
    assert!(
        !fields.iter().any(|(_, v)| v.contains("S3CR3T")),
        "{fields:?}"
    );

    let h = hdrs(&[
        ("referer", "https://a/?page=1"),
        ("Referer", "https://b/p?Email=S3CR3T&x=1#t%6Fken=S3CR3T"),
    ]);
    let (s, v) = record_json(&p, &input(&h));
    assert_eq!(
        v["headers"]["referer"],
        "https://a/?page=1, https://b/p?Email=REDACTED&x=REDACTED#t%6Fken=REDACTED"
    );
    assert!(!s.contains("S3CR3T"), "{s}");

    // As Envoy delivers two Referer lines: one value, joined with ','.
    for joined in [
        "https://a/?page=1,https://b/?token=T0K3N_A",
        "https://a/?page=1, https://b/?token[]=T0K3N_A",
    ] {
        let h = hdrs(&[("referer", joined)]);
        let (s, _) = record_json(&p, &input(&h));
        assert!(!s.contains("T0K3N_A"), "{s}");
        assert!(s.contains("https://a/?page=1"), "{s}");
    }

    // Only `keep_query` names keep their values; without `?` the value is logged as sent.
    let keep = policy(json!({"headers": ["referer"], "keep_query": ["token"]}));
    let h = hdrs(&[("referer", "https://x/?token=visible")]);
    assert_eq!(
        record_json(&keep, &input(&h)).1["headers"]["referer"],
        "https://x/?token=visible"
    );
    let h = hdrs(&[("referer", "https://x/a")]);
    assert_eq!(
        record_json(&p, &input(&h)).1["headers"]["referer"],
        "https://x/a"
    );
}

#[test]
fn header_names_match_case_insensitively() {
    let h = hdrs(&[("User-Agent", "x"), ("X-User-Id", "alice")]);
    let (_, v) = record_json(&full_policy(1), &input(&h));
    assert_eq!(v["headers"]["user-agent"], "x");
    assert_ne!(v["header:x-user-id"], Value::Null);
}

#[test]
fn values_are_capped() {
    let long_ua = "U".repeat(10_000);
    let h = hdrs(&[("user-agent", &long_ua)]);
    let long_path = format!("/{}?token={}", "p".repeat(300), "S".repeat(300));
    let r = RecordInput {
        path: &long_path,
        host: &long_ua,
        ..input(&h)
    };
    let (s, v) = record_json(&full_policy(1), &r);
    for got in [&v["headers"]["user-agent"], &v["host"], &v["path"]] {
        let got = got.as_str().unwrap();
        assert!(got.len() <= VALUE_CAP, "{}", got.len());
        assert!(got.ends_with(CUT_MARKER));
    }
    // Redaction happens before the cut: the secret is gone even from the uncut part.
    assert!(!s.contains("SSS"));
    assert!(s.len() < 2_000, "{}", s.len());
}

#[test]
fn control_characters_never_reach_the_record_raw() {
    let h = hdrs(&[
        (
            "user-agent",
            "evil\n{\"decision\":\"allow\"}\r\u{1b}[2J\u{202e}\u{85}\u{7f}",
        ),
        ("referer", "\u{0}\u{2028}"),
    ]);
    let r = RecordInput {
        method: "GE\u{1b}T",
        path: "/a\u{0}b?x=\n",
        host: "h\u{202e}ost",
        key_id: Some("k\u{7}"),
        agent: None,
        ..input(&h)
    };
    let p = policy(json!({"headers": ["user-agent", "referer"]}));
    let (s, v) = record_json(&p, &r);
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    };
    assert!(!s.chars().any(bad), "{s:?}");
    // And not after JSON decoding either: they are spelled out as text.
    fn walk(v: &Value, bad: &dyn Fn(char) -> bool) {
        match v {
            Value::String(s) => assert!(!s.chars().any(bad), "{s:?}"),
            Value::Object(m) => m.values().for_each(|x| walk(x, bad)),
            _ => {}
        }
    }
    walk(&v, &bad);
    assert_eq!(v["method"], "GE\\u{1b}T");
    assert_eq!(v["headers"]["referer"], "\\u{0}\\u{2028}");
    assert_eq!(v["decision"], "allow");
    assert!(v["headers"]["user-agent"]
        .as_str()
        .unwrap()
        .starts_with("evil\\u{a}{\"decision\""));
}

#[test]
fn fields_mirror_the_record() {
    let h = request_headers();
    let p = full_policy(0x4b);
    let r = input(&h);
    let (_, v) = record_json(&p, &r);
    let f = p.fields(&r);
    let get = |name: &str| f.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    assert_eq!(get("edgeward.ts"), v["ts"].as_str());
    assert_eq!(get("edgeward.client_ip"), Some("10.1.77.0"));
    assert_eq!(get("edgeward.client"), v["client"].as_str());
    assert_eq!(get("edgeward.key_id"), v["key_id"].as_str());
    assert_eq!(
        get("edgeward.header.x-user-id"),
        v["header:x-user-id"].as_str()
    );
    assert_eq!(get("edgeward.headers.user-agent"), Some("curl/8.5"));
    assert_eq!(get("edgeward.path"), v["path"].as_str());
    assert_eq!(get("edgeward.status"), Some("200"));
    assert_eq!(get("edgeward.reason"), None);
    assert_eq!(get("edgeward.headers.referer"), None);
    for (name, value) in &f {
        assert!(name.starts_with("edgeward."));
        assert!(!name["edgeward.".len()..].contains(':'), "{name}");
        assert!(!value.contains("10.1.77.77") && !value.contains("SECRET"));
    }
    // Off by default.
    let off = policy(json!({"headers": ["user-agent"]}));
    assert!(off.fields(&r).is_empty());
}

// ---- upstream X-Forwarded-For ----

fn xff_policy(mode: &str) -> LogPolicy {
    policy(json!({"pseudonym_key": key_json(9), "upstream_xff": mode}))
}

#[test]
fn xff_modes() {
    let values = ["198.51.100.7, 2001:db8:85a3:8d3::1", "::ffff:10.1.77.77"];
    assert_eq!(xff_policy("keep").rewrite_xff(values), XffAction::Keep);
    assert_eq!(xff_policy("remove").rewrite_xff(values), XffAction::Remove);
    assert_eq!(
        xff_policy("truncate").rewrite_xff(values),
        XffAction::Set("198.51.100.0, 2001:db8:85a3::, 10.1.77.0".into())
    );
    let k = PseudonymKey::new(&[9; 32]).unwrap();
    let want: Vec<String> = ["198.51.100.7", "2001:db8:85a3:8d3::1", "10.1.77.77"]
        .iter()
        .map(|a| k.pseudonym_ip("client_ip", a.parse().unwrap()))
        .collect();
    assert_eq!(
        xff_policy("pseudonymize").rewrite_xff(values),
        XffAction::Set(want.join(", "))
    );
    assert!(!xff_policy("keep").remove_external_address());
    for mode in ["truncate", "pseudonymize", "remove"] {
        assert!(xff_policy(mode).remove_external_address(), "{mode}");
    }
}

#[test]
fn xff_garbage_is_never_forwarded_raw() {
    let values =
        ["evil\r\nx-injected: 1, unknown, _hidden, 010.1.2.3, , 192.0.2.9:1234, [fe80::1%eth0]"];
    for mode in ["truncate", "pseudonymize"] {
        let XffAction::Set(out) = xff_policy(mode).rewrite_xff(values) else {
            panic!("{mode}: expected Set");
        };
        let parts: Vec<&str> = out.split(", ").collect();
        assert_eq!(parts.len(), 6, "{out}");
        // evil…, unknown, _hidden and 010.1.2.3 (leading zero) are not addresses.
        assert_eq!(parts[..4], ["unknown"; 4], "{mode}: {out}");
        assert!(!out.contains('\r') && !out.contains('\n'));
        assert!(!out.contains("192.0.2.9"));
        if mode == "truncate" {
            assert_eq!(out, "unknown, unknown, unknown, unknown, 192.0.2.0, fe80::");
        }
    }
}

#[test]
fn xff_absent_or_empty_is_left_alone() {
    let p = xff_policy("truncate");
    assert_eq!(p.rewrite_xff(std::iter::empty()), XffAction::Keep);
    assert_eq!(p.rewrite_xff([" , "]), XffAction::Keep);
}

#[test]
fn xff_element_count_is_bounded_keeping_the_rightmost() {
    let many: Vec<String> = (0..200).map(|i| format!("192.0.{}.1", i)).collect();
    let joined = many.join(",");
    let XffAction::Set(out) = xff_policy("truncate").rewrite_xff([joined.as_str()]) else {
        panic!("expected Set");
    };
    let parts: Vec<&str> = out.split(", ").collect();
    assert_eq!(parts.len(), MAX_XFF_ELEMENTS);
    assert_eq!(parts.last(), Some(&"192.0.199.0"));
    assert_eq!(parts.first(), Some(&"192.0.136.0"));
}

// ---- the brute-force test ----

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Encodings a leaked hash could appear in: hex (full or 128-bit, both start with the 128-bit hex) and
/// the first 20 base64 characters (identical for a 16- and a 32-byte digest) in both alphabets.
fn encodings(digest: &[u8]) -> [String; 3] {
    let head = &digest[..16];
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(head);
    let std = base64::engine::general_purpose::STANDARD_NO_PAD.encode(head);
    [hex(head), url[..20].to_string(), std[..20].to_string()]
}

/// Every digest an attacker without the key would try for one address.
fn unkeyed_digests(ip: std::net::Ipv4Addr, empty_key: &Hmac<Sha256>) -> Vec<Vec<u8>> {
    let text = ip.to_string();
    let bin = ip.octets();
    let mut labelled = b"client_ip\x00".to_vec();
    labelled.extend_from_slice(&bin);
    let mut out = Vec::new();
    for data in [text.as_bytes(), &bin[..], &labelled[..]] {
        out.push(Sha256::digest(data).to_vec());
        let mut mac = empty_key.clone();
        mac.update(data);
        out.push(mac.finalize().into_bytes().to_vec());
    }
    out
}

#[test]
fn brute_force_over_the_slash_16_finds_nothing() {
    let h = request_headers();
    let p = full_policy(0x4b);
    let record = p.record(&input(&h));
    let target: std::net::Ipv4Addr = "10.1.77.77".parse().unwrap();

    // Every 20- and 32-byte window of the record: the same as `record.contains(e)` for the encodings
    // tried, at a hash lookup each (1.2 M substring searches take seconds in a debug build).
    let windows: std::collections::HashSet<&[u8]> = record
        .as_bytes()
        .windows(20)
        .chain(record.as_bytes().windows(32))
        .collect();
    // Control: the search machinery does find the pseudonym when it has the key, so a miss below means
    // the record resists enumeration, not that the search is broken.
    let mut keyed = Hmac::<Sha256>::new_from_slice(&[0x4b; 32]).unwrap();
    keyed.update(b"client_ip\x00");
    keyed.update(&target.octets());
    let tag = keyed.finalize().into_bytes();
    assert!(encodings(&tag)
        .iter()
        .any(|e| windows.contains(e.as_bytes())));

    let empty_key = Hmac::<Sha256>::new_from_slice(b"").unwrap();
    let mut tried = 0;
    for third in 0..=255u8 {
        for fourth in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(10, 1, third, fourth);
            for d in unkeyed_digests(ip, &empty_key) {
                for e in encodings(&d) {
                    assert!(!windows.contains(e.as_bytes()), "{ip} found in the record");
                }
                tried += 1;
            }
        }
    }
    assert_eq!(tried, 65_536 * 6);
}
