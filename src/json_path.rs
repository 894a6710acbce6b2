//! The JSON path of a parse error (`policies.p.ip.allow[1]`), found from the error's line and column.
//!
//! serde_json reports where it stopped; scanning the text up to that byte tells which object keys and
//! array indexes enclose it. This replaces a path-tracking deserializer wrapper that cost ~70 KB of code
//! in the .wasm (one wrapper per input type) for what is only ever needed on the error path.

use crate::error::{index, join};

enum Frame {
    /// An object: the key being read or whose value is being read, and whether the `:` was seen.
    Object { key: Option<String>, in_value: bool },
    /// An array: the element's index, and whether that element has started.
    Array { index: usize, started: bool },
}

/// The byte offset of a 1-based line and a 0-based byte column (serde_json's `Error::line`/`column`).
pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start = text
        .match_indices('\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(i, _)| i + 1);
    let start = if line <= 1 { 0 } else { start };
    start.saturating_add(column).min(text.len())
}

/// The path of the innermost value that encloses byte `offset` of `text` (the empty string for the root).
/// Keys are named as written (escapes decoded), array elements as `[i]`. Lenient: malformed text
/// gives the path as far as it can be read, never a panic.
pub fn path_at(text: &str, offset: usize) -> String {
    let bytes = text.as_bytes();
    let end = offset.min(bytes.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {
                if b == b':' {
                    if let Some(Frame::Object { in_value, .. }) = stack.last_mut() {
                        *in_value = true;
                    }
                }
                i += 1;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::Object { key, in_value }) => {
                        *key = None;
                        *in_value = false;
                    }
                    Some(Frame::Array { index, started }) => {
                        *index += 1;
                        *started = false;
                    }
                    None => {}
                }
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b'"' => {
                let close = string_end(bytes, i);
                let is_key = matches!(
                    stack.last(),
                    Some(Frame::Object {
                        in_value: false,
                        ..
                    })
                );
                if is_key {
                    let raw = text.get(i..close).unwrap_or("");
                    let name = serde_json::from_str::<String>(raw)
                        .unwrap_or_else(|_| raw.trim_matches('"').to_string());
                    if let Some(Frame::Object { key, .. }) = stack.last_mut() {
                        *key = Some(name);
                    }
                } else {
                    value_starts(&mut stack);
                }
                i = close;
            }
            b'{' | b'[' => {
                value_starts(&mut stack);
                stack.push(if b == b'{' {
                    Frame::Object {
                        key: None,
                        in_value: false,
                    }
                } else {
                    Frame::Array {
                        index: 0,
                        started: false,
                    }
                });
                i += 1;
            }
            _ => {
                // A number or a literal: up to the next delimiter.
                value_starts(&mut stack);
                while let Some(&c) = bytes.get(i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':') {
                        break;
                    }
                    i += 1;
                }
            }
        }
    }
    // serde_json reports a value of the wrong type at its first byte: that element has started.
    let next = bytes
        .get(end..)
        .and_then(|rest| rest.iter().find(|c| !c.is_ascii_whitespace()));
    let at_value = match stack.last() {
        Some(Frame::Array { .. }) => true,
        Some(Frame::Object { in_value, .. }) => *in_value,
        None => false,
    };
    if at_value && next.is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b':')) {
        value_starts(&mut stack);
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), .. } => path = join(&path, k),
            Frame::Array {
                index: n,
                started: true,
            } => path = index(&path, *n),
            _ => {}
        }
    }
    path
}

fn value_starts(stack: &mut [Frame]) {
    if let Some(Frame::Array { started, .. }) = stack.last_mut() {
        *started = true;
    }
}

