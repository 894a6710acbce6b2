//! The decision for one request: route selection, then the selected policy's checks in a fixed order
//! (https → ip → signature → rate limits → nonce → rate limit service → body digest), then shadow-mode
//! handling.
//!
//! Everything that reserves something is done on the head, before any body is held: the local rate-limit
//! tokens (so held bodies count against the limits), the nonce (so a second copy of a signed head is
//! refused at once) and the call to the rate limit service. Whatever fails after a reservation gives back
//! what must be given back: the nonce always (a refused request never used its signature), the tokens
//! when the request was refused for something the client did not do (the service's denial or failure,
//! no room to hold the body). The stream's life around these steps is [`crate::stream`].

use crate::decision::{Decision, Reason, Reply};
use crate::document::{Document, Mode, Policy};
use crate::https::{arrived_over_https, valid_authority};
use crate::keys::KeyCache;
use crate::log::{LogPolicy, RecordInput, XffAction};
use crate::rate_limit::{
    remote, FailureMode, KeyInputs, Leases, RateOutcome, Receipt, RemoteAnswer,
};
use crate::request::RequestHead;
use crate::route::{normalize_host, select, Target};
use crate::signature::{check_content_digest, check_nonce, release_nonce, KeyRing, NonceOutcome};
use crate::store::{ReadAhead, SharedStore};
use std::net::IpAddr;
use std::rc::Rc;

/// The prefix of headers edgeward sets toward the upstream; a client's own are refused.
pub const INTERNAL_HEADER_PREFIX: &str = "x-edgeward-";

/// What the upstream receives from edgeward, header by header. edgeward never changes request headers
/// itself (Envoy would pick the route again after any change, and the request could then leave through a
/// route whose policy nobody checked): it publishes these values as filter state, and Envoy's route
/// configuration writes them after routing (envoy/envoy.yaml: removes the headers, then adds each from
/// `%FILTER_STATE(wasm.edgeward.upstream.NAME:PLAIN)%`). A value that is not published means the header
/// is not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// `x-edgeward-key-id`: the verified signature's key id.
    pub key_id: Option<String>,
    /// `x-forwarded-for`: as Envoy built it, or rewritten by `log.upstream_xff`.
    pub forwarded_for: Option<String>,
    /// `x-envoy-external-address`: as Envoy set it (`upstream_xff: keep` only).
    pub external_address: Option<String>,
    /// Web Bot Auth: the verified agent's origin, and the header the document writes it to
    /// (`x-edgeward-agent` by default).
    pub agent: Option<(String, String)>,
}

/// (filter-state property, the header Envoy's route configuration writes from it), for the fixed
/// headers; the agent's is [`AGENT_PROPERTY`], written to the header the document names.
pub const UPSTREAM_FIELDS: [(&str, &str); 3] = [
    ("edgeward.upstream.key_id", "x-edgeward-key-id"),
    ("edgeward.upstream.xff", "x-forwarded-for"),
    ("edgeward.upstream.xea", "x-envoy-external-address"),
];

/// The filter-state property of the verified Web Bot Auth agent.
pub const AGENT_PROPERTY: &str = "edgeward.upstream.agent";

impl Upstream {
    /// Each header with its value (`None`: not sent), in [`UPSTREAM_FIELDS`] order, then the agent's
    /// when there is one.
    pub fn headers(&self) -> Vec<(&str, Option<&str>)> {
        let values = [
            self.key_id.as_deref(),
            self.forwarded_for.as_deref(),
            self.external_address.as_deref(),
        ];
        let mut out: Vec<(&str, Option<&str>)> = UPSTREAM_FIELDS
            .iter()
            .zip(values)
            .map(|((_, header), value)| (*header, value))
            .collect();
        if let Some((header, origin)) = &self.agent {
            out.push((header.as_str(), Some(origin.as_str())));
        }
        out
    }

    /// The filter-state properties to publish (only the values there are: one host call each).
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let values = [&self.key_id, &self.forwarded_for, &self.external_address];
        let mut out: Vec<(&'static str, String)> = UPSTREAM_FIELDS
            .iter()
            .zip(values)
            .filter_map(|((property, _), v)| v.clone().map(|v| (*property, v)))
            .collect();
        if let Some((_, origin)) = &self.agent {
            out.push((AGENT_PROPERTY, origin.clone()));
        }
        out
    }
}

