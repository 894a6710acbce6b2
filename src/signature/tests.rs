use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::http1::{parse_http_request, ParsedRequest};
use crate::request::{Peer, TlsVersion};
use crate::secret::NoEnv;
use crate::store::MemoryStore;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use serde_json::json;

const VEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/");
const B26_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/rfc9421/b26-ed25519.json"
));
const B26_BASE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/rfc9421/b26-signature-base.txt"
));
const B4_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/rfc9421/b4-transformations.json"
));
const TEST_PUB_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/rfc9421/test-key-ed25519.pub.pem"
));
const TEST_REQUEST: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/rfc9421/test-request.txt"
));
const RFC4231: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/rfc4231/hmac-sha256.json"
));

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET2_B64: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="; // "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"

fn compile_json(v: serde_json::Value) -> Result<SignaturePolicy, Vec<String>> {
    let input: SignatureInput = crate::json::from_value(v).map_err(|e| vec![e.to_string()])?;
    let mut errs = Errors::default();
    let p = compile(&input, "policies.p.signature", &NoEnv, &[], &mut errs);
    let errs: Vec<String> = errs.into_vec().iter().map(|e| e.to_string()).collect();
    match p {
        Some(p) if errs.is_empty() => Ok(p),
        _ => Err(errs),
    }
}

fn policy(v: serde_json::Value) -> SignaturePolicy {
    match compile_json(v) {
        Ok(p) => p,
        Err(e) => panic!("policy does not compile: {e:?}"),
    }
}

fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

fn ed_pub_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(ed_key().verifying_key().to_bytes())
}

