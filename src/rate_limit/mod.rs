//! Rate limits: token buckets (GCRA) per client address, verified key id, header, route or document,
//! shared by all Envoy worker threads through [`SharedStore`], in a fixed amount of memory.
//!
//! Guarantees (per Envoy process, exact across its workers): a request takes one token from every limit
//! of its policy or from none; a bucket never holds more than `burst`; `limit` tokens return per
//! `window_s`, with no rounding. Bucket tables are set-associative with a fixed number of slots per
//! limit, so sharing under a full table only ever makes limiting stricter. Store failures fail closed.

mod gcra;
mod lease;
mod local;
pub mod remote;

pub use lease::{Leases, LEASE_ENTRIES, MAX_LEASE};
pub use local::{LocalBackend, Receipt, MAX_ATTEMPTS, WAYS};
pub use remote::{FailureMode, RemoteAnswer, RlsConfig, RlsInput};

use crate::decision::{Reason, Reply};
use crate::error::{index, join, Errors};
use crate::request::Headers;
use crate::store::{SharedStore, StoreError};
use gcra::Gcra;
use siphasher::sip128::SipHasher13;
use std::fmt;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv6Addr};
use std::rc::Rc;

/// Default of the document-level `rate_limit_slots`: buckets per keyed limit.
pub const DEFAULT_SLOTS: u32 = 65_536;
/// Smallest accepted `rate_limit_slots`.
pub const MIN_SLOTS: u32 = 64;
/// Largest accepted `rate_limit_slots` (16 Mi: about 450 MiB of shared data per keyed limit).
pub const MAX_SLOTS: u32 = 16 * 1024 * 1024;
/// Largest accepted `limit` and `burst`.
pub const MAX_TOKENS: u64 = 1_000_000_000;
/// Largest accepted `window_s` (365 days).
pub const MAX_WINDOW_S: u64 = 365 * 86_400;
/// Status of a request denied because the bucket store failed (fail closed).
pub const UNAVAILABLE_STATUS: u16 = 503;

/// One entry of a policy's `rate_limits`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitInput {
    pub name: String,
    pub key: String,
    pub limit: u64,
    pub window_s: u64,
    pub burst: Option<u64>,
    pub status: Option<u64>,
    pub headers: bool,
    pub ipv6_prefix: Option<u64>,
    pub backend: Option<String>,
    /// `header:` keys only: `"fold"` (default, ASCII case ignored) or `"exact"`.
    pub key_case: Option<KeyCase>,
    /// Local limits only: tokens a worker may take at once and hand to the key's next requests
    /// itself (`lease.rs`); 1 or absent: none.
    pub lease: Option<u64>,
}

/// How a `header:` key's value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyCase {
    /// ASCII case ignored: `bob`, `Bob` and `BOB` are one key (a client cannot multiply its budget by
    /// changing case).
    #[default]
    Fold,
    /// Byte for byte.
    Exact,
}

crate::json::json_choice!(KeyCase {
    "fold" => KeyCase::Fold,
    "exact" => KeyCase::Exact,
});

crate::json::json_object!(LimitInput {
    name: "name" => required,
    key: "key" => required,
    limit: "limit" => required,
    window_s: "window_s" => required,
    burst: "burst" => read,
    status: "status" => read,
    headers: "headers" => read_or(true),
    ipv6_prefix: "ipv6_prefix" => read,
    backend: "backend" => read,
    key_case: "key_case" => some,
    lease: "lease" => read,
});

/// Where a limit's buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// This Envoy process's shared data (exact across its workers).
    Local,
    /// The document's rate limit service (`rls`), shared by every Envoy that calls it.
    Rls,
}

/// What a limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// The client address; IPv6 grouped by `ipv6_prefix` bits, IPv4 by the full address.
    ClientIp { ipv6_prefix: u8 },
    /// The verified signature key id.
    KeyId,
    /// A request header (lowercase name); requests without it share one bucket.
    Header { name: String, case: KeyCase },
    /// One bucket for the policy.
    Route,
    /// One bucket for the whole document (shared by every policy with a same-named global limit).
    Global,
}

