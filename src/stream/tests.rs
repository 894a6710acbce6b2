use super::*;
use crate::rate_limit::Leases;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::secret::NoEnv;
use crate::store::MemoryStore;
use crate::testkit::TestRequest;

const NOW_S: u64 = 1_700_000_000;
const NOW: u64 = NOW_S * 1_000_000_000;
const SECRET: &[u8] = crate::testkit::PARTNER_SECRET;
const LIMITS: HoldLimits = HoldLimits {
    timeout_ns: 5_000_000_000,
};

/// A signed, body-checking policy with a per-key limit of 3 per minute and a public one without body
/// (`crate::testkit::partner_and_public`), `extra_limits` after the per-key limit.
fn doc_with(extra_limits: &str) -> Document {
    Document::from_json(
        &crate::testkit::partner_and_public("", extra_limits),
        &NoEnv,
    )
    .unwrap()
}

fn doc() -> Document {
    doc_with("")
}

const COMPONENTS: [&str; 5] = crate::testkit::PARTNER_COMPONENTS;

fn signed(nonce: &str, body: &[u8]) -> TestRequest {
    TestRequest::post("api.example.com", "/orders?a=1", body)
        .route("partner-api")
        .signed_hmac("k1", SECRET, NOW_S, &COMPONENTS, Some(nonce))
}

struct Run {
    doc: Document,
    store: MemoryStore,
    budget: BodyBudget,
    leases: Rc<Leases>,
}

impl Run {
    fn new(mut doc: Document, budget: usize) -> Run {
        // Small shared tables: thousands of runs below prepare them.
        doc.nonce_table.buckets = 4;
        let mut store = MemoryStore::new();
        doc.prepare(&mut store).unwrap();
        Run {
            doc,
            store,
            budget: BodyBudget::new(budget),
            leases: Rc::new(Leases::new()),
        }
    }

    fn headers(&mut self, s: &mut Stream, r: &TestRequest, eos: bool) -> Actions {
        s.on_request_headers(
            &self.doc,
            &r.head(),
            eos,
            NOW,
            LIMITS,
            &KeyCache::EMPTY,
            &self.leases,
            &self.budget,
            &mut self.store,
        )
    }

    fn body(&mut self, s: &mut Stream, r: &TestRequest, size: usize, eos: bool) -> Actions {
        let data = r.body.clone();
        let mut read = |n: usize| data.iter().take(n).copied().collect::<Vec<u8>>();
        s.on_request_body(
            &self.doc,
            &r.head(),
            size,
            eos,
            &mut read,
            &self.budget,
            &mut self.store,
        )
    }

    fn whole(&mut self, s: &mut Stream, r: &TestRequest) -> Actions {
        let a = self.headers(s, r, false);
        if s.phase() != Phase::Held {
            return a;
        }
        self.body(s, r, r.body.len(), true)
    }
}

fn status(a: &Actions) -> Option<(u16, Reason)> {
    a.reply.as_ref().map(|r| (r.status, r.reason))
}

#[test]
fn a_request_without_body_is_decided_on_its_head() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = TestRequest::get("www.example.com", "/");
    let mut s = Stream::new();
    let a = run.headers(&mut s, &r, true);
    assert_eq!(a.verdict, Verdict::Continue);
    assert_eq!(a.reply, None);
    assert_eq!(s.phase(), Phase::Forwarded);
    // The body of a forwarded request flows on.
    assert_eq!(run.body(&mut s, &r, 3, true).verdict, Verdict::Continue);
    assert!(s.on_end(&run.doc, &run.budget, &mut run.store));
    assert!(!s.on_end(&run.doc, &run.budget, &mut run.store), "once");
}

