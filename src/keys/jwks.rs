//! JWK Sets (RFC 7517) of Ed25519 public keys (RFC 8037), their RFC 7638 thumbprints, and the compact
//! form a set takes in shared data.
//!
//! The set is read strictly as JSON and leniently as a key set: members this reader does not use are
//! skipped, and a key it cannot use (another key type, a private key, a key for encryption, a malformed or
//! weak public key) is left out without failing the set, as `jwt_authn` and the Web Bot Auth verifiers do.
//! What fails the whole set: text that is not JSON, no `keys` array (or two), more entries than the source
//! allows, more bytes than it allows. A key that repeats a member name is left out (RFC 7517 §4).

use super::{KeyIdMode, KeySet, SourceKey};
use crate::json::{Kind, Reader};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::fmt;

/// Longest `kid` kept; a key with a longer one is left out.
pub const MAX_KID_LEN: usize = 256;

/// Why a fetched set was refused as a whole (the last good set stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySetError {
    /// More bytes than `max_bytes`.
    TooLarge(usize),
    NotUtf8,
    /// Not JSON, or not an object with a `keys` array (the reader's message, which names no value).
    Malformed(String),
    /// More entries in `keys` than `max_keys`.
    TooManyKeys(usize),
}

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySetError::TooLarge(n) => {
                write!(f, "the key set is larger than max_bytes ({n} bytes)")
            }
            KeySetError::NotUtf8 => f.write_str("the key set is not UTF-8"),
            KeySetError::Malformed(why) => write!(f, "the key set is not a JWK Set: {why}"),
            KeySetError::TooManyKeys(n) => {
                write!(f, "the key set has more than max_keys ({n}) keys")
            }
        }
    }
}

/// What a parsed set held: the usable keys, and how many entries were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub set: KeySet,
    pub skipped: usize,
}

/// Parses a JWK Set of at most `max_bytes` bytes and `max_keys` entries.
pub fn parse(bytes: &[u8], max_bytes: usize, max_keys: usize) -> Result<Parsed, KeySetError> {
    if bytes.len() > max_bytes {
        return Err(KeySetError::TooLarge(max_bytes));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| KeySetError::NotUtf8)?;
    let mut r = Reader::new(text);
    let mut entries: Option<Vec<Option<SourceKey>>> = None;
    let mut too_many = false;
    r.map(|r, member| {
        if member != "keys" {
            return r.skip();
        }
        if entries.is_some() {
            return Err(r.error("`keys` is given twice"));
        }
        let mut keys = Vec::new();
        r.array(|r, _| {
            if keys.len() >= max_keys {
                too_many = true;
                return r.skip();
            }
            keys.push(read_key(r)?);
            Ok(())
        })?;
        entries = Some(keys);
        Ok(())
    })
    .and_then(|()| r.end())
    .map_err(|e| KeySetError::Malformed(e.to_string()))?;
    if too_many {
        return Err(KeySetError::TooManyKeys(max_keys));
    }
    let entries = entries.ok_or_else(|| KeySetError::Malformed("no `keys` array".to_string()))?;
    let skipped = entries.iter().filter(|k| k.is_none()).count();
    Ok(Parsed {
        set: KeySet {
            keys: entries.into_iter().flatten().collect(),
        },
        skipped,
    })
}

/// The JWK members this reader looks at; `None` where a member is absent or of another type.
#[derive(Default)]
struct Jwk {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    has_private: bool,
    nbf: Option<u64>,
    exp: Option<u64>,
    /// A member this reader uses had an unusable type or value.
    bad: bool,
}

/// One entry of `keys`: the key if it is a usable Ed25519 verification key, else `None`.
fn read_key(r: &mut Reader) -> crate::json::Result<Option<SourceKey>> {
    if r.kind()? != Kind::Object {
        r.skip()?;
        return Ok(None);
    }
    let mut jwk = Jwk::default();
    // RFC 7517 §4: member names are unique; a key that repeats one is left out (not read as its last).
    let mut names: Vec<String> = Vec::new();
    r.map(|r, member| {
        if names.iter().any(|n| n == member) {
            jwk.bad = true;
        } else {
            names.push(member.to_string());
        }
        let slot = match member {
            "kty" => &mut jwk.kty,
            "crv" => &mut jwk.crv,
            "x" => &mut jwk.x,
            "kid" => &mut jwk.kid,
            "alg" => &mut jwk.alg,
            "use" => &mut jwk.use_,
            // A private key published by mistake is not used: its owner must rotate it.
            "d" => {
                jwk.has_private = true;
                return r.skip();
            }
            "key_ops" => {
                if r.kind()? != Kind::Array {
                    jwk.bad = true;
                    return r.skip();
                }
                let mut ops = Vec::new();
                r.array(|r, _| {
                    if r.kind()? == Kind::String {
                        ops.push(r.str()?.into_owned());
                    } else {
                        jwk.bad = true;
                        r.skip()?;
                    }
                    Ok(())
                })?;
                jwk.key_ops = Some(ops);
                return Ok(());
            }
            "nbf" | "exp" => {
                if r.kind()? != Kind::Number {
                    jwk.bad = true;
                    return r.skip();
                }
                match r.number()? {
                    Some(v) if member == "nbf" => jwk.nbf = Some(v),
                    Some(v) => jwk.exp = Some(v),
                    None => jwk.bad = true,
                }
                return Ok(());
            }
            _ => return r.skip(),
        };
        if r.kind()? == Kind::String {
            *slot = Some(r.str()?.into_owned());
        } else {
            jwk.bad = true;
            r.skip()?;
        }
        Ok(())
    })?;
    Ok(usable(jwk))
}

