//! DEVELOPMENT SERVER — not for production. A minimal Envoy rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) over Kuadrant's Limitador engine,
//! for edgeward's end-to-end tests and local trials. In production run envoyproxy/ratelimit or
//! Limitador (limitador-server), both backed by Redis.
//!
//! It maps a request the way limitador-server does: the domain is the Limitador namespace, and the
//! descriptors are bound as the CEL list `descriptors` (each one a map of its entries), so a limit's
//! conditions and variables read e.g. `descriptors[0].limit` and `descriptors[0].key`.
//!
//! Usage: `edgeward-rls-dev --limits FILE [--listen 127.0.0.1:8081] [--delay-ms N] [--redis URL]
//! [--atomic]`. FILE is a JSON list of Limitador limits (the schema of limitador-server's limits
//! file; JSON is also YAML, so the same file works there). Prints `listening on ADDR` once bound
//! (port 0 picks one).
//!
//! Statuses: an over-limit answer carries one status per descriptor, OVER_LIMIT on the descriptor
//! whose limit was exceeded (the one its conditions index, `descriptors[N]`), as envoyproxy/ratelimit
//! answers; limitador-server leaves them empty. edgeward tells a replayed nonce from a rate limit by
//! them.
//!
//! Admission: by default `check_rate_limited_and_update`, as limitador-server answers
//! `ShouldRateLimit`: it reads the counters, then increments them (in Redis: two round trips, so
//! concurrent requests through several servers can all pass the read and overshoot the limit).
//! `--atomic` admits through Limitador's `reserve` instead, an atomic check-and-hold (in Redis one Lua
//! script, `SCRIPT_RESERVE`; in memory under one lock), and never commits: each admitted request's
//! hold lasts until its counter's window ends, so the holds are the count and no burst, on any
//! number of servers sharing one Redis, gets more than the limit through. Servers sharing a Redis
//! must all use the same mode (check-and-update reads the counter only, not the holds).

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::DescriptorStatus;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use limitador::limit::{Context, Limit, Namespace};
use limitador::reservation::ReservationLimits;
use limitador::{AsyncRateLimiter, RateLimiter, RateLimiterBuilder};
use std::collections::HashMap;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// In memory (one process) or, with the `redis` feature, in Redis (shared by several servers).
enum Limiter {
    Memory(RateLimiter),
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Redis(AsyncRateLimiter),
}

struct Service {
    limiter: Limiter,
    /// Admit with `reserve` (atomic) rather than `check_rate_limited_and_update`.
    atomic: bool,
    /// Answers this much later (tests use it to prove that nothing reaches the upstream meanwhile).
    delay: Duration,
    /// Each named limit's descriptor position (the largest `descriptors[N]` its conditions read).
    positions: HashMap<String, usize>,
}

/// The descriptor a limit reads: the largest `N` of `descriptors[N]` in its conditions.
fn descriptor_position(limit: &Limit) -> Option<usize> {
    limit
        .conditions()
        .iter()
        .flat_map(|c| {
            c.match_indices("descriptors[")
                .filter_map(|(i, m)| {
                    let rest = c.get(i + m.len()..)?;
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<usize>().ok()
                })
                .collect::<Vec<_>>()
        })
        .max()
}

