//! The anonymized per-request log record: truncated addresses, keyed pseudonyms, redaction, and the
//! anonymized `X-Forwarded-For` sent upstream. Built once per request, after the status is known.

mod anon;
mod memo;
mod redact;
mod text;

pub use anon::{
    canonical_bytes, parse_address, truncate_ip, Embedded, PseudonymKey, MIN_KEY_BYTES,
    PSEUDONYM_BYTES,
};
pub use redact::{normalize_name, redact_query, redact_url, QueryRule, REDACTED};
pub use text::{rfc3339, CUT_MARKER, VALUE_CAP};

use crate::error::{index, join, Errors};
use crate::request::Headers;
use crate::secret::{Env, SecretInput};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Headers that carry credentials: never allow-listed, never pseudonymized (a keyed hash of a password
/// still lets whoever holds the log key test guesses).
pub const FORBIDDEN_HEADERS: [&str; 6] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "signature",
    "signature-input",
    "x-api-key",
];

/// Headers whose value is a list of client addresses: when allow-listed, every element is truncated like
/// `client_ip` (never logged raw, including spoofed leftmost elements).
pub const ADDRESS_HEADERS: [&str; 8] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-envoy-external-address",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
];

/// Headers whose value is a URL: when allow-listed, the query rule applies to each value's query (and
/// fragment) as it does to `path`, so `Referer: https://x/?token=…` does not log what `path` redacts.
const URL_HEADERS: [&str; 1] = ["referer"];

/// At most this many `X-Forwarded-For` elements are rewritten upstream; the leftmost excess (client
/// supplied, never trusted) is dropped, which bounds the per-request HMAC work.
pub const MAX_XFF_ELEMENTS: usize = 64;

/// Label of the client address pseudonym (also used for `X-Forwarded-For` elements upstream, so the
/// upstream's logs and ours link the same client).
pub const LABEL_CLIENT_IP: &str = "client_ip";
/// Label of the key id pseudonym.
pub const LABEL_KEY_ID: &str = "key_id";

fn default_v4() -> u32 {
    24
}

fn default_v6() -> u32 {
    48
}

/// What happens to `X-Forwarded-For` toward the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamXff {
    /// Forward as Envoy built it.
    #[default]
    Keep,
    /// Truncate every element like `client_ip`.
    Truncate,
    /// Replace every element with its `client_ip` pseudonym.
    Pseudonymize,
    /// Remove the header.
    Remove,
}

/// A `log` section as written: the document's (applies to every request) or a policy's (overrides the
/// document's field by field). `None` means "not given here".
#[derive(Debug, Clone, Default)]
pub struct LogInput {
    /// Bits of an IPv4 address kept (0..=32).
    pub ipv4_prefix: Option<u32>,
    /// Bits of an IPv6 address kept (0..=128).
    pub ipv6_prefix: Option<u32>,
    /// HMAC key of the pseudonyms, ≥ 32 bytes.
    pub pseudonym_key: Option<SecretInput>,
    /// `client_ip`, `key_id`, `header:NAME`.
    pub pseudonymize: Option<Vec<String>>,
    /// Request headers logged (allow-list).
    pub headers: Option<Vec<String>>,
    /// Query parameter names whose values are logged as sent (`"*"`: all); every other value is redacted.
    pub keep_query: Option<Vec<String>>,
    /// A deny-list of query names: refused, with a pointer to `keep_query` (query values are private by
    /// default).
    pub redact_query: Option<Vec<String>>,
    pub upstream_xff: Option<UpstreamXff>,
    /// Also set each record field as its own filter-state property.
    pub fields: Option<bool>,
    /// The response status in the record (default true); false saves reading it, one host call.
    pub status: Option<bool>,
}

impl LogInput {
    /// This section over `base` (the document's): every field given here wins.
    pub fn over(&self, base: &LogInput) -> LogInput {
        LogInput {
            ipv4_prefix: self.ipv4_prefix.or(base.ipv4_prefix),
            ipv6_prefix: self.ipv6_prefix.or(base.ipv6_prefix),
            pseudonym_key: self.pseudonym_key.clone().or(base.pseudonym_key.clone()),
            pseudonymize: self.pseudonymize.clone().or(base.pseudonymize.clone()),
            headers: self.headers.clone().or(base.headers.clone()),
            keep_query: self.keep_query.clone().or(base.keep_query.clone()),
            redact_query: self.redact_query.clone().or(base.redact_query.clone()),
            upstream_xff: self.upstream_xff.or(base.upstream_xff),
            fields: self.fields.or(base.fields),
            status: self.status.or(base.status),
        }
    }
}

