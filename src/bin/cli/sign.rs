//! `edgeward sign`: the client side. Adds RFC 9421 `Signature-Input`/`Signature` (and RFC 9530
//! `Content-Digest`) to a raw HTTP/1.1 request and prints it; with `--web-bot-auth`, signs as a Web Bot
//! Auth agent.

use super::{read_input, unix_now, usage_error, Failure, Scheme};
use base64::Engine as _;
use clap::error::ErrorKind;
use clap::{ArgGroup, Args, ValueEnum};
use edgeward::http1::{parse_http_request, render};
use edgeward::signature::web_bot_auth::{self, normalize_origin};
use edgeward::signature::{sfv, sign_request, Alg, ComponentId, DigestAlg, SignParams, SigningKey};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `sign_request` covers when no components are given (and `content-digest` when there is a body).
const DEFAULT_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "@query"];

/// The expires parameter of a Web Bot Auth signature without `--expires` or `--expires-in`: created + this.
const WEB_BOT_AUTH_EXPIRES_IN: u64 = 60;

const AFTER_HELP: &str = "\
Prints the request with Signature-Input and Signature added (and Content-Digest when
--content-digest is given, or when content-digest is covered and the request has none: sha-256).
A Content-Digest that edgeward adds is always covered by the signature. Header values are read and
printed as bytes: obs-text (bytes 0x80-0xff) is kept, and `;bs` signs it.

Web Bot Auth (--web-bot-auth --signature-agent URL --private-key-file PEM, an ed25519 key): keyid
is the key's JWK thumbprint (RFC 7638; `edgeward jwks --thumbprint` prints it), alg=\"ed25519\",
tag=\"web-bot-auth\", expires = created + 60 s unless --expires or --expires-in says otherwise.
The request gets `Signature-Agent: sig1=\"URL\"` (a Dictionary member named like --label,
replacing any Signature-Agent it has), and the signature covers @authority and
\"signature-agent\";key=\"sig1\" (--components, if given, must list both). URL is the agent's
origin (https://host[:port], optionally with /.well-known/http-message-signatures-directory), as
a verifier's web_bot_auth.directories lists it. --key-id and --tag are refused with it.

Exit status: 0 printed; 2 usage error, or a request or key that cannot be read or used.";

/// Sign a raw HTTP/1.1 request (RFC 9421 HTTP Message Signatures) and print it
#[derive(Args)]
#[command(
    after_help = AFTER_HELP,
    group(ArgGroup::new("key").required(true).args(["secret_base64", "secret_env", "private_key_file"]))
)]
pub struct SignArgs {
    /// The key id the verifier knows the key by (the keyid parameter)
    #[arg(long, value_name = "ID", required_unless_present = "web_bot_auth")]
    key_id: Option<String>,
    /// HMAC-SHA256 secret, base64 (at least 32 bytes)
    #[arg(long, value_name = "B64")]
    secret_base64: Option<String>,
    /// HMAC-SHA256 secret, base64, read from this environment variable
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// ed25519 private key, PKCS#8 PEM (as `openssl genpkey -algorithm ed25519` writes it)
    #[arg(long, value_name = "PEM")]
    private_key_file: Option<PathBuf>,
    /// Emit the alg parameter (it must match the key)
    #[arg(long, value_enum)]
    alg: Option<AlgArg>,
    /// The signature label
    #[arg(long, default_value = "sig1")]
    label: String,
    /// Covered components, comma-separated, in order
    /// [default: @method,@authority,@path,@query, and content-digest for a request with a body]
    #[arg(long, value_name = "c1,c2,...")]
    components: Option<String>,
    /// The created parameter [default: now]
    #[arg(long, value_name = "UNIX")]
    created: Option<u64>,
    /// The expires parameter
    #[arg(long, value_name = "UNIX")]
    expires: Option<u64>,
    /// The expires parameter, this many seconds after created [default with --web-bot-auth: 60]
    #[arg(long, value_name = "SECONDS", conflicts_with = "expires")]
    expires_in: Option<u64>,
    /// The nonce parameter
    #[arg(long, value_name = "N", conflicts_with = "random_nonce")]
    nonce: Option<String>,
    /// A random nonce (16 bytes from /dev/urandom, base64url)
    #[arg(long)]
    random_nonce: bool,
    /// The tag parameter (RFC 9421 §2.3: an application-specific label)
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// Compute Content-Digest with this algorithm (replacing one the request has) and cover it
    /// (content-digest is added to --components if they do not list it)
    #[arg(long, value_enum, value_name = "ALG")]
    content_digest: Option<DigestArg>,
    /// The scheme the request will be sent with (@scheme, @target-uri, @authority's default port)
    #[arg(long, value_enum, default_value_t = Scheme::Https)]
    scheme: Scheme,
    /// Print the signed request, or only the added header lines (`Name: value`, e.g. for curl -H)
    #[arg(long, value_enum, default_value_t = Print::Request)]
    print: Print,
    /// Sign as a Web Bot Auth agent (see below): needs --signature-agent and an ed25519
    /// --private-key-file
    #[arg(
        long,
        requires = "signature_agent",
        conflicts_with_all = ["key_id", "tag", "secret_base64", "secret_env"]
    )]
    web_bot_auth: bool,
    /// The agent's origin, sent as Signature-Agent (with --web-bot-auth)
    #[arg(long, value_name = "URL")]
    signature_agent: Option<String>,
    /// The raw HTTP/1.1 request (head and body); - reads standard input
    #[arg(long, value_name = "FILE|-")]
    request: String,
}

