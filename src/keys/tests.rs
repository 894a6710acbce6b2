use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

fn compile_json(v: serde_json::Value) -> Result<Vec<KeySource>, Vec<String>> {
    let inputs: BTreeMap<String, KeySourceInput> =
        crate::json::from_value(v).map_err(|e| vec![e.to_string()])?;
    let mut errs = Errors::default();
    let out = compile_sources(&inputs, "key_sources", &mut errs);
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs.into_vec().iter().map(|e| e.to_string()).collect())
    }
}

#[test]
fn defaults_and_url_parts() {
    let s = compile_json(json!({
        "partners": {"type": "jwks", "cluster": "keys", "url": "https://Keys.Example.com:8443/jwks.json?v=1"}
    }))
    .unwrap();
    let [s] = s.as_slice() else { panic!() };
    assert_eq!(s.name, "partners");
    assert_eq!(s.cluster, "keys");
    assert_eq!(s.scheme, "https");
    assert_eq!(s.authority, "keys.example.com:8443");
    assert_eq!(s.path, "/jwks.json?v=1");
    assert_eq!(s.refresh_ns, 300_000_000_000);
    assert_eq!(s.jitter_ns, 30_000_000_000);
    assert_eq!(s.timeout_ms, 5000);
    assert_eq!((s.max_bytes, s.max_keys), (65536, 64));
    assert_eq!(s.key_id, KeyIdMode::Kid);
    assert!(s.store_key.starts_with("edgeward.keys.v1."));

    let bare = compile_json(json!({
        "b": {"type": "jwks", "cluster": "c", "url": "http://h", "refresh_s": 1, "jitter_s": 0,
              "timeout_ms": 100, "max_bytes": 64, "max_keys": 1, "key_id": "thumbprint"}
    }))
    .unwrap();
    assert_eq!(bare[0].path, "/");
    assert_eq!(bare[0].scheme, "http");
    assert_eq!(bare[0].jitter_ns, 0);
    assert_eq!(bare[0].key_id, KeyIdMode::Thumbprint);
    let query_only =
        compile_json(json!({"q": {"type": "jwks", "cluster": "c", "url": "https://h?x=1"}}))
            .unwrap();
    assert_eq!(query_only[0].path, "/?x=1");
}

/// Every refusal names its path (parse errors relative to the map read here; the document reader adds
/// `key_sources.`).
#[test]
fn errors_name_the_path() {
    let base = json!({"type": "jwks", "cluster": "c", "url": "https://h/k"});
    let with = |field: &str, value: serde_json::Value| {
        let mut s = base.clone();
        s[field] = value;
        json!({ "s": s })
    };
    let cases = [
        (
            json!({"bad name": base.clone()}),
            "key_sources.bad name: key source name",
        ),
        (
            with("cluster", json!("")),
            "key_sources.s.cluster: must name",
        ),
        (
            with("cluster", json!("a b")),
            "key_sources.s.cluster: must name",
        ),
        (
            with("url", json!("ftp://h/k")),
            "key_sources.s.url: is not an http",
        ),
        (with("url", json!("h/k")), "key_sources.s.url:"),
        (with("url", json!("https:///k")), "needs a host"),
        (
            with("url", json!("https://u:p@h/k")),
            "without user information",
        ),
        (
            with("url", json!("https://h/k#f")),
            "has a fragment, which is never sent",
        ),
        (with("url", json!("https://h/a b")), "spaces"),
        (
            with("refresh_s", json!(0)),
            "key_sources.s.refresh_s: 0 is out of range",
        ),
        (
            with("refresh_s", json!(86401)),
            "key_sources.s.refresh_s: 86401 is out of range",
        ),
        (
            with("timeout_ms", json!(99)),
            "key_sources.s.timeout_ms: 99 is out of range",
        ),
        (
            with("max_bytes", json!(2_000_000)),
            "key_sources.s.max_bytes:",
        ),
        (
            with("max_keys", json!(0)),
            "key_sources.s.max_keys: 0 is out of range",
        ),
        (
            with("jitter_s", json!(200)),
            "key_sources.s.jitter_s: 200 is more than half",
        ),
        (
            json!({"s": {"type": "jwks", "cluster": "c", "url": "https://h", "refresh_s": 2, "timeout_ms": 2000}}),
            "key_sources.s.timeout_ms: must be shorter than refresh_s",
        ),
        (
            with("type", json!("x509")),
            "s.type: unknown value, expected `jwks`",
        ),
        (with("key_id", json!("x5t")), "s.key_id: unknown value"),
        (
            json!({"s": {"type": "jwks", "cluster": "c"}}),
            "s: missing field `url`",
        ),
        (with("extra", json!(1)), "s.extra: unknown field"),
    ];
    for (doc, want) in cases {
        let errs = compile_json(doc.clone()).unwrap_err();
        assert!(errs.iter().any(|e| e.contains(want)), "{doc}: {errs:?}");
    }
}

/// Two configurations fetching the same set the same way share one entry (one fetch); any difference
/// in where or how makes another.
#[test]
fn store_keys_follow_what_is_fetched() {
    let key_of = |v: serde_json::Value| {
        compile_json(json!({ "s": v })).unwrap()[0]
            .store_key
            .clone()
    };
    let a = key_of(json!({"type": "jwks", "cluster": "c", "url": "https://h/k"}));
    assert_eq!(
        a,
        key_of(json!({"type": "jwks", "cluster": "c", "url": "https://H/k", "refresh_s": 60}))
    );
    for other in [
        json!({"type": "jwks", "cluster": "d", "url": "https://h/k"}),
        json!({"type": "jwks", "cluster": "c", "url": "https://h/k2"}),
        json!({"type": "jwks", "cluster": "c", "url": "https://h2/k"}),
        json!({"type": "jwks", "cluster": "c", "url": "https://h/k", "max_keys": 3}),
    ] {
        assert_ne!(a, key_of(other.clone()), "{other}");
    }
}

#[test]
fn key_cache_slots() {
    let mut cache = KeyCache::new(2);
    assert!(cache.get(0).is_none() && cache.get(5).is_none());
    assert_eq!(cache.version(1), 0);
    cache.install(1, 3, KeySet::default());
    assert!(cache.get(1).is_some());
    assert_eq!(cache.version(1), 3);
    cache.install(4, 1, KeySet::default());
    assert!(cache.get(4).is_some() && cache.get(3).is_none());
    assert!(KeyCache::EMPTY.get(0).is_none());
}

/// A refused URL is never quoted back: its query may hold a token.
#[test]
fn url_errors_do_not_echo_the_url() {
    for url in [
        "ftp://h/k?token=s3cr3t-t0ken",
        "https://h/k?token=s3cr3t-t0ken extra",
        "https://h/k?token=s3cr3t-t0ken#f",
        "https://user:s3cr3t-t0ken@h/k",
    ] {
        let errs =
            compile_json(json!({"s": {"type": "jwks", "cluster": "c", "url": url}})).unwrap_err();
        assert_eq!(errs.len(), 1, "{url}: {errs:?}");
        for e in &errs {
            assert!(e.starts_with("key_sources.s.url: "), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }
}
