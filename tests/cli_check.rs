//! `edgeward check`: errors on stdout (exit 1), warnings on stderr (exit 0; `--strict`: exit 1), the shipped
//! documents without a warning; `--format json`: the same findings as one JSON document on stdout.
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

/// `check --format json` on stdout, parsed; (exit code, document, stderr).
fn check_json(args: &[&str], files: &[&Path]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = check(&all, files);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    (out.status.code(), doc, text(&out.stderr))
}

#[test]
fn json_format_reports_every_file() {
    let dir = std::env::temp_dir().join(format!("edgeward-cli-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/demo.json");
    let errors = dir.join("errors.json");
    std::fs::write(
        &errors,
        r#"{"policies": {"p": {"ip": {"allow": ["10.0.0.1", "010.0.0.0/8"]}}}, "routes": [{"policy": "q"}]}"#,
    )
    .unwrap();
    let warned = dir.join("warned.json");
    std::fs::write(
        &warned,
        r#"{"policies":{"p":{}},"routes":[{"policy":"p"},{"path_prefix":"/admin/","policy":"p"}]}"#,
    )
    .unwrap();
    let missing = dir.join("missing.json");

    // A valid document: ok, exit 0, nothing on stderr.
    let (code, doc, stderr) = check_json(&["--strict"], &[&valid]);
    assert_eq!(code, Some(0), "{doc}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(
        doc,
        serde_json::json!({
            "ok": true,
            "strict": true,
            "files": [{"file": valid.display().to_string(), "ok": true, "errors": [], "warnings": []}]
        })
    );

    // Errors: every one, with its JSON path and reason; exit 1.
    let (code, doc, stderr) = check_json(&[], &[&errors]);
    assert_eq!(code, Some(1), "{doc}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(doc["ok"], false);
    let file = &doc["files"][0];
    assert_eq!(file["file"], errors.display().to_string());
    assert_eq!(file["ok"], false);
    assert_eq!(file["warnings"], serde_json::json!([]));
    let errs = file["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0]["path"], "policies.p.ip.allow[1]");
    assert!(errs[0]["reason"].as_str().unwrap().contains("leading zero"));
    assert_eq!(errs[1]["path"], "routes[0].policy");
    assert!(errs[1]["reason"]
        .as_str()
        .unwrap()
        .contains("unknown policy"));

    // Warnings: reported with path, what and why; exit 0, or 1 with --strict.
    let (code, doc, stderr) = check_json(&[], &[&warned]);
    assert_eq!(code, Some(0), "{doc}");
    assert!(stderr.is_empty(), "warnings go into the JSON: {stderr}");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["strict"], false);
    let file = &doc["files"][0];
    assert_eq!(file["ok"], true);
    assert_eq!(file["errors"], serde_json::json!([]));
    let warnings = file["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["path"], "routes[1]");
    assert!(warnings[0]["what"]
        .as_str()
        .unwrap()
        .starts_with("never matches"));
    assert!(!warnings[0]["why"].as_str().unwrap().is_empty());
    let (code, strict, _) = check_json(&["--strict"], &[&warned]);
    assert_eq!(code, Some(1), "{strict}");
    assert_eq!(strict["ok"], false);
    assert_eq!(strict["strict"], true);
    assert_eq!(strict["files"][0]["ok"], false);
    assert_eq!(strict["files"][0]["warnings"], file["warnings"]);

    // Several files, in the order given, in one document; one that cannot be read is an error at "".
    let (code, doc, _) = check_json(&[], &[&valid, &missing, &warned]);
    assert_eq!(code, Some(1), "{doc}");
    let files = doc["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    let want = [&valid, &missing, &warned].map(|p| p.display().to_string());
    assert_eq!(names, want);
    let oks: Vec<bool> = files.iter().map(|f| f["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, [true, false, true]);
    assert_eq!(files[1]["errors"][0]["path"], "");
    assert!(files[1]["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("cannot read: "));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The text format, unchanged by `--format`: errors on stdout as `file: path: reason`, a file that cannot be
/// read as `file: cannot read: ...`.
#[test]
fn text_format_is_the_default() {
    let dir = std::env::temp_dir().join(format!("edgeward-cli-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"policies": {"p": {}}, "routes": [{"policy": "q"}]}"#,
    )
    .unwrap();
    let missing = dir.join("missing.json");
    for args in [&[][..], &["--format", "text"]] {
        let out = check(args, &[&bad, &missing]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        assert_eq!(
            lines[0],
            format!("{}: routes[0].policy: unknown policy \"q\"", bad.display())
        );
        assert!(
            lines[1].starts_with(&format!("{}: cannot read: ", missing.display())),
            "{stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