fn usable(jwk: Jwk) -> Option<SourceKey> {
    if jwk.bad
        || jwk.has_private
        || jwk.kty.as_deref() != Some("OKP")
        || jwk.crv.as_deref() != Some("Ed25519")
        || jwk.use_.as_deref().is_some_and(|u| u != "sig")
        || jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
        || jwk
            .alg
            .as_deref()
            .is_some_and(|a| a != "EdDSA" && a != "Ed25519")
    {
        return None;
    }
    if let Some(kid) = &jwk.kid {
        if kid.is_empty()
            || kid.len() > MAX_KID_LEN
            || kid.bytes().any(|b| !(0x20..=0x7e).contains(&b))
        {
            return None;
        }
    }
    let raw = URL_SAFE_NO_PAD.decode(jwk.x.as_deref()?).ok()?;
    let bytes: [u8; 32] = raw.as_slice().try_into().ok()?;
    let key = VerifyingKey::from_bytes(&bytes).ok()?;
    if key.is_weak() {
        return None;
    }
    if let (Some(nb), Some(na)) = (jwk.nbf, jwk.exp) {
        if nb > na {
            return None;
        }
    }
    Some(SourceKey {
        kid: jwk.kid,
        thumbprint: thumbprint(&key),
        key,
        not_before: jwk.nbf,
        not_after: jwk.exp,
    })
}

/// The RFC 7638 thumbprint of an Ed25519 public key: base64url (no padding) of SHA-256 over
/// `{"crv":"Ed25519","kty":"OKP","x":"<base64url of the key>"}` (RFC 8037 §2, members in
/// lexicographic order, no whitespace).
pub fn thumbprint(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let mut h = Sha256::new();
    h.update(br#"{"crv":"Ed25519","kty":"OKP","x":""#);
    h.update(x.as_bytes());
    h.update(br#""}"#);
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The JWK of an Ed25519 public key (`kid` when given), as one JSON object.
pub fn jwk_json(key: &VerifyingKey, kid: Option<&str>) -> String {
    let mut out = String::from(r#"{"kty":"OKP","crv":"Ed25519","x":""#);
    out.push_str(&URL_SAFE_NO_PAD.encode(key.as_bytes()));
    out.push('"');
    if let Some(kid) = kid {
        out.push_str(r#","kid":"#);
        push_json_string(&mut out, kid);
    }
    out.push_str(r#","use":"sig","alg":"EdDSA"}"#);
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                crate::num::push_hex_byte(out, c as u8);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// The compact form in shared data: per key a flags byte (1: kid, 2: nbf, 4: exp), the kid as a u16
// length and bytes, the 32 key bytes, then nbf and exp as u64 when flagged. The thumbprint is computed
// again when read (it is not trusted from shared data either).
const HAS_KID: u8 = 1;
const HAS_NBF: u8 = 2;
const HAS_EXP: u8 = 4;

/// Encodes a set for shared data.
pub fn encode(set: &KeySet) -> Vec<u8> {
    let mut out = Vec::with_capacity(set.keys.len() * 64);
    let count = u16::try_from(set.keys.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for k in set.keys.iter().take(usize::from(count)) {
        let mut flags = 0;
        if k.kid.is_some() {
            flags |= HAS_KID;
        }
        if k.not_before.is_some() {
            flags |= HAS_NBF;
        }
        if k.not_after.is_some() {
            flags |= HAS_EXP;
        }
        out.push(flags);
        if let Some(kid) = &k.kid {
            let len = u16::try_from(kid.len().min(MAX_KID_LEN)).unwrap_or(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(kid.as_bytes().get(..usize::from(len)).unwrap_or_default());
        }
        out.extend_from_slice(k.key.as_bytes());
        for v in [k.not_before, k.not_after].into_iter().flatten() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Decodes [`encode`]'s form; `None` if it is not that.
pub fn decode(bytes: &[u8]) -> Option<KeySet> {
    let mut cur = Cursor(bytes);
    let count = u16::from_le_bytes(cur.take()?);
    let mut keys = Vec::with_capacity(usize::from(count).min(1024));
    for _ in 0..count {
        let [flags] = cur.take::<1>()?;
        let kid = if flags & HAS_KID != 0 {
            let len = usize::from(u16::from_le_bytes(cur.take()?));
            let raw = cur.slice(len)?;
            Some(std::str::from_utf8(raw).ok()?.to_string())
        } else {
            None
        };
        let key = VerifyingKey::from_bytes(&cur.take::<32>()?).ok()?;
        let mut read_time = |flag: u8| -> Option<Option<u64>> {
            if flags & flag != 0 {
                Some(Some(u64::from_le_bytes(cur.take()?)))
            } else {
                Some(None)
            }
        };
        let not_before = read_time(HAS_NBF)?;
        let not_after = read_time(HAS_EXP)?;
        keys.push(SourceKey {
            kid,
            thumbprint: thumbprint(&key),
            key,
            not_before,
            not_after,
        });
    }
    cur.0.is_empty().then_some(KeySet { keys })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn slice(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.slice(N)?.try_into().ok()
    }
}

impl KeySet {
    /// The keys `keyid` names under `mode` that are valid at `now`.
    pub fn named<'s, 'i>(
        &'s self,
        keyid: &'i str,
        mode: KeyIdMode,
        now: u64,
    ) -> impl Iterator<Item = &'s SourceKey> + use<'s, 'i> {
        self.keys
            .iter()
            .filter(move |k| k.named(keyid, mode) && k.valid_at(now))
    }
}

#[cfg(test)]
mod tests;
