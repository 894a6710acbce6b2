//! `edgeward eval`: one raw HTTP/1.1 request through the core, exactly as the plugin would see it.

use super::{flag_value, parse_flags, read_input, USAGE};
use edgeward::document::Document;
use edgeward::http1::parse_http_request;
use edgeward::request::{Headers, Peer, RequestHead, TlsVersion};
use edgeward::store::MemoryStore;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::process::ExitCode;

const FLAGS: &[&str] = &[
    "--request",
    "--route",
    "--client-ip",
    "--scheme",
    "--tls-version",
    "--now",
];

pub fn eval(args: &[String]) -> Result<ExitCode, String> {
    let (positional, flags) = parse_flags(args, FLAGS, &[])?;
    let [doc_path] = positional.as_slice() else {
        return Err(USAGE.to_string());
    };
    let request_path = flag_value(&flags, "--request").ok_or("eval needs --request FILE|-")?;
    let text = std::fs::read_to_string(doc_path).map_err(|e| format!("{doc_path}: {e}"))?;
    let env = |name: &str| std::env::var(name).ok();
    let doc = Document::from_json(&text, &env).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{doc_path}: {e}")).collect();
        lines.join("\n")
    })?;
    let raw = read_input(request_path)?;
    let req = parse_http_request(&raw).map_err(|e| format!("{request_path}: {e}"))?;

    let client: IpAddr = match flag_value(&flags, "--client-ip") {
        Some(s) => s
            .parse()
            .map_err(|_| format!("--client-ip {s:?} is not an IP address"))?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let tls_flag = match flag_value(&flags, "--tls-version") {
        Some(v @ ("1.0" | "1.1" | "1.2" | "1.3")) => TlsVersion::parse(v),
        Some(v) => return Err(format!("--tls-version {v:?}: use 1.2 or 1.3")),
        None => None,
    };
    let tls = match flag_value(&flags, "--scheme") {
        Some("https") => Some(tls_flag.unwrap_or(TlsVersion::V1_3)),
        Some("http") if tls_flag.is_some() => {
            return Err("--tls-version needs --scheme https".into())
        }
        Some("http") | None => tls_flag,
        Some(s) => return Err(format!("--scheme {s:?}: use http or https")),
    };
    let now_s: u64 = match flag_value(&flags, "--now") {
        Some(s) => s
            .parse()
            .map_err(|_| format!("--now {s:?} is not unix seconds"))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let now_ns = now_s.saturating_mul(1_000_000_000);

    // The headers as Envoy's filter sees them with envoy/envoy.yaml (use_remote_address: true): Host
    // becomes :authority, X-Forwarded-Proto is set from the connection, the peer is appended to
    // X-Forwarded-For.
    let authority = req.authority();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut headers: Vec<(String, String)> = vec![
        (":authority".into(), authority.clone()),
        (":path".into(), req.path().to_string()),
        (":method".into(), req.method.clone()),
        (":scheme".into(), scheme.into()),
    ];
    let mut xff: Vec<String> = Vec::new();
    for (k, v) in &req.headers {
        match k.as_str() {
            "host" | "x-forwarded-proto" => {}
            "x-forwarded-for" => xff.push(v.clone()),
            _ => headers.push((k.clone(), v.clone())),
        }
    }
    xff.push(client.to_string());
    headers.push(("x-forwarded-for".into(), xff.join(",")));
    headers.push(("x-forwarded-proto".into(), scheme.into()));

    let head = RequestHead {
        method: &req.method,
        authority: &authority,
        path: req.path(),
        route_name: flag_value(&flags, "--route"),
        tls,
        peer: Peer::Ip(client.to_canonical()),
        headers: Headers::new(&headers),
    };
    let mut store = MemoryStore::new();
    doc.prepare(&mut store)
        .map_err(|e| format!("shared store: {e:?}"))?;
    let mut ev = doc.evaluate_head(&head, now_ns, &mut store);
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
