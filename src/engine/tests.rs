use super::*;
use crate::request::{Peer, TlsVersion};
use crate::secret::NoEnv;
use crate::store::MemoryStore;
use crate::testkit::TestRequest;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const DOC: &str = r#"{
  "policies": {
    "public":  { "https": { "action": "redirect" } },
    "partner": { "mode": "shadow", "https": { "action": "reject" } },
    "admin":   { "ip": { "allow": ["127.0.0.0/8"] } }
  },
  "routes": [
    { "route": "partner-api", "policy": "partner" },
    { "host": "admin.example.com", "path_prefix": "/admin/", "policy": "admin" },
    { "host": "open.example.com", "policy": null },
    { "host": "*.example.com", "policy": "public" }
  ]
}"#;

/// A GET as most tests here send it: plain HTTP, from 127.0.0.1.
fn req(authority: &str, path: &str) -> TestRequest {
    TestRequest::get(authority, path)
        .tls(None)
        .peer([127, 0, 0, 1].into())
}

trait Eval {
    /// The head's evaluation at a fixed time, with a fresh store.
    fn eval(&self, doc: &Document) -> Evaluation;
}

impl Eval for TestRequest {
    fn eval(&self, doc: &Document) -> Evaluation {
        doc.evaluate_head(
            &self.head(),
            1_700_000_000_000_000_000,
            &mut MemoryStore::new(),
        )
    }
}

fn doc() -> Document {
    Document::from_json(DOC, &NoEnv).unwrap()
}

fn policy_name(doc: &Document, ev: &Evaluation) -> Option<String> {
    ev.policy.map(|i| doc.policies[i].name.clone())
}

#[test]
fn route_selection_through_the_engine() {
    let d = doc();
    let cases: &[(Option<&str>, &str, &str, Option<&str>, u16, Option<Reason>)] = &[
        // route name wins first, whatever the host
        (
            Some("partner-api"),
            "admin.example.com",
            "/admin/x",
            Some("partner"),
            200,
            None,
        ),
        // exact host + path prefix
        (
            None,
            "admin.example.com",
            "/admin/users",
            Some("admin"),
            200,
            None,
        ),
        (
            None,
            "ADMIN.example.com:8443",
            "/admin/?q=1",
            Some("admin"),
            200,
            None,
        ),
        // prefix must match: falls through to the wildcard
        (
            None,
            "admin.example.com",
            "/administrator",
            Some("public"),
            301,
            Some(Reason::HttpsRequired),
        ),
        // explicit opt-out
        (None, "open.example.com", "/anything", None, 200, None),
        // wildcard, any depth
        (
            None,
            "a.b.example.com",
            "/",
            Some("public"),
            301,
            Some(Reason::HttpsRequired),
        ),
        // no match: fail closed
        (None, "example.com", "/", None, 403, Some(Reason::NoRoute)),
        (
            None,
            "evil.test",
            "/admin/",
            None,
            403,
            Some(Reason::NoRoute),
        ),
    ];
    for (route, authority, path, policy, status, reason) in cases {
        let mut r = req(authority, path);
        r.route = route.map(String::from);
        let ev = r.eval(&d);
        assert_eq!(
            policy_name(&d, &ev).as_deref(),
            *policy,
            "{authority}{path}"
        );
        assert_eq!(ev.status(), *status, "{authority}{path}");
        assert_eq!(ev.reason(), *reason, "{authority}{path}");
    }
}

#[test]
fn shadow_mode_records_but_lets_through() {
    let d = doc();
    let mut r = req("x.test", "/p");
    r.route = Some("partner-api".into());
    let ev = r.eval(&d);
    assert_eq!(ev.decision(), Decision::Allow);
    assert_eq!(ev.status(), 200);
    let shadow = ev.shadow.as_ref().expect("shadow outcome recorded");
    assert_eq!((shadow.status, shadow.reason), (403, Reason::HttpsRequired));
    let record = ev.record(&d, &r.head(), 200, 0);
    let v: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(v["mode"], "shadow");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["shadow_decision"], "deny");
    assert_eq!(v["shadow_reason"], "https_required");
    // The same policy in enforce mode denies.
    let enforced = Document::from_json(&DOC.replace("\"mode\": \"shadow\", ", ""), &NoEnv).unwrap();
    let ev = r.eval(&enforced);
    assert_eq!(
        (ev.status(), ev.reason()),
        (403, Some(Reason::HttpsRequired))
    );
    assert!(ev.shadow.is_none());
}

/// What the upstream receives in X-Forwarded-For and X-Envoy-External-Address per `upstream_xff`, for
/// policies and `"policy": null` routes (the document's log settings); only headers the request has are
/// published (each is a host call).
#[test]
fn forwarding_headers_follow_upstream_xff() {
    for (xff, want_xff, want_xea) in [
        ("keep", Some("203.0.113.9,10.1.2.3"), Some("10.1.2.3")),
        ("truncate", Some("203.0.113.0, 10.1.2.0"), None),
        ("remove", None, None),
    ] {
        for (log_at, route) in [("policy", r#""p""#), ("document", "null")] {
            let log = format!(r#"{{"upstream_xff": "{xff}"}}"#);
            let (doc_log, policy_log) = match log_at {
                "policy" => ("{}".to_string(), log),
                _ => (log, "{}".to_string()),
            };
            let doc = Document::from_json(
                &format!(
                    r#"{{"log": {doc_log}, "policies": {{"p": {{"log": {policy_log}}}}},
                        "routes": [{{"policy": {route}}}]}}"#
                ),
                &NoEnv,
            )
            .unwrap();
            let mut r = req("a.test", "/");
            assert_eq!(
                r.eval(&doc).upstream,
                Upstream::default(),
                "{xff}: no headers"
            );
            assert!(r.eval(&doc).upstream.properties().is_empty());
            r.headers = vec![
                ("x-forwarded-for".into(), "203.0.113.9".into()),
                ("x-forwarded-for".into(), "10.1.2.3".into()),
                ("x-envoy-external-address".into(), "10.1.2.3".into()),
            ];
            let up = r.eval(&doc).upstream;
            assert_eq!(up.forwarded_for.as_deref(), want_xff, "{xff} {log_at}");
            assert_eq!(up.external_address.as_deref(), want_xea, "{xff} {log_at}");
            assert_eq!(up.key_id, None);
        }
    }
}

