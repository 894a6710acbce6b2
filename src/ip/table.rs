//! Compiled prefix tables: sorted disjoint prefixes per family, plus a direct-indexed first level so that a
//! 100k-entry list costs about what a 10-entry list costs per lookup.
//!
//! Layout per family: one array of packed (network address, prefix length) slots, ascending, 5 bytes per
//! IPv4 prefix and 17 per IPv6 prefix. Covered prefixes are dropped and sibling pairs merged
//! into their parent at compile time, so prefixes are disjoint: the only candidate for an address is the
//! prefix with the greatest start not above it. The first level maps the 16 bits below the common
//! prefix of all starts to a slice of the array, so the binary search runs over a bucket (~2 entries),
//! not the whole list.

use std::fmt;
use std::net::IpAddr;
use std::ops::{BitXor, Shl, Shr};

use super::parse::Net;

/// Lists below this size are searched directly: a bucket index would not pay for itself.
const INDEX_MIN: usize = 64;
/// Bucket index width for the largest lists (64K buckets, 256 KB).
const INDEX_MAX_BITS: u32 = 16;

/// An address word: u32 for IPv4, u128 for IPv6. One generic definition over the std operators (and
/// a widening to u128, which LLVM folds away); a width only names its size.
trait Word:
    Copy
    + Ord
    + fmt::Debug
    + From<u8>
    + Into<u128>
    + BitXor<Output = Self>
    + Shl<u32, Output = Self>
    + Shr<u32, Output = Self>
{
    const BITS: u32;

    /// `self >> n`, and 0 once `n` reaches the width (where `>>` itself would overflow).
    fn shr_or_zero(self, n: u32) -> Self {
        if n < Self::BITS {
            self >> n
        } else {
            Self::from(0)
        }
    }

    fn is_zero(self) -> bool {
        self == Self::from(0)
    }

    fn leading_zeros(self) -> u32 {
        let wide: u128 = self.into();
        wide.leading_zeros() - (u128::BITS - Self::BITS)
    }

    /// The low 32 bits (index keys are at most 16 bits wide).
    fn low32(self) -> u32 {
        let wide: u128 = self.into();
        // Truncation intended: callers shift the wanted bits to the bottom first.
        wide as u32
    }

    /// The size of a prefix of length `len` as a word, None for len 0 (the whole space).
    fn block(len: u8) -> Option<Self> {
        let shift = Self::BITS.checked_sub(u32::from(len))?;
        (len > 0).then(|| Self::from(1) << shift)
    }
}

impl Word for u32 {
    const BITS: u32 = u32::BITS;
}

impl Word for u128 {
    const BITS: u32 = u128::BITS;
}

/// Whether prefix (start, len) holds `x`.
fn holds<W: Word>(start: W, len: u8, x: W) -> bool {
    (start ^ x).shr_or_zero(W::BITS - u32::from(len)).is_zero()
}

/// One prefix, packed so that the start and the length share a cache line (17 bytes for IPv6, not 32).
#[derive(Clone, Copy)]
#[repr(C, packed)]
struct Slot<W> {
    start: W,
    len: u8,
}

/// One family's disjoint prefixes with an optional first-level index.
#[derive(Clone, Default)]
struct PrefixSet<W: Copy> {
    slots: Vec<Slot<W>>,
    /// Bucket index: `index[b]..index[b + 1]` are the entries whose start falls in bucket b. Empty when the
    /// list is small.
    index: Vec<u32>,
    /// Bits above the bucket key that every start shares, and how far to shift to reach the key.
    high: W,
    high_shift: u32,
    key_shift: u32,
    key_mask: u32,
}

impl<W: Word> PrefixSet<W> {
    fn build(mut prefixes: Vec<(W, u8)>) -> PrefixSet<W> {
        prefixes.sort_unstable();
        let mut starts: Vec<W> = Vec::with_capacity(prefixes.len());
        let mut lens: Vec<u8> = Vec::with_capacity(prefixes.len());
        for (start, len) in prefixes {
            // Sorted by (start, len): a prefix is covered by an earlier one only if the last kept one holds it.
            if let (Some(&s), Some(&l)) = (starts.last(), lens.last()) {
                if holds(s, l, start) {
                    continue;
                }
            }
            starts.push(start);
            lens.push(len);
            // Merge sibling pairs (10.0.0.0/25 + 10.0.0.128/25 = 10.0.0.0/24), cascading upwards.
            while starts.len() >= 2 {
                let n = starts.len() - 2;
                let (Some(&a), Some(&b), Some(&la), Some(&lb)) = (
                    starts.get(n),
                    starts.get(n + 1),
                    lens.get(n),
                    lens.get(n + 1),
                ) else {
                    break;
                };
                let siblings = match W::block(la) {
                    // Summed in u128: a sum past the top of the space is no sibling (b is never below a).
                    Some(size) if la == lb && holds(a, la - 1, b) => {
                        let (a, b, size): (u128, u128, u128) = (a.into(), b.into(), size.into());
                        a.checked_add(size) == Some(b)
                    }
                    _ => false,
                };
                if !siblings {
                    break;
                }
                starts.truncate(n + 1);
                lens.truncate(n + 1);
                if let Some(l) = lens.get_mut(n) {
                    *l = la - 1;
                }
            }
        }
        let slots = starts
            .into_iter()
            .zip(lens)
            .map(|(start, len)| Slot { start, len })
            .collect();
        let mut set = PrefixSet {
            slots,
            index: Vec::new(),
            high: W::from(0),
            high_shift: W::BITS,
            key_shift: 0,
            key_mask: 0,
        };
        set.build_index();
        set
    }

