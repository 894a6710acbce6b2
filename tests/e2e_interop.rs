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

use interop::{b64, installed_or_skip, Lib, Msg, Tools, ALL_LIBS};
use serde_json::{json, Value};
use support::{echo, uniq, Client, Envoy, EnvoyOpts, Req, Response, Tls};

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
    lib_sign_all(tools, lib, &[(msg.clone(), alg, components, opts.clone())]).remove(0)
}

/// A request to sign: the message, the key, the components, the options.
type ToSign<'a> = (Msg, Alg, &'a [&'a str], Opts);

/// `lib_sign` for many requests with one start of the library's driver.
fn lib_sign_all(tools: &Tools, lib: Lib, items: &[ToSign]) -> Vec<Result<(Msg, String), String>> {
    let specs: Vec<Value> = items
        .iter()
        .map(|(msg, alg, components, opts)| spec_for_signing(msg, *alg, components, opts))
        .collect();
    lib.sign_all(tools, &specs)
        .into_iter()
        .zip(items)
        .map(|(signed, (msg, ..))| {
            let signed = signed?;
            let mut out = msg.clone();
            for (n, v) in signed.headers {
                out = out.set(&n, v);
            }
            Ok((out, signed.base))
        })
        .collect()
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
    let cases = cases();
    let runs: Vec<(&Case, Alg)> = cases
        .iter()
        .flat_map(|c| ALGS.map(|alg| (c, alg)))
        .collect();
    let items: Vec<ToSign> = runs
        .iter()
        .map(|(case, alg)| {
            let msg = (case.msg)(&format!("/s/{}", uniq("m")));
            (msg, *alg, case.components, (case.opts)())
        })
        .collect();
    let results = lib_sign_all(tools, lib, &items);
    for ((case, alg), signed) in runs.into_iter().zip(results) {
        let what = format!("{} {} {}", lib.label(), alg.name(), case.name);
        let refusal = case.refused_by.iter().find(|(l, _)| *l == lib);
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

// ---------------------------------------------------------------------------------------------
// Issue point 1: a path signed with `%7E`, and route selection against encoding tricks

#[test]
fn issue_1_a_path_signed_with_7e_verifies_on_the_path_envoy_decoded() {
    let Some(tools) = installed_or_skip("issue_1_a_path_signed_with_7e") else {
        return;
    };
    let fx = fixture();
    let mut report = Vec::new();
    let variants: [(&str, &[&str]); 3] = [
        ("%7E", &["@method", "@path", "@query"]),
        ("%7e", &["@method", "@target-uri"]),
        ("%7E", &["@method", "@request-target"]),
    ];
    for lib in ALL_LIBS {
        let users: Vec<String> = variants.iter().map(|_| uniq("user")).collect();
        let items: Vec<ToSign> = variants
            .iter()
            .zip(&users)
            .enumerate()
            .map(|(i, ((encoded, components), user))| {
                let target = format!("/a/{encoded}{user}?x=1");
                (get(&target), ALGS[i % 2], *components, no_opts())
            })
            .collect();
        let results = lib_sign_all(tools, lib, &items);
        for (((msg, alg, components, _), signed), user) in items.iter().zip(results).zip(&users) {
            let (target, alg) = (&msg.target, *alg);
            let what = format!(
                "{} {} {target} over {components:?}",
                lib.label(),
                alg.name()
            );
            let (signed, base) = signed.unwrap();
            let path = target.split('?').next().unwrap();
            assert!(base.contains(path), "{what}: {base}");
            // A covered part changed: still refused.
            let tampered = with_target(signed.clone(), target.replace("x=1", "x=2"));
            let resp = send(&fx, &tampered);
            assert_eq!(resp.status, 401, "{what}, tampered: {resp:?}");
            let resp = send(&fx, &signed);
            assert_reached_with_key(&resp, alg, &what);
            // Envoy's normalize_path decoded it: the plugin and the upstream see `~`.
            assert_eq!(resp.echo().path, format!("/a/~{user}?x=1"), "{what}");
            report.push(format!("{what}: 200 (upstream path /a/~...)"));
        }
    }
    // Only `~` is tried encoded: another unreserved character sent percent-encoded is decoded by
    // Envoy, and a signature over the encoded form does not verify (sign what Envoy forwards).
    let target = format!("/a/%75{}", uniq("ser"));
    let (signed, _) = lib_sign(
        tools,
        Lib::Python,
        &get(&target),
        Alg::Hmac,
        &["@method", "@path"],
        &no_opts(),
    )
    .unwrap();
    let resp = send(&fx, &signed);
    assert_eq!(resp.status, 401, "{target}: {resp:?}");
    report.push(format!(
        "{target} signed as sent (%75 = u): 401, Envoy forwards /a/u..."
    ));
    print_report("issue 1: %7E", &report);
}

#[test]
fn issue_1_route_and_policy_selection_follow_the_normalized_path() {
    let Some(tools) = installed_or_skip("issue_1_route_and_policy_selection") else {
        return;
    };
    let fx = fixture();
    // The admin route's policy admits only 10.0.0.0/8: a loopback client gets 404, whatever the
    // spelling of the path, and nothing reaches the upstream.
    for target in [
        format!("/admin/{}", uniq("x")),
        format!("/%61dmin/{}", uniq("x")),
        format!("/%61%64%6d%69%6e/{}", uniq("x")),
        format!("/a/%2e%2e/admin/{}", uniq("x")),
        format!("/s/..//admin/{}", uniq("x")),
    ] {
        let resp = send(&fx, &get(&target));
        assert_eq!(resp.status, 404, "{target}: {resp:?}");
        let path = target.rsplit('/').next().unwrap();
        assert!(
            !fx.echo.paths().iter().any(|p| p.ends_with(path)),
            "{target} reached the upstream"
        );
        let record = fx.envoy.access_log_record(&target, |v| {
            v["path"]
                .as_str()
                .is_some_and(|p| p == format!("/admin/{path}"))
        });
        assert_eq!(record["route"], "admin", "{target}: {record}");
        assert_eq!(record["reason"], "ip_denied", "{target}: {record}");
    }
    // `..` decoded and resolved: out of /admin/, served by the open route with the path Envoy made.
    let leaf = uniq("x");
    let resp = send(&fx, &get(&format!("/admin/%2e%2e/{leaf}")));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.echo().path, format!("/{leaf}"));
    // An encoded slash: Envoy answers with a redirect to the unescaped path (nothing upstream).
    let leaf = uniq("x");
    let resp = send(&fx, &get(&format!("/admin%2F{leaf}")));
    assert!(
        (300..400).contains(&resp.status),
        "/admin%2F{leaf}: {resp:?}"
    );
    assert_eq!(
        resp.header("location"),
        Some(format!("/admin/{leaf}").as_str())
    );
    assert!(!fx.echo.paths().iter().any(|p| p.ends_with(&leaf)));
    // A valid signature does not change the route: `/%61dmin/%7Eu` signed over @path as sent is on
    // the admin route (404), and `/s/%2e%2e/admin/...` resolves out of the signed prefix too.
    for target in [
        format!("/%61dmin/%7E{}", uniq("u")),
        format!("/s/%2e%2e/admin/{}", uniq("u")),
    ] {
        let (signed, _) = lib_sign(
            tools,
            Lib::Python,
            &get(&target),
            Alg::Hmac,
            &["@method", "@path"],
            &no_opts(),
        )
        .unwrap();
        let resp = send(&fx, &signed);
        assert_eq!(resp.status, 404, "{target}: {resp:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Issue point 2: @target-uri as received

/// The same request over HTTP/2 (TLS, ALPN h2): method, :authority, path, the headers.
fn h2_req(msg: &Msg) -> Req {
    let mut req = Req::new(&msg.method, &msg.target).authority(&msg.authority);
    for (n, v) in &msg.headers {
        req = req.header(n, std::str::from_utf8(v).unwrap());
    }
    req.body(msg.body.clone())
}

#[test]
fn issue_2_target_uri_is_the_uri_as_received() {
    let Some(tools) = installed_or_skip("issue_2_target_uri") else {
        return;
    };
    let fx = fixture();
    let components = ["@method", "@target-uri", "@authority"];
    let mut report = Vec::new();
    let uris = [
        (true, "EXAMPLE.com:443"),
        (true, "example.com:443"),
        (true, "Example.COM"),
        (false, "EXAMPLE.com:80"),
    ];
    for lib in ALL_LIBS {
        let items: Vec<ToSign> = uris
            .iter()
            .enumerate()
            .map(|(i, (tls, authority))| {
                let msg = get("/p").authority(authority).tls(*tls);
                (msg, ALGS[i % 2], &components[..], no_opts())
            })
            .collect();
        let results = lib_sign_all(tools, lib, &items);
        for ((msg, alg, ..), signed) in items.iter().zip(results) {
            let (alg, tls, authority) = (*alg, msg.tls, msg.authority.as_str());
            let what = format!("{} {} {}", lib.label(), alg.name(), msg.url());
            let (signed, base) = signed.unwrap();
            assert!(
                base.contains(&format!("\"@target-uri\": {}\n", msg.url())),
                "{what}: {base}"
            );
            assert!(
                base.contains("\"@authority\": example.com\n"),
                "{what}: {base}"
            );
            let resp = send(&fx, &signed);
            assert_reached_with_key(&resp, alg, &format!("{what} (HTTP/1.1)"));
            // What Envoy forwards as Host: the authority as received.
            assert_eq!(resp.echo().header("host"), Some(authority), "{what}");
            if tls {
                let resp = Client::h2c()
                    .tls(Tls::V1_3)
                    .send_blocking(fx.envoy.https_addr(), &h2_req(&signed))
                    .unwrap();
                assert_reached_with_key(&resp, alg, &format!("{what} (HTTP/2)"));
                assert_eq!(
                    resp.echo().header("host"),
                    Some(authority),
                    "{what} (HTTP/2)"
                );
            }
            report.push(format!(
                "{what}: 200 over HTTP/1.1{}",
                if tls { " and HTTP/2" } else { "" }
            ));
        }
    }
    // Signed over the normalized URI, sent with another spelling of the authority: refused (the
    // signer must sign the URI it sends).
    let sent = get("/p").authority("EXAMPLE.com:443").tls(true);
    let (normalized, _) = lib_sign(
        tools,
        Lib::Python,
        &get("/p").authority("example.com").tls(true),
        Alg::Hmac,
        &["@method", "@target-uri"],
        &no_opts(),
    )
    .unwrap();
    let mut crossed = sent.clone();
    crossed.headers = normalized.headers;
    let resp = send(&fx, &crossed);
    assert_eq!(resp.status, 401, "{resp:?}");
    report.push("signed https://example.com/p, sent as EXAMPLE.com:443: 401".into());
    print_report("issue 2: @target-uri", &report);
}

// ---------------------------------------------------------------------------------------------
// Issue point 3: `;bs` over a field value that is not UTF-8

/// Every byte 0x80..=0xff (obs-text), between two ASCII words.
fn obs_text_value() -> Vec<u8> {
    let mut v = b"raw ".to_vec();
    v.extend(0x80..=0xffu8);
    v.extend_from_slice(b" end");
    v
}

#[test]
fn issue_3_bs_signs_the_bytes_of_a_value_that_is_not_utf8() {
    let Some(tools) = installed_or_skip("issue_3_bs") else {
        return;
    };
    let fx = fixture();
    let value = obs_text_value();
    assert!(std::str::from_utf8(&value).is_err());
    let components = ["@method", "@path", "x-raw;bs"];
    for alg in ALGS {
        let msg = get(&format!("/s/{}", uniq("bs"))).header("x-raw", &value);
        let what = format!("{} {}", Lib::Python.label(), alg.name());
        let (signed, base) =
            lib_sign(tools, Lib::Python, &msg, alg, &components, &no_opts()).unwrap();
        assert!(
            base.contains(&format!("\"x-raw\";bs: :{}:\n", b64(&value))),
            "{what}: {base}"
        );
        // One byte changed: refused.
        let mut bad = value.clone();
        bad[10] ^= 1;
        let tampered = signed.clone().set("x-raw", &bad);
        let resp = send(&fx, &tampered);
        assert_refused(&fx, &resp, &tampered, &format!("{what}, tampered"));
        // Envoy accepts obs-text over HTTP/1.1 and hands the plugin the bytes: 200.
        let resp = send(&fx, &signed);
        assert_reached_with_key(&resp, alg, &what);
        // The upstream gets them too (the echo shows them lossily).
        assert_eq!(
            resp.echo().header("x-raw"),
            Some(String::from_utf8_lossy(&value).as_ref()),
            "{what}"
        );
    }

    // npm http-message-signatures 1.0.6 base64-encodes `Buffer.from(value)`: the UTF-8 encoding of
    // the value's text (Node hands such bytes over as Latin-1), not the bytes received. Its
    // signature therefore covers other bytes than were sent, and does not verify.
    let msg = get(&format!("/s/{}", uniq("bs"))).header("x-raw", &value);
    let (signed, base) = lib_sign(
        tools,
        Lib::NodeHms,
        &msg,
        Alg::Hmac,
        &components,
        &no_opts(),
    )
    .unwrap();
    let latin1_as_utf8: String = value.iter().map(|&b| char::from(b)).collect();
    assert!(
        base.contains(&format!(
            "\"x-raw\";bs: :{}:\n",
            b64(latin1_as_utf8.as_bytes())
        )),
        "{base}"
    );
    let resp = send(&fx, &signed);
    assert_eq!(resp.status, 401, "{resp:?}");
    // Over ASCII its `;bs` agrees with the others (the component matrix); http-message-sig refuses
    // `bs` altogether.
    let err = lib_sign(
        tools,
        Lib::NodeSig,
        &msg,
        Alg::Hmac,
        &components,
        &no_opts(),
    )
    .unwrap_err();
    assert!(err.contains("bs is not supported"), "{err}");
}

/// `edgeward sign` reads a request whose field value holds obs-text (valid in HTTP/1.1), signs `;bs` over
/// its bytes and prints them unchanged: the Python library and the plugin both verify it.
#[test]
fn issue_3_edgeward_sign_signs_bs_over_bytes_that_are_not_utf8() {
    let Some(tools) = installed_or_skip("issue_3_edgeward_sign_bs") else {
        return;
    };
    let fx = fixture();
    let mut raw = format!(
        "GET /s/{} HTTP/1.1\r\nHost: localhost\r\nX-Raw: ",
        uniq("bs")
    )
    .into_bytes();
    raw.extend(obs_text_value());
    raw.extend_from_slice(b"\r\n\r\n");
    let out = edgeward_sign(&raw, Alg::Hmac, &["--components", "@method,@path,x-raw;bs"]);
    assert!(
        out.status.success(),
        "edgeward sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = parse_raw(&out.stdout);
    Lib::Python
        .verify(tools, &verify_spec(&signed, Alg::Hmac))
        .unwrap();
    assert_reached_with_key(&send(&fx, &signed), Alg::Hmac, "edgeward sign ;bs");
}

// ---------------------------------------------------------------------------------------------
// Issue point 4: `;sf` on a dictionary with a repeated key, and on a list with repeated members

#[test]
fn issue_4_sf_on_repeated_dictionary_keys_and_list_members() {
    let Some(tools) = installed_or_skip("issue_4_sf") else {
        return;
    };
    let fx = fixture();
    let types = json!({ "x-dict": "dictionary", "x-list": "list" });
    let opts = Opts {
        sf_types: Some(types),
        ..Opts::default()
    };
    // (field, value, component, expected status for the Python and npm http-message-signatures
    // signers): a repeated dictionary key is unavailable (the signer's last-wins serialization is
    // not what edgeward covers), a list keeps every member.
    let cases: [(&str, &str, &str, u16, u16); 6] = [
        ("x-dict", "x=1, x=2", "x-dict;sf", 401, 401),
        ("x-dict", "x=1, x=2", "x-dict;key=\"x\"", 401, 401),
        ("x-list", "a, a", "x-list;sf", 200, 200),
        ("x-list", "a;x=1,  a;x=2", "x-list;sf", 200, 200),
        ("x-list", "a, b, a", "x-list;sf", 200, 200),
        // Typed as a dictionary by the Python signer, `a, a` serializes as `a` (last wins); edgeward
        // reads it as the list it also is (`a, a`): a documented difference. The npm library parses a
        // list first and agrees with edgeward.
        ("x-dict", "a, a", "x-dict;sf", 401, 200),
    ];
    let mut report = Vec::new();
    for lib in [Lib::Python, Lib::NodeHms] {
        let components: Vec<[&str; 2]> = cases.iter().map(|c| ["@method", c.2]).collect();
        let items: Vec<ToSign> = cases
            .iter()
            .zip(&components)
            .map(|((field, value, ..), components)| {
                let msg = get(&format!("/s/{}", uniq("sf"))).header(field, value);
                (msg, Alg::Hmac, &components[..], opts.clone())
            })
            .collect();
        let results = lib_sign_all(tools, lib, &items);
        for ((field, value, component, py_status, npm_status), signed) in cases.iter().zip(results)
        {
            let want = if lib == Lib::Python {
                *py_status
            } else {
                *npm_status
            };
            let what = format!("{} {field}: {value} over {component}", lib.label());
            let (signed, base) = signed.unwrap();
            let resp = send(&fx, &signed);
            assert_eq!(resp.status, want, "{what}: {resp:?}\n{base}");
            let line = base.lines().nth(1).unwrap_or_default().to_string();
            report.push(format!("{what}: signed {line:?}, {}", resp.status));
        }
    }
    // edgeward's own signer refuses what its verifier cannot cover.
    let raw = b"GET /s/x HTTP/1.1\r\nHost: localhost\r\nX-Dict: x=1, x=2\r\n\r\n";
    let out = edgeward_sign(raw, Alg::Hmac, &["--components", "@method,x-dict;sf"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("cannot supply component(s) x-dict"),
        "edgeward sign on x=1, x=2 for ;sf: {out:?}"
    );
    print_report("issue 4: ;sf", &report);
}

// ---------------------------------------------------------------------------------------------
// edgeward signs, the libraries verify

/// Runs `edgeward sign` with the test key of `alg` on `raw`.
fn edgeward_sign(raw: &[u8], alg: Alg, args: &[&str]) -> std::process::Output {
    let dir = support::TempDir::new("interop-sign").unwrap();
    let key_args: Vec<String> = match alg {
        Alg::Hmac => vec![
            "--key-id".into(),
            HMAC_ID.into(),
            "--secret-base64".into(),
            b64(&HMAC_SECRET),
            "--alg".into(),
            "hmac-sha256".into(),
        ],
        Alg::Ed25519 => {
            let pem = dir.path().join("client.pem");
            std::fs::write(&pem, ed25519_pems().0).unwrap();
            vec![
                "--key-id".into(),
                ED25519_ID.into(),
                "--private-key-file".into(),
                pem.to_string_lossy().into_owned(),
            ]
        }
    };
    let args: Vec<&str> = std::iter::once("sign")
        .chain(key_args.iter().map(String::as_str))
        .chain(args.iter().copied())
        .chain(["--scheme", "http", "--request", "-"])
        .collect();
    support::cli::run(&args, support::cli::NO_ENV, raw)
}

/// A raw HTTP/1.1 request (as `edgeward sign` prints it) as a `Msg` for plain HTTP.
fn parse_raw(raw: &[u8]) -> Msg {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = &raw[..at];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = String::from_utf8(lines.next().unwrap().to_vec()).unwrap();
    let mut parts = first.split(' ');
    let mut msg = Msg::new(parts.next().unwrap(), parts.next().unwrap());
    for line in lines {
        let colon = line.iter().position(|&b| b == b':').unwrap();
        let name = String::from_utf8(line[..colon].to_vec()).unwrap();
        let value = line[colon + 1..].trim_ascii().to_vec();
        match name.to_ascii_lowercase().as_str() {
            "host" => msg.authority = String::from_utf8(value).unwrap(),
            "content-length" => {}
            _ => msg.headers.push((name, value)),
        }
    }
    msg.body(raw[at + 4..].to_vec())
}

fn verify_spec(msg: &Msg, alg: Alg) -> Value {
    let mut spec = msg.spec();
    merge(&mut spec, &alg.key_fields(false));
    spec["sf_types"] = json!({ "x-dict": "dictionary" });
    spec
}

#[test]
fn edgeward_signs_and_each_library_verifies() {
    let Some(tools) = installed_or_skip("edgeward_signs_and_each_library_verifies") else {
        return;
    };
    let fx = fixture();
    let get_raw = |p: &str| {
        format!("GET {p}?other=1&id=7 HTTP/1.1\r\nHost: localhost\r\nX-Dict: a=1,  b=2;p\r\nX-Bin: ab, c\r\n\r\n")
            .into_bytes()
    };
    let post_raw = |p: &str| {
        let body = r#"{"order":42}"#;
        format!(
            "POST {p}?q=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    // (name, request, extra args, libraries that cannot verify it: their refusal)
    type Raw = Box<dyn Fn(&str) -> Vec<u8>>;
    let cases: Vec<(&str, Raw, Vec<&str>, &[(Lib, &str)])> = vec![
        ("default components", Box::new(get_raw), vec![], &[]),
        (
            "@target-uri @scheme @request-target",
            Box::new(get_raw),
            vec![
                "--components",
                "@method,@target-uri,@scheme,@request-target",
            ],
            &[],
        ),
        (
            "content-digest sha-512 and a nonce",
            Box::new(post_raw),
            vec![
                "--components",
                "@method,@authority,@path,@query,content-digest",
                "--content-digest",
                "sha-512",
                "--random-nonce",
            ],
            &[],
        ),
        (
            "@query-param, ;key, ;sf, ;bs",
            Box::new(get_raw),
            vec![
                "--components",
                "@method,@query-param;name=\"id\",x-dict;key=\"b\",x-dict;sf,x-bin;bs",
            ],
            &[(Lib::NodeSig, "@query-param is not supported")],
        ),
        (
            ";sf, ;bs",
            Box::new(get_raw),
            vec!["--components", "@method,x-dict;sf,x-bin;bs"],
            &[(Lib::NodeSig, "sf is not supported")],
        ),
    ];
    let mut report = Vec::new();
    // Every case signed by edgeward (and sent through Envoy: the plugin takes the same bytes) ...
    let mut signed = Vec::new();
    for (name, raw, args, refused_by) in &cases {
        for alg in ALGS {
            let out = edgeward_sign(&raw(&format!("/s/{}", uniq("e"))), alg, args);
            assert!(
                out.status.success(),
                "edgeward sign {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let msg = parse_raw(&out.stdout);
            let resp = send(&fx, &msg);
            assert_reached_with_key(&resp, alg, &format!("edgeward sign {name} through Envoy"));
            signed.push((*name, *refused_by, alg, msg));
        }
    }
    // ... then verified by each library, with a copy whose method was changed.
    for lib in ALL_LIBS {
        let specs: Vec<Value> = signed
            .iter()
            .flat_map(|(_, _, alg, msg)| {
                let mut tampered = msg.clone();
                tampered.method = "PATCH".into();
                [verify_spec(msg, *alg), verify_spec(&tampered, *alg)]
            })
            .collect();
        let mut verdicts = lib.verify_all(tools, &specs).into_iter();
        for (name, refused_by, alg, _) in &signed {
            let what = format!("edgeward sign {} {name} -> {}", alg.name(), lib.label());
            let (verdict, tampered) = (verdicts.next().unwrap(), verdicts.next().unwrap());
            if let Some((_, expected)) = refused_by.iter().find(|(l, _)| *l == lib) {
                let err = verdict.unwrap_err();
                assert!(err.contains(expected), "{what}: {err}");
                report.push(format!("{what}: library refuses ({err})"));
                continue;
            }
            verdict.unwrap_or_else(|e| panic!("{what}: {e}"));
            let err = tampered.expect_err(&format!("{what}: accepted a tampered copy"));
            report.push(format!("{what}: verifies; tampered copy refused ({err})"));
        }
    }
    print_report("edgeward signs", &report);
}

// ---------------------------------------------------------------------------------------------
// The RFC's examples, verified by each library (a check of the drivers)

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/rfc9421/");

/// RFC 9421 App. B.2 test request (`test-request.txt`, LF line ends) with the given signature headers.
fn rfc_request(signature_input: &str, signature: &str) -> Msg {
    let text = std::fs::read_to_string(format!("{VECTORS}test-request.txt")).unwrap();
    let raw = text.replace('\n', "\r\n");
    let mut msg = parse_raw(raw.as_bytes()).tls(true);
    msg = msg
        .set("signature-input", signature_input)
        .set("signature", signature);
    // The body as the RFC gives it (its Content-Length).
    msg.headers.push(("Content-Length".into(), b"18".to_vec()));
    msg
}

#[test]
fn rfc9421_b25_and_b26_examples_verify_with_each_library() {
    let Some(tools) = installed_or_skip("rfc9421_b25_and_b26_examples") else {
        return;
    };
    // B.2.6 from shared/vectors; B.2.5 from the RFC's text (App. B.2.5, key test-shared-secret of
    // App. B.1.5), as src/signature/tests.rs has it.
    let b26: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{VECTORS}b26-ed25519.json")).unwrap(),
    )
    .unwrap();
    let header = |k: &str| {
        b26[k]
            .as_str()
            .unwrap()
            .split_once(": ")
            .unwrap()
            .1
            .to_string()
    };
    let public_pem = std::fs::read_to_string(format!("{VECTORS}test-key-ed25519.pub.pem")).unwrap();
    let examples = [
        (
            "B.2.6 ed25519",
            rfc_request(
                &header("expected_signature_input_header"),
                &header("expected_signature_header"),
            ),
            json!({ "key_id": "test-key-ed25519", "alg": "ed25519", "public_key_pem": public_pem }),
            "wqcA",
        ),
        (
            "B.2.5 hmac-sha256",
            rfc_request(
                "sig-b25=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"",
                "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
            ),
            json!({ "key_id": "test-shared-secret", "alg": "hmac-sha256",
                    "secret_b64": "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==" }),
            "pxcQ",
        ),
    ];
    for lib in ALL_LIBS {
        let mut specs = Vec::new();
        for (_, msg, key, sig_start) in &examples {
            // One byte of the signature changed.
            let bad = msg.get("signature").unwrap().replacen(
                sig_start,
                &format!("{}x", &sig_start[..3]),
                1,
            );
            for m in [msg.clone(), msg.clone().set("signature", bad)] {
                let mut spec = m.spec();
                merge(&mut spec, key);
                // The examples are from 2021 and do not cover their Content-Digest.
                spec["max_age"] = Value::Null;
                spec["check_body"] = json!(false);
                specs.push(spec);
            }
        }
        let mut verdicts = lib.verify_all(tools, &specs).into_iter();
        for (name, ..) in &examples {
            let (good, bad) = (verdicts.next().unwrap(), verdicts.next().unwrap());
            good.unwrap_or_else(|e| panic!("{name} with {}: {e}", lib.label()));
            assert!(bad.is_err(), "{name}, altered, with {}", lib.label());
        }
    }
}
