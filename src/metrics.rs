//! Counter names, laid out once per document so the adapter resolves every metric id at configure time
//! and the request path only indexes a vector.

use crate::decision::{Decision, Reason};
use crate::document::{Document, Mode};
use crate::engine::Evaluation;
use crate::keys::refresh::Outcome;

const REASONS: usize = Reason::ALL.len();
/// allowed, redirected, shadow_redirected, then denied.<reason> and shadow_denied.<reason>.
const PER_POLICY: usize = 3 + 2 * REASONS;

/// Document-wide counters after the per-policy block.
const GLOBAL: [&str; 6] = [
    "edgeward.no_route",
    "edgeward.bad_host",
    "edgeward.unchecked",
    "edgeward.rate_limit.unavailable",
    "edgeward.nonce_store_full",
    "edgeward.rate_limit.remote_failed_open",
];
const NO_ROUTE: usize = 0;
const BAD_HOST: usize = 1;
const UNCHECKED: usize = 2;
const RATE_LIMIT_UNAVAILABLE: usize = 3;
const NONCE_STORE_FULL: usize = 4;
const REMOTE_FAILED_OPEN: usize = 5;

/// Every counter name of a document, in id order.
pub fn names(doc: &Document) -> Vec<String> {
    let mut out = Vec::with_capacity(doc.policies.len() * PER_POLICY + GLOBAL.len());
    for p in &doc.policies {
        let base = format!("edgeward.{}", p.name);
        out.push(format!("{base}.allowed"));
        out.push(format!("{base}.redirected"));
        out.push(format!("{base}.shadow_redirected"));
        for r in Reason::ALL {
            out.push(format!("{base}.denied.{}", r.as_str()));
        }
        for r in Reason::ALL {
            out.push(format!("{base}.shadow_denied.{}", r.as_str()));
        }
    }
    out.extend(GLOBAL.iter().map(|s| s.to_string()));
    for source in &doc.key_sources {
        for outcome in SOURCE_OUTCOMES {
            out.push(format!("edgeward.key_sources.{}.{outcome}", source.name));
        }
    }
    out
}

/// Per key source, after the document-wide counters: fetches that loaded a set, of which changed it;
/// answers refused as sets (garbage, too large, too many keys); fetches with no answer or not 200.
const SOURCE_OUTCOMES: [&str; 4] = ["loaded", "changed", "rejected", "failed"];

/// The counters a fetch of key source `i` increments (a changed set counts as loaded too).
pub fn key_source_counters(doc: &Document, i: usize, outcome: &Outcome) -> [Option<usize>; 2] {
    let base = doc.policies.len() * PER_POLICY + GLOBAL.len() + i * SOURCE_OUTCOMES.len();
    match outcome {
        Outcome::Loaded { changed, .. } => [Some(base), changed.then_some(base + 1)],
        Outcome::Rejected(_) => [Some(base + 2), None],
        Outcome::Failed(_) => [Some(base + 3), None],
    }
}

fn reason_index(r: Reason) -> usize {
    Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

/// The counters one finished evaluation increments (at most two), as indexes into [`names`].
pub fn counters(doc: &Document, ev: &Evaluation) -> [Option<usize>; 2] {
    let global = doc.policies.len() * PER_POLICY;
    let extra = match ev.reply.as_ref().or(ev.shadow.as_ref()).map(|r| r.reason) {
        Some(Reason::RateLimitUnavailable) => Some(global + RATE_LIMIT_UNAVAILABLE),
        Some(Reason::NonceStoreFull) => Some(global + NONCE_STORE_FULL),
        _ if ev.remote_failed_open => Some(global + REMOTE_FAILED_OPEN),
        _ => None,
    };
    let Some(p) = ev.policy else {
        let main = match ev.reason() {
            Some(Reason::NoRoute) => global + NO_ROUTE,
            Some(Reason::BadHost) => global + BAD_HOST,
            _ if ev.routed => global + UNCHECKED,
            _ => global + NO_ROUTE,
        };
        return [Some(main), extra];
    };
    let base = p * PER_POLICY;
    let main = match (&ev.reply, &ev.shadow, ev.mode) {
        (Some(r), _, _) if r.decision == Decision::Redirect => base + 1,
        (Some(r), _, _) => base + 3 + reason_index(r.reason),
        (None, Some(s), Mode::Shadow) if s.decision == Decision::Redirect => base + 2,
        (None, Some(s), _) => base + 3 + REASONS + reason_index(s.reason),
        (None, None, _) => base,
    };
    [Some(main), extra]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::NoEnv;
    use crate::store::MemoryStore;
    use crate::testkit::TestRequest;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn name_of(doc: &Document, authority: &str, path: &str, tls: bool) -> Vec<String> {
        let names = names(doc);
        let r = TestRequest::get(authority, path)
            .tls(tls.then_some(crate::request::TlsVersion::V1_3))
            .peer([127, 0, 0, 1].into());
        let ev = doc.evaluate_head(&r.head(), 0, &mut MemoryStore::new());
        counters(doc, &ev)
            .iter()
            .flatten()
            .map(|i| names[*i].clone())
            .collect()
    }

    #[test]
    fn each_outcome_has_its_counter() {
        let doc = Document::from_json(
            r#"{"policies":{"web":{"https":{}},"rej":{"https":{"action":"reject"}},"sh":{"mode":"shadow","https":{"action":"reject"}}},
               "routes":[{"host":"rej.test","policy":"rej"},{"host":"sh.test","policy":"sh"},{"host":"open.test","policy":null},{"host":"web.test","policy":"web"}]}"#,
            &NoEnv,
        )
        .unwrap();
        assert_eq!(
            name_of(&doc, "web.test", "/", false),
            ["edgeward.web.redirected"]
        );
        assert_eq!(
            name_of(&doc, "web.test", "/", true),
            ["edgeward.web.allowed"]
        );
        assert_eq!(
            name_of(&doc, "rej.test", "/", false),
            ["edgeward.rej.denied.https_required"]
        );
        assert_eq!(
            name_of(&doc, "sh.test", "/", false),
            ["edgeward.sh.shadow_denied.https_required"]
        );
        assert_eq!(
            name_of(&doc, "open.test", "/", false),
            ["edgeward.unchecked"]
        );
        assert_eq!(
            name_of(&doc, "other.test", "/", false),
            ["edgeward.no_route"]
        );
        assert_eq!(name_of(&doc, "bad host", "/", false), ["edgeward.bad_host"]);
        let n = names(&doc);
        let unique: std::collections::BTreeSet<_> = n.iter().collect();
        assert_eq!(unique.len(), n.len(), "metric names are unique");
    }
}
