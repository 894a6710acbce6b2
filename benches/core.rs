//! Microbenchmarks of the pure core, natively: ns per operation for route selection, IP lookup
//! (10, 10k, 100k prefixes), signature verification (hmac-sha256 over a ~256-byte base, ed25519) through
//! `SignaturePolicy::verify_head`, Content-Digest (1 KiB, 64 KiB), a rate-limit decision (two limits,
//! `MemoryStore`; and with token leases), building the log record, and the whole allow path of the benchmark's policy D.
//! Run with `cargo bench --bench core` (`cargo bench --bench core -- FILTER` runs the names containing
//! FILTER). Each figure is the median of several timed runs; the IP table's compile time and memory are
//! in `cargo bench --bench ip`. Each line also gives the heap allocations (and bytes asked for) per
//! operation, counted after the timed runs: a figure no noisy machine changes, and the module's allocator
//! is one of the places its time goes under V8 (docs/benchmark.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use edgeward::document::Document;
use edgeward::http1::{parse_http_request, ParsedRequest};
use edgeward::ip::{parse_net, IpTable, Net};
use edgeward::rate_limit::KeyInputs;
use edgeward::request::{Headers, Peer, RequestHead};
use edgeward::route::select;
use edgeward::signature::components::signature_base;
use edgeward::signature::{
    check_content_digest, content_digest_header, sign_request, ComponentId, DigestAlg, SignParams,
    SigningKey,
};
use edgeward::store::MemoryStore;
use edgeward::testkit::Rng;

const RUNS: usize = 21;
/// Each timed run lasts about this long.
const RUN_TARGET: Duration = Duration::from_millis(10);
const NOW: u64 = 1_767_225_600;
const HMAC_SECRET: &[u8] = b"edgeward benchmark hmac secret!!";
const LOG_KEY: &[u8] = b"edgeward benchmark pseudonym key";

/// The system allocator, counting allocations (and reallocations) and the bytes asked for while
/// `COUNTING` is on (off during the timed runs: one relaxed load per allocation).
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn count(bytes: usize) {
    if COUNTING.load(Relaxed) {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(bytes as u64, Relaxed);
    }
}

// SAFETY: every call is passed on unchanged to the system allocator, whose contract the callers keep.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations and bytes asked for per call of `f`, over 100 calls.
fn allocations(f: &mut impl FnMut()) -> (f64, f64) {
    const CALLS: u64 = 100;
    ALLOCS.store(0, Relaxed);
    BYTES.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    for _ in 0..CALLS {
        f();
    }
    COUNTING.store(false, Relaxed);
    (
        ALLOCS.load(Relaxed) as f64 / CALLS as f64,
        BYTES.load(Relaxed) as f64 / CALLS as f64,
    )
}

/// Times `f` (one operation per call): calibrates the iteration count, then prints the median, min and
/// max ns/op of the runs (on a busy machine the min is the closest to the undisturbed cost), and the
/// allocations and bytes per operation.
fn bench(filter: &str, name: &str, mut f: impl FnMut()) {
    if !name.contains(filter) {
        return;
    }
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let e = t.elapsed();
        if e >= RUN_TARGET / 4 || iters >= 1 << 30 {
            let per = e.as_nanos().max(1) as f64 / iters as f64;
            iters = ((RUN_TARGET.as_nanos() as f64 / per) as u64).max(1);
            break;
        }
        iters *= 4;
    }
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    let (lo, mid, hi) = (runs[0], runs[RUNS / 2], runs[RUNS - 1]);
    let (allocs, bytes) = allocations(&mut f);
    println!("{name:<48} {mid:>12.1} {lo:>12.1} {hi:>12.1} {allocs:>10.1} {bytes:>10.0}");
}

fn v4_prefixes(n: usize, seed: u64) -> Vec<Net> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let len = 16 + (rng.next() % 17) as u32;
            let a = (rng.next() as u32) & (u32::MAX << (32 - len));
            parse_net(&format!("{}/{len}", Ipv4Addr::from(a))).unwrap()
        })
        .collect()
}

/// The benchmark's policy D (benches/e2e/bench.py): every check on, the given signature key.
fn policy_d(key: &str) -> String {
    format!(
        r#"{{
  "client_ip": {{ "trusted_proxies": ["127.0.0.1/32"] }},
  "ip_lists": {{ "allowed": ["127.0.0.1/32", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "198.51.100.0/24",
                             "203.0.113.0/24", "100.64.0.0/10", "192.0.2.0/24", "169.254.0.0/16", "198.18.0.0/15"] }},
  "policies": {{
    "api": {{
      "https": {{ "action": "reject", "hsts": {{ "max_age_s": 31536000 }} }},
      "ip": {{ "allow": ["@allowed"] }},
      "signature": {{
        "keys": [{key}],
        "components": ["@method", "@authority", "@path", "@query", "content-digest"],
        "max_age_s": 3600, "nonce": "optional"
      }},
      "rate_limits": [
        {{ "name": "per-client", "key": "client_ip", "limit": 1000000000, "window_s": 1 }},
        {{ "name": "per-key", "key": "key_id", "limit": 1000000000, "window_s": 1 }}
      ],
      "log": {{ "pseudonym_key": {{ "base64": "{log_key}" }}, "pseudonymize": ["client_ip", "key_id"],
               "headers": ["user-agent"] }}
    }}
  }},
  "routes": [{{ "route": "api", "policy": "api" }}]
}}"#,
        log_key = STANDARD.encode(LOG_KEY)
    )
}