#[test]
fn a_signed_body_is_held_counted_and_released() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    let a = run.headers(&mut s, &r, false);
    assert_eq!((a.verdict, s.phase()), (Verdict::Pause, Phase::Held));
    assert!(
        a.upstream.is_empty(),
        "nothing toward the upstream before the decision"
    );
    assert_eq!(
        run.budget.held(),
        r.body.len(),
        "the declared length is reserved"
    );
    assert_eq!(run.body(&mut s, &r, 4, false).verdict, Verdict::Pause);
    let a = run.body(&mut s, &r, r.body.len(), true);
    assert_eq!(a.verdict, Verdict::Continue);
    assert_eq!(a.reply, None);
    assert!(a
        .upstream
        .contains(&("edgeward.upstream.key_id", "k1".to_string())));
    assert_eq!(run.budget.held(), 0);
}

/// Hardening point 2: a second stream with the same signed head is refused at once, while the first
/// holds its body; once the first is through, every later copy is a replay.
#[test]
fn a_second_copy_of_a_held_head_is_refused_at_once() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut first = Stream::new();
    assert_eq!(run.headers(&mut first, &r, false).verdict, Verdict::Pause);
    for _ in 0..100 {
        let mut copy = Stream::new();
        let a = run.headers(&mut copy, &r, false);
        assert_eq!(status(&a), Some((401, Reason::SignatureReplayed)));
        assert_eq!(copy.phase(), Phase::Answered);
        assert!(copy.on_end(&run.doc, &run.budget, &mut run.store));
    }
    assert_eq!(
        run.budget.held(),
        r.body.len(),
        "only the first body is held"
    );
    assert_eq!(
        run.body(&mut first, &r, r.body.len(), true).verdict,
        Verdict::Continue
    );
    let mut late = Stream::new();
    assert_eq!(
        status(&run.whole(&mut late, &r)),
        Some((401, Reason::SignatureReplayed))
    );
    // The replays took no token: two more requests of this key still pass (limit 3).
    assert_two_key_tokens_left(&mut run);
}

/// Exactly two of key k1's tokens are left (limit 3): fresh requests n2 and n3 pass, n4 gets 429.
fn assert_two_key_tokens_left(run: &mut Run) {
    for n in ["n2", "n3"] {
        let mut s = Stream::new();
        assert_eq!(run.whole(&mut s, &signed(n, b"x")).reply, None, "{n}");
    }
    let mut s = Stream::new();
    assert_eq!(
        status(&run.whole(&mut s, &signed("n4", b"x"))),
        Some((429, Reason::RateLimited))
    );
}

/// A body that fails after its head verified (tampered, here) gives its nonce back and the token of
/// the limit keyed by the key id: a captured head sent again and again with a bad body (or none)
/// cannot spend the key owner's budget. The sender's own limit (client address) keeps its token.
#[test]
fn a_failed_body_gives_back_its_nonce_and_the_key_owners_token() {
    let per_client =
        r#", { "name": "per-client", "key": "client_ip", "limit": 10, "window_s": 60 }"#;
    let mut run = Run::new(doc_with(per_client), 1 << 20);
    let good = signed("n1", b"{\"qty\": 3}");
    let mut tampered = good.clone();
    tampered.body = b"{\"qty\": 9}".to_vec();
    for _ in 0..4 {
        let mut s = Stream::new();
        assert_eq!(
            status(&run.whole(&mut s, &tampered)),
            Some((401, Reason::DigestMismatch))
        );
        assert_eq!(run.budget.held(), 0);
    }
    // A head whose body never comes, then the stream ends.
    let mut s = Stream::new();
    run.headers(&mut s, &signed("n9", b"x"), false);
    assert_eq!(s.phase(), Phase::Held);
    s.on_end(&run.doc, &run.budget, &mut run.store);
    let mut s = Stream::new();
    assert_eq!(
        run.whole(&mut s, &good).reply,
        None,
        "the nonce was released"
    );
    let mut s = Stream::new();
    assert_eq!(
        status(&run.whole(&mut s, &good)),
        Some((401, Reason::SignatureReplayed))
    );
    // The key's 3 tokens: the good request and the next two; the failed ones took none.
    assert_two_key_tokens_left(&mut run);
}

