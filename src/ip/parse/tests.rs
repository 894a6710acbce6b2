use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn strict_net_errors_name_the_reason() {
    let cases: &[(&str, &str)] = &[
        ("010.0.0.0/8", "leading zero"),
        ("10.0.0.0/08", "leading zero in prefix length"),
        ("127.1", "short form"),
        ("127.1/32", "short form"),
        ("0x7f.0.0.1", "hex"),
        ("0x7f000001", "hex"),
        ("10.0.0.0/33", "out of range"),
        ("::/129", "out of range"),
        ("10.0.0.0/+8", "decimal"),
        ("10.0.0.0/-1", "decimal"),
        ("10.0.0.0/", "empty prefix length"),
        ("/8", "empty address"),
        ("", "empty address"),
        ("foo", "invalid character"),
        ("1.2.3.4.5", "more than four octets"),
        ("256.0.0.0", "out of range"),
        ("1..2.3", "empty octet"),
        ("fe80::1%eth0", "zone"),
        ("1.1.1.0%a/24", "zone"),
        ("::ffff:1.2.03.4", "leading zero"),
        ("12345::", "four hex digits"),
        ("fe80::1::1", "malformed"),
        ("1.2.3.4 ", "invalid character"),
        (" 1.2.3.4", "invalid character"),
    ];
    for (input, want) in cases {
        let err = parse_net(input).unwrap_err();
        let NetError::InvalidCidr { text, why } = &err else {
            panic!("{input}: {err}");
        };
        assert!(why.contains(want), "{input}: {err}");
        assert_eq!(text, input);
        assert!(
            err.to_string().contains(&format!("{input:?}")),
            "error names the input: {err}"
        );
    }
}

/// The network a `HostBitsSet` error suggests, as text.
fn suggestion(err: NetError) -> String {
    match err {
        NetError::HostBitsSet { suggestion, .. } => suggestion.to_string(),
        other => panic!("not a host-bits error: {other}"),
    }
}

#[test]
fn host_bits_set_is_an_error_with_a_suggestion() {
    let err = parse_net("10.1.2.3/8").unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"10.1.2.3/8\" has host bits set (did you mean \"10.0.0.0/8\"?)"
    );
    assert_eq!(suggestion(err), "10.0.0.0/8");
    let err = parse_net("2001:db8::1/32").unwrap_err();
    assert_eq!(suggestion(err), "2001:db8::/32");
    assert!(parse_net("10.0.0.0/8").is_ok());
}

