//! A stream's state machine (src/stream.rs) driven by any sequence of events on two streams that
//! share a worker's body budget and store: head, body chunks, trailers, the rate limit service's
//! answers (allow, over limit, failure, any bytes), ticks, the end. Each stream replies at most once,
//! publishes nothing toward the upstream and never resumes after a reply (nor before the decision),
//! goes on only when forwarded, does nothing once ended; a body's bytes are reserved in the budget exactly
//! while a stream holds it, a tick past the deadline answers the body, and the budget is back to zero at the
//! end.

use super::Bytes;
use crate::document::Document;
use crate::keys::KeyCache;
use crate::rate_limit::Leases;
use crate::secret::NoEnv;
use crate::store::MemoryStore;
use crate::stream::{Actions, BodyBudget, HoldLimits, Phase, Stream, Verdict};
use crate::testkit::{self, TestRequest};

const NOW_S: u64 = 1_700_000_000;
const NOW: u64 = NOW_S * 1_000_000_000;
const SECRET: &[u8] = testkit::PARTNER_SECRET;
const COMPONENTS: [&str; 5] = testkit::PARTNER_COMPONENTS;
const LIMITS: HoldLimits = HoldLimits {
    timeout_ns: 5_000_000_000,
};

/// The stream fixture (`testkit::partner_and_public`: a signed, body-checking policy, limit 3 per key,
/// and a public one, limit 2 per client), and, with `rls`, a remote limit on the signed one and a
/// leasing local one (a refund after the service's denial then meets leased tokens).
fn document(rls: bool) -> Option<Document> {
    let json = if rls {
        testkit::partner_and_public(
            r#""rls": { "cluster": "ratelimit", "domain": "d" },"#,
            r#", { "name": "remote", "key": "key_id", "limit": 5, "window_s": 60, "backend": "rls" },
                { "name": "leased", "key": "key_id", "limit": 100, "window_s": 60, "lease": 4 }"#,
        )
    } else {
        testkit::partner_and_public("", "")
    };
    let mut doc = Document::from_json(&json, &NoEnv).ok()?;
    // Small shared tables: every run prepares them anew.
    doc.nonce_table.buckets = 4;
    Some(doc)
}

thread_local! {
    static DOCS: [Option<Document>; 2] = [document(false), document(true)];
}

/// The rate limit service's answer with this overall code (1 OK, 2 over limit).
fn answer(code: i32) -> Vec<u8> {
    use prost::Message;
    crate::rate_limit::remote::RateLimitResponse {
        overall_code: code,
        ..Default::default()
    }
    .encode_to_vec()
}

/// What one stream has done so far.
#[derive(Default)]
struct Seen {
    replies: usize,
    forwarded: bool,
    calls: usize,
    ended: bool,
}

impl Seen {
    fn check(&mut self, a: &Actions, phase: Phase) {
        if self.ended {
            assert_eq!(a, &Actions::default(), "an action after the end");
        }
        if a.call.is_some() {
            self.calls += 1;
            assert_eq!(self.calls, 1, "a second call to the service");
            assert_eq!(self.replies, 0, "a call after a reply");
        }
        if let Some(reply) = &a.reply {
            self.replies += 1;
            assert_eq!(self.replies, 1, "a second reply");
            assert!(!self.forwarded, "a reply after the request went on");
            assert!(
                a.upstream.is_empty() && !a.resume && a.verdict == Verdict::Pause,
                "a reply with {a:?}"
            );
            assert!(
                reply.status >= 300,
                "a local reply with status {}",
                reply.status
            );
        }
        if !a.upstream.is_empty() || a.resume || a.verdict == Verdict::Continue {
            assert_eq!(
                self.replies, 0,
                "upstream change or resume after a reply: {a:?}"
            );
            assert_eq!(phase, Phase::Forwarded, "going on undecided: {a:?}");
            if !a.upstream.is_empty() || a.resume {
                assert!(!self.forwarded, "forwarded twice: {a:?}");
            }
            self.forwarded = true;
        }
    }
}

