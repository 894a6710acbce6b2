//! The hardening issue through a real Envoy (envoy/envoy.yaml): the route that serves a request is the route
//! whose policy was checked; one signed head cannot hold unbounded memory; a refused request leaves its
//! nonce usable; logs are private for every request.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use edgeward::http1::{parse_http_request, render};
use edgeward::signature::{sign_request, SignParams, SigningKey};
use hmac::{Hmac, Mac as _};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{echo, Client, Envoy, EnvoyOpts, Req, Response};

const SECRET: &[u8; 32] = b"hardening-e2e-secret-32-bytes!!!";
const LOG_KEY: &[u8; 32] = b"hardening-e2e-log-key-32-bytes!!";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `raw` (an HTTP/1.1 request) signed with SECRET as `partner-a` over method, authority, path, query and,
/// when it has a body, content-digest, with `nonce`.
fn signed(raw: &str, nonce: &str) -> Vec<u8> {
    let req = parse_http_request(raw.as_bytes()).unwrap();
    let mut params = SignParams::new("partner-a", SigningKey::hmac(SECRET).unwrap(), now_s());
    params.nonce = Some(nonce.to_string());
    params.components = ["@method", "@authority", "@path", "@query"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !req.body.is_empty() {
        params.components.push("content-digest".into());
    }
    let headers = sign_request(&req, &params).unwrap().headers();
    render(&req, &headers)
}

fn split_head(raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (raw[..at].to_vec(), raw[at..].to_vec())
}

fn start(upstream: SocketAddr, policy: Value, edit: Option<fn(String) -> String>) -> Envoy {
    let mut opts = EnvoyOpts::new(upstream)
        .policy(policy.to_string())
        .env("PARTNER_A_KEY", b64(SECRET))
        .env("EDGEWARD_LOG_KEY", b64(LOG_KEY));
    if let Some(edit) = edit {
        opts = opts.edit(edit);
    }
    Envoy::start(&opts).unwrap_or_else(|log| panic!("{log}"))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. The route that serves a request is the route whose policy was checked

/// Envoy routes that match on headers edgeward is responsible for, and a header naming the route that
/// served each request (written by Envoy after routing).
fn routes_on_edgeward_headers(yaml: String) -> String {
    let from = "              routes:\n              - name: partner-api\n                match: { prefix: /partner/ }\n                route: { cluster: upstream }\n              - name: admin\n                match: { prefix: /admin/ }\n                route: { cluster: upstream }\n              - name: public\n                match: { prefix: / }\n                route: { cluster: upstream }\n";
    assert!(yaml.contains(from), "envoy.yaml's routes changed");
    let route = |name: &str, matcher: &str| {
        format!(
            "              - name: {name}\n                match: {matcher}\n                route: {{ cluster: upstream }}\n                request_headers_to_add: [{{ header: {{ key: x-served-by, value: {name} }} }}]\n"
        )
    };
    let to = String::from("              routes:\n")
        + &route(
            "partner-a-only",
            "{ prefix: /partner/, headers: [{ name: x-edgeward-key-id, string_match: { exact: partner-a } }] }",
        )
        + &route("partner-api", "{ prefix: /partner/ }")
        + &route(
            "keyed",
            "{ prefix: /, headers: [{ name: x-edgeward-key-id, present_match: true }] }",
        )
        + &route("admin", "{ prefix: /admin/ }")
        + &route("public", "{ prefix: / }");
    yaml.replace(from, &to)
}

fn route_policy() -> Value {
    json!({
        "log": { "keep_query": ["*"] },
        "ip_lists": { "operators": ["10.0.0.0/8"] },
        "policies": {
            "partner": { "signature": {
                "keys": [{ "id": "partner-a", "alg": "hmac-sha256", "secret": { "env": "PARTNER_A_KEY" } }],
                "nonce": "required"
            } },
            "partner-strict": { "ip": { "allow": ["@operators"], "deny_status": 404 } },
            "admin": { "ip": { "allow": ["@operators"], "deny_status": 404 } },
            "public": {}
        },
        "routes": [
            { "route": "partner-a-only", "policy": "partner-strict" },
            { "route": "partner-api", "policy": "partner" },
            { "route": "keyed", "policy": null },
            { "route": "admin", "policy": "admin" },
            { "route": "public", "policy": "public" }
        ]
    })
}

/// The attack run's two cases. Before: a client-sent `X-Edgeward-Key-Id` selected a `"policy": null` route,
/// edgeward removed the header, Envoy re-routed to the admin route and served /admin/secret unchecked; and
/// a verified partner's traffic was never sent through its dedicated route's stricter policy although the
/// record said otherwise.
#[test]
fn the_route_that_serves_a_request_is_the_route_that_was_checked() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let envoy = start(
        upstream.addr(),
        route_policy(),
        Some(routes_on_edgeward_headers),
    );
    for client in [Client::h1(), Client::h2c()] {
        let proto = format!("{:?}", client.version);
        let send = |req: &Req| client.send_blocking(envoy.http_addr(), req).unwrap();

        // A forged key id header: refused before routing matters; /admin/secret is never served.
        let path = format!("/admin/secret-{proto}");
        let forged = send(&Req::get(&path).header("X-Edgeward-Key-Id", "x"));
        assert_eq!(forged.status, 400, "{proto}: {}", forged.text());
        assert!(
            !upstream.paths().contains(&path),
            "{proto}: reached the upstream"
        );
        let record = envoy.access_log_record(&path, |v| v["path"] == path.as_str());
        assert_eq!(record["reason"], "reserved_header", "{record}");
        // Without it: the admin policy applies (and hides the route).
        assert_eq!(send(&Req::get(&path)).status, 404, "{proto}");

        // A verified partner: served by the route edgeward checked (partner-api), which the record names;
        // edgeward's own key id header, written after routing, moves nothing.
        let path = format!("/partner/orders-{proto}");
        let raw = signed(
            &format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            &format!("n-route-{proto}"),
        );
        let req = raw_to_req(&raw);
        let resp = send(&req);
        assert_eq!(resp.status, 200, "{proto}: {}", resp.text());
        let seen = resp.echo();
        assert_eq!(seen.header("x-served-by"), Some("partner-api"), "{proto}");
        assert_eq!(
            seen.header_all("x-edgeward-key-id"),
            ["partner-a"],
            "{proto}"
        );
        let record = envoy.access_log_record(&path, |v| v["path"] == path.as_str());
        assert_eq!(record["route"], "partner-api", "{record}");
        assert_eq!(record["policy"], "partner", "{record}");
    }
}

/// An HTTP/1.1 request's bytes as a [`Req`] (for the HTTP/2 client too).
fn raw_to_req(raw: &[u8]) -> Req {
    let r = parse_http_request(raw).unwrap();
    let mut req = Req::new(&r.method, &r.target).authority(&r.authority());
    for (k, v) in &r.headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    req.body(r.body.clone())
}

// ---------------------------------------------------------------------------------------------
// 2. One signed head cannot hold unbounded memory

/// The demo's partner policy (1 MiB bodies, 5 per 10 s) without its HTTPS rule, so that plain
/// connections carry the signed heads.
fn body_policy(held: Value) -> Value {
    json!({
        "held_bodies": held,
        "policies": {
            "partner": {
                "signature": {
                    "keys": [{ "id": "partner-a", "alg": "hmac-sha256", "secret": { "env": "PARTNER_A_KEY" } }],
                    "components": ["@method", "@authority", "@path", "@query", "content-digest"],
                    "nonce": "required",
                    "max_body_bytes": 1048576
                },
                "rate_limits": [{ "name": "per-partner", "key": "key_id", "limit": 5, "window_s": 10 }]
            }
        },
        "routes": [{ "policy": "partner" }]
    })
}

const COPIES: usize = 100;
const BODY: usize = 1_000_000;

/// One signed head (1 MB body declared), sent on 100 connections with only the first 1000 body bytes:
/// one is held, the 99 others get 401 `signature_replayed` within a second.
#[test]
fn one_signed_head_on_a_hundred_connections_holds_at_most_one_body() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let envoy = start(upstream.addr(), body_policy(json!({})), None);
    let body = vec![b'a'; BODY];
    let raw = signed(
        &format!(
            "POST /orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: {BODY}\r\n\r\n{}",
            String::from_utf8(body).unwrap()
        ),
        "one-head-h1",
    );
    let (head, rest) = split_head(&raw);
    let before = rss_kib(envoy.pid());
    let started = Instant::now();
    // Each copy's head is timed from when it was sent to when its answer was read (the connections are
    // polled with a 5 ms read timeout, so an answer is seen within a sweep of them).
    let mut sent_at = Vec::with_capacity(COPIES);
    let mut conns: Vec<TcpStream> = (0..COPIES)
        .map(|_| {
            let mut c = TcpStream::connect(envoy.http_addr()).unwrap();
            sent_at.push(Instant::now());
            c.write_all(&head).unwrap();
            c.write_all(&rest[..1000]).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            c
        })
        .collect();
    let mut slowest = Duration::ZERO;
    // Then each client goes on sending its body, slowly, all but the last 10 bytes (errors ignored: a
    // refused connection is closed under it).
    let writers: Vec<_> = conns
        .iter()
        .map(|c| {
            let mut c = c.try_clone().unwrap();
            let chunk = rest[1000..BODY - 10].to_vec();
            c.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
            std::thread::spawn(move || {
                for part in chunk.chunks(64 * 1024) {
                    if c.write_all(part).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    let mut answered = vec![None::<u16>; COPIES];
    let deadline = started + Duration::from_secs(3);
    while Instant::now() < deadline && answered.iter().flatten().count() < COPIES - 1 {
        for (i, c) in conns.iter_mut().enumerate() {
            if answered[i].is_some() {
                continue;
            }
            let mut buf = [0u8; 64];
            if let Ok(n) = c.read(&mut buf) {
                if n >= 12 && buf.starts_with(b"HTTP/1.1 ") {
                    answered[i] = std::str::from_utf8(&buf[9..12])
                        .ok()
                        .and_then(|s| s.parse().ok());
                    slowest = slowest.max(sent_at[i].elapsed());
                }
            }
        }
    }
    let elapsed = started.elapsed();
    for w in writers {
        w.join().unwrap();
    }
    let after = rss_kib(envoy.pid());
    let statuses: Vec<u16> = answered.iter().flatten().copied().collect();
    println!(
        "HTTP/1.1: {} of {COPIES} answered in {elapsed:?}, each within {slowest:?} of its head ({:?}); Envoy RSS {before} KiB -> {after} KiB (+{} KiB)",
        statuses.len(),
        statuses.iter().fold(std::collections::BTreeMap::new(), |mut m, s| {
            *m.entry(*s).or_insert(0) += 1;
            m
        }),
        after.saturating_sub(before)
    );
    assert_eq!(statuses.len(), COPIES - 1, "{answered:?}");
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a copy was answered {slowest:?} after its head was sent"
    );
    // One held body (at most 1 MB in Envoy's buffer) and 100 connections: bounded (it was +104 MB).
    assert!(
        after.saturating_sub(before) < 40 * 1024,
        "RSS grew by {} KiB",
        after - before
    );
    let held = answered.iter().position(Option::is_none).unwrap();
    // The held one completes normally.
    conns[held].write_all(&rest[BODY - 10..]).unwrap();
    conns[held]
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 12];
    conns[held].read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let replayed = envoy.stat_eventually(
        "wasmcustom.edgeward.partner.denied.signature_replayed",
        Some(99),
    );
    assert_eq!(replayed, Some(99));
}

/// A request body fed from a channel: open while its sender lives.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// The same head as 100 streams of one HTTP/2 connection, each then sending body data slowly.
#[test]
fn one_signed_head_on_a_hundred_http2_streams_holds_at_most_one_body() {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let envoy = start(upstream.addr(), body_policy(json!({})), None);
    let raw = signed(
        &format!(
            "POST /orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: {BODY}\r\n\r\n{}",
            "b".repeat(BODY)
        ),
        "one-head-h2",
    );
    let parsed = parse_http_request(&raw).unwrap();
    let pid = envoy.pid();
    let before = rss_kib(pid);
    let addr = envoy.http_addr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (statuses, slowest, after, held_status) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let started = Instant::now();
        let mut pending = Vec::new();
        let mut feeders = Vec::new();
        for _ in 0..COPIES {
            let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
            let mut b = hyper::Request::builder()
                .method("POST")
                .uri(format!("http://api.example.com{}", parsed.target));
            for (k, v) in &parsed.headers {
                if k != "host" {
                    b = b.header(k.as_str(), v.as_str());
                }
            }
            let req = b.body(ChannelBody(rx)).unwrap();
            let mut s = sender.clone();
            pending.push(tokio::spawn(async move {
                let status = s.send_request(req).await.ok().map(|r| r.status().as_u16());
                (status, started.elapsed())
            }));
            // Sends body data, slowly, up to all but the last 10 bytes; stops when the stream is gone.
            feeders.push(tokio::spawn(async move {
                let mut sent = 0;
                while sent < BODY - 10 {
                    let n = (BODY - 10 - sent).min(64 * 1024);
                    if tx.send(bytes::Bytes::from(vec![b'b'; n])).await.is_err() {
                        break;
                    }
                    sent += n;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tx
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = rss_kib(pid);
        let mut statuses = Vec::new();
        let mut slowest = Duration::ZERO;
        let mut held = None;
        for (i, p) in pending.iter_mut().enumerate() {
            if p.is_finished() {
                let (status, at) = p.await.unwrap();
                statuses.push(status);
                slowest = slowest.max(at);
            } else {
                held = Some(i);
            }
        }
        // The held stream completes normally once its last bytes come.
        let held_status = match held {
            Some(i) => {
                let tx = (&mut feeders[i]).await.unwrap();
                tx.send(bytes::Bytes::from(vec![b'b'; 10])).await.unwrap();
                drop(tx);
                let done = tokio::time::timeout(Duration::from_secs(10), &mut pending[i]).await;
                done.ok().and_then(Result::ok).and_then(|(s, _)| s)
            }
            None => None,
        };
        for f in feeders {
            f.abort();
        }
        (statuses, slowest, after, held_status)
    });
    let answered: Vec<u16> = statuses.iter().flatten().copied().collect();
    if answered.len() != COPIES - 1 {
        println!("{}", envoy.access_log_lines(COPIES).join("\n"));
    }
    println!(
        "HTTP/2: {} of {COPIES} streams answered, the last after {slowest:?}; Envoy RSS {before} KiB -> {after} KiB (+{} KiB)",
        answered.len(),
        after.saturating_sub(before)
    );
    assert_eq!(answered.len(), COPIES - 1, "{statuses:?}");
    assert!(answered.iter().all(|&s| s == 401), "{answered:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(
        after.saturating_sub(before) < 40 * 1024,
        "RSS grew by {} KiB",
        after - before
    );
    assert_eq!(held_status, Some(200), "the held stream");
    drop(rt);
}

/// Distinct signed heads: what one worker holds is bounded (503 `body_buffer_full` past it), a slow body
/// gets 408 at the deadline, and a body that never comes is answered, not held for Envoy's timeouts.
#[test]
fn held_bodies_are_bounded_in_bytes_and_in_time() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let envoy = start(
        upstream.addr(),
        body_policy(json!({ "max_bytes": 1048576, "timeout_ms": 1000 })),
        Some(support::exact_balance),
    );
    let head_of = |nonce: &str, len: usize| {
        let raw = signed(
            &format!(
                "POST /orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: {len}\r\n\r\n{}",
                "c".repeat(len)
            ),
            nonce,
        );
        split_head(&raw).0
    };
    // Envoy runs two workers: fill both with 600 KB declared bodies (one each fits, a second does not).
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let mut c = TcpStream::connect(envoy.http_addr()).unwrap();
        c.write_all(&head_of(&format!("cap-{i}"), 600_000)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 12];
        match c.read_exact(&mut buf) {
            Ok(()) => statuses.push(String::from_utf8_lossy(&buf[9..12]).to_string()),
            Err(_) => held.push(c),
        }
    }
    assert!(
        statuses.iter().any(|s| s == "503"),
        "no 503 body_buffer_full: {statuses:?}, {} held",
        held.len()
    );
    assert!(!held.is_empty());
    // The held ones are answered 408 at the deadline (1 s, kept by the tick), not by Envoy's timeouts.
    let started = Instant::now();
    for mut c in held {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 408");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let full = envoy.stat_eventually("wasmcustom.edgeward.partner.denied.body_buffer_full", None);
    let timeout = envoy.stat_eventually("wasmcustom.edgeward.partner.denied.body_timeout", None);
    assert!(
        full.unwrap_or(0) >= 1 && timeout.unwrap_or(0) >= 1,
        "{full:?} {timeout:?}"
    );
    let records = envoy.access_log();
    assert!(
        records.contains("\"reason\":\"body_timeout\",\"status\":408"),
        "{records}"
    );
}

/// Envoy without `allow_on_headers_stop_iteration` (Istio's WasmPlugin never sets it) holds the body
/// without handing it to the plugin: the request is answered 503 `body_unavailable` at the deadline, not
/// left to Envoy's own timeouts, and the plugin says once which option to set.
#[test]
fn without_allow_on_headers_stop_iteration_a_body_is_answered_at_the_deadline() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let envoy = start(
        upstream.addr(),
        body_policy(json!({ "timeout_ms": 1000 })),
        Some(|y: String| {
            let from = "allow_on_headers_stop_iteration: true";
            assert!(y.contains(from));
            y.replace(from, "allow_on_headers_stop_iteration: false")
        }),
    );
    for (i, client) in [Client::h1(), Client::h2c()].into_iter().enumerate() {
        let raw = signed(
            "POST /orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 9\r\n\r\n{\"qty\":3}",
            &format!("unavailable-{i}"),
        );
        let started = Instant::now();
        let resp = client
            .send_blocking(envoy.http_addr(), &raw_to_req(&raw))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status, 503, "{:?}: {}", client.version, resp.text());
        assert_eq!(resp.header("retry-after"), Some("1"));
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
    }
    assert!(upstream.paths().is_empty(), "{:?}", upstream.paths());
    let records = envoy.access_log_lines(2).join("\n");
    assert_eq!(
        records
            .matches("\"reason\":\"body_unavailable\",\"status\":503")
            .count(),
        2,
        "{records}"
    );
    assert_eq!(
        envoy.stat_eventually(
            "wasmcustom.edgeward.partner.denied.body_unavailable",
            Some(2)
        ),
        Some(2)
    );
    let log = envoy.log();
    assert!(
        log.contains("critical") && log.contains("set allow_on_headers_stop_iteration: true"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A refused request consumes no nonce

#[test]
fn a_rate_limited_request_can_be_retried_with_the_same_signature() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let policy = json!({
        "policies": { "partner": {
            "signature": {
                "keys": [{ "id": "partner-a", "alg": "hmac-sha256", "secret": { "env": "PARTNER_A_KEY" } }],
                "nonce": "required"
            },
            "rate_limits": [{ "name": "per-partner", "key": "key_id", "limit": 1, "window_s": 2 }]
        } },
        "routes": [{ "policy": "partner" }]
    });
    let envoy = start(upstream.addr(), policy, None);
    let send = |raw: &[u8]| {
        Client::h1()
            .send_raw_blocking(envoy.http_addr(), raw)
            .unwrap()
    };
    let get = |path: &str, nonce: &str| {
        signed(
            &format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            nonce,
        )
    };
    assert_eq!(send(&get("/a", "nonce-a")).status, 200);
    let limited = get("/b", "nonce-b");
    assert_eq!(send(&limited).status, 429);
    std::thread::sleep(Duration::from_millis(2100));
    let retry: Response = send(&limited);
    assert_eq!(
        retry.status,
        200,
        "the 429 used up the nonce: {}",
        retry.text()
    );
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(send(&limited).status, 401, "and now it is used");
}

// ---------------------------------------------------------------------------------------------
// 4. Logs private by default, for every request

fn pseudonym(label: &str, value: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(LOG_KEY).unwrap();
    mac.update(label.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

#[test]
fn records_are_private_for_every_request() {
    let upstream = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let policy = json!({
        "client_ip": { "xff_trusted_hops": 1 },
        "log": {
            "pseudonym_key": { "env": "EDGEWARD_LOG_KEY" },
            "pseudonymize": ["client_ip"],
            "headers": ["referer", "x-forwarded-for"],
            "upstream_xff": "truncate"
        },
        "policies": {
            "users": { "rate_limits": [{ "name": "per-user", "key": "header:x-user", "limit": 3, "window_s": 3600 }] }
        },
        "routes": [
            { "host": "only.example", "path": "/health-report", "policy": null },
            { "host": "only.example", "path_prefix": "/u/", "policy": "users" }
        ]
    });
    let envoy = start(upstream.addr(), policy, None);
    let h1 = Client::h1();
    let secret = "T0K3N_A";

    // Outside any policy: a "policy": null route, no route, a bad host.
    let null_route = h1
        .send_blocking(
            envoy.http_addr(),
            &Req::get(&format!("/health-report?token={secret}&page=1")).authority("only.example"),
        )
        .unwrap();
    assert_eq!(null_route.status, 200);
    assert_eq!(
        h1.send_blocking(
            envoy.http_addr(),
            &Req::get(&format!("/nowhere?token={secret}")).authority("other.example")
        )
        .unwrap()
        .status,
        403
    );
    let bad_host = h1
        .send_raw_blocking(
            envoy.http_addr(),
            format!("GET /bad?token={secret} HTTP/1.1\r\nHost: a@b\r\n\r\n").as_bytes(),
        )
        .unwrap();
    assert_eq!(bad_host.status, 400);
    // Two Referer lines (HTTP/1.1 and HTTP/2: Envoy joins them with ','), and the name spellings of
    // `token` that escaped a deny-list.
    for client in [Client::h1(), Client::h2c()] {
        let req = Req::get(&format!(
            "/u/x?token[]={secret}&token%5B%5D={secret}&token%20={secret}&page=2"
        ))
        .authority("only.example")
        .header("x-user", "alice")
        .header("referer", "https://a.example/?page=1")
        .header("referer", &format!("https://b.example/?token={secret}"));
        assert_eq!(
            client
                .send_blocking(envoy.http_addr(), &req)
                .unwrap()
                .status,
            200
        );
    }
    // A client behind a proxy, over 6to4 (198.51.100.7) and over Teredo (the same address, inverted).
    for (name, form, truncated) in [
        ("sixtofour", "2002:c633:6407::1", "2002:c633:6400::"),
        (
            "teredo",
            "2001:0:4136:e378:8000:63bf:39cc:9bf8",
            "2001::39cc:9bff",
        ),
    ] {
        let resp = h1
            .send_blocking(
                envoy.http_addr(),
                &Req::get(&format!("/u/{name}"))
                    .authority("only.example")
                    .header("x-user", "carol")
                    .header("x-forwarded-for", form),
            )
            .unwrap();
        assert_eq!(resp.status, 200);
        let upstream_xff = resp.echo().header("x-forwarded-for").unwrap().to_string();
        assert!(
            upstream_xff.starts_with(&format!("{truncated}, ")),
            "{upstream_xff}"
        );
        let path = format!("/u/{name}");
        let r = envoy.access_log_record(&path, |v| v["path"] == path.as_str());
        assert_eq!(r["client_ip"], truncated, "{r}");
        assert_eq!(
            r["client"],
            pseudonym("client_ip", &[198, 51, 100, 7]),
            "{r}"
        );
        assert!(
            r["headers"]["x-forwarded-for"]
                .as_str()
                .unwrap()
                .starts_with(truncated),
            "{r}"
        );
    }
    // Header rate-limit keys ignore case: bob, Bob and BOB share one bucket of 3.
    let mut statuses = Vec::new();
    for user in ["bob", "Bob", "BOB", "bOb"] {
        let req = Req::get("/u/case")
            .authority("only.example")
            .header("x-user", user);
        statuses.push(h1.send_blocking(envoy.http_addr(), &req).unwrap().status);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);

    let lines = envoy.access_log_lines(11);
    let log = lines.join("\n");
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 11, "{log}");
    for needle in [secret, "6407", "39cc:9bf8", "198.51.100.7", "c633:6407"] {
        assert!(!log.contains(needle), "{needle} in the access log:\n{log}");
    }
    let reasons: Vec<&str> = records
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"no_route") && reasons.contains(&"bad_host"),
        "{reasons:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["path"] == "/health-report?token=REDACTED&page=REDACTED"),
        "{log}"
    );
    let referers: Vec<&str> = records
        .iter()
        .filter_map(|r| r["headers"]["referer"].as_str())
        .collect();
    assert_eq!(referers.len(), 2, "{log}");
    for r in referers {
        assert!(r.starts_with("https://a.example/?page=REDACTED"), "{r}");
        assert!(r.contains("https://b.example/?token=REDACTED"), "{r}");
    }
}
