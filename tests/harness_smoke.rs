//! The e2e harness itself: echo upstream, a real Envoy on envoy/envoy.yaml (wasm filter removed,
//! the plugin is tested elsewhere), every client mode, and clean teardown.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use support::{echo_server, Client, Envoy, EnvoyOpts, Req, Tls, Version};

fn envoy_without_plugin(upstream: SocketAddr) -> Envoy {
    Envoy::start(&EnvoyOpts::new(upstream).without_plugin()).unwrap_or_else(|log| panic!("{log}"))
}

/// Sends raw bytes straight to the echo server and reads until it closes.
fn echo_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn echo_reports_method_path_headers_in_order_and_body() {
    let server = echo_server();
    let resp = Client::h1()
        .send_raw_blocking(
            server.addr(),
            b"POST /a/b?q=1 HTTP/1.1\r\nHost: x\r\nX-Dup: one\r\nX-Other: 2\r\nx-dup: two\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap();
    assert_eq!(resp.status, 200);
    let seen = resp.echo();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/a/b?q=1");
    assert_eq!(seen.header_all("x-dup"), ["one", "two"]);
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["host", "x-dup", "x-other", "x-dup", "content-length"]
    );
    assert_eq!(seen.body, "hello");
    assert_eq!(seen.body_len, 5);
}

#[test]
fn echo_decodes_chunked_bodies_and_keeps_connections_alive() {
    let server = echo_server();
    let out = echo_raw(
        server.addr(),
        b"POST /one HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains(r#""body":"abcde""#), "{out}");
    assert!(out.contains(r#""path":"/two""#), "{out}");
}

#[test]
fn echo_replies_with_the_status_named_in_the_path() {
    let server = echo_server();
    let resp = Client::h1()
        .send_blocking(server.addr(), &Req::get("/__status/503/x"))
        .unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.echo().path, "/__status/503/x");
    let ok = Client::h1()
        .send_blocking(server.addr(), &Req::get("/__status/abc"))
        .unwrap();
    assert_eq!(ok.status, 200);
}

#[test]
fn echo_stops_on_drop() {
    let server = echo_server();
    let addr = server.addr();
    // An idle keep-alive connection must not keep the server alive.
    let mut idle = TcpStream::connect(addr).unwrap();
    drop(server);
    assert!(TcpStream::connect(addr).is_err(), "listener still accepts");
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "idle connection not closed"
    );
}

#[test]
fn requests_reach_the_upstream_over_every_client_mode() {
    let server = echo_server();
    let envoy = envoy_without_plugin(server.addr());
    let cases = [
        ("h1", Client::h1(), envoy.http_addr()),
        ("h2c", Client::h2c(), envoy.http_addr()),
        ("tls1.2 h1", Client::h1().tls(Tls::V1_2), envoy.https_addr()),
        (
            "tls1.2 h2",
            Client::h2c().tls(Tls::V1_2),
            envoy.https_addr(),
        ),
        ("tls1.3 h1", Client::h1().tls(Tls::V1_3), envoy.https_addr()),
        (
            "tls1.3 h2",
            Client::h2c().tls(Tls::V1_3),
            envoy.https_addr(),
        ),
    ];
    for (name, client, addr) in &cases {
        let (name, addr) = (*name, *addr);
        let req = Req::post("/partner/x?y=1", "payload")
            .authority("api.example.com")
            .header("x-test", name);
        let resp = client
            .send_blocking(addr, &req)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resp.status, 200, "{name}: {}", resp.text());
        let seen = resp.echo();
        assert_eq!(seen.method, "POST", "{name}");
        assert_eq!(seen.path, "/partner/x?y=1", "{name}");
        assert_eq!(seen.header("x-test"), Some(name), "{name}");
        assert_eq!(seen.header("host"), Some("api.example.com"), "{name}");
        assert_eq!(seen.body, "payload", "{name}");
        // use_remote_address: Envoy sets the scheme it really served.
        let proto = if client.tls.is_some() {
            "https"
        } else {
            "http"
        };
        assert_eq!(seen.header("x-forwarded-proto"), Some(proto), "{name}");
    }
    // Every request produced one access log line; without the plugin the record is "-".
    let lines = envoy.access_log_lines(cases.len());
    assert_eq!(lines.len(), cases.len(), "{lines:?}");
    assert!(lines.iter().all(|l| l == "-"), "{lines:?}");
}

#[test]
fn envoy_uses_the_tcp_peer_not_a_client_supplied_xff() {
    let server = echo_server();
    let envoy = envoy_without_plugin(server.addr());
    let bound = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 77));
    let resp = Client::h1()
        .bind(bound)
        .send_blocking(
            envoy.http_addr(),
            &Req::get("/").header("x-forwarded-for", "203.0.113.9"),
        )
        .unwrap();
    let seen = resp.echo();
    // Envoy appends the real peer (no port) to what the client sent.
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9,127.0.0.77")
    );

    let resp = Client::h2c()
        .tls(Tls::V1_3)
        .bind(bound)
        .send_blocking(envoy.https_addr(), &Req::get("/"))
        .unwrap();
    assert_eq!(resp.echo().header("x-forwarded-for"), Some("127.0.0.77"));
}

