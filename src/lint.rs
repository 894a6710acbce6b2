//! Warnings about documents that are valid but that a reviewer would flag: a route that can never match,
//! a trust or freshness setting wide enough to undo the check it configures, a log setting that keeps
//! what it should anonymize. `edgeward check` prints them (and `--strict` fails on them); the plugin logs
//! them once when it loads the document. They never change what the plugin does.

use crate::document::{DocumentInput, RouteInput};
use crate::error::{index, join};
use crate::ip::parse_net;
use crate::log::LogInput;
use crate::secret::SecretInput;
use crate::signature::{components::Derived, components::Kind, ComponentId, SignatureInput};
use crate::signature::{web_bot_auth, WebBotAuthInput};
use std::fmt;
use std::net::IpAddr;

/// Longest `max_age_s` that passes without a warning: a captured request stays valid this long.
pub const MAX_AGE_WARN_S: u64 = 3600;
/// Longest `clock_skew_s` that passes without a warning.
pub const CLOCK_SKEW_WARN_S: u64 = 300;
/// Longest log prefixes that pass without a warning (IPv4 /24 and IPv6 /64 keep a network, not a host).
pub const LOG_V4_WARN_PREFIX: u32 = 24;
pub const LOG_V6_WARN_PREFIX: u32 = 64;
/// Trusted-proxy networks shorter than these are a large part of the Internet, not a proxy fleet.
const TRUSTED_V4_MIN_PREFIX: u8 = 8;
const TRUSTED_V6_MIN_PREFIX: u8 = 16;

/// Parts of header names that mark a credential (a session, a token, a password, an API key).
const CREDENTIAL_MARKERS: [&str; 9] = [
    "token", "secret", "passw", "session", "auth", "api-key", "apikey", "csrf", "cookie",
];

/// One warning: where (a JSON path), what is wrong and why it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub what: String,
    pub why: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.what, self.why)
    }
}

#[derive(Default)]
struct Warnings(Vec<Warning>);

impl Warnings {
    fn push(&mut self, path: impl Into<String>, what: impl Into<String>, why: impl Into<String>) {
        self.0.push(Warning {
            path: path.into(),
            what: what.into(),
            why: why.into(),
        });
    }
}

/// Every warning for a document that parsed (compile it too: a warning says nothing about errors).
pub fn lint(doc: &DocumentInput) -> Vec<Warning> {
    let mut w = Warnings::default();
    routes(&doc.routes, &mut w);
    trusted_proxies(&doc.client_ip.trusted_proxies, &mut w);
    if let Some(log) = &doc.log {
        log_section(log, "log", &mut w);
    }
    for (name, source) in &doc.key_sources {
        if source
            .url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        {
            w.push(
                join(&join("key_sources", name), "url"),
                "the key set is named by an http:// URL",
                "unless the cluster itself connects with TLS, anyone on the path can swap in their own keys",
            );
        }
    }
    for (name, p) in &doc.policies {
        let path = join("policies", name);
        if let Some(sig) = &p.signature {
            signature(sig, &join(&path, "signature"), &mut w);
        }
        if let Some(ip) = &p.ip {
            let ipath = join(&path, "ip");
            if ip.allow_given {
                ip_list(&ip.allow, &join(&ipath, "allow"), true, doc, &mut w);
            }
            ip_list(&ip.deny, &join(&ipath, "deny"), false, doc, &mut w);
        }
        if let Some(log) = &p.log {
            log_section(log, &join(&path, "log"), &mut w);
        }
    }
    w.0
}

fn routes(routes: &[RouteInput], w: &mut Warnings) {
    for (j, later) in routes.iter().enumerate() {
        let path = index("routes", j);
        if let Some(p) = later.path_prefix.as_deref().filter(|p| !p.ends_with('/')) {
            w.push(
                join(&path, "path_prefix"),
                format!("{p:?} also matches {:?} and {:?}", format!("{p}-x"), format!("{p}x/y")),
                "a prefix is compared byte for byte; end it with '/' for a directory, or use \"path\" for exactly one path",
            );
        }
        if let Some(i) = routes
            .iter()
            .take(j)
            .position(|earlier| covers(earlier, later))
        {
            let what = if same_match(&routes[i], later) {
                format!("duplicates routes[{i}] and never matches")
            } else {
                format!("never matches: routes[{i}] matches every request it would")
            };
            w.push(
                path,
                what,
                "the first matching entry wins; put the more specific entry first",
            );
        }
    }
}