/// A nonce recorded for this request; released if the request is refused for anything but a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NonceHold {
    key_id: String,
    nonce: String,
    /// The signature's `created`, and when its nonce may be forgotten.
    created: u64,
    expires_at: u64,
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
    /// What the upstream receives from edgeward, once the request goes on.
    pub upstream: Upstream,
    /// The verified signature key id.
    pub key_id: Option<String>,
    /// Web Bot Auth: the verified agent's origin.
    pub agent: Option<String>,
    /// Set while the body is still needed: the largest body accepted.
    pub needs_body: Option<usize>,
    /// The client address per the document's `client_ip` model (`None`: unknown or unparseable).
    pub client_ip: Option<IpAddr>,
    /// Set when every local check passed and the policy has remote limits: the call to make to the
    /// rate limit service before the request may go on (see [`Evaluation::apply_remote`]).
    pub remote: Option<RemoteCall>,
    /// The rate limit service failed and `failure_mode: allow` let the request through.
    pub remote_failed_open: bool,
    /// Bucket reads of the head-time rate-limit check, reused by the rate-limit step.
    read_ahead: ReadAhead,
    /// The local tokens this request took, given back when it is refused for something the client
    /// did not do.
    receipt: Option<Receipt>,
    /// The nonce recorded for this request.
    nonce: Option<NonceHold>,
}

/// Which local tokens a request refused after its head gives back (its nonce is always given back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refund {
    /// Every token: the client did nothing wrong (no room to hold its body).
    All,
    /// The tokens of limits keyed by the signature's key id only. The body failed (digest, size, too
    /// late, never sent): a head verifies without proving that its sender holds the key (it may be a
    /// captured copy), so the key owner's budget is not spent; the sender's own limits (client
    /// address, headers) keep the tokens, so failing bodies stay rate limited.
    Signer,
}

/// A pending call to the rate limit service (`ShouldRateLimit`).
#[derive(Debug)]
pub struct RemoteCall {
    /// The serialized `RateLimitRequest` (the nonce's descriptor first, when checked cluster-wide, then
    /// one per remote limit).
    pub message: Vec<u8>,
    /// Its first descriptor is the nonce's.
    pub nonce: bool,
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

// The client address and the nonce are redacted (nothing prints an evaluation today; nothing can leak
// one).
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
            .field("upstream", &self.upstream.key_id)
            .field("key_id", &self.key_id)
            .field("agent", &self.agent)
            .field("needs_body", &self.needs_body)
            .field("client_ip", &self.client_ip.map(|_| "<redacted>"))
            .field("remote", &self.remote.is_some())
            .field("remote_failed_open", &self.remote_failed_open)
            .field("read_ahead", &self.read_ahead)
            .field("receipt", &self.receipt.as_ref().map(Receipt::len))
            .field("nonce", &self.nonce.as_ref().map(|_| "<redacted>"))
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
            upstream: Upstream::default(),
            key_id: None,
            agent: None,
            needs_body: None,
            client_ip: None,
            remote: None,
            remote_failed_open: false,
            read_ahead: ReadAhead::default(),
            receipt: None,
            nonce: None,
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

    /// Whether nothing is pending any more (no body awaited, no call to the service outstanding).
    pub fn is_decided(&self) -> bool {
        self.needs_body.is_none() && self.remote.is_none()
    }

    /// Records a failed check, enforced or remembered in shadow mode; either way the evaluation stops
    /// there (nothing more is awaited, the first reason is the one recorded).
    fn fail(&mut self, reply: Reply) {
        match self.mode {
            Mode::Enforce => self.reply = Some(reply),
            Mode::Shadow if self.shadow.is_none() => self.shadow = Some(reply),
            Mode::Shadow => {}
        }
        self.needs_body = None;
        self.remote = None;
    }

    fn failed(&self) -> bool {
        self.reply.is_some() || self.shadow.is_some()
    }

    /// Gives back the nonce (the request was refused for something other than a replay).
    fn release_nonce(&mut self, doc: &Document, store: &mut dyn SharedStore) {
        if let Some(hold) = self.nonce.take() {
            release_nonce(
                store,
                &doc.nonce_table,
                &doc.nonce_key,
                &hold.key_id,
                &hold.nonce,
            );
        }
    }

