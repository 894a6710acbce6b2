//! The two anonymization primitives: IP truncation and keyed pseudonyms.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of the HMAC output kept in a pseudonym: 128 bits, far above the 64-bit floor for linking.
pub const PSEUDONYM_BYTES: usize = 16;

/// Minimum pseudonym key length in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Keeps the first `v4_prefix` / `v6_prefix` bits of an address and zeroes the rest.
///
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is canonicalized to IPv4 first: the IPv6 rule would either wipe it
/// (`/48` → `::`) or, with a long prefix, keep the whole IPv4 address. Addresses that carry a client's
/// IPv4 address inside ([`Embedded`]: 6to4, Teredo, NAT64) keep their IPv6 form with only the kept bits
/// of that IPv4 address, everything else zeroed: a /48 of 6to4 (`2002:c633:6407::`) is the whole IPv4
/// address. Prefixes above the family width keep every bit.
pub fn truncate_ip(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(v4_prefix))),
        IpAddr::V6(a) => match Embedded::of(a) {
            Some((kind, v4)) => IpAddr::V6(kind.rebuild(u32::from(v4) & v4_mask(v4_prefix))),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(v6_prefix))),
        },
    }
}

/// IPv6 forms that carry a client's IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedded {
    /// 6to4, `2002::/16` (RFC 3056): the site's IPv4 address in bits 16..48.
    SixToFour,
    /// Teredo, `2001::/32` (RFC 4380): the client's IPv4 address, inverted, in the last 32 bits (the
    /// server address, flags and port are dropped when rebuilt).
    Teredo,
    /// NAT64's well-known prefix, `64:ff9b::/96` (RFC 6052): the IPv4 address in the last 32 bits.
    Nat64,
}

impl Embedded {
    /// The form of `a` and the IPv4 address it carries, if it is one of these forms.
    pub fn of(a: Ipv6Addr) -> Option<(Embedded, Ipv4Addr)> {
        let v = u128::from(a);
        let low = (v & 0xffff_ffff) as u32;
        if v >> 112 == 0x2002 {
            Some((Embedded::SixToFour, Ipv4Addr::from((v >> 80) as u32)))
        } else if v >> 96 == 0x2001_0000 {
            Some((Embedded::Teredo, Ipv4Addr::from(!low)))
        } else if v >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
            Some((Embedded::Nat64, Ipv4Addr::from(low)))
        } else {
            None
        }
    }

    /// This form around `v4`, every other bit zero.
    fn rebuild(self, v4: u32) -> Ipv6Addr {
        let v4 = u128::from(v4);
        Ipv6Addr::from(match self {
            Embedded::SixToFour => 0x2002 << 112 | v4 << 80,
            Embedded::Teredo => 0x2001_0000 << 96 | (!v4 & 0xffff_ffff),
            Embedded::Nat64 => 0x0064_ff9b << 96 | v4,
        })
    }
}

fn v4_mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        1..=31 => u32::MAX << (32 - u32::from(prefix)),
        _ => u32::MAX,
    }
}

fn v6_mask(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        1..=127 => u128::MAX << (128 - u32::from(prefix)),
        _ => u128::MAX,
    }
}

/// Parses one address as it appears in `X-Forwarded-For` and similar headers: a bare address, `[v6]`,
/// `v4:port`, `[v6]:port`, with an IPv6 zone id (`fe80::1%eth0`) dropped. Anything else is `None`.
pub fn parse_address(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    // Brackets without a port, and zone ids, which std does not parse.
    let inner = match s.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => s,
    };
    let without_zone = match inner.split_once('%') {
        Some((addr, _zone)) => addr,
        None => inner,
    };
    without_zone.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The canonical binary form of an address that pseudonyms are computed over: 4 bytes for IPv4 (also
/// when it arrived IPv4-mapped, or inside 6to4, Teredo or NAT64: one client, one pseudonym), 16 for other
/// IPv6. Text never enters the MAC, so spellings cannot split a client.
pub fn canonical_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut buf = [0u8; 16];
    let v4 = match ip.to_canonical() {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => match Embedded::of(a) {
            Some((_, v4)) => v4,
            None => return (a.octets(), 16),
        },
    };
    buf[..4].copy_from_slice(&v4.octets());
    (buf, 4)
}

/// A pre-keyed HMAC-SHA-256 state for pseudonyms; cloned per value, so the key schedule runs once.
#[derive(Clone)]
pub struct PseudonymKey(Hmac<Sha256>);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

