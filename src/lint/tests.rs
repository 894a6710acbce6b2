use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::document::{parse, Document};
use serde_json::{json, Value};

/// 32 bytes of 0x4b, base64.
const KEY: &str = "S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=";

fn warnings(doc: Value) -> Vec<Warning> {
    let text = doc.to_string();
    let input = parse(&text).unwrap();
    // Every case is a valid document: a warning never stands in for an error.
    let env = |n: &str| (n == "K").then(|| KEY.to_string());
    if let Err(e) = Document::from_json(&text, &env) {
        panic!("{text}: {e:?}");
    }
    lint(&input)
}

fn paths(doc: Value) -> Vec<String> {
    warnings(doc).into_iter().map(|w| w.path).collect()
}

fn sig(extra: Value) -> Value {
    let mut s = json!({
        "keys": [{ "id": "a", "alg": "hmac-sha256", "secret": { "env": "K" } }],
        "components": ["@method", "@authority", "@path", "@query"],
        "nonce": "required"
    });
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

fn one_policy(policy: Value) -> Value {
    json!({ "policies": { "p": policy }, "routes": [{ "policy": "p" }] })
}

/// The documents a reviewer would flag, one per row: the document and the paths warned about.
#[test]
fn flagged_documents() {
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "catch-all before a specific route",
            json!({ "policies": { "p": {} }, "routes": [
                { "policy": "p" }, { "path_prefix": "/admin/", "policy": "p" } ] }),
            vec!["routes[1]"],
        ),
        (
            "duplicated route",
            json!({ "policies": { "p": {} }, "routes": [
                { "route": "r", "path_prefix": "/a/", "policy": "p" },
                { "route": "r", "path_prefix": "/a/", "policy": null } ] }),
            vec!["routes[1]"],
        ),
        (
            "wildcard host before a subdomain",
            json!({ "policies": { "p": {} }, "routes": [
                { "host": "*.example.com", "policy": "p" },
                { "host": "API.example.com.", "path": "/x", "policy": "p" } ] }),
            vec!["routes[1]"],
        ),
        (
            "shorter prefix before a longer one",
            json!({ "policies": { "p": {} }, "routes": [
                { "path_prefix": "/api/", "policy": "p" },
                { "path_prefix": "/api/v2/", "policy": "p" } ] }),
            vec!["routes[1]"],
        ),
        (
            "a prefix that also matches its siblings",
            json!({ "policies": { "p": {} }, "routes": [
                { "route": "public", "path_prefix": "/health", "policy": null },
                { "policy": "p" } ] }),
            vec!["routes[0].path_prefix"],
        ),
        (
            "trusting every IPv4 address",
            json!({ "client_ip": { "trusted_proxies": ["0.0.0.0/0"] },
                    "policies": { "p": {} }, "routes": [{ "policy": "p" }] }),
            vec!["client_ip.trusted_proxies[0]"],
        ),
        (
            "trusting every IPv6 address",
            json!({ "client_ip": { "trusted_proxies": ["10.0.0.0/8", "::/0"] },
                    "policies": { "p": {} }, "routes": [{ "policy": "p" }] }),
            vec!["client_ip.trusted_proxies[1]"],
        ),
        (
            "a signature over @method alone",
            one_policy(json!({ "signature": sig(json!({ "components": ["@method"] })) })),
            vec![
                "policies.p.signature.components",
                "policies.p.signature.components",
                "policies.p.signature.components",
            ],
        ),
        (
            "a year of max_age_s",
            one_policy(json!({ "signature": sig(json!({ "max_age_s": 31_536_000 })) })),
            vec!["policies.p.signature.max_age_s"],
        ),
        (
            "a year of clock_skew_s",
            one_policy(json!({ "signature": sig(json!({
                "max_age_s": 31_536_000, "clock_skew_s": 31_536_000 })) })),
            vec![
                "policies.p.signature.max_age_s",
                "policies.p.signature.clock_skew_s",
            ],
        ),
        (
            "log prefixes that keep whole addresses",
            one_policy(json!({ "log": { "ipv4_prefix": 32, "ipv6_prefix": 128 } })),
            vec!["policies.p.log.ipv4_prefix", "policies.p.log.ipv6_prefix"],
        ),
        (
            "the document's log section keeps whole addresses",
            json!({ "log": { "ipv4_prefix": 32 }, "policies": { "p": {} },
                    "routes": [{ "policy": "p" }] }),
            vec!["log.ipv4_prefix"],
        ),
        (
            "logged headers that carry credentials",
            one_policy(json!({ "log": { "headers": [
                "user-agent", "x-auth-token", "X-Session-Id", "x-csrf-token", "set-cookie" ] } })),
            vec![
                "policies.p.log.headers[1]",
                "policies.p.log.headers[2]",
                "policies.p.log.headers[3]",
                "policies.p.log.headers[4]",
            ],
        ),
        (
            "an empty allow list",
            one_policy(json!({ "ip": { "allow": [], "deny": ["192.0.2.1"] } })),
            vec!["policies.p.ip.allow"],
        ),
        (
            "allow and deny lists naming only empty lists",
            json!({ "ip_lists": { "none": [], "also_none": [] },
                    "policies": { "p": { "ip": { "allow": ["@none", "@also_none"], "deny": ["@none"] } } },
                    "routes": [{ "policy": "p" }] }),
            vec!["policies.p.ip.allow", "policies.p.ip.deny"],
        ),
        (
            "secrets written in the document",
            one_policy(json!({
                "signature": sig(json!({ "keys": [{ "id": "a", "alg": "hmac-sha256", "secret": { "base64": KEY } }] })),
                "log": { "pseudonym_key": { "base64": KEY }, "pseudonymize": ["client_ip"] } })),
            vec![
                "policies.p.signature.keys[0].secret",
                "policies.p.log.pseudonym_key",
            ],
        ),
    ];
    for (name, doc, want) in cases {
        let got = paths(doc);
        assert_eq!(got, want, "{name}");
    }
}

