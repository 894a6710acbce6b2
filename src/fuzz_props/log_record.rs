//! The access log record: whatever the request and the policy, one valid JSON object on one line
//! (no raw control or bidi characters), the client address truncated as configured, the separate
//! fields and the rewritten `X-Forwarded-For` free of line breaks.

use super::{Bytes, FuzzRequest};
use crate::error::Errors;
use crate::json::from_str;
use crate::log::{compile, truncate_ip, Embedded, LogInput, LogPolicy, RecordInput, XffAction};
use crate::request::Headers;
use crate::secret::NoEnv;
use std::net::IpAddr;

/// The `log` sections the records are written under.
const SECTIONS: [&str; 5] = [
    "{}",
    r#"{"ipv4_prefix": 24, "ipv6_prefix": 48,
        "pseudonym_key": {"base64": "S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s="},
        "pseudonymize": ["client_ip", "key_id", "header:x-user-id"],
        "headers": ["user-agent", "referer", "x-forwarded-for", "x-real-ip"],
        "keep_query": ["page"], "upstream_xff": "truncate", "fields": true}"#,
    r#"{"ipv4_prefix": 32, "ipv6_prefix": 128, "keep_query": ["*"],
        "headers": ["user-agent", "referer", "x-forwarded-for", "x-b"], "upstream_xff": "truncate",
        "fields": true}"#,
    r#"{"ipv4_prefix": 0, "ipv6_prefix": 0,
        "pseudonym_key": {"base64": "S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s="},
        "pseudonymize": ["client_ip"], "upstream_xff": "pseudonymize", "headers": ["referer"],
        "fields": true}"#,
    r#"{"status": false, "headers": ["user-agent", "referer"], "fields": true}"#,
];

thread_local! {
    static POLICIES: Vec<Option<(LogPolicy, u8, u8)>> = SECTIONS.iter().map(|s| {
        let input: LogInput = from_str(s).ok()?;
        let mut errs = Errors::default();
        let p = compile(&input, "log", &NoEnv, &mut errs)?;
        errs.is_empty().then_some((p, input.ipv4_prefix.unwrap_or(24) as u8, input.ipv6_prefix.unwrap_or(48) as u8))
    }).collect();
}

/// Input: a policy choice, the clock, the status, the client address, seven short strings (route,
/// policy, mode, decision, reason, tls, key id), then a request (see [`FuzzRequest`]).
pub fn log_record(data: &[u8]) {
    let mut b = Bytes(data);
    let choice = usize::from(b.u8()) % SECTIONS.len();
    let now_s = u64::from(b.u32()) * u64::from(b.u8());
    let now_nanos = b.u32();
    let status = b.u16();
    let client_ip: Option<IpAddr> = match b.u8() % 3 {
        0 => None,
        1 => Some(IpAddr::from(
            <[u8; 4]>::try_from(b.take(4)).unwrap_or([1, 2, 3, 4]),
        )),
        _ => Some(IpAddr::from(
            <[u8; 16]>::try_from(b.take(16)).unwrap_or([7; 16]),
        )),
    };
    let strings: Vec<String> = (0..8).map(|_| b.str()).collect();
    let opt = |i: usize| strings.get(i).map(String::as_str).filter(|s| !s.is_empty());
    let req = FuzzRequest::parse(b.rest());
    let slices = req.headers.slices();
    let r = RecordInput {
        now_s,
        now_nanos,
        route: opt(0),
        policy: opt(1),
        mode: opt(2).unwrap_or("enforce"),
        decision: opt(3).unwrap_or("allow"),
        reason: opt(4),
        shadow_decision: opt(4).and(opt(3)),
        shadow_reason: opt(4),
        status,
        method: &req.method,
        host: &req.authority,
        path: &req.path,
        tls: opt(5),
        client_ip,
        key_id: opt(6),
        agent: opt(7),
        headers: Headers::from_slices(&slices),
    };
    POLICIES.with(|policies| {
        let Some(Some((policy, v4, v6))) = policies.get(choice) else {
            super::sfv::panic_with("a log section of the target does not compile");
        };
        check(policy, &r, *v4, *v6);
    });
}

fn check(policy: &LogPolicy, r: &RecordInput, v4: u8, v6: u8) {
    let line = policy.record(r);
    assert!(
        !line.chars().any(|c| c.is_control() || is_bidi(c)),
        "a raw control or bidi character in {line:?}"
    );
    let value: serde_json::Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => super::sfv::panic_with(&format!("not JSON ({e}): {line:?}")),
    };
    let Some(obj) = value.as_object() else {
        super::sfv::panic_with(&format!("not an object: {line:?}"));
    };
    let logged_ip = obj.get("client_ip").and_then(|v| v.as_str());
    let expected = r.client_ip.map(|ip| truncate_ip(ip, v4, v6));
    assert_eq!(
        logged_ip,
        expected.map(|ip| ip.to_string()).as_deref(),
        "client_ip in {line:?}"
    );
    if let Some(t) = expected {
        assert_eq!(truncate_ip(t, v4, v6), t, "truncated twice");
        if let Some(model) = r.client_ip.and_then(|ip| plain_truncate(ip, v4, v6)) {
            assert_eq!(t, model, "truncation");
        }
    }
    for (name, value) in policy.fields(r) {
        assert!(
            !value.chars().any(|c| c.is_control() || is_bidi(c)),
            "a raw control or bidi character in the field {name}: {value:?}"
        );
    }
    let xff: Vec<&str> = r.headers.get_all("x-forwarded-for").collect();
    if let XffAction::Set(v) = policy.rewrite_xff(xff.iter().copied()) {
        assert!(
            !v.chars().any(|c| c.is_control()),
            "X-Forwarded-For rewritten as {v:?}"
        );
        for element in v.split(", ") {
            if let Ok(ip) = element.parse::<IpAddr>() {
                assert_eq!(
                    ip,
                    truncate_ip(ip, v4, v6),
                    "an element not truncated: {element}"
                );
            }
        }
    }
}

/// The bidi controls the record spells out.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The address with only the first `v4`/`v6` bits kept (IPv4-mapped IPv6 as IPv4); `None` for the
/// IPv6 forms that embed an IPv4 address, which keep `v4` bits of it.
fn plain_truncate(ip: IpAddr, v4: u8, v6: u8) -> Option<IpAddr> {
    Some(match ip.to_canonical() {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            IpAddr::from((u32::from(a) & mask).to_be_bytes())
        }
        IpAddr::V6(a) => {
            if Embedded::of(a).is_some() {
                return None;
            }
            let mask = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            IpAddr::from((u128::from(a) & mask).to_be_bytes())
        }
    })
}
