use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

const RFC8037: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/jose/rfc8037-ed25519-jwk.json"
));

fn vector() -> Value {
    serde_json::from_str(RFC8037).unwrap()
}

fn parse_value(v: &Value) -> Result<Parsed, KeySetError> {
    parse(v.to_string().as_bytes(), 64 * 1024, 64)
}

fn key(seed: u8) -> VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key()
}

fn x(k: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(k.as_bytes())
}

/// RFC 8037 A.3 / RFC 7638: the thumbprint of the RFC's public key, from a set holding it.
#[test]
fn rfc8037_thumbprint() {
    let v = vector();
    let set = json!({"keys": [v["public_jwk"]]});
    let parsed = parse_value(&set).unwrap();
    assert_eq!(parsed.skipped, 0);
    let [k] = parsed.set.keys.as_slice() else {
        panic!("{parsed:?}")
    };
    assert_eq!(
        k.thumbprint,
        v["thumbprint_sha256_base64url"].as_str().unwrap()
    );
    assert_eq!(k.kid, None);
    // The input RFC 7638 hashes is the one the vector states.
    let input = v["thumbprint_input"].as_str().unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes())),
        k.thumbprint
    );
}

/// A private JWK (with `d`) published in a set is left out: its owner must rotate it.
#[test]
fn private_keys_are_left_out() {
    let v = vector();
    let parsed = parse_value(&json!({"keys": [v["private_jwk"], v["public_jwk"]]})).unwrap();
    assert_eq!(parsed.set.keys.len(), 1);
    assert_eq!(parsed.skipped, 1);
}

/// Every kind of entry that is not a usable Ed25519 verification key is skipped, one at a time; the
/// usable key next to it still loads.
#[test]
fn unusable_entries_are_skipped_not_fatal() {
    let good = key(1);
    let gx = x(&good);
    let other = x(&key(2));
    // The identity point: a small-order (weak) key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = URL_SAFE_NO_PAD.encode(identity);
    let mut unusable = vec![
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "EC", "crv": "P-256", "x": other, "y": other}),
        json!({"kty": "OKP", "crv": "X25519", "x": other}),
        json!({"kty": "OKP", "crv": "Ed448", "x": other}),
        json!({"kty": "OKP", "crv": "Ed25519"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": 5}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": format!("{other}=")}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 31])}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": weak}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "use": "enc"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "key_ops": ["sign"]}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "key_ops": "verify"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "alg": "ES256"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "kid": ""}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "kid": "a\nb"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "kid": "k".repeat(257)}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "kid": 7}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "nbf": 20, "exp": 10}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "nbf": -1}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "exp": 1.5}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": other, "exp": "10"}),
        json!("a string"),
        json!(null),
        json!([1, 2]),
    ];
    // The standard base64 alphabet is not base64url (for a key whose encoding differs).
    let standard = (1u8..=255)
        .map(|s| base64::engine::general_purpose::STANDARD_NO_PAD.encode(key(s).as_bytes()))
        .find(|e| e.contains(['+', '/']))
        .unwrap();
    unusable.push(json!({"kty": "OKP", "crv": "Ed25519", "x": standard}));
    for entry in unusable {
        let set = json!({"keys": [entry, {"kty": "OKP", "crv": "Ed25519", "x": gx}]});
        let parsed = parse_value(&set).unwrap_or_else(|e| panic!("{entry}: {e}"));
        assert_eq!(parsed.skipped, 1, "{entry}");
        assert_eq!(parsed.set.keys.len(), 1, "{entry}");
        assert_eq!(parsed.set.keys[0].key, good, "{entry}");
    }
}

/// What a usable key may carry: `kid`, `use: sig`, `key_ops` with `verify`, `alg` EdDSA or Ed25519,
/// `nbf`/`exp`, and members nobody here reads (objects and arrays included).
#[test]
fn usable_keys_with_their_members() {
    let k = key(3);
    let set = json!({
        "comment": {"nested": [1, {"deep": null}], "n": -2.5e3},
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x(&k), "kid": "k-1", "use": "sig",
             "key_ops": ["verify"], "alg": "EdDSA", "nbf": 10, "exp": 20,
             "x5c": ["..."], "extra": {"a": [true, false]}},
            {"kty": "OKP", "crv": "Ed25519", "x": x(&key(4)), "alg": "Ed25519"},
        ],
        "trailer": true
    });
    let parsed = parse_value(&set).unwrap();
    assert_eq!(parsed.skipped, 0);
    let first = &parsed.set.keys[0];
    assert_eq!(first.kid.as_deref(), Some("k-1"));
    assert_eq!((first.not_before, first.not_after), (Some(10), Some(20)));
    assert!(first.valid_at(10) && first.valid_at(20));
    assert!(!first.valid_at(9) && !first.valid_at(21));
    assert!(first.named("k-1", KeyIdMode::Kid));
    assert!(!first.named(&first.thumbprint, KeyIdMode::Kid));
    assert!(first.named(&first.thumbprint, KeyIdMode::Thumbprint));
    assert!(!first.named("k-1", KeyIdMode::Thumbprint));
    // Without a kid, the thumbprint names the key in both modes.
    let second = &parsed.set.keys[1];
    assert!(second.named(&second.thumbprint, KeyIdMode::Kid));
    assert_eq!(
        parsed.set.named("k-1", KeyIdMode::Kid, 15).count(),
        1,
        "valid at 15"
    );
    assert_eq!(parsed.set.named("k-1", KeyIdMode::Kid, 25).count(), 0);
}

