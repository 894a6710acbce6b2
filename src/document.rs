//! The policy document: JSON → typed input (unknown fields are errors) → compiled, immutable [`Document`].

use crate::error::{index, join, ConfigError, Errors};
use crate::https::{Https, HttpsInput};
use crate::ip::{ClientIpConfig, ClientIpInput, IpInput, IpLists, IpPolicy};
use crate::keys::{self, KeySource, KeySourceInput};
use crate::log::{self, LogInput, LogPolicy};
use crate::rate_limit::{self, LimitInput, RateLimits, RlsConfig, RlsInput};
use crate::route::{HostMatch, RouteEntry, Target};
use crate::secret::Env;
use crate::signature::{self, NonceTableConfig, SignatureInput, SignaturePolicy};
use crate::store::{SharedStore, StoreError};
use std::collections::BTreeMap;

/// The whole document as written.
#[derive(Debug, Clone)]
pub struct DocumentInput {
    /// Lets editors find policies/schema.json; ignored.
    pub schema: Option<String>,
    pub client_ip: ClientIpInput,
    pub ip_lists: crate::ip::IpListsInput,
    pub rate_limit_slots: Option<u32>,
    /// The rate limit service for `"backend": "rls"` limits.
    pub rls: Option<RlsInput>,
    /// Log settings for every request: the record of a request outside any policy, and each policy's
    /// `log` fields that the policy does not set itself.
    pub log: Option<LogInput>,
    /// Bounds on the request bodies a worker holds for `content-digest` checks.
    pub held_bodies: Option<HeldBodiesInput>,
    /// Verification keys fetched at run time (JWK Sets), by name.
    pub key_sources: BTreeMap<String, KeySourceInput>,
    pub policies: BTreeMap<String, PolicyInput>,
    pub routes: Vec<RouteInput>,
}

/// The `held_bodies` section as written.
#[derive(Debug, Clone, Default)]
pub struct HeldBodiesInput {
    pub max_bytes: Option<u64>,
    pub timeout_ms: Option<u64>,
}

crate::json::json_object!(HeldBodiesInput {
    max_bytes: "max_bytes" => some,
    timeout_ms: "timeout_ms" => some,
});

/// Bytes one worker holds in request bodies at once, by default: sixteen bodies of the default
/// `max_body_bytes` (1 MiB), per worker thread and plugin configuration.
pub const DEFAULT_HELD_BYTES: u64 = 16 * 1024 * 1024;
/// How long a held body may take to arrive, by default (from the request head).
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 5_000;
const HELD_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=(1 << 30);
const BODY_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;

/// The compiled `held_bodies` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBodies {
    /// Bytes one worker holds in bodies at once (per plugin configuration).
    pub max_bytes: usize,
    /// Nanoseconds a body may take from the head.
    pub timeout_ns: u64,
}

impl Default for HeldBodies {
    fn default() -> Self {
        HeldBodies {
            max_bytes: DEFAULT_HELD_BYTES as usize,
            timeout_ns: DEFAULT_BODY_TIMEOUT_MS * 1_000_000,
        }
    }
}

impl HeldBodies {
    fn compile(input: Option<&HeldBodiesInput>, errs: &mut Errors) -> HeldBodies {
        let input = input.cloned().unwrap_or_default();
        let max_bytes = input.max_bytes.unwrap_or(DEFAULT_HELD_BYTES);
        if !HELD_BYTES_RANGE.contains(&max_bytes) {
            errs.push(
                "held_bodies.max_bytes",
                format!("{max_bytes} is out of range (allowed 1024..=1073741824)"),
            );
        }
        let timeout_ms = input.timeout_ms.unwrap_or(DEFAULT_BODY_TIMEOUT_MS);
        if !BODY_TIMEOUT_RANGE.contains(&timeout_ms) {
            errs.push(
                "held_bodies.timeout_ms",
                format!("{timeout_ms} is out of range (allowed 100..=600000)"),
            );
        }
        HeldBodies {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            timeout_ns: timeout_ms.saturating_mul(1_000_000),
        }
    }
}

