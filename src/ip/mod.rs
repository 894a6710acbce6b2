//! IP allow/deny lists and the client-address model.
//!
//! Recommended Envoy setup: let the edge HTTP connection manager resolve the client
//! (`use_remote_address: true`, `xff_num_trusted_hops: N`); Envoy then hands that address to the plugin as
//! `source.address`, and the default `client_ip` (the peer) is right. `xff_trusted_hops` and
//! `trusted_proxies` exist for setups where Envoy does not do this itself.
//!
//! Addresses are canonicalized before matching: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is IPv4, both in
//! the configuration and on the wire, so `10.0.0.0/8` also matches `::ffff:10.1.2.3`. Envoy's own
//! CidrRange does not do this. An IPv6 network in the configuration that merely contains the mapped
//! range (`::/0`, `::/80`) stays IPv6 and matches only IPv6 clients.

mod client;
mod parse;
mod policy;
mod table;

pub use client::{ClientAddr, ClientIpConfig, ClientIpInput};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use parse::wire_ip;
pub use parse::{parse_ip, parse_net, peer_from_socket_addr, Net, NetError};
pub use policy::{IpInput, IpLists, IpListsInput, IpPolicy, ListInput};
pub use table::IpTable;
