//! Issue 7 through a real Envoy (envoy/envoy.yaml, access log to a file): the anonymized record per request,
//! nothing raw in the access log or Envoy's own log, and the anonymized X-Forwarded-For the upstream sees in
//! each `upstream_xff` mode.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;
use support::{echo, Envoy, EnvoyOpts, Req, Response};

/// The distinctive client address: it must never appear raw anywhere Envoy writes.
const CLIENT: &str = "127.0.0.77";
const KEY: &[u8; 32] = b"e2e-log-pseudonym-key-32-bytes!!";

// Secrets the client sends; none may reach a log.
const AUTHORIZATION: &str = "Bearer AUTH-e2e-secret-7f3a";
const TOKEN: &str = "TOKEN-e2e-secret-91bc";
const EMAIL: &str = "alice.e2e%40example.com";
const SIGNATURE: &str = "sig1=:SIGe2eAAAABBBBCCCCDDDD0123456789abcdefgh=:";
const SIGNATURE_INPUT: &str = "sig1=(\"@method\");created=1700000000;keyid=\"KEYID-e2e-sig\"";
const COOKIE: &str = "session=COOKIE-e2e-secret-55aa";
const USER_ID: &str = "user-e2e-4242";
const SPOOFED: &str = "203.0.113.9";

fn log_section(upstream_xff: &str) -> String {
    format!(
        r#"{{"pseudonym_key": {{"env": "EDGEWARD_LOG_KEY"}},
            "pseudonymize": ["client_ip", "header:x-user-id"],
            "headers": ["user-agent", "x-forwarded-for"],
            "keep_query": ["page"],
            "upstream_xff": "{upstream_xff}"}}"#
    )
}

fn policy() -> String {
    let (keep, trunc, pseudo, remove) = (
        log_section("keep"),
        log_section("truncate"),
        log_section("pseudonymize"),
        log_section("remove"),
    );
    format!(
        r#"{{
  "policies": {{
    "keep": {{"log": {keep}}},
    "truncate": {{"log": {trunc}}},
    "pseudo": {{"log": {pseudo}}},
    "remove": {{"log": {remove}}},
    "denied": {{"ip": {{"allow": ["10.0.0.0/8"]}}, "log": {trunc}}},
    "shadow": {{"mode": "shadow", "ip": {{"allow": ["10.0.0.0/8"]}}, "log": {trunc}}}
  }},
  "routes": [
    {{"path_prefix": "/truncate/", "policy": "truncate"}},
    {{"path_prefix": "/pseudo/", "policy": "pseudo"}},
    {{"path_prefix": "/remove/", "policy": "remove"}},
    {{"path_prefix": "/denied/", "policy": "denied"}},
    {{"path_prefix": "/shadow/", "policy": "shadow"}},
    {{"policy": "keep"}}
  ]
}}"#
    )
}

/// `base64url(HMAC-SHA-256(KEY, label ‖ 0x00 ‖ value)[..16])`, computed here independently of the plugin.
fn pseudonym(label: &str, value: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(label.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    let tag = mac.finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..16])
}

fn ip_pseudonym(ip: &str) -> String {
    let ip: Ipv4Addr = ip.parse().unwrap();
    pseudonym("client_ip", &ip.octets())
}

/// Waits (up to 30 s) for the access log record whose path starts with `prefix`.
fn record_for(envoy: &Envoy, prefix: &str) -> Value {
    envoy.access_log_record(prefix, |v| {
        v["path"].as_str().is_some_and(|p| p.starts_with(prefix))
    })
}

/// A request carrying every kind of secret, from 127.0.0.77, with a spoofed X-Forwarded-For.
fn send(envoy: &Envoy, prefix: &str) -> Response {
    let path = format!("{prefix}x?token={TOKEN}&page=2&email={EMAIL}");
    let req = Req::get(&path)
        .authority("api.example.com")
        .header("authorization", AUTHORIZATION)
        .header("signature", SIGNATURE)
        .header("signature-input", SIGNATURE_INPUT)
        .header("cookie", COOKIE)
        .header("x-user-id", USER_ID)
        .header("user-agent", "e2e-agent/1.0")
        .header("x-forwarded-for", SPOOFED);
    envoy.send_from(CLIENT.parse().unwrap(), &req)
}

