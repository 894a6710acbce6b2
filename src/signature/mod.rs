//! RFC 9421 HTTP Message Signatures (hmac-sha256, ed25519), RFC 9530 Content-Digest, nonce replay table.
//!
//! [`compile`] turns a policy's `signature` section into a [`SignaturePolicy`] (keys decoded, HMAC states
//! pre-keyed); [`SignaturePolicy::verify_head`] checks a request head; [`check_content_digest`] checks the
//! body when `content-digest` is covered; [`check_nonce`] records nonces in shared data; [`sign_request`]
//! is the client side.

pub mod components;
pub mod digest;
pub mod nonce;
mod pem;
pub mod sfv;
pub mod sign;
pub mod web_bot_auth;

pub use components::{ComponentError, ComponentId};
pub use digest::{check_content_digest, content_digest_header, DigestAlg};
pub use nonce::{check_nonce, init_nonce_table, release_nonce, NonceOutcome, NonceTableConfig};
pub use sign::{sign_request, SignError, SignParams, SignedHeaders, SigningKey};
pub use web_bot_auth::{WebBotAuth, WebBotAuthInput};

use crate::decision::{Reason, Reply};
use crate::error::{index, join, Errors};
use crate::keys::{KeyCache, KeyIdMode, KeySource, SourceKey};
use crate::request::RequestHead;
use crate::secret::{decode_base64, Env, SecretInput};
// tests.rs decodes public keys with the `pkcs8` crate too.
#[cfg(test)]
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac as _};
use sfv::{BareItem, Item, Member};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt;

/// Minimum HMAC secret length after decoding: 32 bytes, SHA-256's output length (RFC 2104 §3).
pub const MIN_HMAC_SECRET: usize = 32;
/// More labels than this in one request are refused outright (bounds the work per request).
const MAX_SIGNATURES: usize = 8;
/// More covered components than this are refused outright.
const MAX_COMPONENTS: usize = 32;
/// Request bytes the signature bases of one request may read, over all its signatures: the client
/// chooses what they cover (any header, several times, `sf`/`key` parsing each), so without a bound
/// one request could make the edge parse a 60 KB header hundreds of times.
const MAX_BASE_INPUT_BYTES: usize = 64 * 1024;
/// Longest accepted nonce, in bytes.
const MAX_NONCE_LEN: usize = 256;

/// Signature algorithm, as named in the document and in the `alg` signature parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    HmacSha256,
    Ed25519,
}

impl Alg {
    /// The RFC 9421 registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::HmacSha256 => "hmac-sha256",
            Alg::Ed25519 => "ed25519",
        }
    }

    /// Parses a registry name.
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "hmac-sha256" => Some(Alg::HmacSha256),
            "ed25519" => Some(Alg::Ed25519),
            _ => None,
        }
    }
}

/// `nonce`: whether every signature must carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceMode {
    Required,
    #[default]
    Optional,
}

/// One entry of `keys`.
#[derive(Clone)]
pub struct KeyInput {
    pub id: String,
    pub alg: Alg,
    pub secret: Option<SecretInput>,
    pub public_key: Option<String>,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
}

