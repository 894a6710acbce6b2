"""The request JSON shared by sign.py and verify.py (see tests/e2e_interop.rs), read into the objects
http-message-signatures 3.0.0 takes: a message with `method`, `url`, optional `request_target`, and
`headers` whose `items()` keeps every field line in order. A header value is a string, or
{"b64": ...} for bytes that are not UTF-8; the library reads values as Latin-1 text (its documented
form for raw bytes), so every value is given to it that way.

Run with `python3 -I` and EDGEWARD_INTEROP_SITE naming the pip --target directory: nothing from the
user's environment or site-packages is imported.
"""

import base64
import json
import os
import sys

SITE = os.environ.get("EDGEWARD_INTEROP_SITE")
if not SITE:
    sys.exit("EDGEWARD_INTEROP_SITE is not set (the pip --target directory)")
sys.path.insert(0, SITE)

import importlib.metadata  # noqa: E402

import http_message_signatures as hms  # noqa: E402
from http_message_signatures import algorithms  # noqa: E402

LIBRARY = "http-message-signatures " + importlib.metadata.version("http-message-signatures")
ALGORITHMS = {"hmac-sha256": algorithms.HMAC_SHA256, "ed25519": algorithms.ED25519}


class Headers:
    """Field lines in order; assignment replaces every line of that name (as the library expects)."""

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def items(self):
        return list(self.pairs)

    def __iter__(self):
        return iter(dict.fromkeys(name for name, _ in self.pairs))

    def __contains__(self, name):
        return any(n.lower() == name.lower() for n, _ in self.pairs)

    def __setitem__(self, name, value):
        self.__delitem__(name)
        self.pairs.append((name, value))

    def __delitem__(self, name):
        self.pairs = [(n, v) for n, v in self.pairs if n.lower() != name.lower()]


class Request:
    def __init__(self, spec):
        self.method = spec["method"]
        self.url = spec["url"]
        if spec.get("request_target") is not None:
            self.request_target = spec["request_target"]
        self.headers = Headers((name, field_text(value)) for name, value in spec["headers"])


def field_text(value):
    if isinstance(value, dict):
        return base64.b64decode(value["b64"]).decode("latin-1")
    return value.encode("utf-8").decode("latin-1")


def body(spec):
    return base64.b64decode(spec.get("body_b64") or "")


def component_ids(spec):
    """Document form (`x-dict;key="a"`) to the library's serialized String items (`"x-dict";key="a"`)."""
    out = []
    for c in spec["components"]:
        name, sep, params = c.partition(";")
        out.append('"' + name + '"' + sep + params)
    return out


def register_sf_types(spec):
    # The library serializes `;sf` by the field's registered type (RFC 9421 2.1.1: the signer knows it);
    # a field it has no type for is refused. Tests name their fields' types.
    import http_sf

    # http_sf.retrofit is the table itself (the package re-exports it under the module's name).
    for name, kind in (spec.get("sf_types") or {}).items():
        http_sf.retrofit[name.lower()] = kind


def read_spec():
    return json.load(sys.stdin)


def emit(obj):
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