/// The benchmark's request: POST with a 256-byte JSON body, as a trusted proxy forwards it.
fn raw_request() -> Vec<u8> {
    let mut body = br#"{"order":{"id":42,"currency":"EUR","items":[""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 150));
    body.extend_from_slice(br#""]},"note":""#);
    body.extend(std::iter::repeat_n(b'p', 256 - body.len() - 2));
    body.extend_from_slice(br#""}"#);
    assert_eq!(body.len(), 256);
    let mut raw = b"POST /api/orders?id=42&currency=EUR HTTP/1.1\r\nHost: bench.example\r\n\
Content-Type: application/json\r\nUser-Agent: edgeward-bench/1\r\nX-Forwarded-Proto: https\r\n\r\n"
        .to_vec();
    raw.extend_from_slice(&body);
    raw
}

/// The request signed with `key`, as the plugin sees it (`:authority` from Host, route name `api`).
fn signed(key: SigningKey) -> (ParsedRequest, String) {
    let mut req = parse_http_request(&raw_request()).unwrap();
    let mut p = SignParams::new("bench-client", key, NOW);
    p.components = ["@method", "@authority", "@path", "@query", "content-digest"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let signed = sign_request(&req, &p).unwrap();
    for (k, v) in signed.headers() {
        req.headers.push((k.to_ascii_lowercase(), v));
    }
    let params = signed
        .signature_input
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap();
    (req, params)
}

fn head(req: &ParsedRequest) -> RequestHead<'_> {
    let mut h = req.head(
        "bench.example",
        None,
        Peer::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    h.route_name = Some("api");
    h
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters by name.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let filter = filter.as_str();
    println!(
        "{:<48} {:>12} {:>12} {:>12} {:>10} {:>10}   (ns per operation, {RUNS} runs; heap allocations and bytes per operation)",
        "benchmark", "median", "min", "max", "allocs", "bytes"
    );

    // Route selection: the demo document's four entries, the request matching the last one.
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/demo.json"))
        .unwrap();
    let env = |name: &str| (name == "EDGEWARD_LOG_KEY").then(|| STANDARD.encode(LOG_KEY));
    let env = move |name: &str| {
        env(name).or_else(|| {
            name.starts_with("PARTNER_A_KEY")
                .then(|| STANDARD.encode(HMAC_SECRET))
        })
    };
    let demo = Document::from_json(&demo, &env).unwrap();
    assert_eq!(
        select(&demo.routes, Some("public"), "localhost", "/docs"),
        Some(3)
    );
    bench(filter, "route selection (4 entries, last matches)", || {
        black_box(select(
            black_box(&demo.routes),
            Some("public"),
            black_box("localhost"),
            black_box("/docs"),
        ));
    });

    // IP lookup: half of the probes inside a listed prefix.
    for n in [10usize, 10_000, 100_000] {
        let nets = v4_prefixes(n, 0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let table = IpTable::from_nets(&nets);
        let mut rng = Rng(7);
        let probes: Vec<IpAddr> = (0..4096)
            .map(|i| {
                if i % 2 == 0 {
                    let net = nets[(rng.next() % nets.len() as u64) as usize];
                    let IpAddr::V4(a) = net.addr() else {
                        unreachable!()
                    };
                    let host = (rng.next() as u32)
                        .checked_shr(u32::from(net.prefix_len()))
                        .unwrap_or(0);
                    IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
                } else {
                    IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
                }
            })
            .collect();
        let mut i = 0usize;
        bench(filter, &format!("ip lookup, {n} IPv4 prefixes"), || {
            i = (i + 1) & 4095;
            black_box(table.contains(black_box(probes[i])));
        });
    }

    // Signature verification through SignaturePolicy::verify_head.
    let hmac_key = format!(
        r#"{{ "id": "bench-client", "alg": "hmac-sha256", "secret": {{ "base64": "{}" }} }}"#,
        STANDARD.encode(HMAC_SECRET)
    );
    let doc_hmac = Document::from_json(&policy_d(&hmac_key), &edgeward::secret::NoEnv).unwrap();
    let (req_hmac, params) = signed(SigningKey::hmac(HMAC_SECRET).unwrap());
    let covered: Vec<ComponentId> = ["@method", "@authority", "@path", "@query", "content-digest"]
        .iter()
        .map(|c| ComponentId::parse_config(c).unwrap())
        .collect();
    let base = signature_base(&head(&req_hmac), &covered, &params).unwrap();
    let sig_hmac = doc_hmac.policies[0].signature.as_ref().unwrap();
    assert!(sig_hmac.verify_head(&head(&req_hmac), NOW).is_ok());
    bench(
        filter,
        &format!("verify_head hmac-sha256 ({}-byte base)", base.len()),
        || {
            black_box(sig_hmac.verify_head(black_box(&head(&req_hmac)), NOW))
                .as_ref()
                .unwrap();
        },
    );

    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let ed_key = format!(
        r#"{{ "id": "bench-client", "alg": "ed25519", "public_key": "{}" }}"#,
        STANDARD.encode(ed.verifying_key().to_bytes())
    );
    let doc_ed = Document::from_json(&policy_d(&ed_key), &edgeward::secret::NoEnv).unwrap();
    let (req_ed, _) = signed(SigningKey::Ed25519(Box::new(ed)));
    let sig_ed = doc_ed.policies[0].signature.as_ref().unwrap();
    assert!(sig_ed.verify_head(&head(&req_ed), NOW).is_ok());
    bench(filter, "verify_head ed25519 (same request)", || {
        black_box(sig_ed.verify_head(black_box(&head(&req_ed)), NOW))
            .as_ref()
            .unwrap();
    });

    // Content-Digest.
    for size in [1024usize, 64 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let headers = vec![(
            "content-digest".to_string(),
            content_digest_header(DigestAlg::Sha256, &body),
        )];
        assert!(check_content_digest(Headers::new(&headers), &body).is_ok());
        bench(
            filter,
            &format!("content-digest sha-256, {} KiB body", size / 1024),
            || {
                black_box(check_content_digest(
                    Headers::new(&headers),
                    black_box(&body),
                ))
                .unwrap();
            },
        );
    }

    // Rate-limit decision: policy D's two limits (client address and key id), never reached.
    let limits = &doc_hmac.policies[0].rate_limits;
    let mut store = MemoryStore::new();
    doc_hmac.prepare(&mut store).unwrap();
    let mut now_ns = NOW * 1_000_000_000;
    bench(
        filter,
        "rate-limit decision (2 limits, MemoryStore)",
        || {
            now_ns += 1_000;
            let keys = KeyInputs {
                client_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                key_id: Some("bench-client"),
                headers: Headers::new(&req_hmac.headers),
            };
            let out = limits.acquire(&keys, now_ns, &mut store, &doc_hmac.hash_key);
            assert!(matches!(
                out,
                edgeward::rate_limit::RateOutcome::Allowed { .. }
            ));
        },
    );

    // The same with `"lease": 64` on both limits, one worker: 63 of 64 decisions touch no shared data.
    let leased = Document::from_json(
        &policy_d(&hmac_key).replace(r#""window_s": 1 }"#, r#""window_s": 1, "lease": 64 }"#),
        &edgeward::secret::NoEnv,
    )
    .unwrap();
    let leased_limits = &leased.policies[0].rate_limits;
    assert!(leased_limits.limits().iter().all(|l| l.lease == 64));
    let worker = std::rc::Rc::new(edgeward::rate_limit::Leases::new());
    let mut store = MemoryStore::new();
    leased.prepare(&mut store).unwrap();
    bench(filter, "rate-limit decision (2 limits, leasing 64)", || {
        now_ns += 1_000;
        let keys = KeyInputs {
            client_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            key_id: Some("bench-client"),
            headers: Headers::new(&req_hmac.headers),
        };
        let (out, _) =
            leased_limits.acquire_held(&keys, now_ns, &mut store, &worker, &leased.hash_key);
        assert!(matches!(
            out,
            edgeward::rate_limit::RateOutcome::Allowed { .. }
        ));
    });

    // The log record of an allowed request (two pseudonyms, one header, RFC 3339 time).
    let h = head(&req_hmac);
    let mut s2 = MemoryStore::new();
    doc_hmac.prepare(&mut s2).unwrap();
    let mut ev = doc_hmac.evaluate_head(&h, NOW * 1_000_000_000, &mut s2);
    ev.evaluate_body(&doc_hmac, &h, &req_hmac.body, &mut s2);
    assert_eq!(ev.status(), 200, "{:?}", ev.reason());
    bench(filter, "log record (2 pseudonyms, 1 header)", || {
        black_box(ev.record(&doc_hmac, black_box(&h), 200, NOW * 1_000_000_000));
    });

    // Policy D's whole allow path as the plugin runs it: head, body, then the record (the worker's
    // key cache and lease table made once, as the plugin's root context does).
    let mut s3 = MemoryStore::new();
    doc_hmac.prepare(&mut s3).unwrap();
    let mut now_ns = NOW * 1_000_000_000;
    let no_leases = std::rc::Rc::new(edgeward::rate_limit::Leases::disabled());
    bench(filter, "policy D allow path (head + body + record)", || {
        now_ns += 1_000;
        let h = head(black_box(&req_hmac));
        let mut ev = doc_hmac.evaluate_head_with(
            &h,
            now_ns,
            &edgeward::keys::KeyCache::EMPTY,
            &no_leases,
            &mut s3,
        );
        ev.evaluate_body(&doc_hmac, &h, &req_hmac.body, &mut s3);
        assert_eq!(ev.status(), 200);
        black_box(ev.record(&doc_hmac, &h, 200, now_ns));
    });
}