/// What refuses the whole set (the last good one is then kept by the caller).
#[test]
fn whole_set_failures() {
    let one = json!({"kty": "OKP", "crv": "Ed25519", "x": x(&key(5))});
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not a JWK Set"),
        (b"[]".to_vec(), "expected an object"),
        (b"{}".to_vec(), "no `keys` array"),
        (br#"{"keys": {}}"#.to_vec(), "expected an array"),
        (br#"{"keys": []} x"#.to_vec(), "trailing characters"),
        (br#"{"keys": [}"#.to_vec(), "not a JWK Set"),
        (vec![b'{', 0xff, b'}'], "not UTF-8"),
        (
            json!({"keys": vec![one.clone(); 3]})
                .to_string()
                .into_bytes(),
            "more than max_keys (2)",
        ),
        (vec![b' '; 4097], "larger than max_bytes"),
        (
            format!("{{\"keys\": {}", "[".repeat(100)).into_bytes(),
            "nested too deeply",
        ),
    ];
    for (bytes, want) in cases {
        let e = parse(&bytes, 4096, 2).unwrap_err();
        assert!(e.to_string().contains(want), "{e} (want {want})");
    }
    // An empty set is a set (a directory that revoked every key).
    assert_eq!(
        parse(br#"{"keys": []}"#, 4096, 2).unwrap().set.keys.len(),
        0
    );
}

/// The compact form round-trips, and any truncation or extra byte is refused.
#[test]
fn compact_form_round_trips() {
    let set = KeySet {
        keys: vec![
            SourceKey {
                kid: Some("a".into()),
                thumbprint: thumbprint(&key(6)),
                key: key(6),
                not_before: Some(1),
                not_after: None,
            },
            SourceKey {
                kid: None,
                thumbprint: thumbprint(&key(7)),
                key: key(7),
                not_before: None,
                not_after: Some(u64::MAX),
            },
        ],
    };
    let bytes = encode(&set);
    assert_eq!(decode(&bytes), Some(set.clone()));
    for n in 0..bytes.len() {
        assert_eq!(decode(&bytes[..n]), None, "cut at {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode(&longer), None);
    assert_eq!(decode(&encode(&KeySet::default())), Some(KeySet::default()));
}

/// `jwk_json` writes a JWK that serde_json reads, this reader loads to the same key, and whose
/// thumbprint matches the RFC 7638 computation over serde_json's canonical members.
#[test]
fn jwk_json_round_trips() {
    for seed in [1u8, 9, 200] {
        let k = key(seed);
        let text = jwk_json(&k, Some("kid \"quoted\" \\ \u{1}"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["kid"], "kid \"quoted\" \\ \u{1}");
        let canonical = json!({"crv": v["crv"], "kty": v["kty"], "x": v["x"]}).to_string();
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(thumbprint(&k), expected);
        // The kid has a control character: the key is left out when read back; without it, it loads.
        let plain: Value = serde_json::from_str(&jwk_json(&k, Some("k"))).unwrap();
        let parsed = parse_value(&json!({ "keys": [plain] })).unwrap();
        assert_eq!(parsed.set.keys[0].key, k);
        assert_eq!(parsed.set.keys[0].thumbprint, expected);
    }
}

/// RFC 7517 §4: a JWK repeating a member name is left out, whichever copy would have been usable (the
/// reader does not pick the first or the last); a set giving `keys` twice is refused as a whole.
#[test]
fn repeated_member_names() {
    let good = x(&key(1));
    for entry in [
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{good}","use":5,"use":"sig"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{good}","use":"enc","use":"sig"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{good}","x":"{good}"}}"#),
        format!(r#"{{"kty":"RSA","kty":"OKP","crv":"Ed25519","x":"{good}"}}"#),
    ] {
        let text = format!(r#"{{"keys":[{entry}]}}"#);
        let parsed = parse(text.as_bytes(), 4096, 8).unwrap();
        assert!(parsed.set.keys.is_empty(), "{text}");
        assert_eq!(parsed.skipped, 1, "{text}");
    }
    // The same key without the repetition is read.
    let text = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{good}","use":"sig"}}]}}"#);
    assert_eq!(parse(text.as_bytes(), 4096, 8).unwrap().set.keys.len(), 1);
    let text = format!(r#"{{"keys":[],"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{good}"}}]}}"#);
    assert!(matches!(
        parse(text.as_bytes(), 4096, 8),
        Err(KeySetError::Malformed(why)) if why.contains("`keys` is given twice")
    ));
}