impl fmt::Debug for KeyInput {
    /// Never prints secret material (an inline `base64` secret would otherwise show).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyInput")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key", &self.public_key.as_ref().map(|_| "<pem>"))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

fn default_components() -> Vec<String> {
    ["@method", "@authority", "@path", "@query"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_max_age() -> u64 {
    300
}
fn default_skew() -> u64 {
    5
}
fn default_max_body() -> u64 {
    1_048_576
}

/// A policy's `signature` section.
#[derive(Debug, Clone)]
pub struct SignatureInput {
    pub keys: Vec<KeyInput>,
    /// Names of document `key_sources` whose keys this policy accepts too.
    pub key_sources: Vec<String>,
    /// Web Bot Auth: keys come from the directory of the agent the request names.
    pub web_bot_auth: Option<WebBotAuthInput>,
    /// The components every signature must cover (default: `@method @authority @path @query`, or
    /// `@authority` with `web_bot_auth`).
    pub components: Option<Vec<String>>,
    pub max_age_s: u64,
    pub clock_skew_s: u64,
    pub nonce: NonceMode,
    /// Where nonces are remembered: this Envoy, or every Envoy through the rate limit service.
    pub nonce_scope: NonceScope,
    pub max_body_bytes: u64,
    pub label: Option<String>,
    /// Whether the upstream receives the verified key id (`x-edgeward-key-id`, through filter state).
    pub upstream_key_id: bool,
}

/// Where a policy's nonces are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceScope {
    /// This Envoy's replay table (shared by its workers).
    #[default]
    Local,
    /// Also the document's rate limit service, as a limit of 1 per key id and nonce: shared by every
    /// Envoy that calls it (the local table stays the first, free check).
    Cluster,
}

impl Default for SignatureInput {
    fn default() -> Self {
        SignatureInput {
            keys: Vec::new(),
            key_sources: Vec::new(),
            web_bot_auth: None,
            components: None,
            max_age_s: default_max_age(),
            clock_skew_s: default_skew(),
            nonce: NonceMode::Optional,
            nonce_scope: NonceScope::Local,
            max_body_bytes: default_max_body(),
            label: None,
            upstream_key_id: true,
        }
    }
}

impl SignatureInput {
    /// `components` as given, or the default: `@method @authority @path @query`, and `@authority`
    /// alone for Web Bot Auth (what agents sign).
    pub fn effective_components(&self) -> Vec<String> {
        match &self.components {
            Some(list) => list.clone(),
            None if self.web_bot_auth.is_some() => vec!["@authority".to_string()],
            None => default_components(),
        }
    }
}

crate::json::json_choice!(Alg {
    "hmac-sha256" => Alg::HmacSha256,
    "ed25519" => Alg::Ed25519,
});

crate::json::json_choice!(NonceScope {
    "local" => NonceScope::Local,
    "cluster" => NonceScope::Cluster,
});

crate::json::json_choice!(NonceMode {
    "required" => NonceMode::Required,
    "optional" => NonceMode::Optional,
});

crate::json::json_object!(KeyInput {
    id: "id" => required,
    alg: "alg" => required,
    secret: "secret" => read,
    public_key: "public_key" => read,
    not_before: "not_before" => read,
    not_after: "not_after" => read,
});

crate::json::json_object!(SignatureInput {
    keys: "keys" => read,
    key_sources: "key_sources" => read,
    web_bot_auth: "web_bot_auth" => some,
    components: "components" => some,
    max_age_s: "max_age_s" => read_or(default_max_age()),
    clock_skew_s: "clock_skew_s" => read_or(default_skew()),
    nonce: "nonce" => read,
    nonce_scope: "nonce_scope" => read,
    max_body_bytes: "max_body_bytes" => read_or(default_max_body()),
    label: "label" => read,
    upstream_key_id: "upstream_key_id" => read_or(true),
});

enum Verifier {
    /// Pre-keyed state, cloned per request (saves re-deriving the padded key blocks).
    Hmac(Hmac<Sha256>),
    Ed25519(VerifyingKey),
}

struct Key {
    id: String,
    alg: Alg,
    not_before: Option<u64>,
    not_after: Option<u64>,
    verifier: Verifier,
}

impl Key {
    /// Valid when `not_before <= now <= not_after` (both inclusive, like X.509).
    fn valid_at(&self, now: u64) -> bool {
        self.not_before.is_none_or(|nb| now >= nb) && self.not_after.is_none_or(|na| now <= na)
    }

    fn verify(&self, base: &[u8], sig: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Hmac(keyed) => {
                let mut mac = keyed.clone();
                mac.update(base);
                // Constant time, exact length (no truncated tags).
                digest::ct_eq(&mac.finalize().into_bytes(), sig)
            }
            Verifier::Ed25519(vk) => match ed25519_dalek::Signature::from_slice(sig) {
                Ok(s) => vk.verify_strict(base, &s).is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// The compiled `signature` section.
pub struct SignaturePolicy {
    keys: Vec<Key>,
    /// Indexes of the document key sources whose keys this policy accepts.
    sources: Vec<usize>,
    /// Web Bot Auth: the agent's directory holds the key.
    pub web_bot_auth: Option<WebBotAuth>,
    /// Components every accepted signature must cover.
    pub components: Vec<ComponentId<'static>>,
    pub max_age_s: u64,
    pub clock_skew_s: u64,
    pub nonce_required: bool,
    /// Nonces are also checked by the rate limit service (shared by every Envoy).
    pub nonce_cluster: bool,
    /// The largest body held for a Content-Digest check (larger: 413 `body_too_large`).
    pub max_body_bytes: u64,
    pub label: Option<String>,
    /// Publish the verified key id for the upstream (`x-edgeward-key-id`): one host call per request.
    pub upstream_key_id: bool,
    accept_signature: String,
}

impl SignaturePolicy {
    /// The ids of the policy's own keys (not those of its key sources, which change at run time).
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }
}

impl fmt::Debug for SignaturePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(&str, &str)> = self
            .keys
            .iter()
            .map(|k| (k.id.as_str(), k.alg.as_str()))
            .collect();
        f.debug_struct("SignaturePolicy")
            .field("keys", &keys)
            .field("sources", &self.sources)
            .field("web_bot_auth", &self.web_bot_auth)
            .field("accept_signature", &self.accept_signature)
            .field("max_age_s", &self.max_age_s)
            .field("clock_skew_s", &self.clock_skew_s)
            .field("nonce_required", &self.nonce_required)
            .field("nonce_cluster", &self.nonce_cluster)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("upstream_key_id", &self.upstream_key_id)
            .finish()
    }
}

/// What a verified signature established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    /// The `nonce` parameter, to be recorded with [`check_nonce`] whenever present.
    pub nonce: Option<String>,
    pub created: u64,
    /// `created + max_age_s`: after this the signature is refused anyway (nonce entries live until then).
    pub expires_at: u64,
    /// `content-digest` is covered: the body must be checked with [`check_content_digest`].
    pub needs_digest: bool,
    /// Web Bot Auth: the verified agent's origin.
    pub agent: Option<String>,
}

/// Why a key's `public_key` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyError {
    /// PEM armor, but not an ed25519 SPKI public key.
    Pem,
    NotBase64,
    /// Base64 of this many bytes (an ed25519 key is 32).
    Length(usize),
    /// 32 bytes that are not a point of the curve.
    NotAPoint,
    /// A small-order point: signatures under it prove nothing.
    Weak,
}

