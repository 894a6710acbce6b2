//! Cluster-wide limits through Envoy's rate limit service protocol (RLS,
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`): the document's `rls` section, the
//! request message (one descriptor per remote limit) and the reading of the engine's answer.
//!
//! Descriptor shape, one per remote limit of the policy, in document order:
//! `[("limit", <limit name>), ("key", <key value>)]`, where the key value is the client address
//! (IPv4 `192.0.2.7`; IPv6 grouped, `2001:db8:1:2::/64`), the verified key id, the header's values
//! (trimmed, joined by `", "`), the policy name (`route`) or `global` (`global`); a missing or
//! empty key is `-` (requests without the key share one budget, as locally).
//!
//! The messages are hand-written (prost derive): `envoy-types` does not build for wasm32-wasip1.

use super::{KeyCase, KeySpec, KeyValue, Limit};
use crate::error::{join, Errors};
use prost::Message;
use std::net::IpAddr;

/// The gRPC service and method edgeward calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// Default of `rls.timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 20;
/// Largest accepted `rls.timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 10_000;
/// The key value sent for a request that lacks the key (or whose key is empty).
pub const MISSING_KEY: &str = "-";
/// At most this many engine response headers are forwarded to the client.
const MAX_FORWARDED_HEADERS: usize = 16;
/// Longest engine header value forwarded.
const MAX_HEADER_VALUE: usize = 1024;

/// What happens when the engine cannot answer (error, timeout, unknown cluster, bad answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Answer 503 `rate_limit_unavailable` with `Retry-After: 1` (fail closed).
    #[default]
    Deny,
    /// Let the request through and count it in `edgeward.rate_limit.remote_failed_open`.
    Allow,
}

/// The document-level `rls` section, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsInput {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: Option<u64>,
    pub failure_mode: FailureMode,
}

crate::json::json_choice!(FailureMode {
    "deny" => FailureMode::Deny,
    "allow" => FailureMode::Allow,
});

crate::json::json_object!(RlsInput {
    cluster: "cluster" => required,
    domain: "domain" => required,
    timeout_ms: "timeout_ms" => read,
    failure_mode: "failure_mode" => read,
});

/// The compiled `rls` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsConfig {
    /// The Envoy cluster (HTTP/2) of the rate limit service.
    pub cluster: String,
    /// The RLS domain every request names.
    pub domain: String,
    pub timeout_ms: u32,
    pub failure_mode: FailureMode,
}

/// Validates the `rls` section at JSON path `path`.
pub fn compile_rls(input: &RlsInput, path: &str, errs: &mut Errors) -> Option<RlsConfig> {
    let mut ok = true;
    let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if input.cluster.is_empty() || input.cluster.len() > 255 || !printable(&input.cluster) {
        errs.push(
            join(path, "cluster"),
            format!(
                "{:?} is not a valid cluster name (1 to 255 printable ASCII characters)",
                input.cluster
            ),
        );
        ok = false;
    } else if parses_as_protobuf(input.cluster.as_bytes()) {
        // Envoy first tries to read the argument as a serialized GrpcService and only then as a
        // cluster name; a name that happens to parse would be misread (and the SDK traps on the
        // resulting status).
        errs.push(
            join(path, "cluster"),
            format!(
                "{:?} cannot be used: Envoy would read it as a serialized GrpcService, not a cluster name; rename the cluster (e.g. \"ratelimit\")",
                input.cluster
            ),
        );
        ok = false;
    }
    if input.domain.is_empty() || input.domain.len() > 255 || !printable(&input.domain) {
        errs.push(
            join(path, "domain"),
            format!(
                "{:?} is not a valid domain (1 to 255 printable ASCII characters)",
                input.domain
            ),
        );
        ok = false;
    }
    let timeout = input.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout) {
        errs.push(
            join(path, "timeout_ms"),
            format!("{timeout} is out of range (allowed 1..={MAX_TIMEOUT_MS})"),
        );
        ok = false;
    }
    ok.then(|| RlsConfig {
        cluster: input.cluster.clone(),
        domain: input.domain.clone(),
        timeout_ms: u32::try_from(timeout).unwrap_or(u32::MAX),
        failure_mode: input.failure_mode,
    })
}