fn positions(limits: &[Limit]) -> HashMap<String, usize> {
    limits
        .iter()
        .filter_map(|l| Some((l.name()?.to_string(), descriptor_position(l)?)))
        .collect()
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        let descriptors = req.descriptors.len();
        let namespace = Namespace::from(req.domain);
        let mut ctx = Context::default();
        ctx.list_binding(
            "descriptors".to_string(),
            req.descriptors
                .into_iter()
                .map(|d| d.entries.into_iter().map(|e| (e.key, e.value)).collect())
                .collect::<Vec<HashMap<String, String>>>(),
        );
        // The field is optional; unset reads as 0 and means 1.
        let hits = u64::from(req.hits_addend.max(1));
        // Limitador panics when a limit's expression fails to evaluate (e.g. `descriptors[1]` on a
        // request with one descriptor): answer an error instead of dropping the stream.
        let hint = "limit evaluation failed (an index past the last descriptor? guard it with size(descriptors) > i)";
        // `reserve` with no ttl holds for ReservationLimits::max_ttl (the longest window, see
        // `limiter`), which Limitador cuts to the end of each counter's window.
        let checked = match (&self.limiter, self.atomic) {
            (Limiter::Memory(l), false) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    l.check_rate_limited_and_update(&namespace, &ctx, hits)
                        .map(|mut r| (r.limited, r.response_header(), r.limit_name.take()))
                }))
                .map_err(|_| Status::internal(hint))?
            }
            (Limiter::Memory(l), true) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    l.reserve(&namespace, &ctx, hits, None)
                        .map(|mut r| (r.limited, r.response_header(), r.limit_name.take()))
                }))
                .map_err(|_| Status::internal(hint))?
            }
            (Limiter::Redis(l), false) => l
                .check_rate_limited_and_update(&namespace, &ctx, hits)
                .await
                .map(|mut r| (r.limited, r.response_header(), r.limit_name.take())),
            (Limiter::Redis(l), true) => l
                .reserve(&namespace, &ctx, hits, None)
                .await
                .map(|mut r| (r.limited, r.response_header(), r.limit_name.take())),
        };
        let (limited, headers, limit_name) =
            checked.map_err(|e| Status::unavailable(e.to_string()))?;
        let over = limit_name
            .filter(|_| limited)
            .and_then(|name| self.positions.get(&name).copied())
            .filter(|&i| i < descriptors);
        let statuses = match over {
            Some(over) => (0..descriptors)
                .map(|i| DescriptorStatus {
                    code: if i == over { Code::OverLimit } else { Code::Ok } as i32,
                    ..Default::default()
                })
                .collect(),
            None => Vec::new(),
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut headers: Vec<HeaderValue> = headers
            .into_iter()
            .map(|(key, value)| HeaderValue {
                key,
                value,
                ..Default::default()
            })
            .collect();
        headers.sort_by(|a, b| a.key.cmp(&b.key));
        let code = if limited { Code::OverLimit } else { Code::Ok };
        Ok(Response::new(RateLimitResponse {
            overall_code: code as i32,
            statuses,
            response_headers_to_add: headers,
            ..Default::default()
        }))
    }
}

struct Args {
    listen: String,
    limits: String,
    delay_ms: u64,
    redis: Option<String>,
    atomic: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:8081".to_string(),
        limits: String::new(),
        delay_ms: 0,
        redis: None,
        atomic: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--limits" => args.limits = value()?,
            "--delay-ms" => args.delay_ms = value()?.parse().map_err(|e| format!("{e}"))?,
            "--redis" => args.redis = Some(value()?),
            "--atomic" => args.atomic = true,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if args.limits.is_empty() {
        return Err("--limits FILE is required".to_string());
    }
    Ok(args)
}

/// Reservation limits for `--atomic`: a hold may take a whole counter (the default fraction, 1.0)
/// and may last as long as the longest window (Limitador's default ceiling is 60 s, after which a
/// hold would lapse inside a longer window and let another request through).
fn reservation_limits(limits: &[Limit]) -> ReservationLimits {
    let longest = limits.iter().map(Limit::seconds).max().unwrap_or(1).max(1);
    ReservationLimits {
        max_fraction: 1.0,
        max_ttl: Duration::from_secs(longest),
    }
}