impl fmt::Display for PublicKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKeyError::Pem => {
                f.write_str("public_key is not a valid ed25519 PEM public key (SPKI)")
            }
            PublicKeyError::NotBase64 => f.write_str("public_key is neither PEM nor base64"),
            PublicKeyError::Length(n) => write!(
                f,
                "public_key is {n} bytes after base64 decoding; ed25519 needs 32"
            ),
            PublicKeyError::NotAPoint => f.write_str("public_key is not a valid ed25519 point"),
            PublicKeyError::Weak => f.write_str("public_key is a weak (small-order) ed25519 key"),
        }
    }
}

/// An ed25519 public key as a document's `public_key` takes it: SPKI PEM, or base64 of the 32 key bytes.
/// Weak (small-order) keys are refused.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, PublicKeyError> {
    let key = if s.trim_start().starts_with("-----BEGIN") {
        pem::ed25519_public_key_from_pem(s)
            .ok()
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
            .ok_or(PublicKeyError::Pem)?
    } else {
        let raw = decode_base64(s).ok_or(PublicKeyError::NotBase64)?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| PublicKeyError::Length(raw.len()))?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyError::NotAPoint)?
    };
    if key.is_weak() {
        return Err(PublicKeyError::Weak);
    }
    Ok(key)
}

/// Compiles a `signature` section; errors are pushed with their JSON paths under `path`.
pub fn compile(
    input: &SignatureInput,
    path: &str,
    env: &dyn Env,
    key_sources: &[KeySource],
    errs: &mut Errors,
) -> Option<SignaturePolicy> {
    let before = errs.len();
    let keys = compile_keys(&input.keys, &join(path, "keys"), env, errs);
    let sources = compile_source_names(&input.key_sources, path, key_sources, errs);
    let web_bot_auth = input
        .web_bot_auth
        .as_ref()
        .and_then(|w| web_bot_auth::compile(w, &join(path, "web_bot_auth"), key_sources, errs));
    match (
        &input.web_bot_auth,
        input.keys.is_empty() && input.key_sources.is_empty(),
    ) {
        (None, true) => errs.push(
            join(path, "keys"),
            "at least one key is required (in `keys`, or through `key_sources`)",
        ),
        (Some(_), false) => errs.push(
            join(path, "web_bot_auth"),
            "keys come from the agents' directories: leave out `keys` and `key_sources`",
        ),
        _ => {}
    }
    let components = compile_components(
        &input.effective_components(),
        &join(path, "components"),
        errs,
    );
    if input.web_bot_auth.is_some()
        && !components
            .iter()
            .any(|c| c.name == "@authority" || c.name == "@target-uri")
    {
        errs.push(
            join(path, "components"),
            "Web Bot Auth signatures cover the target: list \"@authority\" (or \"@target-uri\")",
        );
    }
    check_bounds(input, path, errs);
    check_label(input.label.as_deref(), path, errs);
    if errs.len() != before {
        return None;
    }
    Some(SignaturePolicy {
        keys,
        sources,
        accept_signature: accept_signature(input, &components),
        web_bot_auth,
        components,
        max_age_s: input.max_age_s,
        clock_skew_s: input.clock_skew_s,
        nonce_required: input.nonce == NonceMode::Required,
        nonce_cluster: input.nonce_scope == NonceScope::Cluster,
        max_body_bytes: input.max_body_bytes,
        label: input.label.clone(),
        upstream_key_id: input.upstream_key_id,
    })
}

