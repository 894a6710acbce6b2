//! The foundation through a real Envoy (>= 1.36, V8) running the built plugin: route selection with
//! three named routes, fail-closed loading of bad documents, shadow mode, and `edgeward eval`
//! reproducing what Envoy did on the same request.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use support::{echo_server, start, Client, Envoy, EnvoyOpts, Req, Tls, Version};

const KEY_B64: &str = "ZWRnZXdhcmQtdGVzdC1rZXktZWRnZXdhcmQtdGVzdC1rZXk=";

/// A document whose routes exercise every selection rule; the access log tells which policy ran.
const ROUTES_DOC: &str = r#"{
  "policies": {
    "named":   { "https": { "action": "reject" } },
    "exact":   { "ip": { "deny": ["127.0.0.0/8"] } },
    "wild":    { "https": { "action": "redirect" } },
    "shadowy": { "mode": "shadow", "ip": { "allow": ["10.0.0.0/8"] } },
    "prefix":  {}
  },
  "routes": [
    { "route": "partner-api", "policy": "named" },
    { "host": "exact.test", "path_prefix": "/admin/", "policy": "exact" },
    { "host": "*.wild.test", "policy": "wild" },
    { "host": "open.test", "policy": null },
    { "host": "shadow.test", "policy": "shadowy" },
    { "path_prefix": "/pfx/", "policy": "prefix" }
  ]
}"#;

