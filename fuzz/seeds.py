#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, from ../shared/vectors and the repository's documents and tests.

Writes fuzz/seeds/<target>/<sha1> (not kept: the minimized corpora in fuzz/corpus/ start from these
and from what the fuzzer found). Usage: python3 fuzz/seeds.py [VECTORS_DIR]
"""
import hashlib, json, os, re, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "vectors")
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def files(top, ext):
    for d, _, names in os.walk(top):
        for n in sorted(names):
            if n.endswith(ext):
                yield os.path.join(d, n)


short = lambda s: len(s) < 200 and "\n" not in s

# client_ip: addresses, CIDRs, peers; hop counts 0-3, peer first, X-Forwarded-For lines after.
ip_strings = set()
for p in files(os.path.join(VECTORS, "ip"), ".json"):
    ip_strings.update(s for s in strings(load(p)) if short(s) and len(s) < 60)
for s in sorted(ip_strings):
    put("client_ip", b"\x00" + s.encode())
for hops in range(4):
    put("client_ip", bytes([hops]) + b"10.0.0.1:443\n203.0.113.7, 10.0.0.2\n10.0.0.0/8\n192.0.2.1")
    put("client_ip", bytes([hops]) + b"[::1]:8080\n2001:db8::1,::ffff:10.1.2.3\n::ffff:10.0.0.0/104\nfe80::1%eth0")

# sfv: every short string of the signature and digest vectors, and the differential test's values.
sf = set()
for p in list(files(os.path.join(VECTORS, "rfc9421"), ".json")) + list(files(os.path.join(VECTORS, "rfc9530"), ".json")):
    sf.update(s for s in strings(load(p)) if short(s))
diff = open(os.path.join(ROOT, "src/signature/sfv/differential.rs")).read()
sf.update(json.loads('"%s"' % m) for m in re.findall(r'^\s*"((?:[^"\\]|\\.)*)",\s*$', diff, re.M))
for s in sorted(sf):
    for kind in range(3):
        put("sfv", bytes([kind]) + s.encode())

# content_digest: each RFC 9530 case as a request with its field value and body.
cd = load(os.path.join(VECTORS, "rfc9530", "content-digest.json")) or {}
for c in cd.get("cases", []):
    body = c.get("body", "")
    for alg in ("sha-256", "sha-512"):
        if alg in c:
            put("content_digest", f"POST\nexample.com\n/\ncontent-digest: {alg}=:{c[alg]}:\n\n{body}")
    if "sha-256" in c and "sha-512" in c:
        put("content_digest", f"POST\nexample.com\n/\ncontent-digest: sha-256=:{c['sha-256']}:, sha-512=:{c['sha-512']}:\n\n{body}")
for s in sorted(x for x in strings(cd.get("negative_cases", [])) if short(x)):
    put("content_digest", f"POST\nexample.com\n/\ncontent-digest: {s}\n\n{{\"hello\": \"world\"}}")

# http1: the RFC 9421 test request, with CRLF and LF, and small variations.
tr = open(os.path.join(VECTORS, "rfc9421", "test-request.txt"), "rb").read()
put("http1", tr)
put("http1", tr.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
put("http1", b"GET http://example.com:8080/a?b HTTP/1.1\r\nX-A:  v \r\n\tfolded\r\n\r\n")
put("http1", b"POST / HTTP/1.0\nContent-Length: 3\nContent-Length: 3\n\nabc\n")
put("http1", b"GET / HTTP/1.1\nHost: a\n\nbody without length")

# signature: the test request as a FuzzRequest with each vector's Signature-Input, and @sign lines.
head = ["POST", "example.com", "/foo?param=Value&Pet=dog", "date: Tue, 20 Apr 2021 02:07:55 GMT",
        "content-type: application/json",
        "content-digest: sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        "content-length: 18", "example-dict: a=1, b=2;x=1;y=2, c=(a b c)", "x-bin: \xff\xfe",
        "example-header: value, with, lots", "example-header: of, commas"]
sig_inputs = set()
for p in files(os.path.join(VECTORS, "rfc9421"), ".json"):
    for s in strings(load(p)):
        if short(s) and "=(" in s:
            sig_inputs.add(s.split(": ", 1)[1] if s.lower().startswith("signature-input: ") else s)
sig_inputs.add('sig1=("@query-param";name="Pet" "example-dict";key="b" "example-dict";sf "x-bin";bs '
               '"@target-uri" "@request-target" "@scheme" "@query");created=1700000000;keyid="k1"')
for s in sorted(sig_inputs):
    put("signature", "\n".join(head + ["signature-input: " + s, "signature: sig1=:AAAA:"]) + "\n\n{\"hello\": \"world\"}")
for comps in (["@query-param;name=\"Pet\"", "example-dict;key=\"a\""], ["example-dict;sf", "x-bin;bs"],
              ["@target-uri", "@request-target", "@scheme", "@authority", "@path", "@query"],
              ["content-digest", "example-header"]):
    put("signature", "\n".join(head + ["@sign: " + c for c in comps]) + "\n\n{\"hello\": \"world\"}")

# policy: every document of the repository and every JSON vector.
for top in ("policies", "envoy", "tests"):
    for p in files(os.path.join(ROOT, top), ".json"):
        put("policy", open(p, "rb").read())
for p in files(VECTORS, ".json"):
    put("policy", open(p, "rb").read())

# pairs: maps as Envoy serializes them.
def pairs(kv):
    out = struct.pack("<I", len(kv))
    for k, v in kv:
        out += struct.pack("<II", len(k), len(v))
    for k, v in kv:
        out += k + b"\0" + v + b"\0"
    return out
put("pairs", pairs([(b":status", b"200"), (b"x", b"\xff\xfe")]))
put("pairs", pairs([(b":authority", b"example.com"), (b":path", b"/a?b=1"), (b"x-forwarded-for", b"1.2.3.4"),
                    (b"X-Forwarded-For", b"5.6.7.8"), (b"\xc3\xa9", b"caf\xc3\xa9")]))
put("pairs", b"")

# log_record: each policy, both families, a request with the logged headers.
req = (b"GET\nwww.example.com:8443\n/search?q=secret&page=2#frag\nuser-agent: curl/8 \x1b[31m\n"
       b"referer: https://a.example/?token=x\nx-forwarded-for: 203.0.113.9, ::ffff:10.1.2.3, 2002:c000:204::1, junk\n"
       b"x-user-id: alice\nx-real-ip: 2001:db8::7\n\n")
for choice in range(4):
    for fam, addr in ((1, bytes([203, 0, 113, 77])), (2, bytes.fromhex("20010db8000000000000000000000001"))):
        strs = b"".join(bytes([len(s)]) + s for s in (b"r1", b"partner", b"shadow", b"deny", b"ip_denied", b"1.3", b"k1"))
        put("log_record", bytes([choice]) + struct.pack("<IBIH", 1700000000, 1, 5, 403) + bytes([fam]) + addr + strs + req)

# stream: setups, requests and event sequences like the unit tests'.
seqs = [[0, 16, 20], [1], [0, 48, 20], [0, 20, 49], [0, 80, 0x10, 0x27, 5], [0, 17, 4, 40], [0, 0x80, 20, 0xa0, 112],
        [0, 50, 112, 20], [0, 51, 8, 1, 2, 3, 4, 5, 6, 7, 8, 20]]
for setup in (0, 1, 2, 3, 5):
    for kinds in ((0, 0), (1, 2), (3, 4)):
        for seq in seqs:
            put("stream", bytes([setup, 10]) + b"{\"qty\": 3}" + bytes(kinds) + bytes(seq))
# jwks: key sets (mode 0: max_keys, max_bytes, text), the shared-data form (mode 1), Signature-Agent (mode 2).
jose = load(os.path.join(VECTORS, "jose", "rfc8037-ed25519-jwk.json")) or {}
pub = jose.get("public_jwk", {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
x = pub["x"]
sets = [
    {"keys": [pub]},
    {"keys": [dict(pub, kid="k1", use="sig", alg="EdDSA", key_ops=["verify"], nbf=1, exp=2000000000)]},
    {"keys": [jose.get("private_jwk", pub), {"kty": "OKP", "crv": "X25519", "x": x}, dict(pub, kid="")]},
    {"keys": [dict(pub, use="enc"), dict(pub, nbf=5, exp=4), dict(pub, nbf=-1), dict(pub, key_ops="verify")]},
    {"keys": [], "other": {"a": [1.5, -0, 1e3, None, True]}},
]
for v in sets:
    put("jwks", bytes([0, 7]) + struct.pack("<H", 4000) + json.dumps(v).encode())
put("jwks", bytes([0, 7]) + struct.pack("<H", 4000) + ('{"keys":[{"kty":"OKP","kty":"OKP","crv":"Ed25519","x":"%s"}]}' % x).encode())
put("jwks", bytes([0, 7]) + struct.pack("<H", 4000) + b'{"keys":[],"keys":[]}')
put("jwks", bytes([1]) + struct.pack("<HB", 1, 1) + struct.pack("<H", 2) + b"k1" + bytes(range(32)))
for agent in ('sig1="https://agent.example"', 'sig1="https://Agent.Example:443/";type=directory', '"http://bot.example:8080"',
              'sig1="https://agent.example", sig1="https://evil.example"', 'sig1=("https://agent.example")',
              'sig2="https://[::1]:8443/.well-known/http-message-signatures-directory"', 'sig1="https://agent.example";type=jwks'):
    for label in (0, 2):
        put("jwks", bytes([2, label, 0x7f]) + agent.encode() + b"\n\nsignature-input: sig1=(\"@authority\" \"signature-agent\";key=\"sig1\");created=1700000000;keyid=\"k\";tag=\"web-bot-auth\"\nsignature: sig1=:AAAA:\n")
print("seeds in", OUT)