/// Whether every request that `later` matches is matched by `earlier`.
fn covers(earlier: &RouteInput, later: &RouteInput) -> bool {
    let route = match (&earlier.route, &later.route) {
        (None, _) => true,
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => false,
    };
    let host = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(a), Some(b)) => host_covers(a, b),
        (Some(_), None) => false,
    };
    let path = match (
        earlier.path.as_deref(),
        earlier.path_prefix.as_deref(),
        later.path.as_deref(),
        later.path_prefix.as_deref(),
    ) {
        (None, None, _, _) => true,
        (Some(a), _, Some(b), _) => a == b,
        (Some(_), _, None, _) => false,
        (None, Some(p), Some(b), _) => b.starts_with(p),
        (None, Some(p), None, Some(q)) => q.starts_with(p),
        (None, Some(_), None, None) => false,
    };
    route && host && path
}

fn same_match(a: &RouteInput, b: &RouteInput) -> bool {
    covers(a, b) && covers(b, a)
}

/// Host patterns as the compiler reads them: case-insensitive, one trailing dot ignored, `*.` a suffix.
fn host_covers(earlier: &str, later: &str) -> bool {
    let norm = |h: &str| h.trim_end_matches('.').to_ascii_lowercase();
    let (a, b) = (norm(earlier), norm(later));
    if a == b {
        return true;
    }
    match a.strip_prefix('*') {
        // `*.x` covers `a.x` and `*.a.x`, never `x`.
        Some(suffix) => {
            let b = b.strip_prefix('*').unwrap_or(&b);
            b.len() > suffix.len() && b.ends_with(suffix)
        }
        None => false,
    }
}

fn trusted_proxies(list: &[String], w: &mut Warnings) {
    for (i, entry) in list.iter().enumerate() {
        let Ok(net) = parse_net(entry) else { continue };
        // Unique local addresses (fc00::/7) are private whatever the length.
        let broad = match net.addr() {
            IpAddr::V4(_) => net.prefix_len() < TRUSTED_V4_MIN_PREFIX,
            IpAddr::V6(a) => {
                net.prefix_len() < TRUSTED_V6_MIN_PREFIX
                    && !(net.prefix_len() >= 7 && a.octets()[0] & 0xfe == 0xfc)
            }
        };
        if broad {
            w.push(
                index("client_ip.trusted_proxies", i),
                format!("{entry:?} trusts a large part of the Internet as proxies"),
                "any client in it can choose the address IP lists, rate limits and the log see, and have its X-Forwarded-Proto believed; list your proxies' own addresses",
            );
        }
    }
}

fn signature(sig: &SignatureInput, path: &str, w: &mut Warnings) {
    if let Some(wba) = &sig.web_bot_auth {
        web_bot_auth(wba, &join(path, "web_bot_auth"), w);
    }
    let covered: Vec<ComponentId> = sig
        .effective_components()
        .iter()
        .filter_map(|c| ComponentId::parse_config(c).ok())
        .collect();
    let has = |d: Derived| {
        covered
            .iter()
            .any(|c| matches!(c.kind, Kind::Derived(x) if x == d))
    };
    let target_uri = has(Derived::TargetUri);
    let cpath = join(path, "components");
    let mut missing = Vec::new();
    if !has(Derived::Method) {
        missing.push(("@method", "a signed GET can be sent as a DELETE"));
    }
    if !(target_uri || has(Derived::Authority)) {
        missing.push((
            "@authority",
            "a request signed for one host is accepted on another",
        ));
    }
    if !(target_uri || has(Derived::Path) || has(Derived::RequestTarget)) {
        missing.push((
            "@path",
            "a request signed for one path is accepted on any other",
        ));
    }
    let query_param = covered
        .iter()
        .any(|c| matches!(c.kind, Kind::Derived(Derived::QueryParam)));
    if !(target_uri || has(Derived::Query) || has(Derived::RequestTarget) || query_param) {
        missing.push((
            "@query",
            "the query can be changed without breaking the signature",
        ));
    }
    // Web Bot Auth agents sign what their protocol says (the target); the policy cannot ask for more.
    if sig.web_bot_auth.is_some() && sig.components.is_none() {
        missing.clear();
    }
    for (component, why) in missing {
        w.push(
            &cpath,
            format!("signatures need not cover {component}"),
            why,
        );
    }
    if sig.max_age_s > MAX_AGE_WARN_S {
        w.push(
            join(path, "max_age_s"),
            format!("{} s is longer than {MAX_AGE_WARN_S} s", sig.max_age_s),
            "a captured request stays valid (and its nonce stays in the replay table) that long",
        );
    }
    if sig.clock_skew_s > CLOCK_SKEW_WARN_S {
        w.push(
            join(path, "clock_skew_s"),
            format!(
                "{} s is longer than {CLOCK_SKEW_WARN_S} s",
                sig.clock_skew_s
            ),
            "signatures dated that far in the future are accepted, and expired ones that much later",
        );
    }
    for (i, k) in sig.keys.iter().enumerate() {
        if k.secret.as_ref().is_some_and(inline) {
            w.push(
                join(&index(&join(path, "keys"), i), "secret"),
                "the secret is written in the document",
                "anyone who can read the configuration can sign requests; use {\"env\": NAME}",
            );
        }
    }
}