/// Two HMAC keys and one ed25519 key, content-digest required, nonce optional.
fn std_policy() -> SignaturePolicy {
    policy(json!({
        "keys": [
            {"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}},
            {"id": "k2", "alg": "hmac-sha256", "secret": {"base64": SECRET2_B64}},
            {"id": "ed", "alg": "ed25519", "public_key": ed_pub_b64()}
        ],
        "components": ["@method", "@authority", "@path", "@query", "content-digest"]
    }))
}

const POST: &str = "POST /orders?a=1&b=2 HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\n\r\n{\"qty\": 3}";

fn req(raw: &str) -> ParsedRequest {
    parse_http_request(raw.as_bytes()).unwrap()
}

fn hmac_params(created: u64) -> SignParams {
    SignParams::new("k1", SigningKey::hmac(SECRET).unwrap(), created)
}

/// The request with the signed headers set (replacing same-named ones).
fn apply(r: &ParsedRequest, h: &SignedHeaders) -> ParsedRequest {
    let mut out = r.clone();
    for (name, value) in h.headers() {
        let lower = name.to_ascii_lowercase();
        out.headers.retain(|(k, _)| *k != lower);
        out.headers.push((lower, value));
    }
    out
}

fn signed(r: &ParsedRequest, p: &SignParams) -> ParsedRequest {
    apply(r, &sign_request(r, p).unwrap())
}

fn verify(p: &SignaturePolicy, r: &ParsedRequest, now: u64) -> Result<Verified, Reason> {
    let authority = r.authority();
    p.verify_head(
        &r.head(&authority, Some(TlsVersion::V1_3), Peer::Invalid),
        now,
    )
}

fn set_header(r: &mut ParsedRequest, name: &str, value: &str) {
    r.headers.retain(|(k, _)| k != name);
    r.headers.push((name.to_string(), value.to_string()));
}

fn header<'a>(r: &'a ParsedRequest, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

#[test]
fn vector_paths_exist() {
    // Guards against a silently different vectors layout (include_str! would fail to compile anyway).
    assert!(VEC.ends_with("/shared/vectors/"));
}

#[test]
fn rfc9421_b26_signature_base_and_ed25519_signature() {
    let v: serde_json::Value = serde_json::from_str(B26_JSON).unwrap();
    let mut r = req(TEST_REQUEST);
    let si = v["expected_signature_input_header"]
        .as_str()
        .unwrap()
        .trim_start_matches("Signature-Input: ");
    let sig = v["expected_signature_header"]
        .as_str()
        .unwrap()
        .trim_start_matches("Signature: ");
    set_header(&mut r, "signature-input", si);
    set_header(&mut r, "signature", sig);
    let created = 1_618_884_473;

    // Byte-exact base.
    let dict = sfv::parse_dictionary(si).unwrap();
    let (_, member) = &dict[0];
    let Member::InnerList(items, _) = member else {
        panic!("inner list expected")
    };
    let covered: Vec<ComponentId> = items
        .iter()
        .map(|i| ComponentId::from_item(i).unwrap())
        .collect();
    let mut pv = String::new();
    sfv::write_member(&mut pv, member);
    let authority = r.authority();
    let head = r.head(&authority, None, Peer::Invalid);
    assert_eq!(
        components::signature_base(&head, &covered, &pv).unwrap(),
        B26_BASE
    );

    let components: Vec<&str> = v["covered_components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    // The key both as PEM SPKI and as base64 of the 32 raw bytes.
    let raw_b64 = {
        let vk = VerifyingKey::from_public_key_pem(TEST_PUB_PEM.trim()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(vk.to_bytes())
    };
    for pk in [TEST_PUB_PEM.to_string(), raw_b64] {
        let p = policy(json!({
            "keys": [{"id": "test-key-ed25519", "alg": "ed25519", "public_key": pk}],
            "components": components,
            "max_age_s": 300
        }));
        let ok = p.verify_head(&head, created).unwrap();
        assert_eq!(ok.key_id, "test-key-ed25519");
        assert_eq!(ok.created, created);
        assert_eq!(ok.expires_at, created + 300);
        assert!(!ok.needs_digest);
        // And the body of the RFC request matches its Content-Digest.
        assert_eq!(
            check_content_digest(r.head(&authority, None, Peer::Invalid).headers, &r.body),
            Ok(())
        );
        // One byte of the signature flipped.
        let mut bad = r.clone();
        set_header(&mut bad, "signature", &sig.replace("wqcA", "wqcB"));
        let ba = bad.authority();
        assert_eq!(
            p.verify_head(&bad.head(&ba, None, Peer::Invalid), created),
            Err(Reason::SignatureInvalid)
        );
    }
}

#[test]
fn rfc9421_b25_hmac_signature() {
    // RFC 9421 App. B.2.5 (hmac-sha256, key test-shared-secret) over the same test request.
    let secret =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
    let mut r = req(TEST_REQUEST);
    set_header(
        &mut r,
        "signature-input",
        "sig-b25=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"",
    );
    set_header(
        &mut r,
        "signature",
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
    );
    let p = policy(json!({
        "keys": [{"id": "test-shared-secret", "alg": "hmac-sha256", "secret": {"base64": secret}}],
        "components": ["date", "@authority", "content-type"]
    }));
    assert_eq!(
        verify(&p, &r, 1_618_884_473).map(|v| v.key_id),
        Ok("test-shared-secret".to_string())
    );
    set_header(&mut r, "content-type", "application/json ; x");
    assert_eq!(verify(&p, &r, 1_618_884_473), Err(Reason::SignatureInvalid));
}

#[test]
fn rfc9421_b4_transformations() {
    let v: serde_json::Value = serde_json::from_str(B4_JSON).unwrap();
    let p = policy(json!({
        "keys": [{"id": "test-key-ed25519", "alg": "ed25519", "public_key": TEST_PUB_PEM}],
        "components": ["@method", "@path", "@authority", "accept"]
    }));
    let expected_base = v["signature_base_of_original"].as_str().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let r = req(case["message"].as_str().unwrap());
        let valid = case["expected_valid"].as_bool().unwrap();
        let got = verify(&p, &r, 1_618_884_473);
        assert_eq!(got.is_ok(), valid, "{}: {got:?}", case["description"]);
        // The base itself (needs no ed25519).
        let covered: Vec<ComponentId> = ["@method", "@path", "@authority", "accept"]
            .iter()
            .map(|c| ComponentId::parse_config(c).unwrap())
            .collect();
        let a = r.authority();
        let base = components::signature_base(
            &r.head(&a, None, Peer::Invalid),
            &covered,
            "(\"@method\" \"@path\" \"@authority\" \"accept\");created=1618884473;keyid=\"test-key-ed25519\"",
        );
        assert_eq!(
            base.as_deref() == Some(expected_base),
            valid,
            "{}",
            case["description"]
        );
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc4231_hmac_through_the_filter_key_path() {
    let v: serde_json::Value = serde_json::from_str(RFC4231).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let key = unhex(case["key_hex"].as_str().unwrap());
        let data = unhex(case["data_hex"].as_str().unwrap());
        let tag = unhex(case["hmac_sha256_hex"].as_str().unwrap());
        let k = Key {
            id: "t".into(),
            alg: Alg::HmacSha256,
            not_before: None,
            not_after: None,
            verifier: Verifier::Hmac(Hmac::<Sha256>::new_from_slice(&key).unwrap()),
        };
        if case.get("truncated_to_bits").is_some() {
            // Truncated tags are never accepted.
            assert!(!k.verify(&data, &tag), "case {}", case["test_case"]);
            continue;
        }
        assert!(k.verify(&data, &tag), "case {}", case["test_case"]);
        let mut flipped = tag.clone();
        flipped[0] ^= 1;
        assert!(!k.verify(&data, &flipped));
        // Keys long enough for the document (TC6/TC7, longer than one block) also go through compile.
        if key.len() >= MIN_HMAC_SECRET {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
            let p = policy(
                json!({"keys": [{"id": "t", "alg": "hmac-sha256", "secret": {"base64": b64}}]}),
            );
            assert!(p.keys[0].verify(&data, &tag));
        }
    }
}

#[test]
fn round_trip_hmac_and_ed25519() {
    let p = std_policy();
    let r = req(POST);
    let mut hp = hmac_params(NOW);
    hp.nonce = Some("n-1".into());
    let s = signed(&r, &hp);
    let v = verify(&p, &s, NOW).unwrap();
    assert_eq!(
        v,
        Verified {
            key_id: "k1".into(),
            nonce: Some("n-1".into()),
            created: NOW,
            expires_at: NOW + 300,
            needs_digest: true,
            agent: None,
        }
    );
    assert_eq!(
        check_content_digest(crate::request::Headers::new(&s.headers), &s.body),
        Ok(())
    );

    // ed25519 via a PKCS#8 PEM private key, with alg and expires.
    let pem = ed_key().to_pkcs8_pem(Default::default()).unwrap();
    let mut ep = SignParams::new("ed", SigningKey::ed25519_from_pem(&pem).unwrap(), NOW);
    ep.alg = Some(Alg::Ed25519);
    ep.expires = Some(NOW + 60);
    ep.content_digest = Some(DigestAlg::Sha512);
    let s = signed(&r, &ep);
    assert!(header(&s, "content-digest").starts_with("sha-512=:"));
    assert_eq!(verify(&p, &s, NOW).map(|v| v.key_id), Ok("ed".into()));
    // The public key may also be given as PEM SPKI.
    let pem_pub = ed_key()
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let p2 = policy(json!({"keys": [{"id": "ed", "alg": "ed25519", "public_key": pem_pub}]}));
    assert!(verify(&p2, &s, NOW).is_ok());
}

#[test]
fn signature_input_param_order_and_format() {
    let r = req(POST);
    let mut hp = hmac_params(NOW);
    hp.expires = Some(NOW + 10);
    hp.nonce = Some("abc".into());
    hp.alg = Some(Alg::HmacSha256);
    hp.components = vec![
        "@method".into(),
        "@query-param;name=\"a\"".into(),
        "content-type".into(),
    ];
    let h = sign_request(&r, &hp).unwrap();
    assert_eq!(
        h.signature_input,
        format!(
            "sig1=(\"@method\" \"@query-param\";name=\"a\" \"content-type\");created={NOW};expires={};nonce=\"abc\";alg=\"hmac-sha256\";keyid=\"k1\"",
            NOW + 10
        )
    );
    assert!(h.signature.starts_with("sig1=:") && h.signature.ends_with(':'));
    assert_eq!(h.content_digest, None);
    // Default components add content-digest only for a body.
    let get = req("GET /x HTTP/1.1\nHost: a\n\n");
    let h = sign_request(&get, &hmac_params(NOW)).unwrap();
    assert_eq!(
        h.signature_input,
        format!(
            "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\");created={NOW};keyid=\"k1\""
        )
    );
    let h = sign_request(&r, &hmac_params(NOW)).unwrap();
    assert!(h.signature_input.contains("\"content-digest\")"));
    assert!(h.content_digest.is_some());
}

#[test]
fn sign_rejects_bad_params() {
    let r = req(POST);
    let mut cases: Vec<(SignParams, SignError)> = Vec::new();
    let mut p = hmac_params(NOW);
    p.label = "Sig1".into();
    cases.push((p, SignError::Label("Sig1".into())));
    let mut p = hmac_params(NOW);
    p.alg = Some(Alg::Ed25519);
    cases.push((
        p,
        SignError::AlgMismatch {
            alg: Alg::Ed25519,
            key: Alg::HmacSha256,
        },
    ));
    let mut p = hmac_params(NOW);
    p.components = vec!["x-absent".into()];
    cases.push((p, SignError::MissingComponents(vec!["x-absent".into()])));
    let mut p = hmac_params(NOW);
    p.components = vec!["@method".into(), "@method".into()];
    cases.push((p, SignError::ComponentTwice("@method".into())));
    let mut p = hmac_params(NOW);
    p.components = vec!["@status".into()];
    cases.push((p, SignError::Component(ComponentError::Status)));
    let mut p = hmac_params(NOW);
    p.nonce = Some("bad\nnonce".into());
    cases.push((p, SignError::Nonce));
    let mut p = hmac_params(NOW);
    p.key_id = String::new();
    cases.push((p, SignError::KeyId));
    let mut p = hmac_params(u64::MAX);
    p.components = vec!["@method".into()];
    cases.push((p, SignError::Timestamp(u64::MAX)));
    for (p, want) in cases {
        assert_eq!(sign_request(&r, &p), Err(want), "{p:?}");
    }
    assert_eq!(
        SigningKey::hmac(b"short").err(),
        Some(SignError::HmacSecretLength(5))
    );
    assert_eq!(
        SigningKey::ed25519_from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
        .err(),
        Some(SignError::PrivateKeyPem)
    );
    // Debug never shows key material.
    let dbg = format!("{:?}", hmac_params(NOW));
    assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
}

#[test]
fn one_byte_flips_are_rejected() {
    let p = std_policy();
    let r = req(POST);
    let good = signed(&r, &hmac_params(NOW));
    assert!(verify(&p, &good, NOW).is_ok());
    let si = header(&good, "signature-input").to_string();
    let sig = header(&good, "signature").to_string();

    // Key: signed with a secret that differs in one byte.
    let mut bad_secret = SECRET.to_vec();
    bad_secret[5] ^= 1;
    let mut kp = hmac_params(NOW);
    kp.key = SigningKey::hmac(&bad_secret).unwrap();
    assert_eq!(
        verify(&p, &signed(&r, &kp), NOW),
        Err(Reason::SignatureInvalid)
    );

    let mut mutations: Vec<(&str, ParsedRequest)> = Vec::new();
    // Base: method, path, authority, query changed after signing.
    let mut m = good.clone();
    m.method = "PUT".into();
    mutations.push(("method", m));
    let mut m = good.clone();
    m.target = "/orderz?a=1&b=2".into();
    mutations.push(("path", m));
    let mut m = good.clone();
    m.target = "/orders?a=1&b=3".into();
    mutations.push(("query", m));
    let mut m = good.clone();
    set_header(&mut m, "host", "api.example.net");
    mutations.push(("authority", m));
    // Signature value: one base64 character changed.
    let mut m = good.clone();
    let flipped_sig = {
        let mut b = sig.clone().into_bytes();
        b[8] = if b[8] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    set_header(&mut m, "signature", &flipped_sig);
    mutations.push(("signature", m));
    // created, keyid, covered list edited in Signature-Input without re-signing.
    let mut m = good.clone();
    set_header(
        &mut m,
        "signature-input",
        &si.replace(&format!("created={NOW}"), &format!("created={}", NOW - 1)),
    );
    mutations.push(("created", m));
    let mut m = good.clone();
    set_header(
        &mut m,
        "signature-input",
        &si.replace("keyid=\"k1\"", "keyid=\"k2\""),
    );
    mutations.push(("keyid", m));
    let mut m = good.clone();
    set_header(
        &mut m,
        "signature-input",
        &si.replace("\"@query\" ", "\"@scheme\" \"@query\" "),
    );
    mutations.push(("covered list (added)", m));
    let mut m = good.clone();
    set_header(
        &mut m,
        "signature-input",
        &si.replace("\"@authority\" \"@path\"", "\"@path\" \"@authority\""),
    );
    mutations.push(("covered list (reordered)", m));
    let mut m = good.clone();
    set_header(&mut m, "signature-input", &si.replace("sig1=", "sig2="));
    mutations.push(("label", m));
    for (what, m) in mutations {
        assert_eq!(verify(&p, &m, NOW), Err(Reason::SignatureInvalid), "{what}");
    }

    // Body: the signature still verifies (it covers the digest header), the digest check fails.
    let mut m = good.clone();
    m.body[2] ^= 1;
    let v = verify(&p, &m, NOW).unwrap();
    assert!(v.needs_digest);
    assert_eq!(
        check_content_digest(crate::request::Headers::new(&m.headers), &m.body),
        Err(Reason::DigestMismatch)
    );
}

#[test]
fn timestamp_must_be_present_and_fresh() {
    let p = std_policy();
    let r = req(POST);
    // created missing: even a correctly computed HMAC over the base is refused.
    let mut no_created = signed(&r, &hmac_params(NOW));
    let si = header(&no_created, "signature-input").replace(&format!(";created={NOW}"), "");
    set_header(&mut no_created, "signature-input", &si);
    resign_hmac(&mut no_created);
    assert_eq!(verify(&p, &no_created, NOW), Err(Reason::SignatureInvalid));

    let max_age = 300;
    let skew = 5;
    let cases: &[(u64, Result<(), Reason>)] = &[
        (NOW, Ok(())),
        (NOW - (max_age - 1), Ok(())),
        (NOW - max_age, Ok(())),
        (NOW - (max_age + 1), Err(Reason::SignatureExpired)),
        (NOW + skew, Ok(())),
        (NOW + skew + 1, Err(Reason::SignatureExpired)),
        (NOW + (max_age + 1), Err(Reason::SignatureExpired)),
    ];
    for (created, expected) in cases {
        let s = signed(&r, &hmac_params(*created));
        assert_eq!(
            verify(&p, &s, NOW).map(|_| ()),
            *expected,
            "created {created}"
        );
    }
    // expires in the past (beyond skew) refused; within skew accepted.
    for (expires, expected) in [
        (NOW - skew - 1, Err(Reason::SignatureExpired)),
        (NOW - skew, Ok(())),
    ] {
        let mut hp = hmac_params(NOW - 10);
        hp.expires = Some(expires);
        let s = signed(&r, &hp);
        assert_eq!(
            verify(&p, &s, NOW).map(|_| ()),
            expected,
            "expires {expires}"
        );
    }
    // A stale forgery is `invalid`, not `expired`: freshness is judged only for authentic signatures.
    let mut stale = signed(&r, &hmac_params(NOW - 1000));
    set_header(
        &mut stale,
        "signature",
        "sig1=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
    );
    assert_eq!(verify(&p, &stale, NOW), Err(Reason::SignatureInvalid));
}

/// Recomputes the HMAC (key k1) over whatever Signature-Input the request now carries.
fn resign_hmac(r: &mut ParsedRequest) {
    let si = header(r, "signature-input").to_string();
    let dict = sfv::parse_dictionary(&si).unwrap();
    let (label, member) = &dict[0];
    let Member::InnerList(items, _) = member else {
        panic!()
    };
    let covered: Vec<ComponentId> = items
        .iter()
        .map(|i| ComponentId::from_item(i).unwrap())
        .collect();
    let mut pv = String::new();
    sfv::write_member(&mut pv, member);
    let a = r.authority();
    let base = components::signature_base(
        &r.head(&a, Some(TlsVersion::V1_3), Peer::Invalid),
        &covered,
        &pv,
    )
    .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(base.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    set_header(r, "signature", &format!("{label}=:{sig}:"));
}

#[test]
fn required_components_must_be_covered() {
    let p = std_policy();
    let r = req(POST);
    let mut hp = hmac_params(NOW);
    hp.components = vec![
        "@method".into(),
        "@authority".into(),
        "@path".into(),
        "content-digest".into(),
    ];
    assert_eq!(
        verify(&p, &signed(&r, &hp), NOW),
        Err(Reason::SignatureInvalid)
    );
    // Covering more than required is fine.
    hp.components = vec![
        "@method".into(),
        "@authority".into(),
        "@path".into(),
        "@query".into(),
        "content-digest".into(),
        "content-type".into(),
        "@target-uri".into(),
    ];
    assert!(verify(&p, &signed(&r, &hp), NOW).is_ok());
}

#[test]
fn query_order_is_significant() {
    let p = std_policy();
    let s = signed(&req(POST), &hmac_params(NOW));
    let mut swapped = s.clone();
    swapped.target = "/orders?b=2&a=1".into();
    assert!(verify(&p, &s, NOW).is_ok());
    assert_eq!(verify(&p, &swapped, NOW), Err(Reason::SignatureInvalid));
}

/// Several field lines of `Signature-Input` and `Signature` are one Dictionary each (RFC 9110 §5.3: joined
/// with ", "): a second signature on lines of its own leaves the first verifiable, whichever line comes
/// first; a line whose label has no counterpart on the other header is refused.
#[test]
fn signature_fields_on_several_lines_are_combined() {
    let p = std_policy();
    let s = signed(&req(POST), &hmac_params(NOW));
    let lines = |order: &[(&str, &str)]| {
        let mut m = s.clone();
        m.headers
            .retain(|(k, _)| k != "signature" && k != "signature-input");
        for (k, v) in order {
            m.headers.push((k.to_string(), v.to_string()));
        }
        m
    };
    let sig = header(&s, "signature").to_string();
    let si = header(&s, "signature-input").to_string();
    let si2 = r#"sig2=("@method");created=1700000000;keyid="k1""#;
    let sig2 = "sig2=:AAAA:";
    for order in [
        [
            ("signature-input", si.as_str()),
            ("signature-input", si2),
            ("signature", sig.as_str()),
            ("signature", sig2),
        ],
        [
            ("signature-input", si2),
            ("signature", sig2),
            ("signature-input", si.as_str()),
            ("signature", sig.as_str()),
        ],
    ] {
        assert!(verify(&p, &lines(&order), NOW).is_ok(), "{order:?}");
    }
    let unpaired = lines(&[
        ("signature-input", si.as_str()),
        ("signature-input", si2),
        ("signature", sig.as_str()),
    ]);
    assert_eq!(verify(&p, &unpaired, NOW), Err(Reason::SignatureInvalid));
}

#[test]
fn duplicated_and_malformed_signature_headers_deny_deterministically() {
    let p = std_policy();
    let s = signed(&req(POST), &hmac_params(NOW));
    let sig = header(&s, "signature").to_string();
    let si = header(&s, "signature-input").to_string();
    let with = |extra: &[(&str, &str)]| {
        let mut m = s.clone();
        for (k, v) in extra {
            m.headers.push((k.to_string(), v.to_string()));
        }
        m
    };
    let cases: Vec<(&str, ParsedRequest, Reason)> = vec![
        (
            "same Signature line twice",
            with(&[("signature", &sig)]),
            Reason::SignatureInvalid,
        ),
        (
            "second Signature, same label",
            with(&[("signature", "sig1=:AAAA:")]),
            Reason::SignatureInvalid,
        ),
        (
            "second Signature, other label, no input",
            with(&[("signature", "sig2=:AAAA:")]),
            Reason::SignatureInvalid,
        ),
        (
            "Signature-Input twice",
            with(&[("signature-input", &si)]),
            Reason::SignatureInvalid,
        ),
        (
            "garbage second line",
            with(&[("signature", "((((")]),
            Reason::SignatureInvalid,
        ),
    ];
    for (what, m, expected) in cases {
        let first = verify(&p, &m, NOW);
        assert_eq!(first, Err(expected), "{what}");
        assert_eq!(verify(&p, &m, NOW), first, "{what}: deterministic");
    }
    let mut malformed: Vec<(&str, &str)> = vec![
        ("sig1=:AAAA", si.as_str()),
        (sig.as_str(), "sig1=(\"@method\""),
        (sig.as_str(), "sig1=\"@method\";created=1;keyid=\"k1\""),
        ("sig1=\"notbytes\"", si.as_str()),
        ("sig1=:AAAA:", "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=-5;keyid=\"k1\""),
        ("sig1=:AAAA:", "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=\"1\";keyid=\"k1\""),
        ("sig1=:AAAA:", "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\" \"@status\");created=1;keyid=\"k1\""),
        ("sig1=:AAAA:", "sig1=(\"@method\" \"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=1;keyid=\"k1\""),
        ("sig1=:AAAA:", "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=1;keyid=k1"),
        ("sig1=:AAAA:", "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=1;keyid=\"k1\";alg=\"rsa-pss-sha512\""),
    ];
    let many_labels: String = (0..20)
        .map(|i| format!("s{i}=:AAAA:"))
        .collect::<Vec<_>>()
        .join(", ");
    let many_inputs: String = (0..20)
        .map(|i| format!("s{i}=()"))
        .collect::<Vec<_>>()
        .join(", ");
    malformed.push((many_labels.as_str(), many_inputs.as_str()));
    for (sig_v, si_v) in malformed {
        let mut m = s.clone();
        set_header(&mut m, "signature", sig_v);
        set_header(&mut m, "signature-input", si_v);
        assert_eq!(
            verify(&p, &m, NOW),
            Err(Reason::SignatureInvalid),
            "{sig_v} / {si_v}"
        );
    }
}

#[test]
fn missing_signature_headers() {
    let p = std_policy();
    let s = signed(&req(POST), &hmac_params(NOW));
    let strip = |name: &str| {
        let mut m = s.clone();
        m.headers.retain(|(k, _)| k != name);
        m
    };
    assert_eq!(verify(&p, &req(POST), NOW), Err(Reason::SignatureMissing));
    assert_eq!(
        verify(&p, &strip("signature"), NOW),
        Err(Reason::SignatureMissing)
    );
    assert_eq!(
        verify(&p, &strip("signature-input"), NOW),
        Err(Reason::SignatureMissing)
    );
}

#[test]
fn unknown_key_id_and_bad_signature_look_the_same() {
    let p = std_policy();
    let r = req(POST);
    let mut unknown = hmac_params(NOW);
    unknown.key_id = "nobody".into();
    let a = verify(&p, &signed(&r, &unknown), NOW).unwrap_err();
    let mut bad = signed(&r, &hmac_params(NOW));
    set_header(
        &mut bad,
        "signature",
        "sig1=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
    );
    let b = verify(&p, &bad, NOW).unwrap_err();
    let mut wrong_alg = hmac_params(NOW);
    wrong_alg.alg = Some(Alg::HmacSha256);
    wrong_alg.key_id = "ed".into();
    let c = verify(&p, &signed(&r, &wrong_alg), NOW).unwrap_err();
    assert_eq!(
        (a, b, c),
        (
            Reason::SignatureInvalid,
            Reason::SignatureInvalid,
            Reason::SignatureInvalid
        )
    );
    assert_eq!(p.unauthorized_reply(a), p.unauthorized_reply(b));
    // Every cause: same status, body and headers; only the internal reason differs.
    let base = p.unauthorized_reply(Reason::SignatureInvalid);
    for reason in [
        Reason::SignatureMissing,
        Reason::SignatureExpired,
        Reason::SignatureReplayed,
        Reason::DigestMismatch,
    ] {
        let r = p.unauthorized_reply(reason);
        assert_eq!(
            (r.status, r.body, &r.headers),
            (base.status, base.body, &base.headers)
        );
        assert_eq!(r.reason, reason);
    }
    assert_eq!(base.status, 401);
    assert_eq!(
        base.headers,
        vec![(
            "accept-signature".to_string(),
            "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created;keyid".to_string()
        )]
    );
}

#[test]
fn key_rotation_by_validity_window() {
    let p = policy(json!({
        "keys": [
            {"id": "partner-a", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}, "not_after": NOW},
            {"id": "partner-a", "alg": "hmac-sha256", "secret": {"base64": SECRET2_B64}, "not_before": NOW - 100}
        ]
    }));
    let r = req("GET /x HTTP/1.1\nHost: a.example\n\n");
    let mut old = hmac_params(NOW);
    old.key_id = "partner-a".into();
    let mut new = old.clone();
    new.key = SigningKey::hmac(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef").unwrap();
    // During the overlap both keys verify.
    assert!(verify(&p, &signed(&r, &old), NOW).is_ok());
    assert!(verify(&p, &signed(&r, &new), NOW).is_ok());
    // Past not_after the old key is refused, its successor accepted.
    old.created = NOW + 1;
    new.created = NOW + 1;
    assert_eq!(
        verify(&p, &signed(&r, &old), NOW + 1),
        Err(Reason::SignatureInvalid)
    );
    assert!(verify(&p, &signed(&r, &new), NOW + 1).is_ok());
    // Before not_before the successor is not yet valid.
    new.created = NOW - 101;
    assert_eq!(
        verify(&p, &signed(&r, &new), NOW - 101),
        Err(Reason::SignatureInvalid)
    );
}

#[test]
fn alg_parameter_must_match_the_key() {
    let p = std_policy();
    let r = req(POST);
    let mut hp = hmac_params(NOW);
    hp.alg = Some(Alg::HmacSha256);
    let s = signed(&r, &hp);
    assert!(verify(&p, &s, NOW).is_ok());
    // Claimed ed25519 over an HMAC key (re-signed so only the alg differs).
    let mut m = s.clone();
    let si = header(&m, "signature-input").replace("alg=\"hmac-sha256\"", "alg=\"ed25519\"");
    set_header(&mut m, "signature-input", &si);
    resign_hmac(&mut m);
    assert_eq!(verify(&p, &m, NOW), Err(Reason::SignatureInvalid));
    // Same with an unknown algorithm.
    let si = header(&m, "signature-input").replace("alg=\"ed25519\"", "alg=\"hmac-sha512\"");
    set_header(&mut m, "signature-input", &si);
    resign_hmac(&mut m);
    assert_eq!(verify(&p, &m, NOW), Err(Reason::SignatureInvalid));
}

#[test]
fn labels_and_multiple_signatures() {
    let r = req(POST);
    let s1 = signed(&r, &hmac_params(NOW));
    // A second, independent signature under another label.
    let mut ep = SignParams::new("ed", SigningKey::Ed25519(Box::new(ed_key())), NOW);
    ep.label = "edsig".into();
    let h2 = sign_request(&r, &ep).unwrap();
    let mut both = s1.clone();
    both.headers
        .push(("signature-input".into(), h2.signature_input.clone()));
    both.headers
        .push(("signature".into(), h2.signature.clone()));

    let any = std_policy();
    assert_eq!(verify(&any, &both, NOW).map(|v| v.key_id), Ok("k1".into()));
    let only_ed = policy(json!({
        "keys": [{"id": "ed", "alg": "ed25519", "public_key": ed_pub_b64()}],
        "label": "edsig"
    }));
    assert_eq!(
        verify(&only_ed, &both, NOW).map(|v| v.key_id),
        Ok("ed".into())
    );
    assert_eq!(verify(&only_ed, &s1, NOW), Err(Reason::SignatureMissing));
    // With label null, a bad first signature does not hide a good second one, and vice versa.
    let mut bad_first = both.clone();
    set_header(&mut bad_first, "signature", "sig1=:AAAA:");
    bad_first
        .headers
        .push(("signature".into(), h2.signature.clone()));
    assert_eq!(
        verify(&any, &bad_first, NOW).map(|v| v.key_id),
        Ok("ed".into())
    );
}

#[test]
fn nonce_required_and_replay() {
    let p = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "nonce": "required"
    }));
    assert!(p.accept_signature().contains(";nonce"));
    let r = req("GET /x HTTP/1.1\nHost: a\n\n");
    assert_eq!(
        verify(&p, &signed(&r, &hmac_params(NOW)), NOW),
        Err(Reason::SignatureInvalid)
    );
    let mut hp = hmac_params(NOW);
    hp.nonce = Some("once".into());
    let s = signed(&r, &hp);
    let cfg = NonceTableConfig::default();
    let mut store = MemoryStore::new();
    init_nonce_table(&mut store, &cfg).unwrap();
    let run = |store: &mut MemoryStore, now: u64| -> Option<Reply> {
        let v = verify(&p, &s, now)
            .map_err(|r| p.unauthorized_reply(r))
            .ok()?;
        let nonce = v.nonce.as_deref()?;
        p.nonce_reply(check_nonce(
            store,
            &cfg,
            b"0123456789abcdef",
            &v.key_id,
            nonce,
            v.created,
            v.expires_at,
            now,
        ))
    };
    assert_eq!(run(&mut store, NOW), None);
    let replay = run(&mut store, NOW + 1).unwrap();
    assert_eq!(
        (replay.status, replay.reason),
        (401, Reason::SignatureReplayed)
    );
    assert_eq!(
        p.nonce_reply(NonceOutcome::StoreFull)
            .map(|r| (r.status, r.reason)),
        Some((503, Reason::NonceStoreFull))
    );
}

#[test]
fn config_errors_name_paths_and_never_secrets() {
    let short = base64::engine::general_purpose::STANDARD.encode(b"sixteen-bytes!!!");
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"keys": []}),
            "policies.p.signature.keys: at least one key",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}, {"id": "b", "alg": "hmac-sha256", "secret": {"base64": short}}]}),
            "policies.p.signature.keys[1].secret: secret is 16 bytes",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "hmac-sha256", "secret": {"env": "EDGEWARD_NOPE"}}]}),
            "policies.p.signature.keys[0].secret: environment variable EDGEWARD_NOPE is not set",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "hmac-sha256"}]}),
            "keys[0].secret: hmac-sha256 keys need",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}, "public_key": ed_pub_b64()}]}),
            "keys[0].public_key: hmac-sha256 keys take",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64(), "secret": {"base64": SECRET_B64}}]}),
            "keys[0].secret: ed25519 keys take only",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": "AAAA"}]}),
            "keys[0].public_key: public_key is 3 bytes",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}]}),
            "keys[0].public_key: public_key is not a valid ed25519 PEM",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": base64::engine::general_purpose::STANDARD.encode([0u8; 32])}]}),
            "keys[0].public_key: public_key is a weak",
        ),
        (
            json!({"keys": [{"id": "", "alg": "ed25519", "public_key": ed_pub_b64()}]}),
            "keys[0].id: key id must not be empty",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64(), "not_before": 10, "not_after": 5}]}),
            "keys[0]: not_before (10) is after not_after (5)",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "components": ["@method", "@foo"]}),
            "policies.p.signature.components[1]: unknown derived component \"@foo\"",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "components": ["@method", "@method"]}),
            "components[1]: \"@method\" is listed twice",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "components": []}),
            "components: at least one",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "label": "Sig 1"}),
            "label: \"Sig 1\" is not a valid",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "max_age_s": 0}),
            "max_age_s: must be greater",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "clock_skew_s": 400}),
            "clock_skew_s: must not exceed",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "max_body_bytes": 0}),
            "max_body_bytes: must be",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "rsa", "public_key": ed_pub_b64()}]}),
            "alg: unknown value, expected `hmac-sha256` or `ed25519`",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "extra": 1}),
            "unknown field `extra`",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64(), "kid": 1}]}),
            "unknown field `kid`",
        ),
        (
            json!({"keys": [{"id": "a", "alg": "ed25519", "public_key": ed_pub_b64()}], "nonce": "always"}),
            "nonce: unknown value, expected `required` or `optional`",
        ),
    ];
    for (doc, expected) in cases {
        let errs = compile_json(doc.clone()).map(|_| ()).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains(expected)),
            "{doc}: wanted {expected:?}, got {errs:?}"
        );
        for e in &errs {
            assert!(
                !e.contains(SECRET_B64) && !e.contains(&short),
                "secret in error: {e}"
            );
        }
    }
    // All errors are collected, not just the first.
    let errs = compile_json(json!({
        "keys": [{"id": "", "alg": "hmac-sha256"}],
        "components": ["@nope"],
        "max_age_s": 0
    }))
    .map(|_| ())
    .unwrap_err();
    assert!(errs.len() >= 4, "{errs:?}");
}

