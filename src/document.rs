//! The policy document: JSON → typed input (unknown fields are errors) → compiled, immutable [`Document`].

use crate::error::{index, join, ConfigError, Errors};
use crate::https::{Https, HttpsInput};
use crate::ip::{ClientIpConfig, ClientIpInput, IpInput, IpLists, IpPolicy};
use crate::log::{self, LogInput, LogPolicy};
use crate::rate_limit::{self, LimitInput, RateLimits, RlsConfig, RlsInput};
use crate::route::{HostMatch, RouteEntry, Target};
use crate::secret::Env;
use crate::signature::{self, NonceTableConfig, SignatureInput, SignaturePolicy};
use crate::store::{SharedStore, StoreError};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The whole document as written.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// Lets editors find policies/schema.json; ignored.
    #[serde(default, rename = "$schema")]
    pub schema: Option<String>,
    #[serde(default)]
    pub client_ip: ClientIpInput,
    #[serde(default, deserialize_with = "unique_keys")]
    pub ip_lists: crate::ip::IpListsInput,
    #[serde(default)]
    pub rate_limit_slots: Option<u32>,
    /// The rate limit service for `"backend": "rls"` limits.
    #[serde(default)]
    pub rls: Option<RlsInput>,
    #[serde(deserialize_with = "unique_keys")]
    pub policies: BTreeMap<String, PolicyInput>,
    pub routes: Vec<RouteInput>,
}

/// A map of names the user chooses (`policies`, `ip_lists`) where a name given twice is an error: serde's
/// own map keeps the last value silently, so a second `"blocked": []` would empty a deny list.
fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = m.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("{key:?} is given twice")));
                }
                let value = m.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

/// `enforce` (default) or `shadow`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
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
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub https: Option<HttpsInput>,
    #[serde(default)]
    pub signature: Option<SignatureInput>,
    #[serde(default)]
    pub ip: Option<IpInput>,
    #[serde(default)]
    pub rate_limits: Option<Vec<LimitInput>>,
    #[serde(default)]
    pub log: Option<LogInput>,
}

/// One entry of `routes` as written. `policy` must be given: a name, or `null` for "no checks".
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub policy: Option<Option<String>>,
}

/// Distinguishes `"policy": null` (Some(None)) from a missing field (None).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    pub https: Option<Https>,
    pub ip: Option<IpPolicy>,
    pub signature: Option<SignaturePolicy>,
    pub rate_limits: RateLimits,
    /// The `log` section, or the defaults (/24 and /48 truncation, nothing else) when absent.
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
    /// The log settings for requests without a policy (no route, or `"policy": null`).
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
            .finish()
    }
}

/// Parses JSON text into the input types; errors carry the JSON path (`policies.p.ip: unknown field ...`).
/// Text after the document is an error too.
pub fn parse(json: &str) -> Result<DocumentInput, ConfigError> {
    serde_json::from_str(json).map_err(|e: serde_json::Error| {
        // Errors without a position (line 0) come from no particular value.
        let path = if e.line() == 0 {
            String::new()
        } else {
            crate::json_path::path_at(
                json,
                crate::json_path::offset_of(json, e.line(), e.column()),
            )
        };
        ConfigError::new(path, without_values(&e.to_string()))
    })
}