/// A secret written in the document itself (`{"base64": ...}`), not read from the environment.
/// An agent header outside the default is written only if Envoy's route configuration says so.
fn web_bot_auth(wba: &WebBotAuthInput, path: &str, w: &mut Warnings) {
    if let Some(h) = wba
        .agent_header
        .as_deref()
        .filter(|h| *h != web_bot_auth::DEFAULT_AGENT_HEADER)
    {
        w.push(
            join(path, "agent_header"),
            format!("the verified agent goes to {h:?}, which envoy/envoy.yaml does not write"),
            format!("add {h} to the route configuration's request_headers_to_remove, and a request_headers_to_add entry with value \"%FILTER_STATE(wasm.edgeward.upstream.agent:PLAIN)%\""),
        );
    }
}

fn inline(s: &SecretInput) -> bool {
    s.env.is_none() && s.base64.is_some()
}

fn ip_list(list: &[String], path: &str, allow: bool, doc: &DocumentInput, w: &mut Warnings) {
    let empty_ref = |e: &String| {
        e.strip_prefix('@')
            .and_then(|name| doc.ip_lists.get(name))
            .is_some_and(|l| l.is_empty())
    };
    if allow && list.is_empty() {
        w.push(
            path,
            "an empty allow list",
            "an empty allow list does not apply: every address passes; remove it or list who may pass",
        );
    } else if !list.is_empty() && list.iter().all(empty_ref) {
        if allow {
            w.push(
                path,
                "the allow list names only empty ip_lists",
                "it applies and admits no one",
            );
        } else {
            w.push(
                path,
                "the deny list names only empty ip_lists",
                "it denies no one",
            );
        }
    }
}

fn log_section(log: &LogInput, path: &str, w: &mut Warnings) {
    if let Some(p) = log.ipv4_prefix.filter(|&p| p > LOG_V4_WARN_PREFIX) {
        w.push(
            join(path, "ipv4_prefix"),
            format!("/{p} keeps more than a /{LOG_V4_WARN_PREFIX}"),
            "the logged address identifies a host, not a network (/32 keeps it whole)",
        );
    }
    if let Some(p) = log.ipv6_prefix.filter(|&p| p > LOG_V6_WARN_PREFIX) {
        w.push(
            join(path, "ipv6_prefix"),
            format!("/{p} keeps more than a /{LOG_V6_WARN_PREFIX}"),
            "the logged address identifies a host, not a network (/128 keeps it whole)",
        );
    }
    for (i, h) in log.headers.iter().flatten().enumerate() {
        let lower = h.to_ascii_lowercase();
        if CREDENTIAL_MARKERS.iter().any(|m| lower.contains(m)) {
            w.push(
                index(&join(path, "headers"), i),
                format!("{lower} may carry a credential"),
                "logged headers are written in clear; drop it, or log a pseudonym with \"pseudonymize\": [\"header:NAME\"] if it is an identifier",
            );
        }
    }
    if log.pseudonym_key.as_ref().is_some_and(inline) {
        w.push(
            join(path, "pseudonym_key"),
            "the pseudonym key is written in the document",
            "anyone who can read the configuration can link pseudonyms to addresses by guessing; use {\"env\": NAME}",
        );
    }
}

#[cfg(test)]
mod tests;
