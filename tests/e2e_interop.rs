//! Issue 21: edgeward against independent RFC 9421 implementations, through a real Envoy running the
//! shipped envoy/envoy.yaml. Requests signed by PyPI's http-message-signatures 3.0.0 and npm's
//! http-message-signatures 1.0.6 and http-message-sig 0.3.0 (pinned in tests/interop/, installed into
//! `$EDGEWARD_CACHE` on first use) are verified by the plugin, and tampered copies refused; requests
//! signed by `edgeward sign` are verified by those libraries; the RFC's own examples (B.2.5, B.2.6)
//! check the drivers. The four points of the issue each have a test: a `%7E` path (and encoding
//! tricks against route selection), `@target-uri` as received, `;bs` over bytes that are not UTF-8,
//! `;sf` on a repeated dictionary key and on a list with repeated members.
//!
//! What a library does not support is asserted as its refusal (so a new version that changes it is
//! noticed) and listed in the README's "Interoperability".
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod interop;
mod support;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use interop::{b64, installed_or_skip, Lib, Msg, Tools};
use serde_json::{json, Value};
use support::{echo, uniq, Client, Envoy, EnvoyOpts, Response, Tls};

// ---------------------------------------------------------------------------------------------
// Keys and the policy document

const HMAC_ID: &str = "interop-hmac";
const ED25519_ID: &str = "interop-ed25519";
const HMAC_SECRET: [u8; 32] = *b"interop: hmac-sha256 secret 32B!";
const ED25519_SEED: [u8; 32] = [21; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Hmac,
    Ed25519,
}

const ALGS: [Alg; 2] = [Alg::Hmac, Alg::Ed25519];

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Hmac => "hmac-sha256",
            Alg::Ed25519 => "ed25519",
        }
    }

    fn key_id(self) -> &'static str {
        match self {
            Alg::Hmac => HMAC_ID,
            Alg::Ed25519 => ED25519_ID,
        }
    }

    /// The fields a driver needs to sign (`private`) or verify with this key.
    fn key_fields(self, private: bool) -> Value {
        match self {
            Alg::Hmac => {
                json!({ "key_id": HMAC_ID, "alg": self.name(), "secret_b64": b64(&HMAC_SECRET) })
            }
            Alg::Ed25519 => {
                let (sk, pk) = ed25519_pems();
                if private {
                    json!({ "key_id": ED25519_ID, "alg": self.name(), "private_key_pem": sk })
                } else {
                    json!({ "key_id": ED25519_ID, "alg": self.name(), "public_key_pem": pk })
                }
            }
        }
    }
}

