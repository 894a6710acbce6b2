//! The proxy-wasm ABI (0.2.1) host calls the adapter makes, as safe functions that never panic.
//!
//! The proxy-wasm Rust SDK (0.2.5) panics on any status it does not expect, and a panic traps the VM
//! (with `panic = "abort"`): Envoy then fails every later request on that worker. These wrappers call
//! the ABI functions directly and return the status instead. (The exports, Envoy's calls into the
//! plugin, are in `crate::adapter`.)

use crate::store::{Cas, StoreError};
use std::ptr::{null, null_mut};

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// `MapType::HttpRequestHeaders`.
pub const REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpResponseHeaders`.
pub const RESPONSE_HEADERS: u32 = 2;
/// `BufferType::GrpcReceiveBuffer`: the message of a finished gRPC call.
pub const GRPC_RECEIVE_BUFFER: u32 = 5;
/// `BufferType::HttpRequestBody`.
pub const HTTP_REQUEST_BODY: u32 = 0;
/// `MapType::HttpCallResponseHeaders`: the headers of a finished `dispatch_http_call`.
pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// `BufferType::HttpCallResponseBody`: the body of a finished `dispatch_http_call`.
pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
/// `BufferType::PluginConfiguration`: the policy document.
pub const PLUGIN_CONFIGURATION: u32 = 7;
/// `StreamType::HttpRequest`.
const HTTP_REQUEST_STREAM: u32 = 0;

/// Log levels of `proxy_log`.
pub mod level {
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_grpc_call(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        message_data: *const u8,
        message_size: usize,
        timeout_milliseconds: u32,
        return_callout_id: *mut u32,
    ) -> u32;
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_milliseconds: u32,
        return_callout_id: *mut u32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// Counts one host call of kind `k` (feature `host-call-count`; otherwise nothing).
#[inline(always)]
fn count(k: usize) {
    #[cfg(feature = "host-call-count")]
    calls::add(k);
    #[cfg(not(feature = "host-call-count"))]
    let _ = k;
}

/// Adds the host calls made since the last time to the counters `edgeward.host_calls` (all) and
/// `edgeward.host_calls.<kind>` (feature `host-call-count`; otherwise nothing). Called once per request,
/// in `on_log`; streams interleave on a worker, so the calls per request are these counters over the
/// requests Envoy counted in the same interval.
#[inline(always)]
pub fn flush_call_count() {
    #[cfg(feature = "host-call-count")]
    calls::flush();
}

/// Kinds of host calls, in `calls::NAMES` order.
#[cfg_attr(not(feature = "host-call-count"), allow(dead_code))]
mod kind {
    pub const LOG: usize = 0;
    pub const DEFINE_METRIC: usize = 1;
    pub const GET_BUFFER: usize = 2;
    pub const GET_PROPERTY: usize = 3;
    pub const GET_MAP: usize = 4;
    pub const GET_MAP_VALUE: usize = 5;
    pub const GET_CURRENT_TIME: usize = 6;
    pub const INCREMENT_METRIC: usize = 7;
    pub const SET_HEADER: usize = 8;
    pub const GET_SHARED_DATA: usize = 9;
    pub const SET_SHARED_DATA: usize = 10;
    pub const SET_PROPERTY: usize = 11;
    pub const SEND_LOCAL_RESPONSE: usize = 12;
    pub const DISPATCH_GRPC_CALL: usize = 13;
    pub const CONTINUE_STREAM: usize = 14;
    pub const DISPATCH_HTTP_CALL: usize = 15;
}
use kind::*;

#[cfg(feature = "host-call-count")]
mod calls {
    use super::{define_counter_uncounted, increment_metric_uncounted};
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    pub(super) const NAMES: [&str; 16] = [
        "log",
        "define_metric",
        "get_buffer",
        "get_property",
        "get_map",
        "get_map_value",
        "get_current_time",
        "increment_metric",
        "set_header",
        "get_shared_data",
        "set_shared_data",
        "set_property",
        "send_local_response",
        "dispatch_grpc_call",
        "continue_stream",
        "dispatch_http_call",
    ];
    const UNSET: u32 = u32::MAX;
    static COUNTS: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];
    /// Metric ids: the total, then one per kind (defined on the first flush; UNSET until then).
    static METRICS: [AtomicU32; 17] = [const { AtomicU32::new(UNSET) }; 17];

    pub fn add(k: usize) {
        if let Some(c) = COUNTS.get(k) {
            c.fetch_add(1, Relaxed);
        }
    }

    fn metric(i: usize, name: &str) -> Option<u32> {
        let slot = METRICS.get(i)?;
        let mut id = slot.load(Relaxed);
        if id == UNSET {
            id = define_counter_uncounted(name).unwrap_or(UNSET);
            slot.store(id, Relaxed);
        }
        (id != UNSET).then_some(id)
    }

    pub fn flush() {
        let mut total = 0i64;
        for (k, name) in NAMES.iter().enumerate() {
            let n = i64::from(COUNTS.get(k).map_or(0, |c| c.swap(0, Relaxed)));
            if n > 0 {
                total += n;
                if let Some(id) = metric(k + 1, &format!("edgeward.host_calls.{name}")) {
                    increment_metric_uncounted(id, n);
                }
            }
        }
        if let Some(id) = metric(0, "edgeward.host_calls") {
            increment_metric_uncounted(id, total);
        }
    }
}

fn status(s: u32) -> Result<(), u32> {
    if s == OK {
        Ok(())
    } else {
        Err(s)
    }
}

/// Writes a line to Envoy's log (dropped if the host refuses it).
pub fn log(level: u32, message: &str) {
    count(LOG);
    // SAFETY: pointer and length come from a live slice; the host copies it.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Defines a counter; its id, or `None` if the host refused the name.
pub fn define_counter(name: &str) -> Option<u32> {
    count(DEFINE_METRIC);
    define_counter_uncounted(name)
}

fn define_counter_uncounted(name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: pointer and length come from a live slice; the host writes one u32 through `id`.
    let s = unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) };
    (s == OK).then_some(id)
}

/// Adds `n` to a counter (a failure loses that count, nothing else).
pub fn increment_metric(id: u32, n: i64) {
    count(INCREMENT_METRIC);
    increment_metric_uncounted(id, n);
}

fn increment_metric_uncounted(id: u32, n: i64) {
    // SAFETY: no pointers.
    let _ = unsafe { proxy_increment_metric(id, n) };
}

/// A property, its path given serialized as the ABI takes it (segments separated by NUL:
/// `"xds\0route_name"`, written as literals, nothing joined per call), or `None` when absent, empty or
/// unreadable.
pub fn get_property(path: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    count(GET_PROPERTY);
    // SAFETY: as in `get_shared_data`: the host hands over a buffer allocated through
    // `proxy_on_memory_allocate`, which we then own.
    let s = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    if s != OK || data.is_null() {
        return None;
    }
    // SAFETY: see above.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// The host's clock, in nanoseconds since the Unix epoch.
pub fn now_ns() -> Option<u64> {
    let mut t = 0u64;
    count(GET_CURRENT_TIME);
    // SAFETY: the host writes one u64 through `t`.
    let s = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    (s == OK).then_some(t)
}

/// Starts a unary gRPC call (no initial metadata) on `cluster`; the call's token, or the host's status
/// (`ParseFailure` for an unknown cluster). The answer arrives in `proxy_on_grpc_receive`/`_close`.
pub fn grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: std::time::Duration,
) -> Result<u32, u32> {
    let no_metadata = 0u32.to_le_bytes();
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token = 0u32;
    count(DISPATCH_GRPC_CALL);
    // SAFETY: pointers and lengths come from live slices; the host copies them and writes one u32.
    let s = unsafe {
        proxy_grpc_call(
            cluster.as_ptr(),
            cluster.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            no_metadata.as_ptr(),
            no_metadata.len(),
            message.as_ptr(),
            message.len(),
            ms,
            &mut token,
        )
    };
    status(s).map(|()| token)
}

/// Starts an HTTP call without a body on `cluster` (`headers` holds the pseudo-headers `:method`,
/// `:path`, `:authority`); the call's token, or the host's status (`BadArgument` for an unknown
/// cluster or missing pseudo-headers). The answer arrives in `proxy_on_http_call_response`.
pub fn http_call(
    cluster: &str,
    headers: &[(&str, String)],
    timeout: std::time::Duration,
) -> Result<u32, u32> {
    let headers = crate::pairs::encode(headers);
    let no_trailers = 0u32.to_le_bytes();
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token = 0u32;
    count(DISPATCH_HTTP_CALL);
    // SAFETY: pointers and lengths come from live slices; the host copies them and writes one u32.
    let s = unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            null(),
            0,
            no_trailers.as_ptr(),
            no_trailers.len(),
            ms,
            &mut token,
        )
    };
    status(s).map(|()| token)
}

/// Makes later host calls act on stream `context_id` (a gRPC answer arrives on the root context).
pub fn set_effective_context(context_id: u32) -> Result<(), u32> {
    // SAFETY: no pointers.
    status(unsafe { proxy_set_effective_context(context_id) })
}

/// Replaces (`Some`) or removes (`None`) a header of `map`.
pub fn set_header(map: u32, name: &str, value: Option<&str>) -> Result<(), u32> {
    count(SET_HEADER);
    // SAFETY: pointers and lengths come from live slices; the host copies them before returning.
    status(unsafe {
        match value {
            Some(v) => {
                proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
        }
    })
}

/// Adds a header value, keeping the values already there under that name.
pub fn add_header(map: u32, name: &str, value: &str) -> Result<(), u32> {
    count(SET_HEADER);
    // SAFETY: pointers and lengths come from live slices; the host copies them before returning.
    status(unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Reads shared data: the value (if any) and its CAS token.
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<Cas>), StoreError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    count(GET_SHARED_DATA);
    // SAFETY: the host writes a buffer it allocated through `proxy_on_memory_allocate` (exported by
    // `crate::adapter`, backed by the global allocator), which we then own.
    let s =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match s {
        OK => {
            let cas = (cas != 0).then_some(cas);
            if data.is_null() {
                Ok((None, cas))
            } else {
                // SAFETY: see above; `size` bytes were allocated with capacity `size`.
                Ok((Some(unsafe { Vec::from_raw_parts(data, size, size) }), cas))
            }
        }
        NOT_FOUND => Ok((None, None)),
        _ => Err(StoreError::Unavailable),
    }
}

/// Writes shared data; with `Some(cas)` only if nobody wrote it since that token was read.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
    count(SET_SHARED_DATA);
    // SAFETY: pointers and lengths come from live slices; the host copies them.
    let s = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match s {
        OK => Ok(()),
        CAS_MISMATCH => Err(StoreError::CasMismatch),
        _ => Err(StoreError::Unavailable),
    }
}

/// Sets a one-segment property (filter state), e.g. `edgeward.log`.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), u32> {
    count(SET_PROPERTY);
    // SAFETY: pointers and lengths come from live slices; the host copies them.
    status(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Sends a local reply instead of forwarding the request.
pub fn send_local_response(code: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), u32> {
    let mut map = Vec::with_capacity(
        4 + headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum::<usize>(),
    );
    map.extend_from_slice(&u32::try_from(headers.len()).unwrap_or(0).to_le_bytes());
    for (k, v) in headers {
        map.extend_from_slice(&u32::try_from(k.len()).unwrap_or(0).to_le_bytes());
        map.extend_from_slice(&u32::try_from(v.len()).unwrap_or(0).to_le_bytes());
    }
    for (k, v) in headers {
        map.extend_from_slice(k.as_bytes());
        map.push(0);
        map.extend_from_slice(v.as_bytes());
        map.push(0);
    }
    let (body_ptr, body_len) = if body.is_empty() {
        (null(), 0)
    } else {
        (body.as_ptr(), body.len())
    };
    count(SEND_LOCAL_RESPONSE);
    // SAFETY: pointers and lengths come from live buffers; the host copies them.
    status(unsafe {
        proxy_send_local_response(
            u32::from(code),
            null(),
            0,
            body_ptr,
            body_len,
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// Reads up to `max` bytes of a host buffer from its start (`None`: absent, empty or unreadable).
pub fn get_buffer(buffer: u32, max: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `get_shared_data`: the host hands over a buffer allocated through
    // `proxy_on_memory_allocate`, which we then own.
    count(GET_BUFFER);
    let s = unsafe { proxy_get_buffer_bytes(buffer, 0, max, &mut data, &mut size) };
    if s != OK || data.is_null() {
        return None;
    }
    // SAFETY: see above.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Resumes a paused request (e.g. after the rate limit service answered). Fails quietly when the
/// stream is gone.
pub fn resume_http_request() -> Result<(), u32> {
    count(CONTINUE_STREAM);
    // SAFETY: no pointers.
    status(unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) })
}

/// A header map of the current stream, serialized as the host sends it (`crate::pairs` decodes it).
/// `None` when the map is unavailable at this point of the stream.
pub fn get_header_map(map: u32) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    count(GET_MAP);
    // SAFETY: as in `get_shared_data`: the host hands over a buffer allocated through
    // `proxy_on_memory_allocate`, which we then own.
    let s = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if s != OK {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: see above.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// One header's value (the first of that name), as bytes.
pub fn get_header(map: u32, name: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    count(GET_MAP_VALUE);
    // SAFETY: as in `get_header_map`.
    let s =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    if s != OK || data.is_null() {
        return None;
    }
    // SAFETY: see above.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Asks for `on_tick` on the root context every `period`.
pub fn set_tick_period(period: std::time::Duration) -> Result<(), u32> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    status(unsafe { proxy_set_tick_period_milliseconds(ms) })
}
