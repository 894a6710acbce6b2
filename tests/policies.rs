#![cfg(not(target_arch = "wasm32"))]
// Test helpers outside #[test] functions: a failed read or parse is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shipped policy documents against the shipped schema: every `policies/*.json` and
//! `policies/examples/*.json` validates against `policies/schema.json` (JSON Schema 2020-12) and compiles in
//! the core; documents the schema rejects are rejected by the core too, so the schema never promises what
//! the plugin refuses (and where it can express a rule, never lets through what the plugin refuses).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use documents::compile;

#[path = "support/documents.rs"]
mod documents;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> Value {
    read_json(&root().join("policies/schema.json"))
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).unwrap_or_else(|e| panic!("schema.json: {e}"))
}

/// Schema errors as "instance path: message" lines (empty when valid).
fn schema_errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "schema.json"))
        .collect();
    files.sort();
    files
}

#[test]
fn schema_is_a_valid_2020_12_schema() {
    let s = schema();
    assert_eq!(
        s["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "schema.json must declare 2020-12"
    );
    if let Err(e) = jsonschema::draft202012::meta::validate(&s) {
        panic!("schema.json is not a valid 2020-12 schema: {e}");
    }
}

#[test]
fn every_shipped_document_validates_and_compiles() {
    let v = validator();
    let top = json_files(&root().join("policies"));
    let examples = json_files(&root().join("policies/examples"));
    // One example per section kind, plus shadow mode: a missing file is a lost example, not a pass.
    let example_names: BTreeSet<String> = examples
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .collect();
    for want in [
        "https",
        "ip",
        "signature",
        "key_sources",
        "rate_limits",
        "log",
        "shadow",
    ] {
        assert!(
            example_names.contains(want),
            "policies/examples/{want}.json is missing"
        );
    }
    let mut failures = Vec::new();
    for path in top.iter().chain(&examples) {
        let doc = read_json(path);
        let shown = path.strip_prefix(root()).unwrap_or(path).display();
        for e in schema_errors(&v, &doc) {
            failures.push(format!("{shown}: schema: {e}"));
        }
        if let Err(errs) = compile(&doc) {
            for e in errs {
                failures.push(format!("{shown}: core: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A document with one policy `p` (the given sections) and a catch-all route to it.
fn with_policy(policy: Value) -> Value {
    json!({ "policies": { "p": policy }, "routes": [{ "policy": "p" }] })
}

const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj";

/// Documents that the core accepts: the schema must accept them too (it is not stricter than the code).
#[test]
fn schema_accepts_what_the_core_accepts() {
    let v = validator();
    let secret = json!({ "base64": KEY_B64 });
    let cases: Vec<(&str, Value)> = vec![
        (
            "minimal",
            json!({ "policies": {}, "routes": [{ "policy": null }] }),
        ),
        ("empty policy", with_policy(json!({}))),
        (
            "null means absent",
            json!({
                "rate_limit_slots": null,
                "policies": { "p": { "https": null, "ip": null, "signature": null, "rate_limits": null, "log": null } },
                "routes": [{ "route": null, "host": null, "path_prefix": null, "policy": "p" }]
            }),
        ),
        (
            "null in every optional field",
            json!({
                "policies": { "p": {
                    "https": { "redirect_status": null, "https_port": null, "reject_status": null, "hsts": null, "min_tls_version": null },
                    "ip": { "deny_status": null },
                    "signature": { "label": null, "keys": [
                        { "id": "k", "alg": "hmac-sha256", "secret": secret, "public_key": null, "not_before": null, "not_after": null }
                    ] },
                    "rate_limits": [
                        { "name": "a", "key": "client_ip", "limit": 1, "window_s": 1, "burst": null, "status": null, "ipv6_prefix": null, "backend": null }
                    ],
                    "log": { "pseudonym_key": null }
                } },
                "routes": [{ "policy": "p" }]
            }),
        ),
        (
            "route fields",
            json!({
                "policies": { "p": {} },
                "routes": [
                    { "route": "r", "host": "*.Example.COM.", "path_prefix": "/a/", "policy": "p" },
                    { "host": "[::1]", "policy": null },
                    { "host": "my_host", "policy": "p" }
                ]
            }),
        ),
        (
            "https full",
            with_policy(json!({ "https": {
                "action": "redirect", "redirect_status": 307, "https_port": 8443, "reject_status": 426,
                "hsts": { "max_age_s": 0 }, "min_tls_version": "1.2"
            }})),
        ),
        (
            "ip forms",
            json!({
                "client_ip": { "xff_trusted_hops": 2, "trusted_proxies": [] },
                "ip_lists": { "a.b-c_d": ["0.0.0.0/0", "::/0", "::ffff:10.0.0.0/104", "2001:db8::/32", "1:2:3:4:5:6:7::"] },
                "policies": { "p": { "ip": { "allow": ["@a.b-c_d", "10.0.0.1", "fe80::/10"], "deny": [], "deny_status": 403 } } },
                "routes": [{ "policy": "p" }]
            }),
        ),
        (
            "signature defaults and raw ed25519 key",
            with_policy(json!({ "signature": { "keys": [
                { "id": "k 1", "alg": "ed25519", "public_key": "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=", "secret": null },
                { "id": "k2", "alg": "hmac-sha256", "secret": secret, "public_key": null, "not_before": 0, "not_after": 0 }
            ], "components": ["@query-param;name=\"id\"", "content-type", "\"@method\""], "label": "sig-1.*" }})),
        ),
        (
            "record without the status",
            json!({ "log": { "status": false }, "policies": { "p": { "log": { "status": true } } }, "routes": [{ "policy": "p" }] }),
        ),
        (
            "signature without the key id for the upstream",
            with_policy(
                json!({ "signature": { "keys": [{ "id": "k", "alg": "hmac-sha256", "secret": secret }], "upstream_key_id": false } }),
            ),
        ),
        (
            "rate limit extremes",
            json!({
                "rate_limit_slots": 64,
                "policies": { "p": { "rate_limits": [
                    { "name": "a", "key": "header:X-User", "limit": 1000000000, "window_s": 31536000, "burst": 1, "status": 429, "headers": true, "backend": "local" },
                    { "name": "b", "key": "client_ip", "limit": 1, "window_s": 1, "ipv6_prefix": 128 }
                ]}},
                "routes": [{ "policy": "p" }]
            }),
        ),
        (
            "log without key",
            with_policy(json!({ "log": {
                "ipv4_prefix": 0, "ipv6_prefix": 128, "headers": ["User-Agent", "x-forwarded-for"],
                "keep_query": ["t%6Fken", "page[]"], "upstream_xff": "remove", "fields": true
            }})),
        ),
        (
            "document-level log, held bodies, exact paths, folded header keys",
            json!({
                "log": { "keep_query": ["*"], "ipv4_prefix": 16, "headers": ["user-agent"] },
                "held_bodies": { "max_bytes": 1048576, "timeout_ms": 100 },
                "policies": { "p": {
                    "log": { "ipv6_prefix": 32 },
                    "rate_limits": [
                        { "name": "u", "key": "header:x-user", "limit": 5, "window_s": 1, "key_case": "exact" },
                        { "name": "v", "key": "header:x-org", "limit": 5, "window_s": 1, "key_case": "fold" },
                        { "name": "w", "key": "client_ip", "limit": 5, "window_s": 1, "lease": 8 },
                        { "name": "x", "key": "route", "limit": 5, "window_s": 1, "lease": null }
                    ]
                }},
                "routes": [{ "path": "/health", "policy": null }, { "policy": "p" }]
            }),
        ),
        (
            "a policy pseudonymizes with the document's key",
            json!({
                "log": { "pseudonym_key": { "env": "LOG_KEY" } },
                "policies": { "p": { "log": { "pseudonymize": ["client_ip"], "upstream_xff": "pseudonymize" } } },
                "routes": [{ "policy": "p" }]
            }),
        ),
        (
            "log pseudonyms",
            with_policy(json!({ "log": {
                "pseudonym_key": { "env": "LOG_KEY" }, "pseudonymize": ["header:X-Session"], "upstream_xff": "pseudonymize"
            }})),
        ),
        (
            "a key source alone",
            json!({
                "key_sources": { "k": { "type": "jwks", "cluster": "c", "url": "https://h/jwks?x=1", "key_id": "thumbprint" } },
                "policies": { "p": { "signature": { "key_sources": ["k"] } } },
                "routes": [{ "policy": "p" }]
            }),
        ),
        (
            "web bot auth with its defaults and components of its own",
            json!({
                "key_sources": { "d": { "type": "jwks", "cluster": "c", "url": "http://h:8080/.well-known/http-message-signatures-directory" } },
                "policies": { "p": { "signature": {
                    "web_bot_auth": { "directories": { "HTTPS://Agent.example:443/": "d" } },
                    "components": ["@target-uri", "\"signature-agent\";key=\"sig1\""]
                } } },
                "routes": [{ "policy": "p" }]
            }),
        ),
    ];
    let mut failures = Vec::new();
    for (name, doc) in &cases {
        if let Err(e) = compile(doc) {
            failures.push(format!(
                "{name}: core rejects a case meant to be valid: {e:?}"
            ));
        }
        for e in schema_errors(&v, doc) {
            failures.push(format!("{name}: schema rejects what the core accepts: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Documents both must reject; each names the JSON path the core reports (prefix match).
#[test]
fn schema_and_core_reject_the_same_bad_documents() {
    let v = validator();
    let secret = json!({ "base64": KEY_B64 });
    let hmac_key = json!({ "id": "k", "alg": "hmac-sha256", "secret": secret });
    let cases: Vec<(&str, Value, &str)> = vec![
        // Unknown fields, at every level.
        (
            "unknown top-level field",
            json!({ "policies": {}, "routes": [{ "policy": null }], "polices": {} }),
            "",
        ),
        (
            "unknown policy field",
            with_policy(json!({ "mdoe": "shadow" })),
            "policies.p",
        ),
        (
            "unknown route field",
            json!({ "policies": {}, "routes": [{ "policy": null, "prefix": "/" }] }),
            "routes[0]",
        ),
        (
            "unknown client_ip field",
            json!({ "client_ip": { "xff_num_trusted_hops": 1 }, "policies": {}, "routes": [{ "policy": null }] }),
            "client_ip",
        ),
        (
            "unknown https field",
            with_policy(json!({ "https": { "actoin": "reject" } })),
            "policies.p.https",
        ),
        (
            "unknown hsts field",
            with_policy(json!({ "https": { "hsts": { "max_age": 10 } } })),
            "policies.p.https.hsts",
        ),
        (
            "unknown ip field",
            with_policy(json!({ "ip": { "allowed": [] } })),
            "policies.p.ip",
        ),
        (
            "unknown signature field",
            with_policy(json!({ "signature": { "keys": [hmac_key], "max_age": 10 } })),
            "policies.p.signature",
        ),
        (
            "unknown key field",
            with_policy(
                json!({ "signature": { "keys": [{ "id": "k", "alg": "hmac-sha256", "secret": secret, "kid": "x" }] } }),
            ),
            "policies.p.signature.keys[0]",
        ),
        (
            "unknown secret field",
            with_policy(json!({ "log": { "pseudonym_key": { "file": "/etc/key" } } })),
            "policies.p.log.pseudonym_key",
        ),
        (
            "unknown rate limit field",
            with_policy(
                json!({ "rate_limits": [{ "name": "a", "key": "route", "limit": 1, "window_s": 1, "period": 1 }] }),
            ),
            "policies.p.rate_limits[0]",
        ),
        (
            "unknown log field",
            with_policy(json!({ "log": { "ipv4_bits": 24 } })),
            "policies.p.log",
        ),
        // Bad CIDRs (the forms a pattern can express; host bits set is checked by the core only).
        (
            "leading zero",
            with_policy(json!({ "ip": { "allow": ["010.0.0.0/8"] } })),
            "policies.p.ip.allow[0]",
        ),
        (
            "short form",
            with_policy(json!({ "ip": { "deny": ["127.1"] } })),
            "policies.p.ip.deny[0]",
        ),
        (
            "hex octet",
            with_policy(json!({ "ip": { "deny": ["0x7f.0.0.1"] } })),
            "policies.p.ip.deny[0]",
        ),
        (
            "prefix out of range",
            with_policy(json!({ "ip": { "deny": ["10.0.0.0/33"] } })),
            "policies.p.ip.deny[0]",
        ),
        (
            "prefix with leading zero",
            with_policy(json!({ "ip": { "deny": ["10.0.0.0/08"] } })),
            "policies.p.ip.deny[0]",
        ),
        (
            "zone id",
            with_policy(json!({ "ip": { "deny": ["fe80::1%eth0"] } })),
            "policies.p.ip.deny[0]",
        ),
        (
            "bad list entry",
            json!({ "ip_lists": { "l": ["::ffff:1.2.03.4"] }, "policies": {}, "routes": [{ "policy": null }] }),
            "ip_lists.l[0]",
        ),
        (
            "list referencing a list",
            json!({ "ip_lists": { "l": ["@m"], "m": [] }, "policies": {}, "routes": [{ "policy": null }] }),
            "ip_lists.l[0]",
        ),
        (
            "trusted proxy reference",
            json!({ "ip_lists": { "l": [] }, "client_ip": { "trusted_proxies": ["@l"] }, "policies": {}, "routes": [{ "policy": null }] }),
            "client_ip.trusted_proxies[0]",
        ),
        (
            "bad list name",
            json!({ "ip_lists": { "bad name": [] }, "policies": {}, "routes": [{ "policy": null }] }),
            "ip_lists.bad name",
        ),
        (
            "hops and proxies",
            json!({ "client_ip": { "xff_trusted_hops": 1, "trusted_proxies": ["10.0.0.0/8"] }, "policies": {}, "routes": [{ "policy": null }] }),
            "client_ip.xff_trusted_hops",
        ),
        // Routes.
        (
            "missing policy in a route",
            json!({ "policies": { "p": {} }, "routes": [{ "host": "example.com" }] }),
            "routes[0]",
        ),
        (
            "no routes",
            json!({ "policies": {}, "routes": [] }),
            "routes",
        ),
        (
            "host with port",
            json!({ "policies": {}, "routes": [{ "host": "example.com:443", "policy": null }] }),
            "routes[0].host",
        ),
        (
            "host wildcard alone",
            json!({ "policies": {}, "routes": [{ "host": "*", "policy": null }] }),
            "routes[0].host",
        ),
        (
            "path prefix without slash",
            json!({ "policies": {}, "routes": [{ "path_prefix": "api/", "policy": null }] }),
            "routes[0].path_prefix",
        ),
        (
            "empty route name",
            json!({ "policies": {}, "routes": [{ "route": "", "policy": null }] }),
            "routes[0].route",
        ),
        (
            "policy name with a space",
            json!({ "policies": { "my policy": {} }, "routes": [{ "policy": null }] }),
            "policies.my policy",
        ),
        (
            "policy is a number",
            json!({ "policies": {}, "routes": [{ "policy": 1 }] }),
            "routes[0].policy",
        ),
        // Bad enums and ranges.
        (
            "mode",
            with_policy(json!({ "mode": "audit" })),
            "policies.p.mode",
        ),
        (
            "https action",
            with_policy(json!({ "https": { "action": "drop" } })),
            "policies.p.https.action",
        ),
        (
            "redirect status",
            with_policy(json!({ "https": { "redirect_status": 303 } })),
            "policies.p.https.redirect_status",
        ),
        (
            "reject status",
            with_policy(json!({ "https": { "reject_status": 400 } })),
            "policies.p.https.reject_status",
        ),
        (
            "https port 0",
            with_policy(json!({ "https": { "https_port": 0 } })),
            "policies.p.https.https_port",
        ),
        (
            "min tls",
            with_policy(json!({ "https": { "min_tls_version": "1.1" } })),
            "policies.p.https.min_tls_version",
        ),
        (
            "preload without include_subdomains",
            with_policy(json!({ "https": { "hsts": { "max_age_s": 31536000, "preload": true } } })),
            "policies.p.https.hsts.preload",
        ),
        (
            "preload with short max age",
            with_policy(
                json!({ "https": { "hsts": { "max_age_s": 86400, "include_subdomains": true, "preload": true } } }),
            ),
            "policies.p.https.hsts.preload",
        ),
        (
            "ip deny status",
            with_policy(json!({ "ip": { "deny_status": 401 } })),
            "policies.p.ip.deny_status",
        ),
        (
            "alg",
            with_policy(
                json!({ "signature": { "keys": [{ "id": "k", "alg": "rsa-pss-sha512", "public_key": "x" }] } }),
            ),
            "policies.p.signature.keys[0].alg",
        ),
        (
            "nonce",
            with_policy(json!({ "signature": { "keys": [hmac_key], "nonce": "always" } })),
            "policies.p.signature.nonce",
        ),
        (
            "log status not a boolean",
            with_policy(json!({ "log": { "status": "no" } })),
            "policies.p.log.status",
        ),
        (
            "upstream_key_id not a boolean",
            with_policy(json!({ "signature": { "keys": [hmac_key], "upstream_key_id": "no" } })),
            "policies.p.signature.upstream_key_id",
        ),
        (
            "no keys",
            with_policy(json!({ "signature": { "keys": [] } })),
            "policies.p.signature.keys",
        ),
        (
            "hmac key with public_key",
            with_policy(json!({ "signature": { "keys": [
                { "id": "k", "alg": "hmac-sha256", "secret": secret, "public_key": "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=" }
            ] } })),
            "policies.p.signature.keys[0].public_key",
        ),
        (
            "hmac key without secret",
            with_policy(json!({ "signature": { "keys": [{ "id": "k", "alg": "hmac-sha256" }] } })),
            "policies.p.signature.keys[0].secret",
        ),
        (
            "ed25519 key with a secret",
            with_policy(json!({ "signature": { "keys": [
                { "id": "k", "alg": "ed25519", "secret": secret, "public_key": "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=" }
            ] } })),
            "policies.p.signature.keys[0].secret",
        ),
        (
            "short hmac secret",
            with_policy(
                json!({ "signature": { "keys": [{ "id": "k", "alg": "hmac-sha256", "secret": { "base64": "c2hvcnQ=" } }] } }),
            ),
            "policies.p.signature.keys[0].secret",
        ),
        (
            "secret with env and base64",
            with_policy(json!({ "signature": { "keys": [
                { "id": "k", "alg": "hmac-sha256", "secret": { "env": "K", "base64": KEY_B64 } }
            ] } })),
            "policies.p.signature.keys[0].secret",
        ),
        (
            "empty key id",
            with_policy(
                json!({ "signature": { "keys": [{ "id": "", "alg": "hmac-sha256", "secret": secret }] } }),
            ),
            "policies.p.signature.keys[0].id",
        ),
        (
            "no components",
            with_policy(json!({ "signature": { "keys": [hmac_key], "components": [] } })),
            "policies.p.signature.components",
        ),
        (
            "component listed twice",
            with_policy(
                json!({ "signature": { "keys": [hmac_key], "components": ["@method", "@method"] } }),
            ),
            "policies.p.signature.components[1]",
        ),
        (
            "max_age_s 0",
            with_policy(
                json!({ "signature": { "keys": [hmac_key], "max_age_s": 0, "clock_skew_s": 0 } }),
            ),
            "policies.p.signature.max_age_s",
        ),
        (
            "max_body_bytes 0",
            with_policy(json!({ "signature": { "keys": [hmac_key], "max_body_bytes": 0 } })),
            "policies.p.signature.max_body_bytes",
        ),
        (
            "label uppercase",
            with_policy(json!({ "signature": { "keys": [hmac_key], "label": "Sig1" } })),
            "policies.p.signature.label",
        ),
        (
            "rate limit key",
            with_policy(
                json!({ "rate_limits": [{ "name": "a", "key": "ip", "limit": 1, "window_s": 1 }] }),
            ),
            "policies.p.rate_limits[0].key",
        ),
        (
            "key_id without signature",
            with_policy(
                json!({ "rate_limits": [{ "name": "a", "key": "key_id", "limit": 1, "window_s": 1 }] }),
            ),
            "policies.p.rate_limits[0].key",
        ),
        (
            "rate limit status",
            with_policy(
                json!({ "rate_limits": [{ "name": "a", "key": "route", "limit": 1, "window_s": 1, "status": 403 }] }),
            ),
            "policies.p.rate_limits[0].status",
        ),
        (
            "limit 0",
            with_policy(
                json!({ "rate_limits": [{ "name": "a", "key": "route", "limit": 0, "window_s": 1 }] }),
            ),
            "policies.p.rate_limits[0].limit",
        ),
        (
            "window over a year",
            with_policy(
                json!({ "rate_limits": [{ "name": "a", "key": "route", "limit": 1, "window_s": 31536001 }] }),
            ),
            "policies.p.rate_limits[0].window_s",
        ),
        (
            "limit name",
            with_policy(
                json!({ "rate_limits": [{ "name": "per client", "key": "route", "limit": 1, "window_s": 1 }] }),
            ),
            "policies.p.rate_limits[0].name",
        ),
        (
            "ipv6_prefix on a header key",
            with_policy(json!({ "rate_limits": [
                { "name": "a", "key": "header:x-user", "limit": 1, "window_s": 1, "ipv6_prefix": 64 }
            ] })),
            "policies.p.rate_limits[0].ipv6_prefix",
        ),
        (
            "unknown backend",
            with_policy(
                json!({ "rate_limits": [{ "name": "a", "key": "route", "limit": 1, "window_s": 1, "backend": "redis" }] }),
            ),
            "policies.p.rate_limits[0].backend",
        ),
        (
            "rate_limit_slots too small",
            json!({ "rate_limit_slots": 8, "policies": {}, "routes": [{ "policy": null }] }),
            "rate_limit_slots",
        ),
        (
            "upstream_xff",
            with_policy(json!({ "log": { "upstream_xff": "hash" } })),
            "policies.p.log.upstream_xff",
        ),
        (
            "ipv4_prefix 33",
            with_policy(json!({ "log": { "ipv4_prefix": 33 } })),
            "policies.p.log.ipv4_prefix",
        ),
        (
            "pseudonymize without key",
            with_policy(json!({ "log": { "pseudonymize": ["client_ip"] } })),
            "policies.p.log.pseudonymize",
        ),
        (
            "upstream pseudonyms without key",
            with_policy(json!({ "log": { "upstream_xff": "pseudonymize" } })),
            "policies.p.log.upstream_xff",
        ),
        (
            "unknown pseudonymize item",
            with_policy(json!({ "log": { "pseudonym_key": secret, "pseudonymize": ["email"] } })),
            "policies.p.log.pseudonymize[0]",
        ),
        (
            "credential header logged",
            with_policy(json!({ "log": { "headers": ["Authorization"] } })),
            "policies.p.log.headers[0]",
        ),
        (
            "credential header pseudonymized",
            with_policy(
                json!({ "log": { "pseudonym_key": secret, "pseudonymize": ["header:Cookie"] } }),
            ),
            "policies.p.log.pseudonymize[0]",
        ),
        (
            "forwarded logged",
            with_policy(json!({ "log": { "headers": ["forwarded"] } })),
            "policies.p.log.headers[0]",
        ),
        (
            "header name with a space",
            with_policy(json!({ "log": { "headers": ["user agent"] } })),
            "policies.p.log.headers[0]",
        ),
        (
            "control character in keep_query",
            with_policy(json!({ "log": { "keep_query": ["tok\u{7}en"] } })),
            "policies.p.log.keep_query[0]",
        ),
        (
            "a policy pseudonymizes, the document's log has no key",
            json!({
                "log": { "ipv4_prefix": 24 },
                "policies": { "p": { "log": { "pseudonymize": ["client_ip"] } } },
                "routes": [{ "policy": "p" }]
            }),
            "policies.p.log.pseudonymize",
        ),
        (
            "redact_query was replaced by keep_query",
            with_policy(json!({ "log": { "redact_query": ["token"] } })),
            "policies.p.log.redact_query",
        ),
        (
            "document-level log with a bad prefix",
            json!({ "log": { "ipv4_prefix": 33 }, "policies": {}, "routes": [{ "policy": null }] }),
            "log.ipv4_prefix",
        ),
        (
            "held bodies below the floor",
            json!({ "held_bodies": { "max_bytes": 10 }, "policies": {}, "routes": [{ "policy": null }] }),
            "held_bodies.max_bytes",
        ),
        (
            "held body timeout too long",
            json!({ "held_bodies": { "timeout_ms": 600001 }, "policies": {}, "routes": [{ "policy": null }] }),
            "held_bodies.timeout_ms",
        ),
        (
            "path and path_prefix together",
            json!({ "policies": {}, "routes": [{ "path": "/a", "path_prefix": "/a", "policy": null }] }),
            "routes[0].path",
        ),
        (
            "a path with a query",
            json!({ "policies": {}, "routes": [{ "path": "/a?x=1", "policy": null }] }),
            "routes[0].path",
        ),
        (
            "key_case on a key that is not a header",
            with_policy(json!({ "rate_limits": [
                { "name": "c", "key": "client_ip", "limit": 1, "window_s": 1, "key_case": "exact" }
            ] })),
            "policies.p.rate_limits[0].key_case",
        ),
        (
            "a lease past 64",
            with_policy(json!({ "rate_limits": [
                { "name": "c", "key": "client_ip", "limit": 1, "window_s": 1, "lease": 65 }
            ] })),
            "policies.p.rate_limits[0].lease",
        ),
        (
            "a lease on a limit of the rate limit service",
            json!({
                "rls": { "cluster": "ratelimit", "domain": "edgeward" },
                "policies": { "p": { "rate_limits": [
                    { "name": "c", "key": "client_ip", "limit": 1, "window_s": 1,
                      "backend": "rls", "lease": 2 }
                ] } },
                "routes": [{ "policy": "p" }]
            }),
            "policies.p.rate_limits[0].lease",
        ),
        (
            "short pseudonym key",
            with_policy(json!({ "log": { "pseudonym_key": { "base64": "c2hvcnQ=" } } })),
            "policies.p.log.pseudonym_key",
        ),
        (
            "null for a field with a default",
            with_policy(json!({ "mode": null })),
            "policies.p.mode",
        ),
        (
            "null list",
            with_policy(json!({ "ip": { "allow": null } })),
            "policies.p.ip.allow",
        ),
        (
            "null boolean",
            with_policy(json!({ "log": { "fields": null } })),
            "policies.p.log.fields",
        ),
        (
            "integer as string",
            with_policy(json!({ "ip": { "deny_status": "404" } })),
            "policies.p.ip.deny_status",
        ),
        (
            "a signature without keys or key sources",
            with_policy(json!({ "signature": {} })),
            "policies.p.signature",
        ),
        (
            "a key source of an unknown type",
            json!({
                "key_sources": { "k": { "type": "x509", "cluster": "c", "url": "https://h/k" } },
                "policies": {}, "routes": [{ "policy": null }]
            }),
            "key_sources.k.type",
        ),
        (
            "a key source URL that is not http(s)",
            json!({
                "key_sources": { "k": { "type": "jwks", "cluster": "c", "url": "ftp://h/k" } },
                "policies": {}, "routes": [{ "policy": null }]
            }),
            "key_sources.k.url",
        ),
        (
            "a key source refreshed never",
            json!({
                "key_sources": { "k": { "type": "jwks", "cluster": "c", "url": "https://h/k", "refresh_s": 0 } },
                "policies": {}, "routes": [{ "policy": null }]
            }),
            "key_sources.k.refresh_s",
        ),
        (
            "web bot auth with document keys too",
            json!({
                "key_sources": { "d": { "type": "jwks", "cluster": "c", "url": "https://h/k" } },
                "policies": { "p": { "signature": {
                    "web_bot_auth": { "directories": { "https://a.example": "d" } },
                    "key_sources": ["d"]
                } } },
                "routes": [{ "policy": "p" }]
            }),
            "policies.p.signature",
        ),
        (
            "web bot auth directory keyed by a URL with a path",
            json!({
                "key_sources": { "d": { "type": "jwks", "cluster": "c", "url": "https://h/k" } },
                "policies": { "p": { "signature": {
                    "web_bot_auth": { "directories": { "https://a.example/keys": "d" } }
                } } },
                "routes": [{ "policy": "p" }]
            }),
            "policies.p.signature.web_bot_auth.directories",
        ),
        (
            "web bot auth agent header in capitals",
            json!({
                "key_sources": { "d": { "type": "jwks", "cluster": "c", "url": "https://h/k" } },
                "policies": { "p": { "signature": {
                    "web_bot_auth": { "directories": { "https://a.example": "d" }, "agent_header": "X-Agent" }
                } } },
                "routes": [{ "policy": "p" }]
            }),
            "policies.p.signature.web_bot_auth.agent_header",
        ),
    ];
    let mut failures = Vec::new();
    for (name, doc, path) in &cases {
        // The schema must object on the same branch of the document as the core: one error's location is
        // an ancestor or a descendant of the core's path (so a case cannot pass by failing elsewhere).
        let want = pointer(path);
        let located: Vec<String> = v
            .iter_errors(doc)
            .map(|e| e.instance_path().to_string())
            .collect();
        if located.is_empty() {
            failures.push(format!("{name}: the schema accepts it"));
        } else if !located.iter().any(|p| related(p, &want)) {
            failures.push(format!(
                "{name}: schema errors at {located:?}, none on the branch of {want:?}"
            ));
        }
        match compile(doc) {
            Ok(_) => failures.push(format!("{name}: the core accepts it")),
            Err(errs) => {
                if !errs.iter().any(|e| e.starts_with(path)) {
                    failures.push(format!("{name}: no core error at {path:?}: {errs:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A core error path (`policies.p.ip.allow[2]`) as a JSON pointer (`/policies/p/ip/allow/2`).
fn pointer(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next() {
            out.push('/');
            out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        for index in pieces {
            out.push('/');
            out.push_str(index.trim_end_matches(']'));
        }
    }
    out
}

/// Whether one pointer is the other or lies under it (segment-wise), and it is not just the root
/// (unless the core's path is the root too).
fn related(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
    (under(a, b) || under(b, a)) && (!a.is_empty() || b.is_empty())
}

/// Every string found in the shared IP vectors (and a few more), as a list entry: the schema's CIDR
/// pattern accepts exactly what the core parses, except host bits set, which only the core sees.
#[test]
fn cidr_pattern_agrees_with_the_core() {
    let v = validator();
    let mut corpus: BTreeSet<String> = [
        "10.0.0.0/8",
        "0.0.0.0/0",
        "255.255.255.255/32",
        "256.0.0.0",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.4/",
        "1.2.3.4/-1",
        "1.2.3.4/+8",
        "1.2.3.4/ 8",
        " 1.2.3.4",
        "::",
        "::/0",
        "::1/128",
        "::1/129",
        "1::",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        ":1::",
        "1:::2",
        "12345::",
        "0001::",
        "::ffff:1.2.3.4",
        "::ffff:10.0.0.0/104",
        "::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "1.2.3.4::",
        "::ffff:1.2.3.4:5",
        "[::1]",
        "2001:DB8::/32",
        "fe80::1%eth0",
        "10.1.2.3/8",
        "2001:db8::1/32",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for file in [
        "go-netip-parse-and-prefix.json",
        "envoy-cidr-range.json",
        "rust-std-and-ipnet-behaviour.json",
    ] {
        let path = root().join("../shared/vectors/ip").join(file);
        collect_address_like(&read_json(&path), &mut corpus);
    }
    assert!(corpus.len() > 100, "corpus too small: {}", corpus.len());
    let mut disagreements = Vec::new();
    for s in &corpus {
        let doc =
            json!({ "ip_lists": { "l": [s] }, "policies": {}, "routes": [{ "policy": null }] });
        let schema_ok = schema_errors(&v, &doc).is_empty();
        let core = compile(&doc);
        let core_ok = match &core {
            Ok(_) => true,
            // The one rule a pattern cannot express.
            Err(errs) => errs.iter().all(|e| e.contains("has host bits set")),
        };
        if schema_ok != core_ok {
            disagreements.push(format!(
                "{s:?}: schema {schema_ok}, core {core_ok} ({:?})",
                core.err()
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Short strings without spaces that contain '.' or ':' (addresses, prefixes and their malformed forms).
fn collect_address_like(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s)
            if s.len() <= 64 && !s.contains(' ') && (s.contains('.') || s.contains(':')) =>
        {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|x| collect_address_like(x, out)),
        Value::Object(map) => map.values().for_each(|x| collect_address_like(x, out)),
        _ => {}
    }
}
