use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// RFC 8410 section 10.1.
const RFC8410_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PUBLIC KEY-----
";
/// RFC 8410 section 10.3, first example (PKCS#8 v1).
const RFC8410_PRIVATE_V1: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----
";
/// RFC 8410 section 10.3, second example (v2: a friendly-name attribute and the public key).
const RFC8410_PRIVATE_V2: &str = "-----BEGIN PRIVATE KEY-----
MHICAQEwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
oB8wHQYKKoZIhvcNAQkJFDEPDA1DdXJkbGUgQ2hhaXJzgSEAGb9ECWmEzf6FQbrB
Z9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PRIVATE KEY-----
";
/// RFC 9421 appendix B.1.4 (`test-key-ed25519`).
const RFC9421_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";
const RFC9421_PUBLIC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/rfc9421/test-key-ed25519.pub.pem"
));

// Expected bytes, as the `pkcs8` crate decodes them.
const RFC8410_SEED: &str = "d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842";
const RFC8410_KEY: &str = "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1";
const RFC9421_SEED: &str = "9f8362f87a484a954e6e740c5b4c0e84229139a20aa8ab56ff66586f6a7d29c5";
const RFC9421_KEY: &str = "26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex32(s: &str) -> [u8; 32] {
    hex(s).try_into().unwrap()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// PEM as RFC 7468 writes it: 64-column lines, LF.
fn armor(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s + &format!("-----END {label}-----\n")
}

/// Wraps `content` in a SEQUENCE with a DER length.
fn seq(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut v = match len {
        0..=0x7f => vec![0x30, len as u8],
        0x80..=0xff => vec![0x30, 0x81, len as u8],
        _ => vec![0x30, 0x82, (len >> 8) as u8, len as u8],
    };
    v.extend_from_slice(content);
    v
}

fn spki(key: &[u8]) -> Vec<u8> {
    cat(&[&SPKI_PREFIX, key])
}

/// PKCS#8 content (inside the outer SEQUENCE) for version `v`, then `tail` (attributes, public key).
fn pkcs8(v: u8, seed: &[u8], tail: &[u8]) -> Vec<u8> {
    seq(&cat(&[&[0x02, 0x01, v], &PKCS8_ALG_AND_KEY, seed, tail]))
}

fn rfc8410_pub_tail() -> Vec<u8> {
    cat(&[&PKCS8_PUBLIC_KEY, &hex(RFC8410_KEY)])
}

#[test]
fn public_keys_decode_to_the_same_bytes_as_before() {
    let body = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
    let cases: Vec<(&str, String, &str)> = vec![
        ("rfc8410 10.1", RFC8410_PUBLIC.into(), RFC8410_KEY),
        ("shared vector", RFC9421_PUBLIC.into(), RFC9421_KEY),
        ("crlf", RFC8410_PUBLIC.replace('\n', "\r\n"), RFC8410_KEY),
        (
            "whitespace around the block and lines",
            format!("\n\t -----BEGIN PUBLIC KEY-----  \n\n  {body}\t\r\n\n-----END PUBLIC KEY-----\n\n "),
            RFC8410_KEY,
        ),
        (
            "short lines",
            format!("-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----", &body[..16], &body[16..]),
            RFC8410_KEY,
        ),
        ("built", armor("PUBLIC KEY", &spki(&hex(RFC9421_KEY))), RFC9421_KEY),
    ];
    for (name, pem, want) in cases {
        assert_eq!(ed25519_public_key_from_pem(&pem), Ok(hex32(want)), "{name}");
    }
}