/// The test key as PEM: the private key as PKCS#8 v1 (RFC 8410 §7: the seed alone; Node 20's OpenSSL
/// refuses the v2 form with the public key that ed25519-dalek writes), the public key as SPKI.
fn ed25519_pems() -> (String, String) {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&ED25519_SEED);
    let private = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        b64(&der)
    );
    let public = ed25519_dalek::SigningKey::from_bytes(&ED25519_SEED)
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    (private, public)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `/s/`, `/a/` and `/p` need a signature with either key (covering at least `@method`: each test
/// says what it covers); Envoy's `admin` route (`/admin/`) admits only 10.0.0.0/8, so loopback clients
/// get 404; everything else is open.
fn document() -> String {
    let (_, public_pem) = ed25519_pems();
    json!({
        "log": { "keep_query": ["*"] },
        "policies": {
            "signed": { "signature": {
                "keys": [
                    { "id": HMAC_ID, "alg": "hmac-sha256", "secret": { "base64": b64(&HMAC_SECRET) } },
                    { "id": ED25519_ID, "alg": "ed25519", "public_key": public_pem },
                ],
                "components": ["@method"],
                "max_body_bytes": 65536,
            } },
            "admin": { "ip": { "allow": ["10.0.0.0/8"], "deny_status": 404 } },
            "open": {},
        },
        "routes": [
            { "route": "admin", "policy": "admin" },
            { "path_prefix": "/s/", "policy": "signed" },
            { "path_prefix": "/a/", "policy": "signed" },
            { "path": "/p", "policy": "signed" },
            { "policy": "open" },
        ],
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// One Envoy shared by the tests of this file

struct Fixture {
    // Dropped in this order: Envoy first, then the upstream.
    envoy: Envoy,
    echo: echo::EchoServer,
}

fn fixture() -> Arc<Fixture> {
    static SLOT: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
    let mut slot = SLOT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = slot.upgrade() {
        return f;
    }
    let echo = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let envoy = Envoy::start(&EnvoyOpts::new(echo.addr()).policy(document()))
        .unwrap_or_else(|log| panic!("{log}"));
    let f = Arc::new(Fixture { envoy, echo });
    *slot = Arc::downgrade(&f);
    f
}

/// Sends `msg` over HTTP/1.1 as its bytes, to the https listener when `msg.tls`.
fn send(fx: &Fixture, msg: &Msg) -> Response {
    let (client, addr) = if msg.tls {
        (Client::h1().tls(Tls::V1_3), fx.envoy.https_addr())
    } else {
        (Client::h1(), fx.envoy.http_addr())
    };
    client
        .send_raw_blocking(addr, &msg.raw())
        .unwrap_or_else(|e| panic!("sending {:?}: {e}", String::from_utf8_lossy(&msg.raw())))
}

fn assert_reached_with_key(resp: &Response, alg: Alg, what: &str) {
    assert_eq!(resp.status, 200, "{what}: {resp:?}");
    assert_eq!(
        resp.echo().header_all("x-edgeward-key-id"),
        [alg.key_id()],
        "{what}"
    );
}

fn assert_refused(fx: &Fixture, resp: &Response, msg: &Msg, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {resp:?}");
    assert!(
        resp.header("accept-signature").is_some(),
        "{what}: no Accept-Signature: {resp:?}"
    );
    assert!(
        !fx.echo.paths().contains(&msg.target),
        "{what}: {} was refused but reached the upstream",
        msg.target
    );
}

// ---------------------------------------------------------------------------------------------
// Signing with a library

/// Signing options beyond the key and the components.
#[derive(Clone, Default)]
struct Opts {
    content_digest: Option<&'static str>,
    nonce: Option<String>,
    /// For the Python library's `;sf`: the fields' structured types.
    sf_types: Option<Value>,
}

fn spec_for_signing(msg: &Msg, alg: Alg, components: &[&str], opts: &Opts) -> Value {
    let mut spec = msg.spec();
    merge(&mut spec, &alg.key_fields(true));
    spec["components"] = json!(components);
    spec["created"] = json!(unix_now());
    spec["label"] = json!("sig1");
    if let Some(d) = opts.content_digest {
        spec["content_digest"] = json!(d);
    }
    if let Some(n) = &opts.nonce {
        spec["nonce"] = json!(n);
    }
    if let Some(t) = &opts.sf_types {
        spec["sf_types"] = t.clone();
    }
    spec
}

fn merge(into: &mut Value, from: &Value) {
    for (k, v) in from.as_object().unwrap() {
        into[k] = v.clone();
    }
}

/// `msg` signed by `lib`: Ok(the message with the library's headers added, its signature base) or
/// Err(the library's refusal).
fn lib_sign(
    tools: &Tools,
    lib: Lib,
    msg: &Msg,
    alg: Alg,
    components: &[&str],
    opts: &Opts,
) -> Result<(Msg, String), String> {
    let signed = lib.sign(tools, &spec_for_signing(msg, alg, components, opts))?;
    let mut out = msg.clone();
    for (n, v) in signed.headers {
        out = out.set(&n, v);
    }
    Ok((out, signed.base))
}

// ---------------------------------------------------------------------------------------------
// The component matrix: every library, both algorithms, each component

/// A case of the matrix: what is covered, the request, and a change of a covered part.
struct Case {
    name: &'static str,
    components: &'static [&'static str],
    msg: fn(&str) -> Msg,
    opts: fn() -> Opts,
    tamper: fn(Msg) -> Msg,
    /// Libraries that refuse to sign it, with a part of their message.
    refused_by: &'static [(Lib, &'static str)],
}

fn no_opts() -> Opts {
    Opts::default()
}

fn get(path: &str) -> Msg {
    Msg::new("GET", path)
}

fn with_target(mut m: Msg, target: String) -> Msg {
    m.target = target;
    m
}

const NODE_SIG_UNSUPPORTED: &str = "is not supported";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "@method",
            components: &["@method"],
            msg: get,
            opts: no_opts,
            tamper: |mut m| {
                m.method = "DELETE".into();
                m
            },
            refused_by: &[],
        },
        Case {
            name: "@authority",
            components: &["@method", "@authority"],
            msg: get,
            opts: no_opts,
            tamper: |m| m.authority("tampered.test"),
            refused_by: &[],
        },
        Case {
            name: "@path",
            components: &["@method", "@path"],
            msg: |p| get(&format!("{p}?a=1")),
            opts: no_opts,
            tamper: |m| {
                let t = m.target.replace("?", "-x?");
                with_target(m, t)
            },
            refused_by: &[],
        },
        Case {
            name: "@query",
            components: &["@method", "@query"],
            msg: |p| get(&format!("{p}?a=1&b=2")),
            opts: no_opts,
            tamper: |m| {
                let t = m.target.replace("b=2", "b=3");
                with_target(m, t)
            },
            refused_by: &[],
        },
        Case {
            name: "@target-uri",
            components: &["@method", "@target-uri"],
            msg: |p| get(&format!("{p}?a=1")),
            opts: no_opts,
            tamper: |m| {
                let t = m.target.replace("a=1", "a=2");
                with_target(m, t)
            },
            refused_by: &[],
        },
        Case {
            name: "@scheme",
            components: &["@method", "@scheme"],
            msg: get,
            opts: no_opts,
            // Signed for http, sent over TLS.
            tamper: |m| m.tls(true),
            refused_by: &[],
        },
        Case {
            name: "@request-target",
            components: &["@method", "@request-target"],
            msg: |p| get(&format!("{p}?a=1")),
            opts: no_opts,
            tamper: |m| {
                let t = m.target.replace("?", "/x?");
                with_target(m, t)
            },
            refused_by: &[],
        },
        Case {
            name: "content-digest (sha-256)",
            components: &["@method", "@path", "content-digest"],
            msg: |p| {
                Msg::new("POST", p)
                    .header("content-type", "application/json")
                    .body(r#"{"order":42,"items":["a","b"]}"#)
            },
            opts: || Opts {
                content_digest: Some("sha-256"),
                ..Opts::default()
            },
            // The body changed, its Content-Digest kept.
            tamper: |m| m.body(r#"{"order":43,"items":["a","b"]}"#),
            refused_by: &[],
        },
        Case {
            name: "content-digest (sha-512)",
            components: &["@method", "@path", "content-digest"],
            msg: |p| Msg::new("PUT", p).body("sha-512 body"),
            opts: || Opts {
                content_digest: Some("sha-512"),
                ..Opts::default()
            },
            tamper: |m| m.body("sha-512 bodY"),
            refused_by: &[],
        },
        Case {
            name: "@query-param;name=\"id\"",
            components: &["@method", "@query-param;name=\"id\""],
            msg: |p| get(&format!("{p}?other=1&id=7")),
            opts: no_opts,
            tamper: |m| {
                let t = m.target.replace("id=7", "id=8");
                with_target(m, t)
            },
            refused_by: &[(Lib::NodeSig, "@query-param is not supported")],
        },
        Case {
            name: "x-dict;key=\"b\"",
            components: &["@method", "x-dict;key=\"b\""],
            msg: |p| get(p).header("x-dict", "a=1,  b=2;p"),
            opts: no_opts,
            tamper: |m| m.set("x-dict", "a=1, b=3;p"),
            refused_by: &[],
        },
        Case {
            name: "x-dict;sf",
            components: &["@method", "x-dict;sf"],
            msg: |p| get(p).header("x-dict", "a=1,   b=(x  y);q"),
            opts: || Opts {
                sf_types: Some(json!({ "x-dict": "dictionary" })),
                ..Opts::default()
            },
            tamper: |m| m.set("x-dict", "a=1, b=(x z);q"),
            refused_by: &[(Lib::NodeSig, NODE_SIG_UNSUPPORTED)],
        },
        Case {
            name: "x-bin;bs (ASCII)",
            components: &["@method", "x-bin;bs"],
            msg: |p| get(p).header("x-bin", "ab, c"),
            opts: no_opts,
            tamper: |m| m.set("x-bin", "ab, d"),
            refused_by: &[(Lib::NodeSig, NODE_SIG_UNSUPPORTED)],
        },
        Case {
            name: "all derived + content-digest + nonce",
            components: &[
                "@method",
                "@authority",
                "@path",
                "@query",
                "@target-uri",
                "@scheme",
                "@request-target",
                "content-digest",
            ],
            msg: |p| Msg::new("POST", &format!("{p}?q=1")).body("all of it"),
            opts: || Opts {
                content_digest: Some("sha-256"),
                nonce: Some(uniq("nonce")),
                ..Opts::default()
            },
            tamper: |m| m.body("all of IT"),
            refused_by: &[],
        },
    ]
}

