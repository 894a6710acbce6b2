//! Verification keys loaded at run time: key sources (a JWK Set, RFC 7517, fetched from an Envoy cluster)
//! named in the document's `key_sources`, and the key sets one worker holds.
//!
//! The core never fetches: [`refresh`] decides when a fetch is due and which worker makes it (a lease in
//! shared data), turns the answer into a [`KeySet`] ([`jwks`]) and publishes it in shared data; each worker
//! copies a new version into its [`KeyCache`] on its tick. Requests read the cache (no JSON on the request
//! path); only while a source has never loaded in this worker does a request also look in shared data for
//! its first set, at most once per [`refresh::PROBE_NS`] ([`refresh::sync_unloaded`]).

pub mod jwks;
pub mod refresh;

use crate::error::{join, Errors};
use ed25519_dalek::VerifyingKey;
use std::collections::BTreeMap;

pub use jwks::{thumbprint, KeySetError};

/// How a signature's `keyid` names a key of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyIdMode {
    /// The JWK's `kid`; a key without one is named by its thumbprint.
    #[default]
    Kid,
    /// The key's RFC 7638 JWK thumbprint (SHA-256, base64url), whatever its `kid`.
    Thumbprint,
}

/// The kind of a key source (`"type"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Jwks,
}

crate::json::json_choice!(KeyIdMode {
    "kid" => KeyIdMode::Kid,
    "thumbprint" => KeyIdMode::Thumbprint,
});

crate::json::json_choice!(SourceKind {
    "jwks" => SourceKind::Jwks,
});

/// One entry of `key_sources` as written.
#[derive(Debug, Clone)]
pub struct KeySourceInput {
    pub kind: SourceKind,
    /// The Envoy cluster the fetch goes through (its TLS settings decide how the directory is reached).
    pub cluster: String,
    /// Where the set is: `https://host[:port]/path[?query]` (the request's `:authority` and `:path`).
    pub url: String,
    pub refresh_s: Option<u64>,
    pub jitter_s: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_keys: Option<u64>,
    pub key_id: KeyIdMode,
}

crate::json::json_object!(KeySourceInput {
    kind: "type" => required,
    cluster: "cluster" => required,
    url: "url" => required,
    refresh_s: "refresh_s" => some,
    jitter_s: "jitter_s" => some,
    timeout_ms: "timeout_ms" => some,
    max_bytes: "max_bytes" => some,
    max_keys: "max_keys" => some,
    key_id: "key_id" => read,
});

pub const DEFAULT_REFRESH_S: u64 = 300;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024;
pub const DEFAULT_MAX_KEYS: u64 = 64;
const REFRESH_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;
const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 100..=60_000;
const MAX_BYTES_RANGE: std::ops::RangeInclusive<u64> = 64..=(1 << 20);
const MAX_KEYS_RANGE: std::ops::RangeInclusive<u64> = 1..=1024;

/// A compiled key source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    pub name: String,
    pub cluster: String,
    /// `http` or `https`, as the URL says (how the cluster connects is the cluster's business).
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub refresh_ns: u64,
    /// A refresh comes up to this much earlier than `refresh_ns` (never later), so that a fleet's
    /// Envoys do not all ask at once.
    pub jitter_ns: u64,
    pub timeout_ms: u32,
    pub max_bytes: usize,
    pub max_keys: usize,
    pub key_id: KeyIdMode,
    /// The shared-data key of this source's state (the same for every configuration that fetches the
    /// same set the same way, so they share one fetch).
    pub store_key: String,
}

/// Compiles `key_sources`; errors carry their paths. The sources keep the map's (sorted) order.
pub fn compile_sources(
    inputs: &BTreeMap<String, KeySourceInput>,
    path: &str,
    errs: &mut Errors,
) -> Vec<KeySource> {
    inputs
        .iter()
        .filter_map(|(name, input)| compile_source(name, input, &join(path, name), errs))
        .collect()
}

fn compile_source(
    name: &str,
    input: &KeySourceInput,
    path: &str,
    errs: &mut Errors,
) -> Option<KeySource> {
    let before = errs.len();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        errs.push(
            path,
            format!("key source name {name:?} may only hold letters, digits, '-' and '_'"),
        );
    }
    if input.cluster.is_empty() || input.cluster.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        errs.push(
            join(path, "cluster"),
            "must name an Envoy cluster (printable ASCII, no spaces)",
        );
    }
    let url = match parse_url(&input.url) {
        Ok(u) => Some(u),
        Err(why) => {
            errs.push(join(path, "url"), why.to_string());
            None
        }
    };
    let mut ranged =
        |field: &str, value: Option<u64>, default: u64, range: &std::ops::RangeInclusive<u64>| {
            let v = value.unwrap_or(default);
            if !range.contains(&v) {
                errs.push(
                    join(path, field),
                    format!(
                        "{v} is out of range (allowed {}..={})",
                        range.start(),
                        range.end()
                    ),
                );
            }
            v
        };
    let refresh_s = ranged(
        "refresh_s",
        input.refresh_s,
        DEFAULT_REFRESH_S,
        &REFRESH_RANGE,
    );
    let timeout_ms = ranged(
        "timeout_ms",
        input.timeout_ms,
        DEFAULT_TIMEOUT_MS,
        &TIMEOUT_RANGE,
    );
    let max_bytes = ranged(
        "max_bytes",
        input.max_bytes,
        DEFAULT_MAX_BYTES,
        &MAX_BYTES_RANGE,
    );
    let max_keys = ranged(
        "max_keys",
        input.max_keys,
        DEFAULT_MAX_KEYS,
        &MAX_KEYS_RANGE,
    );
    let jitter_s = input.jitter_s.unwrap_or(refresh_s / 10);
    if jitter_s > refresh_s / 2 {
        errs.push(
            join(path, "jitter_s"),
            format!("{jitter_s} is more than half of refresh_s ({refresh_s})"),
        );
    }
    if timeout_ms >= refresh_s.saturating_mul(1000) {
        errs.push(
            join(path, "timeout_ms"),
            format!("must be shorter than refresh_s ({refresh_s} s)"),
        );
    }
    if errs.len() != before {
        return None;
    }
    let (scheme, authority, target) = url?;
    let store_key = store_key(&input.cluster, &authority, &target, max_bytes, max_keys);
    Some(KeySource {
        name: name.to_string(),
        cluster: input.cluster.clone(),
        scheme,
        authority,
        path: target,
        refresh_ns: refresh_s.saturating_mul(1_000_000_000),
        jitter_ns: jitter_s.saturating_mul(1_000_000_000),
        timeout_ms: u32::try_from(timeout_ms).unwrap_or(u32::MAX),
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        max_keys: usize::try_from(max_keys).unwrap_or(usize::MAX),
        key_id: input.key_id,
        store_key,
    })
}

