#!/usr/bin/env python3
"""End-to-end benchmark of edgeward in Envoy, side by side with bare Envoy, Envoy's native filters and a
no-op wasm filter (issue 9). Run through scripts/bench.sh, which builds and installs what this needs.

One Envoy per configuration, all started at once and pinned to CPU 0 (--concurrency 1); the load generator
is pinned to CPU 1. The configurations are measured in interleaved rounds (warm-up, then A B C D ..., then
... D C B A, alternating), and each figure is reported as the median over the rounds with its range.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

HOST = "bench.example"
PATH = "/api/orders?id=42&currency=EUR"
USER_AGENT = "edgeward-bench/1"
KEY_ID = "bench-client"
# Fixed, public benchmark secrets (32 bytes each): nothing here protects anything.
SIG_SECRET = base64.b64encode(b"edgeward benchmark hmac secret!!").decode()
WRONG_SECRET = base64.b64encode(b"not the key the client signs with").decode()
LOG_KEY = base64.b64encode(b"edgeward benchmark pseudonym key").decode()
# The signature's `created` is the start of the run; it stays valid for this long (the run takes < 10 min).
MAX_AGE_S = 3600
# D-rls: one more limit, counted by the rate limit service (rls-dev) and never reached.
RLS_DOMAIN = "edgeward"
RLS_LIMIT = "per-client-remote"
# D-rls-nonce: every request carries a fresh nonce, checked locally and at the rate limit service. Each
# throughput run gets its own batch of requests, signed just before it with `created` = then; nonces stay
# live for NONCE_MAX_AGE_S, and the next batch waits until the last one has expired, so at most one
# batch is live in the nonce table (65,536 entries in buckets of 16: a run of a few seconds stays far
# from full). A run is at most NONCE_SECONDS long, so that it ends within the signatures' age.
NONCE_MAX_AGE_S = 10
NONCE_SECONDS = 3
# Requests signed per second of a run: well above what D-rls sustains on one core (~10k/s).
NONCE_RATE_CAP = 25_000

# ---------------------------------------------------------------------------------------------------------
# Address lists


class XorShift:
    """Deterministic xorshift64*: the same lists on every run and machine (as benches/ip.rs)."""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        s = self.s
        s ^= s >> 12
        s ^= (s << 25) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 27
        self.s = s
        return (s * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF


def prefixes(n, seed):
    """n distinct IPv4 prefixes (/16../32, like real block lists) outside 127/8 and 224/3, plus the
    client's 127.0.0.1/32, sorted by address as lists usually are (RBAC scans them in this order)."""
    rng = XorShift(seed)
    seen = {(0x7F000001, 32)}
    while len(seen) < n:
        plen = 16 + rng.next() % 17
        addr = (rng.next() >> 32) & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if addr >> 24 in (0, 127) or addr >> 29 == 7:
            continue
        seen.add((addr, plen))
    return [ipaddress.ip_network(p) for p in sorted(seen)]


# ---------------------------------------------------------------------------------------------------------
# Policy documents and Envoy filters


def document(allow, *, secret=SIG_SECRET, limit=1_000_000_000, window_s=1, https="reject", proxies=True):
    """The D policy document: every check on; the E variants change one thing."""
    https_section = {"action": https, "hsts": {"max_age_s": 31536000}}
    if https == "redirect":
        https_section["redirect_status"] = 301
    return {
        "client_ip": {"trusted_proxies": ["127.0.0.1/32"] if proxies else []},
        "ip_lists": {"allowed": [str(n) for n in allow]},
        "policies": {
            "api": {
                "https": https_section,
                "ip": {"allow": ["@allowed"]},
                "signature": {
                    "keys": [{"id": KEY_ID, "alg": "hmac-sha256", "secret": {"base64": secret}}],
                    "components": ["@method", "@authority", "@path", "@query", "content-digest"],
                    "max_age_s": MAX_AGE_S,
                    "nonce": "optional",
                },
                "rate_limits": [
                    {"name": "per-client", "key": "client_ip", "limit": limit, "window_s": window_s},
                    {"name": "per-key", "key": "key_id", "limit": 1_000_000_000, "window_s": 1},
                ],
                "log": {
                    "pseudonym_key": {"base64": LOG_KEY},
                    "pseudonymize": ["client_ip", "key_id"],
                    "headers": ["user-agent"],
                },
            }
        },
        "routes": [{"route": "api", "policy": "api"}],
    }


def rls_document(allow):
    """D's document with one more limit on the rate limit service, keyed like D's per-client limit."""
    doc = document(allow)
    doc["rls"] = {"cluster": "ratelimit", "domain": RLS_DOMAIN, "timeout_ms": 50, "failure_mode": "deny"}
    doc["policies"]["api"]["rate_limits"].append(
        {"name": RLS_LIMIT, "key": "client_ip", "limit": 1_000_000_000, "window_s": 1, "backend": "rls"})
    return doc


def rls_nonce_document(allow):
    """D-rls with a nonce required in every signature and checked cluster-wide: the nonce goes to the rate
    limit service as the first descriptor of the request's one call (README "Running a fleet")."""
    doc = rls_document(allow)
    sig = doc["policies"]["api"]["signature"]
    sig["nonce"] = "required"
    sig["nonce_scope"] = "cluster"
    sig["max_age_s"] = NONCE_MAX_AGE_S
    return doc


def rls_limits():
    """The service's config (Limitador's format, as README "Descriptors" and "Running a fleet" show): the
    remote limit, never reached, at descriptor 0 (D-rls) or 1 (D-rls-nonce, after the nonce's); the nonce,
    1 per key id and nonce for the signatures' age."""
    never = {"namespace": RLS_DOMAIN, "max_value": 1_000_000_000, "seconds": 1}
    return [
        {**never, "name": RLS_LIMIT, "conditions": [f"descriptors[0].limit == '{RLS_LIMIT}'"],
         "variables": ["descriptors[0].key"]},
        {**never, "name": f"{RLS_LIMIT}-after-nonce",
         "conditions": [f"size(descriptors) > 1 && descriptors[1].limit == '{RLS_LIMIT}'"],
         "variables": ["descriptors[1].key"]},
        {"namespace": RLS_DOMAIN, "name": "edgeward.nonce", "max_value": 1, "seconds": NONCE_MAX_AGE_S + 1,
         "conditions": ["descriptors[0].limit == 'edgeward.nonce'"],
         "variables": ["descriptors[0].key", "descriptors[0].nonce"]},
    ]


def rls_cluster(port):
    """The `ratelimit` cluster of D-rls: HTTP/2 (gRPC), to the rate limit service on 127.0.0.1."""
    return {
        "name": "ratelimit",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "ratelimit",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


BUFFER = {
    "name": "envoy.filters.http.buffer",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 1048576,
    },
}
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
HSTS = [
    {
        "header": {"key": "strict-transport-security", "value": "max-age=31536000"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
]
EDGEWARD_LOG = [
    {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/null",
            "log_format": {"text_format_source": {"inline_string": "%FILTER_STATE(wasm.edgeward.log:PLAIN)%\n"}},
        },
    }
]


def wasm_filter(path, vm_id, configuration):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": vm_id,
                "root_id": vm_id,
                # As in envoy/envoy.yaml: lets edgeward hold the headers while it reads the body.
                "allow_on_headers_stop_iteration": True,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration},
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": path}},
                },
            },
        },
    }