/// True when `bytes` is a well-formed protobuf message (every field's tag, wire type and length
/// valid to the last byte), which is how Envoy decides that a gRPC target is not a cluster name.
pub fn parses_as_protobuf(bytes: &[u8]) -> bool {
    fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    // Group nesting (wire types 3 and 4) is tracked by field number.
    let mut groups: Vec<u64> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(tag) = varint(bytes, &mut at) else {
            return false;
        };
        let field = tag >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return false;
        }
        let skip = match tag & 7 {
            0 => varint(bytes, &mut at).map(|_| 0),
            1 => Some(8),
            2 => varint(bytes, &mut at).and_then(|n| usize::try_from(n).ok()),
            3 => {
                groups.push(field);
                Some(0)
            }
            4 => {
                if groups.pop() != Some(field) {
                    return false;
                }
                Some(0)
            }
            5 => Some(4),
            _ => None,
        };
        match skip.and_then(|n| at.checked_add(n)) {
            Some(end) if end <= bytes.len() => at = end,
            _ => return false,
        }
    }
    groups.is_empty()
}

// The RLS messages (field numbers from envoy/service/ratelimit/v3/rls.proto and
// envoy/extensions/common/ratelimit/v3/ratelimit.proto); fields edgeward never uses are left out and
// skipped when decoding.

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `RateLimitResponse.Code`.
pub const CODE_OK: i32 = 1;
pub const CODE_OVER_LIMIT: i32 = 2;

/// The key value a remote limit sends for one request (see the module documentation).
pub fn key_text(limit: &Limit, key: &KeyValue<'_>, policy: &str) -> String {
    let text = match (key, &limit.key) {
        (KeyValue::Ip(IpAddr::V6(a)), KeySpec::ClientIp { ipv6_prefix })
            if *ipv6_prefix < 128 && a.to_ipv4_mapped().is_none() =>
        {
            format!("{a}/{ipv6_prefix}")
        }
        (KeyValue::Ip(ip), _) => ip.to_string(),
        (KeyValue::KeyId(id), _) => (*id).to_string(),
        (KeyValue::Header(headers, name, case), _) => {
            let mut out = String::new();
            for v in headers.get_all(name) {
                let v = v.trim_matches(|c: char| c == ' ' || c == '\t');
                if !out.is_empty() {
                    out.push_str(", ");
                }
                match case {
                    KeyCase::Exact => out.push_str(v),
                    KeyCase::Fold => out.extend(v.chars().map(|c| c.to_ascii_lowercase())),
                }
            }
            out
        }
        (KeyValue::Missing, _) => String::new(),
        (KeyValue::Constant, KeySpec::Global) => "global".to_string(),
        (KeyValue::Constant, _) => policy.to_string(),
    };
    if text.is_empty() {
        MISSING_KEY.to_string()
    } else {
        text
    }
}

/// The serialized `RateLimitRequest` for a request's remote limits (`keys[i]` for `limits[i]`).
/// The `limit` entry of the descriptor that checks a nonce cluster-wide (`nonce_scope: "cluster"`); no
/// limit of a document may have this name.
pub const NONCE_LIMIT: &str = "edgeward.nonce";

/// A nonce to check through the service: the verified key id and the signature's nonce.
#[derive(Debug, Clone, Copy)]
pub struct NonceDescriptor<'a> {
    pub key_id: &'a str,
    pub nonce: &'a str,
}