#[test]
fn ipv6_clients_reach_both_listeners() {
    if !support::ipv6_available() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let server = echo_server();
    let envoy = envoy_without_plugin(server.addr());
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let plain = Client::h1()
        .bind(v6)
        .send_blocking(envoy.http_addr_v6().unwrap(), &Req::get("/"))
        .unwrap();
    // Envoy appends its own host address to XFF for a peer of exactly ::1 or 127.0.0.1 (it treats
    // those as "loopback"), so the peer shows in x-envoy-external-address instead.
    assert_eq!(plain.echo().header("x-envoy-external-address"), Some("::1"));
    let tls = Client::h2c()
        .tls(Tls::V1_3)
        .bind(v6)
        .send_blocking(envoy.https_addr_v6().unwrap(), &Req::get("/"))
        .unwrap();
    assert_eq!(tls.echo().header("x-envoy-external-address"), Some("::1"));
}

#[test]
fn raw_http1_and_h2_trailers_pass_through() {
    let server = echo_server();
    let envoy = envoy_without_plugin(server.addr());
    let raw = Client::h1()
        .send_raw_blocking(
            envoy.http_addr(),
            b"GET /raw HTTP/1.1\r\nHost: localhost\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n",
        )
        .unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(raw.echo().header_all("x-dup"), ["a", "b"]);

    // A malformed request is Envoy's to refuse.
    let bad = Client::h1()
        .send_raw_blocking(
            envoy.http_addr(),
            b"GET /raw HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n",
        )
        .unwrap();
    assert_eq!(bad.status, 400);

    let tls_raw = Client::h1()
        .tls(Tls::V1_2)
        .send_raw_blocking(
            envoy.https_addr(),
            b"GET /raw-tls HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .unwrap();
    assert_eq!(tls_raw.echo().path, "/raw-tls");

    let with_trailers = Req::post("/t", "body-then-trailers").trailer("x-checksum", "abc");
    for client in [Client::h2c(), Client::h2c().tls(Tls::V1_3)] {
        let resp = client
            .send_blocking(
                if client.tls.is_some() {
                    envoy.https_addr()
                } else {
                    envoy.http_addr()
                },
                &with_trailers,
            )
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.echo().body, "body-then-trailers");
    }
}