def rbac(allow):
    principals = [
        {"remote_ip": {"address_prefix": str(n.network_address), "prefix_len": n.prefixlen}} for n in allow
    ]
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {"allowed": {"permissions": [{"any": True}], "principals": principals}},
            },
        },
    }


LOCAL_RATELIMIT = {
    "name": "envoy.filters.http.local_ratelimit",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "bench_rl",
        "token_bucket": {"max_tokens": 1000000000, "tokens_per_fill": 1000000000, "fill_interval": "1s"},
        "filter_enabled": {"runtime_key": "rl_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"runtime_key": "rl_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
    },
}


def configurations(a, rls_port):
    """(name, description, filters, access log, response headers, expected statuses of two requests), the
    host-call-count configuration, the 100k prefixes, and the extra clusters per configuration."""
    allow10 = prefixes(10, 0x5EED_0010)
    allow100k = prefixes(100_000, 0x5EED_100000)
    deny10 = [ipaddress.ip_network("192.0.2.0/24")] + [n for n in allow10 if not n.overlaps(ipaddress.ip_network("127.0.0.0/8"))]

    def chain(*filters):
        # The same frame everywhere (see envoy.tmpl.yaml): buffer → the configuration's filters → buffer →
        # router. The second buffer is the one edgeward's deployment needs (it holds the headers while
        # edgeward holds the body); the first keeps head-time denials from closing the connection.
        return [BUFFER, *filters, BUFFER, ROUTER]

    def ew(doc, wasm=a.wasm):
        return chain(wasm_filter(wasm, "edgeward", json.dumps(doc, separators=(",", ":"))))

    d = document(allow10)
    # BENCH_ALT_WASM: another build of edgeward on D's document, measured in the same rounds as D, so a
    # change to the request path is priced side by side (Dalt − D) instead of across runs.
    alt = [("Dalt", f"D with the build {os.path.basename(a.wasm_alt)}", ew(d, a.wasm_alt), EDGEWARD_LOG, [], (200, 200))] if a.wasm_alt else []
    return [
        ("A", "bare Envoy", chain(), [], [], (200, 200)),
        # The same again: A2 − A is what a difference between two identical configurations measures
        # (the noise floor beside every side-by-side figure, Dalt − D above all).
        ("A2", "bare Envoy again (A/A)", chain(), [], [], (200, 200)),
        ("B", "RBAC 10 CIDRs + local_ratelimit + HSTS header", chain(rbac(allow10), LOCAL_RATELIMIT), [], HSTS, (200, 200)),
        ("C", "no-op Rust wasm filter", chain(wasm_filter(a.noop, "noop", "")), [], [], (200, 200)),
        ("D", "edgeward, allow path, every check on", ew(d), EDGEWARD_LOG, [], (200, 200)),
        ("D-rls", "D + one limit on the rate limit service (rls-dev, CPU 1)", ew(rls_document(allow10)), EDGEWARD_LOG, [], (200, 200)),
        ("D-rls-nonce", "D-rls + a fresh nonce per request, checked at the service too (nonce_scope cluster)", ew(rls_nonce_document(allow10)), EDGEWARD_LOG, [], (200, 200)),
        ("D100k", "D with a 100,000-prefix allow list", ew(document(allow100k)), EDGEWARD_LOG, [], (200, 200)),
        ("B100k", "B with the same 100,000 prefixes in RBAC", chain(rbac(allow100k), LOCAL_RATELIMIT), [], HSTS, (200, 200)),
        ("E403", "deny: client not in the IP allow list", ew(document(deny10)), EDGEWARD_LOG, [], (403, 403)),
        ("E401", "deny: signature does not verify", ew(document(allow10, secret=WRONG_SECRET)), EDGEWARD_LOG, [], (401, 401)),
        ("E429", "deny: rate limit reached", ew(document(allow10, limit=1, window_s=31536000)), EDGEWARD_LOG, [], (200, 429)),
        ("E301", "redirect: X-Forwarded-Proto not trusted", ew(document(allow10, https="redirect", proxies=False)), EDGEWARD_LOG, [], (301, 301)),
    ] + alt + experiments(d, ew) + parts(d, ew, a.host_calls), ("Dhc", "D with the host-call-count build", ew(d, a.wasm_hc), EDGEWARD_LOG, [], (200, 200)), allow100k, {
        "D-rls": [rls_cluster(rls_port)],
        "D-rls-nonce": [rls_cluster(rls_port)],
    }


# Controlled experiments of issue 25 on D's document (not run by default: BENCH_EXPERIMENTS=1, or name them
# in BENCH_ONLY); each is read as its difference from D in the same rounds, beside A2 − A.
EXPERIMENTS = [
    # The host calls a user may not need: `"headers": false` on both limits (an option that exists) drops
    # RateLimit-Policy and RateLimit from allowed responses: two header writes fewer per request.
    ("Dnohdr", "D without RateLimit headers (\"headers\": false on both limits)", ("no_headers",)),
    # `"upstream_key_id": false` on the signature: the verified key id is not published for the upstream
    # (x-edgeward-key-id): one filter-state write fewer per request.
    ("Dnokid", "D without the key id for the upstream (\"upstream_key_id\": false)", ("no_key_id",)),
    # `"lease": 64` on both limits: the worker takes 64 tokens per compare-and-swap and serves the key's next
    # requests from them, so 63 of 64 requests make no rate-limit host call (4 fewer than D).
    ("Dlease", "D with token leases (\"lease\": 64 on both limits)", ("lease",)),
    # `"status": false` in the log section: the record leaves the response status out (Envoy's access log has
    # %RESPONSE_CODE%), and the plugin does not read `:status`: one host call fewer per request.
    ("Dnostatus", "D without the status in the record (log \"status\": false)", ("no_status",)),
    # Every option above at once: what D's checks cost with the fewest host calls edgeward can make (9.06).
    ("Dlean", "Dlease with every optional host call off (no RateLimit headers, key id, status)",
     ("lease", "no_headers", "no_key_id", "no_status")),
]


def set_option(api, option):
    """Sets one of the experiments' document options on D's policy `api`."""
    if option == "no_headers":
        for limit in api["rate_limits"]:
            limit["headers"] = False
    elif option == "lease":
        for limit in api["rate_limits"]:
            limit["lease"] = 64
    elif option == "no_key_id":
        api["signature"]["upstream_key_id"] = False
    elif option == "no_status":
        api["log"]["status"] = False
    else:
        raise ValueError(option)


def experiments(d, ew):
    out = []
    for name, what, options in EXPERIMENTS:
        doc = json.loads(json.dumps(d))
        for option in options:
            set_option(doc["policies"]["api"], option)
        out.append((name, what, ew(doc), EDGEWARD_LOG, [], (200, 200)))
    return out


# Configurations whose every request must be signed anew (a fresh nonce each): driven by nonce_script.
NONCE_CONFIGS = {"D-rls-nonce"}
# Configurations that call the rate limit service.
RLS_CONFIGS = {"D-rls", "D-rls-nonce"}


