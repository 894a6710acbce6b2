//! The client side: sign a request (used by `edgeward sign`, by tests, and by Rust clients).

use super::components::{self, ComponentError, ComponentId};
use super::digest::{content_digest_header, DigestAlg};
use super::sfv::{self, BareItem, Item, Member};
use super::{Alg, MIN_HMAC_SECRET};
use crate::http1::ParsedRequest;
use crate::request::{HeaderText, Headers, Peer, RequestHead, TlsVersion};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use std::fmt;

/// A signing key: an HMAC secret or an ed25519 private key. `Debug` never shows the key.
#[derive(Clone)]
pub enum SigningKey {
    Hmac(Vec<u8>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Hmac(k) => write!(f, "SigningKey::Hmac(<{} bytes>)", k.len()),
            SigningKey::Ed25519(_) => f.write_str("SigningKey::Ed25519(<private>)"),
        }
    }
}

/// Why a key or a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// An HMAC secret of this many bytes (fewer than [`MIN_HMAC_SECRET`]).
    HmacSecretLength(usize),
    /// The secret cannot key HMAC-SHA256.
    HmacKey,
    /// Not an ed25519 private key in PKCS#8 PEM.
    PrivateKeyPem,
    /// Not an RFC 8941 key, as a label must be.
    Label(String),
    /// Empty, or not printable ASCII.
    KeyId,
    /// The `alg` parameter names another algorithm than the key's.
    AlgMismatch {
        alg: Alg,
        key: Alg,
    },
    /// Not 1 to 256 printable ASCII characters.
    Nonce,
    /// Empty, or not printable ASCII.
    Tag,
    Component(ComponentError),
    /// The same component listed twice (as written).
    ComponentTwice(String),
    /// Components the request cannot supply (their names).
    MissingComponents(Vec<String>),
    /// A `created` or `expires` that is not an RFC 8941 integer (15 digits at most).
    Timestamp(u64),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::HmacSecretLength(n) => write!(
                f,
                "the HMAC secret is {n} bytes; at least {MIN_HMAC_SECRET} are required"
            ),
            SignError::HmacKey => f.write_str("the secret cannot key HMAC-SHA256"),
            SignError::PrivateKeyPem => {
                f.write_str("not an ed25519 private key in PKCS#8 PEM form")
            }
            SignError::Label(label) => write!(f, "{label:?} is not a valid signature label"),
            SignError::KeyId => f.write_str("the key id must be non-empty printable ASCII"),
            SignError::AlgMismatch { alg, key } => write!(
                f,
                "alg {} does not match the key type ({})",
                alg.as_str(),
                key.as_str()
            ),
            SignError::Nonce => f.write_str("the nonce must be 1-256 printable ASCII characters"),
            SignError::Tag => f.write_str("the tag must be non-empty printable ASCII"),
            SignError::Component(e) => fmt::Display::fmt(e, f),
            SignError::ComponentTwice(name) => write!(f, "component {name:?} is listed twice"),
            SignError::MissingComponents(names) => write!(
                f,
                "the request cannot supply component(s) {}",
                names.join(", ")
            ),
            SignError::Timestamp(v) => write!(f, "timestamp {v} is out of range"),
        }
    }
}

impl std::error::Error for SignError {}

impl From<ComponentError> for SignError {
    fn from(e: ComponentError) -> SignError {
        SignError::Component(e)
    }
}

impl SigningKey {
    /// An HMAC-SHA256 secret (at least 32 bytes, as the verifier requires).
    pub fn hmac(secret: &[u8]) -> Result<SigningKey, SignError> {
        if secret.len() < MIN_HMAC_SECRET {
            return Err(SignError::HmacSecretLength(secret.len()));
        }
        Ok(SigningKey::Hmac(secret.to_vec()))
    }

    /// An ed25519 private key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Not in the plugin, which
    /// never holds a private key.
    #[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
    pub fn ed25519_from_pem(pem: &str) -> Result<SigningKey, SignError> {
        super::pem::ed25519_signing_key_from_pem(pem)
            .map(|k| SigningKey::Ed25519(Box::new(k)))
            .map_err(|_| SignError::PrivateKeyPem)
    }

    /// The public key of an ed25519 key; `None` for an HMAC secret.
    pub fn verifying_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        match self {
            SigningKey::Hmac(_) => None,
            SigningKey::Ed25519(k) => Some(k.verifying_key()),
        }
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match self {
            SigningKey::Hmac(_) => Alg::HmacSha256,
            SigningKey::Ed25519(_) => Alg::Ed25519,
        }
    }

    fn sign(&self, base: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            SigningKey::Hmac(secret) => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignError::HmacKey)?;
                mac.update(base);
                Ok(mac.finalize().into_bytes().to_vec())
            }
            SigningKey::Ed25519(k) => Ok(k.sign(base).to_bytes().to_vec()),
        }
    }
}

