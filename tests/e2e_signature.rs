//! Issue 4 (signed requests) through a real Envoy (`--concurrency 2`): requests signed by the
//! `edgeward sign` binary are verified by the plugin; every tampering, malformed header, replay,
//! expired key and oversized body is refused before anything reaches the upstream, and the
//! verified key id (only that one) reaches the upstream.
//!
//! Most tests share one Envoy (started on first use, stopped when the last test using it ends);
//! the replay test runs its own so that its per-worker connection counts are its own. Requests
//! that must be refused carry a unique path, and the echo upstream records every request head it
//! receives, so "never reached the upstream" is checked against what the upstream actually saw.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use support::{
    echo, exact_balance, uniq, worker_connections, Client, Envoy, EnvoyOpts, Req, Response,
    TempDir, Tls,
};

// ---------------------------------------------------------------------------------------------
// Keys and the policy document

/// 32-byte HMAC secrets (the minimum the issue allows).
const SECRET_A: [u8; 32] = *b"partner-a secret, 32 bytes long!";
const SECRET_B: [u8; 32] = *b"partner-b secret, 32 bytes long!";
const SECRET_ROT_OLD: [u8; 32] = *b"rot: the retired key, 32 bytes!!";
const SECRET_ROT_NEW: [u8; 32] = *b"rot: the successor key, 32 byte!";
const SECRET_EARLY: [u8; 32] = *b"early: valid only from tomorrow!";
/// Seed of the ed25519 test key (the client's private key; the edge only gets the public key).
const ED25519_SEED: [u8; 32] = [7; 32];

/// The body size limit of the `/b/` policy.
const MAX_BODY: usize = 1024;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ed25519_pems() -> (String, String) {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let sk = ed25519_dalek::SigningKey::from_bytes(&ED25519_SEED);
    let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = sk
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    (private, public)
}

/// Environment for Envoy and for the CLI (env secrets are base64, like `{"base64": ...}`).
fn secret_env() -> Vec<(String, String)> {
    vec![
        ("PARTNER_A_KEY".to_string(), b64(&SECRET_A)),
        ("PARTNER_A_KEY_NEXT".to_string(), b64(&SECRET_ROT_NEW)),
    ]
}