impl PseudonymKey {
    /// Keys the MAC once. The ≥ 32-byte rule is enforced where the key is resolved; `None` cannot happen
    /// for HMAC (any key length is accepted) but is not unwrapped.
    pub fn new(key: &[u8]) -> Option<PseudonymKey> {
        Hmac::<Sha256>::new_from_slice(key).ok().map(PseudonymKey)
    }

    /// `base64url(HMAC-SHA-256(key, label ‖ 0x00 ‖ value)[..16])`, 22 characters, no padding.
    pub fn pseudonym(&self, label: &str, value: &[u8]) -> String {
        let mut out = String::with_capacity(22);
        self.push_pseudonym(&mut out, label, value);
        out
    }

    /// [`PseudonymKey::pseudonym`], appended to `out` (the record writes it in place).
    pub fn push_pseudonym(&self, out: &mut String, label: &str, value: &[u8]) {
        let mut mac = self.0.clone();
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        let short = tag.get(..PSEUDONYM_BYTES).unwrap_or(&tag);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(short, out);
    }

    /// The pseudonym of an address over its canonical binary form.
    pub fn pseudonym_ip(&self, label: &str, ip: IpAddr) -> String {
        let mut out = String::with_capacity(22);
        self.push_pseudonym_ip(&mut out, label, ip);
        out
    }

    /// [`PseudonymKey::pseudonym_ip`], appended to `out`.
    pub fn push_pseudonym_ip(&self, out: &mut String, label: &str, ip: IpAddr) {
        let (buf, len) = canonical_bytes(ip);
        self.push_pseudonym(out, label, buf.get(..len).unwrap_or(&buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/anonymization/ip-truncation.json"
    ));

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn truncation_vectors() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let mut checked = 0;
        for ex in v["derived_examples"].as_array().unwrap() {
            let input = ex["in"].as_str().unwrap();
            let v4 = ex["ipv4_keep_bits"].as_u64().unwrap_or(24) as u8;
            let v6 = ex["ipv6_keep_bits"].as_u64().unwrap_or(48) as u8;
            let want = ex["out"]
                .as_str()
                .or_else(|| ex["out_expected_after_canonicalize"].as_str());
            let addr = parse_address(input).unwrap();
            let got = truncate_ip(addr, v4, v6);
            match want {
                Some(w) => assert_eq!(got, ip(w), "{input}"),
                // fe80::1%eth0: the zone id is dropped and the /48 rule applies.
                None => assert_eq!(got, ip("fe80::"), "{input}"),
            }
            checked += 1;
        }
        assert_eq!(checked, 6);
        // The published PostHog example (last octet).
        for ex in v["published_examples"].as_array().unwrap() {
            if ex["rule"] == "last octet" {
                let got = truncate_ip(ip(ex["in"].as_str().unwrap()), 24, 48);
                assert_eq!(got, ip(ex["out"].as_str().unwrap()));
            }
        }
    }

    #[test]
    fn truncation_table() {
        let cases = [
            ("192.0.2.77", 24, 48, "192.0.2.0"),
            ("192.0.2.77", 0, 48, "0.0.0.0"),
            ("192.0.2.77", 32, 48, "192.0.2.77"),
            ("192.0.2.77", 40, 48, "192.0.2.77"),
            ("192.0.2.77", 1, 48, "128.0.0.0"),
            ("192.0.2.77", 31, 48, "192.0.2.76"),
            ("2001:db8:85a3:8d3::1", 24, 48, "2001:db8:85a3::"),
            ("2001:db8:85a3:8d3::1", 24, 0, "::"),
            ("2001:db8:85a3:8d3::1", 24, 128, "2001:db8:85a3:8d3::1"),
            ("2001:db8:85a3:8d3::1", 24, 200, "2001:db8:85a3:8d3::1"),
            ("::ffff:192.0.2.77", 24, 48, "192.0.2.0"),
            ("::ffff:192.0.2.77", 32, 0, "192.0.2.77"),
            // Not mapped: `::1` must stay IPv6 (to_ipv4() would make it 0.0.0.1).
            ("::1", 24, 48, "::"),
            ("::1", 24, 128, "::1"),
            ("::102:304", 24, 128, "::102:304"),
        ];
        for (input, v4, v6, want) in cases {
            assert_eq!(
                truncate_ip(ip(input), v4, v6),
                ip(want),
                "{input} /{v4} /{v6}"
            );
        }
    }