/// One compiled limit.
#[derive(Debug, Clone)]
pub struct Limit {
    pub name: String,
    pub key: KeySpec,
    pub limit: u64,
    pub window_s: u64,
    pub burst: u64,
    pub status: u16,
    pub headers: bool,
    pub backend: Backend,
    /// JSON path of this limit in the document (for document-wide checks).
    pub path: String,
    /// Tokens a worker may lease at once (1: none).
    pub lease: u64,
    pub(crate) gcra: Gcra,
    pub(crate) table: local::Table,
    /// Its `RateLimit-Policy` value (`"name";q=LIMIT;w=WINDOW`), written once, at configure, from
    /// `name`, `limit` and `window_s` (which nothing changes after).
    policy_header: String,
}

/// A policy's compiled `rate_limits`, in document order, local and remote apart.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    limits: Vec<Limit>,
    /// `"backend": "rls"`: checked by the rate limit service after every local limit passed.
    remote: Vec<Limit>,
}

/// What the request offers as keys; the engine fills it from the IP and signature checks.
#[derive(Clone, Copy)]
pub struct KeyInputs<'a> {
    pub client_ip: Option<IpAddr>,
    pub key_id: Option<&'a str>,
    pub headers: Headers<'a>,
}

/// The key of one limit for one request (already grouped: IPv6 masked to its prefix).
#[derive(Clone, Copy)]
pub enum KeyValue<'a> {
    Ip(IpAddr),
    KeyId(&'a str),
    /// Every value of the header, in order (a repeated header is one key, not a choice), and how
    /// its case counts.
    Header(Headers<'a>, &'a str, KeyCase),
    /// The request lacks the key (no header, no key id, no client address): one shared bucket.
    Missing,
    /// `route` and `global`.
    Constant,
}

// Client addresses, key ids and header values never appear in Debug output.
impl fmt::Debug for KeyInputs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyInputs")
            .field("client_ip", &self.client_ip.map(|_| "<redacted>"))
            .field("key_id", &self.key_id.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KeyValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyValue::Ip(_) => "Ip(<redacted>)",
            KeyValue::KeyId(_) => "KeyId(<redacted>)",
            KeyValue::Header(..) => "Header(<redacted>)",
            KeyValue::Missing => "Missing",
            KeyValue::Constant => "Constant",
        })
    }
}

/// One limit's bucket after a request, as a backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitState {
    /// Tokens left.
    pub remaining: u64,
    /// Whole seconds until the bucket is full again.
    pub reset_s: u64,
    /// Whole seconds until a token is available; 0 when this limit admitted the request.
    pub retry_after_s: u64,
}

/// A backend's answer for all limits of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every bucket gave one token; one state per limit.
    Allowed(Vec<LimitState>),
    /// At least one bucket was empty; no bucket lost a token. Denying limits have `retry_after_s > 0`.
    Limited(Vec<LimitState>),
    /// The backend could not decide (store failure, CAS retries exhausted).
    Unavailable,
}

