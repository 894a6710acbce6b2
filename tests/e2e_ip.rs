//! Issue 5 through a real Envoy (envoy/envoy.yaml): allow/deny lists seen from several loopback source
//! addresses (127.0.0.2, 127.0.0.3, 127.0.0.4, ::1), `deny_status: 404`, X-Forwarded-For spoofing, and the
//! client address taken from X-Forwarded-For behind trusted proxies or trusted hops.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;
use support::{echo_server, ip, start, Envoy, EnvoyOpts, Req};

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Waits (up to 30 s) for the access log record of the request with this exact path.
fn record_for(envoy: &Envoy, path: &str) -> Value {
    envoy.access_log_record(path, |v| v["path"] == path)
}

/// Asserts an allowed request reached the upstream, or a denied one got `status` and never did; the
/// access log names the reason. Each case uses its own path.
fn expect(envoy: &Envoy, from: IpAddr, req: &Req, status: u16, reason: Option<&str>) {
    let what = format!("{} from {from}", req.path);
    let resp = envoy.send_from(from, req);
    assert_eq!(resp.status, status, "{what}: {}", resp.text());
    if status == 200 {
        assert_eq!(resp.echo().path, req.path, "{what}");
    } else {
        assert!(
            serde_json::from_slice::<Value>(&resp.body)
                .map_or(true, |v| v.get("headers").is_none()),
            "{what}: a denied request reached the upstream"
        );
    }
    let record = record_for(envoy, &req.path);
    assert_eq!(record["reason"].as_str(), reason, "{what}: {record}");
    assert_eq!(record["status"], status, "{what}: {record}");
}

#[test]
fn allow_and_deny_lists_by_source_address() {
    if !support::ipv6_available() {
        eprintln!("note: no IPv6 loopback here; the ::1 cases are skipped");
    }
    let upstream = echo_server();
    let policy = r#"{
      "ip_lists": {"loopback_v4": ["127.0.0.0/24"]},
      "policies": {
        "lists": {"ip": {"allow": ["@loopback_v4", "::1"], "deny": ["127.0.0.3"]}},
        "hidden": {"ip": {"allow": ["127.0.0.2"], "deny_status": 404}},
        "deny_only": {"ip": {"deny": ["::1/128", "127.0.0.3"]}},
        "tens": {"ip": {"allow": ["10.0.0.0/8"]}}
      },
      "routes": [
        {"path_prefix": "/lists/", "policy": "lists"},
        {"path_prefix": "/hidden/", "policy": "hidden"},
        {"path_prefix": "/deny-only/", "policy": "deny_only"},
        {"path_prefix": "/tens/", "policy": "tens"},
        {"policy": null}
      ]
    }"#;
    let envoy = start(&EnvoyOpts::new(upstream.addr()).policy(policy));
    let (a2, a3, a4) = (ip("127.0.0.2"), ip("127.0.0.3"), ip("127.0.0.4"));
    let v6 = support::ipv6_available();

    // Same route, allowed and denied clients; deny wins over allow.
    expect(&envoy, a2, &Req::get("/lists/a2"), 200, None);
    expect(&envoy, a4, &Req::get("/lists/a4"), 200, None);
    expect(&envoy, a3, &Req::get("/lists/a3"), 403, Some("ip_denied"));
    if v6 {
        expect(&envoy, V6, &Req::get("/lists/v6"), 200, None);
    }
    // deny_status 404 hides the route.
    expect(&envoy, a2, &Req::get("/hidden/a2"), 200, None);
    expect(&envoy, a3, &Req::get("/hidden/a3"), 404, Some("ip_denied"));
    if v6 {
        expect(&envoy, V6, &Req::get("/hidden/v6"), 404, Some("ip_denied"));
    }
    // A deny list alone: everyone else passes.
    expect(&envoy, a2, &Req::get("/deny-only/a2"), 200, None);
    expect(
        &envoy,
        a3,
        &Req::get("/deny-only/a3"),
        403,
        Some("ip_denied"),
    );
    if v6 {
        expect(
            &envoy,
            V6,
            &Req::get("/deny-only/v6"),
            403,
            Some("ip_denied"),
        );
    }
    // The log record shows the truncated client address, of the right family.
    assert_eq!(record_for(&envoy, "/lists/a3")["client_ip"], "127.0.0.0");
    if v6 {
        assert_eq!(record_for(&envoy, "/lists/v6")["client_ip"], "::");
    }

    // No trusted proxy configured: client-supplied address headers never pass a 10/8 allow list.
    let spoofs = [
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
        ("x-real-ip", "10.0.0.1"),
        ("x-envoy-external-address", "10.0.0.1"),
        ("forwarded", "for=10.0.0.1"),
        ("true-client-ip", "10.0.0.1"),
    ];
    for (i, (name, value)) in spoofs.iter().enumerate() {
        let req = Req::get(&format!("/tens/spoof{i}")).header(name, value);
        expect(&envoy, a2, &req, 403, Some("ip_denied"));
    }
    // An explicit opt-out route: no checks, reaches the upstream from a denied address.
    expect(&envoy, a3, &Req::get("/open/a3"), 200, None);
}

