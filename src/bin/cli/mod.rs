//! Command-line parsing and the subcommands.

mod eval;
mod sign;

use edgeward::document::Document;
use std::process::ExitCode;

pub const USAGE: &str = "usage:
  edgeward check [--strict] FILE...
  edgeward eval POLICY --request FILE|- [--route NAME] [--client-ip IP] [--scheme http|https]
                [--tls-version 1.2|1.3] [--now UNIX_SECONDS]
  edgeward sign --key-id ID (--secret-base64 B64 | --secret-env VAR | --private-key-file PEM)
                [--alg hmac-sha256|ed25519] [--label sig1] [--components c1,c2,...] [--created UNIX]
                [--expires UNIX] [--nonce N | --random-nonce] [--content-digest sha-256|sha-512]
                [--scheme https|http] [--print request|headers] --request FILE|-";

/// Runs one subcommand; `Err` is a usage error (exit 2).
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("eval") => eval::eval(&args[1..]),
        Some("sign") => sign::sign(&args[1..]),
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

/// Validates each file: errors on stdout (exit 1), warnings on stderr (exit 0, or 1 with `--strict`).
fn check(args: &[String]) -> Result<ExitCode, String> {
    let (files, flags) = parse_flags(args, &[], &["--strict"])?;
    let strict = flag_value(&flags, "--strict").is_some();
    if files.is_empty() {
        return Err(USAGE.to_string());
    }
    let mut ok = true;
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                println!("{f}: cannot read: {e}");
                ok = false;
                continue;
            }
        };
        if let Ok(input) = edgeward::document::parse(&text) {
            for w in edgeward::lint::lint(&input) {
                eprintln!("{f}: {}: warning: {} ({})", w.path, w.what, w.why);
                ok &= !strict;
            }
        }
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

/// Positional arguments and `(flag, value)` pairs.
pub type Parsed = (Vec<String>, Vec<(String, String)>);

/// Splits arguments into positionals and `--flag value` pairs (`switches` take no value).
pub fn parse_flags(args: &[String], flags: &[&str], switches: &[&str]) -> Result<Parsed, String> {
    let mut positional = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if switches.contains(&name) {
            out.push((name.to_string(), String::new()));
        } else if flags.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => it.next().ok_or(format!("{name} needs a value"))?.clone(),
            };
            if out.iter().any(|(k, _)| k == name) {
                return Err(format!("{name} given twice"));
            }
            out.push((name.to_string(), value));
        } else if name.starts_with("--") {
            return Err(format!("unknown option {name}\n{USAGE}"));
        } else {
            positional.push(a.clone());
        }
    }
    Ok((positional, out))
}

/// The value of a flag, if given.
pub fn flag_value<'a>(flags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