#[test]
fn defaults_and_env_secrets() {
    let input: SignatureInput = crate::json::from_value(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"env": "KEY_A"}}]
    }))
    .unwrap();
    assert_eq!(input.components, None);
    assert_eq!(
        input.effective_components(),
        ["@method", "@authority", "@path", "@query"]
    );
    assert_eq!(
        (input.max_age_s, input.clock_skew_s, input.max_body_bytes),
        (300, 5, 1_048_576)
    );
    assert_eq!(
        (input.nonce, input.label.clone()),
        (NonceMode::Optional, None)
    );
    let env = |name: &str| (name == "KEY_A").then(|| SECRET_B64.to_string());
    let mut errs = Errors::default();
    let p = compile(&input, "policies.p.signature", &env, &[], &mut errs).unwrap();
    assert!(errs.is_empty());
    assert!(!p.nonce_required);
    let dbg = format!("{p:?} {input:?}");
    assert!(
        !dbg.contains(SECRET_B64) && !dbg.contains("0123456789"),
        "{dbg}"
    );
    let r = req("GET /x?y=1 HTTP/1.1\nHost: a\n\n");
    let v = verify(&p, &signed(&r, &hmac_params(NOW)), NOW).unwrap();
    assert!(!v.needs_digest);
}

#[test]
fn header_values_cannot_inject_base_lines() {
    // A covered header whose value carries a line break would forge a base line: refused.
    let p = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "components": ["@method", "x-a"]
    }));
    let mut r = req("GET /x HTTP/1.1\nHost: a\nX-A: ok\n\n");
    let mut hp = hmac_params(NOW);
    hp.components = vec!["@method".into(), "x-a".into()];
    let s = signed(&r, &hp);
    assert!(verify(&p, &s, NOW).is_ok());
    r = s.clone();
    set_header(&mut r, "x-a", "ok\n\"@method\": GET");
    assert_eq!(verify(&p, &r, NOW), Err(Reason::SignatureInvalid));
}

