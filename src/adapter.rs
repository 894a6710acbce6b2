//! The proxy-wasm adapter: reads the request from the host (one headers map, a few properties), calls
//! the core, and maps the evaluation to Envoy (local reply, header changes, filter state). Compiled only
//! for `wasm32-wasip1`.
//!
//! It exports the proxy-wasm ABI (0.2.1) itself instead of using the SDK's dispatcher: Envoy calls a
//! plugin callback only if the module exports it, and every call crosses the VM boundary (several µs
//! here, see README "Benchmark"). The SDK exports all of them; edgeward exports what it uses (no
//! `on_done`, no response body or trailers callbacks) and never panics on an unknown context id.

use crate::decision::{Reason, Reply};
use crate::document::Document;
use crate::engine::{Evaluation, HeaderOp};
use crate::host::{self, level};
use crate::request::{HeaderText, Headers, Peer, RequestHead, TlsVersion};
use crate::store::{Cas, SharedStore, StoreError};
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
    with_root(root_context_id, |root| root.metrics.flush());
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
}

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
                self.metrics = Rc::new(Metrics::define(&doc));
                self.doc = Some(Rc::new(doc));
                let _ = host::set_tick_period(METRICS_FLUSH);
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
            req: None,
            eval: None,
            body_seen: 0,
            grpc_token: None,
            ops_applied: 0,
            replied: false,
            logged: false,
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
        let headers = Headers::from_slices(slices);
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
    req: Option<RequestData>,
    eval: Option<Evaluation>,
    body_seen: usize,
    /// The pending rate limit service call, while the request waits for it.
    grpc_token: Option<u32>,
    /// How many of the evaluation's upstream header changes were applied.
    ops_applied: usize,
    replied: bool,
    logged: bool,
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

fn property_string(path: &[&str]) -> Option<String> {
    host::get_property(path)
        .filter(|b| !b.is_empty())
        .and_then(|b| String::from_utf8(b).ok())
}

