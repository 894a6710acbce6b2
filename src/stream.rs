//! A stream's life as a state machine: the head is checked, the request may then be held (for its body,
//! for the rate limit service's answer, or both), and it ends decided (forwarded or answered locally)
//! or abandoned (the client went away, Envoy answered first). Every transition is a pure function of the
//! event and the state; it returns the [`Actions`] the adapter carries out, in order, and nothing else
//! decides what a stream does.
//!
//! What it guarantees, whatever the order of events: at most one local reply; nothing published toward
//! the upstream after a reply, and nothing before the decision; the request goes on only once decided with no
//! reply; a held body's bytes are counted in the worker's [`BodyBudget`] exactly while it is held; a
//! body that does not arrive in time is answered by the deadline (on the tick).

use crate::decision::{Reason, Reply};
use crate::document::Document;
use crate::engine::{content_length, Evaluation};
use crate::keys::KeyCache;
use crate::rate_limit::Leases;
use crate::request::RequestHead;
use crate::store::SharedStore;
use std::cell::Cell;
use std::rc::Rc;

/// The bytes one worker holds in request bodies at once, shared by its streams: a body-holding
/// request reserves its declared length (else the policy's `max_body_bytes`) before it is held.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    held: Cell<usize>,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            limit,
            held: Cell::new(0),
        }
    }

    /// Bytes reserved now.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    fn reserve(&self, n: usize) -> bool {
        match self.held.get().checked_add(n) {
            Some(total) if total <= self.limit => {
                self.held.set(total);
                true
            }
            _ => false,
        }
    }

    fn release(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
    }
}

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No head yet.
    Start,
    /// The head passed; the request waits for its body and/or the rate limit service.
    Held,
    /// Decided: the request went on to the upstream.
    Forwarded,
    /// Decided: edgeward answered, or the stream ended while held (recorded `incomplete`).
    Answered,
    /// The record was written; nothing more happens.
    Logged,
}

/// The answer to the callback being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Let the request go on to the next filter.
    Continue,
    /// Hold it.
    #[default]
    Pause,
}

/// A local reply to send: status, headers (the reply's and the response headers edgeward adds), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub reason: Reason,
    pub headers: Vec<(String, String)>,
    pub body: &'static str,
}

/// What the adapter does for one event, in this order: `upstream`, `call`, `reply`, `resume`, then
/// return `verdict` to the host.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// What the upstream receives from edgeward, to publish as filter state (property, value); only
    /// ever with the decision to forward.
    pub upstream: Vec<(&'static str, String)>,
    /// Start this call to the rate limit service; its end comes back through
    /// [`Stream::on_remote_answer`] (call that with `None` at once when it cannot start).
    pub call: Option<Vec<u8>>,
    /// Send this local reply.
    pub reply: Option<LocalReply>,
    /// Resume the request paused in an earlier callback.
    pub resume: bool,
    pub verdict: Verdict,
}

/// A body being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BodyHold {
    /// Bytes reserved in the budget.
    reserved: usize,
    /// Bytes arrived so far.
    seen: usize,
    /// When the whole body must have arrived.
    deadline_ns: u64,
    /// The host handed some of it to the plugin.
    delivered: bool,
}

/// The per-stream state.
#[derive(Debug)]
pub struct Stream {
    phase: Phase,
    eval: Option<Evaluation>,
    body: Option<BodyHold>,
    /// A call to the rate limit service is outstanding.
    calling: bool,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::new()
    }
}

/// The request's settings that the document holds for held bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// How long a body may take, from the head.
    pub timeout_ns: u64,
}

