//! Strict address and CIDR parsing. The text is checked here, not left to std: a policy that says
//! `010.0.0.0/8` or `127.1` is ambiguous (inet_aton reads octal and short forms), so it is an error.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::request::Peer;

/// A network: an address with a prefix length, host bits clear, IPv4-mapped IPv6 already turned into IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net {
    addr: IpAddr,
    len: u8,
}

/// Why an address or a network was refused. The text names the input (it comes from the document, never
/// from a request: the raw client address must not reach a log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// [`parse_ip`]: not an address, and why.
    InvalidAddress { text: String, why: &'static str },
    /// [`parse_net`]: not a CIDR (or an address), and why.
    InvalidCidr { text: String, why: &'static str },
    /// [`parse_net`]: bits set after the prefix; `suggestion` is the network with them clear.
    HostBitsSet { text: String, suggestion: Net },
    /// [`Net::new`]: a prefix longer than the address.
    PrefixLength { len: u8, max: u8 },
    /// [`Net::new`]: bits set after the prefix; `suggestion` is the network with them clear.
    NetHostBitsSet { net: Net, suggestion: Net },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::InvalidAddress { text, why } => {
                write!(f, "{text:?} is not a valid IP address ({why})")
            }
            NetError::InvalidCidr { text, why } => {
                write!(f, "{text:?} is not a valid CIDR ({why})")
            }
            NetError::HostBitsSet { text, suggestion } => {
                write!(
                    f,
                    "{text:?} has host bits set (did you mean \"{suggestion}\"?)"
                )
            }
            NetError::PrefixLength { len, max } => {
                write!(f, "prefix length {len} is out of range (0-{max})")
            }
            NetError::NetHostBitsSet { net, suggestion } => {
                write!(
                    f,
                    "{net} has host bits set (did you mean \"{suggestion}\"?)"
                )
            }
        }
    }
}

impl std::error::Error for NetError {}