/// Input: a document choice (with or without the rate limit service), the worker's budget, the two
/// requests (signed with a body from the input, tampered, public, or with a wrong length), then events
/// of one byte (the stream in the top bit) and their arguments.
pub fn stream(data: &[u8]) {
    let mut b = Bytes(data);
    let setup = b.u8();
    let rls = setup & 1 == 1;
    let budget = BodyBudget::new(match (setup >> 1) & 3 {
        0 => 1 << 20,
        1 => 16,
        2 => 1000,
        _ => 0,
    });
    let body_len = usize::from(b.u8() % 64);
    let body = b.take(body_len).to_vec();
    let requests = [request(b.u8(), &body, "n1"), request(b.u8(), &body, "n2")];
    DOCS.with(|docs| {
        let Some(Some(doc)) = docs.get(usize::from(rls)) else {
            super::sfv::panic_with("a document of the target does not compile");
        };
        let mut store = MemoryStore::new();
        if doc.prepare(&mut store).is_err() {
            super::sfv::panic_with("prepare failed on a memory store");
        }
        let leases = std::rc::Rc::new(Leases::new());
        let mut streams = [Stream::new(), Stream::new()];
        let mut seen = [Seen::default(), Seen::default()];
        let mut events = 0;
        let mut now = NOW;
        while !b.is_empty() && events < 64 {
            events += 1;
            let op = b.u8();
            let i = usize::from(op >> 7);
            let (Some(s), Some(r), Some(seen)) =
                (streams.get_mut(i), requests.get(i), seen.get_mut(i))
            else {
                continue;
            };
            let head = r.head();
            let mut read = |n: usize| r.body.iter().take(n).copied().collect::<Vec<u8>>();
            let a = match op & 0x7f {
                0..=15 => s.on_request_headers(
                    doc,
                    &head,
                    op & 1 == 1,
                    NOW,
                    LIMITS,
                    &KeyCache::EMPTY,
                    &leases,
                    &budget,
                    &mut store,
                ),
                16..=39 => {
                    let size = match op % 4 {
                        0 => r.body.len(),
                        1 => usize::from(b.u16()),
                        2 => usize::from(b.u8()),
                        _ => r.body.len() / 2,
                    };
                    s.on_request_body(
                        doc,
                        &head,
                        size,
                        op & 4 == 4,
                        &mut read,
                        &budget,
                        &mut store,
                    )
                }
                40..=47 => s.on_request_trailers(doc, &head, &mut read, &budget, &mut store),
                48..=79 => {
                    let bytes = match op % 4 {
                        0 => Some(answer(1)),
                        1 => Some(answer(2)),
                        2 => None,
                        _ => {
                            let n = usize::from(b.u8() % 32);
                            Some(b.take(n).to_vec())
                        }
                    };
                    s.on_remote_answer(doc, bytes.as_deref(), &budget, &mut store)
                }
                80..=111 => {
                    now = NOW + u64::from(b.u16()) * 4_000_000;
                    let buffered = usize::from(b.u8());
                    s.on_tick(doc, now, buffered, &budget, &mut store)
                }
                _ => {
                    let first = s.on_end(doc, &budget, &mut store);
                    assert!(!(seen.ended && first), "the record written twice");
                    seen.ended = true;
                    continue;
                }
            };
            seen.check(&a, s.phase());
            if (80..=111).contains(&(op & 0x7f)) {
                assert!(
                    !s.body_overdue(now),
                    "a body past its deadline still held after the tick"
                );
            }
            // A body's bytes are reserved exactly while it is held.
            if streams.iter().all(|s| s.phase() != Phase::Held) {
                assert_eq!(budget.held(), 0, "bytes reserved with no stream held");
            }
        }
        for s in &mut streams {
            s.on_end(doc, &budget, &mut store);
        }
        assert_eq!(
            budget.held(),
            0,
            "bytes still held after every stream ended"
        );
    });
}

/// One of the requests a stream carries.
fn request(kind: u8, body: &[u8], nonce: &str) -> TestRequest {
    let signed = |body: &[u8]| {
        TestRequest::post("api.example.com", "/orders?a=1", body)
            .route("partner-api")
            .signed_hmac("k1", SECRET, NOW_S, &COMPONENTS, Some(nonce))
    };
    match kind % 5 {
        0 => signed(body),
        1 => {
            let mut r = signed(body);
            r.body.push(b'!');
            r
        }
        2 => TestRequest::get("www.example.com", "/"),
        3 => {
            let mut r = signed(body);
            r.headers.retain(|(k, _)| k != "content-length");
            r
        }
        _ => {
            let mut r = signed(body);
            for (k, v) in &mut r.headers {
                if k == "content-length" {
                    *v = (body.len() * 3 + 1).to_string();
                }
            }
            r
        }
    }
}
