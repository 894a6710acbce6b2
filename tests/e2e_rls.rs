//! Cluster-wide rate limits through real Envoy (>= 1.36, V8) and the development rate limit service
//! (rls-dev: tonic + Limitador, built here once per machine): two Envoys share one budget; a stopped
//! or silent service follows the failure mode within the timeout; a misconfigured cluster never
//! hangs a request; nothing reaches the upstream before the service answered.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use support::rls::{add_cluster, cluster_yaml, RlsServer};
use support::{echo_server, Client, Envoy, EnvoyOpts, Req, Response};

const DOMAIN: &str = "edgeward";

/// A document whose one policy has the given rate limits, with an `rls` section.
fn doc(rls: &str, limits: &str) -> String {
    format!(
        r#"{{"rls": {rls},
            "policies": {{"api": {{"rate_limits": {limits}}}}},
            "routes": [{{"path_prefix": "/open/", "policy": null}}, {{"policy": "api"}}]}}"#
    )
}

/// Limitador limits (dev server file) for one edgeward limit, keyed like the README shows.
fn limitador(name: &str, max: u64, seconds: u64) -> String {
    format!(
        r#"[{{"namespace": "{DOMAIN}", "name": "{name}", "max_value": {max}, "seconds": {seconds},
             "conditions": ["descriptors[0].limit == '{name}'"],
             "variables": ["descriptors[0].key"]}}]"#
    )
}

fn start_rls(limits: &str, delay_ms: u64) -> RlsServer {
    RlsServer::start(limits, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), delay_ms)
        .unwrap_or_else(|e| panic!("rls-dev: {e}"))
}

/// Envoy with `policy` and a `ratelimit` cluster (HTTP/2 unless `http2` is false) on `rls_port`.
fn start_envoy(upstream: SocketAddr, policy: &str, rls_port: u16, http2: bool) -> Envoy {
    let cluster = cluster_yaml("ratelimit", rls_port, http2);
    let opts = EnvoyOpts::new(upstream)
        .policy(policy)
        .concurrency(2)
        .edit(move |y| add_cluster(y, &cluster));
    Envoy::start(&opts).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
}

fn get(envoy: &Envoy, path: &str) -> Response {
    Client::h1()
        .send_blocking(envoy.http_addr(), &Req::get(path).authority("api.test"))
        .unwrap()
}

/// `n` concurrent requests for `path`, alternating between two addresses.
fn burst(addrs: [SocketAddr; 2], n: usize, path: &'static str) -> Vec<Response> {
    support::block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let addr = addrs[i % 2];
                tokio::spawn(async move {
                    Client::h1()
                        .send(addr, &Req::get(path).authority("api.test"))
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    })
}

/// The fail-open counter, once it reads `want` (counts reach Envoy within a second).
fn failed_open(envoy: &Envoy, want: u64) -> u64 {
    envoy
        .stat_eventually(
            "wasmcustom.edgeward.rate_limit.remote_failed_open",
            Some(want),
        )
        .unwrap_or(0)
}

#[test]
fn two_envoys_share_one_budget() {
    const LIMIT: usize = 6;
    let rls = start_rls(&limitador("cluster-total", LIMIT as u64, 300), 0);
    let upstream = echo_server();
    // A generous timeout: this test is about the shared count, not about latency on a busy machine.
    let policy = doc(
        r#"{"cluster": "ratelimit", "domain": "edgeward", "timeout_ms": 5000}"#,
        r#"[{"name": "cluster-total", "key": "route", "limit": 6, "window_s": 300, "backend": "rls"}]"#,
    );
    let a = start_envoy(upstream.addr(), &policy, rls.addr().port(), true);
    let b = start_envoy(upstream.addr(), &policy, rls.addr().port(), true);
    // 3×limit concurrent requests, alternating between the two Envoys (each with 2 workers).
    let responses = burst([a.http_addr(), b.http_addr()], 3 * LIMIT, "/burst");
    let ok: Vec<&Response> = responses.iter().filter(|r| r.status == 200).collect();
    let limited: Vec<&Response> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        ok.len(),
        LIMIT,
        "statuses: {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(limited.len(), 2 * LIMIT);
    assert_eq!(
        upstream.requests(),
        LIMIT as u64,
        "only admitted requests reach the upstream"
    );
    for r in &limited {
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry), "Retry-After {retry}");
        // Limitador's headers, forwarded from response_headers_to_add.
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert!(r.header("x-ratelimit-limit").unwrap().starts_with("6"));
    }
    for r in &ok {
        assert!(
            r.header("x-ratelimit-remaining").is_some(),
            "{:?}",
            r.headers
        );
    }
    // Both Envoys took part, on both sides of the decision.
    for (envoy, name) in [(&a, "a"), (&b, "b")] {
        let read = |n: &str| envoy.stat(n).unwrap().unwrap_or(0);
        // Counts reach Envoy's counters within a second of the requests.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (allowed, denied) = loop {
            let allowed = read("wasmcustom.edgeward.api.allowed");
            let denied = read("wasmcustom.edgeward.api.denied.rate_limited");
            if allowed + denied >= (3 * LIMIT / 2) as u64 || Instant::now() > deadline {
                break (allowed, denied);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(allowed + denied, (3 * LIMIT / 2) as u64, "envoy {name}");
    }
}

