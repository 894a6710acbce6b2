//! The decision for one request: route selection, then the selected policy's checks in a fixed order
//! (https → ip → signature → body digest → nonce → rate limits), then shadow-mode handling.
//!
//! The adapter (and `edgeward eval`) drive it in two steps: [`Document::evaluate_head`] with the request
//! head, then, only when [`Evaluation::needs_body`] says so, [`Evaluation::evaluate_body`] with the whole body.

use crate::decision::{Decision, Reason, Reply};
use crate::document::{Document, Mode, Policy};
use crate::https::{arrived_over_https, valid_authority};
use crate::log::{LogPolicy, RecordInput, XffAction};
use crate::rate_limit::{remote, FailureMode, KeyInputs, RateOutcome, Receipt, RemoteAnswer};
use crate::request::RequestHead;
use crate::route::{normalize_host, select, Target};
use crate::signature::{check_content_digest, check_nonce, Verified};
use crate::store::{ReadAhead, SharedStore};
use std::net::IpAddr;

/// The prefix of headers edgeward sets toward the upstream; a client's own are always removed.
pub const INTERNAL_HEADER_PREFIX: &str = "x-edgeward-";

/// A change to the request headers sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Set(String, String),
    Remove(String),
}

/// Per-request state between the head and the body, and the final result.
pub struct Evaluation {
    /// Index of the selected policy (`None`: no route, or `"policy": null`).
    pub policy: Option<usize>,
    /// `false` only when no route matched.
    pub routed: bool,
    pub mode: Mode,
    pub arrived_https: bool,
    /// The enforced local reply, if any (a denial or a redirect).
    pub reply: Option<Reply>,
    /// In shadow mode: the reply enforce mode would have sent.
    pub shadow: Option<Reply>,
    /// Headers to add to the client's response (upstream response or local reply).
    pub response_headers: Vec<(String, String)>,
    /// Changes to the request toward the upstream.
    pub upstream_headers: Vec<HeaderOp>,
    /// The verified signature key id.
    pub key_id: Option<String>,
    /// Set while the body is still needed: the largest body accepted.
    pub needs_body: Option<usize>,
    /// A signature that verified on the head, waiting for its digest and nonce checks.
    pending_signature: Option<Verified>,
    /// The client address per the document's `client_ip` model (`None`: unknown or unparseable).
    pub client_ip: Option<IpAddr>,
    /// Set when every local check passed and the policy has remote limits: the call to make to the
    /// rate limit service before the request may go on (see [`Evaluation::apply_remote`]).
    pub remote: Option<RemoteCall>,
    /// The rate limit service failed and `failure_mode: allow` let the request through.
    pub remote_failed_open: bool,
    /// Bucket reads of the head-time rate-limit check, reused by the rate-limit step.
    read_ahead: ReadAhead,
}

/// A pending call to the rate limit service (`ShouldRateLimit`).
#[derive(Debug)]
pub struct RemoteCall {
    /// The serialized `RateLimitRequest` (one descriptor per remote limit).
    pub message: Vec<u8>,
    /// The local tokens this request took, given back if the service denies it.
    receipt: Receipt,
}

impl RemoteCall {
    /// The request's domain and descriptors (each a list of key/value entries), for display.
    pub fn describe(&self) -> Option<(String, Vec<Vec<(String, String)>>)> {
        use prost::Message;
        let req = remote::RateLimitRequest::decode(self.message.as_slice()).ok()?;
        let descriptors = req
            .descriptors
            .into_iter()
            .map(|d| d.entries.into_iter().map(|e| (e.key, e.value)).collect())
            .collect();
        Some((req.domain, descriptors))
    }
}

// The client address is redacted (nothing prints an evaluation today; nothing can leak one).
impl std::fmt::Debug for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluation")
            .field("policy", &self.policy)
            .field("routed", &self.routed)
            .field("mode", &self.mode)
            .field("arrived_https", &self.arrived_https)
            .field("reply", &self.reply)
            .field("shadow", &self.shadow)
            .field("response_headers", &self.response_headers)
            .field("upstream_headers", &self.upstream_headers)
            .field("key_id", &self.key_id)
            .field("needs_body", &self.needs_body)
            .field("pending_signature", &self.pending_signature.is_some())
            .field("client_ip", &self.client_ip.map(|_| "<redacted>"))
            .field("remote", &self.remote.is_some())
            .field("remote_failed_open", &self.remote_failed_open)
            .field("read_ahead", &self.read_ahead)
            .finish()
    }
}