#[test]
fn private_keys_decode_to_the_same_seed_as_before() {
    let seed = hex(RFC8410_SEED);
    let one_line = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
        STANDARD.encode(pkcs8(1, &seed, &rfc8410_pub_tail()))
    );
    // 130 bytes of attributes push the outer length into the long form (0x81).
    let big_attrs = cat(&[&[0xa0, 0x81, 0x82], &[0x30; 130]]);
    let cases: Vec<(&str, String, &str)> = vec![
        ("rfc8410 10.3 v1", RFC8410_PRIVATE_V1.into(), RFC8410_SEED),
        (
            "rfc8410 10.3 v2, attributes and public key",
            RFC8410_PRIVATE_V2.into(),
            RFC8410_SEED,
        ),
        ("rfc9421 B.1.4", RFC9421_PRIVATE.into(), RFC9421_SEED),
        (
            "v2 without attributes (ed25519-dalek's encoder)",
            armor("PRIVATE KEY", &pkcs8(1, &seed, &rfc8410_pub_tail())),
            RFC8410_SEED,
        ),
        (
            "v1 with attributes",
            armor("PRIVATE KEY", &pkcs8(0, &seed, &[0xa0, 0x02, 0x30, 0x00])),
            RFC8410_SEED,
        ),
        (
            "v1 with empty attributes",
            armor("PRIVATE KEY", &pkcs8(0, &seed, &[0xa0, 0x00])),
            RFC8410_SEED,
        ),
        (
            "long-form lengths",
            armor("PRIVATE KEY", &pkcs8(0, &seed, &big_attrs)),
            RFC8410_SEED,
        ),
        (
            "crlf",
            RFC8410_PRIVATE_V2.replace('\n', "\r\n"),
            RFC8410_SEED,
        ),
        (
            "cr only",
            RFC8410_PRIVATE_V2.replace('\n', "\r"),
            RFC8410_SEED,
        ),
        (
            "blank lines",
            RFC8410_PRIVATE_V2.replace('\n', "\n\n"),
            RFC8410_SEED,
        ),
        (
            "indented",
            RFC8410_PRIVATE_V2.replace('\n', "\n    "),
            RFC8410_SEED,
        ),
        ("one long line", one_line, RFC8410_SEED),
    ];
    for (name, pem, want) in cases {
        let key = ed25519_signing_key_from_pem(&pem);
        assert_eq!(key.map(|k| k.to_bytes()), Ok(hex32(want)), "{name}");
    }
    let key = ed25519_signing_key_from_pem(RFC9421_PRIVATE).unwrap();
    assert_eq!(key.verifying_key().to_bytes(), hex32(RFC9421_KEY));
}

#[test]
fn malformed_public_keys_are_refused() {
    use PemError::*;
    let key = hex(RFC8410_KEY);
    let good = armor("PUBLIC KEY", &spki(&key));
    let body = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
    let with_body =
        |b: &str| format!("-----BEGIN PUBLIC KEY-----\n{b}\n-----END PUBLIC KEY-----\n");
    let x25519 = cat(&[
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
        ],
        &key,
    ]);
    let short = cat(&[
        &[
            0x30, 0x29, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x20, 0x00,
        ],
        &key[..31],
    ]);
    let long = cat(&[
        &[
            0x30, 0x2b, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x22, 0x00,
        ],
        &key,
        &[0],
    ]);
    let unused_bits = cat(&[&SPKI_PREFIX[..11], &[0x01], &key]);
    let null_params = cat(&[
        &[
            0x30, 0x2c, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x03, 0x21, 0x00,
        ],
        &key,
    ]);
    let cases: Vec<(&str, String, PemError)> = vec![
        ("empty", String::new(), Armor),
        ("whitespace only", " \r\n\t\n".into(), Armor),
        (
            "private key label",
            armor("PRIVATE KEY", &spki(&key)),
            Armor,
        ),
        ("rsa label", armor("RSA PUBLIC KEY", &spki(&key)), Armor),
        ("lowercase label", armor("public key", &spki(&key)), Armor),
        (
            "mismatched end label",
            good.replace("END PUBLIC KEY", "END PRIVATE KEY"),
            Armor,
        ),
        (
            "no end line",
            good.replace("-----END PUBLIC KEY-----", ""),
            Armor,
        ),
        (
            "end line glued to the body",
            with_body(body).replace("=\n-----END", "=-----END"),
            Armor,
        ),
        (
            "begin line glued to the body",
            with_body(body).replace("-----\nMCow", "-----MCow"),
            Armor,
        ),
        ("text before begin", format!("key:\n{good}"), Armor),
        ("trailing garbage after end", format!("{good}junk\n"), Armor),
        ("two blocks", format!("{good}{good}"), Armor),
        ("x25519 oid", armor("PUBLIC KEY", &x25519), Der),
        ("43-byte body", armor("PUBLIC KEY", &short), Der),
        ("45-byte body", armor("PUBLIC KEY", &long), Der),
        (
            "trailing der byte",
            armor("PUBLIC KEY", &cat(&[&spki(&key), &[0]])),
            Der,
        ),
        (
            "bit string with unused bits",
            armor("PUBLIC KEY", &unused_bits),
            Der,
        ),
        (
            "algorithm with null parameters",
            armor("PUBLIC KEY", &null_params),
            Der,
        ),
        ("empty body", with_body(""), Der),
        (
            "bad base64 character",
            with_body(&body.replace('w', "!")),
            Base64,
        ),
        ("no padding", with_body(body.trim_end_matches('=')), Base64),
        (
            "non-canonical last character",
            with_body(&body.replace("ZuE=", "ZuF=")),
            Base64,
        ),
        (
            "space inside a line",
            with_body(&body.replace("BQ", "B Q")),
            Base64,
        ),
        (
            "header line",
            with_body(&format!("Comment: x\n\n{body}")),
            Base64,
        ),
        (
            "body too long",
            with_body(&"A".repeat(MAX_BASE64 + 4)),
            Base64,
        ),
    ];
    for (name, pem, want) in cases {
        assert_eq!(ed25519_public_key_from_pem(&pem), Err(want), "{name}");
    }
}

