//! Which address is the client's: the peer, or an X-Forwarded-For entry vouched for by trusted hops or
//! trusted proxies. X-Real-IP, X-Envoy-External-Address and Forwarded are never read: any client can send them.

use std::fmt;
use std::net::IpAddr;

use super::parse::{parse_net, wire_ip, Net};
use super::table::IpTable;
use crate::error::{index, join, Errors};
use crate::request::{Headers, Peer};

/// Document-level `client_ip`.
#[derive(Debug, Clone, Default)]
pub struct ClientIpInput {
    pub xff_trusted_hops: u32,
    pub trusted_proxies: Vec<String>,
}

crate::json::json_object!(ClientIpInput {
    xff_trusted_hops: "xff_trusted_hops" => read,
    trusted_proxies: "trusted_proxies" => read,
});

/// The address the IP checks see: canonical (IPv4-mapped IPv6 is IPv4), or Invalid when the entry taken
/// as the client's could not be parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    Ip(IpAddr),
    Invalid,
}

impl ClientAddr {
    /// The address, when valid.
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            ClientAddr::Ip(ip) => Some(ip),
            ClientAddr::Invalid => None,
        }
    }
}

impl From<Peer> for ClientAddr {
    fn from(p: Peer) -> ClientAddr {
        match p {
            Peer::Ip(ip) => ClientAddr::Ip(ip.to_canonical()),
            Peer::Invalid => ClientAddr::Invalid,
        }
    }
}

/// Debug names the family only: raw client addresses stay out of logs and error output.
impl fmt::Debug for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::Ip(IpAddr::V4(_)) => f.write_str("Ip(v4)"),
            ClientAddr::Ip(IpAddr::V6(_)) => f.write_str("Ip(v6)"),
            ClientAddr::Invalid => f.write_str("Invalid"),
        }
    }
}

/// Compiled `client_ip`.
#[derive(Debug, Clone, Default)]
pub struct ClientIpConfig {
    hops: u32,
    proxies: IpTable,
}

impl ClientIpConfig {
    /// Compiles `client_ip` (path: its JSON path, e.g. `client_ip`). Setting both `xff_trusted_hops > 0`
    /// and `trusted_proxies` is an error: the two models disagree on which entry is the client's.
    pub fn compile(input: &ClientIpInput, path: &str, errs: &mut Errors) -> ClientIpConfig {
        let list_path = join(path, "trusted_proxies");
        let mut nets: Vec<Net> = Vec::with_capacity(input.trusted_proxies.len());
        for (i, entry) in input.trusted_proxies.iter().enumerate() {
            if entry.starts_with('@') {
                errs.push(
                    index(&list_path, i),
                    format!("{entry:?}: ip_lists references are not allowed here"),
                );
                continue;
            }
            match parse_net(entry) {
                Ok(n) => nets.push(n),
                Err(e) => errs.push(index(&list_path, i), e.to_string()),
            }
        }
        if input.xff_trusted_hops > 0 && !input.trusted_proxies.is_empty() {
            errs.push(
                join(path, "xff_trusted_hops"),
                "set either xff_trusted_hops or trusted_proxies, not both",
            );
        }
        ClientIpConfig {
            hops: input.xff_trusted_hops,
            proxies: IpTable::from_nets(&nets),
        }
    }

    /// Whether `resolve` reads X-Forwarded-For (so the adapter fetches it only then).
    pub fn needs_xff(&self) -> bool {
        self.hops > 0 || !self.proxies.is_empty()
    }

    /// Whether headers set by the peer (X-Forwarded-Proto) may be believed: the peer is a trusted proxy,
    /// or hop counting is on (Envoy trusts X-Forwarded-Proto exactly when xff_num_trusted_hops > 0).
    pub fn peer_is_trusted(&self, peer: Peer) -> bool {
        self.hops > 0
            || match peer {
                Peer::Ip(ip) => self.proxies.contains(ip),
                Peer::Invalid => false,
            }
    }