#[test]
fn admin_stats_and_route_names_are_visible() {
    let server = echo_server();
    let envoy = envoy_without_plugin(server.addr());
    for path in ["/partner/a", "/admin/b", "/c"] {
        let resp = Client::h1()
            .send_blocking(envoy.http_addr(), &Req::get(path))
            .unwrap();
        assert_eq!(resp.status, 200);
    }
    let config = envoy
        .admin_get("/config_dump?resource=dynamic_route_configs")
        .unwrap_or_default()
        + &envoy.admin_get("/config_dump").unwrap();
    for route in ["\"partner-api\"", "\"admin\"", "\"public\""] {
        assert!(
            config.contains(route),
            "route {route} missing from config_dump"
        );
    }
    // Counters are eventually consistent (flushed by the stats timer); wait for them.
    let mut total = None;
    for _ in 0..300 {
        total = envoy.stat("http.http.downstream_rq_total").unwrap();
        if total >= Some(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(total, Some(3), "{}", envoy.stats("downstream_rq").unwrap());
}

#[test]
fn a_refused_config_returns_the_log() {
    let server = echo_server();
    let opts = EnvoyOpts::new(server.addr()).without_plugin().edit(|yaml| {
        yaml.replace(
            "stat_prefix: http\n",
            "stat_prefix: http\n          no_such_field: 1\n",
        )
    });
    let err = match Envoy::start(&opts) {
        Ok(_) => panic!("Envoy accepted an unknown field"),
        Err(log) => log,
    };
    assert!(err.contains("no_such_field"), "{err}");
    assert!(Envoy::validate_opts(&opts).is_err());
}

#[test]
fn the_rendered_reference_config_validates() {
    let server = echo_server();
    let out = Envoy::validate_opts(&EnvoyOpts::new(server.addr()).without_plugin())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn the_reference_config_with_the_plugin_validates() {
    let server = echo_server();
    let key = "ZWRnZXdhcmQtdGVzdC1rZXktZWRnZXdhcmQtdGVzdC1rZXk=";
    let opts = EnvoyOpts::new(server.addr())
        .env("EDGEWARD_LOG_KEY", key)
        .env("PARTNER_A_KEY", key)
        .env("PARTNER_A_KEY_NEXT", key);
    let out = Envoy::validate_opts(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("OK"), "{out}");
    // The demo's secrets come from the environment: without them the document is refused.
    let err = Envoy::validate_opts(&EnvoyOpts::new(server.addr())).unwrap_err();
    assert!(
        err.contains("environment variable PARTNER_A_KEY is not set"),
        "{err}"
    );
}

#[test]
fn a_replaced_policy_lands_in_the_rendered_config_verbatim() {
    let server = echo_server();
    let policy =
        "{\"policies\": {\"p\": {}},\n \"routes\": [{\"policy\": \"p\", \"x\": \"a\\\"b\"}]}";
    let opts = EnvoyOpts::new(server.addr())
        .without_plugin()
        .policy(policy);
    let ports = support::Ports {
        http: 1,
        https: 2,
        admin: 3,
    };
    let rendered = support::render(&opts, ports, support::TempDir::new("t").unwrap()).unwrap();
    let yaml = std::fs::read_to_string(&rendered.config_path).unwrap();
    // Stripped of the wasm filter, so no policy line remains: render with a file plugin instead.
    assert!(!yaml.contains("envoy.filters.http.wasm"));
    let opts = EnvoyOpts::new(server.addr())
        .plugin_file("/nonexistent/plugin.wasm")
        .policy(policy);
    let rendered = support::render(&opts, ports, support::TempDir::new("t").unwrap()).unwrap();
    let yaml = std::fs::read_to_string(&rendered.config_path).unwrap();
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("value: "))
        .unwrap();
    let round_trip: String =
        serde_json::from_str(line.trim_start().trim_start_matches("value: ")).unwrap();
    assert_eq!(round_trip, policy);
    assert!(yaml.contains("filename: /nonexistent/plugin.wasm"));
    assert!(yaml.contains("port_value: 1 }") && yaml.contains("port_value: 3 }"));
    for old in [10000, 10443, 9901, 8080] {
        assert!(
            !yaml.contains(&format!("port_value: {old}")),
            "port {old} left in:\n{yaml}"
        );
    }
}

#[test]
fn the_reference_policy_is_readable() {
    let json = support::reference_policy_json().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(doc["routes"].is_array(), "{json}");
}

#[test]
fn dropping_envoy_kills_the_process() {
    let server = echo_server();
    let envoy = envoy_without_plugin(server.addr());
    let pid = envoy.pid();
    let admin = envoy.admin_addr();
    let proc_dir = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_dir).exists());
    drop(envoy);
    assert!(
        !std::path::Path::new(&proc_dir).exists(),
        "pid {pid} still exists"
    );
    assert!(
        TcpStream::connect(admin).is_err(),
        "admin port still accepts"
    );
}

#[test]
fn docker_compose_runs_the_reference_config() {
    let compose =
        std::fs::read_to_string(support::repo_root().join("envoy/docker-compose.yml")).unwrap();
    assert!(compose.contains("envoy/envoy.yaml"), "{compose}");
    assert!(compose.contains("envoyproxy/envoy:v1.40"), "{compose}");
    // The upstream is Envoy too (envoy/upstream.yaml); tests/e2e_docker.rs runs the file for real.
    assert!(compose.contains("./upstream.yaml"), "{compose}");
}

#[test]
fn tls_checks_the_test_certificate_names() {
    let server = echo_server();
    let envoy = envoy_without_plugin(server.addr());
    let req = Req::get("/").authority("admin.example.com");
    let ok = Client::h2c()
        .tls(Tls::V1_3)
        .server_name("admin.example.com")
        .send_blocking(envoy.https_addr(), &req)
        .unwrap();
    assert_eq!(ok.echo().header("host"), Some("admin.example.com"));
    let wrong = Client::h1()
        .version(Version::Http1)
        .tls(Tls::V1_2)
        .server_name("not-in-the-cert.invalid")
        .send_blocking(envoy.https_addr(), &req);
    assert!(
        wrong.is_err(),
        "a name outside the test certificate was accepted"
    );
}

#[test]
fn envoy_versions_are_compared_numerically() {
    let line = |v: &str| {
        format!(
            "envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/{v}/Clean/RELEASE/BoringSSL"
        )
    };
    for (v, ok) in [
        ("1.40.0", true),
        ("1.36.0", true),
        ("1.36.4", true),
        ("1.41.2", true),
        ("2.0.0", true),
        ("1.35.9", false),
        ("1.3.60", false),
        ("1.4.0", false),
    ] {
        assert_eq!(
            support::version_at_least(&line(v), support::MIN_ENVOY),
            ok,
            "{v}"
        );
    }
    assert!(!support::version_at_least(
        "not an envoy",
        support::MIN_ENVOY
    ));
}
