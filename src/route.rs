//! Route selection: the first entry of `routes` whose every given field matches wins.

use crate::error::Errors;

/// How an entry's `host` matches the request's host (port stripped, lowercased, trailing dot removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com` is stored as `.example.com`: any subdomain, at any depth, never the apex (as Envoy does).
    Suffix(String),
}

impl HostMatch {
    /// Compiles `example.com` or `*.example.com`.
    pub fn compile(s: &str, path: &str, errs: &mut Errors) -> Option<HostMatch> {
        let lower = s.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower).to_string();
        let (body, wildcard) = match lower.strip_prefix("*.") {
            Some(rest) => (rest.to_string(), true),
            None => (lower.clone(), false),
        };
        let valid = !body.is_empty()
            && body.len() <= 253
            && body.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        let valid = valid || (!wildcard && body.starts_with('[') && body.ends_with(']'));
        if !valid {
            errs.push(
                path,
                format!("{s:?} is not a host name or a \"*.suffix\" wildcard (no port, no scheme)"),
            );
            return None;
        }
        Some(if wildcard {
            HostMatch::Suffix(format!(".{body}"))
        } else {
            HostMatch::Exact(body)
        })
    }

    /// `host` must already be normalized (see [`normalize_host`]).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// Lowercases a host and removes one trailing dot, borrowing when nothing changes.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// What a matched entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Index into the document's policies.
    Policy(usize),
    /// `"policy": null`: an explicit opt-out, no checks.
    NoChecks,
}

/// One compiled entry of `routes`.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub route: Option<String>,
    pub host: Option<HostMatch>,
    /// Exactly this path (without the query).
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub target: Target,
}

impl RouteEntry {
    fn matches(&self, route_name: Option<&str>, host: &str, path: &str) -> bool {
        if let Some(r) = &self.route {
            if route_name != Some(r.as_str()) {
                return false;
            }
        }
        if let Some(h) = &self.host {
            if !h.matches(host) {
                return false;
            }
        }
        if self.path.as_ref().is_some_and(|p| p != path) {
            return false;
        }
        if let Some(p) = &self.path_prefix {
            if !path.starts_with(p.as_str()) {
                return false;
            }
        }
        true
    }
}

/// Returns the index of the first entry that matches, or `None` (the request is denied: `no_route`).
/// `host` is the authority without port, normalized; `path` is the path without the query.
pub fn select(
    routes: &[RouteEntry],
    route_name: Option<&str>,
    host: &str,
    path: &str,
) -> Option<usize> {
    routes
        .iter()
        .position(|r| r.matches(route_name, host, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn host(s: &str) -> HostMatch {
        let mut e = Errors::default();
        let h = HostMatch::compile(s, "h", &mut e);
        assert!(e.is_empty(), "{e:?}");
        h.unwrap()
    }

    #[test]
    fn host_matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("example.com", "example.com", true),
            ("example.com", "www.example.com", false),
            ("Example.COM.", "example.com", true),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "a.example.com.evil", false),
        ];
        for (pattern, h, want) in cases {
            assert_eq!(
                host(pattern).matches(&normalize_host(h)),
                *want,
                "{pattern} vs {h}"
            );
        }
    }

    #[test]
    fn bad_host_patterns_are_errors() {
        for bad in [
            "",
            "*.",
            "exa mple.com",
            "example.com:80",
            "http://x",
            "*",
            "a..b",
            "*.*.x",
        ] {
            let mut e = Errors::default();
            assert!(
                HostMatch::compile(bad, "routes[0].host", &mut e).is_none(),
                "{bad}"
            );
            assert_eq!(e.into_vec()[0].path, "routes[0].host");
        }
    }

    #[test]
    fn first_match_wins_and_every_field_must_match() {
        let routes = vec![
            RouteEntry {
                route: Some("partner-api".into()),
                host: None,
                path: None,
                path_prefix: None,
                target: Target::Policy(0),
            },
            RouteEntry {
                route: None,
                host: Some(host("admin.example.com")),
                path: None,
                path_prefix: Some("/admin/".into()),
                target: Target::Policy(1),
            },
            RouteEntry {
                route: None,
                host: Some(host("*.example.com")),
                path: None,
                path_prefix: None,
                target: Target::NoChecks,
            },
        ];
        let cases: &[(Option<&str>, &str, &str, Option<usize>)] = &[
            (Some("partner-api"), "x.org", "/", Some(0)),
            (
                Some("partner-api"),
                "admin.example.com",
                "/admin/x",
                Some(0),
            ),
            (Some("other"), "admin.example.com", "/admin/x", Some(1)),
            (None, "admin.example.com", "/public", Some(2)),
            (None, "admin.example.com", "/Admin/x", Some(2)),
            (None, "x.org", "/admin/", None),
            (None, "example.com", "/", None),
        ];
        for (rn, h, p, want) in cases {
            assert_eq!(select(&routes, *rn, h, p), *want, "{rn:?} {h} {p}");
        }
    }

    #[test]
    fn exact_paths_match_only_themselves() {
        let routes = vec![RouteEntry {
            route: None,
            host: None,
            path: Some("/health".into()),
            path_prefix: None,
            target: Target::NoChecks,
        }];
        assert_eq!(select(&routes, None, "a", "/health"), Some(0));
        for other in ["/health-x", "/health/", "/healthz", "/Health", "/"] {
            assert_eq!(select(&routes, None, "a", other), None, "{other}");
        }
    }

    #[test]
    fn catch_all_matches_everything() {
        let routes = vec![RouteEntry {
            route: None,
            host: None,
            path: None,
            path_prefix: None,
            target: Target::Policy(3),
        }];
        assert_eq!(select(&routes, None, "", "/"), Some(0));
        assert_eq!(select(&routes, Some("r"), "a.b", "/x?y"), Some(0));
        assert_eq!(select(&[], None, "a", "/"), None);
    }
}
