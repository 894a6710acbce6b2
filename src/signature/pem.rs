//! ed25519 keys in PEM (RFC 7468).
//!
//! Public keys (what the plugin reads) are decoded here without a general ASN.1 stack: an ed25519 SPKI
//! key has one DER encoding, so a byte comparison reads it, and the plugin stays without the
//! `der`/`spki`/`pem-rfc7468`/`base64ct` crates (about 22 KB of optimized wasm). Private keys (read by
//! `edgeward sign`, never by the plugin, which does not hold one) go through the same armor reader and
//! then the `pkcs8` crate; that path is compiled for every target but the plugin's.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

/// Longest DER document accepted: a PKCS#8 key is 48 or 83 bytes plus its (rare, small) attributes.
const MAX_DER: usize = 1024;
/// Longest base64 body (without line breaks) that can hold [`MAX_DER`] bytes.
const MAX_BASE64: usize = MAX_DER.div_ceil(3) * 4;

/// SubjectPublicKeyInfo of an ed25519 key up to the key (RFC 8410 section 4): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) of 32 bytes }.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a PEM key was refused. Callers show one message for all; the detail is for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PemError {
    /// Not exactly one `-----BEGIN label-----` … `-----END label-----` block with the expected label.
    Armor,
    /// The body is not standard, padded, canonical base64 (or is too long).
    Base64,
    /// The DER document is not an ed25519 key in the RFC 8410 encoding.
    Der,
    /// A PKCS#8 v2 key whose attached public key is not the seed's.
    #[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
    PublicKeyMismatch,
}

/// The 32 key bytes of an ed25519 SPKI `PUBLIC KEY` PEM (not yet checked to be a curve point).
pub(super) fn ed25519_public_key_from_pem(pem: &str) -> Result<[u8; 32], PemError> {
    let mut der = [0u8; MAX_DER];
    let der = decode_armor(pem, "PUBLIC KEY", &mut der)?;
    der.strip_prefix(&SPKI_PREFIX)
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .ok_or(PemError::Der)
}

/// The ed25519 signing key of a PKCS#8 `PRIVATE KEY` PEM (v1, or v2 with its public key, RFC 8410
/// section 7); the DER is read by the `pkcs8` crate.
#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
pub(super) fn ed25519_signing_key_from_pem(
    pem: &str,
) -> Result<ed25519_dalek::SigningKey, PemError> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey as _, KeypairBytes};
    let mut buf = Zeroizing::new([0u8; MAX_DER]);
    let der = decode_armor(pem, "PRIVATE KEY", &mut buf)?;
    // KeypairBytes wipes its copy of the seed when dropped.
    let pair = KeypairBytes::from_pkcs8_der(der).map_err(|_| PemError::Der)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&pair.secret_key);
    match &pair.public_key {
        Some(public) if key.verifying_key().as_bytes() != public.as_ref() => {
            Err(PemError::PublicKeyMismatch)
        }
        _ => Ok(key),
    }
}

/// Decodes the single PEM block labelled `label` into `out`. Whitespace (any line ending included) is
/// allowed around the block and around each line, nothing else: no explanatory text, no headers.
fn decode_armor<'o>(
    pem: &str,
    label: &str,
    out: &'o mut [u8; MAX_DER],
) -> Result<&'o [u8], PemError> {
    let mut lines = pem
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if lines.next().and_then(|l| boundary(l, "-----BEGIN ")) != Some(label) {
        return Err(PemError::Armor);
    }
    // The body holds a private key: wipe the copy when done.
    let mut body = Zeroizing::new([0u8; MAX_BASE64]);
    let mut len = 0;
    let mut ended = false;
    for line in lines {
        if ended {
            return Err(PemError::Armor);
        }
        if line.starts_with("-----") {
            if boundary(line, "-----END ") != Some(label) {
                return Err(PemError::Armor);
            }
            ended = true;
            continue;
        }
        let end = len + line.len();
        body.get_mut(len..end)
            .ok_or(PemError::Base64)?
            .copy_from_slice(line.as_bytes());
        len = end;
    }
    if !ended {
        return Err(PemError::Armor);
    }
    let body = body.get(..len).ok_or(PemError::Base64)?;
    let n = STANDARD
        .decode_slice(body, out.as_mut_slice())
        .map_err(|_| PemError::Base64)?;
    out.get(..n).ok_or(PemError::Base64)
}

/// The label of a `-----BEGIN label-----` / `-----END label-----` line (`kind` is the part before it).
fn boundary<'l>(line: &'l str, kind: &str) -> Option<&'l str> {
    line.strip_prefix(kind)?.strip_suffix("-----")
}

/// The algorithm of a PKCS#8 key followed by its private key (RFC 8410 section 7): AlgorithmIdentifier
/// { OID 1.3.101.112 } (no parameters), OCTET STRING { OCTET STRING of the 32-byte seed }. The tests
/// build keys with it.
#[cfg(test)]
const PKCS8_ALG_AND_KEY: [u8; 11] = [
    0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// `[1] IMPLICIT BIT STRING` of 32 bytes, 0 unused bits: the public key of a version 2 (v2) PKCS#8 key.
#[cfg(test)]
const PKCS8_PUBLIC_KEY: [u8; 3] = [0x81, 0x21, 0x00];

#[cfg(test)]
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests;