# Where D's cost goes (not run by default: BENCH_PARTS=1, or name them in BENCH_ONLY): edgeward with one
# kind of check at a time, and with none (the plugin's fixed cost: read the request, select the route,
# the record as filter state, the counter). Each part minus P0 is that check's own cost.
# Measured again for latency at half of D's throughput (below every one's knee); Dalt too when there is one
# (BENCH_ALT_WASM), so that a build's cold per-request cost is priced beside D's; Phost and Dlean when they
# run (BENCH_PARTS, BENCH_EXPERIMENTS), so that D's cold cost splits into its host calls (Phost − C) and its
# own work (D − Phost), and the options' saving is priced where nothing queues too.
LOW_RATE_CONFIGS = ["A", "A2", "C", "Phost", "D", "Dlean", "Dalt"]
# Latency users would measure: LOW_RATE_CONFIGS at this fixed low rate, where nothing queues (BENCH_FIXED_RATE
# measures at another: how the added latency changes with the idle time between requests).
FIXED_RATE = int(os.environ.get("BENCH_FIXED_RATE", "1000"))

PARTS = [
    ("P0", "edgeward, a policy with no checks", ()),
    ("Phttps", "edgeward, HTTPS only (+ HSTS)", ("https",)),
    ("Pip", "edgeward, IP allow list (10 CIDRs) only", ("ip",)),
    ("Psig", "edgeward, signature + Content-Digest only", ("signature",)),
    ("Prl", "edgeward, the two rate limits only", ("rate_limits",)),
    ("Plog", "edgeward, the log section (2 pseudonyms) + access log only", ("log",)),
    # Not edgeward: benches/host-calls-filter makes D's host calls (same arguments and sizes) and does
    # nothing else. Phost − C is what D's input and output through the ABI cost; D − Phost is edgeward's
    # own work (parsing, checks, crypto, the record).
    ("Phost", "D's host calls alone, no policy work (benches/host-calls-filter) + access log", None),
]


def parts(d, ew, host_calls):
    out = []
    for name, what, keep in PARTS:
        if keep is None:
            out.append((name, what, ew(d, host_calls), EDGEWARD_LOG, [], (200, 200)))
            continue
        doc = json.loads(json.dumps(d))
        policy = doc["policies"]["api"]
        for section in ("https", "ip", "signature", "rate_limits", "log"):
            if section not in keep:
                policy.pop(section, None)
        if "signature" not in keep:
            # A key_id limit needs a verified signature; a header key is the same kind of keyed bucket.
            for limit in policy.get("rate_limits", []):
                if limit["key"] == "key_id":
                    limit["key"] = "header:user-agent"

        out.append((name, what, ew(doc), EDGEWARD_LOG if "log" in keep else [], [], (200, 200)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Processes


_HANDED_OUT = set()


def free_port():
    """A port nothing listens on now and that this run has not handed out before: the kernel may give a
    just-closed port 0 binding's port again, and ~40 are taken before the Envoys bind them (a repeat once
    made two configurations share one port: one Envoy failed to listen, the other answered for both)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def proc_cpu_ticks(pid):
    """utime + stime of a process (all its threads) in clock ticks (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Envoy:
    def __init__(self, a, work, name, filters, access_log, response_headers, clusters, bootstrap_extra=""):
        self.name = name
        self.port, self.admin = free_port(), free_port()
        with open(os.path.join(HERE, "envoy.tmpl.yaml")) as f:
            text = f.read()
        for key, value in {
            "@ADMIN_PORT@": str(self.admin),
            "@PORT@": str(self.port),
            "@NAME@": name.lower(),
            "@ACCESS_LOG@": json.dumps(access_log),
            "@HTTP_FILTERS@": json.dumps(filters),
            "@RESPONSE_HEADERS@": json.dumps(response_headers),
            "@CLUSTERS@": json.dumps(clusters),
            "@BOOTSTRAP_EXTRA@": bootstrap_extra,
        }.items():
            text = text.replace(key, value)
        self.config = os.path.join(work, f"{name}.yaml")
        with open(self.config, "w") as f:
            f.write(text)
        self.log = os.path.join(work, f"{name}.log")
        self.proc = subprocess.Popen(
            ["taskset", "-c", a.envoy_cpu, a.envoy, "-c", self.config, "--concurrency", "1",
             "--disable-hot-restart", "-l", "warning", "--log-path", self.log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout=180):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"Envoy {self.name} exited:\n{tail(self.log)}")
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=2).read().strip() == b"LIVE":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"Envoy {self.name} not ready after {timeout}s:\n{tail(self.log)}")

    def stats(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats", timeout=10).read().decode()
        out = {}
        for line in text.splitlines():
            k, _, v = line.partition(": ")
            if v.strip().isdigit():
                out[k] = int(v)
        return out

    def requests(self, stats=None):
        return (stats or self.stats()).get(f"http.{self.name.lower()}.downstream_rq_total", 0)

    def cpu_ticks(self):
        return proc_cpu_ticks(self.proc.pid)

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        stop_process(self.proc)


class RlsServer:
    """The development rate limit service (rls-dev, --release, counters in memory) for D-rls, pinned to the
    load generator's CPU: its work is not Envoy's, and it must not take Envoy's CPU."""

    def __init__(self, a, work, port):
        self.port = port
        limits = os.path.join(work, "rls-limits.json")
        with open(limits, "w") as f:
            json.dump(rls_limits(), f)
        self.log = os.path.join(work, "rls-dev.log")
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", a.load_cpu, a.rls_dev, "--limits", limits, "--listen", f"127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout=30):
        # It prints "listening on ADDR" once bound.
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"rls-dev exited:\n{tail(self.log)}")
            if "listening on" in tail(self.log):
                return
            time.sleep(0.1)
        raise SystemExit(f"rls-dev not listening after {timeout}s:\n{tail(self.log)}")

    def cpu_ticks(self):
        return proc_cpu_ticks(self.proc.pid)

    def stop(self):
        stop_process(self.proc)


def stop_process(proc):
    """Stops a process we started, by its pid: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path, n=30):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def cpu_busy(cpu):
    """(busy, total) jiffies of one CPU from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                return sum(v[:8]) - idle, sum(v[:8])
    return 0, 0


# ---------------------------------------------------------------------------------------------------------
# The request


def signed_request(a, created):
    body = ('{"order":{"id":42,"currency":"EUR","items":[' + '"' + "x" * 150 + '"]},"note":"').encode()
    body += b"p" * (256 - len(body) - 2) + b'"}'
    assert len(body) == 256
    raw = (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
           f"User-Agent: {USER_AGENT}\r\nX-Forwarded-Proto: https\r\n\r\n").encode() + body
    out = subprocess.run(
        [a.cli, "sign", "--key-id", KEY_ID, "--secret-base64", SIG_SECRET, "--components",
         "@method,@authority,@path,@query,content-digest", "--created", str(created), "--scheme", "https",
         "--print", "headers", "--request", "-"],
        input=raw, capture_output=True, check=True).stdout.decode()
    headers = [("Host", HOST), ("Content-Type", "application/json"), ("User-Agent", USER_AGENT),
               ("X-Forwarded-Proto", "https")]
    for line in out.splitlines():
        if line.strip():
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
    return headers, body


COMPONENTS = ("@method", "@authority", "@path", "@query", "content-digest")


