//! Issue 3 through a real Envoy (envoy/envoy.yaml): redirect and reject of plain HTTP, HSTS, minimum TLS
//! version, trusted X-Forwarded-Proto, bad Host, and `edgeward eval` agreeing with Envoy request by request.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{
    echo, echo_server, ip, start, Client, Envoy, EnvoyOpts, Req, Response, TempDir, Tls,
};

const HSTS: &str = "max-age=31536000; includeSubDomains";
const HSTS_TLS13: &str = "max-age=600";

/// Every rule of the `https` section on its own path prefix; the catch-all redirects to port 8443.
const POLICY: &str = r#"{
  "log": {"keep_query": ["*"]},
  "policies": {
    "web": {"https": {"https_port": 8443, "hsts": {"max_age_s": 31536000, "include_subdomains": true}}},
    "web443": {"https": {}},
    "reject403": {"https": {"action": "reject"}},
    "reject426": {"https": {"action": "reject", "reject_status": 426}},
    "tls13": {"https": {"min_tls_version": "1.3", "hsts": {"max_age_s": 600}}}
  },
  "routes": [
    {"path_prefix": "/r443/", "policy": "web443"},
    {"path_prefix": "/reject403/", "policy": "reject403"},
    {"path_prefix": "/reject426/", "policy": "reject426"},
    {"path_prefix": "/tls13/", "policy": "tls13"},
    {"policy": "web"}
  ]
}"#;

/// Waits (up to 30 s) for the access log record of the request with this exact path.
fn record_for(envoy: &Envoy, path: &str) -> Value {
    envoy.access_log_record(path, |v| v["path"] == path)
}

/// `edgeward eval DOC --request FILE` with extra flags; the JSON it prints.
fn eval(doc: &Path, dir: &Path, name: &str, raw: &[u8], flags: &[&str]) -> Value {
    let req = dir.join(format!("{name}.http"));
    std::fs::write(&req, raw).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .arg("eval")
        .arg(doc)
        .arg("--request")
        .arg(&req)
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "eval {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn raw_get(path: &str, host: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
}

