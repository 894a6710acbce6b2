//! Key sources and Web Bot Auth agents, from the first byte:
//! - a JWK Set (`keys::jwks::parse`) against a model on serde_json that keeps every member, repeated
//!   ones too: the same verdict (too large, not UTF-8, malformed, too many keys), the same usable keys in
//!   order (RFC 8037 Ed25519 verification keys, RFC 7517's unique member names), the same count left out,
//!   RFC 7638 thumbprints, and the set's shared-data form reading back as itself;
//! - the shared-data form (`keys::jwks::decode`) read from any bytes: what it accepts encodes and reads
//!   back as itself, with the thumbprints computed again;
//! - a request's `Signature-Agent` lines (`WebBotAuth::agent`) against a model on the `sfv` crate: the
//!   dictionary member of the label (a string, `type` absent or `directory`) or the legacy string item,
//!   covered by the signature as that form requires, naming an origin in the allow-list; and the
//!   whole Web Bot Auth verification over the same request answers without panicking.

use super::sfv::panic_with;
use super::{test_peer, Bytes, FuzzRequest};
use crate::error::Errors;
use crate::keys::jwks::{self, KeySetError, MAX_KID_LEN};
use crate::keys::{compile_sources, KeyCache, KeySet, KeySource, KeySourceInput, SourceKey};
use crate::signature::components::{ComponentId, Kind as ComponentKind};
use crate::signature::sfv::reference::{self as sfv_ref, Difference, Kind as SfvKind};
use crate::signature::web_bot_auth::{self, normalize_origin, AgentError, WebBotAuthInput};
use crate::signature::KeyRing;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const NOW: u64 = 1_700_000_000;

pub fn jwks(data: &[u8]) {
    let mut b = Bytes(data);
    match b.u8() % 3 {
        0 => key_set(&mut b),
        1 => shared_form(b.rest()),
        _ => agent(&mut b),
    }
}

// --- JWK Sets --------------------------------------------------------------------------------------

