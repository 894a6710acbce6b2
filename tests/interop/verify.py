"""Verifies a signed request with PyPI's http-message-signatures (pyauth).

stdin: the request as for sign.py (with its Signature-Input and Signature headers), plus "key_id",
       "alg", "secret_b64" | "public_key_pem", "max_age"? (seconds; null: no age limit, for the RFC's
       examples), "label"? (selects one of several signatures), "check_body"? (default true: when a body
       is given, the signed Content-Digest must match it).
stdout: {"library", "ok": true, "label", "covered": {component: value}, "parameters"} or
        {"library", "ok": false, "error"}. Exit 0 either way; non-zero only when the driver failed.
stdin may also be an array of such objects: stdout is then the array of results.
"""

import base64
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import message  # noqa: E402
from message import hms  # noqa: E402


def verify(spec):
    message.register_sf_types(spec)
    alg = message.ALGORITHMS[spec["alg"]]
    if spec["alg"] == "hmac-sha256":
        key = base64.b64decode(spec["secret_b64"])
    else:
        key = spec["public_key_pem"].encode()
    verifier = hms.HTTPMessageVerifier(
        signature_algorithm=alg,
        key_resolver=hms.MappingKeyResolver(public_keys={spec["key_id"]: key}, private_keys={}),
    )
    max_age = spec.get("max_age", 300)
    body = message.body(spec)
    label = spec.get("label")
    if label is not None:
        # Labels are not signed; the library asks for a tag unless told that a label is enough.
        verifier.allow_label_only_selection = True
    try:
        results = verifier.verify(
            message.Request(spec),
            max_age=None if max_age is None else datetime.timedelta(seconds=max_age),
            expect_label=label,
            body=body if (body and spec.get("check_body", True)) else None,
        )
    except (hms.InvalidSignature, hms.HTTPMessageSignaturesException) as e:
        return {"library": message.LIBRARY, "ok": False, "error": f"{type(e).__name__}: {e}"}
    r = results[0]
    return {
        "library": message.LIBRARY,
        "ok": True,
        "label": r.label,
        "covered": r.covered_components,
        "parameters": r.parameters,
    }


def main():
    spec = message.read_spec()
    message.emit([verify(s) for s in spec] if isinstance(spec, list) else verify(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