/// Where buckets live and tokens are taken: the local backend (`local.rs`, proxy-wasm shared data).
pub trait BucketBackend {
    /// Takes one token for `keys[i]` from every `limits[i]`, or from none when any bucket is empty.
    fn take(&mut self, limits: &[Limit], keys: &[KeyValue<'_>], now_ns: u64) -> Verdict;
}

/// The rate-limit answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateOutcome {
    /// Forward; add `headers` to the response.
    Allowed { headers: Vec<(String, String)> },
    /// Deny with the binding limit's status, `Retry-After` and RateLimit headers.
    Limited { reply: Reply, limit: String },
    /// Fail closed: 503, reason `rate_limit_unavailable`, `Retry-After: 1`; the caller counts it.
    Unavailable { reply: Reply },
}

/// Validates the document-level `rate_limit_slots`; returns the value to use.
pub fn validate_slots(v: u32, path: &str, errs: &mut Errors) -> u32 {
    if (MIN_SLOTS..=MAX_SLOTS).contains(&v) {
        v
    } else {
        errs.push(
            path,
            format!("{v} is out of range (allowed {MIN_SLOTS}..={MAX_SLOTS})"),
        );
        DEFAULT_SLOTS
    }
}

/// Compiles a policy's `rate_limits` (at JSON path `path`); `None` when any entry is invalid.
/// `has_rls`: the document has an `rls` section (needed by `"backend": "rls"`).
pub fn compile(
    inputs: &[LimitInput],
    path: &str,
    policy_name: &str,
    has_signature: bool,
    has_rls: bool,
    slots: u32,
    errs: &mut Errors,
) -> Option<RateLimits> {
    let mut limits = Vec::with_capacity(inputs.len());
    let mut remote = Vec::new();
    let mut ok = true;
    for (i, input) in inputs.iter().enumerate() {
        let p = index(path, i);
        if inputs.iter().take(i).any(|other| other.name == input.name) {
            errs.push(
                join(&p, "name"),
                format!("duplicate limit name {:?} in this policy", input.name),
            );
            ok = false;
        }
        match compile_one(input, &p, policy_name, has_signature, has_rls, slots, errs) {
            Some(l) if l.backend == Backend::Rls => remote.push(l),
            Some(l) => limits.push(l),
            None => ok = false,
        }
    }
    ok.then_some(RateLimits { limits, remote })
}

fn compile_one(
    input: &LimitInput,
    p: &str,
    policy_name: &str,
    has_signature: bool,
    has_rls: bool,
    slots: u32,
    errs: &mut Errors,
) -> Option<Limit> {
    let mut ok = true;
    let mut bad = |field: &str, reason: String| {
        errs.push(join(p, field), reason);
        ok = false;
    };
    if input.name == remote::NONCE_LIMIT {
        bad(
            "name",
            format!(
                "{:?} is the name of the nonce's descriptor (nonce_scope \"cluster\"); choose another",
                input.name
            ),
        );
    } else if !valid_name(&input.name) {
        bad(
            "name",
            format!(
                "{:?} is not a valid limit name (1 to 64 characters of A-Z a-z 0-9 . _ -)",
                input.name
            ),
        );
    }
    let key = match parse_key(&input.key) {
        Ok(KeySpec::KeyId) if !has_signature => {
            bad(
                "key",
                format!(
                    "key \"key_id\" needs a signature section in policy {policy_name:?} (an unverified key id must never create a bucket)"
                ),
            );
            None
        }
        Ok(k) => Some(k),
        Err(e) => {
            bad("key", e.to_string());
            None
        }
    };
    if !(1..=MAX_TOKENS).contains(&input.limit) {
        bad(
            "limit",
            format!("{} is out of range (allowed 1..={MAX_TOKENS})", input.limit),
        );
    }
    if !(1..=MAX_WINDOW_S).contains(&input.window_s) {
        bad(
            "window_s",
            format!(
                "{} is out of range (allowed 1..={MAX_WINDOW_S})",
                input.window_s
            ),
        );
    }
    let burst = input.burst.unwrap_or(input.limit);
    if input.burst.is_some() && !(1..=MAX_TOKENS).contains(&burst) {
        bad(
            "burst",
            format!("{burst} is out of range (allowed 1..={MAX_TOKENS})"),
        );
    }
    let status = match input.status {
        None => 429,
        Some(s @ (429 | 503)) => s as u16,
        Some(s) => {
            bad("status", format!("{s} is not allowed (429 or 503)"));
            429
        }
    };
    let mut ipv6_prefix = 64u8;
    if let Some(v) = input.ipv6_prefix {
        match u8::try_from(v) {
            Ok(v @ 1..=128) => ipv6_prefix = v,
            _ => bad(
                "ipv6_prefix",
                format!("{v} is out of range (allowed 1..=128)"),
            ),
        }
        if !matches!(key, Some(KeySpec::ClientIp { .. }) | None) {
            bad(
                "ipv6_prefix",
                "applies only to key \"client_ip\"".to_string(),
            );
        }
    }
    let backend = match input.backend.as_deref() {
        None | Some("local") => Backend::Local,
        Some("rls") => {
            if !has_rls {
                bad(
                    "backend",
                    "backend \"rls\" needs the document-level \"rls\" section (cluster, domain)"
                        .to_string(),
                );
            }
            Backend::Rls
        }
        Some(other) => {
            bad(
                "backend",
                format!("unknown backend {other:?} (\"local\" or \"rls\")"),
            );
            Backend::Local
        }
    };
    let lease = input.lease.unwrap_or(1);
    if !(1..=MAX_LEASE).contains(&lease) {
        bad(
            "lease",
            format!("{lease} is out of range (allowed 1..={MAX_LEASE})"),
        );
    } else if lease > 1 && backend == Backend::Rls {
        bad(
            "lease",
            "applies only to local limits (the rate limit service counts every request)"
                .to_string(),
        );
    }
    if input.key_case.is_some() && !matches!(key, Some(KeySpec::Header { .. }) | None) {
        bad(
            "key_case",
            "applies only to \"header:NAME\" keys".to_string(),
        );
    }
    let key = match key? {
        KeySpec::ClientIp { .. } => KeySpec::ClientIp { ipv6_prefix },
        KeySpec::Header { name, .. } => KeySpec::Header {
            name,
            case: input.key_case.unwrap_or_default(),
        },
        k => k,
    };
    if !ok {
        return None;
    }
    let gcra = Gcra::new(input.limit, input.window_s, burst);
    let table = local::Table::new(
        policy_name,
        &input.name,
        &key,
        input.limit,
        input.window_s,
        burst,
        slots,
        lease > 1,
    );
    let mut policy_header = String::new();
    push_header_value(
        &mut policy_header,
        &input.name,
        "\";q=",
        input.limit,
        ";w=",
        input.window_s,
    );
    Some(Limit {
        policy_header,
        name: input.name.clone(),
        key,
        limit: input.limit,
        window_s: input.window_s,
        burst,
        status,
        headers: input.headers,
        backend,
        path: p.to_string(),
        lease,
        gcra,
        table,
    })
}

/// Limit names appear quoted in response headers: keep them to plain token characters.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a limit's `key` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyError {
    /// `header:NAME` with a NAME that is not a header name.
    HeaderName(String),
    /// None of the key forms.
    Unknown(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::HeaderName(name) => write!(f, "{name:?} is not a valid header name"),
            KeyError::Unknown(key) => write!(
                f,
                "unknown key {key:?} (client_ip, key_id, route, global or header:NAME)"
            ),
        }
    }
}