fn last_record(envoy: &Envoy, n: usize) -> Value {
    let lines = envoy.access_log_lines(n);
    let line = lines
        .get(n - 1)
        .unwrap_or_else(|| panic!("no access log line {n}: {lines:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn route_selection_through_envoy_over_h1_h2_and_tls() {
    let server = echo_server();
    let envoy = start(&EnvoyOpts::new(server.addr()).policy(ROUTES_DOC));
    // (client, path, authority, status, policy, reason)
    let cases: &[(&str, &str, &str, u16, Option<&str>, Option<&str>)] = &[
        // Envoy's route name "partner-api" (prefix /partner/) selects "named", whatever the host.
        (
            "h1",
            "/partner/x",
            "exact.test",
            403,
            Some("named"),
            Some("https_required"),
        ),
        // exact host and path prefix
        (
            "h2c",
            "/admin/users",
            "exact.test",
            403,
            Some("exact"),
            Some("ip_denied"),
        ),
        // same host, prefix does not match: nothing else matches → fail closed
        ("h1", "/other", "exact.test", 403, None, Some("no_route")),
        // wildcard host, any depth, never the apex
        (
            "h1",
            "/w?q=1",
            "a.b.wild.test",
            301,
            Some("wild"),
            Some("https_required"),
        ),
        ("h2c", "/w", "wild.test", 403, None, Some("no_route")),
        // explicit opt-out
        ("tls", "/anything", "open.test", 200, None, None),
        // order: /pfx/ on the wildcard host goes to "wild" (earlier entry), elsewhere to "prefix"
        (
            "h1",
            "/pfx/a",
            "x.wild.test",
            301,
            Some("wild"),
            Some("https_required"),
        ),
        ("tls", "/pfx/a", "elsewhere.test", 200, Some("prefix"), None),
    ];
    for (i, (client, path, authority, status, policy, reason)) in cases.iter().enumerate() {
        let (c, addr) = match *client {
            "h1" => (Client::h1(), envoy.http_addr()),
            "h2c" => (Client::h2c(), envoy.http_addr()),
            _ => (
                Client::h1().tls(Tls::V1_3).version(Version::Http2),
                envoy.https_addr(),
            ),
        };
        let resp = c
            .send_blocking(addr, &Req::get(path).authority(authority))
            .unwrap();
        assert_eq!(
            resp.status,
            *status,
            "{client} {authority}{path}: {}",
            resp.text()
        );
        let rec = last_record(&envoy, i + 1);
        assert_eq!(rec["policy"].as_str(), *policy, "{authority}{path}: {rec}");
        assert_eq!(rec["reason"].as_str(), *reason, "{authority}{path}: {rec}");
        assert_eq!(rec["status"], *status, "{rec}");
        if *status == 200 {
            assert_eq!(resp.echo().path, *path, "reached the upstream");
        }
    }
    // Exactly the allowed requests reached the upstream: the no_route and denied ones did not.
    let stats = envoy.stats("cluster.upstream.upstream_rq_total").unwrap();
    assert!(stats.contains("upstream_rq_total: 2"), "{stats}");
}

#[test]
fn shadow_mode_lets_a_would_be_denial_through_and_logs_it() {
    let server = echo_server();
    let envoy = start(&EnvoyOpts::new(server.addr()).policy(ROUTES_DOC));
    let resp = Client::h1()
        .send_blocking(envoy.http_addr(), &Req::get("/s").authority("shadow.test"))
        .unwrap();
    assert_eq!(resp.status, 200, "shadow mode must not deny");
    assert_eq!(resp.echo().path, "/s");
    let rec = last_record(&envoy, 1);
    assert_eq!(rec["mode"], "shadow");
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["shadow_decision"], "deny");
    assert_eq!(rec["shadow_reason"], "ip_denied");
    let name = "wasmcustom.edgeward.shadowy.shadow_denied.ip_denied";
    assert_eq!(envoy.stat_eventually(name, Some(1)), Some(1));
}

fn edgeward(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeward"));
    cmd.args(args);
    for var in ["EDGEWARD_LOG_KEY", "PARTNER_A_KEY", "PARTNER_A_KEY_NEXT"] {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_documents_are_refused_by_edgeward_check_and_by_envoy() {
    let server = echo_server();
    let dir = support::TempDir::new("bad-docs").unwrap();
    // (name, document, the JSON path the error must name, text the error must contain)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "malformed",
            "{\"policies\": {\"p\": {}}, \"routes\": [",
            "routes[0]",
            "unexpected end of the document",
        ),
        (
            "unknown-field",
            r#"{"policies": {"p": {"https": {"acton": "reject"}}}, "routes": [{"policy": "p"}]}"#,
            "policies.p.https.acton",
            "unknown field",
        ),
        (
            "bad-cidr",
            r#"{"policies": {"p": {"ip": {"allow": ["10.0.0.1", "010.0.0.0/8"]}}}, "routes": [{"policy": "p"}]}"#,
            "policies.p.ip.allow[1]",
            "leading zero",
        ),
        (
            "missing-env",
            r#"{"policies": {"p": {"log": {"pseudonymize": ["client_ip"], "pseudonym_key": {"env": "EDGEWARD_LOG_KEY"}}}}, "routes": [{"policy": "p"}]}"#,
            "policies.p.log.pseudonym_key",
            "EDGEWARD_LOG_KEY",
        ),
        (
            "unknown-policy",
            r#"{"policies": {"p": {}}, "routes": [{"policy": "q"}]}"#,
            "routes[0].policy",
            "unknown policy",
        ),
    ];
    for (name, doc, path, text) in cases {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, doc).unwrap();
        let (code, out, _) = edgeward(&["check", file.to_str().unwrap()], &[]);
        assert_eq!(code, 1, "{name}: {out}");
        let line = out
            .lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("{name}: no error naming {path}: {out}"));
        assert!(line.starts_with(file.to_str().unwrap()), "{name}: {line}");
        assert!(line.contains(text), "{name}: {line}");

        let err = match Envoy::start(&EnvoyOpts::new(server.addr()).policy(*doc).concurrency(1)) {
            Ok(_) => panic!("{name}: Envoy accepted an invalid document"),
            Err(log) => log,
        };
        assert!(
            err.contains("invalid policy document") || err.contains("configuration is not"),
            "{name}: {err}"
        );
        assert!(
            err.contains(path),
            "{name}: Envoy's log does not name {path}:\n{err}"
        );
    }
    // And a valid document passes both.
    let good = dir.path().join("good.json");
    std::fs::write(&good, ROUTES_DOC).unwrap();
    assert_eq!(edgeward(&["check", good.to_str().unwrap()], &[]).0, 0);
}