crate::json::json_choice!(UpstreamXff {
    "keep" => UpstreamXff::Keep,
    "truncate" => UpstreamXff::Truncate,
    "pseudonymize" => UpstreamXff::Pseudonymize,
    "remove" => UpstreamXff::Remove,
});

// `some`: null is refused (only `pseudonym_key` takes it, as "none").
crate::json::json_object!(LogInput {
    ipv4_prefix: "ipv4_prefix" => some,
    ipv6_prefix: "ipv6_prefix" => some,
    pseudonym_key: "pseudonym_key" => read,
    pseudonymize: "pseudonymize" => some,
    headers: "headers" => some,
    keep_query: "keep_query" => some,
    redact_query: "redact_query" => some,
    upstream_xff: "upstream_xff" => some,
    fields: "fields" => some,
    status: "status" => some,
});

/// A pseudonymized header: its lowercase name, the MAC label / record key (`header:NAME`) and the
/// property name (`edgeward.header.NAME`: Envoy's `%FILTER_STATE(KEY:PLAIN)%` splits on `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PseudoHeader {
    name: String,
    label: String,
    property: String,
}

/// An allow-listed header and its property name (`edgeward.headers.NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoggedHeader {
    name: String,
    property: String,
    addresses: bool,
    /// A URL (`referer`): the query rule applies to its query as to `path`.
    url: bool,
}

/// The compiled `log` section.
#[derive(Debug, Clone)]
pub struct LogPolicy {
    v4_prefix: u8,
    v6_prefix: u8,
    key: Option<PseudonymKey>,
    pseudo_client_ip: bool,
    pseudo_key_id: bool,
    pseudo_headers: Vec<PseudoHeader>,
    headers: Vec<LoggedHeader>,
    query: QueryRule,
    upstream_xff: UpstreamXff,
    fields: bool,
    /// The record carries the response status (which the adapter then reads from the response).
    status: bool,
    /// `key_id` pseudonyms computed at configure for the ids of the policy's own keys (id,
    /// pseudonym): a signed request's record then computes no MAC for its key id.
    known_key_ids: Vec<(String, String)>,
    /// The `client` pseudonyms of the addresses this worker logged last.
    client_memo: memo::ClientMemo,
}

/// At most this many key ids get a pseudonym computed at configure (the lookup is linear); the ids
/// of other keys (key sources, larger key lists) are computed per record, as before.
const MAX_KNOWN_KEY_IDS: usize = 32;

impl Default for LogPolicy {
    /// What a document without any `log` section gets: /24 and /48 truncation, every query value
    /// redacted, nothing pseudonymized, no headers, `X-Forwarded-For` kept.
    fn default() -> Self {
        LogPolicy {
            v4_prefix: 24,
            v6_prefix: 48,
            key: None,
            pseudo_client_ip: false,
            pseudo_key_id: false,
            pseudo_headers: Vec::new(),
            headers: Vec::new(),
            query: QueryRule::redact_all(),
            upstream_xff: UpstreamXff::Keep,
            fields: false,
            status: true,
            known_key_ids: Vec::new(),
            client_memo: memo::ClientMemo::default(),
        }
    }
}

/// Validates a header name from the document; returns it lowercase.
fn header_name(raw: &str, path: &str, errs: &mut Errors) -> Option<String> {
    if !crate::request::is_token(raw) {
        errs.push(path, format!("{raw:?} is not a valid header name"));
        return None;
    }
    let name = raw.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&name.as_str()) {
        errs.push(
            path,
            format!("{name} carries credentials and can never be logged"),
        );
        return None;
    }
    if name == "forwarded" {
        errs.push(
            path,
            "forwarded carries client addresses that edgeward does not anonymize; log x-forwarded-for instead",
        );
        return None;
    }
    Some(name)
}