fn parse_key(key: &str) -> Result<KeySpec, KeyError> {
    match key {
        "client_ip" => Ok(KeySpec::ClientIp { ipv6_prefix: 64 }),
        "key_id" => Ok(KeySpec::KeyId),
        "route" => Ok(KeySpec::Route),
        "global" => Ok(KeySpec::Global),
        _ => match key.strip_prefix("header:") {
            Some(name) if crate::request::is_token(name) => Ok(KeySpec::Header {
                name: name.to_ascii_lowercase(),
                case: KeyCase::Fold,
            }),
            Some(name) => Err(KeyError::HeaderName(name.to_string())),
            None => Err(KeyError::Unknown(key.to_string())),
        },
    }
}

/// Document-wide check: `global` limits with one name are one bucket, so they must agree on its size
/// and on `lease` (a bucket that leases hands out tokens by slots a worker holds: see `local::Table`).
pub fn check_globals(sections: &[&RateLimits], errs: &mut Errors) {
    let globals: Vec<&Limit> = sections
        .iter()
        .flat_map(|s| s.limits.iter())
        .filter(|l| l.key == KeySpec::Global)
        .collect();
    for (i, l) in globals.iter().enumerate() {
        if let Some(first) = globals.iter().take(i).find(|o| o.name == l.name) {
            if (first.limit, first.window_s, first.burst, first.lease)
                != (l.limit, l.window_s, l.burst, l.lease)
            {
                errs.push(
                    &l.path,
                    format!(
                        "global limit {:?} is one bucket for the whole document; its limit, window_s, burst and lease must match {}",
                        l.name, first.path
                    ),
                );
            }
        }
    }
}

