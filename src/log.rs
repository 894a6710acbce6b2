//! The anonymized per-request log record. (Filled in by the log work.)

use serde::Deserialize;

/// A policy's `log` section.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct LogInput {}
