//! `edgeward eval`: one raw HTTP/1.1 request through the core, exactly as the plugin would see it.

use super::{read_input, unix_now, usage_error, Failure, Scheme};
use clap::error::ErrorKind;
use clap::{Args, ValueEnum};
use edgeward::document::Document;
use edgeward::http1::parse_http_request;
use edgeward::keys::{jwks, KeyCache};
use edgeward::request::{HeaderText, Headers, Peer, RequestHead, TlsVersion};
use edgeward::store::MemoryStore;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Prints one JSON object: {\"policy\", \"mode\", \"decision\", \"status\", \"reason\", \"shadow\",
\"response_headers\", \"upstream_headers\", \"rate_limit_service\", \"log\"} (status 200: forwarded
upstream; upstream_headers maps a header to its new value, or null when it is removed).

The request is seen as Envoy's filter sees it with envoy/envoy.yaml: Host becomes :authority,
X-Forwarded-Proto is set from the scheme, the client address is appended to X-Forwarded-For. Header
values may hold obs-text (bytes 0x80-0xff): read as the plugin reads them. Each run is a fresh
process: rate limits and nonces start empty. Secrets written as {\"env\": NAME} are read from this
command's environment.

Key sources (the document's key_sources: JWK Sets, and Web Bot Auth agents' directories) are never
fetched: --key-source NAME=FILE loads a JWK Set from FILE (as `edgeward jwks` prints it) into source
NAME, read with that source's max_bytes and max_keys, its keys' nbf and exp checked at --now. A
request that needs a source given no file is answered 503 keys_unavailable, as the plugin answers
before the source's first fetch.

Exit status: 0 evaluated, whatever the decision; 2 usage error (an unknown --key-source NAME
included), a document with errors, or a request or key set that cannot be read or parsed.";

/// Evaluate one raw HTTP/1.1 request exactly as the plugin would; print the outcome as JSON
#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub struct EvalArgs {
    /// The policy document (JSON)
    #[arg(value_name = "POLICY")]
    policy: PathBuf,
    /// The raw HTTP/1.1 request (head and body); - reads standard input
    #[arg(long, value_name = "FILE|-")]
    request: String,
    /// The Envoy route name the request matched (for documents that select by route)
    #[arg(long, value_name = "NAME")]
    route: Option<String>,
    /// The client's address (the connection's peer)
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    client_ip: IpAddr,
    /// The connection's scheme [default: https with --tls-version, else http]
    #[arg(long, value_enum)]
    scheme: Option<Scheme>,
    /// The connection's TLS version (implies --scheme https) [default with --scheme https: 1.3]
    #[arg(long, value_enum, value_name = "VERSION")]
    tls_version: Option<TlsArg>,
    /// The time to evaluate at [default: now]
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// Load key source NAME's JWK Set from FILE (repeatable; see below)
    #[arg(long = "key-source", value_name = "NAME=FILE", value_parser = parse_key_source)]
    key_sources: Vec<(String, PathBuf)>,
}

/// `--key-source NAME=FILE`.
fn parse_key_source(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err("NAME=FILE expected (a key source of the document, a JWK Set file)".to_string()),
    }
}

/// The key sets given with `--key-source`, each in its source's slot.
fn key_cache(doc: &Document, given: &[(String, PathBuf)]) -> Result<KeyCache, Failure> {
    let mut cache = KeyCache::new(doc.key_sources.len());
    let mut loaded: Vec<&str> = Vec::new();
    for (name, file) in given {
        let Some(i) = doc.key_sources.iter().position(|s| s.name == *name) else {
            let names: Vec<&str> = doc.key_sources.iter().map(|s| s.name.as_str()).collect();
            let valid = if names.is_empty() {
                "the document has none".to_string()
            } else {
                format!("the document's key sources: {}", names.join(", "))
            };
            return Err(usage_error(
                "eval",
                ErrorKind::InvalidValue,
                format!("--key-source {name:?}: no such key source ({valid})"),
            ));
        };
        if loaded.contains(&name.as_str()) {
            return Err(usage_error(
                "eval",
                ErrorKind::ArgumentConflict,
                format!("--key-source {name} is given twice"),
            ));
        }
        loaded.push(name);
        let source = doc.key_sources.get(i).ok_or("no such key source")?;
        let path = file.display();
        let bytes = std::fs::read(file).map_err(|e| format!("{path}: {e}"))?;
        let parsed = jwks::parse(&bytes, source.max_bytes, source.max_keys)
            .map_err(|e| format!("{path}: {e}"))?;
        if parsed.skipped > 0 {
            eprintln!(
                "edgeward: {path}: warning: {} of the set's keys left out (not usable ed25519 verification keys)",
                parsed.skipped
            );
        }
        cache.install(i, 1, parsed.set);
    }
    Ok(cache)
}

/// `--tls-version`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TlsArg {
    #[value(name = "1.0")]
    V1_0,
    #[value(name = "1.1")]
    V1_1,
    #[value(name = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    V1_3,
}

impl From<TlsArg> for TlsVersion {
    fn from(v: TlsArg) -> TlsVersion {
        match v {
            TlsArg::V1_0 => TlsVersion::V1_0,
            TlsArg::V1_1 => TlsVersion::V1_1,
            TlsArg::V1_2 => TlsVersion::V1_2,
            TlsArg::V1_3 => TlsVersion::V1_3,
        }
    }
}