/// Requests that share a keep-alive or HTTP/2 connection are judged each on its own: connections from an
/// allowed and a denied address alternate, and every request keeps its connection's verdict.
#[test]
fn keep_alive_and_http2_requests_keep_their_connection_s_address() {
    let upstream = echo_server();
    let policy = r#"{
      "policies": {"one": {"ip": {"allow": ["127.0.0.77"]}}},
      "routes": [{"policy": "one"}]
    }"#;
    let envoy = start(&EnvoyOpts::new(upstream.addr()).policy(policy));
    let (allowed, denied) = (ip("127.0.0.77"), ip("127.0.0.78"));
    let count = |name: &str| envoy.stat(name).unwrap().unwrap_or(0);
    let (cx0, rq0) = (
        count("http.http.downstream_cx_total"),
        count("http.http.downstream_rq_total"),
    );
    for client in [support::Client::h1(), support::Client::h2c()] {
        let v = format!("{:?}", client.version);
        // allowed, denied, allowed again, denied again: each connection right after the other one.
        for (round, from) in [allowed, denied, allowed, denied].into_iter().enumerate() {
            let reqs: Vec<Req> = (0..3)
                .map(|i| Req::get(&format!("/ka/{v}/{round}/{i}")))
                .collect();
            let resps = client
                .clone()
                .bind(from)
                .send_on_one_connection_blocking(envoy.http_addr(), &reqs)
                .unwrap_or_else(|e| panic!("{v} from {from}: {e}"));
            assert_eq!(resps.len(), 3);
            for (req, resp) in reqs.iter().zip(&resps) {
                let want = if from == allowed { 200 } else { 403 };
                assert_eq!(resp.status, want, "{v} {} from {from}", req.path);
                if want == 200 {
                    assert_eq!(resp.echo().path, req.path);
                }
            }
        }
    }
    // Eight connections really carried the 24 requests (Envoy's own counts).
    assert_eq!(count("http.http.downstream_rq_total") - rq0, 24);
    assert_eq!(count("http.http.downstream_cx_total") - cx0, 8);
}

/// `client_ip.trusted_proxies`: from a trusted proxy, the X-Forwarded-For client is checked; walking stops
/// at the first untrusted address; from an untrusted peer, X-Forwarded-For is ignored.
#[test]
fn behind_trusted_proxies_the_forwarded_client_is_used() {
    let upstream = echo_server();
    let policy = r#"{
      "client_ip": {"trusted_proxies": ["127.0.0.2", "127.0.0.5/32", "127.0.0.1", "::1"]},
      "policies": {"tens": {"ip": {"allow": ["10.0.0.0/8"]}}},
      "routes": [{"policy": "tens"}]
    }"#;
    let envoy = start(&EnvoyOpts::new(upstream.addr()).policy(policy));
    let (proxy, other_proxy, stranger) = (ip("127.0.0.2"), ip("127.0.0.5"), ip("127.0.0.3"));
    let xff = |path: &str, v: &str| Req::get(path).header("x-forwarded-for", v);

    expect(&envoy, proxy, &xff("/t/1", "10.0.0.1"), 200, None);
    assert_eq!(record_for(&envoy, "/t/1")["client_ip"], "10.0.0.0");
    expect(
        &envoy,
        proxy,
        &xff("/t/2", "192.0.2.1"),
        403,
        Some("ip_denied"),
    );
    // Two trusted hops (127.0.0.5 forwarded to 127.0.0.2): the walk continues through both.
    expect(
        &envoy,
        proxy,
        &xff("/t/3", "10.0.0.1, 127.0.0.5"),
        200,
        None,
    );
    // The address right of the client's claim is untrusted: it is the client (the 10/8 entry is spoofed).
    expect(
        &envoy,
        proxy,
        &xff("/t/4", "10.0.0.1, 192.0.2.7"),
        403,
        Some("ip_denied"),
    );
    // Garbage where the client address is taken: denied as invalid, never skipped.
    expect(
        &envoy,
        proxy,
        &xff("/t/5", "10.0.0.1, not-an-ip"),
        403,
        Some("client_ip_invalid"),
    );
    // A trusted proxy without X-Forwarded-For: the proxy itself is the client.
    expect(&envoy, proxy, &Req::get("/t/6"), 403, Some("ip_denied"));
    // An untrusted peer's X-Forwarded-For means nothing.
    expect(
        &envoy,
        stranger,
        &xff("/t/7", "10.0.0.1"),
        403,
        Some("ip_denied"),
    );
    expect(&envoy, other_proxy, &xff("/t/8", "10.0.0.9"), 200, None);
    assert_eq!(record_for(&envoy, "/t/8")["client_ip"], "10.0.0.0");
    // A proxy on 127.0.0.1 or ::1: Envoy appends its own host address instead of the peer; the walk
    // skips it and still finds the forwarded client.
    let mut loopbacks = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    if support::ipv6_available() {
        loopbacks.push(V6);
    }
    for (i, lo) in loopbacks.into_iter().enumerate() {
        let path = format!("/t/lo{i}");
        expect(&envoy, lo, &xff(&path, "10.0.0.7"), 200, None);
        assert_eq!(record_for(&envoy, &path)["client_ip"], "10.0.0.0");
        let path = format!("/t/lo-spoof{i}");
        expect(
            &envoy,
            lo,
            &xff(&path, "10.0.0.7, 192.0.2.9"),
            403,
            Some("ip_denied"),
        );
    }
}

