#!/usr/bin/env python3
"""Writes the benchmark's configuration D (benches/e2e/bench.py: the document, the signed request, the
headers Envoy hands the plugin) as a case for benches/node-host/run.mjs.

    python3 benches/node-host/case.py --cli target/release/edgeward [--case D|Dlease] > d.json
"""

import argparse
import json
import os
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
import bench  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cli", required=True)
    p.add_argument("--case", default="D", choices=["D", "Dlease"],
                   help="D, or Dlease (D with \"lease\": 64 on both limits, as bench.py's experiment)")
    a = p.parse_args()
    allow10 = bench.prefixes(10, 0x5EED_0010)
    doc = bench.document(allow10)
    if a.case == "Dlease":
        for limit in doc["policies"]["api"]["rate_limits"]:
            limit["lease"] = 64
    headers, body = bench.signed_request(types.SimpleNamespace(cli=a.cli), int(time.time()))
    # As Envoy's HTTP/1 codec hands them to the filter (bench's HCM: no request id, no XFF appended).
    host = [(":authority", bench.HOST), (":path", bench.PATH), (":method", "POST"), (":scheme", "http")]
    # Envoy adds X-Forwarded-For (the peer), X-Envoy-Internal and X-Request-Id before the filters run.
    rest = [(k.lower(), v) for k, v in headers if k.lower() != "host"] + [
        ("content-length", str(len(body))), ("x-forwarded-for", "127.0.0.1"), ("x-envoy-internal", "true"),
        ("x-request-id", "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b")]
    case = {
        "configuration": json.dumps(doc, separators=(",", ":")),
        "headers": host + rest,
        "body": body.decode(),
        "response_headers": [(":status", "200"), ("content-length", "3"), ("content-type", "text/plain"),
                             ("date", "Mon, 07 Dec 2026 02:00:00 GMT"), ("server", "envoy")],
        "properties": {"xds\u0000route_name": "api", "source\u0000address": "127.0.0.1:40000"},
        "expect_status": 200,
    }
    json.dump(case, sys.stdout)


if __name__ == "__main__":
    main()