/// Runs every case with `lib` and both algorithms through Envoy; returns the report lines.
fn run_matrix(fx: &Fixture, tools: &Tools, lib: Lib) -> Vec<String> {
    let mut report = Vec::new();
    for case in cases() {
        for alg in ALGS {
            let what = format!("{} {} {}", lib.label(), alg.name(), case.name);
            let msg = (case.msg)(&format!("/s/{}", uniq("m")));
            let refusal = case.refused_by.iter().find(|(l, _)| *l == lib);
            let signed = lib_sign(tools, lib, &msg, alg, case.components, &(case.opts)());
            let (signed, base) = match (signed, refusal) {
                (Err(e), Some((_, expected))) => {
                    assert!(e.contains(expected), "{what}: refused with {e:?}");
                    report.push(format!("{what}: library refuses ({e})"));
                    continue;
                }
                (Err(e), None) => panic!("{what}: the library refused to sign: {e}"),
                (Ok(_), Some(_)) => panic!("{what}: the library now signs it: update the case"),
                (Ok(s), None) => s,
            };
            let tampered = (case.tamper)(signed.clone());
            let resp = send(fx, &tampered);
            assert_refused(fx, &resp, &tampered, &format!("{what}, tampered"));
            let resp = send(fx, &signed);
            assert!(
                resp.status == 200,
                "{what}: {resp:?}\nthe library's signature base:\n{base}"
            );
            assert_reached_with_key(&resp, alg, &what);
            if !signed.body.is_empty() {
                assert_eq!(resp.echo().body.as_bytes(), signed.body, "{what}");
            }
            report.push(format!("{what}: 200, tampered 401"));
        }
    }
    report
}

fn print_report(title: &str, lines: &[String]) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n{title}");
    for l in lines {
        let _ = writeln!(err, "  {l}");
    }
}

#[test]
fn python_http_message_signatures_signs_and_envoy_verifies_every_component() {
    let Some(tools) = installed_or_skip("python_http_message_signatures") else {
        return;
    };
    let fx = fixture();
    let report = run_matrix(&fx, tools, Lib::Python);
    print_report(&Lib::Python.label(), &report);
}

#[test]
fn npm_http_message_signatures_signs_and_envoy_verifies_every_component() {
    let Some(tools) = installed_or_skip("npm_http_message_signatures") else {
        return;
    };
    let fx = fixture();
    let report = run_matrix(&fx, tools, Lib::NodeHms);
    print_report(&Lib::NodeHms.label(), &report);
}

#[test]
fn npm_http_message_sig_signs_and_envoy_verifies_what_it_supports() {
    let Some(tools) = installed_or_skip("npm_http_message_sig") else {
        return;
    };
    let fx = fixture();
    let report = run_matrix(&fx, tools, Lib::NodeSig);
    print_report(&Lib::NodeSig.label(), &report);
}