impl EdgewardHttp {
    fn read_request(&self) -> RequestData {
        // Our own decoder: the SDK's panics on a header value that is not UTF-8 (see crate::pairs).
        let headers = host::get_header_map(host::REQUEST_HEADERS)
            .and_then(|b| crate::pairs::decode_text(&b))
            .unwrap_or_default();
        let find = |name: &str| headers.position(name).unwrap_or(usize::MAX);
        let (method, authority, path) = (find(":method"), find(":authority"), find(":path"));
        // Read always: the log record names the route.
        let route_name = property_string(&["xds", "route_name"]);
        let tls =
            property_string(&["connection", "tls_version"]).and_then(|v| TlsVersion::parse(&v));
        let peer = property_string(&["source", "address"])
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

    /// Applies the upstream header changes not applied yet (the body step can add some).
    fn apply_upstream_ops(&mut self) {
        let Some(ev) = self.eval.as_ref() else {
            return;
        };
        for op in ev.upstream_headers.iter().skip(self.ops_applied) {
            let _ = match op {
                HeaderOp::Set(k, v) => host::set_header(host::REQUEST_HEADERS, k, Some(v)),
                HeaderOp::Remove(k) => host::set_header(host::REQUEST_HEADERS, k, None),
            };
        }
        self.ops_applied = ev.upstream_headers.len();
    }

    fn send_reply(&mut self, reply: &Reply, extra: &[(String, String)]) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .chain(extra.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.replied = true;
        if host::send_local_response(reply.status, &headers, reply.body.as_bytes()).is_err() {
            log(level::ERROR, "edgeward: could not send the local reply");
        }
    }

    /// Starts the rate limit service call if the evaluation has one pending. `true`: the request
    /// must wait (the answer arrives in `on_grpc_call_response`); `false`: no call, or it could not
    /// start and the failure mode has been applied.
    fn start_remote_call(&mut self) -> bool {
        let doc = Rc::clone(&self.doc);
        let Some(ev) = self.eval.as_mut() else {
            return false;
        };
        let Some(call) = ev.remote.as_ref() else {
            return false;
        };
        let started = doc.rls.as_ref().map(|rls| {
            host::grpc_call(
                &rls.cluster,
                crate::rate_limit::remote::SERVICE,
                crate::rate_limit::remote::METHOD,
                &call.message,
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
                true
            }
            failed => {
                warn_once(&format!(
                    "edgeward: rate limit service call could not start (cluster {:?}: {:?}); applying failure_mode",
                    doc.rls.as_ref().map_or("", |r| r.cluster.as_str()),
                    failed.map(|r| r.err())
                ));
                ev.apply_remote(&doc, None, &mut HostStore);
                false
            }
        }
    }

    /// Sends the local reply if the evaluation has one, else lets the request go on (after the
    /// rate limit service's answer, when a remote limit applies).
    fn finish(&mut self) -> Action {
        if self.start_remote_call() {
            return Action::Pause;
        }
        let Some(ev) = self.eval.take() else {
            return Action::Continue;
        };
        let action = if let Some(reply) = &ev.reply {
            if reply.reason == Reason::Incomplete {
                // Recorded only: the stream already ended (see Evaluation::abandon).
                self.eval = Some(ev);
                return Action::Pause;
            }
            let reply = reply.clone();
            self.send_reply(&reply, &ev.response_headers);
            Action::Pause
        } else {
            Action::Continue
        };
        self.eval = Some(ev);
        if matches!(action, Action::Continue) {
            self.apply_upstream_ops();
        }
        action
    }

    fn evaluate_body(&mut self) -> Action {
        // Up to one byte past the limit, not just what the last callback reported: the engine then
        // checks the size of what it actually hashes.
        let want = self
            .pending_body()
            .map_or(self.body_seen, |max| max.saturating_add(1));
        let body = host::get_buffer(host::HTTP_REQUEST_BODY, want).unwrap_or_default();
        if let (Some(ev), Some(req)) = (self.eval.as_mut(), self.req.as_ref()) {
            let slices = req.headers.slices();
            ev.evaluate_body(
                &self.doc,
                &req.head(&slices),
                &body,
                req.now_ns,
                &mut HostStore,
            );
        }
        self.finish()
    }

    /// Sets the anonymized record (and, with `"fields": true`, each field) as filter state, once, and
    /// counts the decision.
    fn emit_log(&mut self, status: u16) {
        if self.logged {
            return;
        }
        self.logged = true;
        // Still waiting for the body or the rate limit service: the stream ended first and nothing
        // reached the upstream (recorded `incomplete`, not `allow`).
        if let Some(ev) = self.eval.as_mut() {
            ev.abandon();
        }
        if self.eval.as_ref().and_then(Evaluation::reason) == Some(Reason::Incomplete) {
            // A late rate limit service answer must find no call to resume.
            self.grpc_token = None;
        }
        let (Some(ev), Some(req)) = (self.eval.as_ref(), self.req.as_ref()) else {
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

    fn pending_body(&self) -> Option<usize> {
        self.eval.as_ref().and_then(|e| e.needs_body)
    }
}

thread_local! {
    static WARNED: Cell<bool> = const { Cell::new(false) };
}

/// Logs a warning once per worker VM (per-request failures are counted, not logged).
fn warn_once(msg: &str) {
    if !WARNED.with(|w| w.replace(true)) {
        log(level::WARN, msg);
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
        if let Some(ev) = self.eval.as_mut() {
            ev.apply_remote(&doc, body.as_deref(), &mut HostStore);
        }
        if matches!(self.finish(), Action::Continue) {
            let _ = host::resume_http_request();
        }
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let req = self.read_request();
        let slices = req.headers.slices();
        let ev = self
            .doc
            .evaluate_head(&req.head(&slices), req.now_ns, &mut HostStore);
        drop(slices);
        self.req = Some(req);
        self.eval = Some(ev);
        if self.pending_body().is_some() {
            if end_of_stream {
                return self.evaluate_body();
            }
            // Hold the headers while the body arrives: nothing reaches the upstream before the
            // check passes. This needs the plugin option `allow_on_headers_stop_iteration: true`
            // (envoy/envoy.yaml): without it Envoy turns this pause into StopAllIteration and never
            // delivers the body, and the request waits until Envoy's timeouts end it (fail closed).
            self.apply_upstream_ops();
            return Action::Pause;
        }
        self.finish()
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.grpc_token.is_some() {
            // Headers are held while the rate limit service answers; with
            // allow_on_headers_stop_iteration, returning Continue here would release them early.
            return Action::Pause;
        }
        let Some(max) = self.pending_body() else {
            return Action::Continue;
        };
        self.body_seen = body_size;
        if body_size > max {
            if let Some(ev) = self.eval.as_mut() {
                ev.body_too_large();
            }
            return self.finish();
        }
        if end_of_stream {
            return self.evaluate_body();
        }
        // Keep buffering: nothing reaches the upstream before the check passes.
        Action::Pause
    }

    fn on_http_request_trailers(&mut self) -> Action {
        if self.grpc_token.is_some() {
            return Action::Pause;
        }
        // HTTP/2 bodies may end with trailers instead of an end-of-stream data frame.
        if self.pending_body().is_some() {
            return self.evaluate_body();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self) {
        // A local reply already carries edgeward's response headers (send_reply): only the status is
        // read, for the record (Envoy's local reply mapping may have changed it).
        let adds: &[(String, String)] = match self.eval.as_ref() {
            Some(ev) if !self.replied => ev.response_headers.as_slice(),
            _ => &[],
        };
        let parse = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u16>().ok();
        // One call per header (replace, or add for a name's later values: see pairs::header_writes),
        // then `:status` (for the record). Reading the whole map and writing it back is two host calls
        // instead of four for three headers, but Envoy rebuilds the map on the write: measured side by
        // side (benches/host-calls-filter, 6 rounds) that costs ~4 µs of CPU per request more than the
        // single calls.
        for (k, v, first) in crate::pairs::header_writes(adds) {
            let _ = if first {
                host::set_header(host::RESPONSE_HEADERS, k, Some(v))
            } else {
                host::add_header(host::RESPONSE_HEADERS, k, v)
            };
        }
        let status = host::get_header(host::RESPONSE_HEADERS, ":status").and_then(|b| parse(&b));
        self.emit_log(status.unwrap_or(0));
    }

    fn on_log(&mut self) {
        if !self.logged {
            // No response headers passed through this filter (e.g. the client went away): the status
            // comes from the stream info.
            let status = host::get_property(&["response", "code"])
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, |b| u16::try_from(u64::from_le_bytes(b)).unwrap_or(0));
            self.emit_log(status);
        }
        host::flush_call_count();
    }
}
