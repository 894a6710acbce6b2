//! What the core decides for a request, independent of any host.

use std::fmt;

/// The stable reason codes that appear in `eval` output, the log record and metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NoRoute,
    BadHost,
    HttpsRequired,
    TlsVersionTooLow,
    IpDenied,
    ClientIpInvalid,
    SignatureMissing,
    SignatureInvalid,
    SignatureExpired,
    SignatureReplayed,
    DigestMismatch,
    BodyTooLarge,
    NonceStoreFull,
    RateLimited,
    RateLimitUnavailable,
    /// The client sent a header edgeward reserves for what it tells the upstream (`x-edgeward-*`).
    ReservedHeader,
    /// The path has a dot segment with parameters (`..;`, `.;`): a traversal some backends resolve and
    /// Envoy's routes do not.
    BadPath,
    /// The body did not arrive within the deadline.
    BodyTimeout,
    /// Holding this body would pass the bytes one worker may hold in bodies at once.
    BodyBufferFull,
    /// The host never hands the body to the plugin (Envoy without `allow_on_headers_stop_iteration`).
    BodyUnavailable,
    /// The stream ended before edgeward decided (the client went away, or Envoy answered first):
    /// recorded, never sent.
    Incomplete,
    /// The signature names a key that only a key source can hold, and that source has never loaded
    /// (answered 503: the client may have done nothing wrong).
    KeysUnavailable,
    /// Web Bot Auth: `Signature-Agent` is missing, malformed, or names a directory outside the document's
    /// allow-list (no fetch is ever made for it).
    SignatureAgentUnknown,
}

impl Reason {
    /// Every reason, for metric registration.
    pub const ALL: [Reason; 23] = [
        Reason::NoRoute,
        Reason::BadHost,
        Reason::HttpsRequired,
        Reason::TlsVersionTooLow,
        Reason::IpDenied,
        Reason::ClientIpInvalid,
        Reason::SignatureMissing,
        Reason::SignatureInvalid,
        Reason::SignatureExpired,
        Reason::SignatureReplayed,
        Reason::DigestMismatch,
        Reason::BodyTooLarge,
        Reason::NonceStoreFull,
        Reason::RateLimited,
        Reason::RateLimitUnavailable,
        Reason::ReservedHeader,
        Reason::BadPath,
        Reason::BodyTimeout,
        Reason::BodyBufferFull,
        Reason::BodyUnavailable,
        Reason::Incomplete,
        Reason::KeysUnavailable,
        Reason::SignatureAgentUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoRoute => "no_route",
            Reason::BadHost => "bad_host",
            Reason::HttpsRequired => "https_required",
            Reason::TlsVersionTooLow => "tls_version_too_low",
            Reason::IpDenied => "ip_denied",
            Reason::ClientIpInvalid => "client_ip_invalid",
            Reason::SignatureMissing => "signature_missing",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::SignatureExpired => "signature_expired",
            Reason::SignatureReplayed => "signature_replayed",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::BodyTooLarge => "body_too_large",
            Reason::NonceStoreFull => "nonce_store_full",
            Reason::RateLimited => "rate_limited",
            Reason::RateLimitUnavailable => "rate_limit_unavailable",
            Reason::ReservedHeader => "reserved_header",
            Reason::BadPath => "bad_path",
            Reason::BodyTimeout => "body_timeout",
            Reason::BodyBufferFull => "body_buffer_full",
            Reason::BodyUnavailable => "body_unavailable",
            Reason::Incomplete => "incomplete",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::SignatureAgentUnknown => "signature_agent_unknown",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Redirect,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Redirect => "redirect",
        }
    }
}

/// A local reply instead of forwarding: a denial or a redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub decision: Decision,
    pub status: u16,
    pub reason: Reason,
    /// Headers of the local reply (Location, Retry-After, Accept-Signature, ...).
    pub headers: Vec<(String, String)>,
    /// Body of the local reply; the same for every cause of one status class (no oracles).
    pub body: &'static str,
}

impl Reply {
    pub fn deny(status: u16, reason: Reason) -> Reply {
        Reply {
            decision: Decision::Deny,
            status,
            reason,
            headers: Vec::new(),
            body: default_body(status),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Generic bodies by status: the client learns the status class, never which check failed in detail.
pub fn default_body(status: u16) -> &'static str {
    match status {
        301 | 302 | 307 | 308 => "",
        400 => "bad request\n",
        401 => "unauthorized\n",
        403 => "forbidden\n",
        404 => "not found\n",
        408 => "request timeout\n",
        413 => "payload too large\n",
        426 => "upgrade required\n",
        429 => "too many requests\n",
        503 => "service unavailable\n",
        _ => "denied\n",
    }
}