/// Document-wide check: a remote limit's name is its identity in the engine's config, so remote
/// limits that share a name must agree on key kind, limit and window (they share the engine's
/// counters, except `route` limits, whose key value is the policy name).
pub fn check_remote_names(sections: &[&RateLimits], errs: &mut Errors) {
    let remote: Vec<&Limit> = sections.iter().flat_map(|s| s.remote.iter()).collect();
    for (i, l) in remote.iter().enumerate() {
        if let Some(first) = remote.iter().take(i).find(|o| o.name == l.name) {
            if (&first.key, first.limit, first.window_s) != (&l.key, l.limit, l.window_s) {
                errs.push(
                    &l.path,
                    format!(
                        "remote limit {:?} is one limit in the rate limit service's config; its key, limit and window_s must match {}",
                        l.name, first.path
                    ),
                );
            }
        }
    }
}

impl RateLimits {
    /// The local limits in document order.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The remote (`"backend": "rls"`) limits in document order.
    pub fn remote(&self) -> &[Limit] {
        &self.remote
    }

    /// No limit at all, local or remote.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.remote.is_empty()
    }

    /// The serialized RLS request for this policy's remote limits (`None` when it has none).
    pub fn remote_message(
        &self,
        rls: &RlsConfig,
        policy_name: &str,
        nonce: Option<remote::NonceDescriptor<'_>>,
        keys: &KeyInputs<'_>,
    ) -> Option<Vec<u8>> {
        if self.remote.is_empty() && nonce.is_none() {
            return None;
        }
        let values: Vec<KeyValue<'_>> = self.remote.iter().map(|l| l.key_value(keys)).collect();
        Some(remote::request_message(
            &rls.domain,
            policy_name,
            nonce,
            &self.remote,
            &values,
        ))
    }

    /// The head-time check of a policy with more work before its rate-limit step (a signature to
    /// verify, a body to hold): reads the buckets of its (local) `client_ip` limits and returns the
    /// denial when one of them is empty now, so that an over-limit client costs no signature
    /// verification and no body. Only `client_ip` with a usable address: that bucket belongs to the
    /// request's own address, while a `header:`, `route`, `global` or no-address bucket would tell a
    /// client that has not proven anything yet about other clients' traffic (a 429 instead of a 401
    /// is an oracle), and `key_id` is not known before the signature. Takes no token: the rate-limit
    /// step still takes them later, from every limit or none. Give it a store that keeps its reads
    /// ([`crate::store::ReadAhead`]) so that the step reads nothing twice. A failed read decides
    /// nothing here (the step will).
    pub fn check_head(
        &self,
        keys: &KeyInputs<'_>,
        now_ns: u64,
        store: &dyn SharedStore,
        leases: &Leases,
        hash_key: &[u8; 16],
    ) -> Option<Reply> {
        let mut seen: Vec<(&Limit, LimitState)> = Vec::new();
        let mut empty = false;
        for l in self
            .limits
            .iter()
            .filter(|l| matches!(l.key, KeySpec::ClientIp { .. }))
        {
            let key = l.key_value(keys);
            // The shared bucket of requests without a usable address is nobody's own.
            if !matches!(key, KeyValue::Ip(_)) {
                return None;
            }
            let (allowed, state) = local::peek(l, &key, hash_key, store, leases, now_ns).ok()?;
            empty |= !allowed;
            seen.push((l, state));
        }
        if !empty {
            return None;
        }
        match limited(seen.iter().map(|(l, s)| (*l, s))) {
            RateOutcome::Limited { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// Like [`RateLimits::acquire`], and also returns what was taken so that [`RateLimits::refund`]
    /// can give it back (when the rate limit service denies the request afterwards).
    /// `leases`: this worker's (limits with `"lease"` use and take them).
    pub fn acquire_held(
        &self,
        keys: &KeyInputs<'_>,
        now_ns: u64,
        store: &mut dyn SharedStore,
        leases: &Rc<Leases>,
        hash_key: &[u8; 16],
    ) -> (RateOutcome, Receipt) {
        let mut backend = LocalBackend::new(store, hash_key).with_leases(leases);
        let outcome = self.decide(&mut backend, keys, now_ns);
        (outcome, backend.into_receipt())
    }

    /// Gives back every token a receipt holds (best effort; a refund that cannot land is dropped,
    /// which only makes limiting stricter).
    pub fn refund(&self, receipt: Receipt, store: &mut dyn SharedStore) {
        receipt.refund(&self.limits, |_| true, store);
    }

    /// Gives back the tokens of the limits keyed by the signature's key id only: a request whose body
    /// failed after its head verified does not show that its sender holds the key (a captured head
    /// would otherwise spend the key owner's budget); the sender's own limits (client address, headers)
    /// keep theirs.
    pub fn refund_signer(&self, receipt: Receipt, store: &mut dyn SharedStore) {
        receipt.refund(&self.limits, |l| l.key == KeySpec::KeyId, store);
    }

    /// Takes one token from every limit in the local shared-data table (see [`LocalBackend`]).
    /// `hash_key` must be the same in every worker VM of the process and secret from clients.
    pub fn acquire(
        &self,
        keys: &KeyInputs<'_>,
        now_ns: u64,
        store: &mut dyn SharedStore,
        hash_key: &[u8; 16],
    ) -> RateOutcome {
        self.decide(&mut LocalBackend::new(store, hash_key), keys, now_ns)
    }

    /// Takes one token from every limit through any backend and builds the answer.
    pub fn decide(
        &self,
        backend: &mut dyn BucketBackend,
        keys: &KeyInputs<'_>,
        now_ns: u64,
    ) -> RateOutcome {
        if self.limits.is_empty() {
            return RateOutcome::Allowed {
                headers: Vec::new(),
            };
        }
        let values: Vec<KeyValue<'_>> = self.limits.iter().map(|l| l.key_value(keys)).collect();
        match backend.take(&self.limits, &values, now_ns) {
            Verdict::Allowed(states) if states.len() == self.limits.len() => RateOutcome::Allowed {
                headers: self.headers(&states),
            },
            Verdict::Limited(states) if states.len() == self.limits.len() => self.limited(&states),
            _ => RateOutcome::Unavailable {
                reply: Reply::deny(UNAVAILABLE_STATUS, Reason::RateLimitUnavailable)
                    .with_header("Retry-After", "1"),
            },
        }
    }

    /// Pre-creates every bucket set that does not exist yet (optional, at configure time): memory is then
    /// taken up front, and the first-write race of shared data (a write to an absent key cannot be
    /// conditional) happens before traffic. Returns how many sets were written.
    pub fn prepare(&self, store: &mut dyn SharedStore) -> Result<usize, StoreError> {
        let mut written = 0;
        for l in &self.limits {
            written += l.table.prepare(store)?;
        }
        Ok(written)
    }

    fn limited(&self, states: &[LimitState]) -> RateOutcome {
        limited(self.limits.iter().zip(states))
    }

    /// The reply for a request the rate limit service found over limit (`descriptor`: the index of
    /// the over-limit remote limit, when the engine said; its `status` is used, else the first's).
    pub fn remote_limited(
        &self,
        descriptor: Option<usize>,
        retry_after_s: u64,
        headers: Vec<(String, String)>,
    ) -> Reply {
        let status = descriptor
            .and_then(|i| self.remote.get(i))
            .or(self.remote.first())
            .map_or(429, |l| l.status);
        let mut reply = Reply::deny(status, Reason::RateLimited)
            .with_header("Retry-After", retry_after_s.max(1).to_string());
        reply.headers.extend(headers);
        reply
    }

    fn headers(&self, states: &[LimitState]) -> Vec<(String, String)> {
        headers(self.limits.iter().zip(states))
    }
}

/// The denial for `(limit, state)` pairs of which at least one has no token.
fn limited<'a>(pairs: impl Iterator<Item = (&'a Limit, &'a LimitState)> + Clone) -> RateOutcome {
    // The binding limit is the one that frees up last: its wait is the Retry-After.
    let mut binding: Option<(&Limit, &LimitState)> = None;
    for (l, s) in pairs.clone() {
        if s.retry_after_s > 0 && binding.is_none_or(|(_, b)| s.retry_after_s > b.retry_after_s) {
            binding = Some((l, s));
        }
    }
    let Some((limit, state)) = binding else {
        return RateOutcome::Unavailable {
            reply: Reply::deny(UNAVAILABLE_STATUS, Reason::RateLimitUnavailable)
                .with_header("Retry-After", "1"),
        };
    };
    let mut reply = Reply::deny(limit.status, Reason::RateLimited)
        .with_header("Retry-After", state.retry_after_s.to_string());
    reply.headers.extend(headers(pairs));
    RateOutcome::Limited {
        reply,
        limit: limit.name.clone(),
    }
}

/// `RateLimit-Policy` and `RateLimit` for the header-enabled limit closest to exhaustion: fewest
/// tokens left, then longest until full, then document order.
fn headers<'a>(pairs: impl Iterator<Item = (&'a Limit, &'a LimitState)>) -> Vec<(String, String)> {
    let mut pick: Option<(&Limit, &LimitState)> = None;
    for (l, s) in pairs {
        if !l.headers {
            continue;
        }
        let closer = pick.is_none_or(|(_, p)| {
            (s.remaining, std::cmp::Reverse(s.reset_s))
                < (p.remaining, std::cmp::Reverse(p.reset_s))
        });
        if closer {
            pick = Some((l, s));
        }
    }
    match pick {
        None => Vec::new(),
        // `"name";q=LIMIT;w=WINDOW` (written at configure) and `"name";r=REMAINING;t=RESET`.
        Some((l, s)) => {
            let mut now = String::with_capacity(l.name.len() + 32);
            push_header_value(&mut now, &l.name, "\";r=", s.remaining, ";t=", s.reset_s);
            vec![
                ("RateLimit-Policy".to_string(), l.policy_header.clone()),
                ("RateLimit".to_string(), now),
            ]
        }
    }
}