    /// Gives back the local tokens (the request was refused for something the client did not do).
    fn refund_tokens(&mut self, policy: &Policy, store: &mut dyn SharedStore) {
        if let Some(receipt) = self.receipt.take() {
            policy.rate_limits.refund(receipt, store);
        }
    }

    /// A request that fails after its head (its body refused, late, too large, or never sent): the
    /// nonce is given back, and the tokens as `refund` says. Shadow mode keeps both (the request goes on).
    fn release_after_head(&mut self, doc: &Document, refund: Refund, store: &mut dyn SharedStore) {
        if self.mode != Mode::Enforce {
            return;
        }
        self.release_nonce(doc, store);
        let Some(policy) = self.policy(doc) else {
            return;
        };
        let policy: &Policy = policy;
        match refund {
            Refund::All => self.refund_tokens(policy, store),
            Refund::Signer => {
                if let Some(receipt) = self.receipt.take() {
                    policy.rate_limits.refund_signer(receipt, store);
                }
            }
        }
    }

    fn policy<'d>(&self, doc: &'d Document) -> Option<&'d Policy> {
        self.policy.and_then(|i| doc.policies.get(i))
    }

    /// A refusal after the head's reservations (see [`Refund`]). Shadow mode records it and keeps the
    /// reservations (the request goes on).
    fn refuse_after_head(
        &mut self,
        doc: &Document,
        reply: Reply,
        refund: Refund,
        store: &mut dyn SharedStore,
    ) {
        self.release_after_head(doc, refund, store);
        self.fail(reply);
    }

    /// The stream ended (the client went away; Envoy answered first, e.g. 408 or 413; a reset) while
    /// edgeward still waited for the body or the rate limit service: the request never reached the
    /// upstream, so its record and counters say `deny` / `incomplete`, not `allow`, and its nonce is
    /// given back, and the tokens of limits keyed by the signature's key id ([`Refund::Signer`]); the
    /// others stay taken (the edge held the request for it). No-op once decided or when nothing was
    /// pending.
    pub fn abandon(&mut self, doc: &Document, store: &mut dyn SharedStore) {
        if self.reply.is_some() || self.is_decided() {
            return;
        }
        self.release_after_head(doc, Refund::Signer, store);
        self.needs_body = None;
        self.remote = None;
        self.reply = Some(Reply::deny(0, Reason::Incomplete));
    }

    /// The body did not arrive in time: 408 `body_timeout`, or, when the host never handed any of it
    /// to the plugin while holding some, 503 `body_unavailable` (`Retry-After: 1`). The nonce is given
    /// back, the tokens as [`Refund::Signer`] says. In shadow mode the request is not held past the deadline either: it
    /// goes on, and the would-be answer is recorded.
    pub fn body_deadline(
        &mut self,
        doc: &Document,
        unavailable: bool,
        store: &mut dyn SharedStore,
    ) {
        if self.needs_body.take().is_none() {
            return;
        }
        let reply = if unavailable {
            Reply::deny(503, Reason::BodyUnavailable).with_header("retry-after", "1")
        } else {
            Reply::deny(408, Reason::BodyTimeout)
        };
        self.refuse_after_head(doc, reply, Refund::Signer, store);
    }

    /// No room to hold this body in this worker: 503 `body_buffer_full` (`Retry-After: 1`). The client
    /// did nothing wrong: its tokens and nonce are given back. Shadow mode cannot hold it either: the
    /// request goes on without its body check, and the would-be answer is recorded.
    pub fn body_capacity(&mut self, doc: &Document, store: &mut dyn SharedStore) {
        if self.needs_body.take().is_none() {
            return;
        }
        let reply = Reply::deny(503, Reason::BodyBufferFull).with_header("retry-after", "1");
        self.refuse_after_head(doc, reply, Refund::All, store);
    }

    /// The body grew past the limit before it was complete: 413; the nonce is given back, the tokens as
    /// [`Refund::Signer`] says.
    pub fn body_too_large(&mut self, doc: &Document, store: &mut dyn SharedStore) {
        if self.needs_body.take().is_some() {
            self.refuse_after_head(
                doc,
                Reply::deny(413, Reason::BodyTooLarge),
                Refund::Signer,
                store,
            );
        }
    }

    /// The log settings that apply to this request.
    pub fn log_policy<'d>(&self, doc: &'d Document) -> &'d LogPolicy {
        self.policy(doc).map_or(&doc.default_log, |p| &p.log)
    }

    /// Whether this request's record carries the response status (`log.status`): the adapter reads
    /// the status only then.
    pub fn logs_status(&self, doc: &Document) -> bool {
        self.log_policy(doc).logs_status()
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
        let policy = self.policy(doc);
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
            agent: self.agent.as_deref(),
            headers: head.headers,
        }
    }

    /// Checks the whole body (only when `needs_body` was set): its size, then its `Content-Digest`. A
    /// mismatch is 401 `digest_mismatch`; the nonce is given back, the tokens as [`Refund::Signer`] says.
    pub fn evaluate_body(
        &mut self,
        doc: &Document,
        head: &RequestHead,
        body: &[u8],
        store: &mut dyn SharedStore,
    ) {
        let Some(max) = self.needs_body.take() else {
            return;
        };
        if body.len() > max {
            self.refuse_after_head(
                doc,
                Reply::deny(413, Reason::BodyTooLarge),
                Refund::Signer,
                store,
            );
            return;
        }
        let Some(sig) = self.policy(doc).and_then(|p| p.signature.as_ref()) else {
            return;
        };
        if let Err(reason) = check_content_digest(head.headers, body) {
            let reply = sig.unauthorized_reply(reason);
            self.refuse_after_head(doc, reply, Refund::Signer, store);
        }
    }

    /// The admission step, on the head once every check before it passed: one token from every local
    /// limit (or none), then the nonce, then the call to the rate limit service is prepared.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        doc: &Document,
        policy: &Policy,
        head: &RequestHead,
        nonce: Option<NonceHold>,
        now_ns: u64,
        leases: &Rc<Leases>,
        store: &mut dyn SharedStore,
    ) {
        let keys = KeyInputs {
            client_ip: self.client_ip,
            key_id: self.key_id.as_deref(),
            headers: head.headers,
        };
        if !policy.rate_limits.limits().is_empty() {
            let mut replaying = self.read_ahead.replaying(store);
            let (outcome, receipt) = policy.rate_limits.acquire_held(
                &keys,
                now_ns,
                &mut replaying,
                leases,
                &doc.hash_key,
            );
            match outcome {
                RateOutcome::Allowed { headers } => {
                    self.response_headers.extend(headers);
                    self.receipt = Some(receipt);
                }
                RateOutcome::Limited { reply, .. } | RateOutcome::Unavailable { reply } => {
                    // Nothing taken, no nonce touched: a rate-limited key never writes the nonce table.
                    self.fail(reply);
                    return;
                }
            }
        }
        let mut cluster_nonce = None;
        if let (Some(hold), Some(sig)) = (nonce, &policy.signature) {
            let outcome = check_nonce(
                store,
                &doc.nonce_table,
                &doc.nonce_key,
                &hold.key_id,
                &hold.nonce,
                hold.created,
                hold.expires_at,
                now_ns / 1_000_000_000,
            );
            if outcome == NonceOutcome::Fresh {
                if sig.nonce_cluster {
                    cluster_nonce = Some((hold.key_id.clone(), hold.nonce.clone()));
                }
                self.nonce = Some(hold);
            } else if let Some(reply) = sig.nonce_reply(outcome) {
                // A replay (or a nonce that cannot be vouched for) takes no token either.
                if self.mode == Mode::Enforce {
                    self.refund_tokens(policy, store);
                }
                self.fail(reply);
                return;
            }
        }
        let nonce = cluster_nonce
            .as_ref()
            .map(|(key_id, nonce)| remote::NonceDescriptor { key_id, nonce });
        if let Some(message) = doc.rls.as_ref().and_then(|rls| {
            policy
                .rate_limits
                .remote_message(rls, &policy.name, nonce, &keys)
        }) {
            self.remote = Some(RemoteCall {
                message,
                nonce: nonce.is_some(),
            });
        }
    }

    /// Applies the rate limit service's answer to the pending [`RemoteCall`]: `Some(bytes)` is the
    /// `RateLimitResponse` message, `None` any failure (gRPC error, timeout, unknown cluster).
    /// Over limit: the limit's status (429 by default), `Retry-After` and the engine's headers.
    /// Failure: `failure_mode` deny answers 503 `rate_limit_unavailable`; allow lets it through and
    /// sets `remote_failed_open`. A denied request gets its local tokens and its nonce back.
    pub fn apply_remote(
        &mut self,
        doc: &Document,
        answer: Option<&[u8]>,
        store: &mut dyn SharedStore,
    ) {
        let Some(call) = self.remote.take() else {
            return;
        };
        let (Some(policy), Some(rls)) = (self.policy(doc), &doc.rls) else {
            return;
        };
        let limits = &policy.rate_limits;
        let offset = usize::from(call.nonce);
        let mut answer = answer.map_or(RemoteAnswer::Unavailable, |bytes| {
            remote::read_response(bytes, offset + limits.remote().len())
        });
        // `"headers": false` on every remote limit: the engine's headers stay away from clients. Nor
        // do they reach clients when the call checked a nonce: the engine describes its most
        // restrictive limit, which would be the nonce's (1 per window, none left).
        if call.nonce || !limits.remote().iter().any(|l| l.headers) {
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
                // The nonce's descriptor over its limit of 1: another Envoy saw it first. Its local
                // record stays (the nonce is used); the tokens are given back, as for any replay. An
                // engine that does not say which descriptor is over (no per-descriptor statuses) leaves
                // it open: a replay when the nonce is all the call checks, else a rate limit.
                let replayed = call.nonce
                    && match descriptor {
                        Some(i) => i == 0,
                        None => limits.remote().is_empty(),
                    };
                if replayed {
                    if let Some(sig) = &policy.signature {
                        let reply = sig.unauthorized_reply(Reason::SignatureReplayed);
                        if self.mode == Mode::Enforce {
                            self.refund_tokens(policy, store);
                        }
                        self.fail(reply);
                    }
                } else {
                    let descriptor = descriptor.and_then(|i| i.checked_sub(offset));
                    let reply = limits.remote_limited(descriptor, retry_after_s, headers);
                    self.refuse_after_head(doc, reply, Refund::All, store);
                }
            }
            RemoteAnswer::Unavailable => match rls.failure_mode {
                FailureMode::Allow => self.remote_failed_open = true,
                FailureMode::Deny => {
                    let reply = Reply::deny(
                        crate::rate_limit::UNAVAILABLE_STATUS,
                        Reason::RateLimitUnavailable,
                    )
                    .with_header("Retry-After", "1");
                    self.refuse_after_head(doc, reply, Refund::All, store);
                }
            },
        }
    }
}