/// The failed bodies keep the sender's own tokens: failing requests stay rate limited by address.
#[test]
fn failed_bodies_keep_the_senders_tokens() {
    let per_client =
        r#", { "name": "per-client", "key": "client_ip", "limit": 2, "window_s": 60 }"#;
    let mut run = Run::new(doc_with(per_client), 1 << 20);
    let mut tampered = signed("n1", b"{\"qty\": 3}");
    tampered.body = b"{\"qty\": 9}".to_vec();
    for _ in 0..2 {
        let mut s = Stream::new();
        assert_eq!(
            status(&run.whole(&mut s, &tampered)),
            Some((401, Reason::DigestMismatch))
        );
    }
    let mut s = Stream::new();
    assert_eq!(
        status(&run.whole(&mut s, &signed("n2", b"x"))),
        Some((429, Reason::RateLimited))
    );
}

/// Hardening point 3: a request refused with 429 leaves no nonce behind; its retry after the window
/// passes.
#[test]
fn a_rate_limited_request_consumes_no_nonce() {
    let mut run = Run::new(doc(), 1 << 20);
    for n in ["a", "b", "c"] {
        let mut s = Stream::new();
        assert_eq!(run.whole(&mut s, &signed(n, b"x")).reply, None);
    }
    let limited = signed("d", b"x");
    let mut s = Stream::new();
    assert_eq!(
        status(&run.whole(&mut s, &limited)),
        Some((429, Reason::RateLimited))
    );
    // A minute later (the bucket refilled, the signature still fresh within max_age_s=300).
    let later = NOW + 61 * 1_000_000_000;
    let mut s = Stream::new();
    let a = s.on_request_headers(
        &run.doc,
        &limited.head(),
        false,
        later,
        LIMITS,
        &KeyCache::EMPTY,
        &run.leases,
        &run.budget,
        &mut run.store,
    );
    assert_eq!(a.reply, None, "{:?}", a.reply);
    assert_eq!(s.phase(), Phase::Held);
}

#[test]
fn the_body_budget_bounds_what_a_worker_holds() {
    let mut run = Run::new(doc(), 25);
    let held = signed("n1", &[b'a'; 20]);
    let mut first = Stream::new();
    assert_eq!(
        run.headers(&mut first, &held, false).verdict,
        Verdict::Pause
    );
    assert_eq!(run.budget.held(), 20);
    let refused = signed("n2", &[b'b'; 10]);
    let mut second = Stream::new();
    let a = run.headers(&mut second, &refused, false);
    assert_eq!(status(&a), Some((503, Reason::BodyBufferFull)));
    assert!(a
        .reply
        .unwrap()
        .headers
        .iter()
        .any(|(k, v)| k == "retry-after" && v == "1"));
    assert_eq!(run.budget.held(), 20);
    // Finishing the first frees its share; the refused request got its nonce (and token) back.
    run.body(&mut first, &held, 20, true);
    assert_eq!(run.budget.held(), 0);
    let mut retry = Stream::new();
    assert_eq!(run.whole(&mut retry, &refused).reply, None);
}

#[test]
fn a_body_without_a_declared_length_reserves_the_maximum_and_grows_within_it() {
    let mut run = Run::new(doc(), 1 << 20);
    let mut r = signed("n1", b"0123456789");
    r.headers.retain(|(k, _)| k != "content-length");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    assert_eq!(run.budget.held(), 1000, "max_body_bytes");
    assert_eq!(run.body(&mut s, &r, 10, true).reply, None);
    assert_eq!(run.budget.held(), 0);

    // A body larger than declared needs room for the rest.
    let mut run = Run::new(doc(), 12);
    let r = signed("n2", b"0123456789");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    let a = run.body(&mut s, &r, 15, false);
    assert_eq!(status(&a), Some((503, Reason::BodyBufferFull)));
    assert_eq!(run.budget.held(), 0);
}