impl Stream {
    pub fn new() -> Stream {
        Stream {
            phase: Phase::Start,
            eval: None,
            body: None,
            calling: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The evaluation, once the head was seen.
    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.eval.as_ref()
    }

    /// Whether the stream holds a body and its deadline has passed at `now_ns`.
    pub fn body_overdue(&self, now_ns: u64) -> bool {
        self.phase == Phase::Held && self.body.is_some_and(|b| now_ns >= b.deadline_ns)
    }

    /// The response headers edgeward adds to an upstream response (none after a local reply, which
    /// carried them already).
    pub fn response_headers(&self) -> &[(String, String)] {
        match (&self.eval, self.phase) {
            (Some(ev), Phase::Forwarded) => &ev.response_headers,
            _ => &[],
        }
    }

    fn release_body(&mut self, budget: &BodyBudget) {
        if let Some(b) = self.body.take() {
            budget.release(b.reserved);
        }
    }

    /// Once nothing is pending: the reply, or the decision to forward.
    fn conclude(&mut self, budget: &BodyBudget, actions: &mut Actions, resume: bool) {
        let Some(ev) = self.eval.as_ref() else {
            return;
        };
        if let Some(reply) = &ev.reply {
            actions.reply = Some(local_reply(reply, &ev.response_headers));
            actions.verdict = Verdict::Pause;
            self.phase = Phase::Answered;
        } else if !ev.is_decided() {
            self.phase = Phase::Held;
            actions.verdict = Verdict::Pause;
            return;
        } else {
            actions.upstream = ev.upstream.properties();
            self.phase = Phase::Forwarded;
            if resume {
                actions.resume = true;
                actions.verdict = Verdict::Pause;
            } else {
                actions.verdict = Verdict::Continue;
            }
        }
        self.calling = false;
        self.release_body(budget);
    }

    /// The request head arrived (`end_of_stream`: it has no body).
    #[allow(clippy::too_many_arguments)]
    pub fn on_request_headers(
        &mut self,
        doc: &Document,
        head: &RequestHead,
        end_of_stream: bool,
        now_ns: u64,
        limits: HoldLimits,
        keys: &KeyCache,
        leases: &Rc<Leases>,
        budget: &BodyBudget,
        store: &mut dyn SharedStore,
    ) -> Actions {
        let mut actions = Actions::default();
        if self.phase != Phase::Start {
            return actions;
        }
        let mut ev = doc.evaluate_head_with(head, now_ns, keys, leases, store);
        if let Some(max) = ev.needs_body {
            if end_of_stream {
                ev.evaluate_body(doc, head, &[], store);
            } else {
                let declared = content_length(head)
                    .and_then(|n| usize::try_from(n).ok())
                    .map_or(max, |n| n.min(max));
                if budget.reserve(declared) {
                    self.body = Some(BodyHold {
                        reserved: declared,
                        seen: 0,
                        deadline_ns: now_ns.saturating_add(limits.timeout_ns),
                        delivered: false,
                    });
                } else {
                    ev.body_capacity(doc, store);
                }
            }
        }
        if ev.reply.is_none() {
            if let Some(call) = &ev.remote {
                self.calling = true;
                actions.call = Some(call.message.clone());
            }
        }
        self.eval = Some(ev);
        self.conclude(budget, &mut actions, false);
        actions
    }

    /// `size` bytes of body have arrived in all (`end_of_stream`: all of it). `read(n)` returns up to
    /// `n` bytes of the buffered body; it is called once, when the body is complete.
    #[allow(clippy::too_many_arguments)]
    pub fn on_request_body(
        &mut self,
        doc: &Document,
        head: &RequestHead,
        size: usize,
        end_of_stream: bool,
        read: &mut dyn FnMut(usize) -> Vec<u8>,
        budget: &BodyBudget,
        store: &mut dyn SharedStore,
    ) -> Actions {
        let mut actions = Actions::default();
        match self.phase {
            Phase::Forwarded => {
                actions.verdict = Verdict::Continue;
                return actions;
            }
            Phase::Held => {}
            _ => return actions,
        }
        let (Some(ev), Some(hold)) = (self.eval.as_mut(), self.body.as_mut()) else {
            // Held for the rate limit service alone: the body waits with the headers.
            return actions;
        };
        hold.delivered = true;
        hold.seen = size;
        let Some(max) = ev.needs_body else {
            return actions;
        };
        if size > max {
            ev.body_too_large(doc, store);
        } else if size > hold.reserved {
            // More than declared (no length was given, or a wrong one): reserve the rest.
            let more = size - hold.reserved;
            if budget.reserve(more) {
                hold.reserved = size;
            } else {
                ev.body_capacity(doc, store);
            }
        }
        if ev.needs_body.is_some() && end_of_stream {
            // Up to one byte past the limit: the engine checks the size of what it actually hashes.
            let body = read(max.saturating_add(1));
            ev.evaluate_body(doc, head, &body, store);
        }
        if ev.needs_body.is_none() {
            self.release_body(budget);
        }
        self.conclude(budget, &mut actions, false);
        actions
    }

    /// The request's trailers arrived: the body is complete (HTTP/2 bodies may end this way).
    pub fn on_request_trailers(
        &mut self,
        doc: &Document,
        head: &RequestHead,
        read: &mut dyn FnMut(usize) -> Vec<u8>,
        budget: &BodyBudget,
        store: &mut dyn SharedStore,
    ) -> Actions {
        if self.phase == Phase::Forwarded {
            return Actions {
                verdict: Verdict::Continue,
                ..Actions::default()
            };
        }
        let size = self.body.map_or(0, |hold| hold.seen);
        self.on_request_body(doc, head, size, true, read, budget, store)
    }

    /// The rate limit service answered (`Some(message)`) or failed (`None`).
    pub fn on_remote_answer(
        &mut self,
        doc: &Document,
        answer: Option<&[u8]>,
        budget: &BodyBudget,
        store: &mut dyn SharedStore,
    ) -> Actions {
        let mut actions = Actions::default();
        if !self.calling || self.phase != Phase::Held && self.phase != Phase::Start {
            return actions;
        }
        self.calling = false;
        let resume = self.phase == Phase::Held;
        if let Some(ev) = self.eval.as_mut() {
            ev.apply_remote(doc, answer, store);
        }
        self.conclude(budget, &mut actions, resume);
        actions
    }

    /// The worker's tick at `now_ns`: a body past its deadline is answered (408 `body_timeout`, or
    /// 503 `body_unavailable` when the host holds `buffered` bytes of it but never handed any to the
    /// plugin).
    pub fn on_tick(
        &mut self,
        doc: &Document,
        now_ns: u64,
        buffered: usize,
        budget: &BodyBudget,
        store: &mut dyn SharedStore,
    ) -> Actions {
        let mut actions = Actions::default();
        if !self.body_overdue(now_ns) {
            return actions;
        }
        let unavailable = self.body.is_some_and(|b| !b.delivered) && buffered > 0;
        if let Some(ev) = self.eval.as_mut() {
            ev.body_deadline(doc, unavailable, store);
        }
        self.release_body(budget);
        self.conclude(budget, &mut actions, true);
        actions
    }

    /// The stream is over (`on_log`, or the response began): a request still held is abandoned
    /// (recorded `incomplete`, its nonce given back) and the budget freed. Returns `true` once: the
    /// time to write the record.
    pub fn on_end(
        &mut self,
        doc: &Document,
        budget: &BodyBudget,
        store: &mut dyn SharedStore,
    ) -> bool {
        if self.phase == Phase::Logged {
            return false;
        }
        if self.phase == Phase::Held {
            if let Some(ev) = self.eval.as_mut() {
                ev.abandon(doc, store);
            }
        }
        self.release_body(budget);
        self.calling = false;
        let had_head = self.eval.is_some();
        self.phase = Phase::Logged;
        had_head
    }
}

fn local_reply(reply: &Reply, extra: &[(String, String)]) -> LocalReply {
    LocalReply {
        status: reply.status,
        reason: reply.reason,
        headers: reply.headers.iter().chain(extra).cloned().collect(),
        body: reply.body,
    }
}

#[cfg(test)]
mod tests;