fn raw_with_body(method: &str, path: &str, host: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request sent raw to Envoy (plain or TLS, from a bound address) and given to `edgeward eval`.
struct Case {
    name: &'static str,
    raw: Vec<u8>,
    /// The request path (to find its access log record).
    path: &'static str,
    tls: Option<Tls>,
    bind: Option<IpAddr>,
    /// Send this with hyper instead of the raw bytes (HEAD: the raw reader cannot tell a HEAD reply's
    /// Content-Length from a body's).
    via_hyper: Option<Req>,
}

impl Case {
    fn new(name: &'static str, path: &'static str, raw: Vec<u8>) -> Case {
        Case {
            name,
            raw,
            path,
            tls: None,
            bind: None,
            via_hyper: None,
        }
    }

    fn via_hyper(mut self, r: Req) -> Case {
        self.via_hyper = Some(r);
        self
    }

    fn tls(mut self, t: Tls) -> Case {
        self.tls = Some(t);
        self
    }

    fn bind(mut self, a: IpAddr) -> Case {
        self.bind = Some(a);
        self
    }

    fn send(&self, envoy: &Envoy) -> Response {
        let mut client = Client::h1();
        if let Some(t) = self.tls {
            client = client.tls(t);
        }
        if let Some(b) = self.bind {
            client = client.bind(b);
        }
        let addr = if self.tls.is_some() {
            envoy.https_addr()
        } else {
            envoy.http_addr()
        };
        match &self.via_hyper {
            Some(req) => client.send_blocking(addr, req),
            None => client.send_raw_blocking(addr, &self.raw),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// The eval flags that describe this connection.
    fn eval_flags(&self) -> Vec<String> {
        let mut f = vec![
            "--client-ip".to_string(),
            self.bind
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .to_string(),
        ];
        match self.tls {
            None => f.extend(["--scheme".to_string(), "http".to_string()]),
            Some(t) => f.extend([
                "--scheme".to_string(),
                "https".to_string(),
                "--tls-version".to_string(),
                match t {
                    Tls::V1_2 => "1.2".to_string(),
                    Tls::V1_3 => "1.3".to_string(),
                },
            ]),
        }
        f
    }
}

/// What a case must produce at the client.
struct Want {
    status: u16,
    decision: &'static str,
    reason: Option<&'static str>,
    location: Option<&'static str>,
    hsts: Option<&'static str>,
}

fn want(status: u16, decision: &'static str, reason: Option<&'static str>) -> Want {
    Want {
        status,
        decision,
        reason,
        location: None,
        hsts: None,
    }
}

impl Want {
    fn location(mut self, l: &'static str) -> Want {
        self.location = Some(l);
        self
    }

    fn hsts(mut self, h: &'static str) -> Want {
        self.hsts = Some(h);
        self
    }
}

/// Checks Envoy's answer, its log record and `edgeward eval`'s answer against `want` (so eval and Envoy agree
/// on decision, status, reason, Location and HSTS).
fn check(envoy: &Envoy, doc: &Path, dir: &Path, case: &Case, want: &Want) -> Response {
    let name = case.name;
    let resp = case.send(envoy);
    assert_eq!(resp.status, want.status, "{name}: {}", resp.text());
    assert_eq!(resp.header("location"), want.location, "{name}");
    let hsts = resp.header_all("strict-transport-security");
    assert_eq!(hsts, want.hsts.into_iter().collect::<Vec<_>>(), "{name}");
    if want.decision == "allow" {
        // Forwarded: the body is the echo upstream's description of the request.
        assert_eq!(
            resp.echo().path,
            case.path,
            "{name}: did not reach the upstream"
        );
    } else {
        assert!(
            serde_json::from_slice::<Value>(&resp.body)
                .map_or(true, |v| v.get("headers").is_none()),
            "{name}: a {} reached the upstream",
            want.decision
        );
    }
    let record = record_for(envoy, case.path);
    assert_eq!(record["decision"], want.decision, "{name}: {record}");
    assert_eq!(record["reason"].as_str(), want.reason, "{name}: {record}");
    assert_eq!(record["status"], want.status, "{name}: {record}");

    let flags = case.eval_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ev = eval(doc, dir, name, &case.raw, &flags);
    assert_eq!(ev["decision"], want.decision, "{name}: eval {ev}");
    assert_eq!(ev["reason"].as_str(), want.reason, "{name}: eval {ev}");
    assert_eq!(ev["status"], want.status, "{name}: eval {ev}");
    let rh = &ev["response_headers"];
    assert_eq!(rh["location"].as_str(), want.location, "{name}: eval {ev}");
    assert_eq!(
        rh["strict-transport-security"].as_str(),
        want.hsts,
        "{name}: eval {ev}"
    );
    resp
}

#[test]
fn plain_http_is_redirected_or_rejected_and_https_gets_hsts_and_eval_agrees() {
    let upstream = echo_server();
    let envoy = start(&EnvoyOpts::new(upstream.addr()).policy(POLICY));
    let dir = TempDir::new("e2e-https").unwrap();
    let doc = dir.path().join("policy.json");
    std::fs::write(&doc, POLICY).unwrap();
    let (d, doc) = (dir.path(), doc.as_path());
    let host = "api.example.com";

    // GET/HEAD over HTTP: 301 to the same host, the configured port, path and query exactly as received.
    let c = Case::new(
        "get",
        "/docs/a%20b/page?q=1&x=%2F&empty=&q=2",
        raw_get(
            "/docs/a%20b/page?q=1&x=%2F&empty=&q=2",
            "api.example.com:10000",
            "",
        ),
    );
    let w = want(301, "redirect", Some("https_required"))
        .location("https://api.example.com:8443/docs/a%20b/page?q=1&x=%2F&empty=&q=2");
    let resp = check(&envoy, doc, d, &c, &w);
    assert!(resp.header("strict-transport-security").is_none());
    let c = Case::new(
        "head",
        "/head",
        format!("HEAD /head HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
    )
    .via_hyper(Req::new("HEAD", "/head").authority(host));
    check(
        &envoy,
        doc,
        d,
        &c,
        &want(301, "redirect", Some("https_required"))
            .location("https://api.example.com:8443/head"),
    );
    // The default port 443 is not written into the Location.
    let c = Case::new("get-443", "/r443/x?y=z", raw_get("/r443/x?y=z", host, ""));
    check(
        &envoy,
        doc,
        d,
        &c,
        &want(301, "redirect", Some("https_required"))
            .location("https://api.example.com/r443/x?y=z"),
    );

    // Every other method: 308, so a POST keeps its method and body.
    for (name, method, path) in [
        ("post", "POST", "/submit?a=1"),
        ("put", "PUT", "/put"),
        ("delete", "DELETE", "/delete"),
    ] {
        let c = Case::new(name, path, raw_with_body(method, path, host, "payload"));
        let location: &'static str =
            Box::leak(format!("https://api.example.com:8443{path}").into_boxed_str());
        check(
            &envoy,
            doc,
            d,
            &c,
            &want(308, "redirect", Some("https_required")).location(location),
        );
    }

    // Reject mode: 403, or 426 with Upgrade/Connection; never forwarded.
    let c = Case::new(
        "reject403",
        "/reject403/x",
        raw_get("/reject403/x", host, ""),
    );
    check(
        &envoy,
        doc,
        d,
        &c,
        &want(403, "deny", Some("https_required")),
    );
    let c = Case::new(
        "reject426",
        "/reject426/x",
        raw_get("/reject426/x", host, ""),
    );
    let resp = check(
        &envoy,
        doc,
        d,
        &c,
        &want(426, "deny", Some("https_required")),
    );
    // The core answers 426 with `Upgrade: TLS/1.2, HTTP/1.1` and `Connection: Upgrade` (eval shows them),
    // but Envoy's connection manager strips both hop-by-hop headers from every non-upgrade response
    // (ConnectionManagerUtility::mutateResponseHeaders), after all filters ran. Pinned here so that a
    // change in Envoy shows up.
    let ev = eval(doc, d, "reject426-headers", &c.raw, &["--scheme", "http"]);
    assert_eq!(
        ev["response_headers"]["upgrade"], "TLS/1.2, HTTP/1.1",
        "{ev}"
    );
    assert_eq!(ev["response_headers"]["connection"], "Upgrade", "{ev}");
    assert_eq!(resp.header("upgrade"), None, "{:?}", resp.headers);
    assert!(
        !resp
            .header_all("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("upgrade")),
        "{:?}",
        resp.headers
    );

    // A client claiming X-Forwarded-Proto: https over plain HTTP is not a trusted proxy: still redirected.
    let c = Case::new(
        "spoofed-xfp",
        "/spoof",
        raw_get("/spoof", host, "X-Forwarded-Proto: https\r\n"),
    )
    .bind(ip("127.0.0.2"));
    check(
        &envoy,
        doc,
        d,
        &c,
        &want(301, "redirect", Some("https_required"))
            .location("https://api.example.com:8443/spoof"),
    );

    // Over HTTPS: forwarded, exactly one HSTS header with the configured value.
    for (name, tls, path) in [
        ("tls13-get", Tls::V1_3, "/secure/13?k=v"),
        ("tls12-get", Tls::V1_2, "/secure/12"),
    ] {
        let c = Case::new(name, path, raw_get(path, host, "")).tls(tls);
        check(&envoy, doc, d, &c, &want(200, "allow", None).hsts(HSTS));
    }
    // The upstream sends its own HSTS header: replaced, not duplicated.
    let c = Case::new("upstream-hsts", "/__hsts/1", raw_get("/__hsts/1", host, "")).tls(Tls::V1_3);
    check(&envoy, doc, d, &c, &want(200, "allow", None).hsts(HSTS));
    // Control: without edgeward's header the echo really sends its own value.
    let direct = Client::h1()
        .send_blocking(upstream.addr(), &Req::get("/__hsts/direct"))
        .unwrap();
    assert_eq!(
        direct.header_all("strict-transport-security"),
        [echo::UPSTREAM_HSTS]
    );

    // min_tls_version 1.3: a TLS 1.2 connection gets 426, TLS 1.3 passes.
    let c = Case::new("tls12-to-13", "/tls13/a", raw_get("/tls13/a", host, "")).tls(Tls::V1_2);
    let resp = check(
        &envoy,
        doc,
        d,
        &c,
        &want(426, "deny", Some("tls_version_too_low")).hsts(HSTS_TLS13),
    );
    // Envoy strips Upgrade here too (see reject426).
    assert_eq!(resp.header("upgrade"), None, "{:?}", resp.headers);
    let c = Case::new("tls13-to-13", "/tls13/b", raw_get("/tls13/b", host, "")).tls(Tls::V1_3);
    check(
        &envoy,
        doc,
        d,
        &c,
        &want(200, "allow", None).hsts(HSTS_TLS13),
    );
    let record = record_for(&envoy, "/tls13/b");
    assert_eq!(record["tls"], "1.3", "{record}");
    assert_eq!(record_for(&envoy, "/tls13/a")["tls"], "1.2");

    // Hosts that are not host[:port] and that Envoy lets through to the filter (Envoy's codec itself
    // refuses spaces, quotes, braces, angle brackets and control characters): 400 bad_host, never echoed.
    for (i, bad) in [
        "evil.test@api.example.com",
        "a@b",
        "evil.test,api.example.com",
        "",
        "api.example.com:99999",
        "api..example.com",
        "[::1",
    ]
    .into_iter()
    .enumerate()
    {
        let path: &'static str = Box::leak(format!("/bad-host/{i}").into_boxed_str());
        let c = Case::new("bad-host", path, raw_get(path, bad, ""));
        let resp = check(&envoy, doc, d, &c, &want(400, "deny", Some("bad_host")));
        assert!(resp.header("location").is_none(), "{bad:?}");
        let all = format!("{:?}{}", resp.headers, resp.text());
        assert!(
            bad.is_empty() || !all.contains(bad),
            "bad host {bad:?} echoed: {all}"
        );
    }
}

#[test]
fn http2_clients_get_the_same_redirect_and_hsts() {
    let upstream = echo_server();
    let envoy = start(&EnvoyOpts::new(upstream.addr()).policy(POLICY));
    let req = Req::get("/h2/x?y=1").authority("api.example.com");
    let resp = Client::h2c()
        .send_blocking(envoy.http_addr(), &req)
        .unwrap();
    assert_eq!(resp.status, 301);
    assert_eq!(
        resp.header("location"),
        Some("https://api.example.com:8443/h2/x?y=1")
    );
    assert!(resp.header("strict-transport-security").is_none());
    let post = Req::post("/h2/post", "body").authority("api.example.com");
    let resp = Client::h2c()
        .send_blocking(envoy.http_addr(), &post)
        .unwrap();
    assert_eq!(resp.status, 308);
    let resp = Client::h2c()
        .tls(Tls::V1_3)
        .send_blocking(
            envoy.https_addr(),
            &Req::get("/__hsts/h2").authority("api.example.com"),
        )
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.echo().path, "/__hsts/h2");
    assert_eq!(resp.header_all("strict-transport-security"), [HSTS]);
}

/// With a trusted proxy in front (its address in `client_ip.trusted_proxies`) and Envoy told to pass
/// X-Forwarded-Proto through (`xff_num_trusted_hops: 1`), the proxy's `X-Forwarded-Proto: https` counts;
/// the same header from any other peer does not.
#[test]
fn x_forwarded_proto_counts_only_from_a_trusted_proxy() {
    let upstream = echo_server();
    let policy = r#"{
      "client_ip": {"trusted_proxies": ["127.0.0.2"]},
      "policies": {"web": {"https": {"hsts": {"max_age_s": 600}}}},
      "routes": [{"policy": "web"}]
    }"#;
    let opts = EnvoyOpts::new(upstream.addr()).policy(policy).edit(|yaml| {
        let out = yaml.replace(
            "use_remote_address: true\n",
            "use_remote_address: true\n          xff_num_trusted_hops: 1\n",
        );
        assert_eq!(out.matches("xff_num_trusted_hops: 1").count(), 2, "{out}");
        out
    });
    let envoy = start(&opts);
    let xfp = Req::get("/via-proxy")
        .authority("api.example.com")
        .header("x-forwarded-proto", "https");

    let trusted = Client::h1()
        .bind(ip("127.0.0.2"))
        .send_blocking(envoy.http_addr(), &xfp)
        .unwrap();
    assert_eq!(trusted.status, 200, "{}", trusted.text());
    assert_eq!(trusted.echo().header("x-forwarded-proto"), Some("https"));
    // Arrived over HTTPS (per the proxy): HSTS is added.
    assert_eq!(
        trusted.header_all("strict-transport-security"),
        ["max-age=600"]
    );

    let untrusted = Client::h1()
        .bind(ip("127.0.0.3"))
        .send_blocking(envoy.http_addr(), &xfp)
        .unwrap();
    assert_eq!(untrusted.status, 301, "{}", untrusted.text());
    assert_eq!(
        untrusted.header("location"),
        Some("https://api.example.com/via-proxy")
    );
    assert!(untrusted.header("strict-transport-security").is_none());

    // The trusted proxy itself, without the header, over plain HTTP: redirected.
    let plain = Client::h1()
        .bind(ip("127.0.0.2"))
        .send_blocking(
            envoy.http_addr(),
            &Req::get("/plain").authority("api.example.com"),
        )
        .unwrap();
    assert_eq!(plain.status, 301);
}
