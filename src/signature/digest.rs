//! RFC 9530 `Content-Digest`: checking a received body against it, and producing it for signing.

use super::sfv::{self, BareItem, Item, Member};
use crate::decision::Reason;
use crate::request::Headers;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// More Content-Digest members than this are refused (there are a dozen registered algorithms).
const MAX_MEMBERS: usize = 16;

/// The digest algorithms edgeward computes (RFC 9530 §6.6: the others are insecure or deprecated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    Sha256,
    Sha512,
}

impl DigestAlg {
    /// Parses the registry name (`sha-256`, `sha-512`).
    pub fn parse(s: &str) -> Option<DigestAlg> {
        match s {
            "sha-256" => Some(DigestAlg::Sha256),
            "sha-512" => Some(DigestAlg::Sha512),
            _ => None,
        }
    }

    /// The registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha-256",
            DigestAlg::Sha512 => "sha-512",
        }
    }

    /// Whether `claimed` is the digest of `body` (compared in constant time; no copy of the digest).
    fn matches(self, body: &[u8], claimed: &[u8]) -> bool {
        match self {
            DigestAlg::Sha256 => ct_eq(claimed, &Sha256::digest(body)),
            DigestAlg::Sha512 => ct_eq(claimed, &Sha512::digest(body)),
        }
    }

    /// The raw digest of `body`.
    pub fn digest(self, body: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Sha256 => Sha256::digest(body).to_vec(),
            DigestAlg::Sha512 => Sha512::digest(body).to_vec(),
        }
    }
}

/// The `Content-Digest` field value for `body`: `sha-256=:<base64>:`.
pub fn content_digest_header(alg: DigestAlg, body: &[u8]) -> String {
    format!("{}=:{}:", alg.as_str(), STANDARD.encode(alg.digest(body)))
}