#[test]
fn bare_address_is_a_host_route() {
    assert_eq!(
        parse_net("203.0.113.7").unwrap().to_string(),
        "203.0.113.7/32"
    );
    assert_eq!(
        parse_net("2001:db8::7").unwrap().to_string(),
        "2001:db8::7/128"
    );
    assert_eq!(parse_net("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
}

#[test]
fn mapped_networks_become_ipv4() {
    assert_eq!(
        parse_net("::ffff:10.0.0.0/104").unwrap().to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(parse_net("::ffff:0:0/96").unwrap().to_string(), "0.0.0.0/0");
    assert_eq!(
        parse_net("::ffff:1.2.3.4").unwrap().to_string(),
        "1.2.3.4/32"
    );
    // Shorter than /96 it is a genuine IPv6 network and stays one.
    assert_eq!(parse_net("::/80").unwrap().to_string(), "::/80");
    // `::a.b.c.d` (deprecated IPv4-compatible) is not mapped: it stays IPv6 (to_ipv4() would unwrap it).
    assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
    assert_eq!(
        parse_net("::10.1.2.3").unwrap().to_string(),
        "::a01:203/128"
    );
    let err = parse_net("::ffff:10.1.0.0/104").unwrap_err();
    assert_eq!(suggestion(err), "::ffff:10.0.0.0/104");
}

#[test]
fn net_contains_is_family_strict_after_canonicalizing() {
    let n = parse_net("10.0.0.0/8").unwrap();
    assert!(n.contains(ip("10.1.2.3")));
    assert!(n.contains(ip("::ffff:10.1.2.3")));
    assert!(!n.contains(ip("11.0.0.0")));
    assert!(!n.contains(ip("::a01:203")));
    let all4 = parse_net("0.0.0.0/0").unwrap();
    assert!(all4.contains(ip("255.255.255.255")));
    assert!(!all4.contains(ip("::1")));
    let all6 = parse_net("::/0").unwrap();
    assert!(all6.contains(ip("::1")));
    assert!(!all6.contains(ip("1.2.3.4")));
    assert!(!all6.contains(ip("::ffff:1.2.3.4")));
}

#[test]
fn net_new_checks_like_parse() {
    assert_eq!(
        Net::new(ip("10.0.0.0"), 8).unwrap(),
        parse_net("10.0.0.0/8").unwrap()
    );
    let err = Net::new(ip("10.0.0.1"), 8).unwrap_err();
    assert!(
        matches!(err, NetError::NetHostBitsSet { suggestion, .. } if suggestion.to_string() == "10.0.0.0/8"),
        "{err}"
    );
    assert_eq!(
        Net::new(ip("10.0.0.0"), 33),
        Err(NetError::PrefixLength { len: 33, max: 32 })
    );
    assert_eq!(
        Net::new(ip("::ffff:10.0.0.0"), 104).unwrap().to_string(),
        "10.0.0.0/8"
    );
}

#[test]
fn parse_ip_is_strict_and_keeps_the_family() {
    assert_eq!(parse_ip("::ffff:1.2.3.4").unwrap(), ip("::ffff:1.2.3.4"));
    assert_eq!(
        parse_ip("FD9E:1A04:F01D::1").unwrap(),
        ip("fd9e:1a04:f01d::1")
    );
    for bad in [
        "127.1",
        "010.0.0.1",
        "0x7f.0.0.1",
        "fe80::1%eth0",
        "1.2.3.4/32",
        "",
    ] {
        let err = parse_ip(bad).unwrap_err();
        assert!(
            matches!(&err, NetError::InvalidAddress { text, .. } if text == bad),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("not a valid IP address"), "{err}");
    }
}

#[test]
fn peer_socket_addresses() {
    let cases: &[(&str, Option<&str>)] = &[
        ("127.0.0.1:5555", Some("127.0.0.1")),
        ("[::1]:5555", Some("::1")),
        ("[fe80::1%eth0]:80", Some("fe80::1")),
        ("[::ffff:10.1.2.3]:80", Some("10.1.2.3")),
        ("127.0.0.2", Some("127.0.0.2")),
        ("::1", Some("::1")),
        ("fe80::1%eth0", Some("fe80::1")),
        ("[::1]", Some("::1")),
        ("::ffff:127.0.0.1", Some("127.0.0.1")),
        ("", None),
        ("localhost:80", None),
        ("127.0.0.1:", None),
        ("127.0.0.1:65536", None),
        ("127.0.0.1:x", None),
        ("[1.2.3.4]:80", None),
        ("[::1]:", None),
        ("[::1]80", None),
        ("[::1", None),
        ("127.1:80", None),
        ("010.0.0.1:80", None),
        ("fe80::1%", None),
        ("1.2.3.4%eth0", None),
        ("127.0.0.1:08080", Some("127.0.0.1")),
        ("127.0.0.1:043032", None),
        // Zone ids: RFC 6874's characters (an interface name or number), at most 64; with or without a
        // port; anything else makes the address invalid (found by fuzzing: `[::1%\0\0@]` was ::1).
        ("[fe80::1%2]:80", Some("fe80::1")),
        ("[fe80::1%en0.100_a~b-c]", Some("fe80::1")),
        ("fe80::1%eth0:1", None),
        ("[::1%\0\0@]", None),
        ("[::9%.0 /  ]", None),
        ("[fe80::1%eth0]]:80", None),
        ("[fe80::1%a[b]:80", None),
        ("fe80::1%a/32", None),
        ("fe80::1%\u{7f}", None),
        (&format!("fe80::1%{}", "a".repeat(65)), None),
        ("fe80::1%%25", None),
    ];
    for (input, want) in cases {
        let got = peer_from_socket_addr(input);
        let want = match want {
            Some(w) => Peer::Ip(ip(w)),
            None => Peer::Invalid,
        };
        assert_eq!(got, want, "{input}");
    }
}

#[test]
fn to_canonical_not_to_ipv4_trap() {
    // ::1 must stay IPv6 loopback; to_ipv4() would make it 0.0.0.1 and a 0.0.0.0/8 rule would match it.
    assert_eq!(peer_from_socket_addr("[::1]:1"), Peer::Ip(ip("::1")));
    let zero8 = parse_net("0.0.0.0/8").unwrap();
    assert!(!zero8.contains(ip("::1")));
}

// Go net/netip: TestParseAddr, TestIs4In6, TestPrefix, TestParsePrefixError, TestPrefixMasked.
#[test]
fn go_netip_vectors() {
    let v: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/ip/go-netip-parse-and-prefix.json"
    )))
    .unwrap();
    let s = |x: &serde_json::Value| x.as_str().unwrap().to_string();
    let mut checked = 0;
    for case in v["parse_addr_valid"].as_array().unwrap() {
        let input = s(&case["in"]);
        let want = case.get("canonical").map(s);
        if input.contains('%') {
            // Zones: accepted on the wire (dropped), rejected in configuration.
            assert!(parse_ip(&input).is_err(), "{input}");
            let got = wire_ip(&input).unwrap();
            let no_zone = input.split('%').next().unwrap();
            assert_eq!(got, ip(no_zone), "{input}");
        } else {
            let got = parse_ip(&input).unwrap();
            if let Some(w) = want {
                assert_eq!(got.to_string(), w, "{input}");
            }
        }
        checked += 1;
    }
    for bad in v["parse_addr_must_reject"].as_array().unwrap() {
        let bad = s(bad);
        assert!(parse_ip(&bad).is_err(), "{bad}");
        assert!(wire_ip(&bad).is_none(), "{bad}");
        checked += 1;
    }
    for case in v["is_4in6_and_unmap"].as_array().unwrap() {
        let input = s(&case["in"]);
        let unmap = ip(&s(&case["unmap"]));
        // Deviation: Go accepts a six-digit group `000000`; RFC 4291 groups have at most four digits.
        if input.contains("000000") {
            assert!(wire_ip(&input).is_none(), "{input}");
            continue;
        }
        let got = wire_ip(&input).unwrap().to_canonical();
        assert_eq!(got, unmap, "{input}");
        assert_eq!(
            got.is_ipv4() && input.contains(':'),
            case["is4in6"].as_bool().unwrap()
        );
        checked += 1;
    }
    for case in v["prefix_contains"].as_array().unwrap() {
        let net = parse_net(&s(&case["prefix"])).unwrap();
        for a in case["contains"].as_array().unwrap() {
            assert!(net.contains(ip(&s(a))), "{net} {a}");
        }
        for a in case["not_contains"].as_array().unwrap() {
            assert!(!net.contains(ip(&s(a))), "{net} {a}");
        }
        checked += 1;
    }
    for bad in v["parse_prefix_must_reject"].as_array().unwrap() {
        let bad = s(bad);
        // Deviation: a bare address is a host route (/32, /128) in our lists; Go's ParsePrefix needs a '/'.
        if bad == "192.168.0.0" {
            assert_eq!(parse_net(&bad).unwrap().to_string(), "192.168.0.0/32");
            continue;
        }
        assert!(parse_net(&bad).is_err(), "{bad}");
        checked += 1;
    }
    for case in v["prefix_masked"].as_array().unwrap() {
        // Go masks silently; we refuse and suggest the masked form instead.
        let err = parse_net(&s(&case["in"])).unwrap_err();
        assert_eq!(suggestion(err), s(&case["masked"]));
        checked += 1;
    }
    assert!(checked > 60, "{checked}");
}