/// Compiles a `log` section at `path` (e.g. `policies.p.log`); every problem goes to `errs`.
pub fn compile(
    input: &LogInput,
    path: &str,
    env: &dyn Env,
    errs: &mut Errors,
) -> Option<LogPolicy> {
    let before = errs.len();
    let v4_prefix = prefix_len(
        input.ipv4_prefix.unwrap_or(default_v4()),
        32,
        path,
        "ipv4_prefix",
        errs,
    );
    let v6_prefix = prefix_len(
        input.ipv6_prefix.unwrap_or(default_v6()),
        128,
        path,
        "ipv6_prefix",
        errs,
    );
    let key = pseudonym_key(input, path, env, errs);
    let pseudo = pseudonymized(input, path, errs);
    let upstream_xff = upstream_xff(input, path, errs);
    let headers = logged_headers(input, path, &pseudo.headers, errs);
    let query = query_rule(input, path, errs);
    if errs.len() != before {
        return None;
    }
    Some(LogPolicy {
        v4_prefix,
        v6_prefix,
        key,
        pseudo_client_ip: pseudo.client_ip,
        pseudo_key_id: pseudo.key_id,
        pseudo_headers: pseudo.headers,
        headers,
        query,
        upstream_xff,
        fields: input.fields.unwrap_or(false),
        status: input.status.unwrap_or(true),
        known_key_ids: Vec::new(),
        client_memo: memo::ClientMemo::default(),
    })
}

/// `ipv4_prefix` or `ipv6_prefix`: bits kept of an address of `max` bits (0 after an error).
fn prefix_len(bits: u32, max: u8, path: &str, field: &str, errs: &mut Errors) -> u8 {
    match u8::try_from(bits) {
        Ok(p) if p <= max => p,
        _ => {
            errs.push(
                join(path, field),
                format!("{bits} is not between 0 and {max}"),
            );
            0
        }
    }
}

/// `pseudonym_key`: the HMAC key of the pseudonyms, when given.
fn pseudonym_key(
    input: &LogInput,
    path: &str,
    env: &dyn Env,
    errs: &mut Errors,
) -> Option<PseudonymKey> {
    let secret = input.pseudonym_key.as_ref()?;
    let kpath = join(path, "pseudonym_key");
    match secret.resolve(&kpath, env, MIN_KEY_BYTES) {
        Ok(s) => {
            let k = PseudonymKey::new(s.bytes());
            if k.is_none() {
                errs.push(kpath, "cannot key HMAC-SHA-256 with this secret");
            }
            k
        }
        Err(e) => {
            errs.add(e);
            None
        }
    }
}

/// What `pseudonymize` lists.
#[derive(Default)]
struct Pseudonymized {
    client_ip: bool,
    key_id: bool,
    headers: Vec<PseudoHeader>,
}

/// `pseudonymize`: `client_ip`, `key_id`, `header:NAME` (each header once), and only with a key.
fn pseudonymized(input: &LogInput, path: &str, errs: &mut Errors) -> Pseudonymized {
    let items: &[String] = input.pseudonymize.as_deref().unwrap_or_default();
    let ppath = join(path, "pseudonymize");
    let mut out = Pseudonymized::default();
    for (i, item) in items.iter().enumerate() {
        let ipath = index(&ppath, i);
        if item == LABEL_CLIENT_IP {
            out.client_ip = true;
        } else if item == LABEL_KEY_ID {
            out.key_id = true;
        } else if let Some(raw) = item.strip_prefix("header:") {
            match header_name(raw, &ipath, errs) {
                Some(name) if !out.headers.iter().any(|h| h.name == name) => {
                    out.headers.push(PseudoHeader {
                        label: format!("header:{name}"),
                        property: format!("edgeward.header.{name}"),
                        name,
                    })
                }
                _ => {}
            }
        } else {
            errs.push(
                ipath,
                format!("{item:?} is not one of \"client_ip\", \"key_id\", \"header:NAME\""),
            );
        }
    }
    if input.pseudonym_key.is_none() && !items.is_empty() {
        errs.push(
            ppath,
            "pseudonymize needs a pseudonym_key (at least 32 bytes); unkeyed hashes of addresses are reversible",
        );
    }
    out
}

/// `upstream_xff`; `pseudonymize` needs a key.
fn upstream_xff(input: &LogInput, path: &str, errs: &mut Errors) -> UpstreamXff {
    let upstream_xff = input.upstream_xff.unwrap_or_default();
    if input.pseudonym_key.is_none() && upstream_xff == UpstreamXff::Pseudonymize {
        errs.push(
            join(path, "upstream_xff"),
            "\"pseudonymize\" needs a pseudonym_key (at least 32 bytes)",
        );
    }
    upstream_xff
}