/// The document: `/h/` signs the head only, `/b/` also the body (Content-Digest, 1 KiB at most),
/// `/n/` requires a nonce, `/q/` is `/h/` without the key id for the upstream (`upstream_key_id: false`),
/// `/open/` has a policy without a signature section, `/null/` no policy.
/// Key `rot` was rotated 10 minutes before `now`; key `early` becomes valid tomorrow.
fn document(now: u64) -> String {
    let (_, public_pem) = ed25519_pems();
    let keys = json!([
        { "id": "partner-a", "alg": "hmac-sha256", "secret": { "env": "PARTNER_A_KEY" } },
        { "id": "partner-b", "alg": "hmac-sha256", "secret": { "base64": b64(&SECRET_B) } },
        { "id": "mobile-app", "alg": "ed25519", "public_key": public_pem },
        { "id": "rot", "alg": "hmac-sha256", "secret": { "base64": b64(&SECRET_ROT_OLD) },
          "not_after": now - 600 },
        { "id": "rot", "alg": "hmac-sha256", "secret": { "env": "PARTNER_A_KEY_NEXT" },
          "not_before": now - 600 },
        { "id": "early", "alg": "hmac-sha256", "secret": { "base64": b64(&SECRET_EARLY) },
          "not_before": now + 86_400 },
    ]);
    json!({
        // Query values as sent in the records these tests look up by path (privacy is e2e_log's).
        "log": { "keep_query": ["*"] },
        "policies": {
            "head": { "signature": {
                "keys": keys,
                "components": ["@method", "@authority", "@path", "@query"],
            } },
            "body": { "signature": {
                "keys": keys,
                "components": ["@method", "@authority", "@path", "@query", "content-digest"],
                "max_body_bytes": MAX_BODY,
            } },
            "nonce": { "signature": {
                "keys": keys,
                "components": ["@method", "@authority", "@path", "@query"],
                "nonce": "required",
            } },
            "quiet": { "signature": {
                "keys": keys,
                "components": ["@method", "@authority", "@path", "@query"],
                "upstream_key_id": false,
            } },
            "open": {},
        },
        "routes": [
            { "path_prefix": "/h/", "policy": "head" },
            { "path_prefix": "/q/", "policy": "quiet" },
            { "path_prefix": "/b/", "policy": "body" },
            { "path_prefix": "/n/", "policy": "nonce" },
            { "path_prefix": "/null/", "policy": null },
            { "path_prefix": "/", "policy": "open" },
        ],
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// One Envoy shared by the tests of this file

struct Fixture {
    // Dropped in this order: Envoy first, then the upstream, then the document file.
    envoy: Envoy,
    echo: echo::EchoServer,
    doc_path: std::path::PathBuf,
    _dir: TempDir,
}

fn start_fixture() -> Fixture {
    let echo = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let doc = document(unix_now());
    let dir = TempDir::new("sig-doc").unwrap();
    let doc_path = dir.path().join("policy.json");
    std::fs::write(&doc_path, &doc).unwrap();
    let mut opts = EnvoyOpts::new(echo.addr()).policy(doc).concurrency(2);
    for (k, v) in secret_env() {
        opts = opts.env(k, v);
    }
    let envoy = Envoy::start(&opts).unwrap_or_else(|log| panic!("{log}"));
    Fixture {
        envoy,
        echo,
        doc_path,
        _dir: dir,
    }
}

/// The shared Envoy: started by the first test that needs it, stopped (by pid) when the last
/// test holding it ends.
fn fixture() -> Arc<Fixture> {
    static SLOT: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
    let mut slot = SLOT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = slot.upgrade() {
        return f;
    }
    let f = Arc::new(start_fixture());
    *slot = Arc::downgrade(&f);
    f
}

// ---------------------------------------------------------------------------------------------
// Requests, signing, checking

fn raw_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n").into_bytes()
}

fn raw_post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Runs `edgeward sign ARGS --request -` on `raw`; returns the signed request bytes.
fn sign(raw: &[u8], args: &[&str]) -> Vec<u8> {
    let args: Vec<&str> = ["sign"]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--request", "-"])
        .collect();
    support::cli::ok(&args, secret_env(), raw)
}

/// Signs as partner-a, the secret read from the environment like a real client would.
fn sign_a(raw: &[u8]) -> Vec<u8> {
    sign(
        raw,
        &["--key-id", "partner-a", "--secret-env", "PARTNER_A_KEY"],
    )
}

fn sign_hmac(raw: &[u8], key_id: &str, secret: &[u8]) -> Vec<u8> {
    sign(raw, &["--key-id", key_id, "--secret-base64", &b64(secret)])
}

/// Splits a raw request into its head (text) and body.
fn split(raw: &[u8]) -> (String, Vec<u8>) {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8(raw[..at].to_vec()).unwrap(),
        raw[at + 4..].to_vec(),
    )
}

fn join(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{head}\r\n\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// The value of a header in a raw request head.
fn head_value(raw: &[u8], name: &str) -> String {
    let (head, _) = split(raw);
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

/// Replaces the request line's method.
fn with_method(raw: &[u8], method: &str) -> Vec<u8> {
    let (head, body) = split(raw);
    let (line, rest) = head.split_once("\r\n").unwrap();
    let (_, after) = line.split_once(' ').unwrap();
    join(&format!("{method} {after}\r\n{rest}"), &body)
}

/// Replaces the request target (path and query) in the request line.
fn with_target(raw: &[u8], target: &str) -> Vec<u8> {
    let (head, body) = split(raw);
    let (line, rest) = head.split_once("\r\n").unwrap();
    let mut parts = line.split(' ');
    let (method, _, version) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    join(&format!("{method} {target} {version}\r\n{rest}"), &body)
}

fn target_of(raw: &[u8]) -> String {
    let (head, _) = split(raw);
    head.split(' ').nth(1).unwrap().to_string()
}

/// Replaces the body (and Content-Length); every other header, Content-Digest included, is kept.
fn with_body(raw: &[u8], body: &[u8]) -> Vec<u8> {
    let (head, _) = split(raw);
    let lines: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    join(&lines.join("\r\n"), body)
}

/// Adds header lines right after the request line (before the signature headers).
fn with_headers(raw: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let (head, body) = split(raw);
    let (line, rest) = head.split_once("\r\n").unwrap();
    let added: String = extra.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    join(&format!("{line}\r\n{added}{rest}"), &body)
}

/// Removes every line of the named headers.
fn without_headers(raw: &[u8], names: &[&str]) -> Vec<u8> {
    let (head, body) = split(raw);
    let kept: Vec<&str> = head
        .split("\r\n")
        .enumerate()
        .filter(|(i, l)| {
            *i == 0
                || !names.iter().any(|n| {
                    l.split_once(':')
                        .is_some_and(|(h, _)| h.trim().eq_ignore_ascii_case(n))
                })
        })
        .map(|(_, l)| l)
        .collect();
    join(&kept.join("\r\n"), &body)
}

/// The raw request as a `Req` for the HTTP/2 client (Host becomes :authority, Content-Length is
/// left to the client).
fn to_req(raw: &[u8]) -> Req {
    let (head, body) = split(raw);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap().split(' ');
    let mut req = Req::new(first.next().unwrap(), first.next().unwrap());
    for l in lines {
        let (n, v) = l.split_once(':').unwrap();
        match n.trim().to_ascii_lowercase().as_str() {
            "host" => req = req.authority(v.trim()),
            "content-length" => {}
            name => req = req.header(name, v.trim()),
        }
    }
    req.body(body)
}

fn send_raw(envoy: &Envoy, raw: &[u8]) -> Response {
    Client::h1()
        .send_raw_blocking(envoy.http_addr(), raw)
        .unwrap_or_else(|e| panic!("sending {:?}: {e}", String::from_utf8_lossy(raw)))
}

/// Status, body and sorted headers of a response.
type Fingerprint = (u16, String, Vec<(String, String)>);

/// What must be the same for every signature failure: status, body and headers (Date aside).
fn fingerprint(resp: &Response) -> Fingerprint {
    let mut headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .filter(|(n, _)| n != "date")
        .cloned()
        .collect();
    headers.sort();
    (resp.status, resp.text(), headers)
}

/// The 401 every signature failure on the `/h/` and `/b/` policies must look like.
fn assert_unauthorized(resp: &Response, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {resp:?}");
    assert_eq!(resp.text(), "unauthorized\n", "{what}");
    let accept = resp
        .header("accept-signature")
        .unwrap_or_else(|| panic!("{what}: no Accept-Signature: {resp:?}"));
    assert!(
        accept.starts_with("sig1=(\"@method\" \"@authority\" \"@path\" \"@query\"")
            && accept.contains(";created")
            && accept.contains(";keyid"),
        "{what}: Accept-Signature {accept:?}"
    );
}

/// The access-log record of the request whose path is `path` (waits for it, up to 30 s).
fn record_for(envoy: &Envoy, path: &str) -> Value {
    envoy.access_log_record(path, |v| v["path"] == path)
}

fn reason_for(envoy: &Envoy, path: &str) -> String {
    record_for(envoy, path)["reason"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn assert_never_reached_upstream(fx: &Fixture, path: &str) {
    let seen = fx.echo.paths();
    assert!(
        !seen.iter().any(|p| p == path),
        "{path} was refused but reached the upstream"
    );
}

// ---------------------------------------------------------------------------------------------
// Through real Envoy: the happy paths

#[test]
fn cli_signed_requests_reach_the_upstream_with_the_verified_key_id() {
    let fx = fixture();

    // hmac-sha256 over the head, secret from the environment.
    let path = format!("/h/{}?x=1&y=2", uniq("get"));
    let signed = sign_a(&raw_get(&path));
    let resp = send_raw(&fx.envoy, &signed);
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = resp.echo();
    assert_eq!(seen.path, path);
    assert_eq!(seen.header_all("x-edgeward-key-id"), ["partner-a"]);
    assert_eq!(
        seen.header("signature"),
        Some(head_value(&signed, "signature").as_str()),
        "the signature is forwarded untouched"
    );
    assert_eq!(record_for(&fx.envoy, &path)["key_id"], "partner-a");

    // `upstream_key_id: false`: verified and forwarded without the key id; the record still names it.
    let path = format!("/q/{}", uniq("quiet"));
    let resp = send_raw(&fx.envoy, &sign_a(&raw_get(&path)));
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = resp.echo();
    assert_eq!(seen.path, path);
    assert!(seen.header_all("x-edgeward-key-id").is_empty(), "{seen:?}");
    assert_eq!(record_for(&fx.envoy, &path)["key_id"], "partner-a");
    let unsigned = format!("/q/{}", uniq("unsigned"));
    assert_eq!(send_raw(&fx.envoy, &raw_get(&unsigned)).status, 401);

    // ed25519: the edge holds only the public key.
    let dir = TempDir::new("ed25519").unwrap();
    let pem_path = dir.path().join("client.pem");
    std::fs::write(&pem_path, ed25519_pems().0).unwrap();
    let path = format!("/h/{}", uniq("ed"));
    let signed = sign(
        &raw_get(&path),
        &[
            "--key-id",
            "mobile-app",
            "--alg",
            "ed25519",
            "--private-key-file",
            pem_path.to_str().unwrap(),
        ],
    );
    let resp = send_raw(&fx.envoy, &signed);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.echo().header_all("x-edgeward-key-id"), ["mobile-app"]);

    // A body bound by Content-Digest: forwarded whole, after the check.
    let path = format!("/b/{}", uniq("post"));
    let body = r#"{"order":42,"items":["a","b"]}"#;
    let signed = sign(
        &raw_post(&path, body),
        &[
            "--key-id",
            "partner-b",
            "--secret-base64",
            &b64(&SECRET_B),
            "--content-digest",
            "sha-512",
        ],
    );
    assert!(head_value(&signed, "content-digest").starts_with("sha-512=:"));
    let resp = send_raw(&fx.envoy, &signed);
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = resp.echo();
    assert_eq!(seen.body, body);
    assert_eq!(seen.header_all("x-edgeward-key-id"), ["partner-b"]);

    // The same signed request over h2c and over TLS (HTTP/2 and HTTP/1.1): the signature base
    // does not depend on the protocol.
    let path = format!("/b/{}", uniq("h2"));
    let signed = sign_a(&raw_post(&path, body));
    for (name, client, addr) in [
        ("h2c", Client::h2c(), fx.envoy.http_addr()),
        (
            "h2 over TLS",
            Client::h2c().tls(Tls::V1_3),
            fx.envoy.https_addr(),
        ),
        (
            "h1 over TLS",
            Client::h1().tls(Tls::V1_2),
            fx.envoy.https_addr(),
        ),
    ] {
        let resp = client.send_blocking(addr, &to_req(&signed)).unwrap();
        assert_eq!(resp.status, 200, "{name}: {resp:?}");
        assert_eq!(resp.echo().body, body, "{name}");
        assert_eq!(
            resp.echo().header_all("x-edgeward-key-id"),
            ["partner-a"],
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tampering

#[test]
fn altered_method_path_query_authority_or_body_get_the_same_401() {
    let fx = fixture();
    let base = uniq("orders");
    let path = format!("/b/{base}?a=1&b=2");
    let body = r#"{"amount":100}"#;
    let signed = sign_a(&raw_post(&path, body));

    let altered: Vec<(&str, Vec<u8>)> = vec![
        ("method", with_method(&signed, "PUT")),
        (
            "path",
            with_target(&signed, &format!("/b/{base}-x?a=1&b=2")),
        ),
        (
            "query value",
            with_target(&signed, &format!("/b/{base}?a=2&b=2")),
        ),
        (
            "query order",
            with_target(&signed, &format!("/b/{base}?b=2&a=1")),
        ),
        (
            "query added",
            with_target(&signed, &format!("/b/{base}?a=1&b=2&c=3")),
        ),
        ("query removed", with_target(&signed, &format!("/b/{base}"))),
        (
            "authority",
            String::from_utf8(signed.clone())
                .unwrap()
                .replacen("Host: localhost", "Host: localhost.test", 1)
                .into_bytes(),
        ),
        (
            "body, same length",
            with_body(&signed, br#"{"amount":900}"#),
        ),
        ("body, longer", with_body(&signed, br#"{"amount":100000}"#)),
        ("body removed", with_body(&signed, b"")),
    ];
    let mut first: Option<Fingerprint> = None;
    for (what, raw) in &altered {
        let resp = send_raw(&fx.envoy, raw);
        assert_unauthorized(&resp, what);
        let mut fp = fingerprint(&resp);
        // Envoy adds `Connection: close` to a local reply sent before it has read the request
        // body (a head check failed); a digest failure is answered after the body, on a reusable
        // connection. That transport detail aside, every 401 is the same.
        fp.2.retain(|(n, _)| n != "connection");
        match &first {
            None => first = Some(fp),
            Some(f) => assert_eq!(&fp, f, "{what}: differs from the first 401"),
        }
        assert_never_reached_upstream(&fx, &target_of(raw));
    }
    // What the log (not the client) learns: which check failed.
    assert_eq!(
        reason_for(&fx.envoy, &format!("/b/{base}?b=2&a=1")),
        "signature_invalid"
    );
    assert_eq!(
        reason_for(&fx.envoy, &format!("/b/{base}")),
        "signature_invalid"
    );
    assert_eq!(fx.echo.count_prefix(&format!("/b/{base}")), 0);

    // Control: the unaltered request passes (so each 401 above was the alteration's doing).
    let resp = send_raw(&fx.envoy, &signed);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.echo().body, body);
    assert_eq!(fx.echo.count_prefix(&format!("/b/{base}")), 1);
}

#[test]
fn a_client_that_leaves_before_its_body_is_recorded_incomplete_not_allowed() {
    let fx = fixture();
    let path = format!("/b/{}", uniq("gone"));
    let signed = sign_a(&raw_post(&path, r#"{"to":"alice","amount":1}"#));
    let (head, _) = split(&signed);
    // The head (with its Content-Length) and half of the body, then the client goes away.
    let mut tcp = TcpStream::connect(fx.envoy.http_addr()).unwrap();
    tcp.write_all(format!("{head}\r\n\r\n{{\"to\":").as_bytes())
        .unwrap();
    tcp.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(tcp);
    let record = record_for(&fx.envoy, &path);
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(record["reason"], "incomplete", "{record}");
    assert_never_reached_upstream(&fx, &path);
}

#[test]
fn body_swapped_with_the_digest_header_kept_is_refused() {
    let fx = fixture();
    let path = format!("/b/{}", uniq("swap"));
    let signed = sign_a(&raw_post(&path, r#"{"to":"alice"}"#));
    let digest = head_value(&signed, "content-digest");
    for (what, body) in [
        ("same length", &br#"{"to":"mallo"}"#[..]),
        ("shorter", &b"{}"[..]),
        ("longer", &br#"{"to":"mallory","amount":1000000}"#[..]),
    ] {
        let swapped = with_body(&signed, body);
        assert_eq!(head_value(&swapped, "content-digest"), digest);
        for (proto, resp) in [
            ("h1", send_raw(&fx.envoy, &swapped)),
            (
                "h2c",
                Client::h2c()
                    .send_blocking(fx.envoy.http_addr(), &to_req(&swapped))
                    .unwrap(),
            ),
        ] {
            assert_unauthorized(&resp, &format!("{what} over {proto}"));
        }
    }
    assert_eq!(reason_for(&fx.envoy, &path), "digest_mismatch");
    assert_eq!(
        fx.echo.count_prefix(&path),
        0,
        "a swapped body reached the upstream"
    );

    // A digest recomputed for the new body does not help: the digest header is signed.
    let forged = sign_a(&raw_post(&path, r#"{"to":"mallo"}"#));
    let mixed = String::from_utf8(with_body(&signed, br#"{"to":"mallo"}"#))
        .unwrap()
        .replace(&digest, &head_value(&forged, "content-digest"))
        .into_bytes();
    assert_unauthorized(
        &send_raw(&fx.envoy, &mixed),
        "digest recomputed, signature kept",
    );
    assert_eq!(fx.echo.count_prefix(&path), 0);
}

#[test]
fn unknown_key_id_wrong_alg_and_bad_signature_all_look_alike() {
    let fx = fixture();
    let case = |key_id: &str, secret: &[u8]| {
        let path = format!("/h/{}", uniq(key_id));
        (path.clone(), sign_hmac(&raw_get(&path), key_id, secret))
    };
    let (p_ok, ok) = case("partner-b", &SECRET_B);
    let mut cases: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let (p, r) = case("nobody", &SECRET_B);
    cases.push(("unknown key id", p, r));
    let (p, r) = case("partner-b", &SECRET_A);
    cases.push(("wrong secret", p, r));
    // An hmac signature for an ed25519 key id: wrong algorithm.
    let (p, r) = case("mobile-app", &SECRET_A);
    cases.push(("wrong algorithm", p, r));
    let path = format!("/h/{}", uniq("alg-param"));
    let r = sign(
        &raw_get(&path),
        &[
            "--key-id",
            "partner-b",
            "--secret-base64",
            &b64(&SECRET_B),
            "--alg",
            "hmac-sha256",
        ],
    );
    // `alg="hmac-sha256"` is signed; claiming ed25519 instead breaks the signature anyway, and
    // an alg that does not match the key is refused before any verification.
    let r = String::from_utf8(r)
        .unwrap()
        .replace("alg=\"hmac-sha256\"", "alg=\"ed25519\"")
        .into_bytes();
    cases.push(("alg parameter mismatch", path, r));
    let path = format!("/h/{}", uniq("flip"));
    let signed = sign_a(&raw_get(&path));
    let sig = head_value(&signed, "signature");
    let flipped = {
        // Flip one bit of the first signature byte, keeping valid base64.
        let inner = sig.trim_start_matches("sig1=:").trim_end_matches(':');
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .unwrap();
        bytes[0] ^= 1;
        format!("sig1=:{}:", b64(&bytes))
    };
    let r = String::from_utf8(signed)
        .unwrap()
        .replace(&sig, &flipped)
        .into_bytes();
    cases.push(("one bit of the signature flipped", path, r));
    let path = format!("/h/{}", uniq("unsigned"));
    cases.push(("no signature at all", path.clone(), raw_get(&path)));

    let mut first = None;
    for (what, path, raw) in &cases {
        let resp = send_raw(&fx.envoy, raw);
        assert_unauthorized(&resp, what);
        let fp = fingerprint(&resp);
        match &first {
            None => first = Some(fp),
            Some(f) => assert_eq!(&fp, f, "{what}: the client can tell this 401 apart"),
        }
        assert_never_reached_upstream(&fx, path);
    }
    // The log still tells them apart.
    assert_eq!(reason_for(&fx.envoy, &cases[0].1), "signature_invalid");
    assert_eq!(reason_for(&fx.envoy, &cases[5].1), "signature_missing");

    // Control: the same kind of request with the right key passes.
    let resp = send_raw(&fx.envoy, &ok);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.echo().path, p_ok);
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 trailers

#[test]
fn http2_body_ending_with_trailers_is_verified() {
    let fx = fixture();
    let body = "x".repeat(300) + "end";
    for (proto, client, addr) in [
        ("h2c", Client::h2c(), fx.envoy.http_addr()),
        (
            "h2 over TLS",
            Client::h2c().tls(Tls::V1_3),
            fx.envoy.https_addr(),
        ),
    ] {
        // Genuine: the body ends with a trailers frame, never with an end-of-stream data frame.
        let path = format!("/b/{}", uniq("trailers"));
        let signed = sign_a(&raw_post(&path, &body));
        let req = to_req(&signed).trailer("x-checksum", "abc123");
        let resp = client.send_blocking(addr, &req).unwrap();
        assert_eq!(resp.status, 200, "{proto}: {resp:?}");
        let seen = resp.echo();
        assert_eq!(
            seen.body, body,
            "{proto}: the body reached the upstream whole"
        );
        assert_eq!(
            seen.header_all("x-edgeward-key-id"),
            ["partner-a"],
            "{proto}"
        );

        // Tampered body, digest kept, trailers again: refused, and never forwarded.
        let path = format!("/b/{}", uniq("trailers-bad"));
        let signed = sign_a(&raw_post(&path, &body));
        let tampered = with_body(&signed, ("y".repeat(300) + "end").as_bytes());
        let req = to_req(&tampered).trailer("x-checksum", "abc123");
        let resp = client.send_blocking(addr, &req).unwrap();
        assert_unauthorized(&resp, &format!("{proto}: tampered body with trailers"));
        assert_eq!(reason_for(&fx.envoy, &path), "digest_mismatch", "{proto}");
        assert_never_reached_upstream(&fx, &path);
    }
}

// ---------------------------------------------------------------------------------------------
// Key rotation

#[test]
fn key_past_not_after_is_refused_and_its_successor_accepted() {
    let fx = fixture();
    let old_path = format!("/h/{}", uniq("rot-old"));
    let resp = send_raw(
        &fx.envoy,
        &sign_hmac(&raw_get(&old_path), "rot", &SECRET_ROT_OLD),
    );
    assert_unauthorized(&resp, "retired key");
    assert_eq!(reason_for(&fx.envoy, &old_path), "signature_invalid");
    assert_never_reached_upstream(&fx, &old_path);

    // The successor shares the key id; its secret comes from PARTNER_A_KEY_NEXT.
    let new_path = format!("/h/{}", uniq("rot-new"));
    let resp = send_raw(
        &fx.envoy,
        &sign(
            &raw_get(&new_path),
            &["--key-id", "rot", "--secret-env", "PARTNER_A_KEY_NEXT"],
        ),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.echo().header_all("x-edgeward-key-id"), ["rot"]);

    // A key whose not_before is still ahead is not valid yet.
    let early_path = format!("/h/{}", uniq("early"));
    let resp = send_raw(
        &fx.envoy,
        &sign_hmac(&raw_get(&early_path), "early", &SECRET_EARLY),
    );
    assert_unauthorized(&resp, "key not valid yet");
    assert_never_reached_upstream(&fx, &early_path);
}

// ---------------------------------------------------------------------------------------------
// Replay across workers

fn delta(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

#[test]
fn replayed_nonce_is_rejected_on_every_worker() {
    // Its own Envoy: the per-worker connection counts below are this test's alone.
    let echo = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let mut opts = EnvoyOpts::new(echo.addr())
        .policy(document(unix_now()))
        .concurrency(2)
        .edit(exact_balance);
    for (k, v) in secret_env() {
        opts = opts.env(k, v);
    }
    let envoy = Envoy::start(&opts).unwrap_or_else(|log| panic!("{log}"));

    // Without a nonce, the `/n/` policy refuses the request.
    let path = format!("/n/{}", uniq("no-nonce"));
    let resp = send_raw(&envoy, &sign_a(&raw_get(&path)));
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(resp
        .header("accept-signature")
        .is_some_and(|a| a.contains(";nonce")));

    let path = format!("/n/{}", uniq("replay"));
    let signed = sign(
        &raw_get(&path),
        &[
            "--key-id",
            "partner-a",
            "--secret-env",
            "PARTNER_A_KEY",
            "--random-nonce",
        ],
    );
    let before = worker_connections(&envoy);
    let resp = send_raw(&envoy, &signed);
    assert_eq!(resp.status, 200, "{resp:?}");
    let first = delta(&worker_connections(&envoy), &before);
    let original_worker = first.iter().position(|&n| n == 1).unwrap();
    assert_eq!(first.iter().sum::<u64>(), 1, "{first:?}");

    // Replays on fresh connections until both workers have served some (the kernel picks the
    // accepting worker), every one refused. At least one lands on the other worker than the
    // original, so the nonce table is shared across workers.
    let start = worker_connections(&envoy);
    let mut replays = 0;
    // exact_balance gives a new connection to the worker with the fewest open ones; short-lived
    // connections one after another would all land on the same (idle) worker. Idle connections held
    // open alternate the workers, so the replays spread over both.
    let mut held = Vec::new();
    loop {
        held.push(std::net::TcpStream::connect(envoy.http_addr()).unwrap());
        let resp = send_raw(&envoy, &signed);
        replays += 1;
        assert_eq!(resp.status, 401, "replay {replays}: {resp:?}");
        assert_eq!(resp.text(), "unauthorized\n");
        let served = delta(&worker_connections(&envoy), &start);
        if served.iter().all(|&n| n > 0) && replays >= 10 {
            eprintln!(
                "original on worker {original_worker}; {replays} replays served per worker: {served:?}"
            );
            break;
        }
        assert!(
            replays < 400,
            "after {replays} connections one worker served none: {served:?}"
        );
    }
    assert_eq!(
        echo.paths().iter().filter(|p| **p == path).count(),
        1,
        "only the original reached the upstream"
    );
    let records: Vec<Value> = envoy
        .access_log_lines(replays + 2)
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["path"] == path.as_str())
        .collect();
    assert_eq!(records.len(), replays + 1);
    assert!(records
        .iter()
        .skip(1)
        .all(|r| r["reason"] == "signature_replayed"));
    assert_eq!(
        envoy.stat_eventually(
            "wasmcustom.edgeward.nonce.denied.signature_replayed",
            Some(replays as u64)
        ),
        Some(replays as u64)
    );

    // A fresh nonce still passes (on whichever worker).
    let fresh = sign(
        &raw_get(&path),
        &[
            "--key-id",
            "partner-a",
            "--secret-env",
            "PARTNER_A_KEY",
            "--random-nonce",
        ],
    );
    assert_eq!(send_raw(&envoy, &fresh).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Malformed and duplicated signature headers

#[test]
fn duplicated_signature_headers_get_401_not_5xx() {
    let fx = fixture();
    let path = format!("/h/{}", uniq("dup"));
    let signed = sign_a(&raw_get(&path));
    let sig = head_value(&signed, "signature");
    let input = head_value(&signed, "signature-input");
    let other = head_value(
        &sign_hmac(&raw_get(&path), "partner-b", &SECRET_B),
        "signature",
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Signature twice, same value",
            with_headers(&signed, &[("Signature", &sig)]),
        ),
        (
            "Signature twice, two values",
            with_headers(&signed, &[("Signature", &other)]),
        ),
        (
            "Signature-Input twice",
            with_headers(&signed, &[("Signature-Input", &input)]),
        ),
        (
            "both twice",
            with_headers(&signed, &[("Signature-Input", &input), ("Signature", &sig)]),
        ),
        (
            "a second label in Signature only",
            with_headers(&signed, &[("Signature", &sig.replacen("sig1", "sig2", 1))]),
        ),
    ];
    for (what, raw) in &cases {
        for attempt in 0..2 {
            let resp = send_raw(&fx.envoy, raw);
            assert_unauthorized(&resp, &format!("{what} (attempt {attempt})"));
        }
    }
    assert_eq!(reason_for(&fx.envoy, &path), "signature_invalid");
    assert_never_reached_upstream(&fx, &path);
    // The VM is alive and well: the original passes.
    assert_eq!(send_raw(&fx.envoy, &signed).status, 200);
}

#[test]
fn malformed_signature_headers_get_a_deterministic_401() {
    let fx = fixture();
    let path = format!("/h/{}", uniq("malformed"));
    let signed = sign_a(&raw_get(&path));
    let good_input = head_value(&signed, "signature-input");
    let good_sig = head_value(&signed, "signature");
    let long = "a".repeat(8000);
    let nine_labels: String = (1..=9)
        .map(|i| format!("s{i}=(\"@method\");created=1"))
        .collect::<Vec<_>>()
        .join(", ");
    let nine_sigs: String = (1..=9)
        .map(|i| format!("s{i}=:AAAA:"))
        .collect::<Vec<_>>()
        .join(", ");
    let covered = "(\"@method\" \"@authority\" \"@path\" \"@query\")";
    let cases: Vec<(&str, String, String)> = vec![
        (
            "signature not base64",
            good_input.clone(),
            "sig1=:@@@@:".into(),
        ),
        ("signature a token", good_input.clone(), "sig1=abc".into()),
        (
            "signature truncated",
            good_input.clone(),
            "sig1=:AAAA".into(),
        ),
        ("signature empty", good_input.clone(), String::new()),
        (
            "signature a list",
            good_input.clone(),
            format!("sig1=({good_sig})"),
        ),
        (
            "input truncated",
            "sig1=(\"@method\"".into(),
            good_sig.clone(),
        ),
        (
            "input not an inner list",
            "sig1=\"@method\";created=1".into(),
            good_sig.clone(),
        ),
        (
            "created negative",
            format!("sig1={covered};created=-5;keyid=\"partner-a\""),
            good_sig.clone(),
        ),
        (
            "created too large for sf-integer",
            format!("sig1={covered};created=99999999999999999999;keyid=\"partner-a\""),
            good_sig.clone(),
        ),
        (
            "created a string",
            format!("sig1={covered};created=\"1\";keyid=\"partner-a\""),
            good_sig.clone(),
        ),
        (
            "keyid a token",
            format!("sig1={covered};created=1;keyid=partner-a"),
            good_sig.clone(),
        ),
        (
            "no created",
            format!("sig1={covered};keyid=\"partner-a\""),
            good_sig.clone(),
        ),
        (
            "component listed twice",
            good_input.replacen("(\"@method\"", "(\"@method\" \"@method\"", 1),
            good_sig.clone(),
        ),
        (
            "unknown derived component",
            good_input.replacen("(\"@method\"", "(\"@nonsense\" \"@method\"", 1),
            good_sig.clone(),
        ),
        (
            "nested inner list",
            format!("sig1=(({covered}));created=1;keyid=\"partner-a\""),
            good_sig.clone(),
        ),
        (
            "labels differ",
            good_input.clone(),
            good_sig.replacen("sig1", "sig2", 1),
        ),
        (
            "upper-case label",
            good_input.replacen("sig1", "SIG1", 1),
            good_sig.replacen("sig1", "SIG1", 1),
        ),
        ("nine labels", nine_labels, nine_sigs),
        ("8000 bytes of garbage", long.clone(), long),
        ("input empty", String::new(), good_sig.clone()),
        ("only commas", ",,,".into(), ",,,".into()),
    ];
    let base = without_headers(&signed, &["signature", "signature-input"]);
    let mut first = None;
    for (what, input, sig) in &cases {
        let raw = with_headers(&base, &[("Signature-Input", input), ("Signature", sig)]);
        for attempt in 0..2 {
            let resp = send_raw(&fx.envoy, &raw);
            assert_unauthorized(&resp, &format!("{what} (attempt {attempt})"));
            let fp = fingerprint(&resp);
            match &first {
                None => first = Some(fp),
                Some(f) => assert_eq!(&fp, f, "{what}: not the same 401"),
            }
        }
    }
    // One header without the other.
    for (what, raw) in [
        (
            "Signature-Input only",
            without_headers(&signed, &["signature"]),
        ),
        (
            "Signature only",
            without_headers(&signed, &["signature-input"]),
        ),
    ] {
        let resp = send_raw(&fx.envoy, &raw);
        assert_unauthorized(&resp, what);
        assert_eq!(Some(fingerprint(&resp)), first, "{what}");
    }
    assert_never_reached_upstream(&fx, &path);
    // No trap, no panic: the VM still verifies.
    assert_eq!(send_raw(&fx.envoy, &signed).status, 200);
    let log = fx.envoy.log();
    assert!(!log.contains("panic"), "the plugin panicked:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// x-edgeward-* from the client

/// What edgeward tells the upstream cannot come from the client: a request carrying any `x-edgeward-*`
/// header is refused before routing (400 `reserved_header`), on every route, signed or not, over HTTP/1.1
/// and HTTP/2; it never reaches the upstream. (Removing the header instead would be a header change, after
/// which Envoy picks the route again.)
#[test]
fn client_sent_edgeward_headers_never_reach_the_upstream() {
    let fx = fixture();
    let forged: [&[(&str, &str)]; 3] = [
        &[("x-edgeward-key-id", "admin")],
        &[("X-Edgeward-Key-Id", "root")],
        &[("x-edgeward-anything", "1")],
    ];
    for headers in forged {
        for prefix in ["/h/", "/b/", "/open/", "/null/"] {
            let path = format!("{prefix}{}", uniq("forge"));
            for (what, raw) in [
                ("unsigned", with_headers(&raw_get(&path), headers)),
                ("signed", with_headers(&sign_a(&raw_get(&path)), headers)),
            ] {
                for (proto, resp) in [
                    ("h1", send_raw(&fx.envoy, &raw)),
                    (
                        "h2c",
                        Client::h2c()
                            .send_blocking(fx.envoy.http_addr(), &to_req(&raw))
                            .unwrap(),
                    ),
                ] {
                    assert_eq!(resp.status, 400, "{prefix} {what} {proto}: {resp:?}");
                }
            }
            assert_never_reached_upstream(&fx, &path);
            let record = record_for(&fx.envoy, &path);
            assert_eq!(record["reason"], "reserved_header", "{record}");
        }
    }
    // Without them, a verified request reaches the upstream with exactly the verified key id.
    let path = format!("/h/{}", uniq("verified"));
    let seen = send_raw(&fx.envoy, &sign_a(&raw_get(&path))).echo();
    assert_eq!(seen.path, path);
    assert_eq!(seen.header_all("x-edgeward-key-id"), ["partner-a"]);
}

// ---------------------------------------------------------------------------------------------
// Body size and holding the request

#[test]
fn reference_config_lets_the_plugin_read_held_request_bodies() {
    // Without this knob Envoy turns the plugin's pause on request headers into StopAllIteration:
    // the body callbacks never run and every request whose Content-Digest must be checked hangs
    // until the client gives up (the body tests below then fail by timing out, slowly).
    let yaml = std::fs::read_to_string(support::reference_config_path()).unwrap();
    assert!(
        yaml.lines()
            .any(|l| l.trim() == "allow_on_headers_stop_iteration: true"),
        "envoy/envoy.yaml must set allow_on_headers_stop_iteration: true in the wasm PluginConfig"
    );
}

#[test]
fn body_over_max_body_bytes_is_413_and_at_the_limit_passes() {
    let fx = fixture();
    let at_limit = "a".repeat(MAX_BODY);
    let path = format!("/b/{}", uniq("at-limit"));
    let resp = send_raw(&fx.envoy, &sign_a(&raw_post(&path, &at_limit)));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.echo().body_len, MAX_BODY as u64);

    let over = "a".repeat(MAX_BODY + 1);
    let big = "b".repeat(64 * 1024);
    for (what, body) in [("one byte over", &over), ("64 KiB", &big)] {
        let path = format!("/b/{}", uniq("too-large"));
        let signed = sign_a(&raw_post(&path, body));
        let resp = send_raw(&fx.envoy, &signed);
        assert_eq!(resp.status, 413, "{what} over h1: {resp:?}");
        assert_eq!(resp.text(), "payload too large\n");
        assert_eq!(reason_for(&fx.envoy, &path), "body_too_large");
        let resp = Client::h2c()
            .send_blocking(fx.envoy.http_addr(), &to_req(&signed))
            .unwrap();
        assert_eq!(resp.status, 413, "{what} over h2c: {resp:?}");
        assert_never_reached_upstream(&fx, &path);
    }
}

/// Writes `parts` to a new connection with a pause after each but the last; returns the raw
/// response (the request says `Connection: close`).
fn send_in_parts(addr: SocketAddr, parts: &[&[u8]], before_next: impl Fn(usize)) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for (i, part) in parts.iter().enumerate() {
        s.write_all(part).unwrap();
        s.flush().unwrap();
        if i + 1 < parts.len() {
            before_next(i);
        }
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn nothing_reaches_the_upstream_before_the_check_passes() {
    let fx = fixture();
    let body = format!("{{\"data\":\"{}\"}}", "z".repeat(500));
    for tampered in [false, true] {
        let path = format!("/b/{}", uniq(if tampered { "hold-bad" } else { "hold-ok" }));
        let signed = with_headers(&sign_a(&raw_post(&path, &body)), &[("Connection", "close")]);
        let signed = if tampered {
            // Same length, one byte changed at the very end.
            let mut b = signed.clone();
            let last = b.len() - 2;
            b[last] = b'y';
            b
        } else {
            signed
        };
        let cut = signed.len() - 10;
        let out = send_in_parts(
            fx.envoy.http_addr(),
            &[&signed[..cut], &signed[cut..]],
            |_| {
                // Head and most of the body are in Envoy now; the upstream must not have them.
                std::thread::sleep(Duration::from_millis(800));
                assert_eq!(
                    fx.echo.count_prefix(&path),
                    0,
                    "the request was forwarded before its body was checked"
                );
            },
        );
        if tampered {
            assert!(out.starts_with("HTTP/1.1 401"), "{out}");
            assert_never_reached_upstream(&fx, &path);
        } else {
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            assert_eq!(fx.echo.count_prefix(&path), 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `edgeward eval` agrees with Envoy

fn eval(doc_path: &std::path::Path, raw: &[u8]) -> Value {
    let doc = doc_path.to_str().unwrap();
    let args = [
        "eval",
        doc,
        "--request",
        "-",
        "--client-ip",
        "127.0.0.1",
        "--scheme",
        "http",
    ];
    serde_json::from_slice(&support::cli::ok(&args, secret_env(), raw)).unwrap()
}

#[test]
fn eval_on_the_exact_bytes_agrees_with_envoy() {
    let fx = fixture();
    let dir = TempDir::new("ed25519-eval").unwrap();
    let pem_path = dir.path().join("client.pem");
    std::fs::write(&pem_path, ed25519_pems().0).unwrap();
    let now = unix_now().to_string();
    let stale = (unix_now() - 1000).to_string();

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let p = format!("/b/{}?q=1", uniq("eval-ok"));
    let ok = sign_a(&raw_post(&p, r#"{"a":1}"#));
    cases.push(("valid, body", ok.clone()));
    let p = format!("/b/{}?q=1", uniq("eval-path"));
    cases.push((
        "path altered",
        with_target(&sign_a(&raw_post(&p, r#"{"a":1}"#)), &format!("{p}x")),
    ));
    let p = format!("/b/{}", uniq("eval-body"));
    cases.push((
        "body swapped",
        with_body(&sign_a(&raw_post(&p, r#"{"a":1}"#)), br#"{"a":2}"#),
    ));
    let p = format!("/h/{}", uniq("eval-unknown"));
    cases.push(("unknown key", sign_hmac(&raw_get(&p), "nobody", &SECRET_A)));
    let p = format!("/h/{}", uniq("eval-stale"));
    cases.push((
        "stale created",
        sign(
            &raw_get(&p),
            &[
                "--key-id",
                "partner-a",
                "--secret-env",
                "PARTNER_A_KEY",
                "--created",
                &stale,
            ],
        ),
    ));
    let p = format!("/h/{}", uniq("eval-created"));
    cases.push((
        "explicit created and expires",
        sign(
            &raw_get(&p),
            &[
                "--key-id",
                "partner-b",
                "--secret-base64",
                &b64(&SECRET_B),
                "--created",
                &now,
                "--expires",
                &(unix_now() + 60).to_string(),
            ],
        ),
    ));
    let p = format!("/h/{}", uniq("eval-missing"));
    cases.push(("unsigned", raw_get(&p)));
    let p = format!("/h/{}", uniq("eval-ed"));
    cases.push((
        "ed25519",
        sign(
            &raw_get(&p),
            &[
                "--key-id",
                "mobile-app",
                "--private-key-file",
                pem_path.to_str().unwrap(),
            ],
        ),
    ));
    let p = format!("/h/{}", uniq("eval-rot"));
    cases.push((
        "retired key",
        sign_hmac(&raw_get(&p), "rot", &SECRET_ROT_OLD),
    ));
    let p = format!("/b/{}", uniq("eval-big"));
    cases.push((
        "body too large",
        sign_a(&raw_post(&p, &"x".repeat(MAX_BODY + 5))),
    ));
    let p = format!("/open/{}", uniq("eval-open"));
    cases.push((
        "no signature policy",
        with_headers(&raw_get(&p), &[("x-edgeward-key-id", "x")]),
    ));

    let mut decisions = std::collections::BTreeSet::new();
    for (what, raw) in &cases {
        let expected = eval(&fx.doc_path, raw);
        let resp = send_raw(&fx.envoy, raw);
        let path = target_of(raw);
        let record = record_for(&fx.envoy, &path);
        assert_eq!(
            u64::from(resp.status),
            expected["status"].as_u64().unwrap(),
            "{what}: status (eval: {expected})"
        );
        assert_eq!(record["decision"], expected["decision"], "{what}: decision");
        assert_eq!(record["reason"], expected["reason"], "{what}: reason");
        assert_eq!(record["policy"], expected["policy"], "{what}: policy");
        assert_eq!(
            record["key_id"], expected["log"]["key_id"],
            "{what}: key id"
        );
        if resp.status == 200 {
            let seen = resp.echo();
            let upstream_key = expected["upstream_headers"]["x-edgeward-key-id"].as_str();
            assert_eq!(seen.header("x-edgeward-key-id"), upstream_key, "{what}");
        } else {
            assert_never_reached_upstream(&fx, &path);
            let accept = expected["response_headers"]["accept-signature"].as_str();
            assert_eq!(resp.header("accept-signature"), accept, "{what}");
        }
        decisions.insert(format!(
            "{}/{}",
            expected["decision"].as_str().unwrap(),
            expected["reason"].as_str().unwrap_or("-")
        ));
    }
    // The cases above really cover the outcomes they claim to.
    let want = [
        "allow/-",
        "deny/body_too_large",
        "deny/digest_mismatch",
        "deny/signature_expired",
        "deny/signature_invalid",
        "deny/signature_missing",
    ];
    for w in want {
        assert!(decisions.contains(w), "no case ended in {w}: {decisions:?}");
    }
}