/// serde's messages quote the offending value: `invalid type: string "…", expected …` (its
/// `Unexpected::Str`, Debug-escaped) and `unknown variant `…`, expected …` (unescaped). A secret written
/// as a plain string where `{"base64": …}` belongs would be echoed into Envoy's log and `edgeward check`,
/// so both lose the value (`invalid type: string, expected struct SecretInput`,
/// `unknown variant, expected one of …`); the rest of the message (what was expected, the line and
/// column) stays. Field names (`unknown field `x``) are keys, not values, and stay.
fn without_values(msg: &str) -> String {
    const STR: &str = "string \"";
    const VARIANT: &str = "unknown variant `";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    loop {
        let at_str = rest.find(STR);
        let at_variant = rest.find(VARIANT);
        match (at_str, at_variant) {
            (Some(i), v) if v.is_none_or(|v| i < v) => {
                out.push_str(&rest[..i + STR.len() - 2]);
                let quoted = &rest[i + STR.len()..];
                let mut escaped = false;
                let end = quoted.char_indices().find_map(|(j, c)| match c {
                    _ if escaped => {
                        escaped = false;
                        None
                    }
                    '\\' => {
                        escaped = true;
                        None
                    }
                    '"' => Some(j + 1),
                    _ => None,
                });
                // Without a closing quote the value's end is unknown: drop the rest.
                rest = end.map_or("", |j| &quoted[j..]);
            }
            (_, Some(v)) => {
                out.push_str(&rest[..v + VARIANT.len() - 2]);
                let value_and_after = &rest[v + VARIANT.len()..];
                // The value is printed raw (it may hold backticks); serde's own text follows the last of these.
                let end = ["`, expected ", "`, there are no variants"]
                    .iter()
                    .filter_map(|t| value_and_after.rfind(t))
                    .max();
                rest = end.map_or("", |j| &value_and_after[j + 1..]);
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
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
            let signature = p
                .signature
                .as_ref()
                .and_then(|sig| signature::compile(sig, &join(&path, "signature"), env, &mut errs));
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
            let log = p
                .log
                .as_ref()
                .and_then(|l| log::compile(l, &join(&path, "log"), env, &mut errs))
                .unwrap_or_default();
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
            if let Some(p) = &r.path_prefix {
                if !p.starts_with('/') {
                    errs.push(
                        join(&path, "path_prefix"),
                        format!("{p:?} must start with '/'"),
                    );
                }
            }
            if let Some(rn) = &r.route {
                if rn.is_empty() {
                    errs.push(join(&path, "route"), "an empty route name never matches");
                }
            }
            routes.push(RouteEntry {
                route: r.route.clone(),
                host,
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
        Ok(Document {
            policies,
            routes,
            uses_route_name,
            client_ip,
            default_log: LogPolicy::default(),
            nonce_table: NonceTableConfig::default(),
            hash_key: [0; 16],
            nonce_key: derive_nonce_key(env),
            rls,
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
                e.reason
                    .starts_with("invalid type: string, expected struct SecretInput"),
                "{e}"
            );
            assert!(!e.to_string().contains(SECRET), "{e}");
            assert!(!e.to_string().contains(&SECRET[..8]), "{e}");
        }
    }

    /// An unknown variant keeps the list of what is accepted and loses the value.
    #[test]
    fn unknown_variant_errors_list_the_variants_without_the_value() {
        let text = format!(
            r#"{{"rls":{{"cluster":"rl","domain":"d","failure_mode":"{SECRET}"}},"policies":{{}},"routes":[{{"policy":null}}]}}"#
        );
        let e = parse(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"));
        assert_eq!(e.path, "rls.failure_mode", "{e}");
        assert!(e.reason.starts_with("unknown variant, expected "), "{e}");
        assert!(!e.to_string().contains(&SECRET[..8]), "{e}");
    }

    #[test]
    fn serde_values_are_dropped_from_messages() {
        let cases = [
            (
                r#"invalid type: string "c2Vj", expected struct SecretInput at line 1 column 9"#,
                "invalid type: string, expected struct SecretInput at line 1 column 9",
            ),
            // Debug escapes inside the value: `\"` and `\\` do not end it
            (
                r#"invalid type: string "a\"b\\", expected x"#,
                "invalid type: string, expected x",
            ),
            (
                r#"invalid value: string "a\\\"", expected y at line 2 column 3"#,
                "invalid value: string, expected y at line 2 column 3",
            ),
            (
                "unknown variant `open`, expected one of `allow`, `deny` at line 1 column 5",
                "unknown variant, expected one of `allow`, `deny` at line 1 column 5",
            ),
            // a raw value holding backticks and serde's own separator
            (
                "unknown variant `a`, expected `b`, expected `x`, expected one of `allow`, `deny` at line 1 column 5",
                "unknown variant, expected one of `allow`, `deny` at line 1 column 5",
            ),
            (
                "unknown variant `s3cr3t`, there are no variants",
                "unknown variant, there are no variants",
            ),
            // cut text: nothing after the value's start survives
            (r#"invalid type: string "abc"#, "invalid type: string"),
            ("unknown variant `abc", "unknown variant"),
            // messages without a string value are unchanged
            (
                "unknown field `acton`, expected one of `action` at line 1 column 9",
                "unknown field `acton`, expected one of `action` at line 1 column 9",
            ),
            ("invalid type: integer `5`, expected a string", "invalid type: integer `5`, expected a string"),
            ("", ""),
        ];
        for (msg, want) in cases {
            assert_eq!(without_values(msg), want, "{msg}");
        }
    }
}