#[test]
fn a_body_past_the_limit_is_413_early_or_late() {
    let mut run = Run::new(doc(), 1 << 20);
    let big = signed("n1", &[b'x'; 1001]);
    let mut s = Stream::new();
    assert_eq!(
        status(&run.headers(&mut s, &big, false)),
        Some((413, Reason::BodyTooLarge)),
        "the declared length is refused on the head"
    );
    assert_eq!(run.budget.held(), 0);
    let mut undeclared = signed("n2", b"small");
    undeclared.headers.retain(|(k, _)| k != "content-length");
    let mut s = Stream::new();
    run.headers(&mut s, &undeclared, false);
    assert_eq!(
        status(&run.body(&mut s, &undeclared, 1001, false)),
        Some((413, Reason::BodyTooLarge))
    );
    assert_eq!(run.budget.held(), 0);
    // Both nonces are free again.
    let mut s = Stream::new();
    assert_eq!(run.headers(&mut s, &signed("n1", b"ok"), false).reply, None);
}

#[test]
fn the_deadline_answers_a_slow_body_on_the_tick() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    run.body(&mut s, &r, 2, false);
    let before = s.on_tick(
        &run.doc,
        NOW + 4_999_000_000,
        2,
        &run.budget,
        &mut run.store,
    );
    assert_eq!(before, Actions::default());
    assert!(!s.body_overdue(NOW + 4_999_000_000));
    assert!(s.body_overdue(NOW + 5_000_000_000));
    let a = s.on_tick(
        &run.doc,
        NOW + 5_000_000_000,
        2,
        &run.budget,
        &mut run.store,
    );
    assert_eq!(status(&a), Some((408, Reason::BodyTimeout)));
    assert_eq!(s.phase(), Phase::Answered);
    assert_eq!(run.budget.held(), 0);
    // Nothing more: a late body is not evaluated, a second tick sends nothing.
    assert_eq!(run.body(&mut s, &r, 10, true), Actions::default());
    assert_eq!(
        s.on_tick(
            &run.doc,
            NOW + 9_000_000_000,
            0,
            &run.budget,
            &mut run.store
        ),
        Actions::default()
    );
    let mut again = Stream::new();
    assert_eq!(run.whole(&mut again, &r).reply, None, "nonce given back");
}

/// A host that never hands the body to the plugin (Envoy without `allow_on_headers_stop_iteration`)
/// while holding some of it: 503 `body_unavailable`, not a hang.
#[test]
fn a_body_the_host_never_delivers_is_body_unavailable() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    let a = s.on_tick(
        &run.doc,
        NOW + 6_000_000_000,
        10,
        &run.budget,
        &mut run.store,
    );
    assert_eq!(status(&a), Some((503, Reason::BodyUnavailable)));
    // The same silence with nothing buffered is a slow client.
    let mut s = Stream::new();
    run.headers(&mut s, &signed("n2", b"{}"), false);
    let a = s.on_tick(
        &run.doc,
        NOW + 6_000_000_000,
        0,
        &run.budget,
        &mut run.store,
    );
    assert_eq!(status(&a), Some((408, Reason::BodyTimeout)));
}

#[test]
fn a_stream_that_ends_while_held_is_incomplete_and_frees_everything() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    assert!(s.on_end(&run.doc, &run.budget, &mut run.store));
    let ev = s.evaluation().unwrap();
    assert_eq!(ev.reason(), Some(Reason::Incomplete));
    assert_eq!(run.budget.held(), 0);
    let mut again = Stream::new();
    assert_eq!(run.whole(&mut again, &r).reply, None, "nonce given back");
}

#[test]
fn an_empty_body_with_the_head_is_checked_at_once() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = signed("n1", b"");
    let mut s = Stream::new();
    let a = run.headers(&mut s, &r, true);
    assert_eq!((a.verdict, a.reply), (Verdict::Continue, None));
    assert_eq!(run.budget.held(), 0);
}