#[test]
fn stopped_or_silent_service_follows_the_failure_mode_within_the_timeout() {
    const TIMEOUT_MS: u64 = 300;
    // Well above any scheduling hiccup, well below "hangs".
    const MARGIN: Duration = Duration::from_millis(2500);
    let mut rls = start_rls(&limitador("per-client", 1000, 60), 0);
    let port = rls.addr().port();
    let upstream = echo_server();
    let limits = r#"[{"name": "per-client", "key": "client_ip", "limit": 1000, "window_s": 60, "backend": "rls"}]"#;
    let rls_section = |mode: &str| {
        format!(
            r#"{{"cluster": "ratelimit", "domain": "edgeward", "timeout_ms": {TIMEOUT_MS}, "failure_mode": "{mode}"}}"#
        )
    };
    let deny = start_envoy(
        upstream.addr(),
        &doc(&rls_section("deny"), limits),
        port,
        true,
    );
    let allow = start_envoy(
        upstream.addr(),
        &doc(&rls_section("allow"), limits),
        port,
        true,
    );
    // Service up: both pass.
    assert_eq!(get(&deny, "/a").status, 200);
    assert_eq!(get(&allow, "/a").status, 200);
    assert_eq!(failed_open(&allow, 0), 0);
    let reached = upstream.requests();

    rls.stop();
    // Connection refused: deny answers 503 rate_limit_unavailable at once; allow forwards and counts.
    let t = Instant::now();
    let r = get(&deny, "/b");
    let took = t.elapsed();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        took < Duration::from_millis(TIMEOUT_MS) + MARGIN,
        "{took:?}"
    );
    assert_eq!(
        upstream.requests(),
        reached,
        "a denied request never reaches the upstream"
    );
    for i in 1..=3 {
        assert_eq!(get(&allow, "/c").status, 200);
        assert_eq!(failed_open(&allow, i), i);
    }
    assert_eq!(upstream.requests(), reached + 3);
    let denied = deny.stat_eventually(
        "wasmcustom.edgeward.api.denied.rate_limit_unavailable",
        Some(1),
    );
    assert_eq!(denied, Some(1));

    // A service that accepts connections and never answers: the call times out.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let t = Instant::now();
    let r = get(&deny, "/d");
    let took = t.elapsed();
    assert_eq!(r.status, 503);
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS / 2),
        "answered before the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_millis(TIMEOUT_MS) + MARGIN,
        "{took:?}"
    );
    let t = Instant::now();
    assert_eq!(get(&allow, "/d").status, 200);
    assert!(t.elapsed() < Duration::from_millis(TIMEOUT_MS) + MARGIN);
    assert_eq!(failed_open(&allow, 4), 4);
    drop(silent);
    // Routes without a policy never call the service.
    assert_eq!(get(&deny, "/open/x").status, 200);
}

