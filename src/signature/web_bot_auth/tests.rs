use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::decision::Reason;
use crate::keys::{compile_sources, thumbprint, KeyCache, KeySet, KeySourceInput, SourceKey};
use crate::secret::NoEnv;
use crate::signature::{compile, KeyRing, SignParams, SignatureInput, SignaturePolicy, SigningKey};
use crate::testkit::TestRequest;
use serde_json::json;

const NOW: u64 = 1_700_000_000;
const AGENT: &str = "https://agent.example";

fn sources() -> Vec<KeySource> {
    let inputs: BTreeMap<String, KeySourceInput> = crate::json::from_value(json!({
        "agent_dir": {"type": "jwks", "cluster": "agent", "url": "https://agent.example/.well-known/http-message-signatures-directory"},
        "other_dir": {"type": "jwks", "cluster": "other", "url": "https://other.example/.well-known/http-message-signatures-directory"},
    }))
    .unwrap();
    let mut errs = Errors::default();
    let out = compile_sources(&inputs, "key_sources", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    out
}

fn policy_from(sig: serde_json::Value) -> Result<SignaturePolicy, Vec<String>> {
    let input: SignatureInput = crate::json::from_value(sig).map_err(|e| vec![e.to_string()])?;
    let mut errs = Errors::default();
    let p = compile(
        &input,
        "policies.p.signature",
        &NoEnv,
        &sources(),
        &mut errs,
    );
    let errs: Vec<String> = errs.into_vec().iter().map(|e| e.to_string()).collect();
    match p {
        Some(p) if errs.is_empty() => Ok(p),
        _ => Err(errs),
    }
}

fn policy() -> SignaturePolicy {
    policy_from(json!({"web_bot_auth": {"directories": {
        "https://Agent.Example:443": "agent_dir",
        "https://other.example": "other_dir",
    }}}))
    .unwrap()
}

fn signing_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn source_key(seed: u8, kid: Option<&str>) -> SourceKey {
    let key = signing_key(seed).verifying_key();
    SourceKey {
        kid: kid.map(String::from),
        thumbprint: thumbprint(&key),
        key,
        not_before: None,
        not_after: None,
    }
}

/// Source 0 (`agent_dir`) holds keys 1 and 2 (key 2 with a kid); source 1 (`other_dir`) holds key 3.
fn cache() -> KeyCache {
    let mut c = KeyCache::new(2);
    c.install(
        0,
        1,
        KeySet {
            keys: vec![source_key(1, None), source_key(2, Some("two"))],
        },
    );
    c.install(
        1,
        1,
        KeySet {
            keys: vec![source_key(3, None)],
        },
    );
    c
}

/// Web Bot Auth parameters as the agent `seed` signs: thumbprint key id, tag, created, expires a
/// minute later, `@authority` and the label's `Signature-Agent` member.
fn params(seed: u8) -> SignParams {
    let key = SigningKey::Ed25519(Box::new(signing_key(seed)));
    let mut p = SignParams::new(thumbprint(&signing_key(seed).verifying_key()), key, NOW);
    p.expires = Some(NOW + 60);
    p.tag = Some(TAG.to_string());
    p.alg = Some(crate::signature::Alg::Ed25519);
    p.components = vec![
        "@authority".into(),
        "\"signature-agent\";key=\"sig1\"".into(),
    ];
    p
}

fn request(agent_header: Option<&str>) -> TestRequest {
    let r = TestRequest::get("api.example.com", "/data");
    match agent_header {
        Some(v) => r.header("signature-agent", v),
        None => r,
    }
}

fn verify_with(
    p: &SignaturePolicy,
    r: &TestRequest,
    cache: &KeyCache,
) -> Result<crate::signature::Verified, Reason> {
    let sources = sources();
    p.verify_head_with(
        &r.head(),
        NOW,
        KeyRing {
            sources: &sources,
            cache,
        },
    )
}

fn verify(r: &TestRequest) -> Result<crate::signature::Verified, Reason> {
    verify_with(&policy(), r, &cache())
}

#[test]
fn a_signed_agent_request_verifies() {
    let r = request(Some(r#"sig1="https://agent.example""#)).signed(&params(1));
    let v = verify(&r).unwrap();
    assert_eq!(v.agent.as_deref(), Some(AGENT));
    assert_eq!(v.key_id, thumbprint(&signing_key(1).verifying_key()));
    // The agent's other key, which has a kid: still named by its thumbprint.
    let r = request(Some(r#"sig1="https://agent.example""#)).signed(&params(2));
    assert_eq!(verify(&r).unwrap().agent.as_deref(), Some(AGENT));
    // Another allowed agent with its own directory.
    let r = request(Some(r#"sig1="https://other.example/""#)).signed(&params(3));
    assert_eq!(
        verify(&r).unwrap().agent.as_deref(),
        Some("https://other.example")
    );
}

/// The draft's earlier form: `Signature-Agent` an sf-string, covered as a whole.
#[test]
fn the_legacy_string_form_verifies() {
    let mut p = params(1);
    p.components = vec!["@authority".into(), "signature-agent".into()];
    let r = request(Some(r#""https://agent.example""#)).signed(&p);
    assert_eq!(verify(&r).unwrap().agent.as_deref(), Some(AGENT));
    // Covering the dictionary member of a string is not covering it.
    let r = request(Some(r#""https://agent.example""#)).signed(&params(1));
    assert!(
        r.headers.iter().all(|(k, _)| k != "signature"),
        "the signer refuses"
    );
}

/// The allow-list decides: another origin, a URL with another path, a member for another label, no
/// header, a non-string, an unsupported `type`: refused as `signature_agent_unknown`, whatever keys
/// sign. No fetch can follow from it (the core holds no URL from the client).
#[test]
fn agents_outside_the_allow_list_are_unknown() {
    for header in [
        Some(r#"sig1="https://evil.example""#),
        Some(r#"sig1="http://agent.example""#),
        Some(r#"sig1="https://agent.example:8443""#),
        Some(r#"sig1="https://agent.example/keys.json""#),
        Some(r#"sig1="https://agent.example/?x""#),
        Some(r#"sig1="https://user@agent.example""#),
        Some(r#"sig2="https://agent.example""#),
        Some(r#"sig1=agent"#),
        Some(r#"sig1="https://agent.example";type=jwks_uri"#),
        Some(r#"sig1=("https://agent.example")"#),
        Some("sig1=\"https://agent.example\", sig1=\"https://evil.example\""),
        None,
    ] {
        // Signed over the value itself where the signer can cover it, else over an allowed agent
        // whose header is then replaced (the agent is refused before any key is looked up).
        let mut r = request(header).signed(&params(1));
        if r.headers.iter().all(|(k, _)| k != "signature") {
            r = request(Some(r#"sig1="https://agent.example""#)).signed(&params(1));
            r.headers.retain(|(k, _)| k != "signature-agent");
            if let Some(h) = header {
                r = r.header("signature-agent", h);
            }
        }
        assert_eq!(
            verify(&r).err(),
            Some(Reason::SignatureAgentUnknown),
            "{header:?}"
        );
    }
}

/// What the profile requires of the signature itself: each missing piece is `signature_invalid`.
#[test]
fn profile_requirements() {
    let header = Some(r#"sig1="https://agent.example""#);
    let ok = params(1);
    let cases: Vec<(&str, SignParams)> = vec![
        (
            "no tag",
            SignParams {
                tag: None,
                ..ok.clone()
            },
        ),
        (
            "another tag",
            SignParams {
                tag: Some("web-bot-auth2".into()),
                ..ok.clone()
            },
        ),
        (
            "no expires",
            SignParams {
                expires: None,
                ..ok.clone()
            },
        ),
        (
            "expires before created",
            SignParams {
                expires: Some(NOW - 1),
                ..ok.clone()
            },
        ),
        (
            "the agent member not covered",
            SignParams {
                components: vec!["@authority".into()],
                ..ok.clone()
            },
        ),
        (
            "the whole header covered instead of the member",
            SignParams {
                components: vec!["@authority".into(), "signature-agent".into()],
                ..ok.clone()
            },
        ),
        (
            "@authority not covered",
            SignParams {
                components: vec!["@path".into(), "\"signature-agent\";key=\"sig1\"".into()],
                ..ok.clone()
            },
        ),
        (
            "the kid as key id",
            SignParams {
                key_id: "two".into(),
                ..params(2)
            },
        ),
        ("a key of another agent's directory", params(3)),
        ("a key in no directory", params(9)),
        (
            "an hmac key",
            SignParams {
                key: SigningKey::hmac(&[7u8; 32]).unwrap(),
                alg: Some(crate::signature::Alg::HmacSha256),
                ..ok.clone()
            },
        ),
    ];
    for (what, p) in cases {
        let r = request(header).signed(&p);
        assert!(
            r.headers.iter().any(|(k, _)| k == "signature"),
            "{what}: signed"
        );
        assert_eq!(verify(&r).err(), Some(Reason::SignatureInvalid), "{what}");
    }
    // Tampering with what is covered.
    let mut r = request(header).signed(&ok);
    r.authority = "other.example.com".into();
    assert_eq!(verify(&r).err(), Some(Reason::SignatureInvalid));
    let mut r = request(header).signed(&ok);
    for (k, v) in r.headers.iter_mut() {
        if k == "signature-agent" {
            *v = r#"sig1="https://other.example""#.into();
        }
    }
    assert_eq!(verify(&r).err(), Some(Reason::SignatureInvalid));
}

/// Authentic but stale, or expired: `signature_expired`.
#[test]
fn freshness() {
    let header = Some(r#"sig1="https://agent.example""#);
    let mut p = params(1);
    p.created = NOW - 400;
    p.expires = Some(NOW + 60);
    assert_eq!(
        verify(&request(header).signed(&p)).err(),
        Some(Reason::SignatureExpired)
    );
    let mut p = params(1);
    p.created = NOW - 100;
    p.expires = Some(NOW - 50);
    assert_eq!(
        verify(&request(header).signed(&p)).err(),
        Some(Reason::SignatureExpired)
    );
}

/// The agent's directory has never loaded: 503 `keys_unavailable`, not a 401 the agent cannot fix.
#[test]
fn an_unloaded_directory_is_keys_unavailable() {
    let r = request(Some(r#"sig1="https://agent.example""#)).signed(&params(1));
    let mut c = KeyCache::new(2);
    c.install(1, 1, KeySet::default());
    assert_eq!(
        verify_with(&policy(), &r, &c).err(),
        Some(Reason::KeysUnavailable)
    );
    let reply = policy().refusal(Reason::KeysUnavailable);
    assert_eq!(reply.status, 503);
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
    // The other agent's set loaded, its own did not: the other agent is still served.
    let r = request(Some(r#"sig1="https://other.example""#)).signed(&params(3));
    assert_eq!(
        verify_with(&policy(), &r, &{
            let mut c = KeyCache::new(2);
            c.install(
                1,
                1,
                KeySet {
                    keys: vec![source_key(3, None)],
                },
            );
            c
        })
        .unwrap()
        .agent
        .as_deref(),
        Some("https://other.example")
    );
}

#[test]
fn origins_normalize() {
    let cases = [
        ("https://agent.example", Some("https://agent.example")),
        ("HTTPS://Agent.Example:443/", Some("https://agent.example")),
        ("http://agent.example:80", Some("http://agent.example")),
        (
            "https://agent.example:8443",
            Some("https://agent.example:8443"),
        ),
        (
            "https://agent.example/.well-known/http-message-signatures-directory",
            Some("https://agent.example"),
        ),
        ("https://[2001:db8::1]:443", Some("https://[2001:db8::1]")),
        ("https://agent.example/other", None),
        ("https://agent.example?x", None),
        ("https://agent.example#f", None),
        ("https://u@agent.example", None),
        ("https://agent .example", None),
        ("https://", None),
        ("https://:443", None),
        ("https://agent.example:99999", None),
        ("https://agent.example:", None),
        ("ftp://agent.example", None),
        ("agent.example", None),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_origin(input).as_deref(), want, "{input}");
    }
}

#[test]
fn compile_errors() {
    let cases = [
        (json!({"web_bot_auth": {"directories": {}}}), "policies.p.signature.web_bot_auth.directories: at least one"),
        (json!({"web_bot_auth": {"directories": {"https://a.example/x": "agent_dir"}}}), "policies.p.signature.web_bot_auth.directories.https://a.example/x: \"https://a.example/x\" is not an agent origin"),
        (json!({"web_bot_auth": {"directories": {"https://a.example": "nope"}}}), "unknown key source \"nope\""),
        (json!({"web_bot_auth": {"directories": {"https://a.example": "agent_dir", "https://A.example:443": "other_dir"}}}), "is listed twice"),
        (json!({"web_bot_auth": {"directories": {"https://a.example": "agent_dir"}, "agent_header": "X-Bot"}}), "web_bot_auth.agent_header: must be a lowercase header name"),
        (json!({"web_bot_auth": {"directories": {"https://a.example": "agent_dir"}}, "keys": [{"id": "k", "alg": "ed25519", "public_key": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}), "policies.p.signature.web_bot_auth: keys come from the agents' directories"),
        (json!({"web_bot_auth": {"directories": {"https://a.example": "agent_dir"}}, "key_sources": ["other_dir"]}), "leave out `keys` and `key_sources`"),
        (json!({"web_bot_auth": {"directories": {"https://a.example": "agent_dir"}}, "components": ["@path"]}), "policies.p.signature.components: Web Bot Auth signatures cover the target"),
        (json!({}), "policies.p.signature.keys: at least one key is required"),
        (json!({"key_sources": ["nope"]}), "policies.p.signature.key_sources[0]: unknown key source \"nope\""),
        (json!({"key_sources": ["agent_dir", "agent_dir"]}), "policies.p.signature.key_sources[1]: \"agent_dir\" is listed twice"),
    ];
    for (sig, want) in cases {
        let errs = policy_from(sig.clone()).err().unwrap_or_default();
        assert!(errs.iter().any(|e| e.contains(want)), "{sig}: {errs:?}");
    }
    // The defaults: @authority, and an Accept-Signature that asks for what the profile needs.
    let p = policy();
    assert_eq!(p.components.len(), 1);
    assert_eq!(
        p.accept_signature(),
        r#"sig1=("@authority");created;expires;keyid;tag="web-bot-auth""#
    );
    assert_eq!(
        p.web_bot_auth.as_ref().map(|w| w.agent_header.as_str()),
        Some(DEFAULT_AGENT_HEADER)
    );
    assert_eq!(p.source_indexes(), [0, 1]);
}

/// Keys from a JWKS source next to the document's own: either verifies; a key id only the source
/// could hold while it has never loaded is `keys_unavailable`, a key id unknown to a loaded source
/// is `signature_invalid`.
#[test]
fn key_sources_combine_with_document_keys() {
    let doc_key = signing_key(5);
    let public = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        doc_key.verifying_key().as_bytes(),
    );
    let p = policy_from(json!({
        "keys": [{"id": "doc-key", "alg": "ed25519", "public_key": public}],
        "key_sources": ["agent_dir"],
    }))
    .unwrap();
    let sign = |key: &ed25519_dalek::SigningKey, id: &str| {
        let mut sp = SignParams::new(id, SigningKey::Ed25519(Box::new(key.clone())), NOW);
        sp.https = true;
        TestRequest::get("api.example.com", "/x").signed(&sp)
    };
    let loaded = cache();
    let v = verify_with(&p, &sign(&doc_key, "doc-key"), &loaded).unwrap();
    assert_eq!((v.key_id.as_str(), v.agent), ("doc-key", None));
    // A kid from the source (key_id mode "kid"), and a thumbprint for a key without one.
    assert!(verify_with(&p, &sign(&signing_key(2), "two"), &loaded).is_ok());
    let t1 = thumbprint(&signing_key(1).verifying_key());
    assert!(verify_with(&p, &sign(&signing_key(1), &t1), &loaded).is_ok());
    // With a kid, the thumbprint does not name key 2 in "kid" mode.
    let t2 = thumbprint(&signing_key(2).verifying_key());
    assert_eq!(
        verify_with(&p, &sign(&signing_key(2), &t2), &loaded).err(),
        Some(Reason::SignatureInvalid)
    );
    assert_eq!(
        verify_with(&p, &sign(&signing_key(9), "unknown"), &loaded).err(),
        Some(Reason::SignatureInvalid)
    );
    let empty = KeyCache::new(2);
    assert_eq!(
        verify_with(&p, &sign(&signing_key(2), "two"), &empty).err(),
        Some(Reason::KeysUnavailable)
    );
    // The document's own key does not wait for the source.
    assert!(verify_with(&p, &sign(&doc_key, "doc-key"), &empty).is_ok());
    // The wrong key under a known id.
    assert_eq!(
        verify_with(&p, &sign(&signing_key(9), "two"), &loaded).err(),
        Some(Reason::SignatureInvalid)
    );
}