/// The same documents written as a reviewer would want them: no warning.
#[test]
fn clean_documents() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "specific routes before the catch-all, exact path",
            json!({ "policies": { "p": {} }, "routes": [
                { "route": "public", "path": "/health", "policy": null },
                { "host": "api.example.com", "path_prefix": "/admin/", "policy": "p" },
                { "host": "*.example.com", "policy": "p" },
                { "host": "example.com", "policy": "p" },
                { "policy": "p" } ] }),
        ),
        (
            "a route name does not shadow another route name",
            json!({ "policies": { "p": {} }, "routes": [
                { "route": "a", "policy": "p" }, { "route": "b", "policy": "p" },
                { "path_prefix": "/x/", "policy": "p" } ] }),
        ),
        (
            "proxies by address",
            json!({ "client_ip": { "trusted_proxies": ["10.0.0.0/8", "fd00::/8"] },
                    "policies": { "p": {} }, "routes": [{ "policy": "p" }] }),
        ),
        (
            "@target-uri binds host, path and query",
            one_policy(
                json!({ "signature": sig(json!({ "components": ["@method", "@target-uri"] })) }),
            ),
        ),
        (
            "@request-target and @authority",
            one_policy(json!({ "signature": sig(json!({
                "components": ["\"@method\"", "@authority", "@request-target"] })) })),
        ),
        (
            "an hour of max_age_s, five minutes of skew",
            one_policy(
                json!({ "signature": sig(json!({ "max_age_s": 3600, "clock_skew_s": 300 })) }),
            ),
        ),
        (
            "default and network-sized log prefixes, pseudonymized identifier",
            one_policy(json!({ "log": { "ipv4_prefix": 24, "ipv6_prefix": 64,
                "pseudonym_key": { "env": "K" }, "pseudonymize": ["header:x-session-id"],
                "headers": ["user-agent", "referer"] } })),
        ),
        (
            "allow lists that name people",
            json!({ "ip_lists": { "office": ["192.0.2.0/24"], "none": [] },
                    "policies": { "p": { "ip": { "allow": ["@office", "@none"], "deny": [] } } },
                    "routes": [{ "policy": "p" }] }),
        ),
    ];
    for (name, doc) in cases {
        let got = warnings(doc);
        assert!(got.is_empty(), "{name}: {got:?}");
    }
}

/// Every document shipped in policies/ passes without a warning (the plugin would log them at load).
/// Native only: it reads the files at run time.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn shipped_documents_have_no_warnings() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let mut files = vec![format!("{dir}/demo.json")];
    for entry in std::fs::read_dir(format!("{dir}/examples")).unwrap() {
        files.push(entry.unwrap().path().display().to_string());
    }
    assert!(files.len() > 5);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let got = lint(&parse(&text).unwrap());
        assert!(got.is_empty(), "{f}: {got:?}");
    }
}

#[test]
fn a_warning_says_where_what_and_why() {
    let w = warnings(json!({ "client_ip": { "trusted_proxies": ["0.0.0.0/0"] },
        "policies": { "p": {} }, "routes": [{ "policy": "p" }] }));
    let text = w[0].to_string();
    assert!(
        text.starts_with("client_ip.trusted_proxies[0]: \"0.0.0.0/0\" trusts"),
        "{text}"
    );
    assert!(text.contains("X-Forwarded-Proto"), "{text}");
}

#[test]
fn host_coverage() {
    let cases = [
        ("*.example.com", "a.example.com", true),
        ("*.example.com", "*.a.example.com", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", "*.example.com", true),
        ("example.com", "*.example.com", false),
        ("Example.com.", "example.COM", true),
        ("a.example.com", "b.example.com", false),
    ];
    for (a, b, want) in cases {
        assert_eq!(host_covers(a, b), want, "{a} covers {b}");
    }
}

/// Key sources named by http:// URLs, and a Web Bot Auth agent header envoy.yaml does not write, are
/// warned about; the defaults (https, x-edgeward-agent) are not. Web Bot Auth's default components
/// (@authority alone, what agents sign) are not warned about either.
#[test]
fn key_sources_and_web_bot_auth() {
    let doc = |url: &str, header: Option<&str>| {
        let mut wba = json!({ "directories": { "https://agent.example": "d" } });
        if let Some(h) = header {
            wba["agent_header"] = json!(h);
        }
        json!({
            "key_sources": { "d": { "type": "jwks", "cluster": "c", "url": url } },
            "policies": { "p": { "signature": { "web_bot_auth": wba } } },
            "routes": [{ "policy": "p" }]
        })
    };
    assert_eq!(
        paths(doc("https://agent.example/k", None)),
        Vec::<String>::new()
    );
    assert_eq!(
        paths(doc("https://agent.example/k", Some("x-edgeward-agent"))),
        Vec::<String>::new()
    );
    assert_eq!(
        paths(doc("HTTP://agent.example/k", None)),
        ["key_sources.d.url"]
    );
    let w = warnings(doc("https://agent.example/k", Some("x-bot")));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "policies.p.signature.web_bot_auth.agent_header");
    assert!(w[0]
        .why
        .contains("%FILTER_STATE(wasm.edgeward.upstream.agent:PLAIN)%"));
}