#[test]
fn misconfigured_clusters_never_hang_or_trap() {
    let rls = start_rls(&limitador("per-client", 1000, 60), 0);
    let upstream = echo_server();
    let limits = r#"[{"name": "per-client", "key": "client_ip", "limit": 1000, "window_s": 60, "backend": "rls"}]"#;
    // An unknown cluster (Envoy: ParseFailure), and an HTTP/1.1 cluster (protocol error at run time
    // although Envoy accepts the config).
    let unknown = start_envoy(
        upstream.addr(),
        &doc(
            r#"{"cluster": "no-such-cluster", "domain": "edgeward", "timeout_ms": 1000}"#,
            limits,
        ),
        rls.addr().port(),
        true,
    );
    let h1 = start_envoy(
        upstream.addr(),
        &doc(
            r#"{"cluster": "ratelimit", "domain": "edgeward", "timeout_ms": 1000}"#,
            limits,
        ),
        rls.addr().port(),
        false,
    );
    for envoy in [&unknown, &h1] {
        for _ in 0..3 {
            let t = Instant::now();
            let r = get(envoy, "/x");
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        }
        // The VM is alive: an unchecked route still works on every worker.
        for _ in 0..4 {
            assert_eq!(get(envoy, "/open/y").status, 200);
        }
        assert!(!envoy.log().contains("panic"), "{}", envoy.log());
    }
    assert_eq!(upstream.requests(), 8);
}