impl Evaluation {
    fn new() -> Evaluation {
        Evaluation {
            policy: None,
            routed: false,
            mode: Mode::Enforce,
            arrived_https: false,
            reply: None,
            shadow: None,
            response_headers: Vec::new(),
            upstream_headers: Vec::new(),
            key_id: None,
            needs_body: None,
            client_ip: None,
            pending_signature: None,
            remote: None,
            remote_failed_open: false,
            read_ahead: ReadAhead::default(),
        }
    }

    /// What the client gets.
    pub fn decision(&self) -> Decision {
        self.reply.as_ref().map_or(Decision::Allow, |r| r.decision)
    }

    /// The client's status when edgeward answers locally; 200 stands for "forwarded upstream".
    pub fn status(&self) -> u16 {
        self.reply.as_ref().map_or(200, |r| r.status)
    }

    pub fn reason(&self) -> Option<Reason> {
        self.reply.as_ref().map(|r| r.reason)
    }

    /// Records a failed check: enforced, or remembered in shadow mode.
    fn fail(&mut self, reply: Reply) {
        match self.mode {
            Mode::Enforce => self.reply = Some(reply),
            Mode::Shadow => self.shadow = Some(reply),
        }
        self.needs_body = None;
    }

    /// The stream ended (the client went away; Envoy answered first, e.g. 408 or 413; a reset) while
    /// edgeward still waited for the body or the rate limit service: the request never reached the
    /// upstream, so its record and counters say `deny` / `incomplete`, not `allow`. Tokens already
    /// taken for it stay taken (only stricter). No-op once decided or when nothing was pending.
    pub fn abandon(&mut self) {
        if self.reply.is_some() || (self.needs_body.is_none() && self.remote.is_none()) {
            return;
        }
        self.needs_body = None;
        self.remote = None;
        self.reply = Some(Reply::deny(0, Reason::Incomplete));
    }

    fn failed(&self) -> bool {
        self.reply.is_some() || self.shadow.is_some()
    }