pub fn eval(args: &EvalArgs) -> Result<ExitCode, Failure> {
    let tls_flag = args.tls_version.map(TlsVersion::from);
    let tls = match args.scheme {
        Some(Scheme::Https) => Some(tls_flag.unwrap_or(TlsVersion::V1_3)),
        Some(Scheme::Http) if tls_flag.is_some() => {
            return Err(usage_error(
                "eval",
                ErrorKind::ArgumentConflict,
                "--tls-version needs --scheme https (or no --scheme)",
            ))
        }
        Some(Scheme::Http) | None => tls_flag,
    };
    let doc_path = args.policy.display();
    let request_path = args.request.as_str();
    let text = std::fs::read_to_string(&args.policy).map_err(|e| format!("{doc_path}: {e}"))?;
    let env = |name: &str| std::env::var(name).ok();
    let doc = Document::from_json(&text, &env).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{doc_path}: {e}")).collect();
        lines.join("\n")
    })?;
    let keys = key_cache(&doc, &args.key_sources)?;
    let raw = read_input(request_path)?;
    let req = parse_http_request(&raw).map_err(|e| format!("{request_path}: {e}"))?;
    let client = args.client_ip;
    let now_s = args.now.unwrap_or_else(unix_now);
    let now_ns = now_s.saturating_mul(1_000_000_000);

    // The headers as Envoy's filter sees them with envoy/envoy.yaml (use_remote_address: true): Host
    // becomes :authority, X-Forwarded-Proto is set from the connection, the peer is appended to
    // X-Forwarded-For.
    let authority = req.authority();
    let scheme = if tls.is_some() { "https" } else { "http" };
    // As the plugin holds them: values that are not UTF-8 converted lossily, their bytes kept for `;bs`.
    // (`push` fails only past 4 GiB of headers.)
    let mut text = HeaderText::default();
    for (name, value) in [
        (":authority", authority.as_str()),
        (":path", req.path()),
        (":method", req.method.as_str()),
        (":scheme", scheme),
    ] {
        let _ = text.push(name, value);
    }
    req.append_headers_to(&mut text, |k| {
        matches!(k, "host" | "x-forwarded-proto" | "x-forwarded-for")
    });
    let mut xff: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k == "x-forwarded-for")
        .map(|(_, v)| v.as_str())
        .collect();
    let client_text = client.to_string();
    xff.push(&client_text);
    let _ = text.push("x-forwarded-for", &xff.join(","));
    let _ = text.push("x-forwarded-proto", scheme);
    let slices = text.slices();

    let head = RequestHead {
        method: &req.method,
        authority: &authority,
        path: req.path(),
        route_name: args.route.as_deref(),
        tls,
        peer: Peer::Ip(client.to_canonical()),
        headers: Headers::from_text(&slices, text.raw()),
    };
    let mut store = MemoryStore::new();
    doc.prepare(&mut store)
        .map_err(|e| format!("shared store: {e:?}"))?;
    let mut ev = doc.evaluate_head_with(
        &head,
        now_ns,
        &keys,
        &std::rc::Rc::new(edgeward::rate_limit::Leases::disabled()),
        &mut store,
    );
    if ev.needs_body.is_some() {
        ev.evaluate_body(&doc, &head, &req.body, &mut store);
    }
    let status = ev.status();
    let mut response_headers = Map::new();
    let reply_headers = ev.reply.iter().flat_map(|r| r.headers.iter());
    for (k, v) in reply_headers.chain(ev.response_headers.iter()) {
        response_headers.insert(k.to_ascii_lowercase(), Value::String(v.clone()));
    }
    // What the upstream receives from edgeward (with envoy/envoy.yaml's route configuration, which
    // writes these headers from the plugin's filter state): a value, or null for "not sent".
    let mut upstream_headers = Map::new();
    if ev.reply.is_none() {
        for (name, value) in ev.upstream.headers() {
            upstream_headers.insert(
                name.to_string(),
                value.map_or(Value::Null, |v| Value::String(v.to_string())),
            );
        }
    }
    let record: Value =
        serde_json::from_str(&ev.record(&doc, &head, status, now_ns)).unwrap_or(Value::Null);
    let policy = ev
        .policy
        .and_then(|i| doc.policies.get(i))
        .map(|p| p.name.clone());
    let out = json!({
        "policy": policy,
        "mode": ev.mode.as_str(),
        "decision": ev.decision().as_str(),
        "status": status,
        "reason": ev.reason().map(|r| r.as_str()),
        "shadow": ev.shadow.as_ref().map(|r| json!({
            "decision": r.decision.as_str(),
            "status": r.status,
            "reason": r.reason.as_str(),
        })),
        "response_headers": response_headers,
        "upstream_headers": upstream_headers,
        // Remote limits: what edgeward would send the rate limit service (the decision above
        // assumes it allows the request).
        "rate_limit_service": ev.remote.as_ref().and_then(|c| c.describe()).map(|(domain, ds)| json!({
            "domain": domain,
            "descriptors": ds,
        })),
        "log": record,
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