#[test]
fn round_trip_every_component_kind() {
    let comps = [
        "@method",
        "@authority",
        "@scheme",
        "@target-uri",
        "@request-target",
        "@path",
        "@query",
        "@query-param;name=\"a\"",
        "example-dict;sf",
        "example-dict;key=\"b\"",
        "example-dict",
        "x-multi;bs",
        "x-multi",
    ];
    let p = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "components": comps
    }));
    let r = req("GET /p?a=1&b=2 HTTP/1.1\nHost: API.example.com:443\nExample-Dict:  a=1,   b=2;x=1\nX-Multi: one\nX-Multi: two\n\n");
    let mut hp = hmac_params(NOW);
    hp.components = comps.iter().map(|c| c.to_string()).collect();
    let s = signed(&r, &hp);
    assert!(verify(&p, &s, NOW).is_ok());
    // Each of these changes one component's value.
    type Edit = Box<dyn Fn(&mut ParsedRequest)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("query-param", Box::new(|m| m.target = "/p?a=2&b=2".into())),
        (
            "dict member",
            Box::new(|m| set_header(m, "example-dict", "a=1, b=3;x=1")),
        ),
        (
            "line split",
            Box::new(|m| {
                m.headers.retain(|(k, _)| k != "x-multi");
                m.headers.push(("x-multi".into(), "one, two".into()));
            }),
        ),
        (
            "port",
            Box::new(|m| set_header(m, "host", "api.example.com:8443")),
        ),
    ];
    for (what, edit) in edits {
        let mut m = s.clone();
        edit(&mut m);
        assert_eq!(verify(&p, &m, NOW), Err(Reason::SignatureInvalid), "{what}");
    }
    // Whitespace inside a dictionary is not significant under `sf`/`key`, so only the raw field breaks.
    let mut m = s.clone();
    set_header(&mut m, "example-dict", "a=1, b=2;x=1");
    let only_sf = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "components": ["example-dict;sf"]
    }));
    let mut hp2 = hmac_params(NOW);
    hp2.components = vec!["example-dict;sf".into(), "example-dict;key=\"b\"".into()];
    let s2 = signed(&r, &hp2);
    let mut m2 = s2.clone();
    set_header(&mut m2, "example-dict", "a=1, b=2;x=1");
    assert!(verify(&only_sf, &m2, NOW).is_ok());
    assert_eq!(verify(&p, &m, NOW), Err(Reason::SignatureInvalid));
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn verify_never_panics_on_hostile_headers(si in "[ -~]{0,80}", sig in "[ -~]{0,80}", dup in any::<bool>()) {
            let p = std_policy();
            let mut r = req(POST);
            r.headers.push(("signature-input".into(), si.clone()));
            r.headers.push(("signature".into(), sig.clone()));
            if dup {
                r.headers.push(("signature".into(), sig));
            }
            let got = verify(&p, &r, NOW);
            prop_assert!(matches!(got, Err(Reason::SignatureInvalid | Reason::SignatureMissing)));
            prop_assert_eq!(verify(&p, &r, NOW), got);
        }

        #[test]
        fn http_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_http_request(&bytes);
        }

        #[test]
        fn any_signed_request_verifies(path in "/[a-z0-9/%._-]{0,20}(\\?[a-z0-9=&%+]{0,20})?", body in "[ -~]{0,40}", created in 0u64..2_000_000_000) {
            let p = policy(json!({"keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}]}));
            let raw = format!("PUT {path} HTTP/1.1\nHost: h.example\nContent-Length: {}\n\n{body}", body.len());
            let r = req(&raw);
            let s = signed(&r, &hmac_params(created));
            let v = verify(&p, &s, created);
            prop_assert!(v.is_ok(), "{:?}", v);
            let v = v.unwrap_or_else(|_| unreachable!());
            prop_assert_eq!(v.needs_digest, !body.is_empty());
        }
    }
}

// --- Audit findings (2026-11-23): a query holding a URL, repeated dictionary keys, the work bound. ---

fn hmac_over(r: &ParsedRequest, components: &[&str], label: &str) -> SignedHeaders {
    let mut p = hmac_params(NOW);
    p.components = components.iter().map(|c| c.to_string()).collect();
    p.label = label.to_string();
    sign_request(r, &p).unwrap()
}

#[test]
fn target_uri_keeps_scheme_and_authority_when_the_query_holds_a_url() {
    let pol = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "components": ["@method", "@target-uri"]
    }));
    let raw = "GET /oauth/cb?next=https://app.example/home HTTP/1.1\r\nHost: tenant-a.example.com\r\n\r\n";
    let r = signed(&req(raw), &{
        let mut p = hmac_params(NOW);
        p.components = vec!["@method".into(), "@target-uri".into()];
        p
    });
    let id = ComponentId::parse_config("@target-uri").unwrap();
    let authority = r.authority();
    let head = r.head(&authority, Some(TlsVersion::V1_3), Peer::Invalid);
    assert_eq!(
        id.value(&head).as_deref(),
        Some("https://tenant-a.example.com/oauth/cb?next=https://app.example/home")
    );
    assert!(verify(&pol, &r, NOW).is_ok());
    // The same signature sent to another host no longer verifies.
    let mut moved = r.clone();
    set_header(&mut moved, "host", "tenant-b.example.com");
    assert_eq!(
        verify(&pol, &moved, NOW).err(),
        Some(Reason::SignatureInvalid)
    );
    // Absolute-form targets are still taken verbatim.
    let abs = req("GET https://api.example.com/x?y=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    let authority = abs.authority();
    let head = abs.head(&authority, Some(TlsVersion::V1_3), Peer::Invalid);
    assert_eq!(
        id.value(&head).as_deref(),
        Some("https://api.example.com/x?y=1")
    );
}

