//! The decision for one request: route selection, then the selected policy's checks in a fixed order
//! (https → ip → signature → body digest → nonce → rate limits), then shadow-mode handling.
//!
//! The adapter (and `edgeward eval`) drive it in two steps: [`Document::evaluate_head`] with the request
//! head, then, only when [`Evaluation::needs_body`] says so, [`Evaluation::evaluate_body`] with the whole body.

use crate::decision::{Decision, Reason, Reply};
use crate::document::{Document, Mode, Policy};
use crate::https::{arrived_over_https, valid_authority};
use crate::log::{LogPolicy, RecordInput, XffAction};
use crate::rate_limit::{KeyInputs, RateOutcome};
use crate::request::RequestHead;
use crate::route::{normalize_host, select, Target};
use crate::signature::{check_content_digest, check_nonce, Verified};
use crate::store::SharedStore;
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
#[derive(Debug)]
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
            self.upstream_headers.push(HeaderOp::Set(
                "x-edgeward-key-id".to_string(),
                v.key_id.clone(),
            ));
            self.key_id = Some(v.key_id);
        }
        if !policy.rate_limits.is_empty() {
            let keys = KeyInputs {
                client_ip: self.client_ip,
                key_id: self.key_id.as_deref(),
                headers: head.headers,
            };
            match policy
                .rate_limits
                .acquire(&keys, now_ns, store, &doc.hash_key)
            {
                RateOutcome::Allowed { headers } => self.response_headers.extend(headers),
                RateOutcome::Limited { reply, .. } | RateOutcome::Unavailable { reply } => {
                    self.fail(reply)
                }
            }
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
            XffAction::Remove => ev
                .upstream_headers
                .push(HeaderOp::Remove("x-forwarded-for".to_string())),
        }
        if policy.log.remove_external_address() {
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
            match sig.verify_head(head, now_ns / 1_000_000_000) {
                Err(reason) => {
                    ev.fail(sig.unauthorized_reply(reason));
                    return ev;
                }
                Ok(v) => {
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
