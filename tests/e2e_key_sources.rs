//! Keys at run time through real Envoy (>= 1.36, V8): JWK Sets fetched by the plugin from a local
//! directory server through an Envoy cluster (`key_sources`), and Web Bot Auth agents verified against
//! their allow-listed directories. A key in the directory verifies; a rotation takes effect within one
//! refresh interval, with no restart; the server down or answering garbage keeps the last good set; a
//! request needing a set that never loaded gets 503 keys_unavailable; two workers make one fetch per
//! refresh between them; an agent origin outside the allow-list is refused with no fetch at all.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edgeward::keys::thumbprint;
use edgeward::signature::{SignParams, SigningKey};
use edgeward::testkit::TestRequest;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::rls::{add_cluster, cluster_yaml};
use support::{echo_server, exact_balance, Client, Envoy, EnvoyOpts, Response};

// ---------------------------------------------------------------------------------------------
// A key directory server: serves whatever the test sets, counts what it is asked.

/// What the directory answers.
#[derive(Clone)]
enum Answer {
    /// 200 with this body.
    Set(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// Closes every connection without an answer (as a server that is down to its clients).
    Down,
}

struct Directory {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Directory {
    fn start(answer: Answer) -> Directory {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, h, s) = (answer.clone(), hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &a, &h),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Directory {
            addr,
            answer,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection (Envoy's pool then opens another for the next fetch).
fn serve(mut conn: TcpStream, answer: &Mutex<Answer>, hits: &AtomicUsize) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    hits.fetch_add(1, Ordering::Relaxed);
    let answer = answer.lock().unwrap().clone();
    let response = match answer {
        Answer::Set(body) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/jwk-set+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        }
        Answer::Status(code) => {
            format!("HTTP/1.1 {code} Nope\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .into_bytes()
        }
        Answer::Down => return,
    };
    let _ = conn.write_all(&response);
}

// ---------------------------------------------------------------------------------------------
// Keys, sets, signed requests

fn signing_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn jwk(seed: u8, kid: Option<&str>) -> serde_json::Value {
    let x = URL_SAFE_NO_PAD.encode(signing_key(seed).verifying_key().as_bytes());
    let mut k = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
    if let Some(kid) = kid {
        k["kid"] = json!(kid);
    }
    k
}

fn jwks(keys: &[serde_json::Value]) -> Answer {
    Answer::Set(json!({ "keys": keys }).to_string().into_bytes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The raw HTTP/1.1 bytes of a test request.
fn raw(r: &TestRequest) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        r.method, r.path, r.authority
    );
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A GET to partners.test signed with ed25519 key `seed` under `key_id`.
fn partner_request(seed: u8, key_id: &str) -> Vec<u8> {
    let mut p = SignParams::new(
        key_id,
        SigningKey::Ed25519(Box::new(signing_key(seed))),
        now(),
    );
    p.https = false;
    raw(&TestRequest::get("partners.test", "/orders")
        .tls(None)
        .signed(&p))
}

/// A Web Bot Auth GET to bots.test by the agent holding key `seed`, naming `agent` (the header value).
fn bot_request(seed: u8, agent: &str) -> Vec<u8> {
    let key = signing_key(seed);
    let mut p = SignParams::new(
        thumbprint(&key.verifying_key()),
        SigningKey::Ed25519(Box::new(key)),
        now(),
    );
    p.https = false;
    p.expires = Some(now() + 60);
    p.tag = Some("web-bot-auth".into());
    p.alg = Some(edgeward::signature::Alg::Ed25519);
    p.components = vec![
        "@authority".into(),
        "\"signature-agent\";key=\"sig1\"".into(),
    ];
    raw(&TestRequest::get("bots.test", "/page")
        .tls(None)
        .header("signature-agent", agent)
        .signed(&p))
}

fn send(envoy: &Envoy, bytes: &[u8]) -> Response {
    Client::h1()
        .send_raw_blocking(envoy.http_addr(), bytes)
        .unwrap()
}

/// The status each worker answers `bytes` with: two connections open at once, which the listener's
/// exact balance hands to different workers (`start_envoy` runs two).
fn on_both_workers(envoy: &Envoy, bytes: &[u8]) -> [u16; 2] {
    let mut conns = [0, 1].map(|_| {
        let c = TcpStream::connect(envoy.http_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    });
    // Both accepted before either sends: the second goes to the worker without a connection.
    std::thread::sleep(Duration::from_millis(20));
    conns.each_mut().map(|c| {
        c.write_all(bytes).unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before a status line");
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
}

/// Waits for an access log record (the plugin's anonymized line) with this reason.
fn logged_reason(envoy: &Envoy, reason: &str) -> serde_json::Value {
    envoy.access_log_record(reason, |v| v["reason"] == reason)
}

/// Polls `f` every 50 ms until it holds or `limit` passes; how long it took.
fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The document and Envoy

const REFRESH_S: u64 = 4;

/// `partners` (JWKS, kid ids) on `keydir`, `agent_dir` (Web Bot Auth directory of
/// https://agent.test) on `agentdir`; both refresh every REFRESH_S with no jitter.
fn document() -> String {
    json!({
        "key_sources": {
            "partners": {"type": "jwks", "cluster": "keydir", "url": "http://keys.test/jwks.json",
                         "refresh_s": REFRESH_S, "jitter_s": 0, "timeout_ms": 1000},
            "agent_dir": {"type": "jwks", "cluster": "agentdir",
                          "url": "http://agent.test/.well-known/http-message-signatures-directory",
                          "refresh_s": REFRESH_S, "jitter_s": 0, "timeout_ms": 1000}
        },
        "policies": {
            "partners": {"signature": {"key_sources": ["partners"]}},
            "bots": {"signature": {"web_bot_auth": {"directories": {"https://agent.test": "agent_dir"}}}}
        },
        "routes": [
            {"host": "partners.test", "policy": "partners"},
            {"host": "bots.test", "policy": "bots"}
        ]
    })
    .to_string()
}

/// Envoy and its upstream (stopped when dropped).
struct Running {
    envoy: Envoy,
    _upstream: support::echo::EchoServer,
}

impl std::ops::Deref for Running {
    type Target = Envoy;
    fn deref(&self) -> &Envoy {
        &self.envoy
    }
}

fn start_envoy(keydir: SocketAddr, agentdir: SocketAddr) -> Running {
    let upstream = echo_server();
    let clusters = cluster_yaml("keydir", keydir.port(), false)
        + &cluster_yaml("agentdir", agentdir.port(), false);
    let opts = EnvoyOpts::new(upstream.addr())
        .policy(document())
        .concurrency(2)
        .edit(exact_balance)
        .edit(move |y| add_cluster(y, &clusters));
    let envoy = Envoy::start(&opts).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    Running {
        envoy,
        _upstream: upstream,
    }
}

/// Every one of `n` requests (new connections: both workers) gets `status`.
fn all(envoy: &Envoy, n: usize, bytes: &[u8], status: u16) -> bool {
    (0..n).all(|_| send(envoy, bytes).status == status)
}

// ---------------------------------------------------------------------------------------------

/// A key in the directory verifies; after the directory rotates (old key out, new key in) the old
/// key is refused and the new one accepted within one refresh interval, on both workers, with no
/// restart.
#[test]
fn a_rotation_takes_effect_within_one_refresh_interval() {
    let keys = Directory::start(jwks(&[jwk(1, Some("old"))]));
    let agents = Directory::start(jwks(&[]));
    let envoy = start_envoy(keys.addr, agents.addr);
    let loaded = until(Duration::from_secs(10), || {
        all(&envoy, 4, &partner_request(1, "old"), 200)
    });
    assert!(loaded.is_some(), "never loaded:\n{}", envoy.log());
    // The document's lint warnings are logged as it loads (`edgeward check` prints the same): both
    // key sources are named by http:// URLs here.
    for source in ["partners", "agent_dir"] {
        let line = format!("edgeward: policy document: warning: key_sources.{source}.url: the key set is named by an http:// URL");
        let seen = until(Duration::from_secs(5), || envoy.log().contains(&line));
        assert!(seen.is_some(), "no warning for {source}:\n{}", envoy.log());
    }
    let r = send(&envoy, &partner_request(1, "old"));
    assert_eq!(r.echo().header("x-edgeward-key-id"), Some("old"));
    assert_eq!(send(&envoy, &partner_request(2, "new")).status, 401);

    keys.set(jwks(&[jwk(2, Some("new"))]));
    let rotated = Instant::now();
    let took = until(Duration::from_secs(3 * REFRESH_S), || {
        on_both_workers(&envoy, &partner_request(2, "new")) == [200, 200]
            && on_both_workers(&envoy, &partner_request(1, "old")) == [401, 401]
    })
    .unwrap_or_else(|| panic!("no rotation:\n{}", envoy.log()));
    // Tolerance for a loaded machine's timers: the mechanism guarantees REFRESH_S (a fetch every
    // REFRESH_S - 1 s, a copy on every worker within 250 ms).
    assert!(
        took <= Duration::from_millis(REFRESH_S * 1000 + 500),
        "rotation took {took:?} (refresh interval {REFRESH_S} s)"
    );
    eprintln!(
        "rotation visible on both workers after {:?}",
        rotated.elapsed()
    );
    // Stays rotated.
    assert!(all(&envoy, 6, &partner_request(2, "new"), 200));
    assert!(all(&envoy, 6, &partner_request(1, "old"), 401));
}

/// The directory down (connections closed), answering 500, or answering garbage: the last good set
/// stays (the key still verifies), each failure is counted, and the log says so once per change of
/// state. A good set afterwards loads again.
#[test]
fn the_last_good_set_survives_a_down_or_garbage_directory() {
    let keys = Directory::start(jwks(&[jwk(1, Some("k1"))]));
    let agents = Directory::start(jwks(&[]));
    let envoy = start_envoy(keys.addr, agents.addr);
    assert!(
        until(Duration::from_secs(10), || all(
            &envoy,
            2,
            &partner_request(1, "k1"),
            200
        ))
        .is_some(),
        "never loaded:\n{}",
        envoy.log()
    );
    let stat = |name: &str| {
        envoy
            .stat(&format!("wasmcustom.edgeward.key_sources.partners.{name}"))
            .unwrap()
            .unwrap_or(0)
    };
    for (answer, counter) in [
        (Answer::Down, "failed"),
        (Answer::Status(500), "failed"),
        (
            Answer::Set(b"<html>not a key set</html>".to_vec()),
            "rejected",
        ),
        (
            Answer::Set(br#"{"keys": [{"kty": "OKP"#.to_vec()),
            "rejected",
        ),
    ] {
        let before = stat(counter);
        keys.set(answer);
        // At least one fetch failed (counted) and the set is still there.
        let seen = until(Duration::from_secs(3 * REFRESH_S), || {
            stat(counter) > before
        });
        assert!(seen.is_some(), "{counter} never counted:\n{}", envoy.log());
        assert!(all(&envoy, 4, &partner_request(1, "k1"), 200), "{counter}");
    }
    until(Duration::from_secs(3), || {
        envoy.log().contains("keeping the last good key set")
    });
    let log = envoy.log();
    let failures = log.matches("keeping the last good key set").count();
    // Loaded → stale once; every later failure is the same state: not logged again.
    assert_eq!(failures, 1, "{log}");
    keys.set(jwks(&[jwk(3, Some("k3"))]));
    assert!(
        until(Duration::from_secs(3 * REFRESH_S), || all(
            &envoy,
            4,
            &partner_request(3, "k3"),
            200
        ))
        .is_some(),
        "{}",
        envoy.log()
    );
    // The fetch's log line reaches the file a flush (50 ms) after the workers may already use the set.
    assert!(
        until(Duration::from_secs(5), || envoy
            .log()
            .matches("loaded 1 keys")
            .count()
            >= 2)
        .is_some(),
        "{}",
        envoy.log()
    );
    // Counts reach Envoy on the next tick.
    assert!(until(Duration::from_secs(3), || stat("changed") >= 2).is_some());
}

/// A request needing a source that never loaded: 503 keys_unavailable with Retry-After (the client
/// did nothing wrong), until the directory answers.
#[test]
fn keys_unavailable_until_the_first_set_loads() {
    let keys = Directory::start(Answer::Down);
    let agents = Directory::start(Answer::Status(404));
    let envoy = start_envoy(keys.addr, agents.addr);
    assert!(
        until(Duration::from_secs(5), || keys.hits() > 0).is_some(),
        "no fetch:\n{}",
        envoy.log()
    );
    let r = send(&envoy, &partner_request(1, "k1"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    let record = logged_reason(&envoy, "keys_unavailable");
    assert_eq!(record["status"], 503);
    let r = send(&envoy, &bot_request(1, r#"sig1="https://agent.test""#));
    assert_eq!(r.status, 503);
    assert!(
        until(Duration::from_secs(5), || envoy
            .log()
            .contains("no key set yet"))
        .is_some(),
        "{}",
        envoy.log()
    );
    keys.set(jwks(&[jwk(1, Some("k1"))]));
    // The first set serves every worker at once: from the first 200 on, neither worker answers 503
    // (a worker that has not loaded it yet reads it from shared data on the request, not a tick later).
    // (A probe's two requests may straddle the load: the one before it 503, the one after 200; the set
    // is stored before that 200 is sent, so the next probe must find it on both workers. A 200 followed
    // by a 503 within one probe is the failure itself.)
    let request = partner_request(1, "k1");
    let start = Instant::now();
    loop {
        let seen = on_both_workers(&envoy, &request);
        assert_ne!(seen, [200, 503], "{}", envoy.log());
        if seen.contains(&200) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", envoy.log());
    }
    assert_eq!(
        on_both_workers(&envoy, &request),
        [200, 200],
        "{}",
        envoy.log()
    );
}

/// Two workers, one fetch per refresh between them: over a window of several refresh intervals the
/// directory sees about one request per interval, not one per worker.
#[test]
fn two_workers_fetch_once_per_refresh() {
    let keys = Directory::start(jwks(&[jwk(1, Some("k1"))]));
    let agents = Directory::start(jwks(&[]));
    let envoy = start_envoy(keys.addr, agents.addr);
    assert!(until(Duration::from_secs(10), || all(
        &envoy,
        4,
        &partner_request(1, "k1"),
        200
    ))
    .is_some());
    let start_hits = keys.hits();
    let window = Duration::from_secs(4 * REFRESH_S);
    std::thread::sleep(window);
    let fetches = keys.hits() - start_hits;
    // A fetch every REFRESH_S - 1 s: 5 or 6 in the window; one per worker would be 10 or more.
    let expected = (window.as_secs() / (REFRESH_S - 1)) as usize;
    assert!(
        (expected - 1..=expected + 1).contains(&fetches),
        "{fetches} fetches in {window:?} (expected about {expected})"
    );
    // Both workers served verified requests meanwhile.
    assert!(all(&envoy, 6, &partner_request(1, "k1"), 200));
}

/// Web Bot Auth: an agent in the allow-list, its key in its directory: 200, the agent and its
/// thumbprint upstream; tampered: 401; an origin outside the allow-list: 401
/// signature_agent_unknown, and its server never sees a request; the client cannot send the agent
/// header itself.
#[test]
fn web_bot_auth_agents() {
    let keys = Directory::start(jwks(&[]));
    let agents = Directory::start(jwks(&[jwk(7, None), jwk(8, Some("eight"))]));
    let evil = Directory::start(jwks(&[jwk(9, None)]));
    let envoy = start_envoy(keys.addr, agents.addr);
    let agent = r#"sig1="https://agent.test""#;
    assert!(
        until(Duration::from_secs(10), || all(
            &envoy,
            2,
            &bot_request(7, agent),
            200
        ))
        .is_some(),
        "{}",
        envoy.log()
    );
    let r = send(&envoy, &bot_request(8, agent));
    assert_eq!(r.status, 200);
    let echoed = r.echo();
    assert_eq!(
        echoed.header("x-edgeward-agent"),
        Some("https://agent.test")
    );
    assert_eq!(
        echoed.header("x-edgeward-key-id"),
        Some(thumbprint(&signing_key(8).verifying_key()).as_str())
    );
    let record = envoy.access_log_record("the agent", |v| v.get("agent").is_some());
    assert_eq!(record["agent"], "https://agent.test");
    assert_eq!(record["decision"], "allow");

    // Tampered: one byte of the signature changed.
    let signed = String::from_utf8(bot_request(7, agent)).unwrap();
    let at = signed.find("signature: sig1=:").unwrap() + "signature: sig1=:".len();
    let flipped = if &signed[at..at + 1] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &signed[..at], &signed[at + 1..]);
    assert_eq!(send(&envoy, tampered.as_bytes()).status, 401);
    // A key that is not in the agent's directory.
    assert_eq!(send(&envoy, &bot_request(9, agent)).status, 401);

    // An agent outside the allow-list, whose directory is up and holds the key: never asked.
    let outside = format!(r#"sig1="http://{}""#, evil.addr);
    let r = send(&envoy, &bot_request(9, &outside));
    assert_eq!(r.status, 401);
    let record = logged_reason(&envoy, "signature_agent_unknown");
    assert_eq!(record["status"], 401);
    assert!(record.get("agent").is_none(), "{record}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(evil.hits(), 0, "the plugin fetched from a client's URL");

    // The agent header comes from the plugin only.
    let mut forged = String::from_utf8(bot_request(7, agent)).unwrap();
    forged = forged.replacen("\r\n", "\r\nx-edgeward-agent: https://agent.test\r\n", 1);
    assert_eq!(send(&envoy, forged.as_bytes()).status, 400);
    let unsigned =
        b"GET /page HTTP/1.1\r\nhost: bots.test\r\nx-edgeward-agent: https://agent.test\r\n\r\n";
    assert_eq!(send(&envoy, unsigned).status, 400);
}

/// Runs the edgeward command; its standard output (it must succeed).
fn edgeward(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    support::cli::ok(args, support::cli::NO_ENV, stdin)
}

/// Both ends with the command: the directory is what `edgeward jwks` prints for the agent's key, the
/// requests are what `edgeward sign --web-bot-auth` prints. Signed: 200 with the agent upstream; tampered
/// (the signature, the agent named, a signature parameter): 401.
#[test]
fn web_bot_auth_requests_signed_by_edgeward_sign() {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let dir = support::TempDir::new("wba-cli").unwrap();
    let pem_path = dir.path().join("agent.pem");
    let pem = signing_key(21)
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    std::fs::write(&pem_path, pem.as_bytes()).unwrap();
    let pem_arg = pem_path.to_str().unwrap();
    let directory = edgeward(&["jwks", pem_arg], b"");
    let keys = Directory::start(jwks(&[]));
    let agents = Directory::start(Answer::Set(directory));
    let envoy = start_envoy(keys.addr, agents.addr);
    let sign = |raw: &[u8]| {
        edgeward(
            &[
                "sign",
                "--web-bot-auth",
                "--signature-agent",
                "https://agent.test",
                "--private-key-file",
                pem_arg,
                "--scheme",
                "http",
                "--request",
                "-",
            ],
            raw,
        )
    };
    let request = b"GET /articles/1 HTTP/1.1\r\nHost: bots.test\r\nAccept: */*\r\n\r\n";
    let signed = sign(request);
    let thumb = String::from_utf8(edgeward(&["jwks", "--thumbprint", pem_arg], b""))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        until(Duration::from_secs(10), || send(&envoy, &signed).status
            == 200)
        .is_some(),
        "{}",
        envoy.log()
    );
    let echoed = send(&envoy, &signed).echo();
    assert_eq!(
        echoed.header("x-edgeward-agent"),
        Some("https://agent.test")
    );
    assert_eq!(echoed.header("x-edgeward-key-id"), Some(thumb.as_str()));

    let text = String::from_utf8(signed.clone()).unwrap();
    let at = text
        .find("Signature: sig1=:")
        .map(|i| i + "Signature: sig1=:".len());
    let at = at.or_else(|| {
        text.find("signature: sig1=:")
            .map(|i| i + "signature: sig1=:".len())
    });
    let at = at.unwrap_or_else(|| panic!("no signature in {text}"));
    let flipped = if &text[at..at + 1] == "A" { "B" } else { "A" };
    let tampered_signature = format!("{}{flipped}{}", &text[..at], &text[at + 1..]);
    let tampered_agent = text.replace(
        r#"sig1="https://agent.test""#,
        r#"sig1="https://agent.test/""#,
    );
    assert_ne!(tampered_agent, text);
    // (A host in other letter case or with its default port is the same @authority: RFC 9421 §2.2.3.)
    let tampered_expires = text.replace(";expires=", ";expires=1");
    assert_ne!(tampered_expires, text);
    for (what, bytes) in [
        ("signature", tampered_signature),
        ("Signature-Agent", tampered_agent),
        ("expires", tampered_expires),
    ] {
        let r = send(&envoy, bytes.as_bytes());
        assert_eq!(r.status, 401, "tampered {what}: {}", r.text());
    }
}
