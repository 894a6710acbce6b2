//! edgeward: an edge policy plugin for Envoy and other proxy-wasm hosts.
//!
//! The crate is a pure policy core (document types, validation, route selection, the checks, the
//! decision; no host calls, no clock, no I/O) plus a thin proxy-wasm adapter compiled only for
//! `wasm32-wasip1`. The native `edgeward` binary runs the same core.
//!
//! `unsafe` is allowed only in the two ABI modules (`adapter`, `host`); tests/unsafe_rule.rs proves
//! that anywhere else it does not compile.

#![deny(unsafe_code)]

pub mod decision;
pub mod document;
pub mod engine;
pub mod error;
/// The fuzz targets' property checks (fuzz/), shared with the stable regression test.
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod fuzz_props;
pub mod http1;
pub mod https;
pub mod ip;
pub mod json;
pub mod keys;
pub mod lint;
pub mod log;
pub mod metrics;
pub mod num;
pub mod pairs;
pub mod rate_limit;
pub mod request;
pub mod route;
pub mod secret;
pub mod signature;
pub mod store;
pub mod stream;
pub mod testkit;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
#[allow(unsafe_code)]
mod adapter;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
#[allow(unsafe_code)]
mod host;

/// `unsafe` outside the ABI modules, compiled only by tests/unsafe_rule.rs (`--cfg edgeward_unsafe_probe`),
/// which expects the crate's `deny(unsafe_code)` to refuse it.
#[cfg(edgeward_unsafe_probe)]
mod unsafe_probe {
    pub fn read(x: &u8) -> u8 {
        unsafe { *std::ptr::from_ref(x) }
    }
}