    /// Addresses that embed a client's IPv4 address are cut on that address with the IPv4 prefix,
    /// whatever the IPv6 prefix (a /48 of 6to4 is the whole IPv4 address).
    #[test]
    fn embedded_ipv4_is_truncated_with_the_ipv4_prefix() {
        let cases = [
            // 6to4 of 198.51.100.7, with a subnet and an interface id.
            ("2002:c633:6407::", 24, 48, "2002:c633:6400::"),
            ("2002:c633:6407:1234:5678::9", 24, 48, "2002:c633:6400::"),
            ("2002:c633:6407::", 24, 128, "2002:c633:6400::"),
            ("2002:c633:6407::", 32, 0, "2002:c633:6407::"),
            ("2002:c633:6407::", 16, 48, "2002:c633::"),
            // Teredo: server 65.54.227.120, client 198.51.100.7 stored inverted (39cc:9bf8).
            (
                "2001:0:4136:e378:8000:63bf:39cc:9bf8",
                24,
                48,
                "2001::39cc:9bff",
            ),
            (
                "2001:0:4136:e378:8000:63bf:39cc:9bf8",
                32,
                128,
                "2001::39cc:9bf8",
            ),
            (
                "2001:0:4136:e378:8000:63bf:39cc:9bf8",
                0,
                128,
                "2001::ffff:ffff",
            ),
            // NAT64 well-known prefix.
            ("64:ff9b::c633:6407", 24, 128, "64:ff9b::c633:6400"),
            // Neighbours of these ranges are plain IPv6.
            ("2001:db8:c633:6407::", 24, 48, "2001:db8:c633::"),
            ("2003:c633:6407::", 24, 32, "2003:c633::"),
            ("64:ff9b:1::c633:6407", 24, 48, "64:ff9b:1::"),
        ];
        for (input, v4, v6, want) in cases {
            assert_eq!(
                truncate_ip(ip(input), v4, v6),
                ip(want),
                "{input} /{v4} /{v6}"
            );
            let once = truncate_ip(ip(input), v4, v6);
            assert_eq!(truncate_ip(once, v4, v6), once, "{input}: idempotent");
        }
    }

    #[test]
    fn embedded_ipv4_is_one_client_for_pseudonyms() {
        let k = PseudonymKey::new(&[7; 32]).unwrap();
        let plain = k.pseudonym_ip("client_ip", ip("198.51.100.7"));
        for form in [
            "2002:c633:6407::",
            "2002:c633:6407:1::5",
            "2001:0:4136:e378:8000:63bf:39cc:9bf8",
            "64:ff9b::c633:6407",
            "::ffff:198.51.100.7",
        ] {
            assert_eq!(k.pseudonym_ip("client_ip", ip(form)), plain, "{form}");
        }
        assert_ne!(k.pseudonym_ip("client_ip", ip("2001:db8::1")), plain);
    }

    #[test]
    fn truncation_is_idempotent() {
        for s in [
            "192.0.2.77",
            "::ffff:10.1.2.3",
            "2001:db8:85a3:8d3::1",
            "::1",
            "255.255.255.255",
        ] {
            for (v4, v6) in [(24, 48), (16, 96), (0, 0), (32, 128), (7, 33)] {
                let once = truncate_ip(ip(s), v4, v6);
                assert_eq!(truncate_ip(once, v4, v6), once, "{s}");
            }
        }
    }

