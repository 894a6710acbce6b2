//! Command-line parsing and the subcommands.

use edgeward::document::Document;
use std::process::ExitCode;

const USAGE: &str = "usage:
  edgeward check FILE...
  edgeward eval POLICY --request FILE|- [--route NAME] [--client-ip IP] [--scheme http|https]
                [--tls-version 1.2|1.3] [--now UNIX_SECONDS]
  edgeward sign --key-id ID (--secret-base64 B64 | --secret-env VAR | --private-key-file PEM)
                [--alg hmac-sha256|ed25519] [--label sig1] [--components c1,c2,...] [--created UNIX]
                [--expires UNIX] [--nonce N | --random-nonce] [--content-digest sha-256|sha-512]
                --request FILE|-";

/// Runs one subcommand; `Err` is a usage error (exit 2).
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_string()),
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    }
}

fn check(files: &[String]) -> Result<ExitCode, String> {
    if files.is_empty() {
        return Err(USAGE.to_string());
    }
    let mut ok = true;
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                println!("{f}: cannot read: {e}");
                ok = false;
                continue;
            }
        };
        match Document::from_json(&text, &env_lookup) {
            Ok(_) => {}
            Err(errors) => {
                ok = false;
                for e in errors {
                    let path = if e.path.is_empty() {
                        "(document)".to_string()
                    } else {
                        e.path
                    };
                    println!("{f}: {path}: {}", e.reason);
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