crate::json::json_object!(DocumentInput {
    // `null` is refused here (and for `rls`), as policies/schema.json says.
    schema: "$schema" => some,
    client_ip: "client_ip" => read,
    // A list name given twice is an error (the BTreeMap reader refuses repeated keys): keeping the
    // last value would let a second `"blocked": []` empty a list silently.
    ip_lists: "ip_lists" => read,
    rate_limit_slots: "rate_limit_slots" => read,
    rls: "rls" => some,
    log: "log" => some,
    held_bodies: "held_bodies" => some,
    key_sources: "key_sources" => read,
    policies: "policies" => required,
    routes: "routes" => required,
});

/// `enforce` (default) or `shadow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// One named policy as written.
#[derive(Debug, Clone, Default)]
pub struct PolicyInput {
    pub mode: Mode,
    pub https: Option<HttpsInput>,
    pub signature: Option<SignatureInput>,
    pub ip: Option<IpInput>,
    pub rate_limits: Option<Vec<LimitInput>>,
    pub log: Option<LogInput>,
}

/// One entry of `routes` as written. `policy` must be given: a name, or `null` for "no checks".
#[derive(Debug, Clone, Default)]
pub struct RouteInput {
    pub route: Option<String>,
    pub host: Option<String>,
    /// Exactly this path (without the query).
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub policy: Option<Option<String>>,
}

crate::json::json_choice!(Mode {
    "enforce" => Mode::Enforce,
    "shadow" => Mode::Shadow,
});

crate::json::json_object!(PolicyInput {
    mode: "mode" => read,
    https: "https" => read,
    signature: "signature" => read,
    ip: "ip" => read,
    rate_limits: "rate_limits" => read,
    log: "log" => read,
});

crate::json::json_object!(RouteInput {
    route: "route" => read,
    host: "host" => read,
    path: "path" => read,
    path_prefix: "path_prefix" => read,
    // `"policy": null` (Some(None), no checks) differs from a missing field (None).
    policy: "policy" => some,
});

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    pub https: Option<Https>,
    pub ip: Option<IpPolicy>,
    pub signature: Option<SignaturePolicy>,
    pub rate_limits: RateLimits,
    /// The policy's `log` section over the document's, or the document's alone.
    pub log: LogPolicy,
}

/// The compiled document, shared read-only by every request.
pub struct Document {
    pub policies: Vec<Policy>,
    pub routes: Vec<RouteEntry>,
    /// Whether any route entry matches on Envoy's route name (else the adapter skips that property read).
    pub uses_route_name: bool,
    /// How the client address is found (peer, trusted XFF hops, or trusted proxies).
    pub client_ip: ClientIpConfig,
    /// The shared replay table of signature nonces (one per Envoy process).
    pub nonce_table: NonceTableConfig,
    /// The document's log settings: the record of requests without a policy (bad host, no route,
    /// `"policy": null`).
    pub default_log: LogPolicy,
    /// Keys the hashes that place rate-limit buckets and nonces in shared data. Derived from the document
    /// text and the optional `EDGEWARD_HASH_KEY` environment variable, so every worker VM of a process
    /// computes the same key without racing to publish one.
    pub hash_key: [u8; 16],
    /// Keys the hash that places nonces: from `EDGEWARD_HASH_KEY` alone (a fixed public key without
    /// it), not from the document text, so that a reload or a second configuration of the same VM
    /// finds every nonce recorded before and a replay is caught across them.
    pub nonce_key: [u8; 16],
    /// The rate limit service (cluster, domain, timeout, failure mode), if the document has one.
    pub rls: Option<RlsConfig>,
    /// Bounds on held request bodies (per worker).
    pub held_bodies: HeldBodies,
    /// Key sources fetched at run time, in name order (their index is their slot in a
    /// [`crate::keys::KeyCache`]).
    pub key_sources: Vec<KeySource>,
    /// Request headers a client may not send besides `x-edgeward-*`: the Web Bot Auth agent headers
    /// the document chose outside that prefix (lowercase).
    pub reserved_headers: Vec<String>,
}