/// `--alg`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AlgArg {
    #[value(name = "hmac-sha256")]
    HmacSha256,
    #[value(name = "ed25519")]
    Ed25519,
}

impl From<AlgArg> for Alg {
    fn from(a: AlgArg) -> Alg {
        match a {
            AlgArg::HmacSha256 => Alg::HmacSha256,
            AlgArg::Ed25519 => Alg::Ed25519,
        }
    }
}

/// `--content-digest`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DigestArg {
    #[value(name = "sha-256")]
    Sha256,
    #[value(name = "sha-512")]
    Sha512,
}

impl From<DigestArg> for DigestAlg {
    fn from(a: DigestArg) -> DigestAlg {
        match a {
            DigestArg::Sha256 => DigestAlg::Sha256,
            DigestArg::Sha512 => DigestAlg::Sha512,
        }
    }
}

/// `--print`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Print {
    Request,
    Headers,
}

fn signing_key(args: &SignArgs) -> Result<SigningKey, String> {
    // clap's group "key" guarantees exactly one of the three.
    if let Some(b64) = &args.secret_base64 {
        let bytes =
            edgeward::secret::decode_base64(b64).ok_or("--secret-base64 is not valid base64")?;
        return SigningKey::hmac(&bytes).map_err(|e| e.to_string());
    }
    if let Some(var) = &args.secret_env {
        let value =
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
        let bytes = edgeward::secret::decode_base64(&value)
            .ok_or(format!("environment variable {var} is not valid base64"))?;
        return SigningKey::hmac(&bytes).map_err(|e| e.to_string());
    }
    let file = args
        .private_key_file
        .as_ref()
        .ok_or("give one of --secret-base64, --secret-env, --private-key-file")?;
    let pem = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    SigningKey::ed25519_from_pem(&pem).map_err(|e| e.to_string())
}

/// The covered components: as given (empty: `defaults`, or the library's when there are none), plus
/// `content-digest` when `--content-digest` asks for the header and nothing else covers it.
fn components(args: &SignArgs, defaults: &[String]) -> Vec<String> {
    let mut out: Vec<String> = args
        .components
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if out.is_empty() {
        out = defaults.to_vec();
    }
    if args.content_digest.is_some() {
        if out.is_empty() {
            out = DEFAULT_COMPONENTS.iter().map(|s| s.to_string()).collect();
        }
        let covered = out
            .iter()
            .any(|c| ComponentId::parse_config(c).is_ok_and(|id| id.is_content_digest()));
        if !covered {
            out.push("content-digest".into());
        }
    }
    out
}