def nonce_signatures(headers, body, created, first, n):
    """(Signature-Input, Signature) of the benchmark's request for nonces first..first+n-1, signed here with
    hmac-sha256 (the CLI would take a process per request); check_nonce_signer holds this to the CLI."""
    digest = dict((k.lower(), v) for k, v in headers)["content-digest"]
    path, _, query = PATH.partition("?")
    values = {"@method": "POST", "@authority": HOST, "@path": path, "@query": "?" + query, "content-digest": digest}
    head = "".join(f'"{c}": {values[c]}\n' for c in COMPONENTS)
    inner = "(" + " ".join(f'"{c}"' for c in COMPONENTS) + ")"
    key = base64.b64decode(SIG_SECRET)
    out = []
    for i in range(first, first + n):
        params = f'{inner};created={created};nonce="n{i:08d}";keyid="{KEY_ID}"'
        mac = hmac.new(key, (head + f'"@signature-params": {params}').encode(), hashlib.sha256).digest()
        out.append((f"sig1={params}", f"sig1=:{base64.b64encode(mac).decode()}:"))
    return out


def with_signature(headers, sig):
    return [(k, v) for k, v in headers if k.lower() not in ("signature-input", "signature")] + [
        ("Signature-Input", sig[0]), ("Signature", sig[1])]


def check_nonce_signer(a, headers, body):
    """The signer above and `edgeward sign` agree on one request with a nonce."""
    created = int(time.time())
    raw = (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
           f"User-Agent: {USER_AGENT}\r\nX-Forwarded-Proto: https\r\n\r\n").encode() + body
    out = subprocess.run(
        [a.cli, "sign", "--key-id", KEY_ID, "--secret-base64", SIG_SECRET, "--components", ",".join(COMPONENTS),
         "--created", str(created), "--nonce", "n00000007", "--scheme", "https", "--print", "headers",
         "--request", "-"], input=raw, capture_output=True, check=True).stdout.decode()
    cli = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines() if line.strip())}
    mine = nonce_signatures(headers, body, created, 7, 1)[0]
    if (cli["signature-input"], cli["signature"]) != mine:
        raise SystemExit(f"the benchmark's nonce signer disagrees with edgeward sign:\n{cli}\n{mine}")


class NonceBatches:
    """Fresh nonces for D-rls-nonce: each batch is signed with `created` = now, after the previous batch's
    nonces have expired (see NONCE_MAX_AGE_S)."""

    def __init__(self, headers, body):
        self.headers, self.body = headers, body
        self.next = 0
        self.expires = 0.0

    def take_now(self):
        """One request signed now, outside the batches (checks before the measurement)."""
        sig = nonce_signatures(self.headers, self.body, int(time.time()), self.next, 1)[0]
        self.next += 1
        self.expires = max(self.expires, time.time() + NONCE_MAX_AGE_S + 1)
        return sig

    def take(self, n):
        wait = self.expires - time.time()
        if wait > 0:
            time.sleep(wait)
        created = int(time.time())
        self.expires = created + NONCE_MAX_AGE_S + 1
        sigs = nonce_signatures(self.headers, self.body, created, self.next, n)
        self.next += n
        return sigs

    def script(self, work, n):
        """A wrk script that sends each of n freshly signed requests once, in turn."""
        sigs = self.take(n)
        # The signatures in a file of their own, read by the script at load: as Lua constants, tens of
        # thousands of them exceed LuaJIT's limits, and wrk then sends its default request (unsigned).
        table = os.path.join(work, "nonce-signatures.txt")
        with open(table, "w") as f:
            for si, sg in sigs:
                f.write(f"{si}\t{sg}\n")
        path = os.path.join(work, "request-nonce.lua")
        fixed = [(k, v) for k, v in self.headers if k.lower() not in ("signature-input", "signature")]
        with open(path, "w") as f:
            f.write("local inputs, sigs = {}, {}\n")
            f.write(f'for line in io.lines("{lua_escape(table)}") do\n'
                    '  local si, sg = line:match("^([^\\t]*)\\t(.*)$")\n'
                    '  inputs[#inputs + 1] = si; sigs[#sigs + 1] = sg\nend\n')
            f.write(f"if #inputs ~= {len(sigs)} then error('nonce signatures: read ' .. #inputs) end\n")
            f.write(f"local n, i = {len(sigs)}, 0\n")
            f.write(f'local body = "{lua_escape(self.body.decode())}"\n')
            f.write("local headers = {}\n")
            for k, v in fixed:
                f.write(f'headers["{lua_escape(k)}"] = "{lua_escape(v)}"\n')
            # Past the last request the script would repeat one: a replay, answered 401 and caught by the
            # statuses check. Requests are sized so that this does not happen.
            f.write("request = function()\n  i = i + 1\n  local j = ((i - 1) % n) + 1\n"
                    '  headers["Signature-Input"] = inputs[j]\n  headers["Signature"] = sigs[j]\n'
                    '  return wrk.format("POST", nil, headers, body)\nend\n')
        return path


def send_once(port, headers, body):
    """One request over a fresh connection; returns (status, headers)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.putrequest("POST", PATH, skip_host=True, skip_accept_encoding=True)
    for k, v in headers:
        c.putheader(k, v)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}


def lua_escape(s):
    return s.replace("\\", "\\\\").replace('"', '\\"')


def wrk_script(work, headers, body):
    path = os.path.join(work, "request.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f'wrk.body = "{lua_escape(body.decode())}"\n')
        for k, v in headers:
            f.write(f'wrk.headers["{lua_escape(k)}"] = "{lua_escape(v)}"\n')
    return path


# ---------------------------------------------------------------------------------------------------------
# Measurements


def run_wrk(a, envoy, script, seconds, rls=None):
    """Maximum throughput: req/s, Envoy CPU-µs per request, the other processes' share of CPU 0, and the
    rate limit service's CPU-µs per request when `rls` serves this Envoy."""
    s0 = envoy.stats()
    r0 = rls.cpu_ticks() if rls else 0
    c0, b0 = envoy.cpu_ticks(), cpu_busy(a.envoy_cpu)
    t0 = time.time()
    out = subprocess.run(
        ["taskset", "-c", a.load_cpu, "wrk", "-t1", f"-c{a.connections}", f"-d{max(1, round(seconds))}s", "-s", script,
         f"http://127.0.0.1:{envoy.port}{PATH}"], capture_output=True, text=True, check=True).stdout
    t1 = time.time()
    c1, b1 = envoy.cpu_ticks(), cpu_busy(a.envoy_cpu)
    r1 = rls.cpu_ticks() if rls else 0
    s1 = envoy.stats()
    n = envoy.requests(s1) - envoy.requests(s0)
    cx = s1.get(f"http.{envoy.name.lower()}.downstream_cx_total", 0) - s0.get(f"http.{envoy.name.lower()}.downstream_cx_total", 0)
    hz = os.sysconf("SC_CLK_TCK")
    cpu_s = (c1 - c0) / hz
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rps = float(m.group(1)) if m else n / (t1 - t0)
    busy, total = b1[0] - b0[0], b1[1] - b0[1]
    other = max(0.0, busy / total - (c1 - c0) / total) if total else 0.0
    errors = re.search(r"Socket errors:.*", out)
    rls_us = (r1 - r0) / hz * 1e6 / n if rls and n else float("nan")
    return {"rps": rps, "cpu_us": cpu_s * 1e6 / n if n else float("nan"), "requests": n,
            "connections": cx, "other_cpu0": other, "errors": errors.group(0) if errors else None,
            "rls_cpu_us": rls_us}


