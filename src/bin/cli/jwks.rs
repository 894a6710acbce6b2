//! `edgeward jwks`: the JWK Set (RFC 7517) of ed25519 public keys, as a key source or a Web Bot Auth
//! agent's directory serves it, or their RFC 7638 thumbprints.

use super::{read_input, usage_error, Failure};
use clap::error::ErrorKind;
use clap::Args;
use ed25519_dalek::VerifyingKey;
use edgeward::keys::jwks::{jwk_json, MAX_KID_LEN};
use edgeward::keys::thumbprint;
use edgeward::signature::{parse_public_key, SigningKey};
use std::io::Write as _;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Each KEY is a file (- reads standard input) holding one ed25519 key: a public key as a policy's
public_key takes it (SPKI PEM, -----BEGIN PUBLIC KEY-----, or base64 of the 32 key bytes), or a
private key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes it), of which only the
public key is printed. Nothing private is ever printed.

Prints {\"keys\":[...]} on one line, one JWK per KEY in the order given:
{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":...,\"kid\":...,\"use\":\"sig\",\"alg\":\"EdDSA\"} (kid only with --kid).
Serve it as a key source's url, or as a Web Bot Auth agent's
/.well-known/http-message-signatures-directory; `edgeward eval --key-source NAME=FILE` reads it.
With --thumbprint: each key's RFC 7638 JWK thumbprint, one per line (the keyid of a Web Bot Auth
signature, and a key's name in a key source with key_id \"thumbprint\" or without a kid).

Exit status: 0 printed; 2 usage error, or a key that cannot be read or used.";

/// Print the JWK Set (or the thumbprints) of ed25519 keys
#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub struct JwksArgs {
    /// The kid of each key, in the order of the keys (give none, or one per KEY)
    #[arg(long = "kid", value_name = "ID")]
    kids: Vec<String>,
    /// Print each key's JWK thumbprint (RFC 7638), one per line, instead of the set
    #[arg(long, conflicts_with = "kids")]
    thumbprint: bool,
    /// Files holding one ed25519 key each (public key PEM or base64, or private key PEM); - reads
    /// standard input
    #[arg(value_name = "KEY", required = true)]
    keys: Vec<String>,
}

/// The public key in the text of `path`: a private key's, or a public key as a policy takes it.
fn public_key(path: &str) -> Result<VerifyingKey, String> {
    // A private key's text is wiped when dropped.
    let bytes = zeroize::Zeroizing::new(read_input(path)?);
    // The messages name the file and what is wrong, never the text (which may be a private key).
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{path}: not a key (text)"))?;
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") && trimmed.contains("PRIVATE KEY-----") {
        let key = SigningKey::ed25519_from_pem(trimmed).map_err(|e| format!("{path}: {e}"))?;
        return key
            .verifying_key()
            .ok_or_else(|| format!("{path}: not an ed25519 key"));
    }
    parse_public_key(trimmed).map_err(|e| format!("{path}: {e}"))
}

pub fn jwks(args: &JwksArgs) -> Result<ExitCode, Failure> {
    if args.keys.iter().filter(|k| *k == "-").count() > 1 {
        return Err(usage_error(
            "jwks",
            ErrorKind::ArgumentConflict,
            "standard input (-) can be read only once",
        ));
    }
    if !args.kids.is_empty() && args.kids.len() != args.keys.len() {
        return Err(usage_error(
            "jwks",
            ErrorKind::WrongNumberOfValues,
            format!(
                "--kid given {} time(s) for {} key(s): give none, or one per KEY",
                args.kids.len(),
                args.keys.len()
            ),
        ));
    }
    if let Some(bad) = args.kids.iter().find(|k| {
        k.is_empty() || k.len() > MAX_KID_LEN || k.bytes().any(|b| !(0x20..=0x7e).contains(&b))
    }) {
        return Err(usage_error(
            "jwks",
            ErrorKind::ValueValidation,
            format!("--kid {bad:?}: a kid is 1 to {MAX_KID_LEN} printable ASCII characters"),
        ));
    }
    let keys = args
        .keys
        .iter()
        .map(|k| public_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let out = if args.thumbprint {
        keys.iter()
            .map(|k| format!("{}\n", thumbprint(k)))
            .collect::<String>()
    } else {
        let jwks: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| jwk_json(k, args.kids.get(i).map(String::as_str)))
            .collect();
        format!("{{\"keys\":[{}]}}\n", jwks.join(","))
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| format!("stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
