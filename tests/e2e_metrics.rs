//! Issue 8 through a real Envoy (envoy/envoy.yaml, its `stats_config` included): after a scripted mix of
//! allowed, redirected, IP-denied, signature-denied, rate-limited, shadow and document-wide outcomes, the
//! admin endpoint shows exactly those counts per policy and reason, in `/stats` and, tagged, in
//! `/stats/prometheus`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::{echo, Client, Envoy, EnvoyOpts, Req, TempDir, Tls};

const SECRET: &[u8; 32] = b"e2e-metrics-hmac-secret-32-bytes";

fn policy() -> String {
    r#"{
  "policies": {
    "web": {"https": {}},
    "office": {"ip": {"allow": ["10.0.0.0/8"]}},
    "api": {"signature": {"keys": [{"id": "partner-a", "alg": "hmac-sha256", "secret": {"env": "PARTNER_A_KEY"}}]}},
    "limited": {"rate_limits": [{"name": "per_route", "key": "route", "limit": 2, "window_s": 3600}]},
    "watch": {"mode": "shadow", "ip": {"allow": ["10.0.0.0/8"]}},
    "denied": {}
  },
  "routes": [
    {"path_prefix": "/web/", "policy": "web"},
    {"path_prefix": "/office/", "policy": "office"},
    {"path_prefix": "/api/", "policy": "api"},
    {"path_prefix": "/limited/", "policy": "limited"},
    {"path_prefix": "/watch/", "policy": "watch"},
    {"path_prefix": "/named-denied/", "policy": "denied"},
    {"path_prefix": "/open/", "policy": null}
  ]
}"#
    .to_string()
}

/// A raw request signed by `edgeward sign` with the policy's key.
fn signed_request(dir: &TempDir, path: &str) -> Vec<u8> {
    let file = dir.path().join("req.http");
    std::fs::write(
        &file,
        format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .args(["sign", "--key-id", "partner-a", "--secret-base64"])
        .arg(base64::engine::general_purpose::STANDARD.encode(SECRET))
        .arg("--request")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every `wasmcustom.edgeward.*` counter from `/stats`, by name.
fn edgeward_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .stats(r"^wasmcustom\.edgeward\.")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(": ")?;
            Some((n.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `/stats/prometheus` samples whose metric name starts with `edgeward_`: (name, sorted labels) → value.
fn prometheus(envoy: &Envoy) -> (BTreeMap<(String, String), u64>, String) {
    let text = envoy.admin_get("/stats/prometheus").unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("edgeward_")) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let mut labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                (n.to_string(), labels.join(","))
            }
            None => (series.to_string(), String::new()),
        };
        let prev = out.insert((name, labels), value.parse().unwrap());
        assert!(prev.is_none(), "duplicate series {line}");
    }
    (out, text)
}

/// What the stats_config in envoy.yaml should make of a dotted counter name.
fn expected_series(dotted: &str) -> (String, String) {
    let rest = dotted.strip_prefix("wasmcustom.edgeward.").unwrap();
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.as_slice() {
        [policy, d @ ("allowed" | "redirected" | "shadow_redirected")] => {
            (format!("edgeward_{d}"), format!("policy=\"{policy}\""))
        }
        [policy, d @ ("denied" | "shadow_denied"), reason] => (
            format!("edgeward_{d}"),
            format!("policy=\"{policy}\",reason=\"{reason}\""),
        ),
        _ => (
            format!("edgeward_{}", rest.replace('.', "_")),
            String::new(),
        ),
    }
}

