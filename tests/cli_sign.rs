//! `edgeward sign`: what it covers and prints (`Signature-Input` read with the `sfv` crate), and its
//! signatures checked by `edgeward eval` against policies/examples/signature.json.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

#[path = "support/cli.rs"]
mod cli;

const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const CREATED: u64 = 1_700_000_000;
const GET: &str = "GET /orders?id=7 HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
const POST: &str = "POST /orders?id=7 HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"qty\": 1000}";

/// The partner keys, in the environment of every run.
const ENV: [(&str, &str); 2] = [
    ("PARTNER_A_KEY", SECRET_B64),
    ("PARTNER_A_KEY_NEXT", SECRET_B64),
];

/// Runs `edgeward ARGS` with `stdin`, the partner keys in the environment.
fn edgeward(args: &[&str], stdin: &[u8]) -> Output {
    cli::run(args, ENV, stdin)
}

/// stdout of `edgeward ARGS` on `stdin`, which must succeed without a word on stderr.
fn run_ok_bytes(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    cli::quiet(args, ENV, stdin)
}

fn run_ok(args: &[&str], stdin: &[u8]) -> String {
    String::from_utf8(run_ok_bytes(args, stdin)).unwrap()
}

/// `edgeward sign` as partner-a (HMAC) on `raw` read from stdin; returns stdout.
fn sign_bytes(raw: &[u8], extra: &[&str]) -> Vec<u8> {
    let created = CREATED.to_string();
    let mut args = vec![
        "sign",
        "--key-id",
        "partner-a",
        "--secret-env",
        "PARTNER_A_KEY",
        "--created",
        &created,
        "--request",
        "-",
    ];
    args.extend_from_slice(extra);
    run_ok_bytes(&args, raw)
}

fn sign(raw: &str, extra: &[&str]) -> String {
    String::from_utf8(sign_bytes(raw.as_bytes(), extra)).unwrap()
}

/// A header's value in a printed request or header list (first match, name case-insensitive).
fn header<'a>(printed: &'a str, name: &str) -> Option<&'a str> {
    printed
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// The `sig1` member of a Signature-Input: (covered component names, signature parameters as text).
fn signature_input(printed: &str) -> (Vec<String>, Vec<(String, String)>) {
    let value = header(printed, "signature-input").expect("a Signature-Input header");
    let dict = sfv::Parser::new(value)
        .parse::<sfv::Dictionary>()
        .unwrap_or_else(|e| panic!("{value}: {e}"));
    let (label, member) = dict.iter().next().unwrap();
    assert_eq!(label.as_str(), "sig1");
    let sfv::ListEntry::InnerList(list) = member else {
        panic!("{value}: not an inner list");
    };
    let components = list
        .items
        .iter()
        .map(|i| i.bare_item.as_string().unwrap().as_str().to_string())
        .collect();
    let params = list
        .params
        .iter()
        .map(|(k, v)| {
            let v = match v.as_string() {
                Some(s) => s.as_str().to_string(),
                None => v.as_integer().map(|i| i.to_string()).unwrap(),
            };
            (k.as_str().to_string(), v)
        })
        .collect();
    (components, params)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `edgeward eval` of `signed` against policies/examples/signature.json just after `CREATED`.
fn eval(signed: &str) -> serde_json::Value {
    let doc = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/examples/signature.json"
    );
    eval_doc(doc, signed.as_bytes(), &["--route", "partner-api"])
}