/// Checks `body` against the request's Content-Digest: at least one supported member, every supported
/// member matching, unknown algorithms ignored. Missing, malformed, repeated or wrong → `DigestMismatch`.
pub fn check_content_digest(headers: Headers, body: &[u8]) -> Result<(), Reason> {
    let value = headers
        .combined("content-digest")
        .ok_or(Reason::DigestMismatch)?;
    let dict = sfv::parse_dictionary(&value).map_err(|_| Reason::DigestMismatch)?;
    // A repeated algorithm is ambiguous (which one would the upstream check?): refuse. The size bound
    // keeps the duplicate check cheap.
    if dict.len() > MAX_MEMBERS || sfv::has_duplicate_keys(&dict) {
        return Err(Reason::DigestMismatch);
    }
    let mut checked = 0usize;
    for (key, member) in &dict {
        let Some(alg) = DigestAlg::parse(key) else {
            continue;
        };
        let Member::Item(Item {
            bare: BareItem::ByteSeq(claimed),
            ..
        }) = member
        else {
            return Err(Reason::DigestMismatch);
        };
        if !alg.matches(body, claimed) {
            return Err(Reason::DigestMismatch);
        }
        checked += 1;
    }
    if checked == 0 {
        Err(Reason::DigestMismatch)
    } else {
        Ok(())
    }
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths (public: a digest's or a
/// tag's size). A 64-bit word at a time: one `subtle` optimization barrier per 8 bytes instead of one
/// per byte (each is a call the optimizer cannot see through, also under V8).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        if let Some(w) = w.get_mut(..c.len()) {
            w.copy_from_slice(c);
        }
        u64::from_le_bytes(w)
    };
    let mut eq = subtle::Choice::from(1u8);
    for (x, y) in a.chunks(8).zip(b.chunks(8)) {
        eq &= word(x).ct_eq(&word(y));
    }
    bool::from(eq)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ct_eq_finds_every_difference_and_length() {
        for len in [0usize, 1, 7, 8, 9, 32, 33, 64] {
            let a: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            assert!(ct_eq(&a, &a.clone()), "{len}");
            for i in 0..len {
                for bit in [0x01u8, 0x80] {
                    let mut b = a.clone();
                    b[i] ^= bit;
                    assert!(!ct_eq(&a, &b), "{len} byte {i} bit {bit:#x}");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!ct_eq(&a, &longer) && !ct_eq(&longer, &a), "{len}");
        }
    }

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/rfc9530/content-digest.json"
    ));

    fn check(value: &str, body: &[u8]) -> Result<(), Reason> {
        let hs = vec![("content-digest".to_string(), value.to_string())];
        check_content_digest(Headers::new(&hs), body)
    }

    #[test]
    fn rfc9530_vectors_match_and_one_byte_flip_fails() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let mut n = 0;
        for case in v["cases"].as_array().unwrap() {
            let body = case["body"].as_str().unwrap().as_bytes();
            for alg in [DigestAlg::Sha256, DigestAlg::Sha512] {
                let Some(expected) = case[alg.as_str()].as_str() else {
                    continue;
                };
                let header = content_digest_header(alg, body);
                assert_eq!(
                    header,
                    format!("{}=:{expected}:", alg.as_str()),
                    "{}",
                    case["id"]
                );
                assert_eq!(check(&header, body), Ok(()));
                let mut flipped = body.to_vec();
                flipped.push(b'x');
                assert_eq!(check(&header, &flipped), Err(Reason::DigestMismatch));
                n += 1;
            }
            if let Some(fv) = case["field_value_sha512"].as_str() {
                assert_eq!(check(fv, body), Ok(()));
            }
        }
        assert!(n >= 10);
    }

    #[test]
    fn rfc9530_negative_cases() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let hello_lf = b"{\"hello\": \"world\"}\n";
        let neg = v["negative_cases"].as_array().unwrap();
        let get = |id: &str| {
            neg.iter()
                .find(|c| c["id"] == id)
                .and_then(|c| c["field_value"].as_str())
                .unwrap()
                .to_string()
        };
        // The RFC source's typo (bad padding) is malformed, not a match.
        assert_eq!(
            check(&get("bad-padding-in-source"), hello_lf),
            Err(Reason::DigestMismatch)
        );
        // Only an unsupported algorithm: treated as missing.
        assert_eq!(
            check(&get("unknown-alg-only"), b"{\"hello\": \"world\"}"),
            Err(Reason::DigestMismatch)
        );
        // sha-512 matches but sha-256 does not: never accept on "one of them matched".
        assert_eq!(
            check(&get("multiple-algs"), hello_lf),
            Err(Reason::DigestMismatch)
        );
        // Body swapped, header kept.
        let good = content_digest_header(DigestAlg::Sha256, hello_lf);
        assert_eq!(check(&good, hello_lf), Ok(()));
        assert_eq!(
            check(&good, b"{\"goodbye\": \"world\"}\n"),
            Err(Reason::DigestMismatch)
        );
    }

    #[test]
    fn structural_failures_are_mismatches() {
        let body = b"abc";
        let good256 = content_digest_header(DigestAlg::Sha256, body);
        let good512 = content_digest_header(DigestAlg::Sha512, body);
        let cases: Vec<(String, Result<(), Reason>)> = vec![
            (good256.clone(), Ok(())),
            (format!("{good256}, {good512}"), Ok(())),
            (format!("md5=:AAAA:, {good512}"), Ok(())),
            (format!("{good256}, {good256}"), Err(Reason::DigestMismatch)),
            ("sha-256=:AAAA:".into(), Err(Reason::DigestMismatch)),
            ("sha-256=\"x\"".into(), Err(Reason::DigestMismatch)),
            ("sha-256".into(), Err(Reason::DigestMismatch)),
            ("garbage ((".into(), Err(Reason::DigestMismatch)),
            ("".into(), Err(Reason::DigestMismatch)),
            (
                format!(
                    "{}, {good256}",
                    (0..20)
                        .map(|i| format!("x{i}=:AAAA:"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(Reason::DigestMismatch),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(check(&value, body), expected, "{value}");
        }
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(
            check_content_digest(Headers::new(&none), body),
            Err(Reason::DigestMismatch)
        );
        // Two field lines combine into one dictionary.
        let two = vec![
            ("content-digest".to_string(), good256.clone()),
            ("content-digest".to_string(), good512.clone()),
        ];
        assert_eq!(check_content_digest(Headers::new(&two), body), Ok(()));
        // Every line is read: a wrong or repeated member on the second line refuses the body, and
        // the lines are trimmed before they join.
        let bad512 = content_digest_header(DigestAlg::Sha512, b"abd");
        for (first, second, expected) in [
            (good256.clone(), bad512, Err(Reason::DigestMismatch)),
            (
                good256.clone(),
                good256.clone(),
                Err(Reason::DigestMismatch),
            ),
            // A leading tab is not structured-field whitespace: only the trim lets this line parse.
            (format!("\t{good256} "), format!(" {good512}\t"), Ok(())),
            // A digest of the other algorithm's length under this name (a 64-byte sha-256 claim).
            (
                good512.replacen("sha-512", "sha-256", 1),
                good512.clone(),
                Err(Reason::DigestMismatch),
            ),
        ] {
            let lines = vec![
                ("content-digest".to_string(), first),
                ("content-digest".to_string(), second),
            ];
            assert_eq!(
                check_content_digest(Headers::new(&lines), body),
                expected,
                "{lines:?}"
            );
        }
    }
}