    /// The client address for one request.
    pub fn resolve(&self, peer: Peer, headers: Headers) -> ClientAddr {
        if self.hops > 0 {
            // Envoy's use_remote_address=true rule: the Nth entry from the right of the header as the client
            // sent it, else the peer. The filter sees the header after Envoy appended the peer (always, with
            // use_remote_address: true), so that is the (N+1)th entry from the right here, the same rule as
            // Envoy's for a header that already holds the last hop (use_remote_address: false).
            let skip = usize::try_from(self.hops).unwrap_or(usize::MAX);
            return match xff_from_right(headers).nth(skip) {
                Some(entry) => wire_client(entry),
                None => ClientAddr::from(peer),
            };
        }
        if self.proxies.is_empty() {
            return ClientAddr::from(peer);
        }
        let mut current = match peer {
            Peer::Ip(ip) => ip.to_canonical(),
            Peer::Invalid => return ClientAddr::Invalid,
        };
        // The rightmost entry is Envoy's own append (use_remote_address: true): the peer, or, for a peer of
        // 127.0.0.1 or ::1, Envoy's host address, which is no client and no trusted proxy. Skip it.
        for entry in xff_from_right(headers).skip(1) {
            if !self.proxies.contains(current) {
                return ClientAddr::Ip(current);
            }
            match wire_ip(entry) {
                Some(ip) => current = ip.to_canonical(),
                // The entry in the client's position is garbage: not skipped, not trusted.
                None => return ClientAddr::Invalid,
            }
        }
        // Every hop was a trusted proxy (or there was no XFF): the leftmost address is the best we know.
        ClientAddr::Ip(current)
    }
}

/// X-Forwarded-For entries from the right, across all XFF headers in order. Empty list elements are
/// not entries (RFC 9110 5.6.1 says recipients ignore them); counting happens from the right, where
/// the trusted proxies write, so the client's side cannot shift positions with them.
fn xff_from_right<'a>(headers: Headers<'a>) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .rev()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|(_, v)| v.rsplit(','))
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty())
}