// The hash keys are derived from EDGEWARD_HASH_KEY: never printed.
impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("policies", &self.policies)
            .field("routes", &self.routes)
            .field("uses_route_name", &self.uses_route_name)
            .field("client_ip", &self.client_ip)
            .field("nonce_table", &self.nonce_table)
            .field("default_log", &self.default_log)
            .field("hash_key", &"<redacted>")
            .field("nonce_key", &"<redacted>")
            .field("rls", &self.rls)
            .field("held_bodies", &self.held_bodies)
            .field("key_sources", &self.key_sources)
            .field("reserved_headers", &self.reserved_headers)
            .finish()
    }
}

/// Parses JSON text into the input types; errors carry the JSON path (`policies.p.ip: unknown field ...`)
/// and never a value from the text (see [`crate::json`]). Text after the document is an error too.
pub fn parse(json: &str) -> Result<DocumentInput, ConfigError> {
    crate::json::from_str(json)
}

impl Document {
    /// Parses and compiles a document; every error found is returned.
    pub fn from_json(json: &str, env: &dyn Env) -> Result<Document, Vec<ConfigError>> {
        let (input, hash_key) = Document::parse_with_key(json, env).map_err(|e| vec![e])?;
        Document::from_input(&input, hash_key, env)
    }

    /// The first half of [`Document::from_json`]: the parsed input and the document's hash key. The
    /// plugin frees the text before compiling, so a large document's bytes and its compiled tables are
    /// not in memory at the same time (wasm memory never shrinks).
    pub fn parse_with_key(
        json: &str,
        env: &dyn Env,
    ) -> Result<(DocumentInput, [u8; 16]), ConfigError> {
        Ok((parse(json)?, derive_hash_key(json, env)))
    }

    /// The second half of [`Document::from_json`].
    pub fn from_input(
        input: &DocumentInput,
        hash_key: [u8; 16],
        env: &dyn Env,
    ) -> Result<Document, Vec<ConfigError>> {
        let mut doc = Document::compile(input, env)?;
        doc.hash_key = hash_key;
        Ok(doc)
    }