#[test]
fn trailers_end_the_body() {
    let mut run = Run::new(doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    run.body(&mut s, &r, r.body.len(), false);
    let data = r.body.clone();
    let mut read = |n: usize| data.iter().take(n).copied().collect::<Vec<u8>>();
    let a = s.on_request_trailers(&run.doc, &r.head(), &mut read, &run.budget, &mut run.store);
    assert_eq!((a.verdict, a.reply), (Verdict::Continue, None));
}

// ---- the rate limit service ----

fn rls_doc() -> Document {
    let json = r#"{
      "rate_limit_slots": 64,
      "rls": { "cluster": "ratelimit", "domain": "d" },
      "policies": {
        "partner": {
          "signature": {
            "keys": [{ "id": "k1", "alg": "hmac-sha256", "secret": { "base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" } }],
            "components": ["@method", "@authority", "@path", "@query", "content-digest"],
            "nonce": "required",
            "max_body_bytes": 1000
          },
          "rate_limits": [
            { "name": "local", "key": "key_id", "limit": 1, "window_s": 60 },
            { "name": "remote", "key": "key_id", "limit": 5, "window_s": 60, "backend": "rls" }
          ]
        }
      },
      "routes": [{ "policy": "partner" }]
    }"#;
    Document::from_json(json, &NoEnv).unwrap()
}