def run_oha(a, envoy, headers, body, rate, seconds, work):
    body_file = os.path.join(work, "body.bin")
    with open(body_file, "wb") as f:
        f.write(body)
    cmd = ["taskset", "-c", a.load_cpu, a.oha, "--no-tui", "--output-format", "json", "-c", str(a.connections),
           "-q", str(rate), "-z", f"{int(seconds * 1000)}ms", "--http-version", "1.1", "-m", "POST", "-D", body_file]
    for k, v in headers:
        if k.lower() == "host":
            cmd += ["--host", v]
        else:
            cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{envoy.port}{PATH}")
    # Envoy's CPU per request at this rate too: below saturation a worker sleeps between requests, and what a
    # request then costs (cold caches) is what its latency pays.
    s0 = envoy.stats()
    c0 = envoy.cpu_ticks()
    out = subprocess.run(cmd, capture_output=True, text=True)
    c1 = envoy.cpu_ticks()
    s1 = envoy.stats()
    if out.returncode != 0:
        raise SystemExit(f"oha failed: {out.stderr[-2000:]}")
    n = envoy.requests(s1) - envoy.requests(s0)
    j = json.loads(out.stdout)
    pct = j.get("latencyPercentiles", {})
    summary = j.get("summary", {})
    return {"p50_us": (pct.get("p50") or float("nan")) * 1e6, "p99_us": (pct.get("p99") or float("nan")) * 1e6,
            "achieved": summary.get("requestsPerSec", float("nan")),
            "cpu_us": (c1 - c0) / os.sysconf("SC_CLK_TCK") * 1e6 / n if n else float("nan")}


def med(values):
    v = [x for x in values if x == x]
    return statistics.median(v) if v else float("nan")


def spread(values, fmt):
    v = [x for x in values if x == x]
    if not v:
        return "n/a"
    return f"{fmt(statistics.median(v))} [{fmt(min(v))}–{fmt(max(v))}]"


# ---------------------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--envoy", required=True)
    p.add_argument("--wasm", required=True, help="edgeward.wasm (what ships)")
    p.add_argument("--wasm-hc", required=True, help="edgeward built with --features host-call-count")
    p.add_argument("--noop", required=True, help="the no-op filter (benches/noop-filter)")
    p.add_argument("--host-calls", required=True, help="D's host calls alone (benches/host-calls-filter)")
    p.add_argument("--cli", required=True, help="the edgeward CLI (to sign the request)")
    p.add_argument("--oha", required=True)
    p.add_argument("--rls-dev", help="the development rate limit service, built --release (for D-rls)")
    p.add_argument("--wasm-alt", default=os.environ.get("BENCH_ALT_WASM", ""),
                   help="another edgeward build, measured as Dalt beside D")
    p.add_argument("--wasm-raw-size", type=int, default=0, help="size before wasm-opt")
    p.add_argument("--out", default=os.path.join(ROOT, "bench-results"))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 5)))
    p.add_argument("--latency-seconds", type=float, default=float(os.environ.get("BENCH_LATENCY_SECONDS", 4)))
    p.add_argument("--warmup-seconds", type=float, default=float(os.environ.get("BENCH_WARMUP_SECONDS", 2)))
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--envoy-cpu", default="0")
    p.add_argument("--load-cpu", default="1")
    p.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""), help="comma-separated configurations")
    a = p.parse_args()
    started = time.time()
    load_before = os.getloadavg()

    work = tempfile.mkdtemp(prefix="edgeward-bench-")
    created = int(time.time())
    headers, body = signed_request(a, created)
    script = wrk_script(work, headers, body)
    rls_port = free_port()
    configs, hc_config, allow100k, clusters = configurations(a, rls_port)
    if a.only:
        keep = set(a.only.split(","))
        configs = [c for c in configs if c[0] in keep]
    else:
        if os.environ.get("BENCH_PARTS") != "1":
            configs = [c for c in configs if c[0] not in {p[0] for p in PARTS}]
        if os.environ.get("BENCH_EXPERIMENTS") != "1":
            configs = [c for c in configs if c[0] not in {x[0] for x in EXPERIMENTS}]
    client_rank = [str(n) for n in allow100k].index("127.0.0.1/32")

    envoys = {}
    rls = None
    names = [c[0] for c in configs]
    nonces = NonceBatches(headers, body)
    if NONCE_CONFIGS & set(names):
        check_nonce_signer(a, headers, body)

    def request_for(name):
        """The headers of one request to `name` (a fresh nonce where each request needs one)."""
        return with_signature(headers, nonces.take_now()) if name in NONCE_CONFIGS else headers

    def script_for(name, seconds):
        """(wrk script, seconds) of one throughput run of `name`."""
        if name in NONCE_CONFIGS:
            seconds = min(seconds, NONCE_SECONDS)
            return nonces.script(work, int(NONCE_RATE_CAP * max(1, round(seconds)))), seconds
        return script, seconds

    try:
        if RLS_CONFIGS & set(names):
            if not a.rls_dev:
                raise SystemExit("D-rls needs --rls-dev (the rate limit service)")
            rls = RlsServer(a, work, rls_port)
            rls.wait_ready()
        print(f"==> starting {len(configs)} Envoys (pinned to CPU {a.envoy_cpu}); work dir {work}", file=sys.stderr)
        for name, _, filters, log, resp, _ in configs:
            envoys[name] = Envoy(a, work, name, filters, log, resp, clusters.get(name, []))
        for e in envoys.values():
            e.wait_ready()
        calls0 = {}
        for n in RLS_CONFIGS & set(names):
            # The first call also opens the HTTP/2 connection to the service, which can take longer than
            # timeout_ms while the other Envoys are still loading (their 100k lists): a 503 then. Wait until
            # it answers 200 once; the check below and the measurement then see the steady state.
            end = time.time() + 30
            while send_once(envoys[n].port, request_for(n), body)[0] != 200:
                if time.time() > end:
                    raise SystemExit(f"{n}: no 200 within 30 s\n{tail(envoys[n].log)}\n{tail(rls.log)}")
                time.sleep(0.5)
            calls0[n] = envoys[n].stats().get("cluster.ratelimit.upstream_rq_total", 0)
        # Every configuration answers as intended before anything is measured.
        for name, _, _, _, _, expect in configs:
            got = tuple(send_once(envoys[name].port, request_for(name), body)[0] for _ in expect)
            if got != expect:
                raise SystemExit(f"{name}: expected statuses {expect}, got {got}\n{tail(envoys[name].log)}")
        for n, c0 in calls0.items():
            # The 200s must have come through the service (with failure_mode deny, a failed call is a 503).
            calls = envoys[n].stats().get("cluster.ratelimit.upstream_rq_total", 0) - c0
            if calls < 2:
                raise SystemExit(f"{n}: the rate limit service saw {calls} requests, expected 2\n"
                                 f"{tail(envoys[n].log)}\n{tail(rls.log)}")
        if "D-rls-nonce" in envoys:
            # The same signed request again: the local nonce table refuses it without calling the service.
            replay = request_for("D-rls-nonce")
            got = tuple(send_once(envoys["D-rls-nonce"].port, replay, body)[0] for _ in range(2))
            if got != (200, 401):
                raise SystemExit(f"D-rls-nonce: a request and its replay answered {got}, expected (200, 401)")
        st, h = send_once(envoys["D"].port, headers, body) if "D" in envoys else (200, {"strict-transport-security": "-"})
        if "strict-transport-security" not in h:
            raise SystemExit("D: no Strict-Transport-Security in the response")

        print(f"==> warm-up ({a.warmup_seconds:g} s each)", file=sys.stderr)
        for n in names:
            run_wrk(a, envoys[n], *script_for(n, a.warmup_seconds))

        results = {n: {"wrk": [], "oha": [], "oha_low": [], "oha_fixed": []} for n in names}
        rate = low_rate = None

        def latency_runs(which, at, key):
            for n in which:
                if n in NONCE_CONFIGS:
                    continue  # oha repeats one request: every copy after the first would be a replay (401)
                res = run_oha(a, envoys[n], headers, body, at, a.latency_seconds, work)
                results[n][key].append(res)
                print(f"    {n:6} p50 {res['p50_us']:8.0f} µs  p99 {res['p99_us']:8.0f} µs  "
                      f"({res['achieved']:.0f} req/s achieved, {res['cpu_us']:.1f} CPU-µs/req)", file=sys.stderr)
        def in_round(seq, r):
            # Every other round in reverse order, so that no configuration always runs right after the same
            # neighbour: order cannot bias a side-by-side difference (Dalt − D) one way.
            return seq if r % 2 == 0 else seq[::-1]
        for r in range(a.rounds):
            order = in_round(names, r)
            print(f"==> round {r + 1}/{a.rounds}: throughput ({a.seconds:g} s each)", file=sys.stderr)
            for n in order:
                res = run_wrk(a, envoys[n], *script_for(n, a.seconds), rls if n in RLS_CONFIGS else None)
                results[n]["wrk"].append(res)
                print(f"    {n:6} {res['rps']:9.0f} req/s {res['cpu_us']:7.1f} CPU-µs/req "
                      f"(other load on CPU {a.envoy_cpu}: {res['other_cpu0'] * 100:.0f}%)", file=sys.stderr)
            if rate is None:
                base = results["A"]["wrk"][0]["rps"] if "A" in results else 10000
                rate = max(100, int(base / 2))
            print(f"==> round {r + 1}/{a.rounds}: latency at {rate} req/s ({a.latency_seconds:g} s each)", file=sys.stderr)
            latency_runs(order, rate, "oha")
            # D saturates below half of A's throughput, so its latency there is queueing. The added
            # latency below D's knee: A, C and D again at half of D's first-round throughput.
            low_names = [n for n in LOW_RATE_CONFIGS if n in names]
            if "D" in low_names:
                if low_rate is None:
                    low_rate = max(100, int(results["D"]["wrk"][0]["rps"] / 2))
                print(f"==> round {r + 1}/{a.rounds}: latency at {low_rate} req/s, half of D's throughput", file=sys.stderr)
                latency_runs(in_round(low_names, r), low_rate, "oha_low")
            if low_names:
                print(f"==> round {r + 1}/{a.rounds}: latency at {FIXED_RATE} req/s", file=sys.stderr)
                latency_runs(in_round(low_names, r), FIXED_RATE, "oha_fixed")
        rss = {n: envoys[n].rss_mb() for n in names}
        rss_released = released_rss(a, work, configs, headers, body)
        # The deny configurations must have denied, the others allowed, during the whole run.
        statuses = {}
        for n in names:
            s = envoys[n].stats()
            statuses[n] = {k.rsplit("_", 1)[1]: v for k, v in s.items()
                           if re.fullmatch(rf"http\.{n.lower()}\.downstream_rq_[1-5]xx", k) and v}
        # Calls to the rate limit service per request over the whole run (1.00: every request asked).
        rls_calls = {}
        for n in RLS_CONFIGS & set(names):
            s = envoys[n].stats()
            rls_calls[n] = s.get("cluster.ratelimit.upstream_rq_total", 0) / max(1, envoys[n].requests(s))
        for e in envoys.values():
            e.stop()
        host_calls = count_host_calls(a, work, configs, clusters, script_for, request_for, body)
    finally:
        for e in envoys.values():
            e.stop()
        if rls:
            rls.stop()
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.time() - started
    load_after = os.getloadavg()
    report = render(a, configs, results, rate, low_rate, rss, statuses, host_calls, client_rank,
                    created, load_before, load_after, elapsed, rls_calls, rss_released)
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    for fname in ("latest.md", f"{stamp}.md"):
        with open(os.path.join(a.out, fname), "w") as f:
            f.write(report)
    print(report)
    print(f"==> written to {os.path.relpath(a.out, ROOT)}/latest.md and {stamp}.md", file=sys.stderr)