/// `headers`: the allow-list, each header once, none of them pseudonymized too.
fn logged_headers(
    input: &LogInput,
    path: &str,
    pseudo: &[PseudoHeader],
    errs: &mut Errors,
) -> Vec<LoggedHeader> {
    let hpath = join(path, "headers");
    let mut headers: Vec<LoggedHeader> = Vec::new();
    for (i, raw) in input.headers.iter().flatten().enumerate() {
        let ipath = index(&hpath, i);
        let Some(name) = header_name(raw, &ipath, errs) else {
            continue;
        };
        if pseudo.iter().any(|h| h.name == name) {
            errs.push(
                ipath,
                format!("{name} is pseudonymized; listing it in headers would log it raw as well"),
            );
            continue;
        }
        if headers.iter().any(|h| h.name == name) {
            continue;
        }
        headers.push(LoggedHeader {
            property: format!("edgeward.headers.{name}"),
            addresses: ADDRESS_HEADERS.contains(&name.as_str()),
            url: URL_HEADERS.contains(&name.as_str()),
            name,
        });
    }
    headers
}

/// `keep_query` (the names whose values are logged), and the refusal of `redact_query`.
fn query_rule(input: &LogInput, path: &str, errs: &mut Errors) -> QueryRule {
    if input.redact_query.is_some() {
        errs.push(
            join(path, "redact_query"),
            "replaced by keep_query: every query value is now logged as REDACTED unless its name is listed in keep_query",
        );
    }
    let qpath = join(path, "keep_query");
    let keep: &[String] = input.keep_query.as_deref().unwrap_or_default();
    for (i, name) in keep.iter().enumerate() {
        if normalize_name(name).is_empty() || name.chars().any(|c| c.is_control()) {
            errs.push(
                index(&qpath, i),
                "a query parameter name is non-empty text without control characters",
            );
        }
    }
    QueryRule::keeping(keep.iter().map(String::as_str))
}

/// Everything the record says about one request; strings are untrusted and are neutralized and capped.
/// `Debug` leaves out the address, path, key id and headers (raw personal data and query secrets).
#[derive(Clone, Copy)]
pub struct RecordInput<'a> {
    /// Unix seconds of the request (the adapter's clock, an argument here).
    pub now_s: u64,
    /// Sub-second nanoseconds; the record prints milliseconds.
    pub now_nanos: u32,
    /// Envoy's route name.
    pub route: Option<&'a str>,
    /// The selected policy name (`None`: no route, or `"policy": null`).
    pub policy: Option<&'a str>,
    /// `"enforce"` or `"shadow"`.
    pub mode: &'a str,
    /// What happened: `"allow"`, `"deny"`, `"redirect"`.
    pub decision: &'a str,
    /// Reason code of a deny/redirect (null when allowed).
    pub reason: Option<&'a str>,
    /// In shadow mode, the decision that enforce mode would have taken when it is not `allow`.
    pub shadow_decision: Option<&'a str>,
    /// In shadow mode, the reason enforce mode would have denied or redirected.
    pub shadow_reason: Option<&'a str>,
    /// Response status (also when it came from the upstream); not written with `log.status: false`.
    pub status: u16,
    pub method: &'a str,
    /// `:authority` without port.
    pub host: &'a str,
    /// `:path` as received, query included (redacted here).
    pub path: &'a str,
    /// TLS version (`"1.3"`) or `None` for plaintext.
    pub tls: Option<&'a str>,
    /// The client address as resolved by the IP rules (full; truncated here).
    pub client_ip: Option<IpAddr>,
    /// The verified signature key id, if any.
    pub key_id: Option<&'a str>,
    /// The verified Web Bot Auth agent's origin, if any (an operator's URL, no personal data).
    pub agent: Option<&'a str>,
    pub headers: Headers<'a>,
}

impl std::fmt::Debug for RecordInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordInput")
            .field("now_s", &self.now_s)
            .field("route", &self.route)
            .field("policy", &self.policy)
            .field("mode", &self.mode)
            .field("decision", &self.decision)
            .field("reason", &self.reason)
            .field("shadow_reason", &self.shadow_reason)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// What to do with `X-Forwarded-For` toward the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XffAction {
    /// Leave it as it is.
    Keep,
    /// Replace it with this value.
    Set(String),
    /// Remove it.
    Remove,
}