/// The `RateLimitRequest`: the nonce's descriptor first when there is one
/// (`[("limit", "edgeward.nonce"), ("key", key id), ("nonce", nonce)]`), then one descriptor per remote
/// limit in document order (`[("limit", name), ("key", key text)]`).
pub fn request_message(
    domain: &str,
    policy: &str,
    nonce: Option<NonceDescriptor<'_>>,
    limits: &[Limit],
    keys: &[KeyValue<'_>],
) -> Vec<u8> {
    let entry = |key: &str, value: &str| Entry {
        key: key.to_string(),
        value: value.to_string(),
    };
    let nonce = nonce.map(|n| RateLimitDescriptor {
        entries: vec![
            entry("limit", NONCE_LIMIT),
            entry("key", n.key_id),
            entry("nonce", n.nonce),
        ],
    });
    let descriptors = nonce
        .into_iter()
        .chain(limits.iter().zip(keys).map(|(l, k)| RateLimitDescriptor {
            entries: vec![
                entry("limit", &l.name),
                entry("key", &key_text(l, k, policy)),
            ],
        }))
        .collect();
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors,
        hits_addend: 1,
    }
    .encode_to_vec()
}

/// The engine's answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteAnswer {
    /// Within every limit; `headers` (from `response_headers_to_add`) go to the client.
    Allowed { headers: Vec<(String, String)> },
    /// Over a limit: `descriptor` is the first over-limit descriptor when the engine said which.
    OverLimit {
        headers: Vec<(String, String)>,
        retry_after_s: u64,
        descriptor: Option<usize>,
    },
    /// No usable answer (undecodable message, or a code other than OK and OVER_LIMIT).
    Unavailable,
}

/// Reads a `RateLimitResponse` for a request that sent `descriptors` descriptors.
pub fn read_response(bytes: &[u8], descriptors: usize) -> RemoteAnswer {
    let Ok(resp) = RateLimitResponse::decode(bytes) else {
        return RemoteAnswer::Unavailable;
    };
    let headers = forwarded_headers(&resp.response_headers_to_add);
    match resp.overall_code {
        CODE_OK => RemoteAnswer::Allowed { headers },
        CODE_OVER_LIMIT => {
            let statuses = (resp.statuses.len() == descriptors).then_some(&resp.statuses);
            let descriptor =
                statuses.and_then(|s| s.iter().position(|d| d.code == CODE_OVER_LIMIT));
            let header_secs = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            };
            let from_statuses = statuses.and_then(|s| {
                s.iter()
                    .filter(|d| d.code == CODE_OVER_LIMIT)
                    .filter_map(|d| d.duration_until_reset.as_ref())
                    .map(|d| {
                        let secs = u64::try_from(d.seconds).unwrap_or(0);
                        secs + u64::from(d.nanos > 0)
                    })
                    .max()
            });
            let retry_after_s = header_secs("retry-after")
                .or(from_statuses)
                .or_else(|| header_secs("x-ratelimit-reset"))
                .or_else(|| header_secs("ratelimit-reset"))
                .unwrap_or(1)
                .max(1);
            let headers = headers
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("retry-after"))
                .collect();
            RemoteAnswer::OverLimit {
                headers,
                retry_after_s,
                descriptor,
            }
        }
        _ => RemoteAnswer::Unavailable,
    }
}

/// The engine's response headers that are safe to forward: token names, no framing or hop-by-hop
/// headers, values without control characters, a bounded number.
fn forwarded_headers(values: &[HeaderValue]) -> Vec<(String, String)> {
    const NEVER: [&str; 6] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
    ];
    let mut out = Vec::new();
    for h in values {
        let value = if h.value.is_empty() {
            match std::str::from_utf8(&h.raw_value) {
                Ok(v) => v,
                Err(_) => continue,
            }
        } else {
            h.value.as_str()
        };
        let name_ok = !h.key.is_empty()
            && h.key.len() <= 128
            && h.key.bytes().all(crate::request::is_tchar)
            && !NEVER.iter().any(|n| n.eq_ignore_ascii_case(&h.key));
        let value_ok = value.len() <= MAX_HEADER_VALUE
            && value
                .bytes()
                .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if name_ok && value_ok {
            out.push((h.key.clone(), value.to_string()));
            if out.len() == MAX_FORWARDED_HEADERS {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