/// `key_sources`: names of document key sources, each once.
fn compile_source_names(
    names: &[String],
    path: &str,
    key_sources: &[KeySource],
    errs: &mut Errors,
) -> Vec<usize> {
    let path = join(path, "key_sources");
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match key_sources.iter().position(|s| s.name == *name) {
            Some(k) if out.contains(&k) => {
                errs.push(index(&path, i), format!("{name:?} is listed twice"))
            }
            Some(k) => out.push(k),
            None => errs.push(
                index(&path, i),
                format!("unknown key source {name:?} (see the document's key_sources)"),
            ),
        }
    }
    out
}

/// `keys`: each with a usable id, validity window and verifier.
fn compile_keys(
    inputs: &[KeyInput],
    keys_path: &str,
    env: &dyn Env,
    errs: &mut Errors,
) -> Vec<Key> {
    let mut keys = Vec::new();
    for (i, k) in inputs.iter().enumerate() {
        if let Some(key) = compile_key(k, &index(keys_path, i), env, errs) {
            keys.push(key);
        }
    }
    keys
}

/// One entry of `keys` at `kp` (e.g. `policies.p.signature.keys[0]`). Every problem is reported, and a
/// key whose verifier could be built is returned even when its id or window is wrong (the section then
/// fails as a whole).
fn compile_key(k: &KeyInput, kp: &str, env: &dyn Env, errs: &mut Errors) -> Option<Key> {
    if k.id.is_empty() {
        errs.push(join(kp, "id"), "key id must not be empty");
    } else if k.id.bytes().any(|c| !(0x20..=0x7e).contains(&c)) {
        errs.push(join(kp, "id"), "key id must be printable ASCII");
    }
    if let (Some(nb), Some(na)) = (k.not_before, k.not_after) {
        if nb > na {
            errs.push(kp, format!("not_before ({nb}) is after not_after ({na})"));
        }
    }
    let verifier = match k.alg {
        Alg::HmacSha256 => hmac_verifier(k, kp, env, errs),
        Alg::Ed25519 => ed25519_verifier(k, kp, errs),
    }?;
    Some(Key {
        id: k.id.clone(),
        alg: k.alg,
        not_before: k.not_before,
        not_after: k.not_after,
        verifier,
    })
}

/// An hmac-sha256 key: a `secret` (at least [`MIN_HMAC_SECRET`] bytes), pre-keyed once.
fn hmac_verifier(k: &KeyInput, kp: &str, env: &dyn Env, errs: &mut Errors) -> Option<Verifier> {
    if k.public_key.is_some() {
        errs.push(
            join(kp, "public_key"),
            "hmac-sha256 keys take `secret`, not `public_key`",
        );
    }
    let Some(s) = &k.secret else {
        errs.push(join(kp, "secret"), "hmac-sha256 keys need a `secret`");
        return None;
    };
    match s.resolve(&join(kp, "secret"), env, MIN_HMAC_SECRET) {
        Err(e) => {
            errs.add(e);
            None
        }
        Ok(secret) => match Hmac::<Sha256>::new_from_slice(secret.bytes()) {
            Ok(m) => Some(Verifier::Hmac(m)),
            Err(_) => {
                errs.push(join(kp, "secret"), "secret cannot key HMAC-SHA256");
                None
            }
        },
    }
}

