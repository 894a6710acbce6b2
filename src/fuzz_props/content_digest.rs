//! RFC 9530 `Content-Digest` checking, against a model built on the `sfv` crate; and the digest
//! edgeward writes (`edgeward sign --content-digest`) always checks.

use super::FuzzRequest;
use crate::request::Headers;
use crate::signature::{check_content_digest, content_digest_header, DigestAlg};
use sfv::{BareItem, ListEntry};
use sha2::{Digest as _, Sha256, Sha512};

/// What RFC 9530 §2 and edgeward's stricter reading ask: the lines joined with `, ` parse as a
/// Dictionary (RFC 8941) with no repeated key (an intended difference with RFC 8941, which keeps the
/// last: a repeated algorithm is ambiguous), at most 16 members, at least one sha-256/sha-512 member,
/// and every one of those a byte sequence equal to the body's digest (parameters ignored).
fn model(lines: &[&str], body: &[u8]) -> bool {
    if lines.is_empty() {
        return false;
    }
    let joined = lines.join(", ");
    let Ok(dict) = sfv::Parser::new(&joined)
        .with_version(sfv::Version::Rfc8941)
        .parse::<sfv::Dictionary>()
    else {
        return false;
    };
    if repeats_a_key(&joined) || dict.len() > 16 {
        return false;
    }
    let mut supported = 0;
    for (key, entry) in &dict {
        let actual = match key.as_str() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue,
        };
        supported += 1;
        match entry {
            ListEntry::Item(sfv::Item {
                bare_item: BareItem::ByteSequence(b),
                ..
            }) if *b == actual => {}
            _ => return false,
        }
    }
    supported > 0
}

/// Whether the dictionary repeats a key (the `sfv` crate keeps only the last).
fn repeats_a_key(joined: &str) -> bool {
    crate::signature::sfv::parse_dictionary(joined)
        .map(|d| crate::signature::sfv::has_duplicate_keys(&d))
        .unwrap_or(false)
}

/// Input: a request (see [`FuzzRequest`]) whose `content-digest` lines are checked against its body.
pub fn content_digest(data: &[u8]) {
    let req = FuzzRequest::parse(data);
    let slices = req.headers.slices();
    let headers = Headers::from_slices(&slices);
    let lines: Vec<&str> = headers.get_all("content-digest").map(str::trim).collect();
    let ours = check_content_digest(headers, &req.body).is_ok();
    assert_eq!(ours, model(&lines, &req.body), "content-digest {lines:?}");
    for alg in [DigestAlg::Sha256, DigestAlg::Sha512] {
        let own = [(
            "content-digest".to_string(),
            content_digest_header(alg, &req.body),
        )];
        assert!(
            check_content_digest(Headers::new(&own), &req.body).is_ok(),
            "edgeward's own {} digest",
            alg.as_str()
        );
    }
}
