//! `edgeward jwks`: the JWK Set and thumbprints of ed25519 keys given in every form a policy or `sign`
//! takes (RFC 8037's example key), read back by the plugin's own JWK Set reader; bad keys and usage exit
//! 2 without echoing what was read. And `edgeward eval --key-source`: a JWKS policy evaluated offline.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use cli::text;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use std::process::Output;

#[path = "support/cli.rs"]
mod cli;

/// RFC 8037 Appendix A.1: the example Ed25519 key (private `d`, public `x`, base64url).
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// RFC 8037 Appendix A.3: its RFC 7638 thumbprint.
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

const CREATED: u64 = 1_700_000_000;

fn edgeward(args: &[&str], stdin: &[u8]) -> Output {
    cli::run(args, cli::NO_ENV, stdin)
}

/// stdout of a run that must succeed with nothing on stderr.
fn ok(args: &[&str], stdin: &[u8]) -> String {
    String::from_utf8(cli::quiet(args, cli::NO_ENV, stdin)).unwrap()
}

/// A fresh directory of this test process.
fn temp_dir(tag: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "edgeward-cli-jwks-{tag}-{}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, contents: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

fn rfc8037_key() -> ed25519_dalek::SigningKey {
    let d: [u8; 32] = URL_SAFE_NO_PAD
        .decode(RFC8037_D)
        .unwrap()
        .try_into()
        .unwrap();
    ed25519_dalek::SigningKey::from_bytes(&d)
}

fn private_pem(key: &ed25519_dalek::SigningKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

fn public_pem(key: &ed25519_dalek::SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

#[test]
fn rfc8037_key_in_every_form_gives_the_same_set_and_thumbprint() {
    let key = rfc8037_key();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        RFC8037_X
    );
    let dir = temp_dir("forms");
    let private = private_pem(&key);
    let files = [
        write(&dir, "public.pem", public_pem(&key)),
        write(
            &dir,
            "public.b64",
            format!("{}\n", STANDARD.encode(key.verifying_key().as_bytes())),
        ),
        write(&dir, "private.pem", &private),
    ];
    let want_set = format!(
        "{{\"keys\":[{{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"{RFC8037_X}\",\"use\":\"sig\",\"alg\":\"EdDSA\"}}]}}\n"
    );
    let private_b64: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for file in &files {
        let set = ok(&["jwks", file], b"");
        assert_eq!(set, want_set, "{file}");
        assert!(!set.contains(RFC8037_D) && !set.contains(&private_b64) && !set.contains("\"d\""));
        let tp = ok(&["jwks", "--thumbprint", file], b"");
        assert_eq!(tp, format!("{RFC8037_THUMBPRINT}\n"), "{file}");
    }
    // Standard input, once, among files.
    let set = ok(&["jwks", "-"], private.as_bytes());
    assert_eq!(set, want_set);
    let tps = ok(
        &["jwks", "--thumbprint", &files[0], "-", &files[1]],
        private.as_bytes(),
    );
    assert_eq!(tps, format!("{RFC8037_THUMBPRINT}\n").repeat(3));
}

#[test]
fn several_keys_with_kids_in_order_read_back_by_the_plugin() {
    let dir = temp_dir("kids");
    let keys = [1u8, 2, 3].map(|s| ed25519_dalek::SigningKey::from_bytes(&[s; 32]));
    let files = [
        write(&dir, "k1.pem", private_pem(&keys[0])),
        write(&dir, "k2.pub", public_pem(&keys[1])),
        write(&dir, "k3.pem", private_pem(&keys[2])),
    ];
    let args = [
        "jwks",
        "--kid",
        "one",
        "--kid",
        "two \"q\"",
        "--kid",
        "three",
        &files[0],
        &files[1],
        &files[2],
    ];
    let set = ok(&args, b"");
    // Deterministic: the same bytes every run.
    assert_eq!(ok(&args, b""), set);
    let v: serde_json::Value = serde_json::from_str(&set).unwrap();
    let listed = v["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (jwk, (key, kid)) in listed
        .iter()
        .zip(keys.iter().zip(["one", "two \"q\"", "three"]))
    {
        assert_eq!(jwk["kid"], kid);
        assert_eq!(
            jwk["x"],
            URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())
        );
    }
    // The plugin's reader keeps every key, with its kid, named by the thumbprints `--thumbprint` prints.
    let parsed = edgeward::keys::jwks::parse(set.as_bytes(), 1 << 20, 64).unwrap();
    assert_eq!(parsed.skipped, 0);
    let tps = ok(
        &["jwks", "--thumbprint", &files[0], &files[1], &files[2]],
        b"",
    );
    let tps: Vec<&str> = tps.lines().collect();
    let read: Vec<(Option<&str>, &str)> = parsed
        .set
        .keys
        .iter()
        .map(|k| (k.kid.as_deref(), k.thumbprint.as_str()))
        .collect();
    assert_eq!(
        read,
        [
            (Some("one"), tps[0]),
            (Some("two \"q\""), tps[1]),
            (Some("three"), tps[2])
        ]
    );
    assert_ne!(tps[0], tps[1]);
}

#[test]
fn keys_that_cannot_be_used_exit_2_naming_the_file_only() {
    let dir = temp_dir("bad");
    // RFC 8410 §10.3: an X25519 private key.
    let x25519 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let cases = [
        (
            "text.txt",
            "not a key: s3cr3t-value".to_string(),
            "public_key is neither PEM nor base64",
        ),
        ("short.b64", STANDARD.encode([7u8; 31]), "31 bytes"),
        ("weak.b64", STANDARD.encode(identity), "weak"),
        (
            "x25519.pem",
            x25519.to_string(),
            "not an ed25519 private key",
        ),
    ];
    for (name, contents, why) in cases {
        let file = write(&dir, name, &contents);
        let out = edgeward(&["jwks", &file], b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert!(
            stderr.starts_with(&format!("edgeward: {file}: ")) && stderr.contains(why),
            "{name}: {stderr}"
        );
        assert!(
            !stderr.contains("s3cr3t") && !stderr.contains("MC4CAQAw"),
            "{stderr}"
        );
    }
    // One bad key among good ones: nothing printed.
    let good = write(&dir, "good.pem", private_pem(&rfc8037_key()));
    let bad = write(&dir, "bad.txt", "nope");
    let out = edgeward(&["jwks", &good, &bad], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// A document whose policy takes its keys from the key source `partners` (by kid; at most 2 keys).
const KEY_SOURCE_DOC: &str = r#"{
  "key_sources": {
    "partners": {"type": "jwks", "cluster": "keys", "url": "https://keys.example/jwks.json", "max_keys": 2}
  },
  "policies": {"partners": {"signature": {"key_sources": ["partners"]}}},
  "routes": [{"policy": "partners"}]
}"#;

/// `edgeward eval DOC --request - --now CREATED+1 EXTRA...` on `request`.
fn eval(doc: &str, request: &[u8], extra: &[&str]) -> Output {
    let now = (CREATED + 1).to_string();
    let mut args = vec!["eval", doc, "--request", "-", "--now", &now];
    args.extend_from_slice(extra);
    edgeward(&args, request)
}

fn eval_json(doc: &str, request: &[u8], extra: &[&str]) -> serde_json::Value {
    let out = eval(doc, request, extra);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_reads_a_key_source_from_a_file() {
    let dir = temp_dir("eval");
    let doc = write(&dir, "doc.json", KEY_SOURCE_DOC);
    let keys = [1u8, 2, 3].map(|s| ed25519_dalek::SigningKey::from_bytes(&[s; 32]));
    let pem = |i: usize| write(&dir, &format!("k{i}.pem"), private_pem(&keys[i]));
    let (k0, k1, k2) = (pem(0), pem(1), pem(2));
    let created = CREATED.to_string();
    let signed = ok(
        &[
            "sign",
            "--key-id",
            "one",
            "--private-key-file",
            &k0,
            "--created",
            &created,
            "--request",
            "-",
        ],
        b"GET /orders?id=7 HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    );
    let set = |args: &[&str]| {
        let mut all = vec!["jwks"];
        all.extend_from_slice(args);
        write(&dir, "set.json", ok(&all, b""))
    };

    // The set holds the key under its kid: allowed, the key id sent upstream.
    let file = set(&["--kid", "two", "--kid", "one", &k1, &k0]);
    let source = format!("partners={file}");
    let v = eval_json(&doc, signed.as_bytes(), &["--key-source", &source]);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["upstream_headers"]["x-edgeward-key-id"], "one");
    // Signed by another key than the set's "one": refused.
    let file = set(&["--kid", "one", &k2]);
    let v = eval_json(
        &doc,
        signed.as_bytes(),
        &["--key-source", &format!("partners={file}")],
    );
    assert_eq!(
        (v["status"].as_u64(), &v["reason"]),
        (Some(401), &"signature_invalid".into()),
        "{v}"
    );
    // No set given: the source never loaded, as in the plugin before its first fetch.
    let v = eval_json(&doc, signed.as_bytes(), &[]);
    assert_eq!(v["status"], 503, "{v}");
    assert_eq!(v["reason"], "keys_unavailable");
    assert_eq!(v["response_headers"]["retry-after"], "5");
    // An entry the reader cannot use is left out, with a warning; the set still serves.
    let mixed = format!(
        "{{\"keys\":[{{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}},{}]}}",
        edgeward::keys::jwks::jwk_json(&keys[0].verifying_key(), Some("one"))
    );
    let file = write(&dir, "mixed.json", mixed);
    let out = eval(
        &doc,
        signed.as_bytes(),
        &["--key-source", &format!("partners={file}")],
    );
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(
        text(&out.stderr),
        format!("edgeward: {file}: warning: 1 of the set's keys left out (not usable ed25519 verification keys)\n")
    );

    // A set past the source's max_keys (2), or not a JWK Set: exit 2, naming the file.
    let file = set(&[&k0, &k1, &k2]);
    let out = eval(
        &doc,
        signed.as_bytes(),
        &["--key-source", &format!("partners={file}")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!("edgeward: {file}: the key set has more than max_keys (2) keys\n")
    );
    let out = eval(
        &doc,
        signed.as_bytes(),
        &["--key-source", &format!("partners={k0}")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with(&format!("edgeward: {k0}: the key set is not a JWK Set")));
    assert!(!text(&out.stderr).contains("PRIVATE"));
    // A name the document does not have, or the same twice: usage errors naming the valid sources.
    let out = eval(&doc, signed.as_bytes(), &["--key-source", "partner=x.json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "--key-source \"partner\": no such key source (the document's key sources: partners)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("Usage: edgeward eval "), "{stderr}");
    let file = set(&["--kid", "one", &k0]);
    let source = format!("partners={file}");
    let out = eval(
        &doc,
        signed.as_bytes(),
        &["--key-source", &source, "--key-source", &source],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--key-source partners is given twice"));
}
