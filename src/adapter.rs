//! The proxy-wasm adapter: reads the request from the host (one headers map, a few properties), calls
//! the core, and maps the evaluation to Envoy (local reply, header changes, filter state). Compiled only
//! for `wasm32-wasip1`.
//!
//! It exports the proxy-wasm ABI (0.2.1) itself instead of using the SDK's dispatcher: Envoy calls a
//! plugin callback only if the module exports it, and every call crosses the VM boundary (several µs
//! here, see docs/benchmark.md). The SDK exports all of them; edgeward exports what it uses (no
//! `on_done`, no response body or trailers callbacks) and never panics on an unknown context id.

use crate::decision::Reason;
use crate::document::Document;
use crate::host::{self, level};
use crate::keys::refresh::{self, Fetched};
use crate::keys::KeyCache;
use crate::rate_limit::Leases;
use crate::request::{HeaderText, Headers, Peer, RequestHead, TlsVersion};
use crate::store::{Cas, SharedStore, StoreError};
use crate::stream::{Actions, BodyBudget, HoldLimits, LocalReply, Stream, Verdict};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::Duration;

/// What a request callback tells Envoy: go on with the next filter, or hold the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Continue = 0,
    Pause = 1,
}

fn log(level: u32, msg: &str) {
    host::log(level, msg);
}

thread_local! {
    /// The root contexts of this VM (one per plugin configuration sharing the VM), by context id.
    static ROOTS: RefCell<BTreeMap<u32, EdgewardRoot>> = const { RefCell::new(BTreeMap::new()) };
    /// The HTTP streams in flight on this worker, by context id.
    static STREAMS: RefCell<BTreeMap<u32, EdgewardHttp>> = const { RefCell::new(BTreeMap::new()) };
    /// Pending rate limit service calls: (root context, token) → the stream waiting for the answer.
    /// Answers arrive on the root that made the call. Envoy 1.40 numbers calls across the whole VM
    /// (tests/e2e_rls.rs saw tokens 5, 9, 13, 17 from two roots), but the ABI promises only a token
    /// per call of a root, and older hosts numbered each root from 1: keyed by both, two plugin
    /// configurations sharing this VM can never take each other's answers.
    static GRPC_CALLS: RefCell<BTreeMap<(u32, u32), u32>> = const { RefCell::new(BTreeMap::new()) };
}

/// Runs `f` on stream `id`; `None` if there is no such stream (or, which Envoy never does, the call
/// re-entered a callback of this VM).
fn with_stream<R>(id: u32, f: impl FnOnce(&mut EdgewardHttp) -> R) -> Option<R> {
    STREAMS.with(|s| s.try_borrow_mut().ok()?.get_mut(&id).map(f))
}

fn with_root<R>(id: u32, f: impl FnOnce(&mut EdgewardRoot) -> R) -> Option<R> {
    ROOTS.with(|r| r.try_borrow_mut().ok()?.get_mut(&id).map(f))
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The module's initializer (WASI reactor), called once by the host before anything else.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the linker-generated constructor list, run once as the WASI reactor model requires.
    #[cfg(target_os = "wasi")]
    unsafe {
        __wasm_call_ctors();
    }
    std::panic::set_hook(Box::new(|info| {
        // Reached only through a bug; with panic=abort the VM traps after this line is logged.
        log(level::CRITICAL, &format!("edgeward: panic: {info}"));
    }));
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host's buffers for data it hands to the plugin; `host` takes ownership with `Vec::from_raw_parts`.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<MaybeUninit<u8>> = Vec::with_capacity(size);
    // SAFETY: `MaybeUninit` needs no initialization; the host writes the bytes before we read them.
    unsafe { v.set_len(size) };
    Box::into_raw(v.into_boxed_slice()).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        ROOTS.with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                r.insert(context_id, EdgewardRoot::new());
            }
        });
        return;
    }
    // A root whose document did not load creates no stream: its callbacks then find none, and
    // Envoy does not run a plugin whose configuration failed.
    if let Some(Some(stream)) = with_root(root_context_id, |root| {
        root.create_http_context(context_id, root_context_id)
    }) {
        STREAMS.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.insert(context_id, stream);
            }
        });
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_context_id: u32, _configuration_size: usize) -> u32 {
    u32::from(with_root(root_context_id, EdgewardRoot::on_configure).unwrap_or(false))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    with_root(root_context_id, |root| {
        root.refresh_keys(true);
        root.metrics.flush();
    });
    answer_overdue_bodies(root_context_id);
}