#[test]
fn repeated_dictionary_keys_in_a_covered_field_are_refused() {
    let pol = |c: &str| {
        policy(json!({
            "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
            "components": ["@method", "@path", c]
        }))
    };
    // (component, the value signed, the value sent, verifies?)
    let cases = [
        // `sf` on a list: members added, duplicated or given parameters must not verify.
        ("example-list;sf", "a, b", "a, b", true),
        ("example-list;sf", "a, b", "a;admin, b, a", false),
        ("example-list;sf", "a, b", "a, b, a", false),
        // A list that repeats a member is a list: it verifies as sent, every member covered.
        ("example-list;sf", "a, a", "a, a", true),
        ("example-list;sf", "a;x=1, a;x=2", "a;x=1, a;x=2", true),
        // A dictionary with a repeated key that is no list: the component is unavailable.
        ("example-dict;sf", "x=2", "x=1, x=2", false),
        ("example-dict;sf", "x=1, y=2", "x=1, y=2", true),
        // A dictionary: a prepended duplicate (first-wins recipients would read 5) is refused.
        ("example-dict;sf", "x=1, y=2", "x=5, x=1, y=2", false),
        ("example-dict;key=\"x\"", "x=1, y=2", "x=1, y=2", true),
        ("example-dict;key=\"x\"", "x=1, y=2", "x=5, y=2, x=1", false),
    ];
    for (comp, signed_value, sent, ok) in cases {
        let name = comp.split(';').next().unwrap();
        let raw =
            format!("GET /x HTTP/1.1\r\nHost: api.example.com\r\n{name}: {signed_value}\r\n\r\n");
        let r = req(&raw);
        let h = hmac_over(&r, &["@method", "@path", comp], "sig1");
        let mut out = apply(&r, &h);
        set_header(&mut out, name, sent);
        let got = verify(&pol(comp), &out, NOW);
        assert_eq!(
            got.is_ok(),
            ok,
            "{comp}: signed {signed_value:?}, sent {sent:?}: {got:?}"
        );
    }
}