#[test]
fn content_digest_is_covered_when_asked_for() {
    let defaults = ["@method", "@authority", "@path", "@query"];
    // No body, no --components: the defaults, then content-digest.
    let out = sign(GET, &["--content-digest", "sha-256", "--print", "headers"]);
    let (components, _) = signature_input(&out);
    let mut want = strings(&defaults);
    want.push("content-digest".into());
    assert_eq!(components, want);
    assert!(header(&out, "content-digest")
        .unwrap()
        .starts_with("sha-256=:"));
    // Given components without it: added last.
    let out = sign(
        GET,
        &[
            "--content-digest",
            "sha-512",
            "--components",
            "@method,@path",
        ],
    );
    let (components, _) = signature_input(&out);
    assert_eq!(components, strings(&["@method", "@path", "content-digest"]));
    assert!(header(&out, "content-digest")
        .unwrap()
        .starts_with("sha-512=:"));
    // Given components with it: kept as given.
    let out = sign(
        POST,
        &[
            "--content-digest",
            "sha-256",
            "--components",
            "content-digest, @method",
        ],
    );
    let (components, _) = signature_input(&out);
    assert_eq!(components, strings(&["content-digest", "@method"]));
    // Without --content-digest, components without it add no header (as before).
    let out = sign(POST, &["--components", "@method,@path"]);
    assert_eq!(header(&out, "content-digest"), None);
    // A body and no --components: the library's defaults already cover it, so asking for sha-256 changes
    // nothing (this also keeps the command's copy of the defaults in step with the library's).
    let implicit = sign(POST, &["--nonce", "n"]);
    let explicit = sign(POST, &["--nonce", "n", "--content-digest", "sha-256"]);
    assert_eq!(implicit, explicit);
    let (components, _) = signature_input(&implicit);
    assert_eq!(components, want);
}

#[test]
fn tag_is_a_signed_parameter() {
    let out = sign(POST, &["--tag", "edgeward-test", "--nonce", "n1"]);
    let (_, params) = signature_input(&out);
    let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["created", "nonce", "keyid", "tag"]);
    assert_eq!(params[3].1, "edgeward-test");
    assert_eq!(params[0].1, CREATED.to_string());
    // The plugin's core accepts it, and the tag is covered: changing it breaks the signature.
    let v = eval(&out);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["upstream_headers"]["x-edgeward-key-id"], "partner-a");
    let tampered = out.replace("tag=\"edgeward-test\"", "tag=\"other\"");
    assert_ne!(tampered, out);
    let v = eval(&tampered);
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["reason"], "signature_invalid", "{v}");
    // An empty tag is refused: exit 2 with the reason.
    let out = edgeward(
        &[
            "sign",
            "--key-id",
            "a",
            "--secret-base64",
            SECRET_B64,
            "--tag",
            "",
            "--request",
            "-",
        ],
        GET.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "edgeward: the tag must be non-empty printable ASCII\n"
    );
}

#[test]
fn sign_prints_the_request_or_the_headers() {
    // The whole request: head with the three headers added before the blank line, body unchanged.
    let out = sign(POST, &[]);
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "{\"qty\": 1000}");
    assert!(head.starts_with("POST /orders?id=7 HTTP/1.1\r\nHost: api.example.com\r\n"));
    for name in ["Content-Digest", "Signature-Input", "Signature"] {
        assert!(head.contains(&format!("\r\n{name}: ")), "{name}: {head}");
    }
    // Only the added header lines.
    let headers = sign(POST, &["--print", "headers"]);
    let names: Vec<&str> = headers
        .lines()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(names, ["Content-Digest", "Signature-Input", "Signature"]);
    for line in headers.lines() {
        assert!(head.contains(line), "{line}");
    }
    // The other parameters, in RFC 9421's order.
    let out = sign(
        GET,
        &[
            "--label",
            "mine",
            "--alg",
            "hmac-sha256",
            "--expires",
            "1700000300",
            "--random-nonce",
            "--components",
            "@method,@target-uri",
            "--scheme",
            "http",
        ],
    );
    let value = header(&out, "signature-input").unwrap();
    assert!(
        value.starts_with(
            "mine=(\"@method\" \"@target-uri\");created=1700000000;expires=1700000300;nonce=\""
        ),
        "{value}"
    );
    assert!(
        value.ends_with(";alg=\"hmac-sha256\";keyid=\"partner-a\""),
        "{value}"
    );
    assert!(header(&out, "signature").unwrap().starts_with("mine=:"));
    // A signature eval accepts, nonce and all.
    let v = eval(&sign(POST, &["--random-nonce"]));
    assert_eq!(v["decision"], "allow", "{v}");
    // --alg must match the key.
    let out = edgeward(
        &[
            "sign",
            "--key-id",
            "a",
            "--secret-base64",
            SECRET_B64,
            "--alg",
            "ed25519",
            "--request",
            "-",
        ],
        GET.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "edgeward: --alg ed25519 does not match the key given\n"
    );
}

