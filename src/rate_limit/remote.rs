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
pub fn request_message(
    domain: &str,
    policy: &str,
    limits: &[Limit],
    keys: &[KeyValue<'_>],
) -> Vec<u8> {
    let descriptors = limits
        .iter()
        .zip(keys)
        .map(|(l, k)| RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "limit".to_string(),
                    value: l.name.clone(),
                },
                Entry {
                    key: "key".to_string(),
                    value: key_text(l, k, policy),
                },
            ],
        })
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
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::rate_limit::{compile, KeyInputs, DEFAULT_SLOTS};
    use crate::request::Headers;

    fn rls(json: &str) -> (Option<RlsConfig>, Vec<String>) {
        let input: RlsInput = crate::json::from_str(json).unwrap();
        let mut errs = Errors::default();
        let out = compile_rls(&input, "rls", &mut errs);
        let errs = errs.into_vec().iter().map(|e| e.to_string()).collect();
        (out, errs)
    }

    #[test]
    fn rls_section_defaults_and_errors() {
        let (c, errs) = rls(r#"{"cluster": "ratelimit", "domain": "edgeward"}"#);
        assert!(errs.is_empty(), "{errs:?}");
        let c = c.unwrap();
        assert_eq!((c.timeout_ms, c.failure_mode), (20, FailureMode::Deny));
        let (c, _) =
            rls(r#"{"cluster": "rl", "domain": "d", "timeout_ms": 250, "failure_mode": "allow"}"#);
        assert_eq!(
            c.map(|c| (c.timeout_ms, c.failure_mode)),
            Some((250, FailureMode::Allow))
        );
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"cluster": "", "domain": "d"}"#,
                "rls.cluster",
                "not a valid cluster",
            ),
            (
                r#"{"cluster": "a b", "domain": "d"}"#,
                "rls.cluster",
                "not a valid cluster",
            ),
            // 'a' is field 12 of wire type fixed64, then 8 bytes: a valid protobuf message.
            (
                r#"{"cluster": "a12345678", "domain": "d"}"#,
                "rls.cluster",
                "GrpcService",
            ),
            (
                r#"{"cluster": "rl", "domain": ""}"#,
                "rls.domain",
                "not a valid domain",
            ),
            (
                r#"{"cluster": "rl", "domain": "d", "timeout_ms": 0}"#,
                "rls.timeout_ms",
                "1..=10000",
            ),
            (
                r#"{"cluster": "rl", "domain": "d", "timeout_ms": 10001}"#,
                "rls.timeout_ms",
                "out of range",
            ),
        ];
        for (json, path, why) in cases {
            let (c, errs) = rls(json);
            assert!(c.is_none(), "{json}");
            assert_eq!(errs.len(), 1, "{json}: {errs:?}");
            assert!(
                errs[0].starts_with(&format!("{path}: ")),
                "{json}: {errs:?}"
            );
            assert!(errs[0].contains(why), "{json}: {errs:?}");
        }
        for bad in [
            r#"{"cluster": "rl", "domain": "d", "failure_mode": "open"}"#,
            r#"{"cluster": "rl", "domain": "d", "timeout": 5}"#,
            r#"{"domain": "d"}"#,
        ] {
            assert!(crate::json::from_str::<RlsInput>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_names_that_envoy_would_misread() {
        let cases: &[(&[u8], bool)] = &[
            (b"ratelimit", false),
            (b"rls", false),
            (b"edgeward-rls", false),
            (b"rate_limit_cluster", false),
            (b"a12345678", true),
            (b"(a", true), // field 5, varint
            (b"0a", true), // field 6, varint
            (b"(", false), // truncated varint
            (b"\x0a\x03abc", true),
            (b"\x0a\x04abc", false), // length past the end
            (b"\x1b\x1c", true),     // group 3 opened and closed
            (b"\x1b", false),        // unclosed group
            (b"\x1c", false),        // close without open
            (b"\x07", false),        // field 0
            (b"\x0f", false),        // wire type 7
        ];
        for (bytes, parses) in cases {
            assert_eq!(parses_as_protobuf(bytes), *parses, "{bytes:?}");
        }
    }

    fn remote_limits(json: &str) -> crate::rate_limit::RateLimits {
        let inputs: Vec<crate::rate_limit::LimitInput> = crate::json::from_str(json).unwrap();
        let mut errs = Errors::default();
        let rl = compile(
            &inputs,
            "p.rate_limits",
            "pol",
            true,
            true,
            DEFAULT_SLOTS,
            &mut errs,
        );
        assert!(errs.is_empty(), "{:?}", errs.into_vec());
        rl.unwrap()
    }

    fn config() -> RlsConfig {
        RlsConfig {
            cluster: "ratelimit".into(),
            domain: "edgeward".into(),
            timeout_ms: 20,
            failure_mode: FailureMode::Deny,
        }
    }

    fn entries(req: &RateLimitRequest) -> Vec<Vec<(String, String)>> {
        req.descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn one_descriptor_per_remote_limit_with_the_documented_shape() {
        let rl = remote_limits(
            r#"[{"name": "local", "key": "route", "limit": 5, "window_s": 1},
                {"name": "per-client", "key": "client_ip", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "per-partner", "key": "key_id", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "per-user", "key": "header:x-user", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "total", "key": "route", "limit": 5, "window_s": 1, "backend": "rls"},
                {"name": "all", "key": "global", "limit": 5, "window_s": 1, "backend": "rls"}]"#,
        );
        assert_eq!((rl.limits().len(), rl.remote().len()), (1, 5));
        let headers = vec![
            ("x-user".to_string(), " alice ".to_string()),
            ("x-user".to_string(), "bob".to_string()),
        ];
        let cases: &[(&str, Option<&str>, &[(String, String)], [&str; 3])] = &[
            (
                "192.0.2.7",
                Some("partner-a"),
                &headers,
                ["192.0.2.7", "partner-a", "alice, bob"],
            ),
            (
                "2001:db8:1:2:3:4:5:6",
                None,
                &[],
                ["2001:db8:1:2::/64", "-", "-"],
            ),
            ("::ffff:192.0.2.9", None, &[], ["192.0.2.9", "-", "-"]),
        ];
        for (ip, key_id, hdrs, [ip_text, key_text, user_text]) in cases {
            let keys = KeyInputs {
                client_ip: Some(ip.parse().unwrap()),
                key_id: *key_id,
                headers: Headers::new(hdrs),
            };
            let msg = rl.remote_message(&config(), "pol", &keys).unwrap();
            let req = RateLimitRequest::decode(msg.as_slice()).unwrap();
            assert_eq!(req.domain, "edgeward");
            assert_eq!(req.hits_addend, 1);
            let e = |a: &str, b: &str| {
                vec![
                    ("limit".to_string(), a.to_string()),
                    ("key".to_string(), b.to_string()),
                ]
            };
            assert_eq!(
                entries(&req),
                vec![
                    e("per-client", ip_text),
                    e("per-partner", key_text),
                    e("per-user", user_text),
                    e("total", "pol"),
                    e("all", "global"),
                ],
                "{ip}"
            );
        }
        // An empty header value is the missing key, never an empty descriptor value.
        let empty = vec![("x-user".to_string(), "  ".to_string())];
        let keys = KeyInputs {
            client_ip: None,
            key_id: None,
            headers: Headers::new(&empty),
        };
        let req = RateLimitRequest::decode(
            rl.remote_message(&config(), "pol", &keys)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert!(req
            .descriptors
            .iter()
            .all(|d| d.entries.iter().all(|e| !e.value.is_empty())));
        assert_eq!(req.descriptors[0].entries[1].value, "-");
        assert_eq!(req.descriptors[2].entries[1].value, "-");
        // Without remote limits there is no call.
        let local = remote_limits(r#"[{"name": "l", "key": "route", "limit": 5, "window_s": 1}]"#);
        assert!(local.remote_message(&config(), "pol", &keys).is_none());
    }

    #[test]
    fn request_wire_bytes_use_the_rls_field_numbers() {
        let rl = remote_limits(
            r#"[{"name": "n", "key": "route", "limit": 5, "window_s": 1, "backend": "rls"}]"#,
        );
        let keys = KeyInputs {
            client_ip: None,
            key_id: None,
            headers: Headers::new(&[]),
        };
        let mut cfg = config();
        cfg.domain = "d".into();
        let msg = rl.remote_message(&cfg, "k", &keys).unwrap();
        let mut want = vec![0x0a, 1, b'd', 0x12, 22];
        want.extend_from_slice(&[0x0a, 10, 0x0a, 5]);
        want.extend_from_slice(b"limit");
        want.extend_from_slice(&[0x12, 1, b'n', 0x0a, 8, 0x0a, 3]);
        want.extend_from_slice(b"key");
        want.extend_from_slice(&[0x12, 1, b'k', 0x18, 1]);
        assert_eq!(msg, want);
    }

    fn header(k: &str, v: &str) -> HeaderValue {
        HeaderValue {
            key: k.into(),
            value: v.into(),
            raw_value: Vec::new(),
        }
    }

    fn status(code: i32, secs: i64, nanos: i32) -> DescriptorStatus {
        DescriptorStatus {
            code,
            limit_remaining: 0,
            duration_until_reset: Some(Duration {
                seconds: secs,
                nanos,
            }),
        }
    }

    fn answer(
        code: i32,
        statuses: Vec<DescriptorStatus>,
        headers: Vec<HeaderValue>,
        n: usize,
    ) -> RemoteAnswer {
        let bytes = RateLimitResponse {
            overall_code: code,
            statuses,
            response_headers_to_add: headers,
        }
        .encode_to_vec();
        read_response(&bytes, n)
    }

    #[test]
    fn reading_the_engines_answer() {
        let hdrs = vec![
            header("X-RateLimit-Limit", "10, 10;w=60"),
            header("X-RateLimit-Remaining", "3"),
        ];
        assert_eq!(
            answer(CODE_OK, vec![], hdrs.clone(), 1),
            RemoteAnswer::Allowed {
                headers: vec![
                    ("X-RateLimit-Limit".into(), "10, 10;w=60".into()),
                    ("X-RateLimit-Remaining".into(), "3".into())
                ]
            }
        );
        // Over limit: Retry-After from the over-limit statuses (rounded up), which names the descriptor.
        assert_eq!(
            answer(
                CODE_OVER_LIMIT,
                vec![status(CODE_OK, 50, 0), status(CODE_OVER_LIMIT, 4, 1)],
                vec![],
                2
            ),
            RemoteAnswer::OverLimit {
                headers: vec![],
                retry_after_s: 5,
                descriptor: Some(1)
            }
        );
        // An engine Retry-After header wins, and is not forwarded twice.
        assert_eq!(
            answer(
                CODE_OVER_LIMIT,
                vec![status(CODE_OVER_LIMIT, 4, 0)],
                vec![header("retry-after", "9")],
                1
            ),
            RemoteAnswer::OverLimit {
                headers: vec![],
                retry_after_s: 9,
                descriptor: Some(0)
            }
        );
        // No statuses (Limitador): X-RateLimit-Reset, and no descriptor.
        assert_eq!(
            answer(
                CODE_OVER_LIMIT,
                vec![],
                vec![header("X-RateLimit-Reset", "42")],
                1
            ),
            RemoteAnswer::OverLimit {
                headers: vec![("X-RateLimit-Reset".into(), "42".into())],
                retry_after_s: 42,
                descriptor: None
            }
        );
        // Statuses of the wrong length are ignored; nothing at all → 1 second.
        assert_eq!(
            answer(
                CODE_OVER_LIMIT,
                vec![status(CODE_OVER_LIMIT, 30, 0)],
                vec![],
                2
            ),
            RemoteAnswer::OverLimit {
                headers: vec![],
                retry_after_s: 1,
                descriptor: None
            }
        );
        assert_eq!(
            answer(
                CODE_OVER_LIMIT,
                vec![status(CODE_OVER_LIMIT, 0, 0)],
                vec![],
                1
            ),
            RemoteAnswer::OverLimit {
                headers: vec![],
                retry_after_s: 1,
                descriptor: Some(0)
            }
        );
        // UNKNOWN, an unset code, bytes that are no message: no answer.
        assert_eq!(answer(0, vec![], vec![], 1), RemoteAnswer::Unavailable);
        assert_eq!(answer(7, vec![], vec![], 1), RemoteAnswer::Unavailable);
        assert_eq!(read_response(&[], 1), RemoteAnswer::Unavailable);
        assert_eq!(
            read_response(&[0xff, 0xff, 0xff], 1),
            RemoteAnswer::Unavailable
        );
        // Hand-written wire bytes: overall_code = OVER_LIMIT (field 1), one header (field 3).
        let mut wire = vec![0x08, 0x02, 0x1a, 16, 0x0a, 11];
        wire.extend_from_slice(b"retry-after");
        wire.extend_from_slice(&[0x12, 1, b'7']);
        assert_eq!(
            read_response(&wire, 1),
            RemoteAnswer::OverLimit {
                headers: vec![],
                retry_after_s: 7,
                descriptor: None
            }
        );
    }

    #[test]
    fn engine_headers_are_filtered_before_they_reach_the_client() {
        let mut many: Vec<HeaderValue> = (0..40).map(|i| header(&format!("x-h{i}"), "v")).collect();
        many.extend([
            header("x-split", "a\r\nset-cookie: evil=1"),
            header("content-length", "0"),
            header("Transfer-Encoding", "chunked"),
            header("bad name", "v"),
            header(":status", "200"),
            header("", "v"),
        ]);
        let got = match answer(CODE_OK, vec![], many, 1) {
            RemoteAnswer::Allowed { headers } => headers,
            other => panic!("{other:?}"),
        };
        assert_eq!(got.len(), MAX_FORWARDED_HEADERS);
        assert!(got.iter().all(|(k, _)| k.starts_with("x-h")), "{got:?}");
        let bad_only = vec![
            header("x-split", "a\r\nb"),
            header("content-length", "0"),
            header("x-long", &"v".repeat(MAX_HEADER_VALUE + 1)),
            HeaderValue {
                key: "x-raw".into(),
                value: String::new(),
                raw_value: b"raw".to_vec(),
            },
            HeaderValue {
                key: "x-bin".into(),
                value: String::new(),
                raw_value: vec![0xff],
            },
        ];
        assert_eq!(
            answer(CODE_OK, vec![], bad_only, 1),
            RemoteAnswer::Allowed {
                headers: vec![("x-raw".into(), "raw".into())]
            }
        );
    }
}