/// `client_ip.xff_trusted_hops: N` follows Envoy's `use_remote_address: true` rule: the Nth address from the
/// right of the X-Forwarded-For the client (or its proxies) sent, falling back to the peer. The filter sees
/// the header after Envoy appended the peer.
#[test]
fn trusted_hops_pick_the_nth_address_from_the_right() {
    let upstream = echo_server();
    let policy = r#"{
      "client_ip": {"xff_trusted_hops": 1},
      "policies": {"tens": {"ip": {"allow": ["10.0.0.0/8"]}}},
      "routes": [{"policy": "tens"}]
    }"#;
    let envoy = start(&EnvoyOpts::new(upstream.addr()).policy(policy));
    let peer = ip("127.0.0.2");
    let xff = |path: &str, v: &str| Req::get(path).header("x-forwarded-for", v);

    // One trusted hop (the peer): the rightmost address it sent is the client.
    expect(&envoy, peer, &xff("/h/1", "10.0.0.1"), 200, None);
    assert_eq!(record_for(&envoy, "/h/1")["client_ip"], "10.0.0.0");
    expect(
        &envoy,
        peer,
        &xff("/h/2", "10.0.0.1, 192.0.2.1"),
        403,
        Some("ip_denied"),
    );
    assert_eq!(record_for(&envoy, "/h/2")["client_ip"], "192.0.2.0");
    // No X-Forwarded-For: fewer entries than hops, the peer is the client.
    expect(&envoy, peer, &Req::get("/h/3"), 403, Some("ip_denied"));
    assert_eq!(record_for(&envoy, "/h/3")["client_ip"], "127.0.0.0");
}

/// The recommended setup: Envoy resolves the client (`xff_num_trusted_hops` on the connection manager) and
/// edgeward keeps its default (the peer as Envoy reports it in `source.address`).
#[test]
fn envoy_resolved_client_address_is_what_the_lists_see() {
    let upstream = echo_server();
    let policy = r#"{
      "policies": {"tens": {"ip": {"allow": ["10.0.0.0/8"]}}},
      "routes": [{"policy": "tens"}]
    }"#;
    let opts = EnvoyOpts::new(upstream.addr()).policy(policy).edit(|yaml| {
        yaml.replace(
            "use_remote_address: true\n",
            "use_remote_address: true\n          xff_num_trusted_hops: 1\n",
        )
    });
    let envoy = start(&opts);
    let peer = ip("127.0.0.2");
    let xff = |path: &str, v: &str| Req::get(path).header("x-forwarded-for", v);
    expect(&envoy, peer, &xff("/e/1", "10.0.0.1"), 200, None);
    assert_eq!(record_for(&envoy, "/e/1")["client_ip"], "10.0.0.0");
    expect(
        &envoy,
        peer,
        &xff("/e/2", "10.0.0.1, 192.0.2.1"),
        403,
        Some("ip_denied"),
    );
    expect(&envoy, peer, &Req::get("/e/3"), 403, Some("ip_denied"));

    // Envoy resolves the address per request, not per connection: on one keep-alive connection (and
    // one HTTP/2 connection) each request is judged by its own X-Forwarded-For. A plugin that
    // remembered the address by connection (it did, for an hour) lets the second request through.
    for client in [support::Client::h1(), support::Client::h2c()] {
        let v = format!("{:?}", client.version);
        let reqs = [
            xff(&format!("/e/ka/{v}/1"), "10.0.0.1"),
            xff(&format!("/e/ka/{v}/2"), "192.0.2.1"),
            Req::get(&format!("/e/ka/{v}/3")),
            xff(&format!("/e/ka/{v}/4"), "10.0.0.9"),
        ];
        let statuses: Vec<u16> = client
            .bind(peer)
            .send_on_one_connection_blocking(envoy.http_addr(), &reqs)
            .unwrap_or_else(|e| panic!("{v}: {e}"))
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [200, 403, 403, 200], "{v}");
    }
}
