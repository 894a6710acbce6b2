//! Addresses, CIDRs and the client address: `parse_ip` against std, `parse_net` against `ipnet`,
//! `peer_from_socket_addr` against std's socket addresses, and `ClientIpConfig::resolve` (X-Forwarded-For,
//! trusted hops and proxies, the sorted CIDR table) against a model that scans `ipnet` networks.

use super::sfv::panic_with;
use crate::error::Errors;
use crate::ip::wire_ip;
use crate::ip::{parse_ip, parse_net, peer_from_socket_addr, NetError};
use crate::ip::{ClientAddr, ClientIpConfig, ClientIpInput};
use crate::request::{Headers, Peer};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Where the parsers depart from std and `ipnet` on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Difference {
    /// A bare address is a network of one (`/32`, `/128`); `ipnet` needs the prefix length.
    BareAddressIsANetwork,
    /// A prefix length with a sign or a leading zero (`/+8`, `/08`): `ipnet` reads it as a number,
    /// edgeward refuses the ambiguous text.
    StrictPrefixLength,
    /// `::ffff:a.b.c.d/96+n` is `a.b.c.d/n`, so IPv4 rules and IPv4-mapped clients meet in one family.
    MappedNetworkIsIpv4,
    /// A peer may be a bare address (`1.2.3.4`, `::1`, `[::1]`), not only `ip:port`.
    BarePeer,
    /// A peer's IPv6 zone id (`[fe80::1%eth0]:80`) is dropped; std's parser has no zone ids. A zone id is
    /// RFC 6874's: 1 to 64 unreserved characters.
    PeerZoneId,
    /// A port of more than five digits (zero-padded, `:043032`) is refused; std reads it as a number.
    /// Envoy never writes one.
    LongPort,
}

/// `parse_ip` against std: the same addresses, and std accepts nothing it refuses.
fn check_ip(s: &str) {
    let ours = parse_ip(s).ok();
    let std = s.parse::<IpAddr>().ok();
    assert_eq!(ours, std, "parse_ip {s:?}");
}

/// The intended difference that lets `ipnet` read `s` where edgeward does not, if any.
fn net_difference(s: &str) -> Option<Difference> {
    let (_, len) = s.split_once('/')?;
    (len.starts_with(['+', '0']) && len != "0").then_some(Difference::StrictPrefixLength)
}

/// `parse_net` against `ipnet`.
fn check_net(s: &str) -> Option<IpNet> {
    let (text, bare) = if s.contains('/') {
        (s.to_string(), false)
    } else {
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => (format!("{s}/32"), true),
            Ok(IpAddr::V6(_)) => (format!("{s}/128"), true),
            Err(_) => (s.to_string(), false),
        }
    };
    // The address part must also be one std reads (ipnet's own address parser is std's).
    let theirs = text.parse::<IpNet>().ok();
    let _ = bare.then_some(Difference::BareAddressIsANetwork);
    match (parse_net(s), theirs) {
        (Ok(net), Some(n)) => {
            assert_eq!(n.trunc(), n, "parse_net {s:?}: host bits set, accepted");
            let expected = canonical(n);
            let _ = (expected != n).then_some(Difference::MappedNetworkIsIpv4);
            assert_eq!(
                (net.addr(), net.prefix_len()),
                (expected.addr(), expected.prefix_len()),
                "parse_net {s:?}"
            );
            Some(expected)
        }
        (Err(NetError::HostBitsSet { suggestion, .. }), Some(n)) => {
            assert_ne!(n.trunc(), n, "parse_net {s:?}: host bits clear, refused");
            assert_eq!(
                (suggestion.addr(), suggestion.prefix_len()),
                (n.trunc().addr(), n.prefix_len()),
                "parse_net {s:?}: the suggestion"
            );
            None
        }
        (Ok(_) | Err(NetError::HostBitsSet { .. }), None) => {
            panic_with(&format!("parse_net {s:?}: accepted what ipnet refuses"))
        }
        (Err(e), Some(_)) => {
            assert_eq!(
                net_difference(s),
                Some(Difference::StrictPrefixLength),
                "parse_net {s:?}: refused what ipnet reads ({e})"
            );
            None
        }
        (Err(_), None) => None,
    }
}

/// [`Difference::MappedNetworkIsIpv4`] applied to an `ipnet` network.
fn canonical(n: IpNet) -> IpNet {
    match n {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(n, IpNet::V4),
            None => n,
        },
        _ => n,
    }
}

/// `peer_from_socket_addr` against std's socket address (and, for the intended differences, std's
/// address).
fn check_peer(s: &str) {
    let ours = peer_from_socket_addr(s);
    let expected = match peer_refused(s) {
        Some(Difference::LongPort) => None,
        _ => expected_peer(s),
    };
    match (ours, expected) {
        (Peer::Ip(ip), Some((theirs, _))) => {
            assert_eq!(ip, theirs.to_canonical(), "peer {s:?}")
        }
        (Peer::Invalid, None) => {}
        (ours, expected) => panic_with(&format!("peer {s:?}: {ours:?}, expected {expected:?}")),
    }
}

/// The intended difference that makes edgeward refuse a peer std reads, if any.
fn peer_refused(s: &str) -> Option<Difference> {
    long_port(s).then_some(Difference::LongPort)
}

/// Whether the port of `ip:port` or `[ip]:port` (whatever the address) has more than five characters.
fn long_port(s: &str) -> bool {
    let port = match s.strip_prefix('[') {
        Some(rest) => rest
            .rsplit_once(']')
            .and_then(|(_, tail)| tail.strip_prefix(':')),
        None => match s.split_once(':') {
            Some((_, port)) if !port.contains(':') => Some(port),
            _ => None,
        },
    };
    port.is_some_and(|p| p.len() > 5)
}