pub fn sign(args: &SignArgs) -> Result<ExitCode, Failure> {
    // clap's `requires` counts a flag's default (false) as present: checked here.
    if args.signature_agent.is_some() && !args.web_bot_auth {
        return Err(usage_error(
            "sign",
            ErrorKind::MissingRequiredArgument,
            "--signature-agent needs --web-bot-auth",
        ));
    }
    let key = signing_key(args)?;
    let alg = args.alg.map(Alg::from);
    if let Some(a) = alg {
        if a != key.alg() {
            return Err(format!("--alg {} does not match the key given", a.as_str()).into());
        }
    }
    let request_path = args.request.as_str();
    let raw = read_input(request_path)?;
    let mut req = parse_http_request(&raw).map_err(|e| format!("{request_path}: {e}"))?;
    let created = args.created.unwrap_or_else(unix_now);
    let (mut params, agent_header) = match &args.signature_agent {
        Some(agent) if args.web_bot_auth => {
            let (params, header) = web_bot_auth_params(args, key, created, agent)?;
            (params, Some(header))
        }
        // clap's `required_unless_present` guarantees a key id without --web-bot-auth.
        _ => {
            let key_id = args.key_id.as_deref().ok_or("give --key-id")?;
            let mut params = SignParams::new(key_id, key, created);
            params.alg = alg;
            params.tag = args.tag.clone();
            params.components = components(args, &[]);
            params.expires = expires(args, created, None);
            (params, None)
        }
    };
    if let Some(value) = &agent_header {
        req.set_header("Signature-Agent", value);
    }
    params.label = args.label.clone();
    params.nonce = match (&args.nonce, args.random_nonce) {
        (Some(n), _) => Some(n.clone()),
        (None, true) => Some(random_nonce()?),
        (None, false) => None,
    };
    params.content_digest = args.content_digest.map(DigestAlg::from);
    params.https = args.scheme == Scheme::Https;
    let signed = sign_request(&req, &params).map_err(|e| e.to_string())?;
    let out = match args.print {
        Print::Request => render(&req, &signed.headers()),
        Print::Headers => agent_header
            .map(|v| ("Signature-Agent".to_string(), v))
            .into_iter()
            .chain(signed.headers())
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
            .into_bytes(),
    };
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| format!("stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The expires parameter: `--expires`, else created + `--expires-in` (or + `default_in`).
fn expires(args: &SignArgs, created: u64, default_in: Option<u64>) -> Option<u64> {
    args.expires.or_else(|| {
        args.expires_in
            .or(default_in)
            .map(|s| created.saturating_add(s))
    })
}

/// The parameters of a Web Bot Auth signature by `key` (thumbprint key id, `alg`, `tag`, `expires`, the
/// agent's components) and the Signature-Agent value naming `agent` for the label.
fn web_bot_auth_params(
    args: &SignArgs,
    key: SigningKey,
    created: u64,
    agent: &str,
) -> Result<(SignParams, String), Failure> {
    let public = key
        .verifying_key()
        .ok_or("--web-bot-auth needs an ed25519 key (--private-key-file)")?;
    if normalize_origin(agent).is_none() {
        return Err(usage_error(
            "sign",
            ErrorKind::ValueValidation,
            format!(
                "--signature-agent {agent:?} is not an agent origin (http:// or https://, a host, an optional \
                 port, optionally {})",
                web_bot_auth::DIRECTORY_PATH
            ),
        ));
    }
    let mut header = format!("{}=", args.label);
    sfv::write_string(&mut header, agent);
    let mut agent_component = String::from("\"signature-agent\";key=");
    sfv::write_string(&mut agent_component, &args.label);
    let required = ["@authority".to_string(), agent_component];
    let components = components(args, &required);
    for want in &required {
        let id = ComponentId::parse_config(want).map_err(|e| e.to_string())?;
        let listed = components
            .iter()
            .any(|c| ComponentId::parse_config(c).is_ok_and(|c| c.same_as(&id)));
        if !listed {
            return Err(usage_error(
                "sign",
                ErrorKind::ArgumentConflict,
                format!(
                    "with --web-bot-auth, --components must list {} and {} (it lacks {want})",
                    required[0], required[1]
                ),
            ));
        }
    }
    let expires = expires(args, created, Some(WEB_BOT_AUTH_EXPIRES_IN));
    if expires.is_some_and(|e| e < created) {
        return Err("--expires is before created: a Web Bot Auth verifier refuses it".into());
    }
    let mut params = SignParams::new(edgeward::keys::thumbprint(&public), key, created);
    params.alg = Some(Alg::Ed25519);
    params.tag = Some(web_bot_auth::TAG.to_string());
    params.components = components;
    params.expires = expires;
    Ok((params, header))
}

fn random_nonce() -> Result<String, String> {
    let mut buf = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    std::io::Read::read_exact(&mut f, &mut buf).map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}