def count_host_calls(a, work, configs, clusters, script_for, request_for, body):
    """Host calls per request of every configuration that runs the shipped edgeward, counted by its twin
    with the host-call-count build (one at a time, after the rounds; nothing here is timed): {name:
    (calls per request, {kind: calls per request})}. edgeward adds its counts to Envoy's counters once a
    second, on its tick."""
    out = {}
    for name, _, filters, log, resp, _ in configs:
        text = json.dumps(filters)
        if a.wasm not in text:
            continue
        twin = Envoy(a, work, f"{name}-hc", json.loads(text.replace(a.wasm, a.wasm_hc)), log, resp,
                     clusters.get(name, []))
        try:
            twin.wait_ready()
            # The calls made at configure (the rate-limit tables and nonce table created in shared data:
            # thousands) are flushed into the counters with the first request's: a few requests first,
            # so that s0 starts after them.
            for _ in range(3):
                send_once(twin.port, request_for(name), body)
            script, seconds = script_for(name, 2)
            s0 = twin.stats()
            run_wrk(a, twin, script, seconds)
            time.sleep(1.5)
            s1 = twin.stats()
        finally:
            twin.stop()
        key = "wasmcustom.edgeward.host_calls"
        n = max(1, twin.requests(s1) - twin.requests(s0))
        per_kind = {k[len(key) + 1:]: (v - s0.get(k, 0)) / n for k, v in s1.items() if k.startswith(key + ".")}
        out[name] = ((s1.get(key, 0) - s0.get(key, 0)) / n, per_kind)
        print(f"    {name}: {out[name][0]:.2f} host calls per request: "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_kind.items()) if v >= 0.005), file=sys.stderr)
    return out


# envoy/envoy.yaml's setting: tcmalloc gives freed heap back to the OS (V8 compiles the plugin in each VM
# through Envoy's malloc, and tcmalloc otherwise keeps that memory mapped).
RELEASE = "memory_allocator_manager: { bytes_to_release: 1073741824, memory_release_interval: 1s }"