    /// Validates and compiles parsed input.
    pub fn compile(input: &DocumentInput, env: &dyn Env) -> Result<Document, Vec<ConfigError>> {
        let mut errs = Errors::default();
        let held_bodies = HeldBodies::compile(input.held_bodies.as_ref(), &mut errs);
        let key_sources = keys::compile_sources(&input.key_sources, "key_sources", &mut errs);
        let key_sources_ok = key_sources.len() == input.key_sources.len();
        let client_ip = ClientIpConfig::compile(&input.client_ip, "client_ip", &mut errs);
        let ip_lists = IpLists::compile(&input.ip_lists, "ip_lists", &mut errs);
        let slots = rate_limit::validate_slots(
            input.rate_limit_slots.unwrap_or(rate_limit::DEFAULT_SLOTS),
            "rate_limit_slots",
            &mut errs,
        );
        let rls = input
            .rls
            .as_ref()
            .and_then(|r| rate_limit::remote::compile_rls(r, "rls", &mut errs));
        // The document's log section, compiled once on its own (its errors carry its own paths), then
        // under each policy's section that overrides some of its fields.
        let doc_log = input.log.clone().unwrap_or_default();
        let mut log_errs = Errors::default();
        let default_log = log::compile(&doc_log, "log", env, &mut log_errs);
        let doc_log_ok = log_errs.is_empty();
        for e in log_errs.into_vec() {
            errs.add(e);
        }
        let mut policies = Vec::with_capacity(input.policies.len());
        for (name, p) in &input.policies {
            let path = join("policies", name);
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errs.push(
                    &path,
                    format!("policy name {name:?} may only hold letters, digits, '-' and '_'"),
                );
            }
            let https = p
                .https
                .as_ref()
                .and_then(|h| Https::compile(h, &join(&path, "https"), &mut errs));
            let ip =
                p.ip.as_ref()
                    .and_then(|i| IpPolicy::compile(i, &join(&path, "ip"), &ip_lists, &mut errs));
            let signature = p.signature.as_ref().and_then(|sig| {
                // A source with errors of its own is not reported again as unknown.
                if !key_sources_ok && (!sig.key_sources.is_empty() || sig.web_bot_auth.is_some()) {
                    return None;
                }
                signature::compile(sig, &join(&path, "signature"), env, &key_sources, &mut errs)
            });
            if p.signature.as_ref().is_some_and(|s| {
                s.nonce_scope == signature::NonceScope::Cluster && input.rls.is_none()
            }) {
                errs.push(
                    join(&join(&path, "signature"), "nonce_scope"),
                    "\"cluster\" needs the document-level \"rls\" section (cluster, domain): the rate limit service remembers the nonces",
                );
            }
            if let Some(sig) = &signature {
                if usize::try_from(sig.max_body_bytes).map_or(true, |n| n > held_bodies.max_bytes) {
                    errs.push(
                        join(&join(&path, "signature"), "max_body_bytes"),
                        format!(
                            "{} is more than held_bodies.max_bytes ({}): such a body could never be held",
                            sig.max_body_bytes, held_bodies.max_bytes
                        ),
                    );
                }
            }
            let rate_limits = rate_limit::compile(
                p.rate_limits.as_deref().unwrap_or(&[]),
                &join(&path, "rate_limits"),
                name,
                p.signature.is_some(),
                input.rls.is_some(),
                slots,
                &mut errs,
            )
            .unwrap_or_default();
            let mut log = match &p.log {
                Some(own) => {
                    let merged = if doc_log_ok {
                        own.over(&doc_log)
                    } else {
                        own.clone()
                    };
                    log::compile(&merged, &join(&path, "log"), env, &mut errs)
                }
                None => default_log.clone(),
            }
            .unwrap_or_default();
            if let Some(sig) = &signature {
                log.precompute_key_ids(sig.key_ids());
            }
            policies.push(Policy {
                name: name.clone(),
                mode: p.mode,
                https,
                ip,
                signature,
                rate_limits,
                log,
            });
        }
        let mut routes = Vec::with_capacity(input.routes.len());
        for (i, r) in input.routes.iter().enumerate() {
            let path = index("routes", i);
            let target = match &r.policy {
                None => {
                    errs.push(
                        &path,
                        "missing field `policy` (a policy name, or null for no checks)",
                    );
                    continue;
                }
                Some(None) => Target::NoChecks,
                Some(Some(name)) => match policies.iter().position(|p| &p.name == name) {
                    Some(i) => Target::Policy(i),
                    None => {
                        errs.push(join(&path, "policy"), format!("unknown policy {name:?}"));
                        continue;
                    }
                },
            };
            let host = r
                .host
                .as_ref()
                .and_then(|h| HostMatch::compile(h, &join(&path, "host"), &mut errs));
            for (field, value) in [("path", &r.path), ("path_prefix", &r.path_prefix)] {
                if let Some(p) = value.as_ref().filter(|p| !p.starts_with('/')) {
                    errs.push(join(&path, field), format!("{p:?} must start with '/'"));
                }
            }
            if let Some(p) = r.path.as_ref().filter(|p| p.contains(['?', '#'])) {
                errs.push(
                    join(&path, "path"),
                    format!("{p:?}: a path is matched without its query; leave out '?' and '#'"),
                );
            }
            if r.path.is_some() && r.path_prefix.is_some() {
                errs.push(
                    join(&path, "path"),
                    "give either path (exactly this path) or path_prefix, not both",
                );
            }
            if let Some(rn) = &r.route {
                if rn.is_empty() {
                    errs.push(join(&path, "route"), "an empty route name never matches");
                }
            }
            routes.push(RouteEntry {
                route: r.route.clone(),
                host,
                path: r.path.clone(),
                path_prefix: r.path_prefix.clone(),
                target,
            });
        }
        if input.routes.is_empty() {
            errs.push("routes", "no routes: every request would be denied");
        }
        if !errs.is_empty() {
            return Err(errs.into_vec());
        }
        let sections: Vec<&RateLimits> = policies.iter().map(|p| &p.rate_limits).collect();
        rate_limit::check_globals(&sections, &mut errs);
        rate_limit::check_remote_names(&sections, &mut errs);
        if !errs.is_empty() {
            return Err(errs.into_vec());
        }
        let uses_route_name = routes.iter().any(|r| r.route.is_some());
        let mut reserved_headers: Vec<String> = policies
            .iter()
            .filter_map(|p| p.signature.as_ref()?.web_bot_auth.as_ref())
            .map(|w| w.agent_header.clone())
            .filter(|h| !h.starts_with(crate::engine::INTERNAL_HEADER_PREFIX))
            .collect();
        reserved_headers.sort();
        reserved_headers.dedup();
        Ok(Document {
            policies,
            routes,
            uses_route_name,
            client_ip,
            default_log: default_log.unwrap_or_default(),
            nonce_table: NonceTableConfig::default(),
            hash_key: [0; 16],
            nonce_key: derive_nonce_key(env),
            rls,
            held_bodies,
            key_sources,
            reserved_headers,
        })
    }
}

