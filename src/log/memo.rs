//! The pseudonyms of the clients a worker logged last, so that a client's next record computes no MAC.
//!
//! A direct-mapped table of [`ENTRIES`] addresses and their pseudonyms, made on the first use (one per
//! log policy, i.e. per worker VM: a document is never shared between threads). A hit copies the 22
//! characters; a miss computes the pseudonym as before and takes the address's entry. The table holds
//! addresses in the worker's memory only, next to the request that carried them: nothing reads it but
//! the record it speeds up, and a new document (a new pseudonym key) starts empty. One memo serves one
//! key (its log policy's) and one label (`client_ip`): an entry does not say which key made it.

use std::cell::RefCell;
use std::net::IpAddr;

use super::anon::{PseudonymKey, PSEUDONYM_BYTES};
use super::LABEL_CLIENT_IP;

/// Entries (a power of two).
pub const ENTRIES: usize = 256;

/// The length of a pseudonym: `PSEUDONYM_BYTES` in base64url without padding.
const LEN: usize = (PSEUDONYM_BYTES * 4).div_ceil(3);

#[derive(Default)]
pub struct ClientMemo(RefCell<Vec<Option<(IpAddr, [u8; LEN])>>>);

impl std::fmt::Debug for ClientMemo {
    // Addresses are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientMemo(<redacted>)")
    }
}

impl Clone for ClientMemo {
    /// A copy starts empty (it is a cache).
    fn clone(&self) -> Self {
        ClientMemo::default()
    }
}

/// The entry of an address: its bits mixed by a multiplication (Fibonacci hashing), the top bits kept.
fn slot(ip: IpAddr) -> usize {
    let bits = match ip {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64).rotate_left(29)
        }
    };
    (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - ENTRIES.trailing_zeros())) as usize
}

impl ClientMemo {
    /// Appends the `client_ip` pseudonym of `ip` under `key` (always its log policy's) to `out`:
    /// remembered, or computed and remembered.
    pub fn push(&self, key: &PseudonymKey, ip: IpAddr, out: &mut String) {
        let label = LABEL_CLIENT_IP;
        let Ok(mut table) = self.0.try_borrow_mut() else {
            key.push_pseudonym_ip(out, label, ip);
            return;
        };
        if table.is_empty() {
            table.resize(ENTRIES, None);
        }
        let i = slot(ip);
        if let Some(Some((a, p))) = table.get(i) {
            if *a == ip {
                if let Ok(p) = std::str::from_utf8(p) {
                    out.push_str(p);
                    return;
                }
            }
        }
        let start = out.len();
        key.push_pseudonym_ip(out, label, ip);
        let written = out.as_bytes().get(start..).unwrap_or_default();
        if let (Ok(p), Some(entry)) = (<[u8; LEN]>::try_from(written), table.get_mut(i)) {
            *entry = Some((ip, p));
        }
    }

    /// How many addresses are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.borrow().iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key(k: u8) -> PseudonymKey {
        PseudonymKey::new(&[k; 32]).unwrap()
    }

    fn via(memo: &ClientMemo, k: &PseudonymKey, ip: IpAddr) -> String {
        let mut out = String::from("prefix:");
        memo.push(k, ip, &mut out);
        out.strip_prefix("prefix:").unwrap().to_string()
    }

    /// Remembered or not, every address gets exactly the pseudonym the key computes, also when
    /// addresses share an entry and evict each other.
    #[test]
    fn always_the_computed_pseudonym() {
        let (memo, k) = (ClientMemo::default(), key(7));
        let mut rng = crate::testkit::Rng(0x5eed);
        let mut ips: Vec<IpAddr> = (0..3 * ENTRIES)
            .map(|i| {
                if i % 3 == 0 {
                    let v6 = u128::from(rng.next()) << 64 | u128::from(rng.next());
                    IpAddr::V6(std::net::Ipv6Addr::from(v6))
                } else {
                    IpAddr::from((rng.next() as u32).to_be_bytes())
                }
            })
            .collect();
        ips.extend(
            ["127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0"]
                .map(|s| s.parse::<IpAddr>().unwrap()),
        );
        for round in 0..3 {
            for &ip in &ips {
                assert_eq!(
                    via(&memo, &k, ip),
                    k.pseudonym_ip("client_ip", ip),
                    "round {round}"
                );
            }
        }
        assert!(
            memo.len() > ENTRIES / 2 && memo.len() <= ENTRIES,
            "{}",
            memo.len()
        );
    }

    /// A hit is served from the table: a second key through the same memo would answer with the
    /// first key's pseudonym (so one memo serves one key: each log policy has its own).
    #[test]
    fn a_repeat_client_is_served_from_the_table() {
        let memo = ClientMemo::default();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let first = via(&memo, &key(1), ip);
        assert_eq!(memo.len(), 1);
        assert_eq!(via(&memo, &key(2), ip), first);
        assert_ne!(key(2).pseudonym_ip("client_ip", ip), first);
        // A copy (a cloned policy) starts empty.
        assert_eq!(memo.clone().len(), 0);
        assert_eq!(format!("{memo:?}"), "ClientMemo(<redacted>)");
    }

    #[test]
    fn slots_spread_addresses() {
        let used: std::collections::HashSet<usize> = (0..ENTRIES as u32)
            .map(|i| slot(IpAddr::from((0x0a00_0000 + i).to_be_bytes())))
            .collect();
        assert!(used.len() > ENTRIES / 2, "{}", used.len());
        assert!((0..10_000u32).all(|i| slot(IpAddr::from(i.to_be_bytes())) < ENTRIES));
    }
}
