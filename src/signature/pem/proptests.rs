use super::*;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use proptest::prelude::*;

/// The armor the `pkcs8` crate writes (its decoder wants 64-column lines).
fn armor(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<_> = b64
        .as_bytes()
        .chunks(64)
        .map(String::from_utf8_lossy)
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Applies one edit to `content` then wraps it in a SEQUENCE again, so the inner parsing is exercised.
fn mutate(content: &[u8], at: prop::sample::Index, kind: u8, byte: u8) -> Vec<u8> {
    let mut c = content.to_vec();
    let i = at.index(c.len());
    match kind {
        0 => c[i] ^= byte.max(1),
        1 => c.insert(i, byte),
        _ => {
            c.remove(i);
        }
    }
    let mut der = vec![0x30];
    if c.len() < 0x80 {
        der.push(c.len() as u8);
    } else {
        der.extend([0x81, c.len() as u8]);
    }
    der.extend(c);
    der
}

proptest! {
    #[test]
    fn never_panics(s in "\\PC{0,200}") {
        let _ = ed25519_public_key_from_pem(&s);
        let _ = ed25519_signing_key_from_pem(&s);
        let framed = format!("-----BEGIN PRIVATE KEY-----\n{s}\n-----END PRIVATE KEY-----");
        let _ = ed25519_signing_key_from_pem(&framed);
    }

    /// A key pair as ed25519-dalek writes it: the private key (read through the `pkcs8` crate, as
    /// `edgeward sign` does) and the public key (read by hand, as the plugin does) agree.
    #[test]
    fn reads_what_ed25519_dalek_writes(seed in any::<[u8; 32]>()) {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pem = key.to_pkcs8_pem(LineEnding::CRLF).unwrap();
        let private = ed25519_signing_key_from_pem(&pem);
        prop_assert_eq!(private.as_ref().map(|k| k.to_bytes()), Ok(seed));
        let public = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        prop_assert_eq!(
            ed25519_public_key_from_pem(&public),
            private.map(|k| k.verifying_key().to_bytes())
        );
    }

    /// An edited SPKI is read here exactly when the `pkcs8` crate reads it, as the same key.
    #[test]
    fn spki_agrees_with_the_pkcs8_crate(
        key in any::<[u8; 32]>(), at in any::<prop::sample::Index>(), kind in 0u8..3, byte in any::<u8>()
    ) {
        let content = [&SPKI_PREFIX[2..], key.as_slice()].concat();
        let pem = armor("PUBLIC KEY", &mutate(&content, at, kind, byte));
        let new = ed25519_public_key_from_pem(&pem)
            .ok()
            .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok());
        let old = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).ok();
        prop_assert_eq!(new, old);
    }

    /// An edited PKCS#8 key is read alike here (this module's armor, then the `pkcs8` crate's DER
    /// decoder) and by the crate's own PEM decoder: refused by both, or read by both as the same seed.
    #[test]
    fn pkcs8_accepts_nothing_the_pkcs8_crate_refused(
        seed in any::<[u8; 32]>(), v2 in any::<bool>(), attrs in any::<bool>(),
        at in any::<prop::sample::Index>(), kind in 0u8..3, byte in any::<u8>()
    ) {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let mut content = vec![0x02, 0x01, u8::from(v2)];
        content.extend(PKCS8_ALG_AND_KEY);
        content.extend(seed);
        if attrs {
            content.extend([0xa0, 0x02, 0x30, 0x00]);
        }
        if v2 {
            content.extend(PKCS8_PUBLIC_KEY);
            content.extend(key.verifying_key().to_bytes());
        }
        let pem = armor("PRIVATE KEY", &mutate(&content, at, kind, byte));
        let ours = ed25519_signing_key_from_pem(&pem).map(|k| k.to_bytes()).ok();
        let theirs = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map(|k| k.to_bytes()).ok();
        prop_assert_eq!(ours, theirs);
    }
}