    /// The log settings that apply to this request.
    pub fn log_policy<'d>(&self, doc: &'d Document) -> &'d LogPolicy {
        self.policy
            .and_then(|i| doc.policies.get(i))
            .map_or(&doc.default_log, |p| &p.log)
    }

    /// The anonymized log record, once the response status is known (`status`: what the client got).
    pub fn record(&self, doc: &Document, head: &RequestHead, status: u16, now_ns: u64) -> String {
        self.log_policy(doc)
            .record(&self.record_input(doc, head, status, now_ns))
    }

    /// The record's fields one by one, for `"fields": true` (empty otherwise).
    pub fn record_fields<'d>(
        &self,
        doc: &'d Document,
        head: &RequestHead,
        status: u16,
        now_ns: u64,
    ) -> Vec<(&'d str, String)> {
        self.log_policy(doc)
            .fields(&self.record_input(doc, head, status, now_ns))
    }

    fn record_input<'a>(
        &'a self,
        doc: &'a Document,
        head: &RequestHead<'a>,
        status: u16,
        now_ns: u64,
    ) -> RecordInput<'a> {
        let policy = self.policy.and_then(|i| doc.policies.get(i));
        RecordInput {
            now_s: now_ns / 1_000_000_000,
            now_nanos: u32::try_from(now_ns % 1_000_000_000).unwrap_or(0),
            route: head.route_name,
            policy: policy.map(|p| p.name.as_str()),
            mode: self.mode.as_str(),
            decision: self.decision().as_str(),
            reason: self.reason().map(Reason::as_str),
            shadow_decision: self.shadow.as_ref().map(|r| r.decision.as_str()),
            shadow_reason: self.shadow.as_ref().map(|r| r.reason.as_str()),
            status,
            method: head.method,
            host: head.host(),
            path: head.path,
            tls: head.tls.map(|t| t.as_str()),
            client_ip: self.client_ip,
            key_id: self.key_id.as_deref(),
            headers: head.headers,
        }
    }

    /// Continues after the whole body arrived (only when `needs_body` was set).
    pub fn evaluate_body(
        &mut self,
        doc: &Document,
        head: &RequestHead,
        body: &[u8],
        now_ns: u64,
        store: &mut dyn SharedStore,
    ) {
        let Some(max) = self.needs_body.take() else {
            return;
        };
        let Some(policy) = self.policy.and_then(|i| doc.policies.get(i)) else {
            return;
        };
        if body.len() > max {
            self.fail(Reply::deny(413, Reason::BodyTooLarge));
            return;
        }
        self.after_body(doc, policy, head, body, now_ns, store);
    }

    /// The body grew past the limit before it was complete.
    pub fn body_too_large(&mut self) {
        if self.needs_body.take().is_some() {
            self.fail(Reply::deny(413, Reason::BodyTooLarge));
        }
    }

    fn after_body(
        &mut self,
        doc: &Document,
        policy: &Policy,
        head: &RequestHead,
        body: &[u8],
        now_ns: u64,
        store: &mut dyn SharedStore,
    ) {
        if let (Some(sig), Some(v)) = (&policy.signature, self.pending_signature.take()) {
            if v.needs_digest {
                if let Err(reason) = check_content_digest(head.headers, body) {
                    self.fail(sig.unauthorized_reply(reason));
                    return;
                }
            }
            if let Some(nonce) = &v.nonce {
                let now_s = now_ns / 1_000_000_000;
                let outcome = check_nonce(
                    store,
                    &doc.nonce_table,
                    &doc.nonce_key,
                    &v.key_id,
                    nonce,
                    v.created,
                    v.expires_at,
                    now_s,
                );
                if let Some(reply) = sig.nonce_reply(outcome) {
                    self.fail(reply);
                    return;
                }
            }
            self.key_id = Some(v.key_id);
        }
        if !policy.rate_limits.is_empty() {
            let keys = KeyInputs {
                client_ip: self.client_ip,
                key_id: self.key_id.as_deref(),
                headers: head.headers,
            };
            let mut store = self.read_ahead.replaying(store);
            let (outcome, receipt) =
                policy
                    .rate_limits
                    .acquire_held(&keys, now_ns, &mut store, &doc.hash_key);
            match outcome {
                RateOutcome::Allowed { headers } => {
                    self.response_headers.extend(headers);
                    // Remote limits are asked only once every local limit passed (local checks are
                    // cheap; the call is not).
                    if let Some(message) = doc
                        .rls
                        .as_ref()
                        .and_then(|rls| policy.rate_limits.remote_message(rls, &policy.name, &keys))
                    {
                        self.remote = Some(RemoteCall { message, receipt });
                    }
                }
                RateOutcome::Limited { reply, .. } | RateOutcome::Unavailable { reply } => {
                    self.fail(reply)
                }
            }
        }
    }

    /// Applies the rate limit service's answer to the pending [`RemoteCall`]: `Some(bytes)` is the
    /// `RateLimitResponse` message, `None` any failure (gRPC error, timeout, unknown cluster).
    /// Over limit: the limit's status (429 by default), `Retry-After` and the engine's headers.
    /// Failure: `failure_mode` deny answers 503 `rate_limit_unavailable`; allow lets it through and
    /// sets `remote_failed_open`. A denied request gets its local tokens back.
    pub fn apply_remote(
        &mut self,
        doc: &Document,
        answer: Option<&[u8]>,
        store: &mut dyn SharedStore,
    ) {
        let Some(call) = self.remote.take() else {
            return;
        };
        let (Some(policy), Some(rls)) = (self.policy.and_then(|i| doc.policies.get(i)), &doc.rls)
        else {
            return;
        };
        let limits = &policy.rate_limits;
        let mut answer = answer.map_or(RemoteAnswer::Unavailable, |bytes| {
            remote::read_response(bytes, limits.remote().len())
        });
        // `"headers": false` on every remote limit: the engine's headers stay away from clients.
        if !limits.remote().iter().any(|l| l.headers) {
            if let RemoteAnswer::Allowed { headers } | RemoteAnswer::OverLimit { headers, .. } =
                &mut answer
            {
                headers.clear();
            }
        }
        match answer {
            RemoteAnswer::Allowed { headers } => self.response_headers.extend(headers),
            RemoteAnswer::OverLimit {
                headers,
                retry_after_s,
                descriptor,
            } => {
                limits.refund(call.receipt, store);
                self.fail(limits.remote_limited(descriptor, retry_after_s, headers));
            }
            RemoteAnswer::Unavailable => match rls.failure_mode {
                FailureMode::Allow => self.remote_failed_open = true,
                FailureMode::Deny => {
                    limits.refund(call.receipt, store);
                    self.fail(
                        Reply::deny(
                            crate::rate_limit::UNAVAILABLE_STATUS,
                            Reason::RateLimitUnavailable,
                        )
                        .with_header("Retry-After", "1"),
                    );
                }
            },
        }
    }
}