/// Appends `"name"A X B Y` (a `RateLimit` or `RateLimit-Policy` value), without `format!`.
fn push_header_value(out: &mut String, name: &str, a: &str, x: u64, b: &str, y: u64) {
    out.push('"');
    out.push_str(name);
    out.push_str(a);
    crate::num::push_u64(out, x);
    out.push_str(b);
    crate::num::push_u64(out, y);
}

impl Limit {
    /// How many shared-data keys this limit can ever use (its memory bound).
    pub fn sets(&self) -> u32 {
        self.table.sets()
    }

    /// This limit's key for a request.
    pub fn key_value<'a>(&'a self, keys: &KeyInputs<'a>) -> KeyValue<'a> {
        match &self.key {
            KeySpec::ClientIp { ipv6_prefix } => match keys.client_ip {
                Some(ip) => KeyValue::Ip(group(ip, *ipv6_prefix)),
                None => KeyValue::Missing,
            },
            KeySpec::KeyId => keys.key_id.map_or(KeyValue::Missing, KeyValue::KeyId),
            KeySpec::Header { name, case } => match keys.headers.get(name) {
                Some(_) => KeyValue::Header(keys.headers, name, *case),
                None => KeyValue::Missing,
            },
            KeySpec::Route | KeySpec::Global => KeyValue::Constant,
        }
    }
}