/// An ed25519 key: a `public_key` only (the edge never holds a client's private key).
fn ed25519_verifier(k: &KeyInput, kp: &str, errs: &mut Errors) -> Option<Verifier> {
    if k.secret.is_some() {
        errs.push(
            join(kp, "secret"),
            "ed25519 keys take only `public_key`; the edge never holds a client's private key",
        );
    }
    let Some(pk) = &k.public_key else {
        errs.push(join(kp, "public_key"), "ed25519 keys need a `public_key`");
        return None;
    };
    match parse_public_key(pk) {
        Ok(vk) => Some(Verifier::Ed25519(vk)),
        Err(e) => {
            errs.push(join(kp, "public_key"), e.to_string());
            None
        }
    }
}

/// `components`: the components every signature must cover, at least one, each once.
fn compile_components(
    inputs: &[String],
    comp_path: &str,
    errs: &mut Errors,
) -> Vec<ComponentId<'static>> {
    if inputs.is_empty() {
        errs.push(comp_path, "at least one component must be required");
    }
    let mut components: Vec<ComponentId<'static>> = Vec::new();
    for (i, c) in inputs.iter().enumerate() {
        match ComponentId::parse_config(c) {
            Ok(id) if components.iter().any(|x| x.same_as(&id)) => {
                errs.push(index(comp_path, i), format!("{c:?} is listed twice"))
            }
            Ok(id) => components.push(id),
            Err(e) => errs.push(index(comp_path, i), e.to_string()),
        }
    }
    components
}

/// Freshness (`max_age_s`, `clock_skew_s`) and the held body's bound (`max_body_bytes`).
fn check_bounds(input: &SignatureInput, path: &str, errs: &mut Errors) {
    if input.max_age_s == 0 {
        errs.push(join(path, "max_age_s"), "must be greater than 0");
    }
    if input.clock_skew_s > input.max_age_s {
        errs.push(join(path, "clock_skew_s"), "must not exceed max_age_s");
    }
    if input.max_body_bytes == 0 {
        errs.push(join(path, "max_body_bytes"), "must be greater than 0");
    }
}

/// `label`: an RFC 8941 key, as it appears in `Signature-Input`.
fn check_label(label: Option<&str>, path: &str, errs: &mut Errors) {
    if let Some(l) = label {
        if !sfv::is_key(l) {
            errs.push(
                join(path, "label"),
                format!("{l:?} is not a valid signature label (lowercase letters, digits, _-.*; starting with a letter)"),
            );
        }
    }
}

/// RFC 9421 §5.1: the `Accept-Signature` value that tells a client what to cover; boolean parameters mean
/// "include this parameter".
fn accept_signature(input: &SignatureInput, components: &[ComponentId]) -> String {
    let mut accept = String::new();
    accept.push_str(input.label.as_deref().unwrap_or("sig1"));
    accept.push_str("=(");
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            accept.push(' ');
        }
        c.write(&mut accept);
    }
    accept.push_str(");created");
    if input.web_bot_auth.is_some() {
        accept.push_str(";expires");
    }
    if input.nonce == NonceMode::Required {
        accept.push_str(";nonce");
    }
    accept.push_str(";keyid");
    if input.web_bot_auth.is_some() {
        accept.push_str(";tag=\"web-bot-auth\"");
    }
    accept
}

/// Room kept in a signature base for `@signature-params`' own parameters (`created`, `keyid`, …): a
/// longer value grows the base once.
const SIG_PARAMS_ROOM: usize = 128;

/// The signature parameters RFC 9421 §2.3 defines, typed.
struct SigParams<'a> {
    created: Option<u64>,
    expires: Option<u64>,
    nonce: Option<Cow<'a, str>>,
    alg: Option<Alg>,
    keyid: Option<Cow<'a, str>>,
    tag: Option<Cow<'a, str>>,
}

fn sig_params<'a>(params: &sfv::Params<'a>) -> Option<SigParams<'a>> {
    let mut p = SigParams {
        created: None,
        expires: None,
        nonce: None,
        alg: None,
        keyid: None,
        tag: None,
    };
    for (k, v) in params {
        match (k.as_ref(), v) {
            ("created", BareItem::Integer(i)) => p.created = Some(u64::try_from(*i).ok()?),
            ("expires", BareItem::Integer(i)) => p.expires = Some(u64::try_from(*i).ok()?),
            ("nonce", BareItem::String(s)) if !s.is_empty() && s.len() <= MAX_NONCE_LEN => {
                p.nonce = Some(s.clone())
            }
            ("alg", BareItem::String(s)) => p.alg = Some(Alg::parse(s)?),
            ("keyid", BareItem::String(s)) => p.keyid = Some(s.clone()),
            ("tag", BareItem::String(s)) => p.tag = Some(s.clone()),
            ("created" | "expires" | "nonce" | "alg" | "keyid" | "tag", _) => return None,
            // Unknown parameters are signed (they are in @signature-params) and otherwise ignored.
            _ => {}
        }
    }
    Some(p)
}