impl Net {
    /// A network from an address and prefix length; host bits must be clear. Mapped IPv6 becomes IPv4.
    pub fn new(addr: IpAddr, len: u8) -> Result<Net, NetError> {
        let max = max_len(addr);
        if len > max {
            return Err(NetError::PrefixLength { len, max });
        }
        let net = Net { addr, len };
        if net.masked() != net {
            return Err(NetError::NetHostBitsSet {
                net,
                suggestion: net.masked(),
            });
        }
        Ok(net.canonical())
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether the network holds `ip` (after canonicalizing `ip`; families never cross-match).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(n)),
                u128::from(u32::from(a)),
                32,
                self.len,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(u128::from(n), u128::from(a), 128, self.len)
            }
            _ => false,
        }
    }

    fn masked(self) -> Net {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.len))),
        };
        Net {
            addr,
            len: self.len,
        }
    }

    /// `::ffff:a.b.c.d/96+n` becomes `a.b.c.d/n`, so IPv4 rules and mapped clients meet in one family.
    fn canonical(self) -> Net {
        match self.addr {
            IpAddr::V6(a) if self.len >= 96 => match a.to_ipv4_mapped() {
                Some(v4) => Net {
                    addr: IpAddr::V4(v4),
                    len: self.len - 96,
                },
                None => self,
            },
            _ => self,
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

fn prefix_eq(net: u128, addr: u128, bits: u32, len: u8) -> bool {
    // Shifting by the full width (len 0) is "everything matches", which checked_shr's None gives.
    (net ^ addr).checked_shr(bits - u32::from(len)).unwrap_or(0) == 0
}

/// Parses one address strictly (no zone id, no leading zeros, no short or hex forms). Not canonicalized.
pub fn parse_ip(s: &str) -> Result<IpAddr, NetError> {
    strict_ip(s).map_err(|why| NetError::InvalidAddress {
        text: s.to_string(),
        why,
    })
}

/// Parses a CIDR or a bare address (= /32 or /128) strictly; host bits set is an error with a suggestion.
pub fn parse_net(s: &str) -> Result<Net, NetError> {
    let invalid = |why| NetError::InvalidCidr {
        text: s.to_string(),
        why,
    };
    let (addr_text, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr = strict_ip(addr_text).map_err(invalid)?;
    let max = max_len(addr);
    let len = match len {
        None => max,
        Some(l) => strict_prefix_len(l, max).map_err(invalid)?,
    };
    let net = Net { addr, len };
    let masked = net.masked();
    if masked != net {
        return Err(NetError::HostBitsSet {
            text: s.to_string(),
            suggestion: masked,
        });
    }
    Ok(net.canonical())
}

/// Parses Envoy's `source.address` (`1.2.3.4:5`, `[::1]:5`, `[fe80::1%eth0]:80`, or a bare address) into a
/// canonical peer; anything else is `Peer::Invalid`.
pub fn peer_from_socket_addr(s: &str) -> Peer {
    let ip = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once(']').and_then(|(inner, tail)| {
            let port_ok = tail.is_empty() || tail.strip_prefix(':').is_some_and(valid_port);
            let ip = wire_ip(inner)?;
            (port_ok && ip.is_ipv6()).then_some(ip)
        })
    } else {
        match s.split_once(':') {
            // Exactly one colon: IPv4 with a port. More colons: a bare IPv6 address.
            Some((host, port)) if !port.contains(':') => {
                if valid_port(port) {
                    strict_v4(host).ok().map(IpAddr::V4)
                } else {
                    None
                }
            }
            _ => wire_ip(s),
        }
    };
    match ip {
        Some(ip) => Peer::Ip(ip.to_canonical()),
        None => Peer::Invalid,
    }
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

/// An address as it arrives on the wire (peer, X-Forwarded-For entry): strict, an IPv6 zone id dropped,
/// canonicalized by the caller. Returns no error text: the raw client address must not reach a log.
pub(crate) fn wire_ip(s: &str) -> Option<IpAddr> {
    match s.split_once('%') {
        Some((addr, zone)) => {
            if !valid_zone(zone) {
                return None;
            }
            strict_v6(addr).ok().map(IpAddr::V6)
        }
        None => strict_ip(s).ok(),
    }
}

/// An IPv6 zone id as RFC 6874 writes it (unreserved characters: an interface name or number), at most
/// 64 of them. Control characters, spaces, brackets and the like make the whole address invalid rather
/// than being dropped with the zone.
fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 64
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn strict_ip(s: &str) -> Result<IpAddr, &'static str> {
    if s.contains('%') {
        return Err("zone ids are not allowed");
    }
    if s.contains(':') {
        strict_v6(s).map(IpAddr::V6)
    } else {
        strict_v4(s).map(IpAddr::V4)
    }
}

fn strict_prefix_len(l: &str, max: u8) -> Result<u8, &'static str> {
    if l.is_empty() {
        return Err("empty prefix length");
    }
    if !l.bytes().all(|b| b.is_ascii_digit()) {
        return Err("prefix length must be a decimal number");
    }
    if l.len() > 1 && l.starts_with('0') {
        return Err("leading zero in prefix length");
    }
    match l.parse::<u8>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(if max == 32 {
            "prefix length out of range (0-32)"
        } else {
            "prefix length out of range (0-128)"
        }),
    }
}

fn strict_v4(s: &str) -> Result<Ipv4Addr, &'static str> {
    if s.is_empty() {
        return Err("empty address");
    }
    let mut octets = [0u8; 4];
    let mut n = 0usize;
    for part in s.split('.') {
        if part.is_empty() {
            return Err("empty octet");
        }
        if part.len() > 1 && (part.starts_with("0x") || part.starts_with("0X")) {
            return Err("hex octets are not allowed");
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid character");
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err("leading zero");
        }
        let value = match part.parse::<u8>() {
            Ok(v) if part.len() <= 3 => v,
            _ => return Err("octet out of range (0-255)"),
        };
        match octets.get_mut(n) {
            Some(slot) => *slot = value,
            None => return Err("more than four octets"),
        }
        n += 1;
    }
    if n < 4 {
        return Err("short form: IPv4 needs four decimal octets");
    }
    Ok(Ipv4Addr::from(octets))
}

fn strict_v6(s: &str) -> Result<Ipv6Addr, &'static str> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err("invalid character");
    }
    // An embedded IPv4 tail (`::ffff:1.2.3.4`) gets the same strict IPv4 rules.
    let (groups, tail) = match s.rfind(':') {
        Some(i) => (s.get(..i).unwrap_or(""), s.get(i + 1..).unwrap_or("")),
        None => return Err("malformed IPv6 address"),
    };
    if groups.contains('.') {
        return Err("malformed IPv6 address");
    }
    if tail.contains('.') {
        strict_v4(tail)?;
    } else if tail.len() > 4 {
        return Err("IPv6 group longer than four hex digits");
    }
    if groups.split(':').any(|g| g.len() > 4) {
        return Err("IPv6 group longer than four hex digits");
    }
    s.parse::<Ipv6Addr>().map_err(|_| "malformed IPv6 address")
}

#[cfg(test)]
mod tests;
