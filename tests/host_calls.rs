//! The plugin's host calls per configuration, counted on the built .wasm under Node's V8 with the mock
//! proxy-wasm host of benches/node-host/run.mjs (Envoy's callbacks in Envoy's order; every host call
//! counted by callback and kind). Each host call costs about 0.75 µs in Envoy (docs/benchmark.md), so an
//! option that promises one call fewer is checked here, not only in the benchmark.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use std::process::Command;

/// One run of `REQUESTS` requests of `case` (run.mjs's format) through the plugin: run.mjs's report.
fn run(case: &Value) -> Value {
    let dir = support::TempDir::new("host-calls").unwrap();
    let path = dir.path().join("case.json");
    std::fs::write(&path, case.to_string()).unwrap();
    let script = support::repo_root().join("benches/node-host/run.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg("--wasm")
        .arg(support::wasm_path())
        .arg("--case")
        .arg(&path)
        .args(["--requests", "20", "--warmup", "2", "--rounds", "1"])
        .output()
        .expect("node runs (scripts/test.sh requires it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run.mjs failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A plain GET over HTTP (no TLS property) from 127.0.0.1, answered 201 by the upstream.
fn case(document: Value, response_headers: bool) -> Value {
    json!({
        "configuration": document.to_string(),
        "headers": [
            [":authority", "api.example.com"], [":path", "/v1/items"], [":method", "GET"],
            [":scheme", "http"], ["user-agent", "host-calls-test"], ["x-forwarded-for", "127.0.0.1"]
        ],
        "body": "",
        "response_headers": [[":status", "201"], ["content-length", "0"]],
        "properties": {"xds\u{0}route_name": "api", "source\u{0}address": "127.0.0.1:40000"},
        "expect_status": 200,
        "no_response_headers": !response_headers,
    })
}

/// Calls per request made in `callback` of `kind` (`"response_headers:get_map_value"`), 0 when none.
fn calls(report: &Value, key: &str) -> f64 {
    report["host_calls_by_callback"][key]
        .as_f64()
        .unwrap_or(0.0)
}

fn record(report: &Value) -> Value {
    let text = report["record"].as_str().expect("a record was written");
    serde_json::from_str(text).unwrap()
}

fn document(doc_log: Value, policy_log: Value) -> Value {
    json!({
        "log": doc_log,
        "policies": {"p": {"log": policy_log}},
        "routes": [{"policy": "p"}]
    })
}

/// `log.status` (default true): the record carries the response status, read from the response (one
/// `get_map_value` in the response headers callback; the `response.code` property when the stream ended
/// without response headers). With `false`, neither call is made, and everything else is unchanged.
#[test]
fn the_status_is_read_only_when_the_record_logs_it() {
    let logged = [
        document(json!({}), json!({})),
        document(json!({"status": false}), json!({"status": true})),
    ];
    let not_logged = [
        document(json!({"status": false}), json!({})),
        document(json!({}), json!({"status": false})),
    ];
    for (doc, logs) in logged
        .iter()
        .map(|d| (d, true))
        .chain(not_logged.iter().map(|d| (d, false)))
    {
        let with = run(&case(doc.clone(), true));
        let rec = record(&with);
        assert_eq!(rec["decision"], "allow", "{doc}: {rec}");
        if logs {
            assert_eq!(
                calls(&with, "response_headers:get_map_value"),
                1.0,
                "{doc}: {with}"
            );
            assert_eq!(rec["status"], 201, "{doc}: {rec}");
        } else {
            assert_eq!(
                calls(&with, "response_headers:get_map_value"),
                0.0,
                "{doc}: {with}"
            );
            assert!(rec.get("status").is_none(), "{doc}: {rec}");
        }
        // The stream ends without response headers: the status comes from the stream info.
        let without = run(&case(doc.clone(), false));
        let rec = record(&without);
        assert_eq!(rec["decision"], "allow", "{doc}: {rec}");
        assert_eq!(
            calls(&without, "log:get_property"),
            if logs { 1.0 } else { 0.0 },
            "{doc}: {without}"
        );
        // The mock host has no `response.code`: 0, as when Envoy has none.
        assert_eq!(rec.get("status").cloned(), logs.then(|| json!(0)), "{rec}");
    }
    // Exactly one call apart, nothing else changed.
    let on = run(&case(logged[0].clone(), true));
    let off = run(&case(not_logged[1].clone(), true));
    let total = |r: &Value| r["host_calls_per_request"].as_f64().unwrap();
    assert_eq!(total(&on) - total(&off), 1.0, "{on}\n{off}");
}