/// Whether the record carries the status (and so whether the adapter reads it) follows the log section
/// of the request's policy, or the document's for requests outside any policy.
#[test]
fn the_status_is_logged_as_the_requests_log_section_says() {
    let doc = Document::from_json(
        r#"{"log": {"status": false},
            "policies": {"quiet": {}, "loud": {"log": {"status": true}}},
            "routes": [{"path_prefix": "/loud/", "policy": "loud"},
                       {"path_prefix": "/none/", "policy": null},
                       {"path_prefix": "/quiet/", "policy": "quiet"}]}"#,
        &NoEnv,
    )
    .unwrap();
    for (path, logged) in [("/loud/x", true), ("/quiet/x", false), ("/none/x", false)] {
        let r = req("a.test", path);
        let ev = r.eval(&doc);
        assert_eq!(ev.logs_status(&doc), logged, "{path}");
        let record = ev.record(&doc, &r.head(), 503, 1_700_000_000_000_000_000);
        assert_eq!(record.contains(r#""status":503"#), logged, "{record}");
    }
}

#[test]
fn client_sent_internal_headers_are_refused() {
    let d = doc();
    for (authority, path) in [
        ("open.example.com", "/"),
        ("admin.example.com", "/admin/"),
        ("nowhere.test", "/"),
    ] {
        for name in ["x-edgeward-key-id", "X-Edgeward-Other", "x-EDGEWARD-"] {
            let mut r = req(authority, path);
            r.headers = vec![
                ("x-other".into(), "kept".into()),
                (name.into(), "admin".into()),
            ];
            let ev = r.eval(&d);
            assert_eq!(
                (ev.status(), ev.reason()),
                (400, Some(Reason::ReservedHeader)),
                "{authority} {name}"
            );
            assert_eq!(ev.upstream, Upstream::default());
        }
        let mut r = req(authority, path);
        r.headers = vec![("x-edgeward".into(), "not the prefix".into())];
        assert_ne!(r.eval(&d).reason(), Some(Reason::ReservedHeader));
    }
}

#[test]
fn bad_host_is_400_before_any_policy() {
    let d = doc();
    for authority in [
        "",
        "a b",
        "x@admin.example.com",
        "admin.example.com:99999",
        "a\r\nb",
    ] {
        let ev = req(authority, "/").eval(&d);
        assert_eq!(
            (ev.status(), ev.reason()),
            (400, Some(Reason::BadHost)),
            "{authority:?}"
        );
    }
}

#[test]
fn ip_check_runs_on_the_resolved_client() {
    let d = doc();
    let mut r = req("admin.example.com", "/admin/");
    r.peer = Peer::Ip([10, 1, 2, 3].into());
    let ev = r.eval(&d);
    assert_eq!((ev.status(), ev.reason()), (403, Some(Reason::IpDenied)));
    r.peer = Peer::Ip([127, 0, 0, 9].into());
    assert_eq!(r.eval(&d).status(), 200);
}

#[test]
fn hsts_only_over_https() {
    let d = Document::from_json(
        r#"{"policies":{"p":{"https":{"hsts":{"max_age_s":600}}}},"routes":[{"policy":"p"}]}"#,
        &NoEnv,
    )
    .unwrap();
    let mut r = req("a.test", "/");
    let ev = r.eval(&d);
    assert_eq!(ev.status(), 301);
    assert!(ev.response_headers.is_empty(), "no HSTS over plain HTTP");
    r.tls = Some(TlsVersion::V1_3);
    let ev = r.eval(&d);
    assert_eq!(ev.status(), 200);
    assert_eq!(
        ev.response_headers,
        vec![("strict-transport-security".into(), "max-age=600".into())]
    );
}

#[test]
fn document_errors_name_paths() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"policies":{},"routes":[{"policy":"nope"}]}"#,
            "routes[0].policy",
        ),
        (
            r#"{"policies":{"p":{"ip":{"allow":["010.0.0.0/8"]}}},"routes":[{"policy":"p"}]}"#,
            "policies.p.ip.allow[0]",
        ),
        (
            r#"{"policies":{"p":{"bogus":1}},"routes":[{"policy":"p"}]}"#,
            "policies.p",
        ),
        (
            r#"{"policies":{"p":{}},"routes":[{"host":"a"}]}"#,
            "routes[0]",
        ),
        (
            r#"{"policies":{"p":{"log":{"pseudonymize":["client_ip"],"pseudonym_key":{"env":"MISSING_KEY_VAR"}}}},"routes":[{"policy":"p"}]}"#,
            "policies.p.log.pseudonym_key",
        ),
        (r#"{"policies":{"p":{}},"routes":[]}"#, "routes"),
        (
            r#"{"policies":{"p":{}},"routes":[{"policy":"p","path_prefix":"x"}]}"#,
            "routes[0].path_prefix",
        ),
    ];
    for (json, path) in cases {
        let errs = Document::from_json(json, &NoEnv).unwrap_err();
        assert!(
            errs.iter().any(|e| e.path.starts_with(path)),
            "{json}: {errs:?}"
        );
    }
    let errs = Document::from_json("{\"policies\":", &NoEnv).unwrap_err();
    assert_eq!(errs.len(), 1);
}

#[test]
fn missing_env_secret_error_names_the_variable_not_a_value() {
    let json = r#"{"policies":{"p":{"log":{"pseudonymize":["client_ip"],"pseudonym_key":{"env":"EW_TEST_KEY"}}}},"routes":[{"policy":"p"}]}"#;
    let errs = Document::from_json(json, &NoEnv).unwrap_err();
    assert!(
        errs.iter().any(|e| e.reason.contains("EW_TEST_KEY")),
        "{errs:?}"
    );
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0x";
    let env = |n: &str| (n == "EW_TEST_KEY").then(|| secret.to_string());
    assert!(Document::from_json(json, &env).is_ok());
    let short = |n: &str| (n == "EW_TEST_KEY").then(|| "c2hvcnQ=".to_string());
    let errs = Document::from_json(json, &short).unwrap_err();
    assert!(
        errs.iter()
            .all(|e| !e.reason.contains("c2hvcnQ") && !e.reason.contains("short")),
        "{errs:?}"
    );
}

#[test]
fn hash_key_depends_on_document_and_optional_env() {
    let a = doc();
    let b = doc();
    assert_eq!(a.hash_key, b.hash_key);
    let c = Document::from_json(&DOC.replace("127.0.0.0/8", "127.0.0.0/16"), &NoEnv).unwrap();
    assert_ne!(a.hash_key, c.hash_key);
    let env = |n: &str| (n == "EDGEWARD_HASH_KEY").then(|| "k".to_string());
    assert_ne!(Document::from_json(DOC, &env).unwrap().hash_key, a.hash_key);
    // The nonce key follows the variable only: other text, the same nonce placement.
    assert_eq!(a.nonce_key, c.nonce_key);
    let keyed = Document::from_json(DOC, &env).unwrap();
    assert_ne!(keyed.nonce_key, a.nonce_key);
    let keyed_c = Document::from_json(&DOC.replace("127.0.0.0/8", "127.0.0.0/16"), &env).unwrap();
    assert_eq!(keyed.nonce_key, keyed_c.nonce_key);
}

/// A document with one keyed limit, `per-client` of policy `api`, of `limit` per hour; `extra`
/// is appended to the text (other text, same limits).
fn one_limit_doc(limit: u32, extra: &str) -> Document {
    Document::from_json(
        &format!(
            r#"{{"rate_limit_slots": 64, "policies": {{"api": {{"rate_limits": [
            {{"name": "per-client", "key": "client_ip", "limit": {limit}, "window_s": 3600}}]}}}},
            "routes": [{{"policy": "api"}}]}}{extra}"#
        ),
        &NoEnv,
    )
    .unwrap()
}

fn allowed_from(doc: &Document, peer: [u8; 4], store: &mut MemoryStore) -> bool {
    let r = TestRequest::get("api.example.com", "/").peer(peer.into());
    doc.evaluate_head(&r.head(), 1_700_000_000_000_000_000, store)
        .reason()
        .is_none()
}

#[test]
fn two_configurations_of_one_vm_keep_separate_budgets() {
    // Same policy and limit names, other sizes, one shared data: neither resets the other.
    let (a, b) = (one_limit_doc(1, ""), one_limit_doc(100, ""));
    let mut store = MemoryStore::new();
    a.prepare(&mut store).unwrap();
    b.prepare(&mut store).unwrap();
    let mut a_allowed = 0;
    for _ in 0..10 {
        a_allowed += usize::from(allowed_from(&a, [192, 0, 2, 1], &mut store));
        for i in 0..64u8 {
            assert!(allowed_from(&b, [198, 51, 100, i], &mut store));
        }
    }
    assert_eq!(a_allowed, 1);
}

