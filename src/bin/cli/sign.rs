//! `edgeward sign`: the client side. Adds RFC 9421 `Signature-Input`/`Signature` (and RFC 9530
//! `Content-Digest`) to a raw HTTP/1.1 request and prints it.

use super::{flag_value, parse_flags, read_input, USAGE};
use base64::Engine as _;
use edgeward::http1::{parse_http_request, render};
use edgeward::signature::{sign_request, Alg, DigestAlg, SignParams, SigningKey};
use std::io::Write as _;
use std::process::ExitCode;

const FLAGS: &[&str] = &[
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
    "--content-digest",
    "--request",
    "--scheme",
    "--print",
];
const SWITCHES: &[&str] = &["--random-nonce"];

fn unix(flag: &str, v: Option<&str>) -> Result<Option<u64>, String> {
    v.map(|s| {
        s.parse::<u64>()
            .map_err(|_| format!("{flag} {s:?} is not unix seconds"))
    })
    .transpose()
}

pub fn sign(args: &[String]) -> Result<ExitCode, String> {
    let (positional, flags) = parse_flags(args, FLAGS, SWITCHES)?;
    if !positional.is_empty() {
        return Err(USAGE.to_string());
    }
    let key_id = flag_value(&flags, "--key-id").ok_or("sign needs --key-id")?;
    let request_path = flag_value(&flags, "--request").ok_or("sign needs --request FILE|-")?;
    let key = match (
        flag_value(&flags, "--secret-base64"),
        flag_value(&flags, "--secret-env"),
        flag_value(&flags, "--private-key-file"),
    ) {
        (Some(b64), None, None) => SigningKey::hmac(
            &edgeward::secret::decode_base64(b64).ok_or("--secret-base64 is not valid base64")?,
        )
        .map_err(|e| e.to_string())?,
        (None, Some(var), None) => {
            let value =
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
            let bytes = edgeward::secret::decode_base64(&value)
                .ok_or(format!("environment variable {var} is not valid base64"))?;
            SigningKey::hmac(&bytes).map_err(|e| e.to_string())?
        }
        (None, None, Some(file)) => {
            let pem = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            SigningKey::ed25519_from_pem(&pem).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(
                "give exactly one of --secret-base64, --secret-env, --private-key-file".into(),
            )
        }
    };
    let alg = match flag_value(&flags, "--alg") {
        Some(a) => {
            let alg = Alg::parse(a).ok_or(format!("--alg {a:?}: use hmac-sha256 or ed25519"))?;
            if alg != key.alg() {
                return Err(format!("--alg {a} does not match the key given"));
            }
            Some(alg)
        }
        None => None,
    };
    let created = match unix("--created", flag_value(&flags, "--created"))? {
        Some(c) => c,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let mut params = SignParams::new(key_id, key, created);
    params.alg = alg;
    if let Some(label) = flag_value(&flags, "--label") {
        params.label = label.to_string();
    }
    if let Some(c) = flag_value(&flags, "--components") {
        params.components = c
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    params.expires = unix("--expires", flag_value(&flags, "--expires"))?;
    params.nonce = match (
        flag_value(&flags, "--nonce"),
        flags.iter().any(|(k, _)| k == "--random-nonce"),
    ) {
        (Some(n), false) => Some(n.to_string()),
        (None, true) => Some(random_nonce()?),
        (None, false) => None,
        (Some(_), true) => return Err("give --nonce or --random-nonce, not both".into()),
    };
    params.content_digest = match flag_value(&flags, "--content-digest") {
        Some(a) => Some(
            DigestAlg::parse(a).ok_or(format!("--content-digest {a:?}: use sha-256 or sha-512"))?,
        ),
        None => None,
    };
    params.https = match flag_value(&flags, "--scheme") {
        Some("http") => false,
        Some("https") | None => true,
        Some(s) => return Err(format!("--scheme {s:?}: use http or https")),
    };
    let raw = read_input(request_path)?;
    let req = parse_http_request(&raw).map_err(|e| format!("{request_path}: {e}"))?;
    let signed = sign_request(&req, &params).map_err(|e| e.to_string())?;
    let out = match flag_value(&flags, "--print") {
        Some("request") | None => render(&req, &signed.headers()),
        // One `Name: value` line per added header, e.g. for curl's -H.
        Some("headers") => signed
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
            .into_bytes(),
        Some(p) => return Err(format!("--print {p:?}: use request or headers")),
    };
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| format!("stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn random_nonce() -> Result<String, String> {
    let mut buf = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    std::io::Read::read_exact(&mut f, &mut buf).map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}