/// The keys a request's signature may be checked with besides the policy's own: the document's key
/// sources and this worker's copies of their sets.
#[derive(Clone, Copy)]
pub struct KeyRing<'a> {
    pub sources: &'a [KeySource],
    pub cache: &'a KeyCache,
}

static NO_KEYS: KeyCache = KeyCache::EMPTY;

impl KeyRing<'static> {
    /// No key sources (documents without `key_sources`, and callers that hold no sets).
    pub fn none() -> KeyRing<'static> {
        KeyRing {
            sources: &[],
            cache: &NO_KEYS,
        }
    }
}

/// A key that may have made a signature.
enum Candidate<'a> {
    Document(&'a Key),
    Source(&'a SourceKey),
}

impl Candidate<'_> {
    fn verify(&self, base: &[u8], sig: &[u8]) -> bool {
        match self {
            Candidate::Document(k) => k.verify(base, sig),
            Candidate::Source(k) => match ed25519_dalek::Signature::from_slice(sig) {
                Ok(s) => k.key.verify_strict(base, &s).is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// Which failure of several labels is reported: the one that says most.
fn rank(r: Reason) -> u8 {
    match r {
        Reason::KeysUnavailable => 3,
        Reason::SignatureExpired => 2,
        Reason::SignatureAgentUnknown => 1,
        _ => 0,
    }
}

impl SignaturePolicy {
    /// [`SignaturePolicy::verify_head_with`] with the policy's own keys only.
    pub fn verify_head(&self, head: &RequestHead, now: u64) -> Result<Verified, Reason> {
        self.verify_head_with(head, now, KeyRing::none())
    }

    /// Verifies the request's signature(s) against this policy (RFC 9421 §3.2) at time `now`.
    ///
    /// Missing `Signature`/`Signature-Input` (or no signature with the configured label) →
    /// `SignatureMissing`; authentic but stale → `SignatureExpired`; a key only a key source that never
    /// loaded could hold → `KeysUnavailable`; Web Bot Auth with an agent outside the allow-list →
    /// `SignatureAgentUnknown`; anything else → `SignatureInvalid`. A label repeated across field lines,
    /// or present in one header and not the other, is invalid.
    pub fn verify_head_with(
        &self,
        head: &RequestHead,
        now: u64,
        ring: KeyRing,
    ) -> Result<Verified, Reason> {
        let (Some(input_value), Some(sig_value)) = (
            head.headers.combined("signature-input"),
            head.headers.combined("signature"),
        ) else {
            return Err(Reason::SignatureMissing);
        };
        let inputs = sfv::parse_dictionary(&input_value).map_err(|_| Reason::SignatureInvalid)?;
        let sigs = sfv::parse_dictionary(&sig_value).map_err(|_| Reason::SignatureInvalid)?;
        // Bound the work first (the checks below are quadratic in the number of labels).
        if inputs.len() > MAX_SIGNATURES || sigs.len() > MAX_SIGNATURES {
            return Err(Reason::SignatureInvalid);
        }
        // Two lines carrying the same label are ambiguous (which one would another verifier pick?):
        // refused deterministically, as is any label without its counterpart.
        if sfv::has_duplicate_keys(&inputs)
            || sfv::has_duplicate_keys(&sigs)
            || inputs.len() != sigs.len()
            || !inputs
                .iter()
                .all(|(l, _)| sigs.iter().any(|(l2, _)| l2 == l))
        {
            return Err(Reason::SignatureInvalid);
        }
        let mut worst = Reason::SignatureInvalid;
        let mut tried = 0usize;
        let mut budget = MAX_BASE_INPUT_BYTES;
        for (label, input) in &inputs {
            if self.label.as_ref().is_some_and(|l| l != label) {
                continue;
            }
            tried += 1;
            let Some((_, sig)) = sigs.iter().find(|(l, _)| l == label) else {
                continue;
            };
            match self.verify_one(head, now, ring, label, input, sig, &mut budget) {
                Ok(v) => return Ok(v),
                Err(r) if rank(r) > rank(worst) => worst = r,
                Err(_) => {}
            }
        }
        if tried == 0 {
            return Err(Reason::SignatureMissing);
        }
        Err(worst)
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_one(
        &self,
        head: &RequestHead,
        now: u64,
        ring: KeyRing,
        label: &str,
        input: &Member,
        sig: &Member,
        budget: &mut usize,
    ) -> Result<Verified, Reason> {
        const INVALID: Reason = Reason::SignatureInvalid;
        let Member::InnerList(items, params) = input else {
            return Err(INVALID);
        };
        let Member::Item(Item {
            bare: BareItem::ByteSeq(sig_bytes),
            ..
        }) = sig
        else {
            return Err(INVALID);
        };
        if items.len() > MAX_COMPONENTS {
            return Err(INVALID);
        }
        let mut covered: Vec<ComponentId> = Vec::with_capacity(items.len());
        for item in items {
            // The names and parameters borrow from the field: cloning the item copies no text (an
            // escaped string aside).
            let id = ComponentId::from_item(item).map_err(|_| INVALID)?;
            if covered.iter().any(|c| c.same_as(&id)) {
                return Err(INVALID);
            }
            covered.push(id);
        }
        if !self
            .components
            .iter()
            .all(|req| covered.iter().any(|c| c.same_as(req)))
        {
            return Err(INVALID);
        }
        let p = sig_params(params).ok_or(INVALID)?;
        let created = p.created.ok_or(INVALID)?;
        let key_id = p.keyid.ok_or(INVALID)?;
        if self.nonce_required && p.nonce.is_none() {
            return Err(INVALID);
        }
        let agent = match &self.web_bot_auth {
            None => None,
            Some(wba) => {
                let expires = p.expires.ok_or(INVALID)?;
                if p.tag.as_deref() != Some(web_bot_auth::TAG)
                    || expires < created
                    || p.alg.is_some_and(|a| a != Alg::Ed25519)
                {
                    return Err(INVALID);
                }
                let agent = wba.agent(head, label, &covered).map_err(|e| match e {
                    web_bot_auth::AgentError::Unknown => Reason::SignatureAgentUnknown,
                    web_bot_auth::AgentError::NotCovered => INVALID,
                })?;
                Some(agent)
            }
        };

        // No key can verify it: refused before any base is built (key ids are not secret).
        let candidates = self.candidates(&key_id, p.alg, now, ring, agent.as_ref())?;
        if candidates.is_empty() {
            return Err(INVALID);
        }
        let cost = covered
            .iter()
            .fold(0usize, |n, c| n.saturating_add(c.input_len(head)));
        *budget = budget.checked_sub(cost).ok_or(INVALID)?;

        // Sized for the whole base: the values (`cost`), each line's name and punctuation, and
        // `@signature-params` (each name again, and room for the usual signature parameters).
        let capacity = covered
            .iter()
            .fold(cost.saturating_add(24 + SIG_PARAMS_ROOM), |n, c| {
                n.saturating_add(2 * c.name.len() + 20)
            });
        let mut base = String::with_capacity(capacity);
        components::push_base_lines(head, &covered, &mut base).ok_or(INVALID)?;
        // `@signature-params`: the inner list serialized canonically, written once, in place.
        let params_at = base.len();
        sfv::write_member(&mut base, input);
        let params_value = base.get(params_at..).unwrap_or_default();

        let verifies = |base: &str| {
            candidates
                .iter()
                .any(|k| k.verify(base.as_bytes(), sig_bytes))
        };
        let mut authentic = verifies(&base);
        // Envoy's normalize_path decodes percent-encoded unreserved characters before any filter runs,
        // and the path as the client sent it is not available to filters (checked on 1.36-1.40). `~` is
        // the unreserved character encoders commonly encode (`%7E`: Java's URLEncoder, Python's quote
        // before 3.7): when the path as seen does not verify, it is tried with every `~` written
        // `%7E`, then `%7e`. Each try is another base, charged to the same budget.
        if !authentic && head.path.contains('~') && covered.iter().any(ComponentId::covers_path) {
            for encoded in ["%7E", "%7e"] {
                let path = head.path.replace('~', encoded);
                let alt = RequestHead {
                    path: &path,
                    ..*head
                };
                *budget = budget.checked_sub(cost).ok_or(INVALID)?;
                let base =
                    components::signature_base(&alt, &covered, params_value).ok_or(INVALID)?;
                if verifies(&base) {
                    authentic = true;
                    break;
                }
            }
        }
        if !authentic {
            return Err(INVALID);
        }
        // Freshness after authenticity, so `signature_expired` in a log means a genuine but stale request.
        if created > now.saturating_add(self.clock_skew_s)
            || created < now.saturating_sub(self.max_age_s)
            || p.expires
                .is_some_and(|e| e < now.saturating_sub(self.clock_skew_s))
        {
            return Err(Reason::SignatureExpired);
        }
        Ok(Verified {
            key_id: key_id.into_owned(),
            nonce: p.nonce.map(Cow::into_owned),
            created,
            expires_at: created.saturating_add(self.max_age_s),
            needs_digest: covered.iter().any(ComponentId::is_content_digest),
            agent: agent.map(|a| a.origin),
        })
    }

    /// The keys that `key_id` names for this request, valid at `now` and of the signature's `alg`:
    /// the agent's directory (Web Bot Auth), or the policy's keys and its key sources' sets. A key
    /// only a source that never loaded could hold is `KeysUnavailable`.
    fn candidates<'k>(
        &'k self,
        key_id: &str,
        alg: Option<Alg>,
        now: u64,
        ring: KeyRing<'k>,
        agent: Option<&web_bot_auth::Agent>,
    ) -> Result<Vec<Candidate<'k>>, Reason> {
        if let Some(agent) = agent {
            let set = ring
                .cache
                .get(agent.source)
                .ok_or(Reason::KeysUnavailable)?;
            return Ok(set
                .named(key_id, KeyIdMode::Thumbprint, now)
                .map(Candidate::Source)
                .collect());
        }
        let mut out: Vec<Candidate<'k>> = self
            .keys
            .iter()
            .filter(|k| k.id == key_id && k.valid_at(now) && alg.is_none_or(|a| a == k.alg))
            .map(Candidate::Document)
            .collect();
        let mut unloaded = false;
        if alg.is_none_or(|a| a == Alg::Ed25519) {
            for &i in &self.sources {
                let mode = ring.sources.get(i).map_or(KeyIdMode::Kid, |s| s.key_id);
                match ring.cache.get(i) {
                    Some(set) => out.extend(set.named(key_id, mode, now).map(Candidate::Source)),
                    None => unloaded = true,
                }
            }
        }
        if out.is_empty() && unloaded {
            return Err(Reason::KeysUnavailable);
        }
        Ok(out)
    }

    /// The key sources this policy reads (its `key_sources` and its Web Bot Auth directories).
    pub fn source_indexes(&self) -> Vec<usize> {
        let mut out = self.sources.clone();
        if let Some(w) = &self.web_bot_auth {
            out.extend(w.sources());
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The reply for a failed verification: 503 `keys_unavailable` (`Retry-After: 5`) when the keys
    /// could not be checked yet, else [`SignaturePolicy::unauthorized_reply`].
    pub fn refusal(&self, reason: Reason) -> Reply {
        if reason == Reason::KeysUnavailable {
            return Reply::deny(503, reason).with_header("retry-after", "5");
        }
        self.unauthorized_reply(reason)
    }

    /// The 401 for any signature failure: same body and `Accept-Signature` whatever `reason` is.
    pub fn unauthorized_reply(&self, reason: Reason) -> Reply {
        Reply::deny(401, reason).with_header("accept-signature", self.accept_signature.clone())
    }

    /// The `Accept-Signature` value (RFC 9421 §5.1) this policy advertises.
    pub fn accept_signature(&self) -> &str {
        &self.accept_signature
    }

    /// The reply for a nonce outcome: `None` when fresh; a replay gets the usual 401; a nonce that cannot
    /// be vouched for gets 503 `nonce_store_full` with `Retry-After: 1` (re-signing with a fresh `created`
    /// passes), since the client did nothing wrong.
    pub fn nonce_reply(&self, outcome: NonceOutcome) -> Option<Reply> {
        match outcome {
            NonceOutcome::Fresh => None,
            NonceOutcome::Replayed => Some(self.unauthorized_reply(Reason::SignatureReplayed)),
            NonceOutcome::StoreFull => {
                Some(Reply::deny(503, Reason::NonceStoreFull).with_header("retry-after", "1"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