#[test]
fn a_reload_with_unchanged_limits_keeps_its_table() {
    let a = one_limit_doc(1, "");
    let mut store = MemoryStore::new();
    a.prepare(&mut store).unwrap();
    let sets = store.len();
    assert!(allowed_from(&a, [192, 0, 2, 1], &mut store));
    // The same text again (another worker, or a reload that changed nothing): same buckets.
    let again = one_limit_doc(1, "");
    again.prepare(&mut store).unwrap();
    assert!(!allowed_from(&again, [192, 0, 2, 1], &mut store));
    // Other text, same limits: the same table (keys are placed anew within it, by the new hash key).
    one_limit_doc(1, " ").prepare(&mut store).unwrap();
    assert_eq!(store.len(), sets);
    // Other parameters: a table of its own.
    one_limit_doc(2, "").prepare(&mut store).unwrap();
    assert_eq!(store.len(), 2 * sets);
}

const RLS_DOC: &str = r#"{
  "rls": { "cluster": "ratelimit", "domain": "edgeward", "failure_mode": "deny" },
  "policies": {
    "api": { "rate_limits": [
      { "name": "local-total", "key": "route", "limit": 1, "window_s": 3600 },
      { "name": "per-client", "key": "client_ip", "limit": 100, "window_s": 60, "backend": "rls" }
    ] },
    "watch": { "mode": "shadow", "rate_limits": [
      { "name": "per-client", "key": "client_ip", "limit": 100, "window_s": 60, "backend": "rls" }
    ] },
    "plain": { "rate_limits": [ { "name": "l", "key": "route", "limit": 5, "window_s": 1 } ] }
  },
  "routes": [
    { "host": "watch.test", "policy": "watch" },
    { "host": "plain.test", "policy": "plain" },
    { "policy": "api" }
  ]
}"#;

fn rls_doc(failure_mode: &str) -> Document {
    Document::from_json(
        &RLS_DOC.replace(
            "\"failure_mode\": \"deny\"",
            &format!("\"failure_mode\": \"{failure_mode}\""),
        ),
        &NoEnv,
    )
    .unwrap()
}

fn eval_with(doc: &Document, authority: &str, store: &mut MemoryStore) -> Evaluation {
    let r = TestRequest::get(authority, "/").tls(None);
    doc.evaluate_head(&r.head(), 1_700_000_000_000_000_000, store)
}

fn response(code: i32, headers: &[(&str, &str)]) -> Vec<u8> {
    use prost::Message;
    remote::RateLimitResponse {
        overall_code: code,
        statuses: Vec::new(),
        response_headers_to_add: headers
            .iter()
            .map(|(k, v)| remote::HeaderValue {
                key: k.to_string(),
                value: v.to_string(),
                raw_value: Vec::new(),
            })
            .collect(),
    }
    .encode_to_vec()
}

#[test]
fn remote_call_only_after_local_limits_pass() {
    use prost::Message;
    let d = rls_doc("deny");
    let mut store = MemoryStore::new();
    let ev = eval_with(&d, "api.test", &mut store);
    assert_eq!(ev.status(), 200);
    let call = ev.remote.as_ref().expect("a remote call is pending");
    let req = remote::RateLimitRequest::decode(call.message.as_slice()).unwrap();
    assert_eq!(req.domain, "edgeward");
    let entries: Vec<(&str, &str)> = req.descriptors[0]
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(entries, [("limit", "per-client"), ("key", "192.0.2.7")]);
    // The local limit (1 per hour) is now empty: the next request is denied locally, no call.
    let ev = eval_with(&d, "api.test", &mut store);
    assert_eq!((ev.status(), ev.reason()), (429, Some(Reason::RateLimited)));
    assert!(ev.remote.is_none());
    // A policy without remote limits never calls, even with an rls section.
    assert!(eval_with(&d, "plain.test", &mut store).remote.is_none());
}

#[test]
fn remote_answers_allow_deny_and_refund_local_tokens() {
    let d = rls_doc("deny");
    let mut store = MemoryStore::new();
    // Allowed: the engine's headers go to the client.
    let mut ev = eval_with(&d, "api.test", &mut store);
    ev.apply_remote(
        &d,
        Some(&response(1, &[("X-RateLimit-Remaining", "99")])),
        &mut store,
    );
    assert!(ev.remote.is_none());
    assert_eq!(ev.status(), 200);
    assert!(ev
        .response_headers
        .contains(&("X-RateLimit-Remaining".to_string(), "99".to_string())));
    assert!(!ev.remote_failed_open);

    // Over limit: 429 with Retry-After and the engine's headers, and the local token comes back.
    let mut store = MemoryStore::new();
    let mut ev = eval_with(&d, "api.test", &mut store);
    ev.apply_remote(
        &d,
        Some(&response(
            2,
            &[("X-RateLimit-Reset", "17"), ("X-RateLimit-Remaining", "0")],
        )),
        &mut store,
    );
    let reply = ev.reply.as_ref().expect("denied");
    assert_eq!((reply.status, reply.reason), (429, Reason::RateLimited));
    assert!(reply
        .headers
        .contains(&("Retry-After".to_string(), "17".to_string())));
    assert!(reply
        .headers
        .contains(&("X-RateLimit-Remaining".to_string(), "0".to_string())));
    let again = eval_with(&d, "api.test", &mut store);
    assert_eq!(again.status(), 200, "the local token was refunded");
    assert!(again.remote.is_some());

    // Without a refund the local limit (1) would now deny: check the allow path keeps its token.
    let mut ev = again;
    ev.apply_remote(&d, Some(&response(1, &[])), &mut store);
    assert_eq!(eval_with(&d, "api.test", &mut store).status(), 429);
}

#[test]
fn engine_headers_follow_the_headers_flag() {
    let d = Document::from_json(
        &RLS_DOC.replace(
            r#""limit": 100, "window_s": 60, "backend": "rls" }
    ] },
    "watch""#,
            r#""limit": 100, "window_s": 60, "backend": "rls", "headers": false }
    ] },
    "watch""#,
        ),
        &NoEnv,
    )
    .unwrap();
    let mut store = MemoryStore::new();
    let mut ev = eval_with(&d, "api.test", &mut store);
    ev.apply_remote(
        &d,
        Some(&response(2, &[("X-RateLimit-Reset", "9")])),
        &mut store,
    );
    let reply = ev.reply.as_ref().unwrap();
    assert_eq!(reply.status, 429);
    // Retry-After still comes from the engine's answer; the header itself is not forwarded.
    assert_eq!(
        reply.headers,
        vec![("Retry-After".to_string(), "9".to_string())]
    );
    let d = rls_doc("deny");
    let mut ev = eval_with(&d, "api.test", &mut MemoryStore::new());
    ev.apply_remote(
        &d,
        Some(&response(1, &[("X-RateLimit-Limit", "5")])),
        &mut store,
    );
    assert!(ev
        .response_headers
        .iter()
        .any(|(k, _)| k == "X-RateLimit-Limit"));
}

#[test]
fn remote_failure_follows_the_failure_mode() {
    for answer in [None, Some(vec![0xff, 0x01]), Some(response(0, &[]))] {
        let d = rls_doc("deny");
        let mut store = MemoryStore::new();
        let mut ev = eval_with(&d, "api.test", &mut store);
        ev.apply_remote(&d, answer.as_deref(), &mut store);
        let reply = ev.reply.as_ref().expect("fail closed");
        assert_eq!(
            (reply.status, reply.reason),
            (503, Reason::RateLimitUnavailable)
        );
        assert!(reply
            .headers
            .contains(&("Retry-After".to_string(), "1".to_string())));
        assert!(!ev.remote_failed_open);
        assert_eq!(
            eval_with(&d, "api.test", &mut store).status(),
            200,
            "refunded"
        );

        let d = rls_doc("allow");
        let mut store = MemoryStore::new();
        let mut ev = eval_with(&d, "api.test", &mut store);
        ev.apply_remote(&d, answer.as_deref(), &mut store);
        assert_eq!(ev.status(), 200, "fail open");
        assert!(ev.remote_failed_open);
        let names = crate::metrics::names(&d);
        let counted: Vec<&str> = crate::metrics::counters(&d, &ev)
            .iter()
            .flatten()
            .map(|i| names[*i].as_str())
            .collect();
        assert_eq!(
            counted,
            [
                "edgeward.api.allowed",
                "edgeward.rate_limit.remote_failed_open"
            ]
        );
        assert_eq!(
            eval_with(&d, "api.test", &mut store).status(),
            429,
            "kept its token"
        );
    }
}