    fn build_index(&mut self) {
        let n = self.slots.len();
        let (Some(first), Some(last)) = (self.slots.first(), self.slots.last()) else {
            return;
        };
        let (first, last) = (first.start, last.start);
        if n < INDEX_MIN || u32::try_from(n).is_err() {
            return;
        }
        let common = (first ^ last).leading_zeros();
        // About two entries per bucket: log2(n) - 1 bits, capped, and never below the last bit.
        let want = (usize::BITS - n.leading_zeros())
            .saturating_sub(1)
            .min(INDEX_MAX_BITS);
        let bits = want.min(W::BITS - common);
        if bits == 0 {
            return;
        }
        self.key_shift = W::BITS - common - bits;
        self.high_shift = W::BITS - common;
        self.high = first.shr_or_zero(self.high_shift);
        self.key_mask = (1u32 << bits) - 1;
        let buckets = 1usize << bits;
        let mut index = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for b in 0..buckets {
            while self
                .slots
                .get(i)
                .is_some_and(|s| (self.key(s.start) as usize) < b)
            {
                i += 1;
            }
            index.push(i as u32);
        }
        index.push(n as u32);
        self.index = index;
    }

    fn key(&self, x: W) -> u32 {
        x.shr_or_zero(self.key_shift).low32() & self.key_mask
    }

    fn contains(&self, x: W) -> bool {
        let (lo, hi) = if self.index.is_empty() {
            (0, self.slots.len())
        } else {
            match x.shr_or_zero(self.high_shift).cmp(&self.high) {
                std::cmp::Ordering::Less => return false,
                std::cmp::Ordering::Greater => (self.slots.len(), self.slots.len()),
                std::cmp::Ordering::Equal => {
                    let b = self.key(x) as usize;
                    match (self.index.get(b), self.index.get(b + 1)) {
                        (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
                        _ => return false,
                    }
                }
            }
        };
        // Entries before `lo` all start below x; the candidate is the last start <= x.
        let p = match self.slots.get(lo..hi) {
            Some(bucket) => lo + bucket.partition_point(|s| ({ s.start }) <= x),
            None => return false,
        };
        match p.checked_sub(1).and_then(|i| self.slots.get(i)) {
            Some(s) => holds(s.start, s.len, x),
            None => false,
        }
    }

    fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<W>>()
            + self.index.capacity() * std::mem::size_of::<u32>()
    }
}

/// A compiled set of networks (both families) with O(log n) membership, built once per configuration.
#[derive(Clone, Default)]
pub struct IpTable {
    v4: PrefixSet<u32>,
    v6: PrefixSet<u128>,
}

impl IpTable {
    /// Compiles networks (duplicates, overlaps and adjacent siblings are merged).
    pub fn from_nets<'a>(nets: impl IntoIterator<Item = &'a Net>) -> IpTable {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            push_net(net, &mut v4, &mut v6);
        }
        IpTable::from_prefixes(v4, v6)
    }

    /// Builds the table from (network address, prefix length) pairs, per family, as [`push_net`] makes
    /// them (the host bits are clear).
    pub fn from_prefixes(v4: Vec<(u32, u8)>, v6: Vec<(u128, u8)>) -> IpTable {
        IpTable {
            v4: PrefixSet::build(v4),
            v6: PrefixSet::build(v6),
        }
    }

    /// Whether the (canonicalized) address is in the table; IPv4-mapped IPv6 is looked up as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }

    /// Number of disjoint prefixes after merging.
    pub fn len(&self) -> usize {
        self.v4.slots.len() + self.v6.slots.len()
    }

    /// Whether the table holds no address at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The merged prefixes, IPv4 first, ascending.
    pub fn nets(&self) -> impl Iterator<Item = Net> + '_ {
        let v4 =
            (self.v4.slots.iter()).filter_map(|s| Net::new(IpAddr::V4(s.start.into()), s.len).ok());
        let v6 =
            (self.v6.slots.iter()).filter_map(|s| Net::new(IpAddr::V6(s.start.into()), s.len).ok());
        v4.chain(v6)
    }

    /// Approximate heap bytes of the compiled table (for the benchmark's memory budget).
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<IpTable>() + self.v4.bytes() + self.v6.bytes()
    }
}