    #[test]
    fn address_parsing() {
        let cases = [
            ("192.0.2.1", Some("192.0.2.1")),
            (" 192.0.2.1 ", Some("192.0.2.1")),
            ("192.0.2.1:8080", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("fe80::1%eth0", Some("fe80::1")),
            ("[fe80::1%25eth0]:80", Some("fe80::1")),
            ("unknown", None),
            ("", None),
            ("_hidden", None),
            ("010.0.0.1", None),
            ("1.2.3", None),
            ("1.2.3.4.5", None),
            ("evil\u{1b}[31m", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_address(input), want.map(ip), "{input:?}");
        }
    }

    fn key(b: u8) -> PseudonymKey {
        PseudonymKey::new(&[b; 32]).unwrap()
    }

    #[test]
    fn pseudonym_format_and_known_answer() {
        // Independent computation with the hmac crate directly (label ‖ 0x00 ‖ 4 bytes).
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(b"client_ip\x00\xc0\x00\x02\x4d");
        let tag = mac.finalize().into_bytes();
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..16]);
        let got = key(7).pseudonym_ip("client_ip", ip("192.0.2.77"));
        assert_eq!(got, want);
        assert_eq!(got.len(), 22);
        assert!(got
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn pseudonym_stable_and_rotates() {
        let a = key(1).pseudonym_ip("client_ip", ip("192.0.2.77"));
        assert_eq!(a, key(1).pseudonym_ip("client_ip", ip("192.0.2.77")));
        assert_ne!(a, key(2).pseudonym_ip("client_ip", ip("192.0.2.77")));
        assert_ne!(a, key(1).pseudonym_ip("client_ip", ip("192.0.2.78")));
    }

    #[test]
    fn pseudonym_domain_separation() {
        let k = key(3);
        let v = b"alice";
        assert_ne!(k.pseudonym("key_id", v), k.pseudonym("header:x-user-id", v));
        assert_ne!(k.pseudonym("client_ip", v), k.pseudonym("key_id", v));
        // The 0x00 separator: ("ab", "c") and ("a", "bc") do not collide.
        assert_ne!(k.pseudonym("ab", b"c"), k.pseudonym("a", b"bc"));
    }

    #[test]
    fn pseudonym_canonical_forms() {
        let k = key(4);
        let same = [
            ("1.2.3.4", "::ffff:1.2.3.4"),
            ("1.2.3.4", "::ffff:102:304"),
            ("2001:DB8::1", "2001:db8::1"),
            ("2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001"),
            ("2001:db8::1", "[2001:db8::1]:443"),
            ("1.2.3.4", "1.2.3.4:80"),
        ];
        for (a, b) in same {
            assert_eq!(
                k.pseudonym_ip("client_ip", parse_address(a).unwrap()),
                k.pseudonym_ip("client_ip", parse_address(b).unwrap()),
                "{a} vs {b}"
            );
        }
        // IPv4-compatible (deprecated) `::1.2.3.4` is a different address from 1.2.3.4.
        assert_ne!(
            k.pseudonym_ip("client_ip", ip("1.2.3.4")),
            k.pseudonym_ip("client_ip", ip("::1.2.3.4"))
        );
    }

    #[test]
    fn key_debug_hides_key() {
        let dbg = format!("{:?}", key(0x41));
        assert!(!dbg.contains("65") && !dbg.contains("41") && !dbg.contains('A'));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn v4_never_keeps_a_masked_bit(a in any::<u32>(), p in 0u8..=40) {
            let IpAddr::V4(t) = truncate_ip(IpAddr::V4(Ipv4Addr::from(a)), p, 48) else {
                return Err(TestCaseError::fail("family changed"));
            };
            let keep = u32::from(p.min(32));
            let low = if keep == 32 { 0 } else { u32::MAX >> keep };
            prop_assert_eq!(u32::from(t) & low, 0);
            prop_assert_eq!(u32::from(t), a & !low);
        }

        #[test]
        fn v6_never_keeps_a_masked_bit(a in any::<u128>(), p in 0u8..=140) {
            let addr = Ipv6Addr::from(a);
            prop_assume!(addr.to_ipv4_mapped().is_none());
            let IpAddr::V6(t) = truncate_ip(IpAddr::V6(addr), 24, p) else {
                return Err(TestCaseError::fail("family changed"));
            };
            let keep = u32::from(p.min(128));
            let low = if keep == 128 { 0 } else { u128::MAX >> keep };
            prop_assert_eq!(u128::from(t) & low, 0);
            prop_assert_eq!(u128::from(t), a & !low);
        }

        #[test]
        fn mapped_equals_v4(a in any::<u32>(), p in 0u8..=32, q in 0u8..=128) {
            let v4 = Ipv4Addr::from(a);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            prop_assert_eq!(truncate_ip(mapped, p, q), truncate_ip(IpAddr::V4(v4), p, q));
            let k = PseudonymKey::new(&[9; 32]).unwrap();
            prop_assert_eq!(k.pseudonym_ip("client_ip", mapped), k.pseudonym_ip("client_ip", IpAddr::V4(v4)));
        }

        #[test]
        fn idempotent(a in any::<u128>(), p in 0u8..=32, q in 0u8..=128) {
            let once = truncate_ip(IpAddr::V6(Ipv6Addr::from(a)), p, q);
            prop_assert_eq!(truncate_ip(once, p, q), once);
        }
    }
}