/// What to sign and how.
#[derive(Debug, Clone)]
pub struct SignParams {
    pub key_id: String,
    pub key: SigningKey,
    /// Emit the `alg` parameter (must match the key).
    pub alg: Option<Alg>,
    /// Signature label; `sig1` by convention.
    pub label: String,
    /// Component identifiers in the document form, order kept. Empty: `@method @authority @path @query`,
    /// plus `content-digest` when the request has a body.
    pub components: Vec<String>,
    pub created: u64,
    pub expires: Option<u64>,
    pub nonce: Option<String>,
    /// The `tag` parameter (RFC 9421 §2.3): an application-specific label a verifier can select on.
    pub tag: Option<String>,
    /// Compute and add `Content-Digest`. When `content-digest` is covered and the request has none, sha-256
    /// is added even without this.
    pub content_digest: Option<DigestAlg>,
    /// The request goes over TLS (affects `@scheme`, `@target-uri`, and the default port of `@authority`).
    pub https: bool,
}

impl SignParams {
    /// Parameters with the defaults (`sig1`, default components, no expires/nonce/alg/tag, https).
    pub fn new(key_id: impl Into<String>, key: SigningKey, created: u64) -> SignParams {
        SignParams {
            key_id: key_id.into(),
            key,
            alg: None,
            label: "sig1".into(),
            components: Vec::new(),
            created,
            expires: None,
            nonce: None,
            tag: None,
            content_digest: None,
            https: true,
        }
    }
}

/// The header values to add: `Signature-Input`, `Signature`, and `Content-Digest` when computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub signature_input: String,
    pub signature: String,
    pub content_digest: Option<String>,
}

impl SignedHeaders {
    /// As (name, value) pairs for [`crate::http1::render`].
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(3);
        if let Some(d) = &self.content_digest {
            out.push(("Content-Digest".to_string(), d.clone()));
        }
        out.push(("Signature-Input".to_string(), self.signature_input.clone()));
        out.push(("Signature".to_string(), self.signature.clone()));
        out
    }
}

fn printable(s: &str) -> bool {
    s.bytes().all(|c| (0x20..=0x7e).contains(&c))
}

