//! ed25519 keys in PEM (RFC 7468) with the fixed RFC 8410 DER shapes, without a general ASN.1 stack.
//!
//! An ed25519 SPKI or PKCS#8 key has one DER encoding per shape, so byte comparison replaces the
//! `der`/`pkcs8`/`spki`/`pem-rfc7468`/`base64ct` crates (about 22 KB of the optimized plugin).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

/// Longest DER document accepted: a PKCS#8 key is 48 or 83 bytes plus its (rare, small) attributes.
const MAX_DER: usize = 1024;
/// Longest base64 body (without line breaks) that can hold [`MAX_DER`] bytes.
const MAX_BASE64: usize = MAX_DER.div_ceil(3) * 4;

/// SubjectPublicKeyInfo of an ed25519 key up to the key (RFC 8410 section 4): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) of 32 bytes }.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The algorithm of a PKCS#8 key followed by its private key (RFC 8410 section 7): AlgorithmIdentifier
/// { OID 1.3.101.112 } (no parameters), OCTET STRING { OCTET STRING of the 32-byte seed }.
const PKCS8_ALG_AND_KEY: [u8; 11] = [
    0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// `[1] IMPLICIT BIT STRING` of 32 bytes, 0 unused bits: the public key of a version 2 (v2) PKCS#8 key.
const PKCS8_PUBLIC_KEY: [u8; 3] = [0x81, 0x21, 0x00];

/// Why a PEM key was refused. Callers show one message for all; the detail is for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PemError {
    /// Not exactly one `-----BEGIN label-----` … `-----END label-----` block with the expected label.
    Armor,
    /// The body is not standard, padded, canonical base64 (or is too long).
    Base64,
    /// The DER document is not an ed25519 key in the RFC 8410 encoding.
    Der,
    /// A PKCS#8 v2 key whose attached public key is not the seed's.
    PublicKeyMismatch,
}

/// The 32 key bytes of an ed25519 SPKI `PUBLIC KEY` PEM (not yet checked to be a curve point).
pub(super) fn ed25519_public_key_from_pem(pem: &str) -> Result<[u8; 32], PemError> {
    let mut der = [0u8; MAX_DER];
    let der = decode_armor(pem, "PUBLIC KEY", &mut der)?;
    der.strip_prefix(&SPKI_PREFIX)
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .ok_or(PemError::Der)
}

/// The ed25519 signing key of a PKCS#8 `PRIVATE KEY` PEM (v1, or v2 with its public key, RFC 8410 section 7).
pub(super) fn ed25519_signing_key_from_pem(
    pem: &str,
) -> Result<ed25519_dalek::SigningKey, PemError> {
    let mut buf = Zeroizing::new([0u8; MAX_DER]);
    let der = decode_armor(pem, "PRIVATE KEY", &mut buf)?;
    let (seed, public) = parse_pkcs8(der)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    match public {
        Some(public) if key.verifying_key().as_bytes() != &public => {
            Err(PemError::PublicKeyMismatch)
        }
        _ => Ok(key),
    }
}

/// Decodes the single PEM block labelled `label` into `out`. Whitespace (any line ending included) is
/// allowed around the block and around each line, nothing else: no explanatory text, no headers.
fn decode_armor<'o>(
    pem: &str,
    label: &str,
    out: &'o mut [u8; MAX_DER],
) -> Result<&'o [u8], PemError> {
    let mut lines = pem
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if lines.next().and_then(|l| boundary(l, "-----BEGIN ")) != Some(label) {
        return Err(PemError::Armor);
    }
    // The body holds a private key: wipe the copy when done.
    let mut body = Zeroizing::new([0u8; MAX_BASE64]);
    let mut len = 0;
    let mut ended = false;
    for line in lines {
        if ended {
            return Err(PemError::Armor);
        }
        if line.starts_with("-----") {
            if boundary(line, "-----END ") != Some(label) {
                return Err(PemError::Armor);
            }
            ended = true;
            continue;
        }
        let end = len + line.len();
        body.get_mut(len..end)
            .ok_or(PemError::Base64)?
            .copy_from_slice(line.as_bytes());
        len = end;
    }
    if !ended {
        return Err(PemError::Armor);
    }
    let body = body.get(..len).ok_or(PemError::Base64)?;
    let n = STANDARD
        .decode_slice(body, out.as_mut_slice())
        .map_err(|_| PemError::Base64)?;
    out.get(..n).ok_or(PemError::Base64)
}

/// The label of a `-----BEGIN label-----` / `-----END label-----` line (`kind` is the part before it).
fn boundary<'l>(line: &'l str, kind: &str) -> Option<&'l str> {
    line.strip_prefix(kind)?.strip_suffix("-----")
}

/// Seed and optional attached public key of a PKCS#8 ed25519 key. Accepted: SEQUENCE { INTEGER 0,
/// algorithm, private key, [0] attributes OPTIONAL } and the same with INTEGER 1 and the `[1]` public
/// key after them (RFC 5958 OneAsymmetricKey): what the `pkcs8` crate accepted for ed25519 keys.
fn parse_pkcs8(der: &[u8]) -> Result<(Zeroizing<[u8; 32]>, Option<[u8; 32]>), PemError> {
    let (tag, content, rest) = tlv(der).ok_or(PemError::Der)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(PemError::Der);
    }
    let (v2, rest) = match content {
        [0x02, 0x01, 0x00, rest @ ..] => (false, rest),
        [0x02, 0x01, 0x01, rest @ ..] => (true, rest),
        _ => return Err(PemError::Der),
    };
    let rest = rest.strip_prefix(&PKCS8_ALG_AND_KEY).ok_or(PemError::Der)?;
    let (seed, mut rest) = rest.split_first_chunk::<32>().ok_or(PemError::Der)?;
    let seed = Zeroizing::new(*seed);
    // Attributes (e.g. a friendly name, RFC 8410 section 10.3) carry nothing for signing: skipped.
    if let Some((0xa0, _, after)) = tlv(rest) {
        rest = after;
    }
    let public = match (v2, rest.strip_prefix(&PKCS8_PUBLIC_KEY)) {
        (false, _) if rest.is_empty() => None,
        (true, Some(key)) => Some(<[u8; 32]>::try_from(key).map_err(|_| PemError::Der)?),
        _ => return Err(PemError::Der),
    };
    Ok((seed, public))
}

