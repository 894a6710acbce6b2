//! `edgeward check`: errors on stdout (exit 1), warnings on stderr (exit 0; `--strict`: exit 1), the shipped
//! documents without a warning.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn check(args: &[&str], files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .arg("check")
        .args(args)
        .args(files)
        .env(
            "EDGEWARD_LOG_KEY",
            "S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=",
        )
        .env(
            "PARTNER_A_KEY",
            "S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=",
        )
        .env(
            "PARTNER_A_KEY_NEXT",
            "S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=",
        )
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The reviewer's list: each document is valid (exit 0) and warned about at the given path; `--strict`
/// fails it.
#[test]
fn dangerous_documents_are_warned_about() {
    let dir = std::env::temp_dir().join(format!("edgeward-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = r#"{ "id": "a", "alg": "hmac-sha256", "secret": { "env": "PARTNER_A_KEY" } }"#;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "shadowed",
            r#"{"policies":{"p":{}},"routes":[{"policy":"p"},{"path_prefix":"/admin/","policy":"p"}]}"#.into(),
            "routes[1]: warning: never matches",
        ),
        (
            "duplicate",
            r#"{"policies":{"p":{}},"routes":[{"route":"r","policy":"p"},{"route":"r","policy":null}]}"#.into(),
            "routes[1]: warning: duplicates routes[0]",
        ),
        (
            "trust everyone",
            r#"{"client_ip":{"trusted_proxies":["::/0"]},"policies":{"p":{}},"routes":[{"policy":"p"}]}"#.into(),
            "client_ip.trusted_proxies[0]: warning:",
        ),
        (
            "method only",
            format!(r#"{{"policies":{{"p":{{"signature":{{"keys":[{key}],"components":["@method"],"nonce":"required"}}}}}},"routes":[{{"policy":"p"}}]}}"#),
            "policies.p.signature.components: warning: signatures need not cover @authority",
        ),
        (
            "a year",
            format!(r#"{{"policies":{{"p":{{"signature":{{"keys":[{key}],"max_age_s":31536000,"clock_skew_s":31536000,"nonce":"required"}}}}}},"routes":[{{"policy":"p"}}]}}"#),
            "policies.p.signature.clock_skew_s: warning:",
        ),
        (
            "whole addresses",
            r#"{"policies":{"p":{"log":{"ipv4_prefix":32,"ipv6_prefix":128}}},"routes":[{"policy":"p"}]}"#.into(),
            "policies.p.log.ipv6_prefix: warning:",
        ),
        (
            "credential header",
            r#"{"policies":{"p":{"log":{"headers":["x-auth-token"]}}},"routes":[{"policy":"p"}]}"#.into(),
            "policies.p.log.headers[0]: warning: x-auth-token may carry a credential",
        ),
        (
            "empty allow",
            r#"{"policies":{"p":{"ip":{"allow":[]}}},"routes":[{"policy":"p"}]}"#.into(),
            "policies.p.ip.allow: warning: an empty allow list",
        ),
        (
            "health prefix",
            r#"{"policies":{"p":{}},"routes":[{"path_prefix":"/health","policy":null},{"policy":"p"}]}"#.into(),
            r#"routes[0].path_prefix: warning: "/health" also matches "/health-x""#,
        ),
    ];
    for (name, doc, want) in &cases {
        let path = dir.join(format!("{}.json", name.replace(' ', "-")));
        std::fs::write(&path, doc).unwrap();
        let out = check(&[], &[&path]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{name}: warnings go to stderr: {stdout}");
        assert!(stderr.contains(want), "{name}: wanted {want:?} in {stderr}");
        // Each warning says why too.
        assert!(stderr.lines().all(|l| l.ends_with(')')), "{name}: {stderr}");
        let strict = check(&["--strict"], &[&path]);
        assert_eq!(strict.status.code(), Some(1), "{name}: --strict");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_shipped_documents_pass_strict() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files = vec![root.join("demo.json")];
    for e in std::fs::read_dir(root.join("examples")).unwrap() {
        files.push(e.unwrap().path());
    }
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = check(&["--strict"], &refs);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}