impl fmt::Debug for IpTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpTable")
            .field("v4_prefixes", &self.v4.slots.len())
            .field("v6_prefixes", &self.v6.slots.len())
            .finish()
    }
}

/// Appends a network to its family's list of (network address, prefix length) pairs: 8 bytes per IPv4
/// entry, the form the table is built from.
pub fn push_net(net: &Net, v4: &mut Vec<(u32, u8)>, v6: &mut Vec<(u128, u8)>) {
    match net.addr() {
        IpAddr::V4(a) => v4.push((u32::from(a), net.prefix_len())),
        IpAddr::V6(a) => v6.push((u128::from(a), net.prefix_len())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_net;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn table(nets: &[&str]) -> IpTable {
        let nets: Vec<Net> = nets.iter().map(|n| parse_net(n).unwrap()).collect();
        IpTable::from_nets(&nets)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookup_small_table() {
        let t = table(&[
            "10.0.0.0/8",
            "192.168.1.0/24",
            "203.0.113.7",
            "2001:db8::/32",
            "::1",
        ]);
        let cases = [
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("9.255.255.255", false),
            ("11.0.0.0", false),
            ("192.168.1.77", true),
            ("192.168.2.0", false),
            ("203.0.113.7", true),
            ("203.0.113.8", false),
            ("::ffff:10.9.9.9", true),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("::1", true),
            ("::2", false),
            ("0.0.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
        ];
        for (a, want) in cases {
            assert_eq!(t.contains(ip(a)), want, "{a}");
        }
    }

    #[test]
    fn whole_space_and_empty() {
        let t = table(&["0.0.0.0/0"]);
        assert!(t.contains(ip("0.0.0.0")) && t.contains(ip("255.255.255.255")));
        assert!(!t.contains(ip("::")));
        let t = table(&["::/0"]);
        assert!(t.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!t.contains(ip("1.2.3.4")));
        let t = table(&[]);
        assert!(t.is_empty());
        assert!(!t.contains(ip("1.2.3.4")) && !t.contains(ip("::1")));
    }

    #[test]
    fn merging_drops_covered_and_joins_siblings() {
        let t = table(&[
            "10.0.0.0/25",
            "10.0.0.128/25",
            "10.0.0.7",
            "10.0.1.0/24",
            "10.0.0.0/24",
        ]);
        assert_eq!(
            t.nets().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/23"]
        );
        // Adjacent but not siblings: stay apart.
        let t = table(&["10.0.1.0/24", "10.0.2.0/24"]);
        assert_eq!(t.len(), 2);
        let t = table(&["0.0.0.0/1", "128.0.0.0/1"]);
        assert_eq!(
            t.nets().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["0.0.0.0/0"]
        );
        let t = table(&["::/1", "8000::/1", "::1"]);
        assert_eq!(
            t.nets().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["::/0"]
        );
    }

    #[test]
    fn indexed_table_matches_scan_at_edges() {
        // Enough entries to build the bucket index; probe every start, end and neighbour.
        let mut nets = Vec::new();
        for i in 0..3000u32 {
            let a = i.wrapping_mul(2_654_435_761) & 0xffff_ff00;
            let len = 24 - (i % 9) as u8;
            let a = a & (u32::MAX << (32 - len));
            nets.push(Net::new(IpAddr::V4(a.into()), len).unwrap());
            let b = (u128::from(i) << 100) | (u128::from(i) << 64);
            let l6 = 64;
            nets.push(Net::new(IpAddr::V6((b & (u128::MAX << (128 - l6))).into()), l6).unwrap());
        }
        let t = IpTable::from_nets(&nets);
        assert!(!t.v4.index.is_empty() && !t.v6.index.is_empty());
        let mut probes = Vec::new();
        for n in &nets {
            match n.addr() {
                IpAddr::V4(a) => {
                    let s = u32::from(a);
                    let e = s | (u32::MAX >> n.prefix_len());
                    for x in [s.wrapping_sub(1), s, e, e.wrapping_add(1)] {
                        probes.push(IpAddr::V4(x.into()));
                    }
                }
                IpAddr::V6(a) => {
                    let s = u128::from(a);
                    let e = s | (u128::MAX >> n.prefix_len());
                    for x in [s.wrapping_sub(1), s, e, e.wrapping_add(1)] {
                        probes.push(IpAddr::V6(x.into()));
                    }
                }
            }
        }
        for p in probes {
            let naive = nets.iter().any(|n| n.contains(p));
            assert_eq!(t.contains(p), naive, "{p}");
        }
    }

    #[test]
    fn debug_shows_counts_only() {
        let t = table(&["198.51.100.0/24"]);
        let d = format!("{t:?}");
        assert!(!d.contains("198.51"), "{d}");
        assert!(d.contains("v4_prefixes: 1"), "{d}");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn v4_net() -> impl Strategy<Value = Net> {
        (any::<u32>(), prop_oneof![0u8..=32, 16u8..=32, 24u8..=32]).prop_filter_map(
            "net",
            |(a, l)| {
                let a = a & u32::MAX.checked_shl(32 - u32::from(l)).unwrap_or(0);
                Net::new(IpAddr::V4(a.into()), l).ok()
            },
        )
    }

    fn v6_net() -> impl Strategy<Value = Net> {
        // Concentrate addresses in a few regions so that prefixes overlap and nest.
        (
            0u128..4,
            any::<u128>(),
            prop_oneof![0u8..=128, 32u8..=128, 100u8..=128],
        )
            .prop_filter_map("net", |(region, a, l)| {
                let a = (region << 126) | (a >> 2);
                let a = a & u128::MAX.checked_shl(128 - u32::from(l)).unwrap_or(0);
                Net::new(IpAddr::V6(a.into()), l).ok()
            })
    }

    fn near(nets: &[Net], picks: &[(usize, u8)]) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for &(i, which) in picks {
            let Some(n) = nets.get(i % nets.len().max(1)) else {
                continue;
            };
            match n.addr() {
                IpAddr::V4(a) => {
                    let s = u32::from(a);
                    let e = s | u32::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
                    let x = [s.wrapping_sub(1), s, e, e.wrapping_add(1)][usize::from(which % 4)];
                    out.push(IpAddr::V4(x.into()));
                }
                IpAddr::V6(a) => {
                    let s = u128::from(a);
                    let e = s | u128::MAX
                        .checked_shr(u32::from(n.prefix_len()))
                        .unwrap_or(0);
                    let x = [s.wrapping_sub(1), s, e, e.wrapping_add(1)][usize::from(which % 4)];
                    out.push(IpAddr::V6(x.into()));
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn v4_lookup_equals_naive_scan(
            nets in prop::collection::vec(v4_net(), 0..300),
            addrs in prop::collection::vec(any::<u32>(), 0..100),
            picks in prop::collection::vec((any::<usize>(), any::<u8>()), 0..100),
        ) {
            let t = IpTable::from_nets(&nets);
            let mut probes: Vec<IpAddr> = addrs.iter().map(|&a| IpAddr::V4(a.into())).collect();
            probes.extend(near(&nets, &picks));
            for p in probes {
                prop_assert_eq!(t.contains(p), nets.iter().any(|n| n.contains(p)), "{}", p);
                let mapped = match p { IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()), v6 => v6 };
                prop_assert_eq!(t.contains(mapped), t.contains(p));
            }
        }

        #[test]
        fn v6_lookup_equals_naive_scan(
            nets in prop::collection::vec(v6_net(), 0..300),
            addrs in prop::collection::vec((0u128..4, any::<u128>()), 0..100),
            picks in prop::collection::vec((any::<usize>(), any::<u8>()), 0..100),
        ) {
            let t = IpTable::from_nets(&nets);
            let mut probes: Vec<IpAddr> =
                addrs.iter().map(|&(r, a)| IpAddr::V6(((r << 126) | (a >> 2)).into())).collect();
            probes.extend(near(&nets, &picks));
            for p in probes {
                prop_assert_eq!(t.contains(p), nets.iter().any(|n| n.contains(p)), "{}", p);
            }
        }

        #[test]
        fn merged_nets_cover_the_same_addresses(
            nets in prop::collection::vec(v4_net(), 0..200),
            addrs in prop::collection::vec(any::<u32>(), 0..100),
        ) {
            let t = IpTable::from_nets(&nets);
            let merged: Vec<Net> = t.nets().collect();
            prop_assert!(merged.len() <= nets.len());
            for a in addrs {
                let p = IpAddr::V4(a.into());
                prop_assert_eq!(merged.iter().any(|n| n.contains(p)), t.contains(p));
            }
        }
    }
}