/// Splits one DER element off `der`: (tag, content, rest). Only definite, minimal lengths (DER); tags of
/// one byte, which is all a PKCS#8 ed25519 key uses.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => match rest.split_first()? {
            (&len, rest) if len >= 0x80 => (usize::from(len), rest),
            _ => return None,
        },
        0x82 => match rest.split_first_chunk::<2>()? {
            (&len, rest) if len[0] != 0 => (usize::from(u16::from_be_bytes(len)), rest),
            _ => return None,
        },
        _ => return None,
    };
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
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

    // Expected bytes as the `pkcs8` crate's decoder (the implementation before this module) gave them.
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
            0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
            0x01, 0x01, 0x05, 0x00, 0x04, 0x03, 0x30, 0x01, 0x00,
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
                "primitive [0]",
                armor("PRIVATE KEY", &pkcs8(0, &seed, &[0x80, 0x00])),
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
    }

    #[test]
    fn der_lengths_are_minimal_and_bounded() {
        let cases: &[(&[u8], Option<(u8, &[u8], &[u8])>)] = &[
            (&[0x30, 0x01, 0xaa, 0xbb], Some((0x30, &[0xaa], &[0xbb]))),
            (&[0x30, 0x00], Some((0x30, &[], &[]))),
            (&[0x30, 0x81, 0x01, 0xaa], None),
            (&[0x30, 0x82, 0x00, 0x01, 0xaa], None),
            (&[0x30, 0x83, 0x00, 0x00, 0x01, 0xaa], None),
            (&[0x30, 0x80], None),
            (&[0x30, 0x02, 0xaa], None),
            (&[0x1f, 0x01, 0xaa], None),
            (&[0x30], None),
            (&[], None),
        ];
        for (der, want) in cases {
            assert_eq!(tlv(der), *want, "{der:02x?}");
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{
        DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _,
    };
    use proptest::prelude::*;

    /// The armor the `pkcs8` crate writes (its decoder wants 64-column lines).
    fn armor(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<_> = b64
            .as_bytes()
            .chunks(64)
            .map(String::from_utf8_lossy)
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// Applies one edit to `content` then wraps it in a SEQUENCE again, so the inner parsing is exercised.
    fn mutate(content: &[u8], at: prop::sample::Index, kind: u8, byte: u8) -> Vec<u8> {
        let mut c = content.to_vec();
        let i = at.index(c.len());
        match kind {
            0 => c[i] ^= byte.max(1),
            1 => c.insert(i, byte),
            _ => {
                c.remove(i);
            }
        }
        let mut der = vec![0x30];
        if c.len() < 0x80 {
            der.push(c.len() as u8);
        } else {
            der.extend([0x81, c.len() as u8]);
        }
        der.extend(c);
        der
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = ed25519_public_key_from_pem(&s);
            let _ = ed25519_signing_key_from_pem(&s);
            let framed = format!("-----BEGIN PRIVATE KEY-----\n{s}\n-----END PRIVATE KEY-----");
            let _ = ed25519_signing_key_from_pem(&framed);
        }

        #[test]
        fn reads_what_ed25519_dalek_writes(seed in any::<[u8; 32]>()) {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let pem = key.to_pkcs8_pem(LineEnding::CRLF).unwrap();
            prop_assert_eq!(ed25519_signing_key_from_pem(&pem).map(|k| k.to_bytes()), Ok(seed));
        }

        /// An edited SPKI is accepted exactly when the `pkcs8` crate accepted it, with the same key.
        #[test]
        fn spki_agrees_with_the_pkcs8_crate(
            key in any::<[u8; 32]>(), at in any::<prop::sample::Index>(), kind in 0u8..3, byte in any::<u8>()
        ) {
            let content = [&SPKI_PREFIX[2..], key.as_slice()].concat();
            let pem = armor("PUBLIC KEY", &mutate(&content, at, kind, byte));
            let new = ed25519_public_key_from_pem(&pem)
                .ok()
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok());
            let old = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).ok();
            prop_assert_eq!(new, old);
        }

        /// An edited PKCS#8 key accepted here was accepted by the `pkcs8` crate, with the same seed.
        #[test]
        fn pkcs8_accepts_nothing_the_pkcs8_crate_refused(
            seed in any::<[u8; 32]>(), v2 in any::<bool>(), attrs in any::<bool>(),
            at in any::<prop::sample::Index>(), kind in 0u8..3, byte in any::<u8>()
        ) {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let mut content = vec![0x02, 0x01, u8::from(v2)];
            content.extend(PKCS8_ALG_AND_KEY);
            content.extend(seed);
            if attrs {
                content.extend([0xa0, 0x02, 0x30, 0x00]);
            }
            if v2 {
                content.extend(PKCS8_PUBLIC_KEY);
                content.extend(key.verifying_key().to_bytes());
            }
            let pem = armor("PRIVATE KEY", &mutate(&content, at, kind, byte));
            if let Ok(new) = ed25519_signing_key_from_pem(&pem) {
                let old = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem);
                prop_assert_eq!(old.map(|k| k.to_bytes()).ok(), Some(new.to_bytes()));
            }
        }
    }
}