async fn limiter(redis: Option<&str>, reservations: ReservationLimits) -> Result<Limiter, String> {
    match redis {
        None => Ok(Limiter::Memory(
            RateLimiterBuilder::new(100_000)
                .reservation_limits(reservations)
                .build(),
        )),
        #[cfg(feature = "redis")]
        Some(url) => {
            // The uncached AsyncRedisStorage: every call reads and writes Redis (CachedRedisStorage
            // counts locally and flushes in the background, and keeps its reservations in memory).
            let storage = limitador::storage::redis::AsyncRedisStorage::new(url)
                .await
                .map_err(|e| format!("redis {url}: {e}"))?;
            let storage = limitador::storage::AsyncStorage::with_counter_storage(Box::new(storage));
            Ok(Limiter::Redis(
                limitador::AsyncRateLimiterBuilder::new(storage)
                    .reservation_limits(reservations)
                    .build(),
            ))
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            let _ = reservations;
            Err(
                "--redis needs a build with Redis storage (bash rls-dev/build-redis.sh)"
                    .to_string(),
            )
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()
        .map_err(|e| format!("{e}\nusage: edgeward-rls-dev --limits FILE [--listen ADDR] [--delay-ms N] [--redis URL] [--atomic]"))?;
    let text =
        std::fs::read_to_string(&args.limits).map_err(|e| format!("{}: {e}", args.limits))?;
    let limits: Vec<Limit> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.limits))?;
    let limiter = limiter(args.redis.as_deref(), reservation_limits(&limits)).await?;
    let positions = positions(&limits);
    let count = limits.len();
    match &limiter {
        Limiter::Memory(l) => l.configure_with(limits),
        Limiter::Redis(l) => l.configure_with(limits).await,
    }
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("{}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let admission = if args.atomic {
        "atomic (reserve)"
    } else {
        "check, then update"
    };
    println!("edgeward-rls-dev (DEVELOPMENT server): {count} limits, admission {admission}; listening on {addr}");
    let service = Service {
        limiter,
        atomic: args.atomic,
        delay: Duration::from_millis(args.delay_ms),
        positions,
    };
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(service))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;

    fn service(limits: &str) -> Service {
        service_with(limits, false)
    }

    fn service_with(limits: &str, atomic: bool) -> Service {
        let limits: Vec<Limit> = serde_json::from_str(limits).unwrap();
        let l = RateLimiterBuilder::new(1000)
            .reservation_limits(reservation_limits(&limits))
            .build();
        let positions = positions(&limits);
        l.configure_with(limits).unwrap();
        Service {
            limiter: Limiter::Memory(l),
            atomic,
            delay: Duration::ZERO,
            positions,
        }
    }

    /// One ShouldRateLimit call with `(limit, key)` descriptors and a hit of 1.
    fn call(s: &Service, descs: &[(&str, &str)]) -> Result<Response<RateLimitResponse>, Status> {
        let req = RateLimitRequest {
            domain: "edgeward".into(),
            descriptors: descs
                .iter()
                .map(|(l, k)| RateLimitDescriptor {
                    entries: vec![
                        Entry {
                            key: "limit".into(),
                            value: l.to_string(),
                        },
                        Entry {
                            key: "key".into(),
                            value: k.to_string(),
                        },
                    ],
                    ..Default::default()
                })
                .collect(),
            hits_addend: 1,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(s.should_rate_limit(Request::new(req)))
    }

    fn ask(s: &Service, descs: &[(&str, &str)]) -> i32 {
        call(s, descs).unwrap().into_inner().overall_code
    }

    fn ask_status(s: &Service, descs: &[(&str, &str)]) -> Option<tonic::Code> {
        call(s, descs).err().map(|e| e.code())
    }

    #[test]
    fn cel_forms() {
        let s = service(
            r#"[
          {"namespace": "edgeward", "max_value": 2, "seconds": 60,
           "conditions": ["descriptors[0].limit == 'a'"], "variables": ["descriptors[0].key"]}
        ]"#,
        );
        let ok = Code::Ok as i32;
        let over = Code::OverLimit as i32;
        assert_eq!(ask(&s, &[("a", "k1")]), ok);
        assert_eq!(ask(&s, &[("a", "k1")]), ok);
        assert_eq!(ask(&s, &[("a", "k1")]), over);
        assert_eq!(ask(&s, &[("a", "k2")]), ok);
    }

    #[test]
    fn atomic_admission_counts_like_check_and_update() {
        // Same answers and headers in both modes, sequentially; a second window is 1 s away.
        let limits = r#"[
          {"namespace": "edgeward", "max_value": 2, "seconds": 1,
           "conditions": ["descriptors[0].limit == 'a'"], "variables": ["descriptors[0].key"]},
          {"namespace": "edgeward", "max_value": 3, "seconds": 300,
           "conditions": ["descriptors[0].limit == 'b'"], "variables": ["descriptors[0].key"]}
        ]"#;
        let ok = Code::Ok as i32;
        let over = Code::OverLimit as i32;
        for atomic in [false, true] {
            let s = service_with(limits, atomic);
            let remaining = |descs: &[(&str, &str)]| {
                let r = call(&s, descs).unwrap().into_inner();
                let h = r
                    .response_headers_to_add
                    .iter()
                    .find(|h| h.key == "X-RateLimit-Remaining")
                    .map(|h| h.value.clone());
                (r.overall_code, h)
            };
            assert_eq!(remaining(&[("b", "k")]), (ok, Some("2".into())), "{atomic}");
            assert_eq!(remaining(&[("b", "k")]), (ok, Some("1".into())), "{atomic}");
            assert_eq!(remaining(&[("b", "k")]), (ok, Some("0".into())), "{atomic}");
            assert_eq!(remaining(&[("b", "k")]).0, over, "{atomic}");
            assert_eq!(ask(&s, &[("a", "k")]), ok);
            assert_eq!(ask(&s, &[("a", "k")]), ok);
            assert_eq!(ask(&s, &[("a", "k")]), over);
            std::thread::sleep(Duration::from_millis(1100));
            assert_eq!(ask(&s, &[("a", "k")]), ok, "a new window, {atomic}");
            assert_eq!(ask(&s, &[("b", "k")]), over, "{atomic}");
        }
    }

    #[test]
    fn atomic_admission_is_exact_under_a_concurrent_burst() {
        // "One per window" (e.g. a nonce): of many simultaneous identical requests exactly one
        // passes, and exactly LIMIT of a larger limit.
        for limit in [1usize, 5] {
            let s = service_with(
                &format!(
                    r#"[{{"namespace": "edgeward", "max_value": {limit}, "seconds": 60,
                    "conditions": ["descriptors[0].limit == 'n'"], "variables": ["descriptors[0].key"]}}]"#
                ),
                true,
            );
            let start = std::sync::Barrier::new(16);
            let passed: usize = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..16)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            (0..4)
                                .filter(|_| ask(&s, &[("n", "nonce-1")]) == Code::Ok as i32)
                                .count()
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).sum()
            });
            assert_eq!(passed, limit);
        }
    }

    /// An over-limit answer says which descriptor is over (as envoyproxy/ratelimit does), so that
    /// edgeward can tell a replayed nonce (first descriptor) from a rate limit.
    #[test]
    fn over_limit_answers_carry_per_descriptor_statuses() {
        let s = service(
            r#"[
              {"namespace": "edgeward", "name": "n", "max_value": 1, "seconds": 60,
               "conditions": ["descriptors[0].limit == 'n'"], "variables": ["descriptors[0].key"]},
              {"namespace": "edgeward", "name": "b", "max_value": 2, "seconds": 60,
               "conditions": ["size(descriptors) > 1 && descriptors[1].limit == 'b'"],
               "variables": ["descriptors[1].key"]}
            ]"#,
        );
        let statuses = |descs: &[(&str, &str)]| {
            let r = call(&s, descs).unwrap().into_inner();
            let codes: Vec<i32> = r.statuses.iter().map(|d| d.code).collect();
            (r.overall_code, codes)
        };
        let (ok, over) = (Code::Ok as i32, Code::OverLimit as i32);
        assert_eq!(statuses(&[("n", "x1"), ("b", "u")]), (ok, vec![]));
        // The nonce again: its descriptor (0) is over.
        assert_eq!(statuses(&[("n", "x1"), ("b", "u")]), (over, vec![over, ok]));
        assert_eq!(statuses(&[("n", "x2"), ("b", "u")]), (ok, vec![]));
        // The second limit is spent: descriptor 1 is over.
        assert_eq!(statuses(&[("n", "x3"), ("b", "u")]), (over, vec![ok, over]));
    }

    #[test]
    fn a_second_descriptor_needs_a_size_guard() {
        // Limitador evaluates every limit of the namespace against every request; an index past
        // the end makes it panic (answered as an error), a guarded one simply does not apply.
        let s = service(
            r#"[{"namespace": "edgeward", "max_value": 1, "seconds": 60,
            "conditions": ["size(descriptors) > 1 && descriptors[1].limit == 'b'"],
            "variables": ["descriptors[1].key"]}]"#,
        );
        let ok = Code::Ok as i32;
        let over = Code::OverLimit as i32;
        assert_eq!(ask(&s, &[("x", "k"), ("b", "u1")]), ok);
        assert_eq!(ask(&s, &[("x", "k"), ("b", "u1")]), over);
        assert_eq!(ask(&s, &[("x", "k"), ("b", "u2")]), ok);
        assert_eq!(ask(&s, &[("b", "u1")]), ok);
        // Comprehensions never match: Limitador takes the bound `d` for a missing variable.
        let exists = service(
            r#"[{"namespace": "edgeward", "max_value": 1, "seconds": 60,
            "conditions": ["descriptors.exists(d, d.limit == 'b')"], "variables": []}]"#,
        );
        assert_eq!(ask(&exists, &[("b", "u1")]), ok);
        assert_eq!(ask(&exists, &[("b", "u1")]), ok);
        let unguarded = service(
            r#"[{"namespace": "edgeward", "max_value": 1, "seconds": 60,
            "conditions": ["descriptors[1].limit == 'b'"], "variables": ["descriptors[1].key"]}]"#,
        );
        assert_eq!(
            ask_status(&unguarded, &[("b", "u1")]),
            Some(tonic::Code::Internal)
        );
    }
}