#[test]
fn counters_show_exactly_the_scripted_outcomes() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let envoy = Envoy::start(&EnvoyOpts::new(upstream.addr()).policy(policy()).env(
        "PARTNER_A_KEY",
        base64::engine::general_purpose::STANDARD.encode(SECRET),
    ))
    .unwrap_or_else(|log| panic!("{log}"));
    let dir = TempDir::new("e2e-metrics").unwrap();
    let plain = Client::h1().bind(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let tls = Client::h2c().tls(Tls::V1_3);
    let get = |client: &Client, addr: SocketAddr, path: &str| -> u16 {
        client.send_blocking(addr, &Req::get(path)).unwrap().status
    };
    let (http, https) = (envoy.http_addr(), envoy.https_addr());

    // Before any request every counter exists and is zero (defined at configure time).
    let before = edgeward_stats(&envoy);
    assert!(
        before.contains_key("wasmcustom.edgeward.office.denied.ip_denied"),
        "{before:?}"
    );
    assert!(before.values().all(|v| *v == 0), "{before:?}");

    // web: 3 allowed over TLS, 2 redirected over plain HTTP.
    for i in 0..3 {
        assert_eq!(get(&tls, https, &format!("/web/{i}")), 200);
    }
    for i in 0..2 {
        assert_eq!(get(&plain, http, &format!("/web/{i}")), 301);
    }
    // office: 4 IP-denied.
    for i in 0..4 {
        assert_eq!(get(&plain, http, &format!("/office/{i}")), 403);
    }
    // api: 1 signed (allowed), 2 unsigned, 1 with a tampered signature.
    let signed = signed_request(&dir, "/api/ok");
    let resp = plain.send_raw_blocking(http, &signed).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    for i in 0..2 {
        assert_eq!(get(&plain, http, &format!("/api/{i}")), 401);
    }
    let text = String::from_utf8(signed_request(&dir, "/api/tampered")).unwrap();
    let tampered = text.replacen("Signature: sig1=:", "Signature: sig1=:AAAA", 1);
    assert_ne!(tampered, text);
    let resp = plain.send_raw_blocking(http, tampered.as_bytes()).unwrap();
    assert_eq!(resp.status, 401, "{}", resp.text());
    // limited: 2 allowed, then 3 rate-limited (one bucket for the route, shared by both workers).
    let statuses: Vec<u16> = (0..5)
        .map(|i| get(&plain, http, &format!("/limited/{i}")))
        .collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    // watch (shadow): 2 would-be denials, both forwarded.
    for i in 0..2 {
        assert_eq!(get(&plain, http, &format!("/watch/{i}")), 200);
    }
    // A policy named like a decision still gets its own label.
    assert_eq!(get(&plain, http, "/named-denied/x"), 200);
    // Document-wide: an opted-out route, a request no route matches, a bad Host.
    assert_eq!(get(&plain, http, "/open/x"), 200);
    assert_eq!(get(&plain, http, "/nowhere"), 403);
    let bad = plain
        .send_raw_blocking(http, b"GET /web/bad HTTP/1.1\r\nHost: a@b\r\n\r\n")
        .unwrap();
    assert_eq!(bad.status, 400);

    let want: BTreeMap<&str, u64> = [
        ("wasmcustom.edgeward.web.allowed", 3),
        ("wasmcustom.edgeward.web.redirected", 2),
        ("wasmcustom.edgeward.office.denied.ip_denied", 4),
        ("wasmcustom.edgeward.api.allowed", 1),
        ("wasmcustom.edgeward.api.denied.signature_missing", 2),
        ("wasmcustom.edgeward.api.denied.signature_invalid", 1),
        ("wasmcustom.edgeward.limited.allowed", 2),
        ("wasmcustom.edgeward.limited.denied.rate_limited", 3),
        ("wasmcustom.edgeward.watch.shadow_denied.ip_denied", 2),
        ("wasmcustom.edgeward.denied.allowed", 1),
        ("wasmcustom.edgeward.unchecked", 1),
        ("wasmcustom.edgeward.no_route", 1),
        ("wasmcustom.edgeward.bad_host", 1),
    ]
    .into_iter()
    .collect();
    let total: u64 = want.values().sum();

    // Each worker adds its counts to Envoy's counters once a second: wait for the sum (generous bound).
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let s = edgeward_stats(&envoy);
        if s.values().sum::<u64>() >= total || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (name, value) in &stats {
        let expected = want.get(name.as_str()).copied().unwrap_or(0);
        assert_eq!(*value, expected, "{name}\n{stats:#?}");
    }
    for name in want.keys() {
        assert!(stats.contains_key(*name), "{name} missing from /stats");
    }
    // Every policy × decision × reason is there (6 policies × (3 + 2 × 20 reasons)) plus 6 document-wide.
    assert_eq!(
        stats.len(),
        6 * (3 + 2 * edgeward::decision::Reason::ALL.len()) + 6,
        "{stats:#?}"
    );

    // Prometheus: the same counts, tagged by policy and reason, one series per /stats counter.
    let (prom, text) = prometheus(&envoy);
    assert_eq!(prom.len(), stats.len(), "{text}");
    for (name, value) in &stats {
        let series = expected_series(name);
        assert_eq!(
            prom.get(&series),
            Some(value),
            "{name} -> {series:?}\n{text}"
        );
    }
    // The exact lines (label order as Envoy prints it).
    for line in [
        "edgeward_denied{policy=\"office\",reason=\"ip_denied\"} 4",
        "edgeward_denied{policy=\"limited\",reason=\"rate_limited\"} 3",
        "edgeward_denied{policy=\"api\",reason=\"signature_missing\"} 2",
        "edgeward_shadow_denied{policy=\"watch\",reason=\"ip_denied\"} 2",
        "edgeward_allowed{policy=\"web\"} 3",
        "edgeward_redirected{policy=\"web\"} 2",
        "edgeward_allowed{policy=\"denied\"} 1",
        // Envoy prints an empty label set for untagged counters.
        "edgeward_no_route{} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(
        text.lines().any(|l| l == "# TYPE edgeward_denied counter"),
        "{text}"
    );
}
