//! HTTPS enforcement: redirect or reject plain HTTP, HSTS, minimum TLS version, trusted X-Forwarded-Proto.

use crate::decision::{Decision, Reason, Reply};
use crate::error::{join, Errors};
use crate::request::{split_host_port, RequestHead, TlsVersion};

/// `redirect` (default) or `reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Redirect,
    Reject,
}

/// A policy's `https` section.
#[derive(Debug, Clone, Default)]
pub struct HttpsInput {
    pub action: Action,
    pub redirect_status: Option<u16>,
    pub https_port: Option<u16>,
    pub reject_status: Option<u16>,
    pub hsts: Option<HstsInput>,
    pub min_tls_version: Option<String>,
}

/// `hsts` inside `https`.
#[derive(Debug, Clone)]
pub struct HstsInput {
    pub max_age_s: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

crate::json::json_choice!(Action {
    "redirect" => Action::Redirect,
    "reject" => Action::Reject,
});

crate::json::json_object!(HttpsInput {
    action: "action" => read,
    redirect_status: "redirect_status" => read,
    https_port: "https_port" => read,
    reject_status: "reject_status" => read,
    hsts: "hsts" => read,
    min_tls_version: "min_tls_version" => read,
});

crate::json::json_object!(HstsInput {
    max_age_s: "max_age_s" => required,
    include_subdomains: "include_subdomains" => read,
    preload: "preload" => read,
});

/// The compiled `https` section.
#[derive(Debug, Clone)]
pub struct Https {
    pub action: Action,
    /// `None`: 301 for GET/HEAD, 308 otherwise.
    pub redirect_status: Option<u16>,
    pub https_port: u16,
    pub reject_status: u16,
    /// The full `Strict-Transport-Security` value, built once.
    pub hsts: Option<String>,
    pub min_tls: Option<TlsVersion>,
}

const HSTS_PRELOAD_MIN_AGE: u64 = 31_536_000;

impl Https {
    /// Validates and compiles the section at `path` (e.g. `policies.public.https`).
    pub fn compile(input: &HttpsInput, path: &str, errs: &mut Errors) -> Option<Https> {
        let before = errs.len();
        if let Some(s) = input.redirect_status {
            if ![301, 302, 307, 308].contains(&s) {
                errs.push(
                    join(path, "redirect_status"),
                    format!("{s} is not one of 301, 302, 307, 308"),
                );
            }
        }
        if input.https_port == Some(0) {
            errs.push(join(path, "https_port"), "0 is not a port");
        }
        let reject_status = input.reject_status.unwrap_or(403);
        if ![403, 426].contains(&reject_status) {
            errs.push(
                join(path, "reject_status"),
                format!("{reject_status} is not one of 403, 426"),
            );
        }
        let hsts = input.hsts.as_ref().map(|h| {
            let hp = join(path, "hsts");
            if h.preload && !h.include_subdomains {
                errs.push(
                    join(&hp, "preload"),
                    "preload requires include_subdomains: true",
                );
            }
            if h.preload && h.max_age_s < HSTS_PRELOAD_MIN_AGE {
                errs.push(
                    join(&hp, "preload"),
                    format!(
                        "preload requires max_age_s >= {HSTS_PRELOAD_MIN_AGE} (got {})",
                        h.max_age_s
                    ),
                );
            }
            let mut v = format!("max-age={}", h.max_age_s);
            if h.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if h.preload {
                v.push_str("; preload");
            }
            v
        });
        let min_tls = match input.min_tls_version.as_deref() {
            None => None,
            Some(v @ ("1.2" | "1.3")) => TlsVersion::parse(v),
            Some(v) => {
                errs.push(
                    join(path, "min_tls_version"),
                    format!("{v:?} is not one of \"1.2\", \"1.3\""),
                );
                None
            }
        };
        if errs.len() > before {
            return None;
        }
        Some(Https {
            action: input.action,
            redirect_status: input.redirect_status,
            https_port: input.https_port.unwrap_or(443),
            reject_status,
            hsts,
            min_tls,
        })
    }