/// A key source fetch (the only HTTP calls edgeward makes) finished on root `context_id`; no headers
/// means no answer (connection failure, timeout, reset).
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    with_root(context_id, |root| {
        root.on_fetch_response(token, num_headers, body_size)
    });
}

/// Answers every stream of this root whose body is past its deadline (the tick is the only clock a
/// held stream has: a client that stops sending gets no callback).
fn answer_overdue_bodies(root: u32) {
    let Some(now) = host::now_ns() else {
        return;
    };
    let overdue: Vec<u32> = STREAMS.with(|s| {
        s.try_borrow()
            .map(|s| {
                s.iter()
                    .filter(|(_, st)| st.root_id == root && st.stream.body_overdue(now))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default()
    });
    for id in overdue {
        // Host calls on behalf of the stream (buffer size, local reply) act on its context.
        if host::set_effective_context(id).is_ok() {
            with_stream(id, |s| s.on_tick(now));
        }
    }
}

/// Request callbacks on a stream this VM does not know hold the stream (fail closed); Envoy only calls
/// them for streams it created here.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> u32 {
    with_stream(context_id, |s| {
        s.on_http_request_headers(num_headers, end_of_stream != 0)
    })
    .unwrap_or(Action::Pause) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: u32,
) -> u32 {
    with_stream(context_id, |s| {
        s.on_http_request_body(body_size, end_of_stream != 0)
    })
    .unwrap_or(Action::Pause) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _num_trailers: usize) -> u32 {
    with_stream(context_id, EdgewardHttp::on_http_request_trailers).unwrap_or(Action::Pause) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: u32,
) -> u32 {
    with_stream(context_id, EdgewardHttp::on_http_response_headers);
    Action::Continue as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    with_stream(context_id, EdgewardHttp::on_log);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let removed = STREAMS.with(|s| s.try_borrow_mut().ok()?.remove(&context_id));
    if removed.is_some() {
        // A call still pending for this stream answers into nothing.
        GRPC_CALLS.with(|g| {
            if let Ok(mut g) = g.try_borrow_mut() {
                g.retain(|_, stream| *stream != context_id);
            }
        });
    } else {
        ROOTS.with(|r| r.try_borrow_mut().ok().map(|mut r| r.remove(&context_id)));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(root_context_id: u32, token: u32, response_size: usize) {
    grpc_answer(root_context_id, token, 0, response_size);
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(root_context_id: u32, token: u32, status_code: u32) {
    grpc_answer(root_context_id, token, status_code, 0);
}

/// Delivers the end of a rate limit service call to the stream that made it (status 0: the answer is in
/// the gRPC receive buffer).
fn grpc_answer(root: u32, token: u32, status_code: u32, response_size: usize) {
    let Some(stream) = GRPC_CALLS.with(|g| g.try_borrow_mut().ok()?.remove(&(root, token))) else {
        return;
    };
    // The answer arrives on the root context: host calls must act on the stream.
    if host::set_effective_context(stream).is_ok() {
        with_stream(stream, |s| {
            s.on_grpc_call_response(token, status_code, response_size)
        });
    }
}

struct EdgewardRoot {
    doc: Option<Rc<Document>>,
    metrics: Rc<Metrics>,
    /// The bytes this worker's streams of this configuration hold in bodies.
    budget: Rc<BodyBudget>,
    /// This worker's copies of the document's key source sets (crate::keys), read by its streams.
    keys: Rc<RefCell<KeyCache>>,
    /// This worker's token leases of this configuration's limits (crate::rate_limit::Leases).
    leases: Rc<Leases>,
    /// Key source fetches this root has in flight: call token → source index.
    fetches: BTreeMap<u32, usize>,
}

/// How often a worker copies new key sets from shared data, at most (documents with key sources).
const KEY_SYNC: Duration = Duration::from_millis(250);

/// How often a worker VM adds its pending counts to Envoy's counters.
const METRICS_FLUSH: Duration = Duration::from_secs(1);

/// The document's counters in one VM: their ids, defined once, and the counts not yet added to them.
/// A request only bumps `pending`; the root context flushes it every `METRICS_FLUSH` (one host call
/// per counter that changed, instead of one per request), so `/stats` lags by at most that long.
#[derive(Default)]
struct Metrics {
    ids: Vec<u32>,
    pending: RefCell<Vec<u64>>,
}

impl Metrics {
    /// Defines every counter of the document once per VM.
    fn define(doc: &Document) -> Metrics {
        let ids: Vec<u32> = crate::metrics::names(doc)
            .iter()
            .map(|n| host::define_counter(n).unwrap_or(u32::MAX))
            .collect();
        let pending = RefCell::new(vec![0; ids.len()]);
        Metrics { ids, pending }
    }

    fn add(&self, i: usize) {
        if let Some(n) = self.pending.borrow_mut().get_mut(i) {
            *n += 1;
        }
    }

    fn flush(&self) {
        for (i, n) in self.pending.borrow_mut().iter_mut().enumerate() {
            if *n > 0 {
                if let Some(&id) = self.ids.get(i).filter(|&&id| id != u32::MAX) {
                    host::increment_metric(id, i64::try_from(*n).unwrap_or(i64::MAX));
                }
                *n = 0;
            }
        }
    }
}

impl EdgewardRoot {
    fn new() -> Self {
        EdgewardRoot {
            doc: None,
            metrics: Rc::new(Metrics::default()),
            budget: Rc::new(BodyBudget::new(0)),
            keys: Rc::new(RefCell::new(KeyCache::default())),
            leases: Rc::new(Leases::disabled()),
            fetches: BTreeMap::new(),
        }
    }

    /// On the tick: copies newer key sets from shared data, and (with `fetch`) fetches each source
    /// whose refresh is due when this worker wins its lease (one fetch per source per Envoy process).
    fn refresh_keys(&mut self, fetch: bool) {
        let Some(doc) = self.doc.clone() else {
            return;
        };
        if doc.key_sources.is_empty() {
            return;
        }
        let Some(now) = host::now_ns() else {
            return;
        };
        for (i, source) in doc.key_sources.iter().enumerate() {
            if let Ok(mut cache) = self.keys.try_borrow_mut() {
                refresh::sync(&HostStore, source, i, &mut cache);
            }
            if !fetch
                || self.fetches.values().any(|&s| s == i)
                || !refresh::due(&mut HostStore, source, now).unwrap_or(false)
            {
                continue;
            }
            let timeout = Duration::from_millis(u64::from(source.timeout_ms));
            match host::http_call(&source.cluster, &refresh::request_headers(source), timeout) {
                Ok(token) => {
                    self.fetches.insert(token, i);
                }
                // An unknown cluster: counted and logged like any failed fetch.
                Err(_) => self.finish_fetch(&doc, i, Fetched::NoAnswer, now),
            }
        }
    }

    fn on_fetch_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
        let Some(i) = self.fetches.remove(&token) else {
            return;
        };
        let (Some(doc), Some(now)) = (self.doc.clone(), host::now_ns()) else {
            return;
        };
        let Some(source) = doc.key_sources.get(i) else {
            return;
        };
        if num_headers == 0 {
            self.finish_fetch(&doc, i, Fetched::NoAnswer, now);
            return;
        }
        let status = host::get_header(host::HTTP_CALL_RESPONSE_HEADERS, ":status")
            .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u16>().ok());
        // One byte past the limit is enough to refuse the set as too large.
        let want = body_size.min(source.max_bytes.saturating_add(1));
        let body = if want == 0 {
            Vec::new()
        } else {
            host::get_buffer(host::HTTP_CALL_RESPONSE_BODY, want).unwrap_or_default()
        };
        self.finish_fetch(
            &doc,
            i,
            Fetched::Answer {
                status,
                body: &body,
            },
            now,
        );
    }

    /// Records a fetch's end in shared data, counts it, logs a change of state, and takes the new set.
    fn finish_fetch(&mut self, doc: &Document, i: usize, fetched: Fetched, now: u64) {
        let Some(source) = doc.key_sources.get(i) else {
            return;
        };
        // The next refresh is spread over the jitter by the clock's low bits.
        let seed = now.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7;
        let report = refresh::complete(&mut HostStore, source, fetched, now, seed);
        if let Some(msg) = report.message(source) {
            let lvl = if report.after == refresh::State::Loaded {
                level::INFO
            } else {
                level::WARN
            };
            log(lvl, &msg);
        }
        for c in crate::metrics::key_source_counters(doc, i, &report.outcome)
            .into_iter()
            .flatten()
        {
            self.metrics.add(c);
        }
        if let Ok(mut cache) = self.keys.try_borrow_mut() {
            refresh::sync(&HostStore, source, i, &mut cache);
        }
    }

    fn on_configure(&mut self) -> bool {
        let env = |name: &str| std::env::var(name).ok();
        // The text is freed before compiling: a large document (100k-entry lists) and its tables are
        // then never in the VM's memory together.
        let parsed = {
            let Some(raw) = host::get_buffer(host::PLUGIN_CONFIGURATION, usize::MAX) else {
                log(
                    level::CRITICAL,
                    "edgeward: no plugin configuration: refusing to start",
                );
                return false;
            };
            let Ok(json) = std::str::from_utf8(&raw) else {
                log(
                    level::CRITICAL,
                    "edgeward: configuration is not UTF-8: refusing to start",
                );
                return false;
            };
            Document::parse_with_key(json, &env).map_err(|e| vec![e])
        };
        let warnings = parsed
            .as_ref()
            .map(|(input, _)| crate::lint::lint(input))
            .unwrap_or_default();
        let compiled =
            parsed.and_then(|(input, hash_key)| Document::from_input(&input, hash_key, &env));
        match compiled {
            Ok(doc) => {
                if doc.prepare(&mut HostStore).is_err() {
                    log(
                        level::CRITICAL,
                        "edgeward: shared data unavailable: refusing to start",
                    );
                    return false;
                }
                log(
                    level::INFO,
                    &format!(
                        "edgeward: loaded {} policies, {} routes",
                        doc.policies.len(),
                        doc.routes.len()
                    ),
                );
                for w in &warnings {
                    log(
                        level::WARN,
                        &format!("edgeward: policy document: warning: {w}"),
                    );
                }
                self.metrics = Rc::new(Metrics::define(&doc));
                self.budget = Rc::new(BodyBudget::new(doc.held_bodies.max_bytes));
                // The tick flushes metrics and is the clock of held bodies: often enough that a
                // deadline is kept within a fifth of itself.
                let deadline = Duration::from_nanos(doc.held_bodies.timeout_ns);
                let mut tick = METRICS_FLUSH.min(deadline / 5);
                if !doc.key_sources.is_empty() {
                    // Key sets reach every worker within a tick of their fetch (crate::keys::refresh).
                    tick = tick.min(KEY_SYNC);
                }
                let _ = host::set_tick_period(tick);
                self.keys = Rc::new(RefCell::new(KeyCache::new(doc.key_sources.len())));
                // Leases are of this document's tables: a new document starts without any.
                self.leases = Rc::new(if doc.leases() {
                    Leases::new()
                } else {
                    Leases::disabled()
                });
                self.fetches.clear();
                self.doc = Some(Rc::new(doc));
                // A set another configuration of this process already holds (a reload) serves at once.
                // The first fetch waits for the first tick (250 ms): Envoy configures VMs that it
                // drops right away (the main thread's), whose fetch would hold the lease, unanswered, for
                // the fetch's timeout.
                self.refresh_keys(false);
                true
            }
            Err(errors) => {
                for e in &errors {
                    log(
                        level::CRITICAL,
                        &format!("edgeward: invalid policy document: {e}"),
                    );
                }
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32, root_id: u32) -> Option<EdgewardHttp> {
        let doc = self.doc.clone()?;
        Some(EdgewardHttp {
            id: context_id,
            root_id,
            doc,
            metrics: self.metrics.clone(),
            budget: self.budget.clone(),
            keys: self.keys.clone(),
            leases: Rc::clone(&self.leases),
            req: None,
            stream: Stream::new(),
            grpc_token: None,
        })
    }
}

/// What the adapter keeps of the request between callbacks.
struct RequestData {
    headers: HeaderText,
    method: usize,
    authority: usize,
    path: usize,
    route_name: Option<String>,
    tls: Option<TlsVersion>,
    peer: Peer,
    now_ns: u64,
}

impl RequestData {
    /// The request head over `slices`, this request's [`HeaderText::slices`].
    fn head<'a>(&'a self, slices: &'a [(&'a str, &'a str)]) -> RequestHead<'a> {
        let headers = Headers::from_text(slices, self.headers.raw());
        let value = |i: usize| headers.pair(i).map_or("", |(_, v)| v);
        RequestHead {
            method: value(self.method),
            authority: value(self.authority),
            path: value(self.path),
            route_name: self.route_name.as_deref(),
            tls: self.tls,
            peer: self.peer,
            headers,
        }
    }
}

struct EdgewardHttp {
    /// This stream's context id (a rate limit service answer is routed back by it).
    id: u32,
    /// Its root context's id (rate limit service answers arrive there, numbered per root).
    root_id: u32,
    doc: Rc<Document>,
    metrics: Rc<Metrics>,
    budget: Rc<BodyBudget>,
    keys: Rc<RefCell<KeyCache>>,
    leases: Rc<Leases>,
    req: Option<RequestData>,
    /// The stream's life (crate::stream): every decision is made there.
    stream: Stream,
    /// The pending rate limit service call, while the request waits for it.
    grpc_token: Option<u32>,
}

/// proxy-wasm shared data, shared by all worker threads of the Envoy process.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError> {
        host::get_shared_data(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        host::set_shared_data(key, value, cas)
    }
}

fn property_string(path: &str) -> Option<String> {
    host::get_property(path)
        .filter(|b| !b.is_empty())
        .and_then(|b| String::from_utf8(b).ok())
}

/// A numeric property (`response.code`, `request.total_size`): Envoy hands over 8 bytes, little-endian.
fn property_u64(path: &str) -> Option<u64> {
    host::get_property(path)
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_le_bytes)
}

impl EdgewardHttp {
    fn read_request(&self) -> RequestData {
        // Our own decoder: the SDK's panics on a header value that is not UTF-8 (see crate::pairs).
        let headers = host::get_header_map(host::REQUEST_HEADERS)
            .and_then(crate::pairs::decode_text_owned)
            .unwrap_or_default();
        let find = |name: &str| headers.position(name).unwrap_or(usize::MAX);
        let (method, authority, path) = (find(":method"), find(":authority"), find(":path"));
        // Read always: the log record names the route.
        let route_name = property_string("xds\0route_name");
        let tls = property_string("connection\0tls_version").and_then(|v| TlsVersion::parse(&v));
        let peer = property_string("source\0address")
            .map_or(Peer::Invalid, |a| crate::ip::peer_from_socket_addr(&a));
        let now_ns = host::now_ns().unwrap_or(0);
        RequestData {
            headers,
            method,
            authority,
            path,
            route_name,
            tls,
            peer,
            now_ns,
        }
    }

    fn limits(&self) -> HoldLimits {
        HoldLimits {
            timeout_ns: self.doc.held_bodies.timeout_ns,
        }
    }

    /// Carries out what the stream decided, in order; returns the answer to the current callback.
    fn carry_out(&mut self, actions: Actions) -> Action {
        // Filter state, which Envoy's route configuration writes as request headers after routing: a
        // header change here would make Envoy choose the route again (crate::engine::Upstream).
        for (property, value) in &actions.upstream {
            let _ = host::set_property(property, value.as_bytes());
        }
        if let Some(message) = actions.call {
            self.start_remote_call(&message);
        }
        if let Some(reply) = &actions.reply {
            self.send_reply(reply);
        }
        if actions.resume {
            let _ = host::resume_http_request();
        }
        match actions.verdict {
            Verdict::Continue => Action::Continue,
            Verdict::Pause => Action::Pause,
        }
    }

    fn send_reply(&mut self, reply: &LocalReply) {
        if reply.reason == Reason::BodyUnavailable {
            critical_once(
                "edgeward: Envoy holds request bodies without handing them to the plugin: set \
                 allow_on_headers_stop_iteration: true in the wasm filter's plugin config \
                 (answering 503 body_unavailable until then)",
            );
        }
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if host::send_local_response(reply.status, &headers, reply.body.as_bytes()).is_err() {
            log(level::ERROR, "edgeward: could not send the local reply");
        }
    }

    /// Starts the rate limit service call; when it cannot start, the failure mode applies at once.
    fn start_remote_call(&mut self, message: &[u8]) {
        let doc = Rc::clone(&self.doc);
        let started = doc.rls.as_ref().map(|rls| {
            host::grpc_call(
                &rls.cluster,
                crate::rate_limit::remote::SERVICE,
                crate::rate_limit::remote::METHOD,
                message,
                Duration::from_millis(u64::from(rls.timeout_ms)),
            )
        });
        match started {
            Some(Ok(token)) => {
                self.grpc_token = Some(token);
                let (root, stream) = (self.root_id, self.id);
                GRPC_CALLS.with(|g| {
                    if let Ok(mut g) = g.try_borrow_mut() {
                        g.insert((root, token), stream);
                    }
                });
            }
            failed => {
                warn_once(&format!(
                    "edgeward: rate limit service call could not start (cluster {:?}: {:?}); applying failure_mode",
                    doc.rls.as_ref().map_or("", |r| r.cluster.as_str()),
                    failed.map(|r| r.err())
                ));
                // Still in the callback that asked for the call: its verdict stands, so the answer
                // (a reply, or nothing more to wait for) is carried out here.
                let actions =
                    self.stream
                        .on_remote_answer(&doc, None, &self.budget, &mut HostStore);
                let resume_later = actions.resume;
                let action = self.carry_out(Actions {
                    resume: false,
                    ..actions
                });
                if resume_later && action == Action::Pause {
                    let _ = host::resume_http_request();
                }
            }
        }
    }

    /// Sets the anonymized record (and, with `"fields": true`, each field) as filter state, once, and
    /// counts the decision.
    fn emit_log(&mut self, status: u16) {
        if !self.stream.on_end(&self.doc, &self.budget, &mut HostStore) {
            return;
        }
        self.grpc_token = None;
        let (Some(ev), Some(req)) = (self.stream.evaluation(), self.req.as_ref()) else {
            return;
        };
        let slices = req.headers.slices();
        let head = req.head(&slices);
        let record = ev.record(&self.doc, &head, status, req.now_ns);
        let _ = host::set_property("edgeward.log", record.as_bytes());
        for (name, value) in ev.record_fields(&self.doc, &head, status, req.now_ns) {
            // `name` is the full property name (`edgeward.client_ip`, ...).
            let _ = host::set_property(name, value.as_bytes());
        }
        for i in crate::metrics::counters(&self.doc, ev)
            .into_iter()
            .flatten()
        {
            self.metrics.add(i);
        }
    }
}

thread_local! {
    static WARNED: Cell<bool> = const { Cell::new(false) };
    static CRITICAL: Cell<bool> = const { Cell::new(false) };
}

/// Logs a warning once per worker VM (per-request failures are counted, not logged).
fn warn_once(msg: &str) {
    if !WARNED.with(|w| w.replace(true)) {
        log(level::WARN, msg);
    }
}

/// Logs at critical level once per worker VM.
fn critical_once(msg: &str) {
    if !CRITICAL.with(|w| w.replace(true)) {
        log(level::CRITICAL, msg);
    }
}

impl EdgewardHttp {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if self.grpc_token != Some(token_id) {
            return;
        }
        self.grpc_token = None;
        // Status 0 with the message; any other status (UNAVAILABLE, DEADLINE_EXCEEDED, a protocol
        // error on a non-HTTP/2 cluster, ...) is a failure and follows the failure mode.
        let body = if status_code == 0 {
            host::get_buffer(host::GRPC_RECEIVE_BUFFER, response_size)
        } else {
            None
        };
        let doc = Rc::clone(&self.doc);
        let actions =
            self.stream
                .on_remote_answer(&doc, body.as_deref(), &self.budget, &mut HostStore);
        self.carry_out(actions);
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let req = self.read_request();
        let doc = Rc::clone(&self.doc);
        let limits = self.limits();
        let slices = req.headers.slices();
        let keys = Rc::clone(&self.keys);
        if let Ok(mut cache) = keys.try_borrow_mut() {
            // A set another worker's fetch has loaded serves here before this worker's next tick.
            refresh::sync_unloaded(&HostStore, &doc.key_sources, &mut cache, req.now_ns);
        }
        let no_keys = KeyCache::EMPTY;
        let keys_ref = keys.try_borrow();
        let actions = self.stream.on_request_headers(
            &doc,
            &req.head(&slices),
            end_of_stream,
            req.now_ns,
            limits,
            keys_ref.as_deref().unwrap_or(&no_keys),
            &self.leases,
            &self.budget,
            &mut HostStore,
        );
        drop(keys_ref);
        drop(slices);
        self.req = Some(req);
        // Holding the headers while the body arrives needs the plugin option
        // `allow_on_headers_stop_iteration: true` (envoy/envoy.yaml): without it Envoy turns this pause
        // into StopAllIteration and never delivers the body; the deadline then answers 503
        // body_unavailable (crate::stream).
        self.carry_out(actions)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(req) = self.req.take() else {
            return Action::Pause;
        };
        let doc = Rc::clone(&self.doc);
        let slices = req.headers.slices();
        let mut read = |n: usize| host::get_buffer(host::HTTP_REQUEST_BODY, n).unwrap_or_default();
        let actions = self.stream.on_request_body(
            &doc,
            &req.head(&slices),
            body_size,
            end_of_stream,
            &mut read,
            &self.budget,
            &mut HostStore,
        );
        drop(slices);
        self.req = Some(req);
        self.carry_out(actions)
    }

    fn on_http_request_trailers(&mut self) -> Action {
        let Some(req) = self.req.take() else {
            return Action::Pause;
        };
        let doc = Rc::clone(&self.doc);
        let slices = req.headers.slices();
        let mut read = |n: usize| host::get_buffer(host::HTTP_REQUEST_BODY, n).unwrap_or_default();
        let actions = self.stream.on_request_trailers(
            &doc,
            &req.head(&slices),
            &mut read,
            &self.budget,
            &mut HostStore,
        );
        drop(slices);
        self.req = Some(req);
        self.carry_out(actions)
    }

    fn on_tick(&mut self, now_ns: u64) {
        // Body bytes Envoy received for this stream: some, with none ever handed to the plugin, means the
        // host holds bodies without delivering them (crate::stream::Stream::on_tick). The request body
        // buffer is not readable outside a body callback; `request.total_size` (body bytes received plus
        // the head's byteSize) is.
        let head_bytes = self.req.as_ref().map_or(0, |r| r.headers.byte_len());
        let buffered = property_u64("request\0total_size").map_or(0, |n| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .saturating_sub(head_bytes)
        });
        let doc = Rc::clone(&self.doc);
        let actions = self
            .stream
            .on_tick(&doc, now_ns, buffered, &self.budget, &mut HostStore);
        self.carry_out(actions);
    }

    fn on_http_response_headers(&mut self) {
        // A local reply already carries edgeward's response headers (send_reply): only the status is
        // read, for the record, when it logs it (Envoy's local reply mapping may have changed it).
        let adds = self.stream.response_headers();
        let parse = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u16>().ok();
        // One call per header (replace, or add for a name's later values: see pairs::header_writes),
        // then `:status` (for the record, unless `log.status` is false). Reading the whole map and
        // writing it back is two host calls instead of four for three headers, but Envoy rebuilds the
        // map on the write, which costs more CPU per request (~4 µs, benches/host-calls-filter) than
        // the single calls.
        for (k, v, first) in crate::pairs::header_writes(adds) {
            let _ = if first {
                host::set_header(host::RESPONSE_HEADERS, k, Some(v))
            } else {
                host::add_header(host::RESPONSE_HEADERS, k, v)
            };
        }
        let status = if self.logs_status() {
            host::get_header(host::RESPONSE_HEADERS, ":status").and_then(|b| parse(&b))
        } else {
            None
        };
        self.emit_log(status.unwrap_or(0));
    }

    /// Whether the record will carry the response status (`log.status`, default true): without it,
    /// the status is not read (one host call fewer).
    fn logs_status(&self) -> bool {
        self.stream
            .evaluation()
            .is_some_and(|ev| ev.logs_status(&self.doc))
    }

    fn on_log(&mut self) {
        if self.stream.phase() != crate::stream::Phase::Logged {
            // No response headers passed through this filter (e.g. the client went away): the status
            // comes from the stream info.
            let status = if self.logs_status() {
                property_u64("response\0code").map_or(0, |n| u16::try_from(n).unwrap_or(0))
            } else {
                0
            };
            self.emit_log(status);
        }
        host::flush_call_count();
    }
}