def released_rss(a, work, configs, headers, body):
    """RSS of A and D100k started again with RELEASE, a few seconds after start and 20 requests each
    (after the rounds, while the measured Envoys sit idle; nothing is timed)."""
    wanted = [c for c in configs if c[0] in ("A", "D100k")]
    if len(wanted) < 2:
        return {}
    envoys = {}
    try:
        for name, _, filters, log, resp, _ in wanted:
            envoys[name] = Envoy(a, work, f"{name}-rel", filters, log, resp, [], RELEASE)
        for e in envoys.values():
            e.wait_ready()
            for _ in range(20):
                send_once(e.port, headers, body)
        time.sleep(5)
        return {n: e.rss_mb() for n, e in envoys.items()}
    finally:
        for e in envoys.values():
            e.stop()


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def render(a, configs, results, rate, low_rate, rss, statuses, host_calls, client_rank,
           created, load_before, load_after, elapsed, rls_calls=None, rss_released=None):
    names = [c[0] for c in configs]
    desc = {c[0]: c[1] for c in configs}
    col = lambda n, src, key: [x[key] for x in results[n][src]]

    def paired(x, y, key, op):
        """Per-round figure of x against y (same round, so shared noise cancels), median and range."""
        if x not in results or y not in results:
            return None
        src = key.split(":")[0] if ":" in key else ("oha" if key in ("p50_us", "p99_us") else "wrk")
        key = key.split(":")[-1]
        v = [op(rx[key], ry[key]) for rx, ry in zip(results[x][src], results[y][src])]
        return (med(v), min(v), max(v)) if v else None

    ratio = lambda x, y, key="rps": paired(x, y, key, lambda p, q: p / q)
    diff = lambda x, y, key="cpu_us": paired(x, y, key, lambda p, q: p - q)
    f0 = lambda v: f"{v:,.0f}"
    f1 = lambda v: f"{v:.1f}"
    f2 = lambda v: f"{v:.2f}"

    lines = []
    now = datetime.datetime.now().astimezone()
    lines.append(f"# edgeward end-to-end benchmark — {now:%Y-%m-%d %H:%M %Z}\n")
    lines.append(f"Machine: {machine()}. Envoy pinned to CPU {a.envoy_cpu} (`--concurrency 1`), load generator "
                 f"pinned to CPU {a.load_cpu}; HTTP/1.1 keep-alive on loopback, {a.connections} connections, "
                 f"`direct_response`. Each request: POST {PATH}, 256-byte body, signed (hmac-sha256 over @method "
                 f"@authority @path @query content-digest). {a.rounds} interleaved rounds after a warm-up; "
                 f"throughput {a.seconds:g} s (wrk; D-rls-nonce at most {NONCE_SECONDS} s), latency "
                 f"{a.latency_seconds:g} s at a fixed {rate:,} req/s (oha, half of A's first-round throughput). "
                 f"Figures: median [min–max] over the rounds.\n")
    other = [x["other_cpu0"] for n in names for x in results[n]["wrk"]]
    lines.append(f"Load from other processes: load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at "
                 f"the end; during the throughput runs other processes used a median {med(other) * 100:.0f}% "
                 f"(max {max(other) * 100:.0f}%) of CPU {a.envoy_cpu}. Ratios and differences are taken per round "
                 f"(the two configurations measured seconds apart) and their median is quoted. Whole run: "
                 f"{elapsed:.0f} s.\n")
    lines.append("| config | what | req/s | Envoy CPU-µs/req | p50 µs | p99 µs | RSS MB | host calls/req | statuses |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    saturated = []
    for n in names:
        st = ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.get(n, {}).items()))
        hc = f"{host_calls[n][0]:.2f}" if n in host_calls else "–"
        if results[n]["oha"]:
            # Below 95% of the fixed rate the configuration could not keep up: its latency is queueing.
            sat = " (sat.)" if med(col(n, "oha", "achieved")) < 0.95 * rate else ""
            if sat:
                saturated.append(n)
            p50 = f"{spread(col(n, 'oha', 'p50_us'), f0)}{sat}"
            p99 = f"{spread(col(n, 'oha', 'p99_us'), f0)}{sat}"
        else:
            p50 = p99 = "n/a"
        lines.append(f"| {n} | {desc[n]} | {spread(col(n, 'wrk', 'rps'), f0)} | {spread(col(n, 'wrk', 'cpu_us'), f1)} | "
                     f"{p50} | {p99} | {rss[n]:.0f} | {hc} | {st} |")
    lines.append("")
    if saturated:
        lines.append(f"(sat.): {', '.join(saturated)} could not sustain {rate:,} req/s during the latency runs "
                     f"(under 95% achieved), so those latencies include queueing.\n")
    if NONCE_CONFIGS & set(names):
        lines.append("n/a: oha sends one request over and over, and each D-rls-nonce request must carry its own "
                     "nonce (a copy is a replay, 401), so D-rls-nonce has throughput and CPU only (wrk, a script "
                     "that sends each of a batch of freshly signed requests once).\n")

    for key, at, what in (("oha_fixed", FIXED_RATE, "a fixed low rate where nothing queues"),
                          ("oha_low", low_rate, "half of D's first-round throughput, so D is below its knee too")):
        cells = []
        for n in [n for n in LOW_RATE_CONFIGS if results.get(n, {}).get(key)]:
            achieved = med(col(n, key, "achieved"))
            sat = "" if achieved >= 0.95 * at else " (sat.)"
            cells.append(f"{n} p50 {spread(col(n, key, 'p50_us'), f0)}, p99 {spread(col(n, key, 'p99_us'), f0)} µs{sat}, "
                         f"{spread(col(n, key, 'cpu_us'), f1)} CPU-µs/req")
        if cells:
            lines.append(f"Latency at {at:,} req/s ({what}; oha, {a.latency_seconds:g} s per round): "
                         + "; ".join(cells) + ".\n")

    def fmt(t, f):
        return "n/a" if t is None else f"{f(t[0])} [{f(t[1])}–{f(t[2])}]"

    def ok(t, pred):
        return "n/a" if t is None else ("met" if pred(t[0]) else "**missed**")

    rows = []
    # The targets of issue 25 (grounded in the measured floor: C − A, Phost − C and edgeward's native time).
    t = diff("D", "A"); rows.append(("D − A CPU-µs/req", fmt(t, f1), "≤ 24", ok(t, lambda v: v <= 24)))
    d_a = t
    t = ratio("D", "A"); rows.append(("D/A throughput", fmt(t, f2), "≥ 0.42", ok(t, lambda v: v >= 0.42)))
    t = diff("D", "C"); rows.append(("D − C CPU-µs/req", fmt(t, f1), "", ""))
    t = diff("C", "A"); rows.append(("C − A CPU-µs/req (no-op wasm filter)", fmt(t, f1), "", ""))
    if "Phost" in results:
        t = diff("Phost", "C"); rows.append(("Phost − C CPU-µs/req (D's host calls alone, over a no-op filter)", fmt(t, f1), "", ""))
        t = diff("D", "Phost"); rows.append(("D − Phost CPU-µs/req (edgeward's own work in D: parsing, checks, crypto, record)", fmt(t, f1), "≤ 10", ok(t, lambda v: v <= 10)))
    t = ratio("D", "C"); rows.append(("D/C throughput", fmt(t, f2), "", ""))
    t = ratio("D", "B"); rows.append(("D/B throughput", fmt(t, f2), "", ""))
    t = diff("D", "B"); rows.append(("D − B CPU-µs/req", fmt(t, f1), "", ""))
    t = diff("A2", "A"); rows.append(("A2 − A CPU-µs/req (A/A: two identical Envoys, the noise of a difference)", fmt(t, f1), "", ""))
    for x in [n for n in names if n in {e[0] for e in EXPERIMENTS}]:
        t = diff(x, "D"); rows.append((f"{x} − D CPU-µs/req ({desc[x]}, side by side)", fmt(t, f1), "", ""))
    if "Dalt" in results:
        t = diff("Dalt", "D"); rows.append(("Dalt − D CPU-µs/req (the other build, side by side)", fmt(t, f1), "", ""))
        t = ratio("Dalt", "D"); rows.append(("Dalt/D throughput", fmt(t, f2), "", ""))
    for e in [n for n in names if n.startswith("E")]:
        t = diff(e, "D"); rows.append((f"{e} − D CPU-µs/req", fmt(t, f1), "< 0", ok(t, lambda v: v < 0)))
    t = ratio("D100k", "D", "cpu_us"); rows.append(("D100k/D CPU-µs/req", fmt(t, f2), "≤ 1.03", ok(t, lambda v: v <= 1.03)))
    t = ratio("D100k", "D"); rows.append(("D100k/D throughput", fmt(t, f2), "≥ 0.97", ok(t, lambda v: v >= 0.97)))
    t = ratio("D100k", "B100k"); rows.append(("D100k/B100k throughput (B-100k slowdown factor)", fmt(t, f1), "", ""))
    t = diff("D-rls", "D"); rows.append(("D-rls − D CPU-µs/req (Envoy)", fmt(t, f1), "", ""))
    t = ratio("D-rls", "D"); rows.append(("D-rls/D throughput", fmt(t, f2), "", ""))
    t = diff("D-rls-nonce", "D-rls"); rows.append(("D-rls-nonce − D-rls CPU-µs/req (Envoy; the nonce checked locally and at the service)", fmt(t, f1), "", ""))
    t = ratio("D-rls-nonce", "D-rls"); rows.append(("D-rls-nonce/D-rls throughput", fmt(t, f2), "", ""))
    for n in [n for n in ("D-rls", "D-rls-nonce") if n in results]:
        v = col(n, "wrk", "rls_cpu_us")
        rows.append((f"rate limit service (rls-dev) CPU-µs/req in {n}, not in Envoy's", spread(v, f1), "", ""))
    if "P0" in results:
        t = diff("P0", "C"); rows.append(("P0 − C CPU-µs/req (edgeward's fixed cost over a no-op filter)", fmt(t, f1), "", ""))
        for n in [n for n in names if n.startswith("P") and n not in ("P0", "Phost")]:
            t = diff(n, "P0"); rows.append((f"{n} − P0 CPU-µs/req ({desc[n].split(', ', 1)[-1]})", fmt(t, f1), "", ""))
    for key, at, what in (("oha_fixed", FIXED_RATE, ""), ("oha_low", low_rate, " (half of D's throughput)")):
        if at is None:
            continue
        for x, y in (("D", "A"), ("D", "C"), ("C", "A"), ("A2", "A"), ("Phost", "C"), ("D", "Phost"), ("Dlean", "D"),
                     ("Dalt", "D")):
            for q in ("p50", "p99"):
                t = diff(x, y, f"{key}:{q}_us")
                if t is None:
                    continue
                target, verdict = "", ""
                if (key, x, y, q) == ("oha_fixed", "D", "A", "p50") and d_a is not None:
                    # Added latency where nothing queues: at most D's added CPU plus 10 µs.
                    target = f"≤ (D − A CPU) + 10 = {d_a[0] + 10:.0f}"
                    verdict = ok(t, lambda v: v <= d_a[0] + 10)
                rows.append((f"{x} − {y} {q} latency µs at {at:,} req/s{what}", fmt(t, f0), target, verdict))
            # Envoy's CPU per request at that rate, beside its latency: what a request costs when the worker
            # sleeps between requests (at saturation, the throughput runs' CPU-µs/req).
            t = diff(x, y, f"{key}:cpu_us")
            if t is not None:
                rows.append((f"{x} − {y} CPU-µs/req at {at:,} req/s{what}", fmt(t, f1), "", ""))
    t = diff("D", "A", "p50_us"); rows.append((f"D − A p50 latency µs at {rate:,} req/s (half of A's throughput)", fmt(t, f0), "", ""))
    t = diff("D", "A", "p99_us"); rows.append((f"D − A p99 latency µs at {rate:,} req/s (half of A's throughput)", fmt(t, f0), "", ""))
    if "D100k" in rss and "C" in rss:
        rows.append(("RSS D100k − C (MB)", f"{rss['D100k'] - rss['C']:.0f}", "", ""))
    if "D100k" in rss and "A" in rss:
        rows.append(("RSS D100k − A (MB)", f"{rss['D100k'] - rss['A']:.0f}", "", ""))
    if rss_released:
        d = rss_released["D100k"] - rss_released["A"]
        rows.append((f"RSS D100k − A (MB), freed heap released as envoy/envoy.yaml does "
                     f"(A {rss_released['A']:.0f}, D100k {rss_released['D100k']:.0f})", f"{d:.0f}", "", ""))
    size = os.path.getsize(a.wasm)
    raw = f" ({a.wasm_raw_size / 1024:.0f} KiB before wasm-opt)" if a.wasm_raw_size else ""
    rows.append(("edgeward.wasm after wasm-opt -O3", f"{size / 1024:.0f} KiB{raw}", "", ""))
    lines.append("| figure | median [min–max] | target | |")
    lines.append("|---|---:|---|---|")
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    lines.append("")
    if host_calls:
        lines.append("Host calls per request, by kind, counted by each edgeward configuration's twin built with "
                     "`--features host-call-count` (2 s of load after the rounds; not timed):\n")
        lines.append("| config | total | by kind |")
        lines.append("|---|---:|---|")
        for n, (total, kinds) in host_calls.items():
            lines.append(f"| {n} | {total:.2f} | " + ", ".join(f"`{k}` {v:.2f}" for k, v in sorted(kinds.items()) if v >= 0.005) + " |")
        lines.append("")
    lines.append(f"Notes: D's signature has `created` = start of the run ({created}) and `max_age_s` {MAX_AGE_S}, no "
                 f"nonce (`nonce: optional`), so one fixed request stays valid for the whole run. The 100,000 "
                 f"prefixes are deterministic pseudo-random IPv4 /16–/32 outside 127/8 plus 127.0.0.1/32, sorted by "
                 f"address; the client's entry is number {client_rank + 1:,}, so RBAC (first match, in order) scans "
                 f"about that many principals. Every configuration runs buffer → its filters → buffer → router, and "
                 f"the route configuration of envoy/envoy.yaml that writes edgeward's filter state as upstream "
                 f"headers (benches/e2e/envoy.tmpl.yaml says why, and why a `direct_response` never evaluates it).\n")
    if RLS_CONFIGS & set(names):
        calls = ", ".join(f"{n} {v:.2f}" for n, v in sorted((rls_calls or {}).items()))
        lines.append(f"D-rls: D's document plus one limit with `\"backend\": \"rls\"` keyed by client_ip (never "
                     f"reached: 1e9 per second in the service's config), `failure_mode: deny`, `timeout_ms` 50, so "
                     f"every request waits for one ShouldRateLimit call over an HTTP/2 cluster. D-rls-nonce: the same "
                     f"with `nonce: required`, `nonce_scope: cluster` and `max_age_s` {NONCE_MAX_AGE_S}: every request "
                     f"carries a fresh nonce (signed by the benchmark with hmac-sha256 just before each run, checked "
                     f"against `edgeward sign`), recorded in the local nonce table and sent as the first descriptor of "
                     f"the same one call. The service is rls-dev (`--release`, Limitador with in-memory counters, a "
                     f"development server) on 127.0.0.1, pinned to CPU {a.load_cpu} beside the load generator: it "
                     f"shares that CPU with wrk and oha, and its CPU is not in Envoy's figure (reported as its own row, "
                     f"utime+stime of its pid over the throughput runs). Calls to the service per request: {calls}.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