/// The offset just after the string that opens at `start` (or the end of the text if it never closes).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn offsets_follow_lines_and_byte_columns() {
        let t = "ab\ncdé\nf";
        assert_eq!(offset_of(t, 1, 0), 0);
        assert_eq!(offset_of(t, 1, 2), 2);
        assert_eq!(offset_of(t, 2, 1), 4);
        assert_eq!(offset_of(t, 3, 1), 9);
        assert_eq!(offset_of(t, 9, 9), t.len());
    }

    #[test]
    fn paths_name_keys_and_indexes() {
        let cases: &[(&str, usize, &str)] = &[
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 12, "a.b"),
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 13, "a.b[0]"),
            // at (or in the whitespace before) an element's first byte: that element
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 18, "a.b[2]"),
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 19, "a.b[2]"),
            (r#"{"a": {"b": [1, 2, ]}}"#, 18, "a.b"),
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 20, "a.b[2]"),
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 25, "a.b[2].c"),
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 27, "a.b[2]"),
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 28, "a.b"),
            (r#"{"a": {"b": [1, 2, {"c": 3}]}}"#, 30, ""),
            // escaped quotes and brackets inside strings do not confuse the scan
            (r#"{"x\"]}": ["}", "\\", 5]}"#, 23, "x\"]}[2]"),
            (r#"{"\u0041": 1}"#, 12, "A"),
            // malformed or cut text: as far as it goes
            (r#"{"a": [1, "#, 100, "a"),
            (r#"}}]]{"a""#, 100, "a"),
            ("", 5, ""),
            (r#"{"a": "unterminated"#, 100, "a"),
        ];
        for (text, offset, want) in cases {
            assert_eq!(path_at(text, *offset), *want, "{text} @ {offset}");
        }
    }

    /// The paths of parse errors of whole documents (what `edgeward check` and the plugin's load error
    /// print), as the path-tracking deserializer gave them before: unknown fields, wrong types in maps
    /// and arrays, unknown variants, missing fields (the object's path), cut text, escaped keys.
    #[test]
    fn document_parse_errors_name_the_path() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"policies": {"p": {"https": {"acton": "reject"}}}, "routes": [{"policy": "p"}]}"#, "policies.p.https.acton", "unknown field `acton`"),
            (r#"{"policies": {"p": {}}, "routes": ["#, "routes", "EOF"),
            (r#"{"policies":"#, "policies", "EOF"),
            (r#"{"policies":{"p":{"ip":{"allow":["10.0.0.1", 5]}}},"routes":[{"policy":"p"}]}"#, "policies.p.ip.allow[1]", "invalid type: integer `5`"),
            (r#"{"policies":{"p":{"ip":{"allow":"10.0.0.1"}}},"routes":[{"policy":"p"}]}"#, "policies.p.ip.allow", "expected a sequence"),
            (r#"{"policies":{"p":{"ip":{"allow":{"a":1}}}},"routes":[{"policy":"p"}]}"#, "policies.p.ip.allow", "invalid type: map"),
            (r#"{"rls":{"cluster":"rl","domain":"d","failure_mode":"open"},"policies":{},"routes":[{"policy":null}]}"#, "rls.failure_mode", "unknown variant, expected `deny` or `allow`"),
            (r#"{"rls":{"cluster":"rl","domain":"d","timeout_ms":-1},"policies":{},"routes":[{"policy":null}]}"#, "rls.timeout_ms", "invalid value: integer `-1`"),
            (r#"{"rls":{"cluster":"rl","timeout_ms":5},"policies":{},"routes":[{"policy":null}]}"#, "rls", "missing field `domain`"),
            (r#"{"policies":{"p":{"rate_limits":[{"name":"n","key":"client_ip","limit":1,"window_s":1},{"name":"m","key":"client_ip","limit":1}]}},"routes":[{"policy":"p"}]}"#, "policies.p.rate_limits[1]", "missing field `window_s`"),
            (r#"{"policies":{"p":{"signature":{"keys":[{"id":"a","alg":"ed25519","public_key":"x","kid":1}]}}},"routes":[{"policy":"p"}]}"#, "policies.p.signature.keys[0].kid", "unknown field `kid`"),
            (r#"{"policies":{"p":{}, "q": 3},"routes":[{"policy":"p"}]}"#, "policies.q", "invalid type: integer `3`"),
            (r#"{"routes":[{"policy":"p"}]}"#, "", "missing field `policies`"),
            (r#"{"policies":{"p\u0041":{"ip":{"allow":[1]}}},"routes":[{"policy":"p"}]}"#, "policies.pA.ip.allow[0]", "invalid type"),
            (r#"{"client_ip":{"trusted_proxies":[["1.2.3.4/32"]]},"policies":{},"routes":[{"policy":null}]}"#, "client_ip.trusted_proxies[0]", "invalid type: sequence"),
            (r#"{"ip_lists":{"a":["1.2.3.4/32", null]},"policies":{},"routes":[{"policy":null}]}"#, "ip_lists.a[1]", "invalid type: null"),
            (r#"{"policies":{"p":{"https":{"hsts":{"max_age_s":1.5}}}},"routes":[{"policy":"p"}]}"#, "policies.p.https.hsts.max_age_s", "floating point"),
            // the duplicated key itself, for fields and for the names of policies and lists
            (r#"{"policies":{"p":{"https":{"action":"reject"},"https":{}}},"routes":[{"policy":"p"}]}"#, "policies.p.https", "duplicate field `https`"),
            (r#"{"policies":{"p":{"ip":{"deny":["@b"]}},"p":{}},"routes":[{"policy":"p"}]}"#, "policies.p", "\"p\" is given twice"),
            (r#"{"ip_lists":{"b":["10.0.0.0/8"],"b":[]},"policies":{},"routes":[]}"#, "ip_lists.b", "\"b\" is given twice"),
            ("{\n  \"policies\": {\n    \"p\": {\n      \"ip\": { \"allow\": [\"10.0.0.0/8\",\n                        7] }\n    }\n  },\n  \"routes\": [{\"policy\": \"p\"}]\n}", "policies.p.ip.allow[1]", "line 5 column 25"),
            (r#"{"policies":{"p":{}},"routes":[{"policy":"p",}]}"#, "routes[0]", "trailing comma"),
            // text after the document is refused, not ignored
            (r#"{"policies":{"p":{}},"routes":[{"policy":"p"}]} trailing"#, "", "trailing characters"),
            (r#"{"policies":{"p":{}},"routes":[{"policy":"p"}]}}"#, "", "trailing characters"),
            ("", "", "EOF"),
        ];
        for (text, path, reason) in cases {
            let e = crate::document::parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert_eq!(e.path, *path, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
        assert!(
            crate::document::parse(r#"{"policies":{"p":{}},"routes":[{"policy":"p"}]}"#).is_ok()
        );
    }
}
