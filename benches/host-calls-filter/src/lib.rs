//! Benchmark part "Phost": the proxy-wasm host calls of edgeward's allow path in configuration D, and
//! nothing else (no parsing beyond the header-map framing, no checks, no crypto, no record building).
//!
//! Per request, as edgeward (src/adapter.rs) makes them for policy D, in the same callbacks
//! (17 with Envoy's X-Forwarded-For; `--features host-call-count` counts them; benches/node-host/run.mjs lists them by callback):
//! - request headers: the header map, `xds.route_name`, `connection.tls_version`, `source.address`,
//!   the time, then read + compare-and-swap write of two 216-byte shared-data values (D's two rate
//!   limits, one set of an 8-way table each: tokens are taken at the head); the headers are held
//!   (`Pause`) until the body has arrived;
//! - request body: the body, then the verified key id and Envoy's X-Forwarded-For published as the
//!   filter state `edgeward.upstream.key_id` and `edgeward.upstream.xff` (Envoy's route configuration
//!   writes `x-edgeward-key-id` and `x-forwarded-for` from them; edgeward changes no request header);
//! - response headers: three headers replaced (Strict-Transport-Security, RateLimit-Policy, RateLimit),
//!   `:status` read, then a 362-byte `edgeward.log` filter state (the length of D's record).
//!
//! It exports the same callbacks as edgeward, so Envoy calls into it as often.
//!
//! Features drop one step each, to price it (not used by scripts/bench.sh): `no-request-map`,
//! `no-properties` (the three), `no-time`, `no-key-id` (the filter state), `no-hold` (headers not held: the body
//! passes through while it is read), `no-body`, `no-rate-limits` (the four shared-data calls),
//! `no-response-headers` (three replaces and `:status`), `no-record`.

use std::alloc::{alloc, dealloc, Layout};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ptr::null_mut;

const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const HTTP_REQUEST_BODY: u32 = 0;
const CONTINUE: u32 = 0;
const PAUSE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(p: *const u8, n: usize, d: *mut *mut u8, s: *mut usize) -> u32;
    fn proxy_set_property(p: *const u8, n: usize, v: *const u8, vs: usize) -> u32;
    fn proxy_get_header_map_pairs(t: u32, d: *mut *mut u8, s: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        t: u32,
        k: *const u8,
        ks: usize,
        d: *mut *mut u8,
        s: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        t: u32,
        k: *const u8,
        ks: usize,
        v: *const u8,
        vs: usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(t: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        t: u32,
        start: usize,
        max: usize,
        d: *mut *mut u8,
        s: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        k: *const u8,
        ks: usize,
        d: *mut *mut u8,
        s: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(k: *const u8, ks: usize, v: *const u8, vs: usize, cas: u32) -> u32;
}

thread_local! {
    /// Streams whose headers are held until the body is complete.
    static HELD: RefCell<BTreeSet<u32>> = const { RefCell::new(BTreeSet::new()) };
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.max(1), 8).ok()
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes into memory from `proxy_on_memory_allocate(size)`.
    let v = unsafe { std::slice::from_raw_parts(data, size) }.to_vec();
    if let Some(l) = layout(size) {
        // SAFETY: allocated with this layout by `proxy_on_memory_allocate`.
        unsafe { dealloc(data, l) };
    }
    v
}

fn property(path: &[u8]) -> Vec<u8> {
    let (mut d, mut s) = (null_mut(), 0usize);
    // SAFETY: valid pointers for the host to write through.
    unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut d, &mut s) };
    owned(d, s)
}

fn header_map(map: u32) -> Vec<u8> {
    let (mut d, mut s) = (null_mut(), 0usize);
    // SAFETY: as above.
    unsafe { proxy_get_header_map_pairs(map, &mut d, &mut s) };
    owned(d, s)
}