/// A file in a fresh temporary directory of this test process.
fn temp_file(name: &str, contents: &[u8]) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("edgeward-cli-sign-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

/// `edgeward eval` of `request` against the document at `doc` just after `CREATED`; the JSON it prints.
fn eval_doc(doc: &str, request: &[u8], extra: &[&str]) -> serde_json::Value {
    let now = (CREATED + 1).to_string();
    let mut args = vec![
        "eval",
        doc,
        "--request",
        "-",
        "--scheme",
        "https",
        "--now",
        &now,
    ];
    args.extend_from_slice(extra);
    let out = edgeward(&args, request);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A field value with obs-text (bytes 0x80-0xff, valid in HTTP/1.1): `sign` signs `;bs` over its bytes and
/// prints them unchanged; `eval` reads them as the plugin does (its JSON stays UTF-8) and verifies, and
/// refuses another byte that reads as the same text.
#[test]
fn obs_text_is_signed_and_printed_as_bytes() {
    let mut raw = b"GET /orders HTTP/1.1\r\nHost: api.example.com\r\nX-Raw: raw ".to_vec();
    raw.extend(0x80..=0xffu8);
    raw.extend_from_slice(b" end\r\n\r\n");
    let signed = sign_bytes(&raw, &["--components", "@method,@authority,x-raw;bs"]);
    // The head as given, byte for byte, then the added lines.
    assert!(signed.starts_with(&raw[..raw.len() - 2]));
    let added = String::from_utf8(signed[raw.len() - 2..].to_vec()).unwrap();
    assert!(added.starts_with("Signature-Input: sig1=(\"@method\" \"@authority\" \"x-raw\";bs);"));
    let doc = temp_file(
        "bs.json",
        br#"{"policies": {"p": {"signature": {
            "keys": [{"id": "partner-a", "alg": "hmac-sha256", "secret": {"env": "PARTNER_A_KEY"}}],
            "components": ["@method", "@authority", "x-raw;bs"]}}},
          "routes": [{"policy": "p"}]}"#,
    );
    let v = eval_doc(&doc, &signed, &[]);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["upstream_headers"]["x-edgeward-key-id"], "partner-a");
    // 0x81 for 0x80: the same lossy text, other bytes.
    let at = signed.iter().position(|&b| b == 0x80).unwrap();
    let mut tampered = signed.clone();
    tampered[at] = 0x81;
    let v = eval_doc(&doc, &tampered, &[]);
    assert_eq!(v["reason"], "signature_invalid", "{v}");
    // Control characters stay refused, and the request line stays ASCII.
    for (bad, why) in [
        (
            &b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"[..],
            "a header line contains a control character",
        ),
        (
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
            "the request line is not ASCII",
        ),
    ] {
        let out = edgeward(
            &[
                "sign",
                "--key-id",
                "a",
                "--secret-base64",
                SECRET_B64,
                "--request",
                "-",
            ],
            bad,
        );
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!("edgeward: -: {why}")),
            "{stderr}"
        );
    }
}

const AGENT: &str = "https://agent.example";

/// A Web Bot Auth policy: the agents https://agent.example and https://other.example, both with the
/// directory of the key source `agent_dir`.
const WBA_DOC: &str = r#"{
  "key_sources": {"agent_dir": {"type": "jwks", "cluster": "agent",
    "url": "https://agent.example/.well-known/http-message-signatures-directory"}},
  "policies": {"bots": {"signature": {"web_bot_auth": {"directories": {
    "https://agent.example": "agent_dir", "https://other.example": "agent_dir"}}}}},
  "routes": [{"policy": "bots"}]
}"#;

