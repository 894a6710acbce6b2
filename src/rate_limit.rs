//! Token-bucket (GCRA) rate limits. (Filled in by the rate-limit work.)

use serde::Deserialize;

/// One entry of a policy's `rate_limits`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitInput {}
