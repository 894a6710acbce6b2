//! Policy documents in tests: the environment variables a document names (`{"env": NAME}`), test values
//! for them, and the core's compilation with those values. Used through `support::documents` and included
//! on its own (`#[path = "support/documents.rs"] mod documents;`) by tests that need nothing else of the
//! harness.
#![allow(dead_code)]

use edgeward::document::Document;
use serde_json::Value;
use std::collections::BTreeSet;

/// Every `{"env": NAME}` in a document.
pub fn env_names(doc: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                if let (1, Some(Value::String(name))) = (map.len(), map.get("env")) {
                    out.insert(name.clone());
                }
                map.values().for_each(|x| walk(x, out));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(doc, &mut out);
    out
}

/// A test secret for a variable: base64 of 48 bytes derived from its name.
pub fn dummy_secret(name: &str) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = name.bytes().cycle().take(48).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Compiles a document with [`dummy_secret`] for every environment variable it names; the errors as
/// text.
pub fn compile(doc: &Value) -> Result<Document, Vec<String>> {
    let names = env_names(doc);
    let env = move |name: &str| names.contains(name).then(|| dummy_secret(name));
    Document::from_json(&doc.to_string(), &env)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect())
}