/// One token-bucket step of a rate limit: read the set, write it back under its CAS token.
fn rate_limit(key: &[u8]) {
    let (mut d, mut s, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: as above.
    unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut d, &mut s, &mut cas) };
    let mut value = owned(d, s);
    value.resize(216, 0);
    if let Some(b) = value.get_mut(8) {
        *b = b.wrapping_add(1);
    }
    // SAFETY: valid slices.
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    match layout(size) {
        // SAFETY: non-zero size.
        Some(l) => unsafe { alloc(l) },
        None => null_mut(),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _root_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(_root_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _n: usize, end_of_stream: u32) -> u32 {
    if !cfg!(feature = "no-request-map") {
        std::hint::black_box(header_map(REQUEST_HEADERS));
    }
    if !cfg!(feature = "no-properties") {
        std::hint::black_box(property(b"xds\0route_name"));
        std::hint::black_box(property(b"connection\0tls_version"));
        std::hint::black_box(property(b"source\0address"));
    }
    if !cfg!(feature = "no-time") {
        let mut now = 0u64;
        // SAFETY: valid pointer.
        unsafe { proxy_get_current_time_nanoseconds(&mut now) };
        std::hint::black_box(now);
    }
    if !cfg!(feature = "no-rate-limits") {
        rate_limit(b"edgeward.rl.2f6c0a9e81d4b735.37");
        rate_limit(b"edgeward.rl.9b1e47d02ac3f6e8.12");
    }
    if end_of_stream != 0 || cfg!(feature = "no-hold") {
        return CONTINUE;
    }
    HELD.with(|h| h.borrow_mut().insert(context_id));
    PAUSE
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context_id: u32, size: usize, end_of_stream: u32) -> u32 {
    let held = HELD.with(|h| h.borrow().contains(&context_id));
    if end_of_stream == 0 {
        return if held { PAUSE } else { CONTINUE };
    }
    HELD.with(|h| h.borrow_mut().remove(&context_id));
    if !cfg!(feature = "no-body") {
        let (mut d, mut s) = (null_mut(), 0usize);
        // SAFETY: valid pointers.
        unsafe { proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 0, size, &mut d, &mut s) };
        std::hint::black_box(owned(d, s));
    }
    if !cfg!(feature = "no-key-id") {
        // The verified key id and the X-Forwarded-For Envoy built (D's document keeps it), published as
        // filter state for the route configuration to write upstream.
        for (k, v) in [
            (&b"edgeward.upstream.key_id"[..], &b"bench-client"[..]),
            (&b"edgeward.upstream.xff"[..], &b"127.0.0.1"[..]),
        ] {
            // SAFETY: valid slices.
            unsafe { proxy_set_property(k.as_ptr(), k.len(), v.as_ptr(), v.len()) };
        }
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(_context_id: u32, _n: usize) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _n: usize, _eos: u32) -> u32 {
    if !cfg!(feature = "no-response-headers") {
        for (k, v) in [
            ("strict-transport-security", "max-age=31536000"),
            ("ratelimit-policy", "\"per-client\";q=1000000000;w=1"),
            ("ratelimit", "\"per-client\";r=999999999;t=1"),
        ] {
            // SAFETY: valid slices.
            unsafe {
                proxy_replace_header_map_value(
                    RESPONSE_HEADERS,
                    k.as_ptr(),
                    k.len(),
                    v.as_ptr(),
                    v.len(),
                )
            };
        }
        let (k, mut d, mut s) = (":status", null_mut(), 0usize);
        // SAFETY: valid pointers.
        unsafe {
            proxy_get_header_map_value(RESPONSE_HEADERS, k.as_ptr(), k.len(), &mut d, &mut s)
        };
        std::hint::black_box(owned(d, s));
    }
    if !cfg!(feature = "no-record") {
        let record = [b'x'; 362];
        let name = b"edgeward.log";
        // SAFETY: valid slices.
        unsafe { proxy_set_property(name.as_ptr(), name.len(), record.as_ptr(), record.len()) };
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    HELD.with(|h| h.borrow_mut().remove(&context_id));
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(_root: u32, _token: u32, _size: usize) {}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(_root: u32, _token: u32, _status: u32) {}