// Envoy test/common/network/cidr_range_test.cc.
#[test]
fn envoy_cidr_range_vectors() {
    let v: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/ip/envoy-cidr-range.json"
    )))
    .unwrap();
    let s = |x: &serde_json::Value| x.as_str().unwrap().to_string();
    for case in v["truncate_address_and_length"].as_array().unwrap() {
        let addr = ip(&s(&case[0]));
        let len_in = case[1].as_i64().unwrap();
        let masked_out = s(&case[2]);
        let len_out = case[3].as_i64().unwrap();
        let text = format!("{addr}/{len_in}");
        if masked_out.is_empty() || len_in != len_out {
            // Envoy clamps /33 to /32 and rejects negatives; we reject every out-of-range length.
            assert!(parse_net(&text).is_err(), "{text}");
            continue;
        }
        let want = format!("{masked_out}/{len_out}");
        if ip(&masked_out) == addr {
            assert_eq!(parse_net(&text).unwrap().to_string(), want);
        } else {
            // Envoy masks silently; we reject with the masked form as suggestion.
            assert_eq!(suggestion(parse_net(&text).unwrap_err()), want, "{text}");
        }
    }
    for case in v["is_in_range"].as_array().unwrap() {
        let range = s(&case["range"]);
        let net = match case.get("canonical") {
            Some(c) => {
                assert_eq!(suggestion(parse_net(&range).unwrap_err()), s(c));
                parse_net(&s(c)).unwrap()
            }
            None => parse_net(&range).unwrap(),
        };
        for a in case["in"].as_array().unwrap() {
            assert!(net.contains(ip(&s(a))), "{net} {a}");
        }
        for a in case["not_in"].as_array().unwrap() {
            assert!(!net.contains(ip(&s(a))), "{net} {a}");
        }
    }
    for bad in v["invalid_ranges"].as_array().unwrap() {
        assert!(parse_net(&s(bad)).is_err(), "{bad}");
    }
    for bad in v["ip_list_rejects"].as_array().unwrap() {
        let bad = s(bad);
        let bad = bad.trim_end_matches(" (no /len)");
        // "192.168.1.1" without a length: Envoy's legacy IpList wanted a length; a bare address is a /32 here.
        if bad == "192.168.1.1" {
            assert!(parse_net(bad).is_ok());
            continue;
        }
        assert!(parse_net(bad).is_err(), "{bad}");
    }
    let net = parse_net("192.168.1.0/24").unwrap();
    let list = &v["ip_list_192.168.1.1/24"];
    for a in list["contains"].as_array().unwrap() {
        assert!(net.contains(ip(&s(a))));
    }
    for a in list["not_contains"].as_array().unwrap() {
        assert!(!net.contains(ip(&s(a))));
    }
    // Envoy is family-strict and does not unmap; we canonicalize mapped clients first (deliberate).
    assert!(net.contains(ip("::ffff:192.168.1.3")));
}