    /// Checks one request. `arrived_https` is decided by the caller ([`arrived_over_https`]).
    pub fn check(&self, head: &RequestHead, arrived_https: bool) -> Result<(), Reply> {
        if !arrived_https {
            return Err(match self.action {
                Action::Redirect => self.redirect(head),
                Action::Reject => {
                    let r = Reply::deny(self.reject_status, Reason::HttpsRequired);
                    if self.reject_status == 426 {
                        r.with_header("upgrade", "TLS/1.2, HTTP/1.1")
                            .with_header("connection", "Upgrade")
                    } else {
                        r
                    }
                }
            });
        }
        if let (Some(min), Some(got)) = (self.min_tls, head.tls) {
            if got < min {
                return Err(Reply::deny(426, Reason::TlsVersionTooLow)
                    .with_header("upgrade", format!("TLS/{}, HTTP/1.1", min.as_str()))
                    .with_header("connection", "Upgrade"));
            }
        }
        Ok(())
    }

    /// The Strict-Transport-Security header for a request that arrived over HTTPS.
    pub fn hsts_header(&self) -> Option<&str> {
        self.hsts.as_deref()
    }

    fn redirect(&self, head: &RequestHead) -> Reply {
        // The authority was validated by `valid_authority` before any policy ran, so it is safe to echo.
        let (host, _) = split_host_port(head.authority);
        let location = if self.https_port == 443 {
            format!("https://{host}{}", head.path)
        } else {
            format!("https://{host}:{}{}", self.https_port, head.path)
        };
        let status = self.redirect_status.unwrap_or(match head.method {
            "GET" | "HEAD" => 301,
            _ => 308,
        });
        Reply {
            decision: Decision::Redirect,
            status,
            reason: Reason::HttpsRequired,
            headers: vec![("location".to_string(), location)],
            body: "",
        }
    }
}

/// True when the connection is TLS, or when a trusted proxy says so with exactly one `X-Forwarded-Proto: https`.
/// From an untrusted peer the header is ignored (a known bypass of header-based enforcement).
pub fn arrived_over_https(head: &RequestHead, peer_trusted: bool) -> bool {
    if head.tls.is_some() {
        return true;
    }
    peer_trusted
        && head.headers.count("x-forwarded-proto") == 1
        && head
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Whether an `:authority` is a valid `host[:port]`: a registered name (letters, digits, `-`, `.`, `_`),
/// an IPv4 address or a bracketed IPv6 literal, and an optional decimal port. Anything else (spaces,
/// control characters, `@`, `/`, empty) is refused with 400 `bad_host` before any policy runs.
pub fn valid_authority(authority: &str) -> bool {
    if authority.is_empty() || authority.len() > 262 {
        return false;
    }
    let (host, port) = split_host_port(authority);
    if let Some(p) = port {
        if p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535)
        {
            return false;
        }
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !host.starts_with('.')
        && !host.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestRequest;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compile(json: &str) -> Result<Https, Vec<crate::error::ConfigError>> {
        let input: HttpsInput = crate::json::from_str(json).unwrap();
        let mut errs = Errors::default();
        Https::compile(&input, "policies.p.https", &mut errs).ok_or_else(|| errs.into_vec())
    }

    /// A request from 127.0.0.1.
    fn request(
        method: &str,
        authority: &str,
        path: &str,
        tls: Option<TlsVersion>,
        headers: &[(String, String)],
    ) -> TestRequest {
        let mut r = TestRequest::new(method, authority, path)
            .tls(tls)
            .peer([127, 0, 0, 1].into());
        r.headers = headers.to_vec();
        r
    }

    fn location(r: &Reply) -> &str {
        &r.headers.iter().find(|(k, _)| k == "location").unwrap().1
    }

    #[test]
    fn redirect_get_301_post_308_with_exact_location() {
        let h = compile(r#"{"action":"redirect"}"#).unwrap();
        let r = h
            .check(
                &request("GET", "a.example:8080", "/x/y?q=1&r=%2F", None, &[]).head(),
                false,
            )
            .unwrap_err();
        assert_eq!(
            (r.status, r.decision, r.reason),
            (301, Decision::Redirect, Reason::HttpsRequired)
        );
        assert_eq!(location(&r), "https://a.example/x/y?q=1&r=%2F");
        let r = h
            .check(&request("HEAD", "a.example", "/", None, &[]).head(), false)
            .unwrap_err();
        assert_eq!(r.status, 301);
        for m in ["POST", "PUT", "DELETE", "PATCH"] {
            assert_eq!(
                h.check(&request(m, "a.example", "/", None, &[]).head(), false)
                    .unwrap_err()
                    .status,
                308
            );
        }
    }

    #[test]
    fn redirect_non_default_port_and_fixed_status() {
        let h = compile(r#"{"https_port":8443,"redirect_status":307}"#).unwrap();
        let r = h
            .check(&request("GET", "[::1]:80", "/p", None, &[]).head(), false)
            .unwrap_err();
        assert_eq!(r.status, 307);
        assert_eq!(location(&r), "https://[::1]:8443/p");
    }

    #[test]
    fn https_passes() {
        let h = compile(r#"{}"#).unwrap();
        assert!(h
            .check(
                &request("GET", "a", "/", Some(TlsVersion::V1_2), &[]).head(),
                true
            )
            .is_ok());
    }

    #[test]
    fn reject_403_and_426() {
        let r = compile(r#"{"action":"reject"}"#)
            .unwrap()
            .check(&request("GET", "a", "/", None, &[]).head(), false)
            .unwrap_err();
        assert_eq!(
            (r.status, r.decision, r.reason),
            (403, Decision::Deny, Reason::HttpsRequired)
        );
        assert!(r.headers.is_empty());
        let r = compile(r#"{"action":"reject","reject_status":426}"#)
            .unwrap()
            .check(&request("GET", "a", "/", None, &[]).head(), false)
            .unwrap_err();
        assert_eq!(r.status, 426);
        assert!(r
            .headers
            .contains(&("upgrade".into(), "TLS/1.2, HTTP/1.1".into())));
        assert!(r.headers.contains(&("connection".into(), "Upgrade".into())));
    }

    #[test]
    fn min_tls_version() {
        let h = compile(r#"{"min_tls_version":"1.3"}"#).unwrap();
        let r = h
            .check(
                &request("GET", "a", "/", Some(TlsVersion::V1_2), &[]).head(),
                true,
            )
            .unwrap_err();
        assert_eq!((r.status, r.reason), (426, Reason::TlsVersionTooLow));
        assert!(h
            .check(
                &request("GET", "a", "/", Some(TlsVersion::V1_3), &[]).head(),
                true
            )
            .is_ok());
        let h = compile(r#"{"min_tls_version":"1.2"}"#).unwrap();
        assert!(h
            .check(
                &request("GET", "a", "/", Some(TlsVersion::V1_2), &[]).head(),
                true
            )
            .is_ok());
        assert!(h
            .check(
                &request("GET", "a", "/", Some(TlsVersion::V1_1), &[]).head(),
                true
            )
            .is_err());
    }

    #[test]
    fn hsts_value() {
        let h =
            compile(r#"{"hsts":{"max_age_s":31536000,"include_subdomains":true,"preload":true}}"#)
                .unwrap();
        assert_eq!(
            h.hsts_header(),
            Some("max-age=31536000; includeSubDomains; preload")
        );
        let h = compile(r#"{"hsts":{"max_age_s":600}}"#).unwrap();
        assert_eq!(h.hsts_header(), Some("max-age=600"));
        assert_eq!(compile("{}").unwrap().hsts_header(), None);
    }

    #[test]
    fn config_errors_name_paths() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"hsts":{"max_age_s":31536000,"preload":true}}"#,
                "policies.p.https.hsts.preload",
            ),
            (
                r#"{"hsts":{"max_age_s":600,"include_subdomains":true,"preload":true}}"#,
                "policies.p.https.hsts.preload",
            ),
            (
                r#"{"redirect_status":200}"#,
                "policies.p.https.redirect_status",
            ),
            (r#"{"reject_status":500}"#, "policies.p.https.reject_status"),
            (
                r#"{"min_tls_version":"1.1"}"#,
                "policies.p.https.min_tls_version",
            ),
            (r#"{"https_port":0}"#, "policies.p.https.https_port"),
        ];
        for (json, path) in cases {
            let e = compile(json).unwrap_err();
            assert_eq!(e[0].path, *path, "{json}");
        }
        assert!(crate::json::from_str::<HttpsInput>(r#"{"actoin":"reject"}"#).is_err());
        assert!(crate::json::from_str::<HttpsInput>(r#"{"action":"drop"}"#).is_err());
    }

    #[test]
    fn forwarded_proto_only_from_trusted_peer() {
        let xfp = vec![("x-forwarded-proto".to_string(), "https".to_string())];
        let r = request("GET", "a", "/", None, &xfp);
        let h = r.head();
        assert!(
            !arrived_over_https(&h, false),
            "spoofed XFP from untrusted peer must not count"
        );
        assert!(arrived_over_https(&h, true));
        let two = vec![
            ("x-forwarded-proto".to_string(), "https".to_string()),
            ("x-forwarded-proto".to_string(), "https".to_string()),
        ];
        assert!(!arrived_over_https(
            &request("GET", "a", "/", None, &two).head(),
            true
        ));
        let http = vec![("x-forwarded-proto".to_string(), "http".to_string())];
        assert!(!arrived_over_https(
            &request("GET", "a", "/", None, &http).head(),
            true
        ));
        assert!(arrived_over_https(
            &request("GET", "a", "/", Some(TlsVersion::V1_3), &[]).head(),
            false
        ));
    }

    #[test]
    fn bracketed_ipv6_authority_allows_only_a_port_after_the_bracket() {
        for (authority, ok) in [
            ("[2001:db8::1]", true),
            ("[2001:db8::1]:8443", true),
            ("[::1]", true),
            ("[2001:db8::1]@evil.example", false),
            ("[2001:db8::1]/x", false),
            ("[2001:db8::1] x", false),
            ("[::1]]", false),
            ("[2001:db8::1]:", false),
            ("[2001:db8::1]:x", false),
            ("[2001:db8::1]:65536", false),
            ("[2001:db8::1]:8443]", false),
        ] {
            assert_eq!(valid_authority(authority), ok, "{authority:?}");
            if ok {
                // The host that route selection sees is the bracketed literal alone.
                let r = request("GET", authority, "/", None, &[]);
                let h = r.head();
                let host = crate::route::normalize_host(h.host());
                assert!(host.starts_with('[') && host.ends_with(']'), "{host}");
                assert!(authority.starts_with(host.as_ref()), "{authority:?}");
            }
        }
    }

    #[test]
    fn authority_validation_blocks_header_injection() {
        for good in [
            "example.com",
            "a.example:8080",
            "127.0.0.1:10000",
            "[::1]:443",
            "[2001:db8::1]",
            "my_host",
        ] {
            assert!(valid_authority(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "evil.com\r\nSet-Cookie: x=1",
            "user@evil.com",
            "a/b",
            "a:99999",
            "a:",
            "a:8x",
            "[::1",
            "[zz]:80",
            ".a",
            "a..b",
            "a\tb",
            "é.com",
        ] {
            assert!(!valid_authority(bad), "{bad:?}");
        }
    }
}
