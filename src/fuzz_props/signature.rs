//! RFC 9421 signatures: component extraction and the signature base from any request and any
//! `Signature-Input` (derived components, `@query-param`, `;key`, `;sf`, `;bs`), and the round trip:
//! whatever `edgeward sign` signs, the plugin's verifier accepts.

use super::{test_peer, FuzzRequest};
use crate::document::Document;
use crate::http1::ParsedRequest;
use crate::request::{Headers, RequestHead, TlsVersion};
use crate::secret::NoEnv;
use crate::signature::sfv::{parse_dictionary, Member};
use crate::signature::{components, sign_request, ComponentId, SignParams, SigningKey};

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

const DOCUMENT: &str = r#"{
  "policies": { "p": { "signature": {
    "keys": [{ "id": "k1", "alg": "hmac-sha256", "secret": { "base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" } }],
    "components": ["@method"]
  } } },
  "routes": [{ "policy": "p" }]
}"#;

thread_local! {
    static DOC: Option<Document> = Document::from_json(DOCUMENT, &NoEnv).ok();
}

/// Input: a request (see [`FuzzRequest`]). Header lines named `@sign` are not headers: each is one
/// component identifier (document form) for the round trip.
pub fn signature(data: &[u8]) {
    let req = FuzzRequest::parse(data);
    let slices = req.headers.slices();
    let head = req.head(&slices, test_peer());
    DOC.with(|doc| {
        let Some(policy) = doc
            .as_ref()
            .and_then(|d| d.policies.first()?.signature.as_ref())
        else {
            super::sfv::panic_with("the target's document does not compile");
        };
        // Whatever the client sends: no panic, and an answer.
        let _ = policy.verify_head(&head, NOW);
        bases(&head);
        round_trip(&req, &slices, policy);
    });
}

/// Every signature the request's `Signature-Input` describes: its components as the verifier reads
/// them, and their base, which has one line per component and the parameters last.
fn bases(head: &RequestHead) {
    let inputs: Vec<&str> = head.headers.get_all("signature-input").collect();
    let joined = inputs.join(", ");
    let Ok(dict) = parse_dictionary(&joined) else {
        return;
    };
    for (_, member) in dict.iter().take(8) {
        let Member::InnerList(items, _) = member else {
            continue;
        };
        let Ok(covered) = items
            .iter()
            .take(32)
            .map(ComponentId::from_item)
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        for c in &covered {
            let _ = (c.input_len(head), c.value(head));
        }
        let mut params = String::new();
        crate::signature::sfv::write_member(&mut params, member);
        if let Some(base) = components::signature_base(head, &covered, &params) {
            // A value with a line break would let a request forge another component's line.
            let lines = base.split('\n').count();
            if !params.contains('\n') && !head_has_line_breaks(head) {
                assert_eq!(lines, covered.len() + 1, "base {base:?}");
            }
        }
    }
}

fn head_has_line_breaks(head: &RequestHead) -> bool {
    [head.method, head.authority, head.path]
        .iter()
        .any(|s| s.contains(['\n', '\r']))
        || head
            .headers
            .iter()
            .any(|(k, v)| k.contains('\n') || v.contains('\n'))
}

/// Signs the request as `edgeward sign` does, over the `@sign` components, and verifies it.
fn round_trip(
    req: &FuzzRequest,
    slices: &[(&str, &str)],
    policy: &crate::signature::SignaturePolicy,
) {
    let mut components = Vec::new();
    let mut headers = vec![("host".to_string(), req.authority.clone())];
    for (k, v) in slices {
        match *k {
            "@sign" => components.push(v.to_string()),
            // The verifier would read these along with the ones the signer adds.
            "signature" | "signature-input" => {}
            _ => headers.push((k.to_string(), v.to_string())),
        }
    }
    if !components
        .iter()
        .any(|c| ComponentId::parse_config(c.trim()).is_ok_and(|id| id.name == "@method"))
    {
        components.insert(0, "@method".to_string());
    }
    let Ok(key) = SigningKey::hmac(SECRET) else {
        return;
    };
    let mut params = SignParams::new("k1", key, NOW);
    params.components = components;
    let parsed = ParsedRequest {
        method: req.method.clone(),
        target: req.path.clone(),
        version: "HTTP/1.1".to_string(),
        raw_names: headers.iter().map(|(k, _)| k.clone()).collect(),
        headers,
        raw_values: Vec::new(),
        body: req.body.clone(),
    };
    let Ok(signed) = sign_request(&parsed, &params) else {
        return;
    };
    // The request as it is sent: the signer's Content-Digest in place of any other, then the signature.
    let mut sent: Vec<(String, String)> = parsed
        .headers
        .iter()
        .filter(|(k, _)| signed.content_digest.is_none() || k != "content-digest")
        .cloned()
        .collect();
    if let Some(d) = &signed.content_digest {
        sent.push(("content-digest".into(), d.clone()));
    }
    sent.push(("signature-input".into(), signed.signature_input.clone()));
    sent.push(("signature".into(), signed.signature.clone()));
    let authority = parsed.authority();
    let head = RequestHead {
        method: &parsed.method,
        authority: &authority,
        path: parsed.path(),
        route_name: None,
        tls: Some(TlsVersion::V1_3),
        peer: test_peer(),
        headers: Headers::new(&sent),
    };
    // Past the verifier's bounds (bytes of covered values, components) a refusal is the design.
    let small = sent.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() < 16 * 1024
        && params.components.len() <= 32;
    let verdict = policy.verify_head(&head, NOW);
    if small {
        assert!(
            verdict.is_ok(),
            "signed by edgeward sign, refused by the verifier ({verdict:?}): {:?} over {:?}",
            params.components,
            sent
        );
    }
}
