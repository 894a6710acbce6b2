//! edgeward: an edge policy plugin for Envoy and other proxy-wasm hosts.
//!
//! The crate is a pure policy core (document types, validation, route selection, the checks, the
//! decision; no host calls, no clock, no I/O) plus a thin proxy-wasm adapter compiled only for
//! `wasm32-wasip1`. The native `edgeward` binary runs the same core.

pub mod decision;
pub mod document;
pub mod engine;
pub mod error;
pub mod http1;
pub mod https;
pub mod ip;
pub mod json;
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
mod adapter;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod host;