/// A JSON value with every object member kept in order, repeated names too (serde_json's `Value`
/// keeps the last); numbers as the non-negative integer they are, or `None`.
#[derive(Debug)]
enum J {
    Other,
    Num(Option<u64>),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn depth(&self) -> usize {
        match self {
            J::Arr(a) => 1 + a.iter().map(J::depth).max().unwrap_or(0),
            J::Obj(o) => 1 + o.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// The members named `name`.
    fn all(&self, name: &str) -> Vec<&J> {
        match self {
            J::Obj(o) => o
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v)
                .collect(),
            _ => Vec::new(),
        }
    }
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<J, E> {
        Ok(J::Other)
    }
    fn visit_u64<E>(self, v: u64) -> Result<J, E> {
        Ok(J::Num(Some(v)))
    }
    // serde_json hands over negative integers (and -0) as i64, fractions, exponents and integers past
    // u64 as f64: none of them is a time for the reader.
    fn visit_i64<E>(self, _: i64) -> Result<J, E> {
        Ok(J::Num(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<J, E> {
        Ok(J::Num(None))
    }
    fn visit_str<E>(self, v: &str) -> Result<J, E> {
        Ok(J::Str(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = a.next_element::<J>()? {
            out.push(v);
        }
        Ok(J::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = a.next_entry::<String, J>()? {
            out.push((k, v));
        }
        Ok(J::Obj(out))
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

/// A usable key as the model sees it: kid, key bytes, nbf, exp.
type ModelKey = (Option<String>, [u8; 32], Option<u64>, Option<u64>);

/// One entry of `keys` under RFC 7517 and RFC 8037, or `None` if it is not a usable Ed25519
/// verification key.
fn model_key(entry: &J) -> Option<ModelKey> {
    let J::Obj(members) = entry else {
        return None;
    };
    // RFC 7517 §4: member names are unique; a JWK repeating one is refused.
    let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w.first() == w.get(1)) {
        return None;
    }
    let get = |name: &str| entry.all(name).into_iter().next();
    let string = |name: &str| -> Result<Option<&str>, ()> {
        match get(name) {
            None => Ok(None),
            Some(J::Str(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(()),
        }
    };
    let time = |name: &str| -> Result<Option<u64>, ()> {
        match get(name) {
            None => Ok(None),
            Some(J::Num(Some(v))) => Ok(Some(*v)),
            Some(_) => Err(()),
        }
    };
    if get("d").is_some()
        || string("kty").ok()? != Some("OKP")
        || string("crv").ok()? != Some("Ed25519")
        || string("use").ok()?.is_some_and(|u| u != "sig")
        || string("alg")
            .ok()?
            .is_some_and(|a| a != "EdDSA" && a != "Ed25519")
    {
        return None;
    }
    match get("key_ops") {
        None => {}
        Some(J::Arr(ops)) => {
            let ops: Vec<&str> = ops
                .iter()
                .map(|o| match o {
                    J::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            if !ops.contains(&"verify") {
                return None;
            }
        }
        Some(_) => return None,
    }
    let kid = string("kid").ok()?;
    if kid.is_some_and(|k| {
        k.is_empty() || k.len() > MAX_KID_LEN || k.bytes().any(|c| !(0x20..=0x7e).contains(&c))
    }) {
        return None;
    }
    let (nbf, exp) = (time("nbf").ok()?, time("exp").ok()?);
    if let (Some(nb), Some(na)) = (nbf, exp) {
        if nb > na {
            return None;
        }
    }
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(string("x").ok()??)
        .ok()?
        .try_into()
        .ok()?;
    let key = VerifyingKey::from_bytes(&x).ok()?;
    if key.is_weak() {
        return None;
    }
    Some((kid.map(String::from), x, nbf, exp))
}

/// RFC 7638 §3.2 over the RFC 8037 members, written out here rather than taken from the reader.
fn model_thumbprint(x: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn key_set(b: &mut Bytes) {
    let max_keys = usize::from(b.u8() % 8) + 1;
    let max_bytes = 64 + usize::from(b.u16() % 4096);
    let bytes = b.rest();
    let ours = jwks::parse(bytes, max_bytes, max_keys);
    if bytes.len() > max_bytes {
        assert_eq!(ours, Err(KeySetError::TooLarge(max_bytes)));
        return;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        assert_eq!(ours, Err(KeySetError::NotUtf8));
        return;
    };
    let model = serde_json::from_str::<J>(text);
    let deep = model.as_ref().is_ok_and(|j| j.depth() >= 60);
    // Nesting past the reader's 64 levels (serde_json takes 128) is the JSON reader's named difference.
    if deep
        && matches!(&ours, Err(KeySetError::Malformed(why)) if why.contains("nested too deeply"))
    {
        return;
    }
    let Ok(j) = model else {
        assert!(
            matches!(ours, Err(KeySetError::Malformed(_))),
            "{text:?}: serde_json refuses it, the reader gave {ours:?}"
        );
        return;
    };
    let keys = j.all("keys");
    let entries = match keys.as_slice() {
        [J::Arr(entries)] => entries,
        _ => {
            // Not an object, no `keys`, `keys` twice or not an array.
            assert!(
                matches!(ours, Err(KeySetError::Malformed(_))),
                "{text:?}: no single `keys` array, the reader gave {ours:?}"
            );
            return;
        }
    };
    if entries.len() > max_keys {
        assert_eq!(ours, Err(KeySetError::TooManyKeys(max_keys)), "{text:?}");
        return;
    }
    let expected: Vec<ModelKey> = entries.iter().filter_map(model_key).collect();
    let parsed = match ours {
        Ok(p) => p,
        Err(e) => panic_with(&format!(
            "{text:?}: the model reads {expected:?}, the reader refused: {e}"
        )),
    };
    let got: Vec<ModelKey> = parsed
        .set
        .keys
        .iter()
        .map(|k| (k.kid.clone(), k.key.to_bytes(), k.not_before, k.not_after))
        .collect();
    assert_eq!(got, expected, "{text:?}: the usable keys");
    assert_eq!(
        parsed.skipped,
        entries.len() - expected.len(),
        "{text:?}: the keys left out"
    );
    for k in &parsed.set.keys {
        assert_eq!(k.thumbprint, model_thumbprint(&k.key.to_bytes()));
    }
    assert_eq!(
        jwks::decode(&jwks::encode(&parsed.set)).as_ref(),
        Some(&parsed.set),
        "the shared-data form reads back"
    );
}

fn shared_form(bytes: &[u8]) {
    let Some(set) = jwks::decode(bytes) else {
        return;
    };
    for k in &set.keys {
        assert_eq!(k.thumbprint, model_thumbprint(&k.key.to_bytes()));
        assert!(k
            .kid
            .as_ref()
            .is_none_or(|kid| kid.len() <= usize::from(u16::MAX)));
    }
    assert_eq!(jwks::decode(&jwks::encode(&set)), Some(set));
}

// --- Signature-Agent -------------------------------------------------------------------------------

/// The allow-list: written origin → key source, as a document could give it.
const DIRECTORIES: [(&str, &str); 3] = [
    ("https://Agent.Example:443", "agent_dir"),
    ("http://bot.example:8080/", "bot_dir"),
    (
        "https://[::1]:8443/.well-known/http-message-signatures-directory",
        "local_dir",
    ),
];

fn sources() -> Option<Vec<KeySource>> {
    let inputs: BTreeMap<String, KeySourceInput> = crate::json::from_str(
        r#"{
        "agent_dir": {"type": "jwks", "cluster": "a", "url": "https://agent.example/.well-known/http-message-signatures-directory"},
        "bot_dir": {"type": "jwks", "cluster": "b", "url": "http://bot.example:8080/.well-known/http-message-signatures-directory"},
        "local_dir": {"type": "jwks", "cluster": "l", "url": "https://[::1]:8443/.well-known/http-message-signatures-directory"}
    }"#,
    )
    .ok()?;
    let mut errs = Errors::default();
    let out = compile_sources(&inputs, "key_sources", &mut errs);
    errs.is_empty().then_some(out)
}

/// The covered components a signature may list, by a byte.
const COVERED: [&str; 7] = [
    "\"signature-agent\";key=\"sig1\"",
    "\"signature-agent\"",
    "\"signature-agent\";key=\"sig2\"",
    "\"signature-agent\";sf",
    "\"signature-agent\";bs",
    "\"signature-agent\";key=\"sig1\";bs",
    "\"@authority\"",
];

/// What `agent` should answer, from the `sfv` crate: the origin it names, or why not.
fn model_agent(
    lines: &[&str],
    label: &str,
    covered: &[ComponentId],
    allowed: &[String],
) -> Result<String, AgentError> {
    if lines.is_empty() {
        return Err(AgentError::Unknown);
    }
    let value = lines.join(", ");
    let string_of = |bare: &::sfv::BareItem| match bare {
        ::sfv::BareItem::String(s) => Some(s.as_str().to_string()),
        _ => None,
    };
    let dictionary = ::sfv::Parser::new(&value)
        .with_version(::sfv::Version::Rfc8941)
        .parse::<::sfv::Dictionary>();
    let (uri, needs_key) = match dictionary {
        Ok(dict) => {
            // A repeated key or parameter anywhere: RFC 8941 keeps the last, edgeward refuses.
            if sfv_ref::difference(SfvKind::Dictionary, &value) == Some(Difference::RepeatedKey) {
                return Err(AgentError::Unknown);
            }
            let Some(::sfv::ListEntry::Item(item)) = dict
                .iter()
                .find(|(k, _)| k.as_str() == label)
                .map(|(_, v)| v)
            else {
                return Err(AgentError::Unknown);
            };
            let uri = string_of(&item.bare_item).ok_or(AgentError::Unknown)?;
            let directory = |v: &::sfv::BareItem| match v {
                ::sfv::BareItem::Token(t) => t.as_str() == "directory",
                ::sfv::BareItem::String(s) => s.as_str() == "directory",
                _ => false,
            };
            if item
                .params
                .iter()
                .any(|(k, v)| k.as_str() == "type" && !directory(v))
            {
                return Err(AgentError::Unknown);
            }
            (uri, true)
        }
        Err(_) => {
            if sfv_ref::difference(SfvKind::Item, &value) == Some(Difference::RepeatedKey) {
                return Err(AgentError::Unknown);
            }
            let item = ::sfv::Parser::new(&value)
                .with_version(::sfv::Version::Rfc8941)
                .parse::<::sfv::Item>()
                .map_err(|_| AgentError::Unknown)?;
            (
                string_of(&item.bare_item).ok_or(AgentError::Unknown)?,
                false,
            )
        }
    };
    let covers = covered.iter().any(|c| {
        c.name == "signature-agent"
            && matches!(&c.kind, ComponentKind::Field { sf: false, bs: false, key }
                if key.as_deref() == needs_key.then_some(label))
    });
    if !covers {
        return Err(AgentError::NotCovered);
    }
    let origin = normalize_origin(&uri).ok_or(AgentError::Unknown)?;
    if allowed.contains(&origin) {
        Ok(origin)
    } else {
        Err(AgentError::Unknown)
    }
}

fn agent(b: &mut Bytes) {
    let Some(sources) = sources() else {
        panic_with("the fuzz target's key sources do not compile");
    };
    let input = WebBotAuthInput {
        directories: DIRECTORIES
            .iter()
            .map(|(o, s)| (o.to_string(), s.to_string()))
            .collect(),
        agent_header: None,
    };
    let mut errs = Errors::default();
    let Some(wba) = web_bot_auth::compile(&input, "signature.web_bot_auth", &sources, &mut errs)
    else {
        panic_with(&format!(
            "the fuzz target's allow-list does not compile: {errs:?}"
        ));
    };
    let allowed: Vec<String> = DIRECTORIES
        .iter()
        .filter_map(|(o, _)| normalize_origin(o))
        .collect();
    let label = match b.u8() % 4 {
        0 | 1 => "sig1".to_string(),
        2 => "sig2".to_string(),
        _ => b.str(),
    };
    let picks = b.u8();
    let covered: Vec<ComponentId> = COVERED
        .iter()
        .enumerate()
        .filter(|(i, _)| picks & (1 << i) != 0)
        .filter_map(|(_, c)| ComponentId::parse_config(c).ok())
        .collect();
    // The rest: Signature-Agent lines (any bytes), then a blank line and more of the request.
    let rest = b.rest();
    let mut text = b"GET\napi.example.com\n/data\n".to_vec();
    let (agent_lines, more) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, &b""[..]),
    };
    for line in agent_lines.split(|&c| c == b'\n') {
        text.extend_from_slice(b"signature-agent: ");
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    text.extend_from_slice(more);
    let req = FuzzRequest::parse(&text);
    let slices = req.headers.slices();
    let head = req.head(&slices, test_peer());

    for o in &allowed {
        assert_eq!(normalize_origin(o).as_ref(), Some(o), "normalized twice");
    }
    let ours = wba.agent(&head, &label, &covered).map(|a| {
        assert_eq!(
            sources.get(a.source).map(|s| s.name.as_str()),
            DIRECTORIES
                .iter()
                .find(|(o, _)| normalize_origin(o).as_deref() == Some(a.origin.as_str()))
                .map(|(_, s)| *s),
            "the agent's key source"
        );
        a.origin
    });
    let lines: Vec<&str> = head
        .headers
        .get_all("signature-agent")
        .map(str::trim)
        .collect();
    let expected = model_agent(&lines, &label, &covered, &allowed);
    assert_eq!(ours, expected, "Signature-Agent {lines:?}, label {label:?}");
    if let Ok(origin) = &ours {
        assert_eq!(normalize_origin(origin).as_ref(), Some(origin));
    }

    // The whole verification of the request under a Web Bot Auth policy, with keys loaded for one
    // agent: it answers (allow or a reason) whatever the request holds.
    let mut cache = KeyCache::new(sources.len());
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    cache.install(
        0,
        1,
        KeySet {
            keys: vec![SourceKey {
                kid: None,
                thumbprint: jwks::thumbprint(&key),
                key,
                not_before: None,
                not_after: None,
            }],
        },
    );
    POLICY.with(|p| {
        let Some(p) = p else {
            panic_with("the fuzz target's Web Bot Auth policy does not compile");
        };
        let _ = p.verify_head_with(
            &head,
            NOW,
            KeyRing {
                sources: &sources,
                cache: &cache,
            },
        );
    });
}

thread_local! {
    static POLICY: Option<crate::signature::SignaturePolicy> = {
        let input: Option<crate::signature::SignatureInput> = crate::json::from_str(
            r#"{"web_bot_auth": {"directories": {
                "https://Agent.Example:443": "agent_dir",
                "http://bot.example:8080/": "bot_dir"
            }}}"#,
        )
        .ok();
        let mut errs = Errors::default();
        match (input, sources()) {
            (Some(input), Some(sources)) => crate::signature::compile(
                &input,
                "signature",
                &crate::secret::NoEnv,
                &sources,
                &mut errs,
            ),
            _ => None,
        }
    };
}
