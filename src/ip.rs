//! IP allow/deny lists and the client-address model. (Filled in by the IP work.)

use serde::Deserialize;

/// Document-level `client_ip`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientIpInput {
    #[serde(default)]
    pub xff_trusted_hops: u32,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// A policy's `ip` section.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct IpInput {}