impl Document {
    /// [`Document::evaluate_head_with`] with no key source sets (every source reads as never loaded).
    pub fn evaluate_head(
        &self,
        head: &RequestHead,
        now_ns: u64,
        store: &mut dyn SharedStore,
    ) -> Evaluation {
        self.evaluate_head_with(
            head,
            now_ns,
            &KeyCache::EMPTY,
            &Rc::new(Leases::disabled()),
            store,
        )
    }

    /// Evaluates the request head: selects the policy, runs every check that needs no body and makes
    /// every reservation (tokens, nonce); `needs_body` and `remote` say what is still pending. `keys`
    /// holds this worker's copies of the document's key source sets, `leases` its token leases
    /// (limits with `"lease"`).
    pub fn evaluate_head_with(
        &self,
        head: &RequestHead,
        now_ns: u64,
        keys: &KeyCache,
        leases: &Rc<Leases>,
        store: &mut dyn SharedStore,
    ) -> Evaluation {
        let mut ev = Evaluation::new();
        let client = self.client_ip.resolve(head.peer, head.headers);
        ev.client_ip = client.ip();
        if !valid_authority(head.authority) {
            ev.routed = true;
            ev.reply = Some(Reply::deny(400, Reason::BadHost));
            return ev;
        }
        // What edgeward tells the upstream cannot come from the client.
        if head.headers.iter().any(|(name, _)| {
            starts_with_ignore_case(name, INTERNAL_HEADER_PREFIX)
                || self
                    .reserved_headers
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(name))
        }) {
            ev.routed = true;
            ev.reply = Some(Reply::deny(400, Reason::ReservedHeader));
            return ev;
        }
        let host = normalize_host(head.host());
        let path = head.path.split('?').next().unwrap_or("");
        // Envoy 1.36–1.38 leave `/public/..;/admin` as it is (1.39+ resolve it) and route it by its
        // prefix, while Tomcat-style backends drop the `;` parameters and resolve the `..`: the request
        // would reach another path than the one whose policy is checked.
        if path
            .split('/')
            .any(|segment| segment.starts_with("..;") || segment.starts_with(".;"))
        {
            ev.routed = true;
            ev.reply = Some(Reply::deny(400, Reason::BadPath));
            return ev;
        }
        let Some(route) =
            select(&self.routes, head.route_name, &host, path).and_then(|i| self.routes.get(i))
        else {
            ev.reply = Some(Reply::deny(403, Reason::NoRoute));
            return ev;
        };
        ev.routed = true;
        let policy = match route.target {
            Target::NoChecks => None,
            Target::Policy(i) => {
                ev.policy = Some(i);
                self.policies.get(i)
            }
        };
        let log = policy.map_or(&self.default_log, |p| &p.log);
        ev.upstream = forwarding_headers(log, head);
        let Some(policy) = policy else {
            return ev;
        };
        ev.mode = policy.mode;
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
        let mut nonce = None;
        let key_cache = keys;
        if let Some(sig) = &policy.signature {
            // A client whose own (`client_ip`) bucket is already empty is answered now, before the
            // signature is verified: the admission step would deny it anyway (no token is taken here).
            // See RateLimits::check_head for why other keys wait for that step.
            let keys = KeyInputs {
                client_ip: ev.client_ip,
                key_id: None,
                headers: head.headers,
            };
            let early = policy.rate_limits.check_head(
                &keys,
                now_ns,
                &ev.read_ahead.recording(store),
                leases,
                &self.hash_key,
            );
            if let Some(reply) = early.filter(|_| policy.mode == Mode::Enforce) {
                ev.fail(reply);
                return ev;
            }
            let ring = KeyRing {
                sources: &self.key_sources,
                cache: key_cache,
            };
            match sig.verify_head_with(head, now_ns / 1_000_000_000, ring) {
                Err(reason) => {
                    ev.fail(sig.refusal(reason));
                    return ev;
                }
                Ok(v) => {
                    if v.needs_digest {
                        let max = usize::try_from(sig.max_body_bytes).unwrap_or(usize::MAX);
                        // A declared length past the limit is refused before anything is reserved.
                        if content_length(head).is_some_and(|n| n > sig.max_body_bytes) {
                            ev.fail(Reply::deny(413, Reason::BodyTooLarge));
                            return ev;
                        }
                        ev.needs_body = Some(max);
                    }
                    if sig.upstream_key_id {
                        ev.upstream.key_id = Some(v.key_id.clone());
                    }
                    if let (Some(origin), Some(wba)) = (&v.agent, &sig.web_bot_auth) {
                        ev.upstream.agent = Some((wba.agent_header.clone(), origin.clone()));
                    }
                    ev.agent = v.agent.clone();
                    nonce = v.nonce.map(|n| NonceHold {
                        key_id: v.key_id.clone(),
                        nonce: n,
                        created: v.created,
                        expires_at: v.expires_at,
                    });
                    ev.key_id = Some(v.key_id);
                }
            }
        }
        ev.admit(self, policy, head, nonce, now_ns, leases, store);
        ev
    }
}

/// `X-Forwarded-For` and `X-Envoy-External-Address` as the upstream receives them under `log`.
fn forwarding_headers(log: &LogPolicy, head: &RequestHead) -> Upstream {
    let joined = |name: &str| {
        let values: Vec<&str> = head.headers.get_all(name).collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let forwarded_for = match log.rewrite_xff(head.headers.get_all("x-forwarded-for")) {
        XffAction::Keep => joined("x-forwarded-for"),
        XffAction::Set(v) => Some(v),
        XffAction::Remove => None,
    };
    let external_address = if log.remove_external_address() {
        None
    } else {
        joined("x-envoy-external-address")
    };
    Upstream {
        key_id: None,
        forwarded_for,
        external_address,
        agent: None,
    }
}

/// The request's `Content-Length`, when it has exactly one that parses.
pub fn content_length(head: &RequestHead) -> Option<u64> {
    let mut values = head.headers.get_all("content-length");
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    v.trim().parse().ok()
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.as_bytes()
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[cfg(test)]
mod tests;