#[test]
fn remote_denial_in_shadow_mode_is_recorded_only() {
    let d = rls_doc("deny");
    let mut store = MemoryStore::new();
    let mut ev = eval_with(&d, "watch.test", &mut store);
    assert!(ev.remote.is_some());
    ev.apply_remote(&d, Some(&response(2, &[])), &mut store);
    assert_eq!(ev.status(), 200);
    let shadow = ev.shadow.as_ref().expect("recorded");
    assert_eq!((shadow.status, shadow.reason), (429, Reason::RateLimited));
}

#[test]
fn rls_document_errors_name_paths() {
    let cases: &[(&str, &str)] = &[
        // a remote limit needs the rls section
        (
            r#"{"policies":{"p":{"rate_limits":[{"name":"n","key":"route","limit":1,"window_s":1,"backend":"rls"}]}},"routes":[{"policy":"p"}]}"#,
            "policies.p.rate_limits[0].backend",
        ),
        (
            r#"{"rls":{"cluster":"rl","domain":"d","failure_mode":"open"},"policies":{},"routes":[{"policy":null}]}"#,
            "rls.failure_mode",
        ),
        (
            r#"{"rls":{"cluster":"rl","domain":"","timeout_ms":0},"policies":{},"routes":[{"policy":null}]}"#,
            "rls.domain",
        ),
        // one name, one limit in the engine
        (
            r#"{"rls":{"cluster":"rl","domain":"d"},"policies":{
                "a":{"rate_limits":[{"name":"n","key":"client_ip","limit":1,"window_s":1,"backend":"rls"}]},
                "b":{"rate_limits":[{"name":"n","key":"client_ip","limit":2,"window_s":1,"backend":"rls"}]}},
               "routes":[{"policy":"a"}]}"#,
            "policies.b.rate_limits[0]",
        ),
    ];
    for (json, path) in cases {
        let errs = Document::from_json(json, &NoEnv).unwrap_err();
        assert!(errs.iter().any(|e| e.path == *path), "{json}: {errs:?}");
    }
    // Allow cases: the same name with the same limit in two policies; no rls section and no
    // remote limit.
    let ok = r#"{"rls":{"cluster":"rl","domain":"d"},"policies":{
        "a":{"rate_limits":[{"name":"n","key":"client_ip","limit":1,"window_s":1,"backend":"rls"}]},
        "b":{"rate_limits":[{"name":"n","key":"client_ip","limit":1,"window_s":1,"backend":"rls"}]}},
       "routes":[{"policy":"a"}]}"#;
    let d = Document::from_json(ok, &NoEnv).unwrap();
    assert_eq!(d.rls.as_ref().map(|r| r.timeout_ms), Some(20));
    assert!(Document::from_json(DOC, &NoEnv).unwrap().rls.is_none());
}

// --- The head-time rate-limit check (a policy with a signature: limits checked before the
// signature is verified and the body held). ---

const SIGNED_DOC: &str = r#"{
  "policies": { "p": {
    "signature": {
      "keys": [{ "id": "k1", "alg": "hmac-sha256",
                 "secret": { "base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" } }],
      "components": ["@method", "@authority", "@path", "@query", "content-digest"],
      "max_age_s": 300
    },
    "rate_limits": [LIMITS]
  } },
  "routes": [{ "policy": "p" }]
}"#;
const SIGNED_NOW: u64 = 1_700_000_000;

fn signed_doc(limits: &str) -> Document {
    Document::from_json(&SIGNED_DOC.replace("LIMITS", limits), &NoEnv).unwrap()
}

/// `raw` signed with SIGNED_DOC's key `k1` over `components`, with `nonce` if given.
fn sign_with(raw: &str, components: &[&str], nonce: Option<&str>) -> crate::http1::ParsedRequest {
    use crate::signature::{sign_request, SignParams, SigningKey};
    let mut r = crate::http1::parse_http_request(raw.as_bytes()).unwrap();
    let key = SigningKey::hmac(b"0123456789abcdef0123456789abcdef").unwrap();
    let mut params = SignParams::new("k1", key, SIGNED_NOW);
    params.components = components.iter().map(|c| c.to_string()).collect();
    params.nonce = nonce.map(String::from);
    for (k, v) in sign_request(&r, &params).unwrap().headers() {
        r.headers.push((k.to_ascii_lowercase(), v));
    }
    r
}

const SIGNED_COMPONENTS: [&str; 5] = ["@method", "@authority", "@path", "@query", "content-digest"];
const SIGNED_POST: &str = "POST /orders?a=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n{\"qty\": 3}";

/// A signed POST (valid unless `tamper`), from 192.0.2.7.
fn signed_post(tamper: bool) -> crate::http1::ParsedRequest {
    let mut r = sign_with(SIGNED_POST, &SIGNED_COMPONENTS, None);
    if tamper {
        r.target = "/orders?a=2".to_string();
    }
    r
}

/// Head, then body when the head asks for it.
fn run_signed(
    doc: &Document,
    r: &crate::http1::ParsedRequest,
    store: &mut MemoryStore,
) -> Evaluation {
    let authority = r.authority();
    let head = head_of(r, &authority);
    let now = SIGNED_NOW * 1_000_000_000;
    let mut ev = doc.evaluate_head(&head, now, store);
    if ev.needs_body.is_some() {
        ev.evaluate_body(doc, &head, &r.body, store);
    }
    ev
}

fn has_header(ev: &Evaluation, name: &str) -> bool {
    ev.reply
        .as_ref()
        .is_some_and(|r| r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)))
}