#[test]
fn the_bases_of_one_request_read_a_bounded_number_of_bytes() {
    let pol = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "components": ["@method", "@path"]
    }));
    let big = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let value = big(4_000); // ~27 KB, 4,000 dictionary members
    assert!(value.len() > 20_000 && value.len() < 32_000);
    let raw = format!("GET /x HTTP/1.1\r\nHost: api.example.com\r\nx-big: {value}\r\n\r\n");
    let r = req(&raw);
    let comps = ["@method", "@path", "x-big;sf"];
    let good = hmac_over(&r, &comps, "good");
    // (labels placed before the good one, verifies?): each bogus label covers x-big too.
    let bogus = |label: &str, keyid: &str| {
        (
            format!("{label}=(\"@method\" \"@path\" \"x-big\";sf);created={NOW};keyid=\"{keyid}\""),
            format!("{label}=:AAAA:"),
        )
    };
    let cases: Vec<(Vec<(String, String)>, bool)> = vec![
        (vec![], true),
        // A known key id with a wrong signature reads x-big once: ~27 KB + ~27 KB is within 64 KiB.
        (vec![bogus("b1", "k1")], true),
        // Twice more: the good label's base would take the request past 64 KiB of reads.
        (vec![bogus("b1", "k1"), bogus("b2", "k1")], false),
        // Unknown key ids are refused before any base is built: they cost nothing.
        (
            (1..=7).map(|i| bogus(&format!("u{i}"), "nobody")).collect(),
            true,
        ),
    ];
    for (before, ok) in cases {
        let mut out = r.clone();
        let inputs: Vec<String> = before
            .iter()
            .map(|(i, _)| i.clone())
            .chain(std::iter::once(format!(
                "good={}",
                good.signature_input.trim_start_matches("good=")
            )))
            .collect();
        let sigs: Vec<String> = before
            .iter()
            .map(|(_, s)| s.clone())
            .chain(std::iter::once(good.signature.clone()))
            .collect();
        set_header(&mut out, "signature-input", &inputs.join(", "));
        set_header(&mut out, "signature", &sigs.join(", "));
        let got = verify(&pol, &out, NOW);
        assert_eq!(got.is_ok(), ok, "{} labels before: {got:?}", before.len());
    }
    // One header bigger than the whole bound cannot be covered at all.
    let huge = big(10_000);
    assert!(huge.len() > 64 * 1024);
    let r = req(&format!(
        "GET /x HTTP/1.1\r\nHost: api.example.com\r\nx-big: {huge}\r\n\r\n"
    ));
    let out = apply(&r, &hmac_over(&r, &comps, "sig1"));
    assert_eq!(
        verify(&pol, &out, NOW).err(),
        Some(Reason::SignatureInvalid)
    );
}

