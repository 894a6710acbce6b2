//! IP table benchmark: compile time, lookup cost and memory for 10, 10k and 100k random prefixes.
//! Budget: 100k prefixes compile in < 100 ms natively, a lookup costs within 10% of a
//! 10-prefix table's, the table takes < 2 MB. Run with `cargo bench --bench ip`.
//!
//! Prefix lengths mimic real block lists: IPv4 /16../32, IPv6 /32../128. Lookups use 64K addresses, half
//! inside a listed prefix, half uniformly random; the median of several runs is printed.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use edgeward::error::Errors;
use edgeward::ip::{parse_net, IpLists, IpTable, ListInput, Net};
use edgeward::testkit::Rng;

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

fn prefixes(rng: &mut Rng, fam: Family, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match fam {
            Family::V4 => {
                let len = 16 + rng.below(17) as u32;
                let a = (rng.next() as u32) & (u32::MAX << (32 - len));
                format!("{}/{len}", Ipv4Addr::from(a))
            }
            Family::V6 => {
                let len = 32 + rng.below(97) as u32;
                // Global unicast 2000::/3, like real lists; keeps clear of the IPv4-mapped range.
                let a = (rng.u128() >> 3) | (1u128 << 125);
                let a = a & u128::MAX.checked_shl(128 - len).unwrap_or(0);
                format!("{}/{len}", Ipv6Addr::from(a))
            }
        })
        .collect()
}

fn probes(rng: &mut Rng, nets: &[Net], fam: Family, n: usize) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 && !nets.is_empty() {
                let net = nets[rng.below(nets.len() as u64) as usize];
                match net.addr() {
                    IpAddr::V4(a) => {
                        let host = (rng.next() as u32)
                            .checked_shr(u32::from(net.prefix_len()))
                            .unwrap_or(0);
                        IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
                    }
                    IpAddr::V6(a) => {
                        let host = rng
                            .u128()
                            .checked_shr(u32::from(net.prefix_len()))
                            .unwrap_or(0);
                        IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
                    }
                }
            } else {
                match fam {
                    Family::V4 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
                    Family::V6 => IpAddr::V6(Ipv6Addr::from((rng.u128() >> 3) | (1u128 << 125))),
                }
            }
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    const RUNS: usize = 7;
    const PROBES: usize = 1 << 16;
    const ROUNDS: usize = 16;
    println!(
        "{:<4} {:>8} {:>9} {:>14} {:>13} {:>11} {:>10} {:>8}",
        "fam", "prefixes", "merged", "compile_ms*", "table_ms", "ns/lookup", "bytes", "hit%"
    );
    for fam in [Family::V4, Family::V6] {
        let mut base_ns = None;
        for n in [10usize, 10_000, 100_000] {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
            let texts = prefixes(&mut rng, fam, n);
            // Compile from the document's strings: strict parsing (done as the JSON is read) plus
            // table build (* this is the budget).
            let compile = median(
                (0..RUNS)
                    .map(|_| {
                        let t = Instant::now();
                        let mut input = BTreeMap::new();
                        input.insert(
                            "bench".to_string(),
                            ListInput::from_entries(texts.iter().map(String::as_str)),
                        );
                        let mut errs = Errors::default();
                        black_box(IpLists::compile(black_box(&input), "ip_lists", &mut errs));
                        assert!(errs.is_empty());
                        t.elapsed()
                    })
                    .collect(),
            );
            let nets: Vec<Net> = texts.iter().filter_map(|s| parse_net(s).ok()).collect();
            assert_eq!(nets.len(), n);
            let build = median(
                (0..RUNS)
                    .map(|_| {
                        let t = Instant::now();
                        black_box(IpTable::from_nets(black_box(&nets)));
                        t.elapsed()
                    })
                    .collect(),
            );
            let table = IpTable::from_nets(&nets);
            let addrs = probes(&mut rng, &nets, fam, PROBES);
            let hits = addrs.iter().filter(|a| table.contains(**a)).count();
            let lookup = median(
                (0..RUNS)
                    .map(|_| {
                        let t = Instant::now();
                        let mut count = 0usize;
                        for _ in 0..ROUNDS {
                            for a in &addrs {
                                count += usize::from(table.contains(black_box(*a)));
                            }
                        }
                        black_box(count);
                        t.elapsed()
                    })
                    .collect(),
            );
            let ns = lookup.as_nanos() as f64 / (PROBES * ROUNDS) as f64;
            let rel = match base_ns {
                None => {
                    base_ns = Some(ns);
                    String::new()
                }
                Some(b) => format!("  ({:+.0}% vs 10)", (ns / b - 1.0) * 100.0),
            };
            println!(
                "{:<4} {:>8} {:>9} {:>14.3} {:>13.3} {:>11.2} {:>10} {:>7.1}%{}",
                match fam {
                    Family::V4 => "v4",
                    Family::V6 => "v6",
                },
                n,
                table.len(),
                compile.as_secs_f64() * 1e3,
                build.as_secs_f64() * 1e3,
                ns,
                table.approx_bytes(),
                hits as f64 * 100.0 / PROBES as f64,
                rel
            );
        }
    }
}