impl Document {
    /// Creates the shared-data tables (nonce buckets, rate-limit sets) that do not exist yet. Called once
    /// per worker at configure time, before traffic, so that no first write races a request.
    pub fn prepare(&self, store: &mut dyn SharedStore) -> Result<(), StoreError> {
        if self.policies.iter().any(|p| p.signature.is_some()) {
            signature::init_nonce_table(store, &self.nonce_table)?;
        }
        for p in &self.policies {
            p.rate_limits.prepare(store)?;
        }
        Ok(())
    }

    /// Whether any limit leases tokens (a worker then keeps a lease table for this document).
    pub fn leases(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.rate_limits.limits().iter().any(|l| l.lease > 1))
    }
}

/// The document's hash key: SHA-256 of a domain label, the document text and `EDGEWARD_HASH_KEY`
/// (see [`Document::hash_key`]).
fn derive_hash_key(json: &str, env: &dyn Env) -> [u8; 16] {
    derive_key(b"edgeward hash key v1\0", Some(json), env)
}

/// The nonce key: SHA-256 of a domain label and `EDGEWARD_HASH_KEY` only (see [`Document::nonce_key`]).
fn derive_nonce_key(env: &dyn Env) -> [u8; 16] {
    derive_key(b"edgeward nonce key v1\0", None, env)
}