#[test]
fn the_reference_config_runs_the_demo_policy() {
    let reference: Value =
        serde_json::from_str(&support::reference_policy_json().unwrap()).unwrap();
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_root().join("policies/demo.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        reference, demo,
        "envoy/envoy.yaml must embed policies/demo.json: run scripts/sync-demo.sh"
    );
    let compose =
        std::fs::read_to_string(support::repo_root().join("envoy/docker-compose.yml")).unwrap();
    assert!(
        compose.contains("envoy/envoy.yaml"),
        "docker-compose.yml must run envoy/envoy.yaml"
    );

    let server = echo_server();
    let envoy = start(
        &EnvoyOpts::new(server.addr())
            .env("EDGEWARD_LOG_KEY", KEY_B64)
            .env("PARTNER_A_KEY", KEY_B64)
            .env("PARTNER_A_KEY_NEXT", KEY_B64),
    );
    // Three named Envoy routes, three policies.
    let h1 = Client::h1();
    let r = h1
        .send_blocking(
            envoy.http_addr(),
            &Req::get("/docs?x=1").authority("localhost"),
        )
        .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://localhost:10443/docs?x=1")
    );
    let r = h1
        .send_blocking(
            envoy.http_addr(),
            &Req::post("/partner/orders", "{}").authority("localhost"),
        )
        .unwrap();
    assert_eq!(r.status, 426, "partner rejects plain HTTP");
    let tls = Client::h1().tls(Tls::V1_3);
    let r = tls
        .send_blocking(
            envoy.https_addr(),
            &Req::get("/admin/").authority("localhost"),
        )
        .unwrap();
    assert_eq!(r.status, 200, "operators (loopback) reach admin over HTTPS");
    assert_eq!(
        r.header_all("strict-transport-security").len(),
        0,
        "admin sets no HSTS"
    );
    let r = tls
        .send_blocking(
            envoy.https_addr(),
            &Req::get("/partner/orders").authority("localhost"),
        )
        .unwrap();
    assert_eq!(r.status, 401, "unsigned partner request");
    assert!(r.header("accept-signature").is_some());
    let r = h1
        .send_blocking(
            envoy.http_addr(),
            &Req::get("/health").authority("localhost"),
        )
        .unwrap();
    assert_eq!(r.status, 200, "policy null: no checks");
    let records: Vec<Value> = envoy
        .access_log_lines(5)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let routes: Vec<&str> = records
        .iter()
        .map(|r| r["route"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        routes,
        ["public", "partner-api", "admin", "partner-api", "public"]
    );
    for rec in &records {
        assert_eq!(rec["client_ip"], "127.0.0.0", "{rec}");
    }
}

/// Sends raw HTTP/1.1 bytes to Envoy and runs `edgeward eval` on the very same bytes.
fn envoy_and_eval(
    envoy: &Envoy,
    doc_file: &str,
    raw: &str,
    route: &str,
    bind: Ipv4Addr,
    tls: bool,
) -> (support::Response, Value) {
    let client = if tls {
        Client::h1().tls(Tls::V1_3)
    } else {
        Client::h1()
    }
    .bind(IpAddr::V4(bind));
    let addr = if tls {
        envoy.https_addr()
    } else {
        envoy.http_addr()
    };
    let resp = client.send_raw_blocking(addr, raw.as_bytes()).unwrap();
    let dir = support::TempDir::new("eval").unwrap();
    let req_file = dir.path().join("req.http");
    std::fs::write(&req_file, raw).unwrap();
    let ip = bind.to_string();
    let mut args = vec![
        "eval",
        doc_file,
        "--request",
        req_file.to_str().unwrap(),
        "--route",
        route,
        "--client-ip",
        &ip,
    ];
    if tls {
        args.extend(["--scheme", "https", "--tls-version", "1.3"]);
    }
    let (code, out, err) = edgeward(&args, &[]);
    assert_eq!(code, 0, "{err}");
    (resp, serde_json::from_str(&out).unwrap())
}

