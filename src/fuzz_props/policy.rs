//! The policy document: the JSON reader against serde_json, then the reader and compiler as the plugin's
//! `on_configure` and `edgeward check` run them. A document either compiles, lints and evaluates a
//! request without panicking, or every error names a JSON path (the reader's errors about the document
//! as a whole name its line and column instead); the same text always gives the same verdict.

use super::{test_peer, FuzzRequest};
use crate::document::{parse, Document};
use crate::store::MemoryStore;

/// Every `{"env": NAME}` secret resolves (to 32 bytes), so that documents get past secrets.
fn env(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string())
}

const REQUEST: &[u8] =
    b"GET\nwww.example.com\n/a?b=1\nx-forwarded-for: 203.0.113.9\nuser-agent: t\n\n";

pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::json::reference::compare(text) {
        super::sfv::panic_with(&e);
    }
    let parsed = parse(text);
    let compiled = Document::from_json(text, &env);
    match (&parsed, &compiled) {
        (Err(e), Err(errors)) => {
            assert_eq!(
                errors.as_slice(),
                std::slice::from_ref(e),
                "the reader's error is the one"
            );
            // The document itself is the path "" (a root that is no object, a missing top-level
            // field, text after the document): the reader then names the line and column.
            assert!(
                !e.path.is_empty() || e.reason.contains(" at line "),
                "a reader's error with neither a JSON path nor a position: {e}"
            );
        }
        (Err(e), Ok(_)) => {
            super::sfv::panic_with(&format!("compiled what the reader refused: {e}"))
        }
        (Ok(input), Err(errors)) => {
            assert!(!errors.is_empty(), "refused without an error");
            for e in errors {
                assert!(!e.path.is_empty(), "an error without a JSON path: {e}");
            }
            let _ = crate::lint::lint(input);
        }
        (Ok(input), Ok(doc)) => {
            for w in crate::lint::lint(input) {
                assert!(!w.path.is_empty(), "a warning without a JSON path: {w}");
            }
            let again = Document::from_json(text, &env);
            assert!(again.is_ok(), "the same text refused the second time");
            evaluate(doc);
        }
    }
}

/// A request through the compiled document (on an unprepared store: reservations fail closed).
fn evaluate(doc: &Document) {
    let req = FuzzRequest::parse(REQUEST);
    let slices = req.headers.slices();
    let head = req.head(&slices, test_peer());
    let mut store = MemoryStore::new();
    let ev = doc.evaluate_head(&head, 1_700_000_000_000_000_000, &mut store);
    let _ = ev.is_decided();
}