/// The first 16 bytes of SHA-256(label, text and a NUL if any, `EDGEWARD_HASH_KEY` if set).
fn derive_key(label: &[u8], text: Option<&str>, env: &dyn Env) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(label);
    if let Some(text) = text {
        h.update(text.as_bytes());
        h.update([0]);
    }
    if let Some(extra) = env.var("EDGEWARD_HASH_KEY") {
        h.update(extra.as_bytes());
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0x";

    /// A secret written as a plain string where `{"base64": …}` belongs: the error names the path and
    /// what was expected, never the value.
    #[test]
    fn parse_errors_never_echo_a_secret() {
        let cases = [
            (
                format!(
                    r#"{{"policies":{{"p":{{"log":{{"pseudonym_key":"{SECRET}"}}}}}},"routes":[{{"policy":"p"}}]}}"#
                ),
                "policies.p.log.pseudonym_key",
            ),
            (
                format!(
                    r#"{{"policies":{{"p":{{"signature":{{"keys":[{{"id":"a","alg":"hmac-sha256","secret":"{SECRET}"}}]}}}}}},"routes":[{{"policy":"p"}}]}}"#
                ),
                "policies.p.signature.keys[0].secret",
            ),
        ];
        for (text, path) in &cases {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert_eq!(e.path, *path, "{e}");
            assert!(
                e.reason.starts_with(
                    r#"invalid type: string, expected an object, {"env": NAME} or {"base64": VALUE}"#
                ),
                "{e}"
            );
            assert!(!e.to_string().contains(SECRET), "{e}");
            assert!(!e.to_string().contains(&SECRET[..8]), "{e}");
        }
    }

    /// An unknown value of a choice keeps the list of what is accepted and loses the value.
    #[test]
    fn unknown_variant_errors_list_the_variants_without_the_value() {
        let text = format!(
            r#"{{"rls":{{"cluster":"rl","domain":"d","failure_mode":"{SECRET}"}},"policies":{{}},"routes":[{{"policy":null}}]}}"#
        );
        let e = parse(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"));
        assert_eq!(e.path, "rls.failure_mode", "{e}");
        assert!(
            e.reason
                .starts_with("unknown value, expected `deny` or `allow` at line 1"),
            "{e}"
        );
        assert!(!e.to_string().contains(&SECRET[..8]), "{e}");
    }

    /// The paths of parse errors of whole documents (what `edgeward check` and the plugin's load error
    /// print): unknown fields, wrong types in maps and arrays, unknown values, missing fields (the
    /// object's path), cut text, escaped keys, repeated keys, trailing text. No message quotes a value.
    #[test]
    fn document_parse_errors_name_the_path() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"policies": {"p": {"https": {"acton": "reject"}}}, "routes": [{"policy": "p"}]}"#, "policies.p.https.acton", "unknown field `acton`, expected one of `action`, "),
            (r#"{"policies": {"p": {}}, "routes": ["#, "routes[0]", "unexpected end of the document at line 1 column 36"),
            (r#"{"policies":"#, "policies", "unexpected end of the document"),
            (r#"{"policies":{"p":{"ip":{"allow":["10.0.0.1", 5]}}},"routes":[{"policy":"p"}]}"#, "policies.p.ip.allow[1]", "invalid type: number, expected a string"),
            (r#"{"policies":{"p":{"ip":{"allow":"10.0.0.1"}}},"routes":[{"policy":"p"}]}"#, "policies.p.ip.allow", "invalid type: string, expected an array"),
            (r#"{"policies":{"p":{"ip":{"allow":{"a":1}}}},"routes":[{"policy":"p"}]}"#, "policies.p.ip.allow", "invalid type: object, expected an array"),
            (r#"{"rls":{"cluster":"rl","domain":"d","failure_mode":"open"},"policies":{},"routes":[{"policy":null}]}"#, "rls.failure_mode", "unknown value, expected `deny` or `allow`"),
            (r#"{"rls":{"cluster":"rl","domain":"d","timeout_ms":-1},"policies":{},"routes":[{"policy":null}]}"#, "rls.timeout_ms", "invalid value: expected an integer from 0 to "),
            (r#"{"rls":{"cluster":"rl","timeout_ms":5},"policies":{},"routes":[{"policy":null}]}"#, "rls", "missing field `domain`"),
            (r#"{"policies":{"p":{"rate_limits":[{"name":"n","key":"client_ip","limit":1,"window_s":1},{"name":"m","key":"client_ip","limit":1}]}},"routes":[{"policy":"p"}]}"#, "policies.p.rate_limits[1]", "missing field `window_s`"),
            (r#"{"policies":{"p":{"signature":{"keys":[{"id":"a","alg":"ed25519","public_key":"x","kid":1}]}}},"routes":[{"policy":"p"}]}"#, "policies.p.signature.keys[0].kid", "unknown field `kid`"),
            (r#"{"policies":{"p":{}, "q": 3},"routes":[{"policy":"p"}]}"#, "policies.q", "invalid type: number, expected an object"),
            (r#"{"routes":[{"policy":"p"}]}"#, "", "missing field `policies`"),
            (r#"{"policies":{"p\u0041":{"ip":{"allow":[1]}}},"routes":[{"policy":"p"}]}"#, "policies.pA.ip.allow[0]", "invalid type: number"),
            (r#"{"client_ip":{"trusted_proxies":[["1.2.3.4/32"]]},"policies":{},"routes":[{"policy":null}]}"#, "client_ip.trusted_proxies[0]", "invalid type: array, expected a string"),
            (r#"{"ip_lists":{"a":["1.2.3.4/32", null]},"policies":{},"routes":[{"policy":null}]}"#, "ip_lists.a[1]", "invalid type: null, expected a string"),
            (r#"{"ip_lists":null,"policies":{},"routes":[{"policy":null}]}"#, "ip_lists", "invalid type: null, expected an object"),
            (r#"{"rls":null,"policies":{},"routes":[{"policy":null}]}"#, "rls", "invalid type: null, expected an object"),
            (r#"{"$schema":null,"policies":{},"routes":[{"policy":null}]}"#, "$schema", "invalid type: null, expected a string"),
            (r#"{"policies":{"p":{"https":{"hsts":{"max_age_s":1.5}}}},"routes":[{"policy":"p"}]}"#, "policies.p.https.hsts.max_age_s", "invalid value: expected an integer"),
            (r#"{"policies":{"p":{"https":{"redirect_status":301.0}}},"routes":[{"policy":"p"}]}"#, "policies.p.https.redirect_status", "expected an integer from 0 to 65535"),
            (r#"{"policies":{"p":{"https":{"hsts":{}}}},"routes":[{"policy":"p"}]}"#, "policies.p.https.hsts", "missing field `max_age_s`"),
            (r#"{"policies":{"p":{"https":{"action":"reject","hsts":[1,true,false]}}},"routes":[{"policy":"p"}]}"#, "policies.p.https.hsts", "invalid type: array, expected an object"),
            (r#"{"policies":{"p":{"mode":{"shadow":null}}},"routes":[{"policy":"p"}]}"#, "policies.p.mode", "invalid type: object, expected `enforce` or `shadow`"),
            // the repeated key itself, for fields and for the names of policies and lists
            (r#"{"policies":{"p":{"https":{"action":"reject"},"https":{}}},"routes":[{"policy":"p"}]}"#, "policies.p.https", "duplicate field `https`"),
            (r#"{"policies":{"p":{"ip":{"deny":["@b"]}},"p":{}},"routes":[{"policy":"p"}]}"#, "policies.p", "\"p\" is given twice"),
            (r#"{"ip_lists":{"b":["10.0.0.0/8"],"b":[]},"policies":{},"routes":[]}"#, "ip_lists.b", "\"b\" is given twice"),
            ("{\n  \"policies\": {\n    \"p\": {\n      \"ip\": { \"allow\": [\"10.0.0.0/8\",\n                        7] }\n    }\n  },\n  \"routes\": [{\"policy\": \"p\"}]\n}", "policies.p.ip.allow[1]", "at line 5 column 25"),
            (r#"{"policies":{"p":{}},"routes":[{"policy":"p",}]}"#, "routes[0]", "trailing comma"),
            // text after the document is refused, not ignored
            (r#"{"policies":{"p":{}},"routes":[{"policy":"p"}]} trailing"#, "", "trailing characters"),
            (r#"{"policies":{"p":{}},"routes":[{"policy":"p"}]}}"#, "", "trailing characters"),
            ("", "", "unexpected end of the document"),
            ("\u{feff}{}", "", "expected a value"),
        ];
        for (text, path, reason) in cases {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert_eq!(e.path, *path, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
        let ok = parse(r#"{"policies":{"p":{}},"routes":[{"policy":"p"},{"policy":null}]}"#);
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.routes[0].policy, Some(Some("p".to_string())));
        assert_eq!(ok.routes[1].policy, Some(None));
    }
}