#[test]
fn records_are_anonymized_and_the_upstream_gets_the_rewritten_xff() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    let envoy = Envoy::start(
        &EnvoyOpts::new(upstream.addr())
            .policy(policy())
            .env("EDGEWARD_LOG_KEY", key_b64),
    )
    .unwrap_or_else(|log| panic!("{log}"));
    let client_pseudonym = ip_pseudonym(CLIENT);

    // upstream_xff: keep — X-Forwarded-For as Envoy built it (spoofed entry, then the peer).
    let keep = send(&envoy, "/keep/");
    assert_eq!(keep.status, 200, "{}", keep.text());
    let seen = keep.echo();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        [format!("{SPOOFED},{CLIENT}")]
    );
    // Envoy names the peer in X-Envoy-External-Address too: kept here, removed in every other mode.
    assert_eq!(seen.header("x-envoy-external-address"), Some(CLIENT));
    // The upstream still gets the request's own headers (logging redacts, it does not strip).
    assert_eq!(seen.header("authorization"), Some(AUTHORIZATION));

    // truncate — every element truncated; X-Envoy-External-Address removed.
    let trunc = send(&envoy, "/truncate/");
    assert_eq!(trunc.status, 200, "{}", trunc.text());
    let seen = trunc.echo();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["203.0.113.0, 127.0.0.0"]
    );
    assert_eq!(seen.header("x-envoy-external-address"), None);

    // pseudonymize — every element replaced by its client_ip pseudonym (the peer's equals the record's).
    let pseudo = send(&envoy, "/pseudo/");
    assert_eq!(pseudo.status, 200, "{}", pseudo.text());
    let seen = pseudo.echo();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        [format!("{}, {client_pseudonym}", ip_pseudonym(SPOOFED))]
    );
    assert_eq!(seen.header("x-envoy-external-address"), None);

    // remove — no X-Forwarded-For at all.
    let removed = send(&envoy, "/remove/");
    assert_eq!(removed.status, 200, "{}", removed.text());
    let seen = removed.echo();
    assert!(
        seen.header("x-forwarded-for").is_none(),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-envoy-external-address"), None);

    // Denied (enforce) and shadow requests are logged with their reason.
    let denied = send(&envoy, "/denied/");
    assert_eq!(denied.status, 403);
    let shadow = send(&envoy, "/shadow/");
    assert_eq!(shadow.status, 200, "shadow mode lets the request pass");
    assert_eq!(shadow.echo().path.split('?').next(), Some("/shadow/x"));

    let denied = record_for(&envoy, "/denied/");
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(denied["reason"], "ip_denied", "{denied}");
    assert_eq!(denied["status"], 403, "{denied}");
    assert_eq!(denied["policy"], "denied", "{denied}");
    let shadow = record_for(&envoy, "/shadow/");
    assert_eq!(shadow["mode"], "shadow", "{shadow}");
    assert_eq!(shadow["decision"], "allow", "{shadow}");
    assert_eq!(shadow["shadow_decision"], "deny", "{shadow}");
    assert_eq!(shadow["shadow_reason"], "ip_denied", "{shadow}");
    assert_eq!(shadow["status"], 200, "{shadow}");

    // Every record: truncated address, the keyed pseudonym, redacted query, allow-listed headers only.
    let records: Vec<Value> = envoy
        .access_log_lines(6)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), 6, "{records:?}");
    for r in &records {
        assert_eq!(r["client_ip"], "127.0.0.0", "{r}");
        assert_eq!(r["client"], client_pseudonym.as_str(), "{r}");
        assert_eq!(
            r["header:x-user-id"],
            pseudonym("header:x-user-id", USER_ID.as_bytes()),
            "{r}"
        );
        assert_eq!(r["host"], "api.example.com", "{r}");
        let path = r["path"].as_str().unwrap();
        assert!(
            path.ends_with("x?token=REDACTED&page=2&email=REDACTED"),
            "{r}"
        );
        let headers = r["headers"].as_object().unwrap();
        assert_eq!(headers["user-agent"], "e2e-agent/1.0", "{r}");
        // Even the allow-listed X-Forwarded-For is logged truncated, spoofed entry included.
        assert_eq!(headers["x-forwarded-for"], "203.0.113.0, 127.0.0.0", "{r}");
        assert_eq!(headers.len(), 2, "{r}");
        assert!(r["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
    }

    // Nothing raw anywhere in the access log file, nor in Envoy's own log (info, wasm at debug).
    let access_log = std::fs::read_to_string(&envoy.access_log_path).unwrap();
    let envoy_log = envoy.log();
    let secrets = [
        CLIENT,
        SPOOFED,
        AUTHORIZATION,
        "AUTH-e2e-secret",
        TOKEN,
        EMAIL,
        "alice",
        SIGNATURE,
        "SIGe2eAAAA",
        "KEYID-e2e-sig",
        COOKIE,
        "COOKIE-e2e-secret",
        USER_ID,
    ];
    for s in secrets {
        assert!(
            !access_log.contains(s),
            "access log holds {s:?}:\n{access_log}"
        );
        assert!(
            !envoy_log.contains(s),
            "Envoy's log holds {s:?}:\n{envoy_log}"
        );
    }
    // The address digits without dots are not hiding in the records either (e.g. as a number).
    assert!(!access_log.contains("2130706509"), "{access_log}");
    assert!(
        envoy_log.contains("edgeward: loaded"),
        "the plugin's own log lines are in the checked log:\n{envoy_log}"
    );
}

/// `log.status: false` (the status is then not read from the response: one host call fewer) through
/// Envoy: records of that policy have no `status`, allowed or denied; the default keeps it.
#[test]
fn the_status_is_left_out_only_where_the_log_section_says() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let doc = r#"{
      "policies": {
        "with": {},
        "without": {"log": {"status": false}},
        "denied": {"ip": {"allow": ["10.0.0.0/8"]}, "log": {"status": false}}
      },
      "routes": [
        {"path_prefix": "/without/", "policy": "without"},
        {"path_prefix": "/denied/", "policy": "denied"},
        {"policy": "with"}
      ]
    }"#;
    let envoy = Envoy::start(&EnvoyOpts::new(upstream.addr()).policy(doc))
        .unwrap_or_else(|log| panic!("{log}"));
    for (prefix, status) in [("/with/", 200), ("/without/", 200), ("/denied/", 403)] {
        let req = Req::get(&format!("{prefix}x")).authority("api.example.com");
        let res = envoy.send_from(CLIENT.parse().unwrap(), &req);
        assert_eq!(res.status, status, "{prefix}: {}", res.text());
    }
    let with = record_for(&envoy, "/with/");
    assert_eq!(with["status"], 200, "{with}");
    let without = record_for(&envoy, "/without/");
    assert_eq!(without["decision"], "allow", "{without}");
    assert!(without.get("status").is_none(), "{without}");
    let denied = record_for(&envoy, "/denied/");
    assert_eq!(denied["reason"], "ip_denied", "{denied}");
    assert!(denied.get("status").is_none(), "{denied}");
}