/// Why a key source's URL was refused. The messages never quote the URL: it may carry a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    NotHttp,
    NotPrintableAscii,
    Fragment,
    NoHostOrUserInfo,
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UrlError::NotHttp => "is not an http:// or https:// URL",
            UrlError::NotPrintableAscii => "holds spaces or characters outside printable ASCII",
            UrlError::Fragment => "has a fragment, which is never sent; leave out '#'",
            UrlError::NoHostOrUserInfo => "needs a host, without user information",
        })
    }
}

/// `http(s)://host[:port]/path[?query]` → (scheme, authority, path and query). No user info, no
/// fragment, no whitespace or control characters.
fn parse_url(url: &str) -> Result<(String, String, String), UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotHttp)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(UrlError::NotHttp);
    }
    if url.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(UrlError::NotPrintableAscii);
    }
    if url.contains('#') {
        return Err(UrlError::Fragment);
    }
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(UrlError::NoHostOrUserInfo);
    }
    let target = if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    Ok((scheme, authority.to_ascii_lowercase(), target))
}

fn store_key(cluster: &str, authority: &str, path: &str, max_bytes: u64, max_keys: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [cluster, authority, path] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(max_bytes.to_le_bytes());
    h.update(max_keys.to_le_bytes());
    let digest = h.finalize();
    let mut key = String::from("edgeward.keys.v1.");
    for b in digest.iter().take(12) {
        crate::num::push_hex_byte(&mut key, *b);
    }
    key
}

/// One verification key from a key source.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceKey {
    /// The JWK's `kid`, if it has one.
    pub kid: Option<String>,
    /// The RFC 7638 thumbprint (base64url SHA-256 of the canonical JWK).
    pub thumbprint: String,
    pub key: VerifyingKey,
    /// The JWK's `nbf` and `exp` (seconds), if it has them.
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
}

impl std::fmt::Debug for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceKey")
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl SourceKey {
    /// Whether `keyid` names this key under `mode`.
    pub fn named(&self, keyid: &str, mode: KeyIdMode) -> bool {
        match (mode, &self.kid) {
            (KeyIdMode::Kid, Some(kid)) => kid == keyid,
            _ => self.thumbprint == keyid,
        }
    }

    /// Valid when `nbf <= now <= exp` (each when given).
    pub fn valid_at(&self, now: u64) -> bool {
        self.not_before.is_none_or(|nb| now >= nb) && self.not_after.is_none_or(|na| now <= na)
    }
}

/// The usable keys of one fetched set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<SourceKey>,
}

/// The key sets one worker holds, one slot per document key source (in [`compile_sources`] order).
/// An empty slot is a source that has never loaded.
#[derive(Debug, Default)]
pub struct KeyCache {
    slots: Vec<Slot>,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    /// The shared version this copy was taken from (0: none yet).
    version: u64,
    set: Option<KeySet>,
    /// When a request last looked in shared data for this source's first set (0: never).
    probed_ns: u64,
}

impl KeyCache {
    /// A cache with no slots: every source reads as never loaded.
    pub const EMPTY: KeyCache = KeyCache { slots: Vec::new() };

    /// A cache with `n` empty slots.
    pub fn new(n: usize) -> KeyCache {
        KeyCache {
            slots: vec![Slot::default(); n],
        }
    }

    /// The set of source `i`, once one has loaded.
    pub fn get(&self, i: usize) -> Option<&KeySet> {
        self.slots.get(i).and_then(|s| s.set.as_ref())
    }

    /// The version of source `i` held here (0: none).
    pub fn version(&self, i: usize) -> u64 {
        self.slots.get(i).map_or(0, |s| s.version)
    }

    /// Whether a request at `now_ns` may look in shared data for source `i`'s first set: it has none, and
    /// no request looked within `every_ns` (then this one is recorded as the last look).
    pub fn probe_due(&mut self, i: usize, now_ns: u64, every_ns: u64) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        if slot.set.is_some()
            || (slot.probed_ns != 0 && now_ns.saturating_sub(slot.probed_ns) < every_ns)
        {
            return false;
        }
        slot.probed_ns = now_ns.max(1);
        true
    }

    /// Installs `set` as version `version` of source `i` (a cache made for fewer sources grows).
    pub fn install(&mut self, i: usize, version: u64, set: KeySet) {
        if self.slots.len() <= i {
            self.slots.resize(i + 1, Slot::default());
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Slot {
                version,
                set: Some(set),
                probed_ns: slot.probed_ns,
            };
        }
    }
}

#[cfg(test)]
mod tests;
