//! The `edgeward` command line: help for every subcommand (exit 0), `--version`, and usage errors that
//! name the bad option and show the usage (exit 2).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn edgeward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .args(args)
        .env_remove("PARTNER_A_KEY")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A usage error: exit 2, nothing on stdout, stderr names `names` and shows the subcommand's usage.
fn assert_usage_error(args: &[&str], names: &[&str]) {
    let out = edgeward(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    for name in names {
        assert!(
            stderr.contains(name),
            "{args:?}: wanted {name:?} in {stderr}"
        );
    }
    let sub = args
        .first()
        .filter(|a| ["check", "eval", "sign", "jwks"].contains(a));
    let usage = match sub {
        Some(s) => format!("Usage: edgeward {s} "),
        None => "Usage: edgeward ".to_string(),
    };
    assert!(stderr.contains(&usage), "{args:?}: no usage in {stderr}");
}

const CHECK_FLAGS: &[&str] = &["--strict", "--format", "text", "json", "<FILE>..."];
const EVAL_FLAGS: &[&str] = &[
    "<POLICY>",
    "--request",
    "--route",
    "--client-ip",
    "--scheme",
    "--tls-version",
    "--now",
    "--key-source",
    "503 keys_unavailable",
];
const SIGN_FLAGS: &[&str] = &[
    "--key-id",
    "--secret-base64",
    "--secret-env",
    "--private-key-file",
    "--alg",
    "--label",
    "--components",
    "--created",
    "--expires",
    "--nonce",
    "--random-nonce",
    "--tag",
    "--content-digest",
    "--scheme",
    "--print",
    "--request",
    "--web-bot-auth",
    "--signature-agent",
    "--expires-in",
    "Web Bot Auth",
];
const JWKS_FLAGS: &[&str] = &[
    "--kid",
    "--thumbprint",
    "<KEY>...",
    "Nothing private is ever printed",
];

#[test]
fn every_subcommand_has_help() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &["check", "eval", "sign", "jwks", "--version", "Exit status"],
        ),
        (&["help"], &["check", "eval", "sign", "jwks"]),
        (&["check", "--help"], CHECK_FLAGS),
        (&["help", "check"], CHECK_FLAGS),
        (&["eval", "--help"], EVAL_FLAGS),
        (&["sign", "--help"], SIGN_FLAGS),
        (&["sign", "-h"], SIGN_FLAGS),
        (&["jwks", "--help"], JWKS_FLAGS),
        (&["help", "jwks"], JWKS_FLAGS),
    ];
    for (args, wanted) in cases {
        let out = edgeward(args);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        for w in *wanted {
            assert!(stdout.contains(w), "{args:?}: no {w:?} in {stdout}");
        }
        // No stray line-continuation backslash from a help text's source.
        assert!(!stdout.contains("\\\n"), "{args:?}: {stdout}");
    }
    // Each subcommand's help states its exit status.
    for sub in ["check", "eval", "sign", "jwks"] {
        let out = edgeward(&[sub, "--help"]);
        assert!(text(&out.stdout).contains("Exit status: 0 "), "{sub}");
    }
    // `check --help` is help, not a file named --help.
    let out = edgeward(&["check", "--help", "/nonexistent.json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("cannot read"));
}

#[test]
fn version_is_the_crate_version() {
    let want = format!("edgeward {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-V"]] {
        let out = edgeward(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(text(&out.stdout), want, "{args:?}");
    }
}

#[test]
fn usage_errors_name_the_option_and_exit_2() {
    // No subcommand: the help, on stderr.
    let out = edgeward(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Usage: edgeward"));
    assert_usage_error(&["frobnicate"], &["'frobnicate'"]);
    // Unknown options.
    assert_usage_error(&["check", "--bogus", "x.json"], &["'--bogus'"]);
    assert_usage_error(&["eval", "--help-me", "p.json"], &["'--help-me'"]);
    assert_usage_error(
        &["sign", "--key", "a", "--secret-env", "A", "--request", "-"],
        &["'--key'", "--key-id"],
    );
    // Missing required arguments and values.
    assert_usage_error(&["check"], &["<FILE>"]);
    assert_usage_error(&["check", "--strict"], &["<FILE>"]);
    assert_usage_error(&["eval", "p.json"], &["--request"]);
    assert_usage_error(&["eval", "--request", "-"], &["<POLICY>"]);
    assert_usage_error(&["eval", "p.json", "--request"], &["--request"]);
    assert_usage_error(
        &["sign", "--key-id", "a", "--request", "-"],
        &["--secret-base64", "--secret-env", "--private-key-file"],
    );
    assert_usage_error(
        &["sign", "--secret-env", "A", "--request", "-"],
        &["--key-id"],
    );
    assert_usage_error(
        &["sign", "--key-id", "a", "--secret-env", "A"],
        &["--request"],
    );
    // Bad values name the option and what it takes.
    let sign = [
        "sign",
        "--key-id",
        "a",
        "--secret-env",
        "A",
        "--request",
        "-",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        sign.iter().chain(extra).copied().collect()
    };
    assert_usage_error(
        &["check", "--format", "xml", "x.json"],
        &["--format", "json"],
    );
    assert_usage_error(
        &["eval", "p.json", "--request", "-", "--scheme", "ftp"],
        &["--scheme", "https"],
    );
    assert_usage_error(
        &["eval", "p.json", "--request", "-", "--tls-version", "1.4"],
        &["--tls-version", "1.3"],
    );
    assert_usage_error(
        &["eval", "p.json", "--request", "-", "--now", "soon"],
        &["--now"],
    );
    assert_usage_error(&with(&["--created=-5"]), &["--created"]);
    assert_usage_error(&with(&["--alg", "rsa"]), &["--alg", "ed25519"]);
    assert_usage_error(
        &with(&["--content-digest", "md5"]),
        &["--content-digest", "sha-512"],
    );
    assert_usage_error(&with(&["--print", "body"]), &["--print", "headers"]);
    // Options that exclude each other.
    assert_usage_error(
        &with(&["--nonce", "n", "--random-nonce"]),
        &["--nonce", "--random-nonce"],
    );
    assert_usage_error(&with(&["--secret-base64", "AAAA"]), &["--secret-base64"]);
    assert_usage_error(&with(&["--key-id", "b"]), &["--key-id"]);
    assert_usage_error(
        &with(&["--expires", "1", "--expires-in", "60"]),
        &["--expires-in", "--expires"],
    );
    // Web Bot Auth: an agent, an ed25519 key named by its thumbprint, its own tag.
    let wba = [
        "sign",
        "--web-bot-auth",
        "--private-key-file",
        "agent.pem",
        "--request",
        "-",
    ];
    let with_wba = |extra: &[&'static str]| -> Vec<&'static str> {
        wba.iter().chain(extra).copied().collect()
    };
    assert_usage_error(&wba, &["--signature-agent"]);
    let agent = ["--signature-agent", "https://agent.example"];
    for (extra, names) in [
        (&["--key-id", "a"][..], &["--web-bot-auth", "--key-id"][..]),
        (&["--tag", "t"], &["--web-bot-auth", "--tag"]),
        (&["--secret-env", "A"], &["--web-bot-auth", "--secret-env"]),
    ] {
        let args: Vec<&str> = with_wba(&agent)
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        assert_usage_error(&args, names);
    }
    assert_usage_error(
        &with(&["--signature-agent", "https://agent.example"]),
        &["--signature-agent needs --web-bot-auth"],
    );
    // jwks: keys, kids that fit them, one use of standard input.
    assert_usage_error(&["jwks"], &["<KEY>"]);
    assert_usage_error(&["jwks", "--kid", "a"], &["<KEY>"]);
    assert_usage_error(
        &["jwks", "--kid", "a", "--thumbprint", "k.pem"],
        &["--kid", "--thumbprint"],
    );
    assert_usage_error(
        &["jwks", "--kid", "a", "--kid", "b", "k.pem"],
        &["--kid given 2 time(s) for 1 key(s)"],
    );
    assert_usage_error(&["jwks", "--kid", "", "k.pem"], &["--kid \"\""]);
    assert_usage_error(
        &["jwks", "-", "-"],
        &["standard input (-) can be read only once"],
    );
    // eval --key-source: NAME=FILE, NAME a key source of the document.
    assert_usage_error(
        &[
            "eval",
            "p.json",
            "--request",
            "-",
            "--key-source",
            "agent_dir",
        ],
        &["--key-source", "NAME=FILE"],
    );
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples/https.json");
    assert_usage_error(
        &[
            "eval",
            doc,
            "--request",
            "-",
            "--key-source",
            "agent_dir=d.json",
        ],
        &["--key-source \"agent_dir\": no such key source (the document has none)"],
    );
    assert_usage_error(
        &[
            "eval",
            "p.json",
            "--request",
            "-",
            "--scheme",
            "http",
            "--tls-version",
            "1.3",
        ],
        &["--tls-version", "--scheme https"],
    );
}

#[test]
fn input_errors_exit_2_with_the_reason() {
    let out = edgeward(&["eval", "/nonexistent/p.json", "--request", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("edgeward: /nonexistent/p.json: "));
    let out = edgeward(&[
        "sign",
        "--key-id",
        "a",
        "--secret-env",
        "PARTNER_A_KEY",
        "--request",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "edgeward: environment variable PARTNER_A_KEY is not set\n"
    );
}