/// Joins every value of a header the way HTTP combines repeated fields.
fn combined<'h>(headers: &Headers<'h>, name: &str) -> Option<std::borrow::Cow<'h, str>> {
    combined_with(headers, name, std::borrow::Cow::Borrowed)
}

/// [`combined`] with each value passed through `f` first (so a rewrite sees one value, not the list).
fn combined_with<'h>(
    headers: &Headers<'h>,
    name: &str,
    f: impl Fn(&'h str) -> std::borrow::Cow<'h, str>,
) -> Option<std::borrow::Cow<'h, str>> {
    let mut values = headers.get_all(name);
    let first = f(values.next()?);
    let mut rest = values.peekable();
    if rest.peek().is_none() {
        return Some(first);
    }
    let mut s = first.into_owned();
    for v in rest {
        s.push_str(", ");
        s.push_str(&f(v));
    }
    Some(std::borrow::Cow::Owned(s))
}

impl LogPolicy {
    /// Whether each record field is also set as its own property (`"fields": true`).
    pub fn fields_enabled(&self) -> bool {
        self.fields
    }

    /// Whether the record carries the response status (`"status"`, default true). When it does not,
    /// the status passed to [`LogPolicy::record`] is ignored, and the adapter does not read it.
    pub fn logs_status(&self) -> bool {
        self.status
    }

    /// The `upstream_xff` mode.
    pub fn upstream_xff(&self) -> UpstreamXff {
        self.upstream_xff
    }

    /// Whether `X-Envoy-External-Address` must be removed toward the upstream (every mode but `keep`).
    pub fn remove_external_address(&self) -> bool {
        self.upstream_xff != UpstreamXff::Keep
    }

    /// The truncated form of an address under this policy.
    pub fn truncate(&self, ip: IpAddr) -> IpAddr {
        truncate_ip(ip, self.v4_prefix, self.v6_prefix)
    }

    fn client_pseudonym(&self, ip: IpAddr) -> Option<String> {
        self.key.as_ref().map(|k| {
            let mut out = String::with_capacity(22);
            self.client_memo.push(k, ip, &mut out);
            out
        })
    }