#[test]
fn nothing_reaches_the_upstream_before_the_answer() {
    const DELAY_MS: u64 = 1500;
    let rls = start_rls(&limitador("per-route", 3, 300), DELAY_MS);
    let upstream = echo_server();
    let policy = doc(
        r#"{"cluster": "ratelimit", "domain": "edgeward", "timeout_ms": 8000}"#,
        r#"[{"name": "local-first", "key": "route", "limit": 2, "window_s": 3600},
            {"name": "per-route", "key": "route", "limit": 3, "window_s": 300, "backend": "rls"}]"#,
    );
    // A direct_response route (as the benchmark uses) behind the same filter chain.
    let cluster = cluster_yaml("ratelimit", rls.addr().port(), true);
    let opts = EnvoyOpts::new(upstream.addr())
        .policy(policy)
        .edit(move |y| {
            assert!(y.contains("              - name: partner-api\n"));
            let y = y.replacen(
                "              - name: partner-api\n",
                "              - name: direct\n                match: { prefix: /direct }\n                direct_response: { status: 200, body: { inline_string: \"direct\" } }\n              - name: partner-api\n",
                1,
            );
            add_cluster(y, &cluster)
        });
    let envoy = Envoy::start(&opts).unwrap_or_else(|log| panic!("{log}"));
    let addr = envoy.http_addr();

    // A POST with a body, paused in the header callback while the service thinks.
    let pending = std::thread::spawn(move || {
        Client::h1()
            .send_blocking(
                addr,
                &Req::post("/slow", "payload-bytes").authority("api.test"),
            )
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(DELAY_MS / 2));
    assert_eq!(
        upstream.requests(),
        0,
        "the request reached the upstream before the answer"
    );
    let r = pending.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(upstream.requests(), 1);
    let echoed = r.echo();
    assert_eq!(echoed.body, "payload-bytes", "the body survives the pause");

    // The direct_response route: the answer arrives, then Envoy's router replies itself.
    let r = get(&envoy, "/direct");
    assert_eq!((r.status, r.text().as_str()), (200, "direct"));
    // The local limit (2) is spent: answered at once, without asking the service (which would
    // take DELAY_MS and add its X-RateLimit headers), and never forwarded.
    let t = Instant::now();
    let r = get(&envoy, "/slow");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert!(r.header("ratelimit").unwrap().contains("local-first"));
    assert_eq!(
        r.header("x-ratelimit-remaining"),
        None,
        "the service was asked"
    );
    assert!(
        t.elapsed() < Duration::from_millis(DELAY_MS),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(upstream.requests(), 1);
}

#[test]
fn eval_shows_the_descriptors_for_the_engine_config() {
    let dir = support::TempDir::new("rls-eval").unwrap();
    let doc_path = dir.path().join("doc.json");
    std::fs::write(
        &doc_path,
        doc(
            r#"{"cluster": "ratelimit", "domain": "edgeward"}"#,
            r#"[{"name": "per-client", "key": "client_ip", "limit": 100, "window_s": 60, "backend": "rls"},
                {"name": "per-user", "key": "header:x-user-id", "limit": 10, "window_s": 1, "backend": "rls"}]"#,
        ),
    )
    .unwrap();
    let req_path = dir.path().join("req.http");
    std::fs::write(&req_path, "GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .arg("eval")
        .arg(&doc_path)
        .arg("--request")
        .arg(&req_path)
        .args(["--client-ip", "2001:db8:1:2::99"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["rate_limit_service"],
        serde_json::json!({
            "domain": "edgeward",
            "descriptors": [
                [["limit", "per-client"], ["key", "2001:db8:1:2::/64"]],
                [["limit", "per-user"], ["key", "-"]]
            ]
        })
    );
    // Routes without remote limits show none.
    std::fs::write(&req_path, "GET /open/x HTTP/1.1\r\nHost: api.test\r\n\r\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .arg("eval")
        .arg(&doc_path)
        .arg("--request")
        .arg(&req_path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["rate_limit_service"].is_null(), "{v}");
}

/// A private redis-server (Debian's) on a free loopback port, killed by pid on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = support::free_port(false).unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it: apt-get install redis-server)");
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many of `responses` have each status: (200s, 429s).
fn passed_and_limited(responses: &[Response]) -> (usize, usize) {
    let count = |status| responses.iter().filter(|r| r.status == status).count();
    (count(200), count(429))
}

/// The Redis variant of the dev server (`rls-dev/build-redis.sh`: Limitador's Redis storage, without
/// RocksDB), in a private redis-server (scripts/test.sh installs Debian's). Each dev server sits
/// behind its own Envoy; every pair shares counters through the one Redis.
///
/// - Limitador's default admission (`check_rate_limited_and_update`, as limitador-server answers):
///   requests one at a time, alternating between the two Envoys, share one budget exactly. (Not
///   under concurrency: it reads, then increments, two round trips to Redis, so a burst overshoots.)
/// - `--atomic` (Limitador's `reserve`, one Lua script in Redis): a concurrent burst over both
///   Envoys gets exactly the limit through, and a limit of 1 (a nonce's "once per window") exactly
///   one of 20 simultaneous identical requests.
#[test]
fn two_dev_servers_share_one_budget_through_redis() {
    const LIMIT: usize = 6;
    let bin = support::rls::rls_dev_redis_bin();
    let redis = Redis::start();
    let url = redis.url();
    // One limit per path, so each part has its own counter.
    let parts = [("seq", LIMIT), ("burst", LIMIT), ("once", 1)];
    let limits: Vec<String> = parts
        .iter()
        .map(|(name, max)| {
            let list = limitador(name, *max as u64, 300);
            list.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .collect();
    let limits = format!("[{}]", limits.join(","));
    let policies: Vec<String> = parts
        .iter()
        .map(|(name, max)| {
            format!(r#""{name}": {{"rate_limits": [{{"name": "{name}", "key": "route", "limit": {max}, "window_s": 300, "backend": "rls"}}]}}"#)
        })
        .collect();
    let routes: Vec<String> = parts
        .iter()
        .map(|(name, _)| format!(r#"{{"path_prefix": "/{name}", "policy": "{name}"}}"#))
        .collect();
    let policy = format!(
        r#"{{"rls": {{"cluster": "ratelimit", "domain": "edgeward", "timeout_ms": 5000}},
            "policies": {{{}}}, "routes": [{}]}}"#,
        policies.join(","),
        routes.join(",")
    );
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = |extra: &[&str]| {
        let args: Vec<&str> = ["--redis", url.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        RlsServer::start_with(&bin, &limits, any, 0, &args).unwrap()
    };
    let upstream = echo_server();

    // Check, then update: sequential requests share the budget.
    let (rls1, rls2) = (server(&[]), server(&[]));
    let a = start_envoy(upstream.addr(), &policy, rls1.addr().port(), true);
    let b = start_envoy(upstream.addr(), &policy, rls2.addr().port(), true);
    let statuses: Vec<u16> = (0..3 * LIMIT)
        .map(|i| get(if i % 2 == 0 { &a } else { &b }, "/seq").status)
        .collect();
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    assert_eq!((count(200), count(429)), (LIMIT, 2 * LIMIT), "{statuses:?}");
    assert_eq!(upstream.requests(), LIMIT as u64);
    drop((a, b, rls1, rls2));

    // Atomic: concurrent requests too.
    let (rls1, rls2) = (server(&["--atomic"]), server(&["--atomic"]));
    let a = start_envoy(upstream.addr(), &policy, rls1.addr().port(), true);
    let b = start_envoy(upstream.addr(), &policy, rls2.addr().port(), true);
    let addrs = [a.http_addr(), b.http_addr()];
    let responses = burst(addrs, 3 * LIMIT, "/burst");
    assert_eq!(passed_and_limited(&responses), (LIMIT, 2 * LIMIT));
    let responses = burst(addrs, 20, "/once");
    assert_eq!(passed_and_limited(&responses), (1, 19));
    assert_eq!(upstream.requests(), (2 * LIMIT + 1) as u64);
    drop(redis);
}

/// Gives the TLS listener its own copy of the wasm filter with the document `quoted` (a JSON string):
/// a second plugin configuration, so Envoy runs a second root context in the same VM (same vm_id).
fn second_configuration(yaml: &str, quoted: &str) -> String {
    let start = yaml
        .find("http_filters: &http_filters\n")
        .map(|i| i + "http_filters: &http_filters\n".len())
        .unwrap();
    let end = start + yaml[start..].find("route_config: &route_config").unwrap();
    let end = yaml[..end].rfind('\n').unwrap() + 1;
    let block: String = yaml[start..end]
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("value: ") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}value: {quoted}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(
        block.contains(quoted),
        "no configuration value in the filter block"
    );
    let out = yaml.replacen(
        "http_filters: *http_filters\n",
        &format!("http_filters:\n{block}"),
        1,
    );
    assert_ne!(out, yaml, "no listener reuses the filter block");
    out
}

/// Two plugin configurations in one VM (the plain listener's document and the TLS listener's: two root
/// contexts on the one worker) each have two requests waiting on the rate limit service at the same
/// time, twice: each answer must reach its own request while the others' calls are still pending. (Envoy 1.40 numbers the
/// calls across the VM, so the tokens differ here; the adapter keys calls by root and token for hosts
/// that number each root on its own, which this Envoy cannot show.)
#[test]
fn two_configurations_in_one_vm_get_their_own_answers() {
    const DELAY_MS: u64 = 600;
    let rls = start_rls(&limitador("per-route", 1_000_000, 60), DELAY_MS);
    let upstream = echo_server();
    let rls_section = r#"{"cluster": "ratelimit", "domain": "edgeward", "timeout_ms": 8000}"#;
    let limits = r#"[{"name": "per-route", "key": "route", "limit": 1000000, "window_s": 60, "backend": "rls"}]"#;
    let policy_a = doc(rls_section, limits);
    // Another document (one more route entry, never matched): another root context.
    let policy_b = policy_a.replacen(
        r#""routes": ["#,
        r#""routes": [{"path_prefix": "/never/", "policy": null}, "#,
        1,
    );
    assert_ne!(policy_a, policy_b);
    let quoted_b = serde_json::to_string(&policy_b).unwrap();
    let cluster = cluster_yaml("ratelimit", rls.addr().port(), true);
    let opts = EnvoyOpts::new(upstream.addr())
        .policy(policy_a)
        .concurrency(1)
        .edit(move |y| add_cluster(y, &cluster))
        .edit(move |y| second_configuration(&y, &quoted_b));
    let envoy = Envoy::start(&opts).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    let (http, https) = (envoy.http_addr(), envoy.https_addr());
    for round in 0..2 {
        let started = Instant::now();
        // Two requests per configuration at once: each root holds two calls, the VM four.
        let responses = support::block_on(async {
            let req = Req::get("/burst").authority("api.test");
            let (plain, tls) = (Client::h1(), Client::h1().tls(support::Tls::V1_3));
            let (a, b, c, d) = tokio::join!(
                plain.send(http, &req),
                tls.send(https, &req),
                plain.send(http, &req),
                tls.send(https, &req)
            );
            [a, b, c, d]
        });
        let elapsed = started.elapsed();
        for r in responses {
            let r = r.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(r.status, 200, "round {round}");
            assert!(
                r.header("x-ratelimit-remaining").is_some(),
                "{:?}",
                r.headers
            );
        }
        // All waited for the service, at the same time (one service delay, not several, no timeout).
        assert!(
            elapsed >= Duration::from_millis(DELAY_MS)
                && elapsed < Duration::from_millis(2 * DELAY_MS + 1500),
            "round {round}: {elapsed:?}"
        );
    }
    assert_eq!(upstream.requests(), 8);
    // No request fell back on the failure mode.
    assert_eq!(
        envoy
            .stat("wasmcustom.edgeward.rate_limit.remote_failed_open")
            .unwrap()
            .unwrap_or(0),
        0
    );
}

/// A signed request to `path`, signed now by `partner-a` (SECRET) with `nonce`, over method, authority,
/// path and query.
fn signed_get(path: &str, nonce: &str) -> Req {
    use edgeward::http1::parse_http_request;
    use edgeward::signature::{sign_request, SignParams, SigningKey};
    let raw = format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    let parsed = parse_http_request(raw.as_bytes()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut params = SignParams::new("partner-a", SigningKey::hmac(SECRET).unwrap(), now);
    params.nonce = Some(nonce.to_string());
    params.components = ["@method", "@authority", "@path", "@query"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut req = Req::get(path).authority("api.example.com");
    for (k, v) in sign_request(&parsed, &params).unwrap().headers() {
        req = req.header(&k, &v);
    }
    req
}

const SECRET: &[u8; 32] = b"fleet-e2e-hmac-secret-32-bytes!!";

/// The nonce's limit (1 per key id and nonce, for the signature's max_age_s) and a remote rate limit
/// on the second descriptor, as a user deploys them in Limitador.
fn nonce_limits(max_age_s: u64) -> String {
    format!(
        r#"[{{"namespace": "{DOMAIN}", "name": "edgeward.nonce", "max_value": 1, "seconds": {max_age_s},
             "conditions": ["descriptors[0].limit == 'edgeward.nonce'"],
             "variables": ["descriptors[0].key", "descriptors[0].nonce"]}},
            {{"namespace": "{DOMAIN}", "name": "per-partner", "max_value": 1000, "seconds": 60,
             "conditions": ["size(descriptors) > 1 && descriptors[1].limit == 'per-partner'"],
             "variables": ["descriptors[1].key"]}}]"#
    )
}

fn nonce_doc(timeout_ms: u64, failure_mode: &str) -> String {
    format!(
        r#"{{"rls": {{"cluster": "ratelimit", "domain": "{DOMAIN}", "timeout_ms": {timeout_ms}, "failure_mode": "{failure_mode}"}},
            "policies": {{"partner": {{
              "signature": {{
                "keys": [{{"id": "partner-a", "alg": "hmac-sha256", "secret": {{"base64": "{}"}}}}],
                "nonce": "required", "nonce_scope": "cluster", "max_age_s": 300
              }},
              "rate_limits": [{{"name": "per-partner", "key": "key_id", "limit": 1000, "window_s": 60, "backend": "rls"}}]
            }}}},
            "routes": [{{"policy": "partner"}}]}}"#,
        {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(SECRET)
        }
    )
}

/// Replay protection across Envoys (`nonce_scope: "cluster"`): two Envoys, each with its own replay
/// table, share one development rate limit service on Redis (`--atomic`). A signed request accepted by
/// Envoy 1 is refused by Envoy 2 as replayed; 20 simultaneous copies of one signed request spread over
/// both get exactly one through; the replay to the same Envoy never reaches the service.
#[test]
fn a_nonce_is_used_once_across_envoys_through_the_service() {
    let bin = support::rls::rls_dev_redis_bin();
    let redis = Redis::start();
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let rls = RlsServer::start_with(
        &bin,
        &nonce_limits(300),
        any,
        0,
        &["--redis", &redis.url(), "--atomic"],
    )
    .unwrap();
    let upstream = echo_server();
    let policy = nonce_doc(5000, "deny");
    let a = start_envoy(upstream.addr(), &policy, rls.addr().port(), true);
    let b = start_envoy(upstream.addr(), &policy, rls.addr().port(), true);
    let send =
        |envoy: &Envoy, req: &Req| Client::h1().send_blocking(envoy.http_addr(), req).unwrap();

    let first = signed_get("/orders/1", "fleet-n1");
    let ok = send(&a, &first);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.echo().header("x-edgeward-key-id"), Some("partner-a"));
    let replay = send(&b, &first);
    assert_eq!(replay.status, 401, "Envoy 2: {}", replay.text());
    let record = b.access_log_record("/orders/1", |v| v["path"] == "/orders/1");
    assert_eq!(record["reason"], "signature_replayed", "{record}");
    // A replay to the Envoy that saw it: its own table answers.
    assert_eq!(send(&a, &first).status, 401);

    // 20 simultaneous copies of one signed request, alternating between the two Envoys.
    let copy = signed_get("/orders/2", "fleet-n2");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (envoy, copy) = (if i % 2 == 0 { &a } else { &b }, &copy);
                s.spawn(move || send(envoy, copy).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let passed = statuses.iter().filter(|&&s| s == 200).count();
    let replayed = statuses.iter().filter(|&&s| s == 401).count();
    assert_eq!((passed, replayed), (1, 19), "{statuses:?}");
    drop(redis);
}

/// The bound the README states for limitador-server, whose `ShouldRateLimit` checks, then updates (the
/// dev server's default admission, on Redis): 20 simultaneous copies of one signed request spread over two
/// Envoys get at least one and at most two through (one per Envoy: each Envoy's own table lets one
/// copy reach the service), however the service's two round trips interleave. Run three times.
#[test]
fn without_atomic_admission_a_burst_passes_at_most_once_per_envoy() {
    let bin = support::rls::rls_dev_redis_bin();
    let redis = Redis::start();
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let rls = RlsServer::start_with(&bin, &nonce_limits(300), any, 0, &["--redis", &redis.url()])
        .unwrap();
    let upstream = echo_server();
    let policy = nonce_doc(5000, "deny");
    let a = start_envoy(upstream.addr(), &policy, rls.addr().port(), true);
    let b = start_envoy(upstream.addr(), &policy, rls.addr().port(), true);
    for round in 0..3 {
        let copy = signed_get("/orders/3", &format!("burst-{round}"));
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let (envoy, copy) = (if i % 2 == 0 { &a } else { &b }, &copy);
                    s.spawn(move || {
                        Client::h1()
                            .send_blocking(envoy.http_addr(), copy)
                            .unwrap()
                            .status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let passed = statuses.iter().filter(|&&s| s == 200).count();
        let replayed = statuses.iter().filter(|&&s| s == 401).count();
        println!("round {round}: {passed} of 20 passed without --atomic");
        assert!((1..=2).contains(&passed), "{statuses:?}");
        assert_eq!(passed + replayed, 20, "{statuses:?}");
    }
    drop(redis);
}

/// The service down: the configured failure mode within the timeout (`deny`: 503; `allow`: through,
/// counted), and the local table still catches a replay to the same Envoy.
#[test]
fn the_nonce_service_down_follows_the_failure_mode() {
    const TIMEOUT_MS: u64 = 300;
    // A port nobody listens on.
    let dead = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let upstream = echo_server();
    let deny = start_envoy(upstream.addr(), &nonce_doc(TIMEOUT_MS, "deny"), port, true);
    let allow = start_envoy(upstream.addr(), &nonce_doc(TIMEOUT_MS, "allow"), port, true);
    let send = |envoy: &Envoy, req: &Req| {
        let started = Instant::now();
        let resp = Client::h1().send_blocking(envoy.http_addr(), req).unwrap();
        (resp, started.elapsed())
    };
    let (resp, took) = send(&deny, &signed_get("/down/1", "down-1"));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(took < Duration::from_millis(TIMEOUT_MS + 2500), "{took:?}");
    let req = signed_get("/down/2", "down-2");
    let (resp, _) = send(&allow, &req);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(failed_open(&allow, 1), 1);
    let (again, _) = send(&allow, &req);
    assert_eq!(
        again.status, 401,
        "the local table still refuses the replay"
    );
}