impl Document {
    /// Evaluates the request head: selects the policy and runs every check that needs no body.
    pub fn evaluate_head(
        &self,
        head: &RequestHead,
        now_ns: u64,
        store: &mut dyn SharedStore,
    ) -> Evaluation {
        let mut ev = Evaluation::new();
        let client = self.client_ip.resolve(head.peer, head.headers);
        ev.client_ip = client.ip();
        for (name, _) in head.headers.iter() {
            if starts_with_ignore_case(name, INTERNAL_HEADER_PREFIX)
                && !ev
                    .upstream_headers
                    .iter()
                    .any(|op| matches!(op, HeaderOp::Remove(n) if n.eq_ignore_ascii_case(name)))
            {
                ev.upstream_headers
                    .push(HeaderOp::Remove(name.to_ascii_lowercase()));
            }
        }
        if !valid_authority(head.authority) {
            ev.routed = true;
            ev.reply = Some(Reply::deny(400, Reason::BadHost));
            return ev;
        }
        let host = normalize_host(head.host());
        let path = head.path.split('?').next().unwrap_or("");
        let Some(route) =
            select(&self.routes, head.route_name, &host, path).and_then(|i| self.routes.get(i))
        else {
            ev.reply = Some(Reply::deny(403, Reason::NoRoute));
            return ev;
        };
        ev.routed = true;
        let policy = match route.target {
            Target::NoChecks => return ev,
            Target::Policy(i) => {
                ev.policy = Some(i);
                match self.policies.get(i) {
                    Some(p) => p,
                    None => return ev,
                }
            }
        };
        ev.mode = policy.mode;
        match policy
            .log
            .rewrite_xff(head.headers.get_all("x-forwarded-for"))
        {
            XffAction::Keep => {}
            XffAction::Set(v) => ev
                .upstream_headers
                .push(HeaderOp::Set("x-forwarded-for".to_string(), v)),
            // Only headers the request has: each change is a host call.
            XffAction::Remove if head.headers.get("x-forwarded-for").is_some() => ev
                .upstream_headers
                .push(HeaderOp::Remove("x-forwarded-for".to_string())),
            XffAction::Remove => {}
        }
        if policy.log.remove_external_address()
            && head.headers.get("x-envoy-external-address").is_some()
        {
            ev.upstream_headers
                .push(HeaderOp::Remove("x-envoy-external-address".to_string()));
        }
        ev.arrived_https = arrived_over_https(head, self.client_ip.peer_is_trusted(head.peer));
        if let Some(https) = &policy.https {
            if let Err(reply) = https.check(head, ev.arrived_https) {
                ev.fail(reply);
            }
            if ev.arrived_https {
                if let Some(v) = https.hsts_header() {
                    ev.response_headers
                        .push(("strict-transport-security".to_string(), v.to_string()));
                }
            }
        }
        if !ev.failed() {
            if let Some(ip) = &policy.ip {
                if let Err(reply) = ip.check(client) {
                    ev.fail(reply);
                }
            }
        }
        if ev.failed() {
            return ev;
        }
        if let Some(sig) = &policy.signature {
            // A client whose own (`client_ip`) bucket is already empty is answered now, before the
            // signature is verified and the body held: the step would deny it anyway (no token is
            // taken here). See RateLimits::check_head for why other keys wait for the step.
            let keys = KeyInputs {
                client_ip: ev.client_ip,
                key_id: None,
                headers: head.headers,
            };
            let early = policy.rate_limits.check_head(
                &keys,
                now_ns,
                &ev.read_ahead.recording(store),
                &self.hash_key,
            );
            if let Some(reply) = early.filter(|_| policy.mode == Mode::Enforce) {
                ev.fail(reply);
                return ev;
            }
            match sig.verify_head(head, now_ns / 1_000_000_000) {
                Err(reason) => {
                    ev.fail(sig.unauthorized_reply(reason));
                    return ev;
                }
                Ok(v) => {
                    // Set now: the adapter cannot change request headers once they moved on to the
                    // next filter (the body check happens later). A later denial is a local reply,
                    // so a request that fails never reaches the upstream with this header.
                    ev.upstream_headers.push(HeaderOp::Set(
                        "x-edgeward-key-id".to_string(),
                        v.key_id.clone(),
                    ));
                    if v.needs_digest {
                        ev.needs_body =
                            Some(usize::try_from(sig.max_body_bytes).unwrap_or(usize::MAX));
                    }
                    ev.pending_signature = Some(v);
                }
            }
        }
        if ev.needs_body.is_none() {
            ev.after_body(self, policy, head, &[], now_ns, store);
        }
        ev
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.as_bytes()
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[cfg(test)]
mod tests;