#[test]
fn malformed_private_keys_are_refused() {
    use PemError::*;
    let seed = hex(RFC8410_SEED);
    let v1 = pkcs8(0, &seed, &[]);
    let pub_tail = rfc8410_pub_tail();
    let mut wrong_pub = pub_tail.clone();
    *wrong_pub.last_mut().unwrap() ^= 1;
    let x25519 = seq(&cat(&[
        &[
            0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
        ],
        &seed,
    ]));
    let null_params = seq(&cat(&[
        &[
            0x02, 0x01, 0x00, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x04, 0x22,
            0x04, 0x20,
        ],
        &seed,
    ]));
    let short_seed = seq(&cat(&[
        &[
            0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x21, 0x04, 0x1f,
        ],
        &seed[..31],
    ]));
    // rsaEncryption (1.2.840.113549.1.1.1) with a stand-in key.
    let rsa = seq(&[
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00, 0x04, 0x03, 0x30, 0x01, 0x00,
    ]);
    let mut non_minimal = v1.clone();
    non_minimal.splice(1..2, [0x81, 0x2e]);
    let mut unused_bits = pub_tail.clone();
    unused_bits[2] = 0x01;
    let url_safe = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::URL_SAFE.encode(&v1)
    );
    let cases: Vec<(&str, String, PemError)> = vec![
        ("empty", String::new(), Armor),
        ("encrypted key", armor("ENCRYPTED PRIVATE KEY", &v1), Armor),
        ("public key label", armor("PUBLIC KEY", &v1), Armor),
        ("openssh label", armor("OPENSSH PRIVATE KEY", &v1), Armor),
        (
            "mismatched end label",
            armor("PRIVATE KEY", &v1).replace("END PRIVATE", "END PUBLIC"),
            Armor,
        ),
        (
            "trailing garbage after end",
            format!("{RFC8410_PRIVATE_V1}x"),
            Armor,
        ),
        (
            "text before begin",
            format!("Key for partner:\n{RFC8410_PRIVATE_V1}"),
            Armor,
        ),
        ("x25519 oid", armor("PRIVATE KEY", &x25519), Der),
        ("rsa key", armor("PRIVATE KEY", &rsa), Der),
        (
            "algorithm with null parameters",
            armor("PRIVATE KEY", &null_params),
            Der,
        ),
        ("31-byte seed", armor("PRIVATE KEY", &short_seed), Der),
        (
            "trailing der byte",
            armor("PRIVATE KEY", &cat(&[&v1, &[0]])),
            Der,
        ),
        (
            "non-minimal length",
            armor("PRIVATE KEY", &non_minimal),
            Der,
        ),
        (
            "version 3",
            armor("PRIVATE KEY", &pkcs8(2, &seed, &[])),
            Der,
        ),
        (
            "v1 with a public key",
            armor("PRIVATE KEY", &pkcs8(0, &seed, &pub_tail)),
            Der,
        ),
        (
            "v2 without its public key",
            armor("PRIVATE KEY", &pkcs8(1, &seed, &[])),
            Der,
        ),
        (
            "public key with unused bits",
            armor("PRIVATE KEY", &pkcs8(1, &seed, &unused_bits)),
            Der,
        ),
        (
            "attributes after the public key",
            armor(
                "PRIVATE KEY",
                &pkcs8(1, &seed, &cat(&[&pub_tail, &[0xa0, 0x00]])),
            ),
            Der,
        ),
        (
            "extension [2] after the public key",
            armor(
                "PRIVATE KEY",
                &pkcs8(1, &seed, &cat(&[&pub_tail, &[0x82, 0x00]])),
            ),
            Der,
        ),
        (
            "truncated attributes",
            armor("PRIVATE KEY", &pkcs8(0, &seed, &[0xa0, 0x05, 0x30, 0x00])),
            Der,
        ),
        (
            "public key of another seed",
            armor("PRIVATE KEY", &pkcs8(1, &seed, &wrong_pub)),
            PublicKeyMismatch,
        ),
        ("url-safe base64", url_safe, Base64),
    ];
    for (name, pem, want) in cases {
        let got = ed25519_signing_key_from_pem(&pem).map(|k| k.to_bytes());
        assert_eq!(got, Err(want), "{name}");
    }
    // A primitive [0] where the attributes belong is not DER, but the `pkcs8` crate reads past it (it
    // skips the attributes without checking the constructed bit): the key is read, with its own seed.
    let primitive = armor("PRIVATE KEY", &pkcs8(0, &seed, &[0x80, 0x00]));
    assert_eq!(
        ed25519_signing_key_from_pem(&primitive).map(|k| k.to_bytes()),
        Ok(hex32(RFC8410_SEED))
    );
}