// --- Interop (issue 21): what independent implementations sign and Envoy delivers. ---

/// Envoy's normalize_path turns `/a/%7Euser` into `/a/~user` before the plugin sees it: a signature over
/// the path as sent (`%7E` or `%7e`) still verifies; other encodings of unreserved characters do not.
#[test]
fn a_path_signed_with_an_encoded_tilde_verifies_on_the_decoded_path() {
    let pol = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "components": ["@method", "@path", "@query"]
    }));
    for (sent, seen, ok) in [
        ("/a/%7Euser?x=1", "/a/~user?x=1", true),
        ("/a/%7euser/%7Eb", "/a/~user/~b", false),
        ("/a/%7euser/%7eb", "/a/~user/~b", true),
        ("/a/~user", "/a/~user", true),
        ("/a/%41dmin", "/a/Admin", false),
        ("/a/%7Euser", "/a/%7Euser", true),
    ] {
        let r = signed(
            &req(&format!(
                "GET {sent} HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
            )),
            &{
                let mut p = hmac_params(NOW);
                p.components = vec!["@method".into(), "@path".into(), "@query".into()];
                p
            },
        );
        let mut as_seen = r.clone();
        as_seen.target = seen.to_string();
        assert_eq!(
            verify(&pol, &as_seen, NOW).is_ok(),
            ok,
            "{sent} seen as {seen}"
        );
    }
}