#[test]
fn an_empty_bucket_is_answered_on_the_head() {
    let d = signed_doc(r#"{ "name": "c", "key": "client_ip", "limit": 2, "window_s": 3600 }"#);
    let mut store = MemoryStore::new();
    let (good, bad) = (signed_post(false), signed_post(true));
    // Under the limit: a bad signature is a 401 and takes no token; good ones pass (2 tokens).
    assert_eq!(run_signed(&d, &bad, &mut store).status(), 401);
    for _ in 0..2 {
        let ev = run_signed(&d, &good, &mut store);
        assert_eq!((ev.status(), ev.key_id.as_deref()), (200, Some("k1")));
    }
    // Over: answered on the head, before the signature (a bad one is a 429 too) and the body.
    for r in [&good, &bad] {
        let authority = r.authority();
        let head = head_of(r, &authority);
        let ev = d.evaluate_head(&head, SIGNED_NOW * 1_000_000_000, &mut store);
        assert_eq!((ev.status(), ev.reason()), (429, Some(Reason::RateLimited)));
        assert_eq!(
            ev.needs_body, None,
            "no body is held for a request already denied"
        );
        assert_eq!(ev.key_id, None);
        assert_eq!(ev.upstream.key_id, None);
        assert!(
            has_header(&ev, "retry-after") && has_header(&ev, "ratelimit"),
            "{:?}",
            ev.reply
        );
    }
}

/// Every local limit, `key_id` ones included, is taken on the head right after the signature verified
/// (held bodies count against the limits); a bad signature is still a 401, never a 429.
#[test]
fn key_id_limits_are_taken_on_the_head_after_the_signature() {
    let d = signed_doc(
        r#"{ "name": "c", "key": "client_ip", "limit": 3, "window_s": 3600 },
           { "name": "k", "key": "key_id", "limit": 1, "window_s": 3600 }"#,
    );
    let mut store = MemoryStore::new();
    let (good, bad) = (signed_post(false), signed_post(true));
    assert_eq!(run_signed(&d, &good, &mut store).status(), 200);
    assert_eq!(run_signed(&d, &bad, &mut store).status(), 401);
    let authority = good.authority();
    let head = head_of(&good, &authority);
    let ev = d.evaluate_head(&head, SIGNED_NOW * 1_000_000_000, &mut store);
    assert_eq!((ev.status(), ev.reason()), (429, Some(Reason::RateLimited)));
    assert!(ev.needs_body.is_none(), "no body is held for a limited key");
    assert!(ev
        .reply
        .unwrap()
        .headers
        .iter()
        .any(|(k, v)| k == "RateLimit-Policy" && v.starts_with("\"k\"")));
}

#[test]
fn an_unproven_client_learns_nothing_about_other_buckets() {
    // A header-keyed bucket (someone's user id) is empty: a request with that header and a bad
    // signature still gets the 401 (a 429 would say the bucket is in use), a good one the 429.
    let d = signed_doc(r#"{ "name": "u", "key": "header:x-user", "limit": 1, "window_s": 3600 }"#);
    let mut store = MemoryStore::new();
    let with_user = |tamper: bool| {
        let mut r = signed_post(tamper);
        r.headers.push(("x-user".to_string(), "alice".to_string()));
        r
    };
    assert_eq!(run_signed(&d, &with_user(false), &mut store).status(), 200);
    let ev = run_signed(&d, &with_user(true), &mut store);
    assert_eq!(
        (ev.status(), ev.reason()),
        (401, Some(Reason::SignatureInvalid))
    );
    assert!(!has_header(&ev, "ratelimit"));
    assert_eq!(run_signed(&d, &with_user(false), &mut store).status(), 429);
}

#[test]
fn the_step_reuses_the_head_reads() {
    let d = signed_doc(
        r#"{ "name": "c", "key": "client_ip", "limit": 4, "window_s": 3600 },
           { "name": "k", "key": "key_id", "limit": 100, "window_s": 1 }"#,
    );
    let mut store = MemoryStore::new();
    d.prepare(&mut store).unwrap();
    let good = signed_post(false);
    let authority = good.authority();
    let head = head_of(&good, &authority);
    let now = SIGNED_NOW * 1_000_000_000;
    for _ in 0..4 {
        store.reads.set(0);
        let mut ev = d.evaluate_head(&head, now, &mut store);
        assert!(ev.needs_body.is_some());
        // The early check reads the client_ip bucket; taking the tokens reuses that read and reads
        // only the key_id bucket.
        assert_eq!(store.reads.get(), 2, "one read per bucket");
        store.reads.set(0);
        ev.evaluate_body(&d, &head, &good.body, &mut store);
        assert_eq!(ev.status(), 200);
        assert_eq!(store.reads.get(), 0, "the body step reads no bucket");
    }
    // Four tokens taken, no more, no fewer.
    let ev = d.evaluate_head(&head, now, &mut store);
    assert_eq!(ev.status(), 429);
}

// --- The head check: shadow mode, absent buckets, refunds, no body, no address. ---

fn head_of<'a>(r: &'a crate::http1::ParsedRequest, authority: &'a str) -> RequestHead<'a> {
    r.head(
        authority,
        Some(TlsVersion::V1_3),
        Peer::Ip([192, 0, 2, 7].into()),
    )
}

#[test]
fn shadow_mode_does_not_answer_on_the_head_and_still_sends_the_verified_key_id() {
    let d = Document::from_json(
        &SIGNED_DOC
            .replace("\"signature\"", "\"mode\": \"shadow\", \"signature\"")
            .replace(
                "LIMITS",
                r#"{ "name": "c", "key": "client_ip", "limit": 1, "window_s": 3600 }"#,
            ),
        &NoEnv,
    )
    .unwrap();
    let mut store = MemoryStore::new();
    let good = signed_post(false);
    let ev = run_signed(&d, &good, &mut store);
    assert_eq!((ev.status(), ev.key_id.as_deref()), (200, Some("k1")));
    // Over the limit, shadow mode: forwarded anyway; README: "What is not a denial still happens in
    // shadow mode: ... x-edgeward-key-id for a verified signature".
    let ev = run_signed(&d, &good, &mut store);
    assert_eq!(ev.status(), 200);
    assert_eq!(ev.shadow.as_ref().map(|r| r.status), Some(429));
    assert_eq!(
        ev.upstream.key_id.as_deref(),
        Some("k1"),
        "valid signature forwarded upstream without x-edgeward-key-id"
    );
}

/// `upstream_key_id: false`: a verified request is forwarded without the key id published for the
/// upstream (one host call fewer), and the record still names the key; the default publishes it.
#[test]
fn upstream_key_id_false_publishes_no_key_id_and_the_record_keeps_it() {
    let limits = r#"{ "name": "c", "key": "client_ip", "limit": 9, "window_s": 3600 }"#;
    for (option, published) in [
        ("", true),
        (r#""upstream_key_id": true, "#, true),
        (r#""upstream_key_id": false, "#, false),
    ] {
        let doc = Document::from_json(
            &SIGNED_DOC
                .replace("\"signature\": {", &format!("\"signature\": {{ {option}"))
                .replace("LIMITS", limits),
            &NoEnv,
        )
        .unwrap();
        let ev = run_signed(&doc, &signed_post(false), &mut MemoryStore::new());
        assert_eq!(
            (ev.status(), ev.key_id.as_deref()),
            (200, Some("k1")),
            "{option}"
        );
        let property = ev
            .upstream
            .properties()
            .into_iter()
            .any(|(name, value)| name == "edgeward.upstream.key_id" && value == "k1");
        assert_eq!(property, published, "{option}");
        assert_eq!(ev.upstream.key_id.is_some(), published, "{option}");
    }
}

#[test]
fn a_read_of_an_absent_bucket_is_not_replayed() {
    // Without doc.prepare (e.g. a MemoryStore host), the head reads an absent key: (None, None).
    let d = signed_doc(r#"{ "name": "c", "key": "client_ip", "limit": 2, "window_s": 3600 }"#);
    let mut store = MemoryStore::new();
    let good = signed_post(false);
    let authority = good.authority();
    let head = head_of(&good, &authority);
    let now = SIGNED_NOW * 1_000_000_000;
    let mut a = d.evaluate_head(&head, now, &mut store);
    assert!(a.needs_body.is_some());
    // B completes meanwhile (one token).
    assert_eq!(run_signed(&d, &good, &mut store).status(), 200);
    // A's body: replays (None, None) and writes with cas None.
    a.evaluate_body(&d, &head, &good.body, &mut store);
    assert_eq!(a.status(), 200);
    // Two tokens taken of 2: C must be limited.
    assert_eq!(
        run_signed(&d, &good, &mut store).status(),
        429,
        "B's token was overwritten"
    );
}

#[test]
fn a_stale_kept_read_of_a_prepared_bucket_counts_exactly() {
    let d = signed_doc(r#"{ "name": "c", "key": "client_ip", "limit": 2, "window_s": 3600 }"#);
    let mut store = MemoryStore::new();
    d.prepare(&mut store).unwrap();
    let good = signed_post(false);
    let authority = good.authority();
    let head = head_of(&good, &authority);
    let now = SIGNED_NOW * 1_000_000_000;
    let mut a = d.evaluate_head(&head, now, &mut store);
    assert_eq!(run_signed(&d, &good, &mut store).status(), 200);
    a.evaluate_body(&d, &head, &good.body, &mut store);
    assert_eq!(a.status(), 200);
    assert_eq!(run_signed(&d, &good, &mut store).status(), 429);
}

#[test]
fn the_remote_refund_after_a_replayed_read_gives_the_token_back() {
    let json = SIGNED_DOC
        .replace(
            "\"policies\"",
            r#""rls": { "cluster": "ratelimit", "domain": "edgeward", "failure_mode": "deny" }, "policies""#,
        )
        .replace(
            "LIMITS",
            r#"{ "name": "c", "key": "client_ip", "limit": 1, "window_s": 3600 },
               { "name": "r", "key": "client_ip", "limit": 100, "window_s": 60, "backend": "rls" }"#,
        );
    let d = Document::from_json(&json, &NoEnv).unwrap();
    let mut store = MemoryStore::new();
    d.prepare(&mut store).unwrap();
    let good = signed_post(false);
    for _ in 0..3 {
        let mut ev = run_signed(&d, &good, &mut store);
        assert_eq!(ev.status(), 200);
        assert!(ev.remote.is_some());
        ev.apply_remote(&d, Some(&response(2, &[])), &mut store);
        assert_eq!(ev.status(), 429);
    }
    let mut ev = run_signed(&d, &good, &mut store);
    ev.apply_remote(&d, Some(&response(1, &[])), &mut store);
    assert_eq!(ev.status(), 200);
    let ev = run_signed(&d, &good, &mut store);
    assert_eq!((ev.status(), ev.needs_body), (429, None));
}

#[test]
fn a_signature_without_a_body_reads_each_bucket_once() {
    let json = SIGNED_DOC
        .replace(r#"["@method", "@authority", "@path", "@query", "content-digest"]"#, r#"["@method", "@path"]"#)
        .replace("LIMITS", r#"{ "name": "c", "key": "client_ip", "limit": 2, "window_s": 3600, "ipv6_prefix": 48 }"#);
    let d = Document::from_json(&json, &NoEnv).unwrap();
    let r = sign_with(
        "GET /orders HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        &["@method", "@path"],
        None,
    );
    let mut store = MemoryStore::new();
    d.prepare(&mut store).unwrap();
    let authority = r.authority();
    let now = SIGNED_NOW * 1_000_000_000;
    for (i, peer) in ["2001:db8:1::1", "2001:db8:1:2::9", "2001:db8:1:3::1"]
        .iter()
        .enumerate()
    {
        let head = r.head(
            &authority,
            Some(TlsVersion::V1_3),
            Peer::Ip(peer.parse().unwrap()),
        );
        store.reads.set(0);
        let ev = d.evaluate_head(&head, now, &mut store);
        assert_eq!(ev.needs_body, None);
        assert_eq!(store.reads.get(), 1, "{i}");
        let want = if i < 2 { 200 } else { 429 };
        assert_eq!(ev.status(), want, "{i} {:?}", ev.reply);
    }
}

#[test]
fn the_shared_no_address_bucket_is_not_checked_on_the_head() {
    let json = SIGNED_DOC
        .replace(
            "\"policies\"",
            r#""client_ip": { "xff_trusted_hops": 1 }, "policies""#,
        )
        .replace(
            "LIMITS",
            r#"{ "name": "c", "key": "client_ip", "limit": 1, "window_s": 3600 }"#,
        );
    let d = Document::from_json(&json, &NoEnv).unwrap();
    let mut store = MemoryStore::new();
    d.prepare(&mut store).unwrap();
    let with_xff = |tamper: bool, xff: &str| {
        let mut r = signed_post(tamper);
        r.headers
            .push(("x-forwarded-for".to_string(), xff.to_string()));
        r
    };
    // Some signed client whose client entry does not parse drains the shared "no address" bucket.
    assert_eq!(
        run_signed(&d, &with_xff(false, "garbage, 198.51.100.1"), &mut store).status(),
        200
    );
    // An unrelated, unauthenticated client chooses that bucket by sending a garbage entry itself.
    let ev = run_signed(&d, &with_xff(true, "junk, 203.0.113.9"), &mut store);
    assert_eq!(
        ev.status(),
        401,
        "429 tells an unproven client about others' traffic: {:?}",
        ev.reply
    );
}

#[test]
fn debug_output_holds_no_client_address_or_header_value() {
    let d = signed_doc(r#"{ "name": "c", "key": "client_ip", "limit": 5, "window_s": 60 }"#);
    let mut r = signed_post(false);
    r.headers.push((
        "authorization".to_string(),
        "Bearer s3cr3t-token".to_string(),
    ));
    let authority = r.authority();
    let head = head_of(&r, &authority);
    let ev = d.evaluate_head(&head, SIGNED_NOW * 1_000_000_000, &mut MemoryStore::new());
    let printed = format!("{ev:?} {head:?}");
    for secret in ["192.0.2.7", "s3cr3t-token", "sig1=:"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(printed.contains("authorization: <19 bytes>"), "{printed}");
    // Nor the document's hash keys.
    let shown = format!("{d:?}");
    for key in [d.hash_key, d.nonce_key] {
        let bytes = format!("{key:?}");
        assert!(
            !shown.contains(&bytes),
            "{bytes} in the document's Debug output"
        );
    }
    assert!(shown.contains("hash_key: \"<redacted>\""));
}

#[test]
fn a_nonce_recorded_before_a_reload_is_found_after_it() {
    let limits = r#"{ "name": "c", "key": "client_ip", "limit": 100, "window_s": 60 }"#;
    let a = signed_doc(limits);
    // The reloaded document differs (another limit): its hash key, and so its bucket tables,
    // differ; the nonce table must not.
    let b = signed_doc(&format!(
        r#"{limits}, {{ "name": "h", "key": "header:x-user", "limit": 100, "window_s": 60 }}"#
    ));
    assert_ne!(a.hash_key, b.hash_key);
    assert_eq!(a.nonce_key, b.nonce_key);
    let r = sign_with(SIGNED_POST, &SIGNED_COMPONENTS, Some("n-1"));
    let mut store = MemoryStore::new();
    a.prepare(&mut store).unwrap();
    b.prepare(&mut store).unwrap();
    assert_eq!(run_signed(&a, &r, &mut store).status(), 200);
    let replay = run_signed(&b, &r, &mut store);
    assert_eq!(
        (replay.status(), replay.reason()),
        (401, Some(Reason::SignatureReplayed))
    );
}

#[test]
fn a_request_that_ends_before_the_decision_is_recorded_incomplete_not_allowed() {
    let d = signed_doc(r#"{ "name": "c", "key": "client_ip", "limit": 5, "window_s": 3600 }"#);
    let good = signed_post(false);
    let authority = good.authority();
    let head = head_of(&good, &authority);
    let now = SIGNED_NOW * 1_000_000_000;
    let mut store = MemoryStore::new();
    // Waiting for the body when the stream ends (Envoy's 413, say).
    let mut ev = d.evaluate_head(&head, now, &mut store);
    assert!(ev.needs_body.is_some());
    ev.abandon(&d, &mut store);
    assert_eq!(ev.decision(), Decision::Deny);
    assert_eq!(ev.reason(), Some(Reason::Incomplete));
    assert_eq!(ev.needs_body, None);
    let record = ev.record(&d, &head, 413, now);
    assert!(
        record.contains(r#""decision":"deny","reason":"incomplete","status":413"#),
        "{record}"
    );
    let names = crate::metrics::names(&d);
    let counted: Vec<&str> = crate::metrics::counters(&d, &ev)
        .into_iter()
        .flatten()
        .filter_map(|i| names.get(i).map(String::as_str))
        .collect();
    assert!(
        counted.contains(&"edgeward.p.denied.incomplete"),
        "{counted:?}"
    );
    assert!(
        !counted.iter().any(|n| n.ends_with(".allowed")),
        "{counted:?}"
    );
    // Decided requests (allowed or denied) are left as they are.
    let mut done = run_signed(&d, &good, &mut store);
    assert_eq!(done.status(), 200);
    done.abandon(&d, &mut store);
    assert_eq!((done.decision(), done.reason()), (Decision::Allow, None));
    let mut denied = run_signed(&d, &signed_post(true), &mut store);
    denied.abandon(&d, &mut store);
    assert_eq!(denied.reason(), Some(Reason::SignatureInvalid));
    // Waiting for the rate limit service when the stream ends.
    let r = rls_doc("deny");
    let mut rstore = MemoryStore::new();
    let mut ev = eval_with(&r, "api.test", &mut rstore);
    assert!(ev.remote.is_some());
    ev.abandon(&r, &mut rstore);
    assert_eq!(
        (ev.reason(), ev.remote.is_none()),
        (Some(Reason::Incomplete), true)
    );
}

/// A dot segment with parameters is a traversal for backends that drop `;` parameters (Tomcat, Jetty):
/// refused before routing, whatever the route.
#[test]
fn dot_segments_with_parameters_are_refused() {
    let d = doc();
    for path in [
        "/public/..;/admin/",
        "/a/..;x/b",
        "/a/.;/b",
        "/..;",
        "/a/.;x",
    ] {
        let ev = req("open.example.com", path).eval(&d);
        assert_eq!(
            (ev.status(), ev.reason()),
            (400, Some(Reason::BadPath)),
            "{path}"
        );
    }
    for path in [
        "/a;x/b",
        "/a/..x/b",
        "/a/x..;/b",
        "/a/b?q=/..;/",
        "/a/...;/b",
    ] {
        let ev = req("open.example.com", path).eval(&d);
        assert_ne!(ev.reason(), Some(Reason::BadPath), "{path}");
    }
}

// --- Replay protection across Envoys: the nonce through the rate limit service ---

const CLUSTER_NONCE_DOC: &str = r#"{
  "rate_limit_slots": 64,
  "rls": { "cluster": "ratelimit", "domain": "d" },
  "policies": { "p": {
    "signature": {
      "keys": [{ "id": "k1", "alg": "hmac-sha256",
                 "secret": { "base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" } }],
      "components": ["@method", "@authority", "@path", "@query"],
      "nonce": "required",
      "nonce_scope": "cluster"
    },
    "rate_limits": [
      { "name": "local", "key": "key_id", "limit": 2, "window_s": 3600 }
      REMOTE
    ]
  } },
  "routes": [{ "policy": "p" }]
}"#;

fn cluster_doc(remote: bool) -> Document {
    let remote = if remote {
        r#", { "name": "per-key", "key": "key_id", "limit": 100, "window_s": 60, "backend": "rls" }"#
    } else {
        ""
    };
    let mut d = Document::from_json(&CLUSTER_NONCE_DOC.replace("REMOTE", remote), &NoEnv).unwrap();
    d.nonce_table.buckets = 4;
    d
}

fn with_statuses(code: i32, statuses: &[i32]) -> Vec<u8> {
    use prost::Message;
    remote::RateLimitResponse {
        overall_code: code,
        statuses: statuses
            .iter()
            .map(|c| remote::DescriptorStatus {
                code: *c,
                ..Default::default()
            })
            .collect(),
        response_headers_to_add: vec![remote::HeaderValue {
            key: "x-ratelimit-remaining".into(),
            value: "0".into(),
            raw_value: Vec::new(),
        }],
    }
    .encode_to_vec()
}

fn nonce_head(nonce: &str) -> TestRequest {
    TestRequest::get("api.example.com", "/x").signed_hmac(
        "k1",
        b"0123456789abcdef0123456789abcdef",
        SIGNED_NOW,
        &["@method", "@authority", "@path", "@query"],
        Some(nonce),
    )
}

#[test]
fn a_cluster_nonce_goes_first_in_the_one_call() {
    let d = cluster_doc(true);
    let mut store = MemoryStore::new();
    d.prepare(&mut store).unwrap();
    let r = nonce_head("n-1");
    let ev = d.evaluate_head(&r.head(), SIGNED_NOW * 1_000_000_000, &mut store);
    let call = ev.remote.as_ref().expect("one call");
    assert!(call.nonce);
    let (domain, descriptors) = call.describe().unwrap();
    assert_eq!(domain, "d");
    assert_eq!(
        descriptors,
        vec![
            vec![
                ("limit".to_string(), "edgeward.nonce".to_string()),
                ("key".to_string(), "k1".to_string()),
                ("nonce".to_string(), "n-1".to_string()),
            ],
            vec![
                ("limit".to_string(), "per-key".to_string()),
                ("key".to_string(), "k1".to_string()),
            ],
        ]
    );
    // A replay to the same Envoy is caught by the local table: no call at all.
    let again = d.evaluate_head(&r.head(), SIGNED_NOW * 1_000_000_000, &mut store);
    assert_eq!(again.reason(), Some(Reason::SignatureReplayed));
    assert!(again.remote.is_none());
    // A policy without remote limits calls for the nonce alone.
    let d = cluster_doc(false);
    let mut store = MemoryStore::new();
    d.prepare(&mut store).unwrap();
    let ev = d.evaluate_head(
        &nonce_head("n-2").head(),
        SIGNED_NOW * 1_000_000_000,
        &mut store,
    );
    assert_eq!(ev.remote.as_ref().unwrap().describe().unwrap().1.len(), 1);
}

/// The service's answer: the nonce's descriptor over its limit is a replay (401, tokens back), another
/// descriptor a rate limit (429); without per-descriptor statuses a nonce-only call is a replay and a
/// mixed one a rate limit. The engine's headers never reach the client when the call checked a nonce.
#[test]
fn the_service_tells_a_replay_from_a_rate_limit() {
    const OK: i32 = remote::CODE_OK;
    const OVER: i32 = remote::CODE_OVER_LIMIT;
    let cases: &[(bool, Vec<u8>, Option<(u16, Reason)>)] = &[
        (true, with_statuses(OK, &[OK, OK]), None),
        (
            true,
            with_statuses(OVER, &[OVER, OK]),
            Some((401, Reason::SignatureReplayed)),
        ),
        (
            true,
            with_statuses(OVER, &[OK, OVER]),
            Some((429, Reason::RateLimited)),
        ),
        (
            true,
            with_statuses(OVER, &[OVER, OVER]),
            Some((401, Reason::SignatureReplayed)),
        ),
        (
            true,
            with_statuses(OVER, &[]),
            Some((429, Reason::RateLimited)),
        ),
        (
            false,
            with_statuses(OVER, &[]),
            Some((401, Reason::SignatureReplayed)),
        ),
        (
            false,
            with_statuses(OVER, &[OVER]),
            Some((401, Reason::SignatureReplayed)),
        ),
    ];
    for (i, (remote_limits, answer, want)) in cases.iter().enumerate() {
        let d = cluster_doc(*remote_limits);
        let mut store = MemoryStore::new();
        d.prepare(&mut store).unwrap();
        let r = nonce_head(&format!("case-{i}"));
        let mut ev = d.evaluate_head(&r.head(), SIGNED_NOW * 1_000_000_000, &mut store);
        ev.apply_remote(&d, Some(answer), &mut store);
        assert_eq!(
            ev.reply.as_ref().map(|r| (r.status, r.reason)),
            *want,
            "case {i}"
        );
        assert!(
            !ev.response_headers
                .iter()
                .chain(ev.reply.iter().flat_map(|r| r.headers.iter()))
                .any(|(k, _)| k.eq_ignore_ascii_case("x-ratelimit-remaining")),
            "case {i}: the engine's headers reached the client"
        );
        // A denied request gave its local token back: two more requests fit the local limit of 2.
        if want.is_some() {
            for n in ["again-a", "again-b"] {
                let other = nonce_head(&format!("{n}-{i}"));
                let ev = d.evaluate_head(&other.head(), SIGNED_NOW * 1_000_000_000, &mut store);
                assert_eq!(ev.reply, None, "case {i}: {n}");
            }
        }
    }
}

#[test]
fn nonce_scope_cluster_needs_the_rls_section() {
    let json = CLUSTER_NONCE_DOC
        .replace(r#""rls": { "cluster": "ratelimit", "domain": "d" },"#, "")
        .replace("REMOTE", "");
    let errs = Document::from_json(&json, &NoEnv).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.path == "policies.p.signature.nonce_scope"),
        "{errs:?}"
    );
    let named = CLUSTER_NONCE_DOC.replace(
        "REMOTE",
        r#", { "name": "edgeward.nonce", "key": "route", "limit": 1, "window_s": 1, "backend": "rls" }"#,
    );
    let errs = Document::from_json(&named, &NoEnv).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.path == "policies.p.rate_limits[1].name"),
        "{errs:?}"
    );
}

const NOW_NS: u64 = 1_700_000_000_000_000_000;

/// A document with a Web Bot Auth policy (agent header `x-bot-agent`) and a JWKS policy.
fn key_source_doc() -> Document {
    Document::from_json(
        &serde_json::json!({
            "key_sources": {
                "agent_dir": {"type": "jwks", "cluster": "agent", "url": "https://agent.example/.well-known/http-message-signatures-directory"},
                "partners": {"type": "jwks", "cluster": "keys", "url": "https://keys.example/jwks.json"}
            },
            "policies": {
                "bots": {"signature": {"web_bot_auth": {"directories": {"https://agent.example": "agent_dir"}, "agent_header": "x-bot-agent"}}},
                "partners": {"signature": {"key_sources": ["partners"]}}
            },
            "routes": [
                {"host": "bots.example.com", "policy": "bots"},
                {"host": "partners.example.com", "policy": "partners"}
            ]
        })
        .to_string(),
        &NoEnv,
    )
    .unwrap()
}

fn agent_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[11; 32])
}

/// This worker's copy of the agent's directory (source 0, the sources sorted by name).
/// The head evaluated with a worker's key source sets (no leases, a fresh store).
fn with_keys(d: &Document, head: &RequestHead, keys: &crate::keys::KeyCache) -> Evaluation {
    d.evaluate_head_with(
        head,
        NOW_NS,
        keys,
        &std::rc::Rc::new(crate::rate_limit::Leases::disabled()),
        &mut MemoryStore::new(),
    )
}

fn agent_cache() -> crate::keys::KeyCache {
    let key = agent_key().verifying_key();
    let mut cache = crate::keys::KeyCache::new(2);
    cache.install(
        0,
        1,
        crate::keys::KeySet {
            keys: vec![crate::keys::SourceKey {
                kid: None,
                thumbprint: crate::keys::thumbprint(&key),
                key,
                not_before: None,
                not_after: None,
            }],
        },
    );
    cache
}

fn bot_request() -> TestRequest {
    use crate::signature::{SignParams, SigningKey};
    let key = agent_key();
    let mut p = SignParams::new(
        crate::keys::thumbprint(&key.verifying_key()),
        SigningKey::Ed25519(Box::new(key)),
        1_700_000_000,
    );
    p.expires = Some(1_700_000_060);
    p.tag = Some("web-bot-auth".into());
    p.components = vec![
        "@authority".into(),
        "\"signature-agent\";key=\"sig1\"".into(),
    ];
    TestRequest::get("bots.example.com", "/page")
        .header("signature-agent", r#"sig1="https://agent.example""#)
        .signed(&p)
}

/// The verified agent reaches the upstream (through filter state, in the header the document named)
/// and the log record; its thumbprint is the key id.
#[test]
fn a_verified_agent_is_passed_upstream_and_logged() {
    let d = key_source_doc();
    let r = bot_request();
    let ev = with_keys(&d, &r.head(), &agent_cache());
    assert_eq!(ev.reply, None, "{ev:?}");
    assert_eq!(ev.agent.as_deref(), Some("https://agent.example"));
    assert_eq!(
        ev.upstream.agent,
        Some((
            "x-bot-agent".to_string(),
            "https://agent.example".to_string()
        ))
    );
    assert!(ev.upstream.properties().contains(&(
        "edgeward.upstream.agent",
        "https://agent.example".to_string()
    )));
    assert!(ev
        .upstream
        .headers()
        .contains(&("x-bot-agent", Some("https://agent.example"))));
    let record: serde_json::Value =
        serde_json::from_str(&ev.record(&d, &r.head(), 200, NOW_NS)).unwrap();
    assert_eq!(record["agent"], "https://agent.example");
    assert_eq!(
        record["key_id"],
        crate::keys::thumbprint(&agent_key().verifying_key())
    );
    // Without this worker's copy of the directory: 503 keys_unavailable, Retry-After.
    let ev = r.eval(&d);
    assert_eq!(
        (ev.status(), ev.reason()),
        (503, Some(Reason::KeysUnavailable))
    );
    let reply = ev.reply.unwrap();
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
    // A request that is not from an allowed agent gets no agent upstream.
    let other = bot_request().header("x-unrelated", "1");
    let mut other = other;
    for (k, v) in other.headers.iter_mut() {
        if k == "signature-agent" {
            *v = r#"sig1="https://evil.example""#.into();
        }
    }
    let ev = with_keys(&d, &other.head(), &agent_cache());
    assert_eq!(
        (ev.status(), ev.reason()),
        (401, Some(Reason::SignatureAgentUnknown))
    );
    assert_eq!(ev.upstream.agent, None);
}

/// The agent header the document chose cannot come from the client, on any route (like `x-edgeward-*`).
#[test]
fn the_chosen_agent_header_is_reserved() {
    let d = key_source_doc();
    assert_eq!(d.reserved_headers, ["x-bot-agent"]);
    for host in ["bots.example.com", "partners.example.com"] {
        let r = TestRequest::get(host, "/").header("X-Bot-Agent", "https://agent.example");
        assert_eq!(
            (r.eval(&d).status(), r.eval(&d).reason()),
            (400, Some(Reason::ReservedHeader)),
            "{host}"
        );
    }
    let r = bot_request().header("x-edgeward-agent", "https://agent.example");
    assert_eq!(r.eval(&d).reason(), Some(Reason::ReservedHeader));
}

/// A JWKS policy whose source never loaded answers 503 to every signed request it cannot check.
#[test]
fn an_unloaded_key_source_is_503_not_401() {
    let d = key_source_doc();
    let r = TestRequest::get("partners.example.com", "/").signed_hmac(
        "partner-1",
        &[1; 32],
        1_700_000_000,
        &["@method", "@authority", "@path", "@query"],
        None,
    );
    let ev = r.eval(&d);
    assert_eq!(
        (ev.status(), ev.reason()),
        (503, Some(Reason::KeysUnavailable))
    );
    // Loaded, and the key is not there: the usual 401.
    let mut cache = crate::keys::KeyCache::new(2);
    cache.install(1, 1, crate::keys::KeySet::default());
    let ev = with_keys(&d, &r.head(), &cache);
    assert_eq!(
        (ev.status(), ev.reason()),
        (401, Some(Reason::SignatureInvalid))
    );
}