fn answer(code: i32) -> Vec<u8> {
    use prost::Message;
    crate::rate_limit::remote::RateLimitResponse {
        overall_code: code,
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn the_service_is_called_on_the_head_and_the_body_waits_for_both() {
    let mut run = Run::new(rls_doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    let a = run.headers(&mut s, &r, false);
    assert!(a.call.is_some(), "called before the body arrives");
    // Body first, then the answer: the answer resumes the request.
    let a = run.body(&mut s, &r, r.body.len(), true);
    assert_eq!(
        (a.verdict, a.resume, s.phase()),
        (Verdict::Pause, false, Phase::Held)
    );
    let a = s.on_remote_answer(&run.doc, Some(&answer(1)), &run.budget, &mut run.store);
    assert!(a.resume);
    assert!(!a.upstream.is_empty());
    assert_eq!(s.phase(), Phase::Forwarded);
    assert_eq!(run.budget.held(), 0);
}

#[test]
fn a_remote_denial_answers_at_once_and_gives_everything_back() {
    let mut run = Run::new(rls_doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    let a = s.on_remote_answer(&run.doc, Some(&answer(2)), &run.budget, &mut run.store);
    assert_eq!(status(&a), Some((429, Reason::RateLimited)));
    assert!(a.upstream.is_empty() && !a.resume);
    assert_eq!(run.budget.held(), 0);
    // The body arriving later changes nothing.
    assert_eq!(run.body(&mut s, &r, r.body.len(), true), Actions::default());
    // Local token and nonce were given back: the same request passes the local limit of 1 again.
    let mut again = Stream::new();
    let a = run.headers(&mut again, &r, false);
    assert_eq!(a.reply, None);
    assert!(a.call.is_some());
}

#[test]
fn a_late_answer_finds_nothing_to_resume() {
    let mut run = Run::new(rls_doc(), 1 << 20);
    let r = signed("n1", b"{\"qty\": 3}");
    let mut s = Stream::new();
    run.headers(&mut s, &r, false);
    let a = s.on_tick(
        &run.doc,
        NOW + 6_000_000_000,
        0,
        &run.budget,
        &mut run.store,
    );
    assert_eq!(status(&a), Some((408, Reason::BodyTimeout)));
    assert_eq!(
        s.on_remote_answer(&run.doc, Some(&answer(1)), &run.budget, &mut run.store),
        Actions::default()
    );
}

// ---- any order of events ----

#[derive(Debug, Clone, Copy)]
enum Event {
    Headers(bool),
    Body(usize, bool),
    Trailers,
    Remote(Option<bool>),
    Tick(u64, usize),
    End,
}

fn apply(run: &mut Run, s: &mut Stream, r: &TestRequest, e: Event) -> Option<Actions> {
    Some(match e {
        Event::Headers(eos) => run.headers(s, r, eos),
        Event::Body(n, eos) => run.body(s, r, n, eos),
        Event::Trailers => {
            let data = r.body.clone();
            let mut read = |n: usize| data.iter().take(n).copied().collect::<Vec<u8>>();
            s.on_request_trailers(&run.doc, &r.head(), &mut read, &run.budget, &mut run.store)
        }
        Event::Remote(a) => {
            let bytes = a.map(|ok| answer(if ok { 1 } else { 2 }));
            s.on_remote_answer(&run.doc, bytes.as_deref(), &run.budget, &mut run.store)
        }
        Event::Tick(after_s, buffered) => s.on_tick(
            &run.doc,
            NOW + after_s * 1_000_000_000,
            buffered,
            &run.budget,
            &mut run.store,
        ),
        Event::End => {
            s.on_end(&run.doc, &run.budget, &mut run.store);
            return None;
        }
    })
}

/// The guarantees of the module, over every sequence of events a test can think of: at most one reply,
/// nothing toward the upstream after a reply or before the decision, `Continue`/resume only once decided
/// without a reply, and the budget back to zero at the end.
fn check_sequence(make: fn() -> Document, events: &[Event], nonce: &str) {
    let mut run = Run::new(make(), 1 << 20);
    let r = signed(nonce, b"{\"qty\": 3}");
    let mut s = Stream::new();
    let (mut replies, mut forwarded) = (0, false);
    for &e in events {
        let Some(a) = apply(&mut run, &mut s, &r, e) else {
            continue;
        };
        if a.reply.is_some() {
            replies += 1;
            assert!(!forwarded, "{events:?}: a reply after the request went on");
            assert!(a.upstream.is_empty() && !a.resume && a.verdict == Verdict::Pause);
        }
        if !a.upstream.is_empty() || a.resume || a.verdict == Verdict::Continue {
            assert_eq!(replies, 0, "{events:?}: upstream change after a reply");
            assert_eq!(s.phase(), Phase::Forwarded, "{events:?}");
            if !a.upstream.is_empty() || a.resume {
                assert!(!forwarded, "{events:?}: forwarded twice");
            }
            forwarded = true;
        }
    }
    assert!(replies <= 1, "{events:?}: {replies} replies");
    s.on_end(&run.doc, &run.budget, &mut run.store);
    assert_eq!(run.budget.held(), 0, "{events:?}");
}

#[test]
fn every_short_sequence_of_events_keeps_the_guarantees() {
    let events = [
        Event::Headers(false),
        Event::Headers(true),
        Event::Body(4, false),
        Event::Body(10, true),
        Event::Body(2000, false),
        Event::Trailers,
        Event::Remote(Some(true)),
        Event::Remote(Some(false)),
        Event::Remote(None),
        Event::Tick(1, 0),
        Event::Tick(6, 0),
        Event::Tick(6, 5),
        Event::End,
    ];
    let n = events.len();
    for make in [rls_doc as fn() -> Document, doc] {
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    let seq = [events[0], events[a], events[b], events[c]];
                    check_sequence(make, &seq, "n");
                }
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            any::<bool>().prop_map(Event::Headers),
            (0usize..1200, any::<bool>()).prop_map(|(n, e)| Event::Body(n, e)),
            Just(Event::Trailers),
            proptest::option::of(any::<bool>()).prop_map(Event::Remote),
            (0u64..10, 0usize..20).prop_map(|(t, b)| Event::Tick(t, b)),
            Just(Event::End),
        ]
    }

    proptest! {
        #[test]
        fn any_sequence_keeps_the_guarantees(events in proptest::collection::vec(event(), 0..12)) {
            check_sequence(rls_doc, &events, "p");
            check_sequence(doc, &events, "p");
        }
    }
}