/// Signs `req`: builds the RFC 9421 signature base from the request as it will be sent (including a
/// computed Content-Digest) and returns the headers to add.
pub fn sign_request(req: &ParsedRequest, params: &SignParams) -> Result<SignedHeaders, SignError> {
    if !sfv::is_key(&params.label) {
        return Err(SignError::Label(params.label.clone()));
    }
    if params.key_id.is_empty() || !printable(&params.key_id) {
        return Err(SignError::KeyId);
    }
    if let Some(a) = params.alg {
        if a != params.key.alg() {
            return Err(SignError::AlgMismatch {
                alg: a,
                key: params.key.alg(),
            });
        }
    }
    if let Some(n) = &params.nonce {
        if n.is_empty() || n.len() > super::MAX_NONCE_LEN || !printable(n) {
            return Err(SignError::Nonce);
        }
    }
    if let Some(t) = &params.tag {
        if t.is_empty() || !printable(t) {
            return Err(SignError::Tag);
        }
    }
    let names: Vec<String> = if params.components.is_empty() {
        let mut d: Vec<String> = ["@method", "@authority", "@path", "@query"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !req.body.is_empty() {
            d.push("content-digest".into());
        }
        d
    } else {
        params.components.clone()
    };
    let mut covered: Vec<ComponentId> = Vec::with_capacity(names.len());
    for n in &names {
        let id = ComponentId::parse_config(n.trim())?;
        if covered.iter().any(|c| c.same_as(&id)) {
            return Err(SignError::ComponentTwice(n.clone()));
        }
        covered.push(id);
    }

    let has_digest = req.headers.iter().any(|(k, _)| k == "content-digest");
    let digest_alg = match params.content_digest {
        Some(a) => Some(a),
        None if !has_digest && covered.iter().any(ComponentId::is_content_digest) => {
            Some(DigestAlg::Sha256)
        }
        None => None,
    };
    let content_digest = digest_alg.map(|a| content_digest_header(a, &req.body));
    // The headers as the verifier will hold them (values that are not UTF-8 keep their bytes for `;bs`).
    let mut text = HeaderText::default();
    req.append_headers_to(&mut text, |k| {
        content_digest.is_some() && k == "content-digest"
    });
    if let Some(d) = &content_digest {
        // Fails only past 4 GiB of headers, which no request read into memory here reaches.
        let _ = text.push("content-digest", d);
    }
    let slices = text.slices();
    let authority = req.authority();
    let head = RequestHead {
        method: &req.method,
        authority: &authority,
        path: req.path(),
        route_name: None,
        tls: params.https.then_some(TlsVersion::V1_3),
        peer: Peer::Invalid,
        headers: Headers::from_text(&slices, text.raw()),
    };

    let mut sig_params: sfv::Params = vec![("created".into(), int(params.created)?)];
    if let Some(e) = params.expires {
        sig_params.push(("expires".into(), int(e)?));
    }
    if let Some(n) = &params.nonce {
        sig_params.push(("nonce".into(), BareItem::String(n.as_str().into())));
    }
    if let Some(a) = params.alg {
        sig_params.push(("alg".into(), BareItem::String(a.as_str().into())));
    }
    sig_params.push((
        "keyid".into(),
        BareItem::String(params.key_id.as_str().into()),
    ));
    // Last, in the order RFC 9421 §2.3 lists the parameters.
    if let Some(t) = &params.tag {
        sig_params.push(("tag".into(), BareItem::String(t.as_str().into())));
    }
    let items = covered
        .iter()
        .map(|c| Item {
            bare: BareItem::String(c.name.as_ref().into()),
            params: c.params.clone(),
        })
        .collect();
    let member = Member::InnerList(items, sig_params);
    let mut params_value = String::new();
    sfv::write_member(&mut params_value, &member);
    let base = components::signature_base(&head, &covered, &params_value).ok_or_else(|| {
        let missing = covered
            .iter()
            .filter(|c| c.value(&head).is_none())
            .map(|c| c.name.to_string())
            .collect();
        SignError::MissingComponents(missing)
    })?;
    let sig = params.key.sign(base.as_bytes())?;
    Ok(SignedHeaders {
        signature_input: format!("{}={params_value}", params.label),
        signature: format!("{}=:{}:", params.label, STANDARD.encode(sig)),
        content_digest,
    })
}

fn int(v: u64) -> Result<BareItem<'static>, SignError> {
    // RFC 8941 integers have at most 15 digits.
    match i64::try_from(v) {
        Ok(i) if i <= 999_999_999_999_999 => Ok(BareItem::Integer(i)),
        _ => Err(SignError::Timestamp(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Errors;
    use crate::http1::parse_http_request;
    use crate::secret::NoEnv;
    use crate::signature::{compile, SignatureInput};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_700_000_000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const GET: &str = "GET /x?a=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n";

    fn params() -> SignParams {
        SignParams::new("k1", SigningKey::hmac(SECRET).unwrap(), NOW)
    }

    #[test]
    fn tag_is_the_last_signature_parameter() {
        let r = parse_http_request(GET.as_bytes()).unwrap();
        let mut p = params();
        p.tag = Some("app \"x\"".into());
        let h = sign_request(&r, &p).unwrap();
        assert_eq!(
            h.signature_input,
            format!(
                r#"sig1=("@method" "@authority" "@path" "@query");created={NOW};keyid="k1";tag="app \"x\"""#
            )
        );
        p.expires = Some(NOW + 10);
        p.nonce = Some("n".into());
        p.alg = Some(Alg::HmacSha256);
        p.tag = Some("t".into());
        let h = sign_request(&r, &p).unwrap();
        assert!(
            h.signature_input.ends_with(&format!(
                r#";created={NOW};expires={};nonce="n";alg="hmac-sha256";keyid="k1";tag="t""#,
                NOW + 10
            )),
            "{}",
            h.signature_input
        );
        // The tag is signed: the verifier accepts the signature with it (and so covers it in
        // @signature-params).
        let input: SignatureInput = crate::json::from_value(serde_json::json!({
            "keys": [{"id": "k1", "alg": "hmac-sha256", "secret": {"base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}}],
            "components": ["@method", "@authority", "@path", "@query"]
        }))
        .unwrap();
        let mut errs = Errors::default();
        let policy = compile(&input, "p", &NoEnv, &[], &mut errs).unwrap();
        let mut signed = r.clone();
        for (name, value) in h.headers() {
            signed.headers.push((name.to_ascii_lowercase(), value));
        }
        let authority = signed.authority();
        let head = signed.head(&authority, Some(TlsVersion::V1_3), Peer::Invalid);
        assert!(policy.verify_head(&head, NOW).is_ok());
        let tampered = h.signature_input.replace(r#"tag="t""#, r#"tag="u""#);
        signed.headers.retain(|(k, _)| k != "signature-input");
        signed.headers.push(("signature-input".into(), tampered));
        let head = signed.head(&authority, Some(TlsVersion::V1_3), Peer::Invalid);
        assert!(policy.verify_head(&head, NOW).is_err());
    }

    #[test]
    fn tag_must_be_printable_and_non_empty() {
        let r = parse_http_request(GET.as_bytes()).unwrap();
        for bad in ["", "a\nb", "caf\u{e9}"] {
            let mut p = params();
            p.tag = Some(bad.into());
            assert_eq!(sign_request(&r, &p), Err(SignError::Tag), "{bad:?}");
        }
    }
}