// Observed traps in Rust std 1.95 and ipnet 2.12.
#[test]
fn rust_std_and_ipnet_traps() {
    let v: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/ip/rust-std-and-ipnet-behaviour.json"
    )))
    .unwrap();
    for case in v["observed_std"].as_array().unwrap() {
        let input = case["in"].as_str().unwrap();
        if case.get("Ipv4Addr").is_some_and(|x| x.is_null())
            || case.get("IpAddr").is_some_and(|x| x.is_null())
        {
            assert!(parse_ip(input).is_err(), "{input}");
        }
        if let Some(c) = case.get("to_canonical") {
            let got = wire_ip(input).unwrap().to_canonical();
            assert_eq!(got, ip(c.as_str().unwrap()), "{input}");
        }
    }
    // ipnet accepts these; we do not.
    for input in [
        "010.0.0.0/8",
        "10.0.0.0/08",
        "10.0.0.1/8",
        "0127.0.0.1/32",
        "1.1.1.0/33",
        "10.0.0.0/+8",
    ] {
        assert!(parse_net(input).is_err(), "{input}");
    }
    // ipnet keeps ::ffff:10.0.0.0/104 as IPv6, missing IPv4 clients; ours is 10.0.0.0/8 and sees both.
    let n = parse_net("::ffff:10.0.0.0/104").unwrap();
    assert!(n.contains(ip("10.1.2.3")) && n.contains(ip("::ffff:10.1.2.3")));
}