/// An ed25519 private key (PKCS#8 PEM) in a file.
fn agent_key_file(seed: u8) -> String {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    temp_file("agent.pem", pem.as_bytes())
}

/// `edgeward sign --web-bot-auth` for the agent `agent` with the key in `pem`, created at `CREATED`.
fn sign_as_agent(raw: &str, pem: &str, agent: &str, extra: &[&str]) -> String {
    let created = CREATED.to_string();
    let mut args = vec![
        "sign",
        "--web-bot-auth",
        "--signature-agent",
        agent,
        "--private-key-file",
        pem,
        "--created",
        &created,
        "--request",
        "-",
    ];
    args.extend_from_slice(extra);
    run_ok(&args, raw.as_bytes())
}

#[test]
fn web_bot_auth_signs_as_an_agent() {
    let pem = agent_key_file(21);
    let thumbprint = run_ok(&["jwks", "--thumbprint", &pem], b"");
    let thumbprint = thumbprint.trim_end();
    let out = sign_as_agent(GET, &pem, AGENT, &[]);
    assert_eq!(
        header(&out, "signature-agent"),
        Some(r#"sig1="https://agent.example""#)
    );
    assert_eq!(
        header(&out, "signature-input").unwrap(),
        format!(
            r#"sig1=("@authority" "signature-agent";key="sig1");created={CREATED};expires={};alg="ed25519";keyid="{thumbprint}";tag="web-bot-auth""#,
            CREATED + 60
        )
    );
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "");
    let names: Vec<&str> = head
        .lines()
        .skip(1)
        .map(|l| l.split_once(':').unwrap().0)
        .collect();
    assert_eq!(
        names,
        ["Host", "Signature-Agent", "Signature-Input", "Signature"]
    );
    // Only the added lines, Signature-Agent first.
    let lines = sign_as_agent(GET, &pem, AGENT, &["--print", "headers"]);
    let names: Vec<&str> = lines
        .lines()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(names, ["Signature-Agent", "Signature-Input", "Signature"]);
    // Another label, lifetime, nonce and components that list the two it needs; a Signature-Agent the
    // request had is replaced.
    let raw = GET.replace(
        "\r\n\r\n",
        "\r\nSignature-Agent: bot=\"https://evil.example\"\r\n\r\n",
    );
    let out = sign_as_agent(
        &raw,
        &pem,
        "https://Agent.Example:443",
        &[
            "--label",
            "bot",
            "--expires-in",
            "300",
            "--nonce",
            "n-1",
            "--components",
            r#"@method,"signature-agent";key="bot",@authority"#,
        ],
    );
    assert_eq!(out.matches("Signature-Agent").count(), 1, "{out}");
    assert_eq!(
        header(&out, "signature-agent"),
        Some(r#"bot="https://Agent.Example:443""#)
    );
    assert_eq!(
        header(&out, "signature-input").unwrap(),
        format!(
            r#"bot=("@method" "signature-agent";key="bot" "@authority");created={CREATED};expires={};nonce="n-1";alg="ed25519";keyid="{thumbprint}";tag="web-bot-auth""#,
            CREATED + 300
        )
    );
    let out = sign_as_agent(GET, &pem, AGENT, &["--expires", "1700000009"]);
    assert!(header(&out, "signature-input")
        .unwrap()
        .contains(";expires=1700000009;"));
    // What a Web Bot Auth verifier would refuse is refused here (exit 2, with the reason).
    let created = CREATED.to_string();
    let refusals: [(&[&str], &str); 4] = [
        (
            &["--components", "@method,@authority"],
            r#"--components must list @authority and "signature-agent";key="sig1" (it lacks "signature-agent";key="sig1")"#,
        ),
        (
            &["--components", r#""signature-agent";key="sig1""#],
            "(it lacks @authority)",
        ),
        (
            &["--signature-agent", "https://agent.example/bot"],
            "is not an agent origin",
        ),
        (&["--expires", "1699999999"], "--expires is before created"),
    ];
    for (extra, why) in refusals {
        let mut args = vec![
            "sign",
            "--web-bot-auth",
            "--private-key-file",
            &pem,
            "--created",
            &created,
            "--request",
            "-",
        ];
        if !extra.contains(&"--signature-agent") {
            args.extend(["--signature-agent", AGENT]);
        }
        args.extend_from_slice(extra);
        let out = edgeward(&args, GET.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(stderr.contains(why), "{extra:?}: {stderr}");
    }
}

/// A request signed by `edgeward sign --web-bot-auth`, evaluated by `edgeward eval` with the agent's
/// directory from `edgeward jwks`.
#[test]
fn web_bot_auth_signature_verifies_with_the_agents_directory() {
    let doc = temp_file("wba.json", WBA_DOC.as_bytes());
    let pem = agent_key_file(22);
    let thumbprint = run_ok(&["jwks", "--thumbprint", &pem], b"");
    let directory = temp_file("directory.json", run_ok(&["jwks", &pem], b"").as_bytes());
    let source = format!("agent_dir={directory}");
    let with_directory = ["--key-source", source.as_str()];
    let signed = sign_as_agent(GET, &pem, AGENT, &[]);
    let v = eval_doc(&doc, signed.as_bytes(), &with_directory);
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["upstream_headers"]["x-edgeward-agent"], AGENT);
    assert_eq!(
        v["upstream_headers"]["x-edgeward-key-id"],
        thumbprint.trim_end()
    );
    assert_eq!(v["log"]["agent"], AGENT);
    // The authority changed: refused.
    let tampered = signed.replace("Host: api.example.com", "Host: www.example.com");
    let v = eval_doc(&doc, tampered.as_bytes(), &with_directory);
    assert_eq!(v["status"], 401, "{v}");
    assert_eq!(v["reason"], "signature_invalid");
    // Signature-Agent changed to another allowed agent with the same directory: not the signed value.
    let tampered = signed.replace(AGENT, "https://other.example");
    assert_ne!(tampered, signed);
    let v = eval_doc(&doc, tampered.as_bytes(), &with_directory);
    assert_eq!(v["status"], 401, "{v}");
    assert_eq!(v["reason"], "signature_invalid");
    let other_agent = sign_as_agent(GET, &pem, "https://other.example", &[]);
    let v = eval_doc(&doc, other_agent.as_bytes(), &with_directory);
    assert_eq!(
        v["upstream_headers"]["x-edgeward-agent"], "https://other.example",
        "{v}"
    );
    // A well-signed request from an agent outside the allow-list.
    let unknown = sign_as_agent(GET, &pem, "https://unknown.example", &[]);
    let v = eval_doc(&doc, unknown.as_bytes(), &with_directory);
    assert_eq!(v["status"], 401, "{v}");
    assert_eq!(v["reason"], "signature_agent_unknown");
    // Another key than the directory's.
    let other = sign_as_agent(GET, &agent_key_file(23), AGENT, &[]);
    let v = eval_doc(&doc, other.as_bytes(), &with_directory);
    assert_eq!(v["reason"], "signature_invalid", "{v}");
    // Without the directory: the plugin before its first fetch.
    let v = eval_doc(&doc, signed.as_bytes(), &[]);
    assert_eq!(v["status"], 503, "{v}");
    assert_eq!(v["reason"], "keys_unavailable");
    // Past expires (60 s) and the clock skew.
    let late = (CREATED + 120).to_string();
    let out = edgeward(
        &[
            "eval",
            &doc,
            "--request",
            "-",
            "--now",
            &late,
            "--key-source",
            &source,
        ],
        signed.as_bytes(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reason"], "signature_expired", "{v}");
}