/// IPv4 (also IPv4-mapped IPv6) by full address; IPv6 masked to `prefix` bits.
fn group(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

impl KeyValue<'_> {
    /// Feeds the key into a hasher, unambiguously (kind tag, lengths).
    pub(crate) fn hash_into_128(&self, h: &mut SipHasher13) {
        match self {
            KeyValue::Ip(IpAddr::V4(a)) => {
                h.write_u8(4);
                h.write(&a.octets());
            }
            KeyValue::Ip(IpAddr::V6(a)) => {
                h.write_u8(6);
                h.write(&a.octets());
            }
            KeyValue::KeyId(id) => {
                h.write_u8(b'k');
                h.write_u64(id.len() as u64);
                h.write(id.as_bytes());
            }
            KeyValue::Header(headers, name, case) => {
                h.write_u8(b'h');
                for v in headers.get_all(name) {
                    let v = v.trim_matches(|c: char| c == ' ' || c == '\t');
                    h.write_u64(v.len() as u64);
                    match case {
                        KeyCase::Exact => h.write(v.as_bytes()),
                        KeyCase::Fold => {
                            for b in v.bytes() {
                                h.write_u8(b.to_ascii_lowercase());
                            }
                        }
                    }
                }
            }
            KeyValue::Missing => h.write_u8(b'-'),
            KeyValue::Constant => h.write_u8(b'c'),
        }
    }
}

#[cfg(test)]
mod tests;