/// `@target-uri` is the URI as the request carries it (RFC 9421 §2.2.2): case and default port kept;
/// only `@authority` is normalized.
#[test]
fn target_uri_is_the_uri_as_received() {
    for (authority, tls, want_uri, want_authority) in [
        (
            "EXAMPLE.com",
            true,
            "https://EXAMPLE.com/p?q=1",
            "example.com",
        ),
        (
            "example.com:443",
            true,
            "https://example.com:443/p?q=1",
            "example.com",
        ),
        (
            "example.com:80",
            false,
            "http://example.com:80/p?q=1",
            "example.com",
        ),
        (
            "example.com:8443",
            true,
            "https://example.com:8443/p?q=1",
            "example.com:8443",
        ),
    ] {
        let r = req(&format!("GET /p?q=1 HTTP/1.1\r\nHost: {authority}\r\n\r\n"));
        let a = r.authority();
        let head = r.head(&a, tls.then_some(TlsVersion::V1_3), Peer::Invalid);
        let uri = ComponentId::parse_config("@target-uri").unwrap();
        let auth = ComponentId::parse_config("@authority").unwrap();
        assert_eq!(uri.value(&head).as_deref(), Some(want_uri), "{authority}");
        assert_eq!(
            auth.value(&head).as_deref(),
            Some(want_authority),
            "{authority}"
        );
    }
}

/// `;bs` signs the bytes of each field line (RFC 9421 §2.1.3), also when they are not UTF-8: the plugin
/// keeps the bytes the host delivered.
#[test]
fn bs_covers_a_value_that_is_not_utf8() {
    use crate::request::{HeaderText, Headers};
    let mut text = HeaderText::default();
    text.push("x-ok", "plain").unwrap();
    text.push_bytes("x-bin", b"  \xff\xfe caf\xe9\t").unwrap();
    text.push_bytes("x-bin", b"\x80").unwrap();
    let slices = text.slices();
    let headers = Headers::from_text(&slices, text.raw());
    let v = components::field_value(headers, "x-bin", false, None, true);
    assert_eq!(v.as_deref(), Some("://4gY2Fm6Q==:, :gA==:"));
    assert_eq!(
        components::field_value(headers, "x-ok", false, None, true).as_deref(),
        Some(":cGxhaW4=:")
    );
    // Without `bs` the lossy text is not ASCII: the component is unavailable, never a wrong value.
    let plain = ComponentId::parse_config("x-bin").unwrap();
    let head = RequestHead {
        method: "GET",
        authority: "a",
        path: "/",
        route_name: None,
        tls: None,
        peer: Peer::Invalid,
        headers,
    };
    assert_eq!(plain.value(&head), None);
    let bs = ComponentId::parse_config("x-bin;bs").unwrap();
    assert_eq!(bs.value(&head).as_deref(), Some("://4gY2Fm6Q==:, :gA==:"));
}

/// A dictionary with a repeated key that is no list cannot even be signed: the component is unavailable.
#[test]
fn a_repeated_dictionary_key_is_unavailable_to_sign() {
    let r = req("GET /x HTTP/1.1\r\nHost: a\r\nexample-dict: x=1, x=2\r\n\r\n");
    let mut p = hmac_params(NOW);
    p.components = vec!["@method".into(), "example-dict;sf".into()];
    assert!(sign_request(&r, &p).is_err());
    let a = r.authority();
    let head = r.head(&a, None, Peer::Invalid);
    let id = ComponentId::parse_config("example-dict;sf").unwrap();
    assert_eq!(id.value(&head), None);
}

/// A raw request whose header holds obs-text (as `edgeward sign` reads it): `;bs` signs the bytes, the
/// verifier over the bytes the parser kept accepts it, and another byte with the same lossy text is
/// refused.
#[test]
fn bs_signs_obs_text_read_from_a_raw_request() {
    use crate::http1::render;
    let raw: &[u8] = b"GET /x HTTP/1.1\r\nHost: api.example.com\r\nX-Raw: raw \x80\xff end\r\n\r\n";
    let r = parse_http_request(raw).unwrap();
    let mut p = hmac_params(NOW);
    p.components = vec!["@method".into(), "x-raw;bs".into()];
    let h = sign_request(&r, &p).unwrap();
    let signed = parse_http_request(&render(&r, &h.headers())).unwrap();
    let pol = policy(json!({
        "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": SECRET_B64}}],
        "components": ["@method", "x-raw;bs"]
    }));
    assert!(verify(&pol, &signed, NOW).is_ok());
    let at = raw.iter().position(|&b| b == 0x80).unwrap();
    let mut other = raw.to_vec();
    other[at] = 0x81;
    let other = parse_http_request(&other).unwrap();
    let tampered = parse_http_request(&render(&other, &h.headers())).unwrap();
    assert_eq!(tampered.headers, signed.headers);
    assert_eq!(
        verify(&pol, &tampered, NOW).map(|v| v.key_id),
        Err(Reason::SignatureInvalid)
    );
}