fn wire_client(entry: &str) -> ClientAddr {
    match wire_ip(entry) {
        Some(ip) => ClientAddr::Ip(ip.to_canonical()),
        None => ClientAddr::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peer(s: &str) -> Peer {
        Peer::Ip(ip(s))
    }

    fn cfg(hops: u32, proxies: &[&str]) -> ClientIpConfig {
        let input = ClientIpInput {
            xff_trusted_hops: hops,
            trusted_proxies: proxies.iter().map(|s| s.to_string()).collect(),
        };
        let mut errs = Errors::default();
        let c = ClientIpConfig::compile(&input, "client_ip", &mut errs);
        assert!(errs.is_empty(), "{:?}", errs.into_vec());
        c
    }

    fn xff(values: &[&str]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|v| ("x-forwarded-for".to_string(), v.to_string()))
            .collect()
    }

    fn resolve(c: &ClientIpConfig, p: Peer, h: &[(String, String)]) -> ClientAddr {
        c.resolve(p, Headers::new(h))
    }

    #[test]
    fn default_is_the_peer_whatever_headers_say() {
        let c = cfg(0, &[]);
        let mut h = xff(&["10.0.0.1"]);
        h.push(("x-real-ip".into(), "10.0.0.2".into()));
        h.push(("x-envoy-external-address".into(), "10.0.0.3".into()));
        h.push(("forwarded".into(), "for=10.0.0.4".into()));
        assert_eq!(
            resolve(&c, peer("203.0.113.9"), &h),
            ClientAddr::Ip(ip("203.0.113.9"))
        );
        assert_eq!(
            resolve(&c, peer("::ffff:203.0.113.9"), &h),
            ClientAddr::Ip(ip("203.0.113.9"))
        );
        assert_eq!(resolve(&c, Peer::Invalid, &h), ClientAddr::Invalid);
        assert!(!c.needs_xff());
        assert!(!c.peer_is_trusted(peer("10.0.0.1")));
    }

    #[test]
    fn trusted_hops_count_from_the_right_across_headers() {
        // The rightmost entry is the peer, appended by Envoy (use_remote_address: true).
        let c = cfg(2, &[]);
        let h = xff(&["1.1.1.1, 2.2.2.2", "3.3.3.3,9.9.9.9"]);
        assert_eq!(
            resolve(&c, peer("9.9.9.9"), &h),
            ClientAddr::Ip(ip("2.2.2.2"))
        );
        let h = xff(&["1.1.1.1,2.2.2.2,,", " ", "3.3.3.3\t", "9.9.9.9"]);
        assert_eq!(
            resolve(&c, peer("9.9.9.9"), &h),
            ClientAddr::Ip(ip("2.2.2.2"))
        );
        // Fewer entries than hops: the peer, never the leftmost (client-written) entry.
        let h = xff(&["3.3.3.3", "9.9.9.9"]);
        assert_eq!(
            resolve(&c, peer("9.9.9.9"), &h),
            ClientAddr::Ip(ip("9.9.9.9"))
        );
        assert_eq!(
            resolve(&c, peer("9.9.9.9"), &[]),
            ClientAddr::Ip(ip("9.9.9.9"))
        );
        // Header names are matched case-insensitively.
        let h = vec![(
            "X-Forwarded-For".to_string(),
            "1.1.1.1, 2.2.2.2, 9.9.9.9".to_string(),
        )];
        assert_eq!(
            resolve(&c, peer("9.9.9.9"), &h),
            ClientAddr::Ip(ip("1.1.1.1"))
        );
        assert!(c.needs_xff());
        assert!(c.peer_is_trusted(Peer::Invalid));
    }

    #[test]
    fn garbage_in_the_client_position_is_invalid_not_skipped() {
        let c = cfg(2, &[]);
        for bad in [
            "unknown",
            "010.0.0.1",
            "1.2.3.4:80",
            "[::1]",
            "127.1",
            "fe80::1%",
        ] {
            let h = xff(&[&format!("5.5.5.5, {bad}, 3.3.3.3, 9.9.9.9")]);
            assert_eq!(
                resolve(&c, peer("9.9.9.9"), &h),
                ClientAddr::Invalid,
                "{bad}"
            );
        }
        // Garbage elsewhere does not matter; zone ids are dropped; mapped addresses are unwrapped.
        let h = xff(&["garbage, fe80::1%eth0, 3.3.3.3, 9.9.9.9"]);
        assert_eq!(
            resolve(&c, peer("9.9.9.9"), &h),
            ClientAddr::Ip(ip("fe80::1"))
        );
        let h = xff(&["::ffff:10.1.2.3, 3.3.3.3, 9.9.9.9"]);
        assert_eq!(
            resolve(&c, peer("9.9.9.9"), &h),
            ClientAddr::Ip(ip("10.1.2.3"))
        );
    }

    #[test]
    fn trusted_proxies_walk_leftwards() {
        let c = cfg(0, &["10.0.0.0/8", "fd00::/8"]);
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            // Untrusted peer: the peer, whatever XFF says (spoofing).
            ("203.0.113.9", &["10.0.0.1"], Some("203.0.113.9")),
            // Trusted peer: the first untrusted address from the right.
            (
                "10.0.0.5",
                &["198.51.100.1, 203.0.113.9"],
                Some("203.0.113.9"),
            ),
            (
                "10.0.0.5",
                &["198.51.100.1, 203.0.113.9, 10.1.1.1"],
                Some("203.0.113.9"),
            ),
            (
                "fd00::5",
                &["198.51.100.1", "203.0.113.9", "fd12::1"],
                Some("203.0.113.9"),
            ),
            ("::ffff:10.0.0.5", &["203.0.113.9"], Some("203.0.113.9")),
            // A client that writes a trusted address itself cannot get past its own real address.
            ("10.0.0.5", &["10.9.9.9, 203.0.113.9"], Some("203.0.113.9")),
            // Trusted all the way: the leftmost.
            ("10.0.0.5", &["10.0.0.1, 10.0.0.2"], Some("10.0.0.1")),
            ("10.0.0.5", &[], Some("10.0.0.5")),
            // Garbage where the client is taken: invalid.
            ("10.0.0.5", &["203.0.113.9, bogus"], None),
            ("10.0.0.5", &["203.0.113.9, 10.0.0.1, 0x7f.0.0.1"], None),
            // Garbage beyond the client: irrelevant.
            ("10.0.0.5", &["bogus, 203.0.113.9"], Some("203.0.113.9")),
        ];
        for (p, h, want) in cases {
            // As the filter sees it: Envoy appended the peer.
            let mut h = xff(h);
            h.push(("x-forwarded-for".to_string(), p.to_string()));
            let got = resolve(&c, peer(p), &h);
            let want = match want {
                Some(w) => ClientAddr::Ip(ip(w)),
                None => ClientAddr::Invalid,
            };
            assert_eq!(got, want, "peer {p} xff {h:?}");
        }
        assert_eq!(
            resolve(&c, Peer::Invalid, &xff(&["1.2.3.4"])),
            ClientAddr::Invalid
        );
        assert!(c.peer_is_trusted(peer("10.1.2.3")));
        assert!(c.peer_is_trusted(peer("::ffff:10.1.2.3")));
        assert!(!c.peer_is_trusted(peer("11.1.2.3")));
        assert!(!c.peer_is_trusted(Peer::Invalid));
        assert!(c.needs_xff());
    }

    // Regression (found through Envoy): for a peer of 127.0.0.1 or ::1 Envoy appends its own host address,
    // not the peer; a trusted proxy on loopback must not make that address the client.
    #[test]
    fn a_trusted_proxy_on_loopback_is_walked_past_envoys_own_address() {
        let c = cfg(0, &["127.0.0.1", "::1"]);
        for p in ["127.0.0.1", "::1"] {
            let h = xff(&["10.0.0.1,192.0.2.2"]);
            assert_eq!(
                resolve(&c, peer(p), &h),
                ClientAddr::Ip(ip("10.0.0.1")),
                "{p}"
            );
            // Nothing forwarded: the proxy itself.
            let h = xff(&["192.0.2.2"]);
            assert_eq!(resolve(&c, peer(p), &h), ClientAddr::Ip(ip(p)), "{p}");
        }
        // An untrusted peer is the client, whatever Envoy appended.
        let h = xff(&["10.0.0.1,192.0.2.2"]);
        assert_eq!(
            resolve(&c, peer("127.0.0.9"), &h),
            ClientAddr::Ip(ip("127.0.0.9"))
        );
    }

    #[test]
    fn config_errors_name_the_path() {
        let input = ClientIpInput {
            xff_trusted_hops: 1,
            trusted_proxies: vec!["10.0.0.0/8".into(), "010.0.0.0/8".into(), "@office".into()],
        };
        let mut errs = Errors::default();
        ClientIpConfig::compile(&input, "client_ip", &mut errs);
        let errs: Vec<String> = errs.into_vec().iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with("client_ip.trusted_proxies[1]: \"010.0.0.0/8\"")
                && errs[0].contains("leading zero")
        );
        assert!(errs[1].starts_with("client_ip.trusted_proxies[2]: "));
        assert!(errs[2].starts_with("client_ip.xff_trusted_hops: "));
    }

    #[test]
    fn input_rejects_unknown_fields() {
        let ok: ClientIpInput = crate::json::from_str(r#"{"xff_trusted_hops": 1}"#).unwrap();
        assert_eq!(ok.xff_trusted_hops, 1);
        assert!(crate::json::from_str::<ClientIpInput>(r#"{"xff_num_trusted_hops": 1}"#).is_err());
    }

    #[test]
    fn debug_hides_the_address() {
        let d = format!("{:?}", ClientAddr::Ip(ip("203.0.113.9")));
        assert_eq!(d, "Ip(v4)");
    }

    // Envoy docs, http_conn_man headers "x-forwarded-for". The filter sees X-Forwarded-For after Envoy
    // (use_remote_address: true) appended the peer: the use_remote_address=true cases are checked against
    // that header (`xff_out`), and the use_remote_address=false cases with N > 0, whose header already ends
    // with the last hop, against theirs as given.
    #[test]
    fn envoy_xff_trusted_hops_vectors() {
        let v: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/ip/envoy-xff-trusted-hops.json"
        )))
        .unwrap();
        let mut cases: Vec<&serde_json::Value> = v["cases"].as_array().unwrap().iter().collect();
        cases.extend(
            v["derived_edge_cases_from_the_rules_(not_verbatim_examples)"]
                .as_array()
                .unwrap(),
        );
        let mut checked = 0;
        for case in cases {
            let hops = case["xff_num_trusted_hops"].as_u64().unwrap() as u32;
            let downstream = case["downstream_ip"].as_str().unwrap();
            let seen = if case["use_remote_address"].as_bool().unwrap() {
                match (case["xff_out"].as_str(), case["xff_in"].as_str()) {
                    (Some(out), _) => out.to_string(),
                    (None, Some(x)) => format!("{x}, {downstream}"),
                    (None, None) => downstream.to_string(),
                }
            } else if hops > 0 {
                case["xff_in"].as_str().unwrap().to_string()
            } else {
                // Envoy trusting the rightmost entry of a client's header is not a model we offer.
                continue;
            };
            let want = ClientAddr::Ip(ip(case["trusted_client"].as_str().unwrap()));
            let got = resolve(&cfg(hops, &[]), peer(downstream), &xff(&[&seen]));
            assert_eq!(got, want, "{case}");
            checked += 1;
        }
        assert_eq!(checked, 6);
    }

    // Regression (found through Envoy): with one trusted hop, the client is the address the peer sent,
    // not the peer Envoy appended.
    #[test]
    fn one_trusted_hop_skips_the_peer_envoy_appended() {
        let c = cfg(1, &[]);
        let h = xff(&["10.0.0.1,127.0.0.2"]);
        assert_eq!(
            resolve(&c, peer("127.0.0.2"), &h),
            ClientAddr::Ip(ip("10.0.0.1"))
        );
        // Only the appended peer: no address was forwarded, the peer is the client.
        let h = xff(&["127.0.0.2"]);
        assert_eq!(
            resolve(&c, peer("127.0.0.2"), &h),
            ClientAddr::Ip(ip("127.0.0.2"))
        );
    }
}
