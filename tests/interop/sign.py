"""Signs a request with PyPI's http-message-signatures (pyauth) and prints the headers to add.

stdin: {"method", "url", "request_target"?, "headers": [[name, value | {"b64"}]], "body_b64"?,
        "key_id", "alg": "hmac-sha256" | "ed25519", "secret_b64" | "private_key_pem",
        "components": ["@method", "x-dict;key=\"a\"", ...], "created", "expires"?, "nonce"?, "tag"?,
        "label"?, "include_alg"? (default true), "content_digest"?: "sha-256" | "sha-512",
        "sf_types"?: {"x-dict": "dictionary"}}
stdout: {"library", "headers": [[name, value]] (Content-Digest when made, Signature-Input, Signature),
         "base"} or, when the library refuses, {"library", "error"} (exit 1).
With "content_digest", the library computes Content-Digest over the body and covers it.
stdin may also be an array of such objects: stdout is then the array of results (exit 0), so that one
interpreter start serves many requests.
"""

import base64
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import message  # noqa: E402
from message import hms  # noqa: E402


def when(ts):
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def sign(spec):
    message.register_sf_types(spec)
    alg = message.ALGORITHMS[spec["alg"]]
    if spec["alg"] == "hmac-sha256":
        key = base64.b64decode(spec["secret_b64"])
    else:
        key = spec["private_key_pem"].encode()
    digest = spec.get("content_digest")
    digest_class = type("Digest", (hms.ContentDigest,), {"algorithm": digest or "sha-256"})
    signer_class = type("Signer", (hms.HTTPMessageSigner,), {"content_digest_class": digest_class})
    signer = signer_class(
        signature_algorithm=alg,
        key_resolver=hms.MappingKeyResolver(public_keys={}, private_keys={spec["key_id"]: key}),
    )
    request = message.Request(spec)
    before = {name.lower() for name in request.headers}
    try:
        prepared = signer.prepare(
            request,
            key_id=spec["key_id"],
            created=when(spec["created"]),
            expires=when(spec.get("expires")),
            nonce=spec.get("nonce"),
            tag=spec.get("tag"),
            label=spec.get("label", "sig1"),
            include_alg=spec.get("include_alg", True),
            covered_component_ids=message.component_ids(spec),
            body=message.body(spec) if digest else None,
        )
        signature = alg(private_key=key).sign(prepared.signature_base)
        signer.apply(request, prepared, signature)
    except hms.HTTPMessageSignaturesException as e:
        return {"library": message.LIBRARY, "error": str(e)}
    added = [
        [name, value]
        for name, value in request.headers.items()
        if name.lower() not in before or name.lower() in ("signature", "signature-input")
    ]
    return {"library": message.LIBRARY, "headers": added, "base": prepared.signature_base.decode()}


def main():
    spec = message.read_spec()
    if isinstance(spec, list):
        message.emit([sign(s) for s in spec])
        return 0
    result = sign(spec)
    message.emit(result)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
