//! RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest. (Filled in by the signature work.)

use serde::Deserialize;

/// A policy's `signature` section.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SignatureInput {}
