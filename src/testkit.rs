//! Requests for tests and benchmarks: the one builder of a [`RequestHead`] (and of a signed one) that
//! they share. The plugin never calls it (the linker drops it from the .wasm).

use crate::http1::ParsedRequest;
use crate::request::{Headers, Peer, RequestHead, TlsVersion};
use crate::signature::{sign_request, SignParams, SigningKey};
use std::net::IpAddr;

/// A request as the adapter would hand it to the core: pseudo-header values, properties, headers
/// (names lowercase) and a body.
#[derive(Debug, Clone)]
pub struct TestRequest {
    pub method: String,
    pub authority: String,
    pub path: String,
    pub route: Option<String>,
    pub tls: Option<TlsVersion>,
    pub peer: Peer,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestRequest {
    /// `method authority path`, over TLS 1.3 from 192.0.2.7, no route name, no headers.
    pub fn new(method: &str, authority: &str, path: &str) -> TestRequest {
        TestRequest {
            method: method.to_string(),
            authority: authority.to_string(),
            path: path.to_string(),
            route: None,
            tls: Some(TlsVersion::V1_3),
            peer: Peer::Ip(IpAddr::from([192, 0, 2, 7])),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(authority: &str, path: &str) -> TestRequest {
        TestRequest::new("GET", authority, path)
    }

    pub fn post(authority: &str, path: &str, body: &[u8]) -> TestRequest {
        TestRequest::new("POST", authority, path).body(body)
    }

    /// Envoy's route name (`xds.route_name`).
    pub fn route(mut self, name: &str) -> TestRequest {
        self.route = Some(name.to_string());
        self
    }

    pub fn tls(mut self, tls: Option<TlsVersion>) -> TestRequest {
        self.tls = tls;
        self
    }

    pub fn peer(mut self, ip: IpAddr) -> TestRequest {
        self.peer = Peer::Ip(ip);
        self
    }

    /// Adds a header (name lowercased, as Envoy delivers it).
    pub fn header(mut self, name: &str, value: &str) -> TestRequest {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sets the body and its `content-length`.
    pub fn body(mut self, body: &[u8]) -> TestRequest {
        self.headers.retain(|(k, _)| k != "content-length");
        self.headers
            .push(("content-length".to_string(), body.len().to_string()));
        self.body = body.to_vec();
        self
    }

    /// The head the core evaluates.
    pub fn head(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            authority: &self.authority,
            path: &self.path,
            route_name: self.route.as_deref(),
            tls: self.tls,
            peer: self.peer,
            headers: Headers::new(&self.headers),
        }
    }

    /// Signed with the HMAC-SHA256 `secret` as `key_id` at `created`, covering `components` (a
    /// `Content-Digest` is added when they list `content-digest`), with `nonce` if given.
    pub fn signed_hmac(
        self,
        key_id: &str,
        secret: &[u8],
        created: u64,
        components: &[&str],
        nonce: Option<&str>,
    ) -> TestRequest {
        let Ok(key) = SigningKey::hmac(secret) else {
            return self;
        };
        let mut params = SignParams::new(key_id, key, created);
        params.components = components.iter().map(|c| c.to_string()).collect();
        params.nonce = nonce.map(String::from);
        params.https = self.tls.is_some();
        self.signed(&params)
    }

    /// Signed with `params` (as `edgeward sign` would).
    pub fn signed(mut self, params: &SignParams) -> TestRequest {
        let mut headers = vec![("host".to_string(), self.authority.clone())];
        headers.extend(self.headers.iter().cloned());
        let parsed = ParsedRequest {
            method: self.method.clone(),
            target: self.path.clone(),
            version: "HTTP/1.1".to_string(),
            raw_names: headers.iter().map(|(k, _)| k.clone()).collect(),
            raw_values: Vec::new(),
            headers,
            body: self.body.clone(),
        };
        if let Ok(signed) = sign_request(&parsed, params) {
            for (k, v) in signed.headers() {
                self = self.header(&k, &v);
            }
        }
        self
    }
}

/// The stream fixture shared by the state machine's tests (src/stream/tests.rs) and its fuzz target
/// (src/fuzz_props/stream.rs): a signed, body-checking policy `partner` on route `partner-api`
/// (key `k1`, HMAC over [`PARTNER_COMPONENTS`] with [`PARTNER_SECRET`], nonce required, bodies up to
/// 1,000 bytes, limit 3 per key and minute) and `public` for every other route (limit 2 per client and
/// minute). `top` is added to the document's top level (each member followed by a comma), `extra_limits`
/// after the partner's limit (each preceded by a comma).
pub fn partner_and_public(top: &str, extra_limits: &str) -> String {
    r#"{
      "rate_limit_slots": 64,
      TOP
      "policies": {
        "partner": {
          "signature": {
            "keys": [{ "id": "k1", "alg": "hmac-sha256", "secret": { "base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" } }],
            "components": ["@method", "@authority", "@path", "@query", "content-digest"],
            "nonce": "required",
            "max_body_bytes": 1000
          },
          "rate_limits": [{ "name": "per-key", "key": "key_id", "limit": 3, "window_s": 60 }EXTRA]
        },
        "public": { "rate_limits": [{ "name": "per-client", "key": "client_ip", "limit": 2, "window_s": 60 }] }
      },
      "routes": [
        { "route": "partner-api", "policy": "partner" },
        { "policy": "public" }
      ]
    }"#
    .replace("TOP", top)
    .replace("EXTRA", extra_limits)
}

/// Key `k1`'s secret in [`partner_and_public`] (the bytes its base64 names).
pub const PARTNER_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// What `partner` in [`partner_and_public`] requires signed.
pub const PARTNER_COMPONENTS: [&str; 5] =
    ["@method", "@authority", "@path", "@query", "content-digest"];

/// A small deterministic generator (xorshift64*): the same sequence on every run and machine, for
/// randomized tests and the benchmarks' generated lists.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}