/// What std reads, with the intended differences but [`Difference::LongPort`].
fn expected_peer(s: &str) -> Option<(IpAddr, Option<Difference>)> {
    match s.parse::<SocketAddr>() {
        Ok(sa) => Some((sa.ip(), None)),
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => Some((ip, Some(Difference::BarePeer))),
            Err(_) => match bracketed(s) {
                Some(ip) => Some((ip, Some(Difference::BarePeer))),
                None => zone_peer(s).map(|ip| (ip, Some(Difference::PeerZoneId))),
            },
        },
    }
}

/// `[addr]`: an IPv6 address in brackets without a port.
fn bracketed(s: &str) -> Option<IpAddr> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// `[addr%zone]:port`, `[addr%zone]` or `addr%zone` read by std once the zone is dropped, for a zone of
/// RFC 6874's characters (ZoneID = 1*( unreserved / pct-encoded ); edgeward takes no `%` escapes in it).
fn zone_peer(s: &str) -> Option<IpAddr> {
    let unreserved = |z: &str| {
        (1..=64).contains(&z.len())
            && z.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    let (addr, rest) = s.split_once('%')?;
    match addr.strip_prefix('[') {
        Some(a) => {
            let (zone, tail) = rest.split_once(']')?;
            if !unreserved(zone) {
                return None;
            }
            let text = format!("[{a}]{tail}");
            if tail.is_empty() {
                bracketed(&text)
            } else {
                let sa = text.parse::<SocketAddr>().ok()?;
                sa.is_ipv6().then_some(sa.ip())
            }
        }
        None => {
            if !unreserved(rest) {
                return None;
            }
            addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        }
    }
}

/// Input: a first byte (trusted hops, 0..=3), then lines. Every line is checked as an address, a
/// network and a peer; with no hops, the lines that are networks are the trusted proxies. The first
/// line is the peer, the others are `X-Forwarded-For` lines.
pub fn client_ip(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut nets = Vec::new();
    for line in &lines {
        check_ip(line);
        check_peer(line);
        if let Some(n) = check_net(line) {
            nets.push(n);
        }
    }
    let hops = u32::from(first % 4);
    let input = ClientIpInput {
        xff_trusted_hops: hops,
        trusted_proxies: if hops == 0 {
            lines
                .iter()
                .filter(|l| parse_net(l).is_ok())
                .map(|l| l.to_string())
                .collect()
        } else {
            Vec::new()
        },
    };
    let mut errs = Errors::default();
    let config = ClientIpConfig::compile(&input, "client_ip", &mut errs);
    assert!(errs.is_empty(), "{:?}", errs.into_vec());
    let peer = peer_from_socket_addr(lines.first().copied().unwrap_or_default());
    let xff: Vec<(String, String)> = lines
        .iter()
        .skip(1)
        .map(|l| ("x-forwarded-for".to_string(), l.to_string()))
        .collect();
    let got = config.resolve(peer, Headers::new(&xff));
    let want = model(hops, if hops == 0 { &nets } else { &[] }, peer, &xff);
    assert!(got == want, "resolve: {got:?}, the model {want:?}");
    for ip in [peer_ip(peer)].into_iter().flatten() {
        let trusted = nets.iter().any(|n| contains(n, ip));
        assert_eq!(
            config.peer_is_trusted(peer),
            hops > 0 || trusted,
            "peer_is_trusted"
        );
    }
}

fn peer_ip(p: Peer) -> Option<IpAddr> {
    match p {
        Peer::Ip(ip) => Some(ip),
        Peer::Invalid => None,
    }
}

/// Whether a canonical network holds `ip` (canonical too: families never cross).
fn contains(n: &IpNet, ip: IpAddr) -> bool {
    n.contains(&ip.to_canonical())
}

/// Envoy's rule, written plainly: X-Forwarded-For entries from the right across all lines; with `hops`,
/// the entry after Envoy's own and `hops` trusted ones, else the peer; with trusted proxies, walk left
/// past Envoy's entry while the address at hand is a trusted proxy.
fn model(hops: u32, proxies: &[IpNet], peer: Peer, xff: &[(String, String)]) -> ClientAddr {
    let mut entries: Vec<&str> = Vec::new();
    for (_, v) in xff.iter().rev() {
        for e in v.rsplit(',') {
            let e = e.trim_matches([' ', '\t']);
            if !e.is_empty() {
                entries.push(e);
            }
        }
    }
    let wire = |e: &str| match wire_ip(e) {
        Some(ip) => ClientAddr::Ip(ip.to_canonical()),
        None => ClientAddr::Invalid,
    };
    if hops > 0 {
        return match entries.get(hops as usize) {
            Some(e) => wire(e),
            None => ClientAddr::from(peer),
        };
    }
    let Some(mut current) = peer_ip(peer).map(|ip| ip.to_canonical()) else {
        return ClientAddr::from(peer);
    };
    if proxies.is_empty() {
        return ClientAddr::Ip(current);
    }
    for e in entries.iter().skip(1) {
        if !proxies.iter().any(|n| contains(n, current)) {
            return ClientAddr::Ip(current);
        }
        match wire(e) {
            ClientAddr::Ip(ip) => current = ip,
            ClientAddr::Invalid => return ClientAddr::Invalid,
        }
    }
    ClientAddr::Ip(current)
}