    /// Computes, once, the `key_id` pseudonyms of `ids` (the ids of the policy's own keys; the first
    /// [`MAX_KNOWN_KEY_IDS`]), when this policy pseudonymizes key ids. Records then look them up.
    pub fn precompute_key_ids<'i>(&mut self, ids: impl IntoIterator<Item = &'i str>) {
        self.known_key_ids.clear();
        let Some(k) = self.key.as_ref().filter(|_| self.pseudo_key_id) else {
            return;
        };
        for id in ids {
            if self.known_key_ids.len() == MAX_KNOWN_KEY_IDS {
                break;
            }
            if !self.known_key_ids.iter().any(|(known, _)| known == id) {
                let p = k.pseudonym(LABEL_KEY_ID, id.as_bytes());
                self.known_key_ids.push((id.to_string(), p));
            }
        }
    }

    /// The `key_id` pseudonym computed at configure for `id`, if it is one of the policy's own keys.
    pub(crate) fn known_key_id(&self, id: &str) -> Option<&str> {
        self.known_key_ids
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, p)| p.as_str())
    }

    /// The `key_id` value as logged: its pseudonym when listed, else the id itself (a key id is no secret).
    fn key_id_value<'k>(&'k self, key_id: Option<&'k str>) -> Option<std::borrow::Cow<'k, str>> {
        let id = key_id?;
        if self.pseudo_key_id {
            if let Some(p) = self.known_key_id(id) {
                return Some(std::borrow::Cow::Borrowed(p));
            }
            let k = self.key.as_ref()?;
            Some(std::borrow::Cow::Owned(
                k.pseudonym(LABEL_KEY_ID, id.as_bytes()),
            ))
        } else {
            Some(std::borrow::Cow::Borrowed(id))
        }
    }

    /// Every element of an address list, truncated; unparseable elements become `unknown`.
    fn truncate_list(&self, value: &str, out: &mut String) {
        for (i, element) in value.split(',').map(str::trim).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match parse_address(element) {
                Some(ip) => {
                    let _ = write!(out, "{}", self.truncate(ip));
                }
                None => out.push_str("unknown"),
            }
        }
    }

    /// The value of an allow-listed header as logged.
    fn header_value<'h>(
        &self,
        h: &LoggedHeader,
        headers: &Headers<'h>,
    ) -> Option<std::borrow::Cow<'h, str>> {
        if h.url {
            // Each value on its own: joined first, a second URL would read as part of the first's query.
            return combined_with(headers, &h.name, |v| redact_url(v, &self.query));
        }
        let v = combined(headers, &h.name)?;
        if h.addresses {
            let mut s = String::with_capacity(v.len());
            self.truncate_list(&v, &mut s);
            Some(std::borrow::Cow::Owned(s))
        } else {
            Some(v)
        }
    }

    /// The anonymized record: one compact JSON object (no newline).
    pub fn record(&self, r: &RecordInput) -> String {
        use text::{push_json_opt, push_json_str};
        let mut out = String::with_capacity(512);
        out.push_str("{\"ts\":\"");
        text::push_rfc3339(&mut out, r.now_s, r.now_nanos);
        out.push_str("\",\"route\":");
        push_json_opt(&mut out, r.route);
        out.push_str(",\"policy\":");
        push_json_opt(&mut out, r.policy);
        out.push_str(",\"mode\":");
        push_json_str(&mut out, r.mode);
        out.push_str(",\"decision\":");
        push_json_str(&mut out, r.decision);
        out.push_str(",\"reason\":");
        push_json_opt(&mut out, r.reason);
        if r.shadow_decision.is_some() || r.shadow_reason.is_some() {
            out.push_str(",\"shadow_decision\":");
            push_json_opt(&mut out, r.shadow_decision);
            out.push_str(",\"shadow_reason\":");
            push_json_opt(&mut out, r.shadow_reason);
        }
        if self.status {
            out.push_str(",\"status\":");
            crate::num::push_u64(&mut out, u64::from(r.status));
        }
        out.push_str(",\"method\":");
        push_json_str(&mut out, r.method);
        out.push_str(",\"host\":");
        push_json_str(&mut out, r.host);
        out.push_str(",\"path\":");
        push_json_str(&mut out, &redact_query(r.path, &self.query));
        out.push_str(",\"tls\":");
        push_json_opt(&mut out, r.tls);
        out.push_str(",\"client_ip\":");
        match r.client_ip {
            Some(ip) => {
                out.push('"');
                crate::num::push_ip(&mut out, self.truncate(ip));
                out.push('"');
            }
            None => out.push_str("null"),
        }
        // Pseudonyms (base64url: nothing to escape) are written in place, without a string each.
        let quoted = |out: &mut String, write: &dyn Fn(&PseudonymKey, &mut String)| match &self.key
        {
            Some(k) => {
                out.push('"');
                write(k, out);
                out.push('"');
            }
            None => out.push_str("null"),
        };
        if self.pseudo_client_ip {
            out.push_str(",\"client\":");
            match r.client_ip {
                Some(ip) => quoted(&mut out, &|k, o| self.client_memo.push(k, ip, o)),
                None => out.push_str("null"),
            }
        }
        out.push_str(",\"key_id\":");
        match r.key_id {
            Some(id) if self.pseudo_key_id => match self.known_key_id(id) {
                Some(p) => push_json_str(&mut out, p),
                None => quoted(&mut out, &|k, o| {
                    k.push_pseudonym(o, LABEL_KEY_ID, id.as_bytes())
                }),
            },
            id => push_json_opt(&mut out, id),
        }
        if let Some(agent) = r.agent {
            out.push_str(",\"agent\":");
            push_json_str(&mut out, agent);
        }
        for h in &self.pseudo_headers {
            out.push(',');
            push_json_str(&mut out, &h.label);
            out.push(':');
            let p = combined(&r.headers, &h.name).and_then(|v| {
                self.key
                    .as_ref()
                    .map(|k| k.pseudonym(&h.label, v.as_bytes()))
            });
            push_json_opt(&mut out, p.as_deref());
        }
        out.push_str(",\"headers\":{");
        let mut first = true;
        for h in &self.headers {
            if let Some(v) = self.header_value(h, &r.headers) {
                if !first {
                    out.push(',');
                }
                first = false;
                push_json_str(&mut out, &h.name);
                out.push(':');
                push_json_str(&mut out, &v);
            }
        }
        out.push_str("}}");
        out
    }

    /// The record's fields as separate properties (`edgeward.client_ip`, …), plain text, neutralized and
    /// capped; absent values are left out. Empty unless `"fields": true` (each one is a host call).
    pub fn fields<'s>(&'s self, r: &RecordInput) -> Vec<(&'s str, String)> {
        if !self.fields {
            return Vec::new();
        }
        fn plain(s: &str) -> String {
            let mut out = String::with_capacity(s.len().min(VALUE_CAP));
            text::push_value(&mut out, s, false);
            out
        }
        let mut f: Vec<(&'s str, String)> = Vec::with_capacity(16);
        f.push(("edgeward.ts", rfc3339(r.now_s, r.now_nanos)));
        let opt = |f: &mut Vec<(&'s str, String)>, name: &'s str, v: Option<&str>| {
            if let Some(v) = v {
                f.push((name, plain(v)));
            }
        };
        opt(&mut f, "edgeward.route", r.route);
        opt(&mut f, "edgeward.policy", r.policy);
        f.push(("edgeward.mode", plain(r.mode)));
        f.push(("edgeward.decision", plain(r.decision)));
        opt(&mut f, "edgeward.reason", r.reason);
        opt(&mut f, "edgeward.shadow_decision", r.shadow_decision);
        opt(&mut f, "edgeward.shadow_reason", r.shadow_reason);
        if self.status {
            f.push(("edgeward.status", r.status.to_string()));
        }
        f.push(("edgeward.method", plain(r.method)));
        f.push(("edgeward.host", plain(r.host)));
        f.push(("edgeward.path", plain(&redact_query(r.path, &self.query))));
        opt(&mut f, "edgeward.tls", r.tls);
        if let Some(ip) = r.client_ip {
            f.push(("edgeward.client_ip", self.truncate(ip).to_string()));
            if self.pseudo_client_ip {
                if let Some(p) = self.client_pseudonym(ip) {
                    f.push(("edgeward.client", p));
                }
            }
        }
        opt(
            &mut f,
            "edgeward.key_id",
            self.key_id_value(r.key_id).as_deref(),
        );
        opt(&mut f, "edgeward.agent", r.agent);
        for h in &self.pseudo_headers {
            let p = combined(&r.headers, &h.name).and_then(|v| {
                self.key
                    .as_ref()
                    .map(|k| k.pseudonym(&h.label, v.as_bytes()))
            });
            if let Some(p) = p {
                f.push((h.property.as_str(), p));
            }
        }
        for h in &self.headers {
            if let Some(v) = self.header_value(h, &r.headers) {
                f.push((h.property.as_str(), plain(&v)));
            }
        }
        f
    }

    /// Rewrites `X-Forwarded-For` toward the upstream: every comma-separated element of every value is
    /// truncated or pseudonymized (unparseable ones become `unknown`, never forwarded raw), or the header
    /// is removed. No values: nothing to rewrite.
    pub fn rewrite_xff<'v>(&self, values: impl IntoIterator<Item = &'v str>) -> XffAction {
        match self.upstream_xff {
            UpstreamXff::Keep => return XffAction::Keep,
            UpstreamXff::Remove => return XffAction::Remove,
            UpstreamXff::Truncate | UpstreamXff::Pseudonymize => {}
        }
        let elements: Vec<&str> = values
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if elements.is_empty() {
            return XffAction::Keep;
        }
        let skip = elements.len().saturating_sub(MAX_XFF_ELEMENTS);
        let mut out = String::with_capacity(24 * (elements.len() - skip));
        for (i, element) in elements.iter().skip(skip).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match parse_address(element) {
                Some(ip) if self.upstream_xff == UpstreamXff::Pseudonymize => {
                    match self.client_pseudonym(ip) {
                        Some(p) => out.push_str(&p),
                        None => out.push_str("unknown"),
                    }
                }
                Some(ip) => {
                    let _ = write!(out, "{}", self.truncate(ip));
                }
                None => out.push_str("unknown"),
            }
        }
        XffAction::Set(out)
    }
}

#[cfg(test)]
mod tests;