#[test]
fn eval_reproduces_what_envoy_did() {
    const DOC: &str = r#"{
      "policies": {
        "web":   { "https": { "action": "redirect", "hsts": { "max_age_s": 600 } } },
        "ops":   { "ip": { "allow": ["127.0.0.2"], "deny_status": 404 } },
        "limited": { "rate_limits": [ { "name": "tiny", "key": "route", "limit": 1, "window_s": 3600 } ] }
      },
      "routes": [
        { "route": "admin", "policy": "ops" },
        { "route": "partner-api", "policy": "limited" },
        { "route": "public", "policy": "web" }
      ]
    }"#;
    let server = echo_server();
    let envoy = start(&EnvoyOpts::new(server.addr()).policy(DOC));
    let dir = support::TempDir::new("eval-doc").unwrap();
    let doc_file = dir.path().join("doc.json");
    std::fs::write(&doc_file, DOC).unwrap();
    let doc_file = doc_file.to_str().unwrap();
    let cases: &[(&str, &str, Ipv4Addr, bool)] = &[
        (
            "GET /a/b?c=d HTTP/1.1\r\nHost: shop.test\r\n\r\n",
            "public",
            Ipv4Addr::new(127, 0, 0, 2),
            false,
        ),
        (
            "POST /a HTTP/1.1\r\nHost: shop.test:8080\r\nContent-Length: 2\r\n\r\nhi",
            "public",
            Ipv4Addr::new(127, 0, 0, 2),
            false,
        ),
        (
            "GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\n",
            "public",
            Ipv4Addr::new(127, 0, 0, 2),
            true,
        ),
        (
            "GET /admin/x HTTP/1.1\r\nHost: ops.test\r\nX-Forwarded-For: 127.0.0.2\r\n\r\n",
            "admin",
            Ipv4Addr::new(127, 0, 0, 3),
            false,
        ),
        (
            "GET /admin/x HTTP/1.1\r\nHost: ops.test\r\n\r\n",
            "admin",
            Ipv4Addr::new(127, 0, 0, 2),
            false,
        ),
        (
            "GET /partner/x HTTP/1.1\r\nHost: p.test\r\n\r\n",
            "partner-api",
            Ipv4Addr::new(127, 0, 0, 2),
            false,
        ),
    ];
    for (i, (raw, route, bind, tls)) in cases.iter().enumerate() {
        let (resp, eval) = envoy_and_eval(&envoy, doc_file, raw, route, *bind, *tls);
        let line = raw.lines().next().unwrap();
        assert_eq!(
            u64::from(resp.status),
            eval["status"].as_u64().unwrap(),
            "{line}: {eval}"
        );
        let rec = last_record(&envoy, i + 1);
        assert_eq!(rec["decision"], eval["decision"], "{line}");
        assert_eq!(rec["reason"], eval["reason"], "{line}");
        assert_eq!(rec["policy"], eval["policy"], "{line}");
        assert_eq!(rec["client_ip"], eval["log"]["client_ip"], "{line}");
        for h in [
            "location",
            "strict-transport-security",
            "ratelimit",
            "ratelimit-policy",
            "retry-after",
        ] {
            assert_eq!(
                resp.header(h),
                eval["response_headers"][h].as_str(),
                "{line}: header {h}"
            );
        }
    }
    // The route-wide limit of 1 is per Envoy process: the second request there is limited by Envoy,
    // while eval (a fresh process each time) allows it — eval evaluates one request in isolation.
    let raw = "GET /partner/x HTTP/1.1\r\nHost: p.test\r\n\r\n";
    let (resp, eval) = envoy_and_eval(
        &envoy,
        doc_file,
        raw,
        "partner-api",
        Ipv4Addr::new(127, 0, 0, 2),
        false,
    );
    assert_eq!(resp.status, 429);
    assert_eq!(eval["status"], 200);
}

#[test]
fn header_values_that_are_not_utf8_do_not_trap_the_vm() {
    // Envoy's HTTP/1 codec accepts obs-text (bytes 0x80-0xFF) in header values. The SDK's header map
    // decoder unwraps UTF-8 and would trap the VM on such a request, failing every later request on
    // that worker; the adapter decodes the map itself (invalid bytes become U+FFFD).
    let server = echo_server();
    let envoy = start(
        &EnvoyOpts::new(server.addr())
            .policy(ROUTES_DOC)
            .concurrency(1),
    );
    let client = Client::h1();
    let raw =
        b"GET /pfx/a HTTP/1.1\r\nHost: p.test\r\nX-Odd: caf\xe9\xff\r\nConnection: close\r\n\r\n";
    let resp = client.send_raw_blocking(envoy.http_addr(), raw).unwrap();
    assert_eq!(resp.status, 200, "{}", envoy.log());
    // The value reaches the upstream byte for byte (edgeward does not rewrite headers it only read).
    assert!(resp.text().contains("x-odd"), "{}", resp.text());
    // The VM is still alive: later requests on the same (single) worker are served.
    for _ in 0..3 {
        let r = client
            .send_blocking(envoy.http_addr(), &Req::get("/pfx/b").authority("p.test"))
            .unwrap();
        assert_eq!(r.status, 200, "{}", envoy.log());
    }
    assert!(!envoy.log().contains("panic"), "{}", envoy.log());
}
