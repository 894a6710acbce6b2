#!/usr/bin/env bash
# envoy-perfmap.sh ENVOY OUT: a copy of Envoy whose V8 writes /tmp/perf-PID.map (--perf-basic-prof), for
# benches/profile/profile_envoy.py. Envoy (proxy-wasm's V8 engine) hands V8 one fixed flag string and has
# no option for more; the copy rewrites that string in place, same length, keeping its two %u:
#   "--no-liftoff --wasm_max_mem_pages=%u --stack-trace-limit=%u"
#   "--no-liftoff --perf-basic-prof --wasm_max_mem_pages=%u %u  " (the second %u becomes a non-flag word,
#   which V8 ignores; the stack trace limit keeps its default). Profiling only: never for measurements.
set -euo pipefail
python3 - "$1" "$2" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
b = bytearray(open(src, "rb").read())
old = b"--no-liftoff --wasm_max_mem_pages=%u --stack-trace-limit=%u"
new = b"--no-liftoff --perf-basic-prof --wasm_max_mem_pages=%u %u"
new += b" " * (len(old) - len(new))
i = b.find(old)
if i < 0 or b.find(old, i + 1) >= 0:
    sys.exit("this Envoy does not hold V8's flag string exactly once: cannot patch it")
b[i:i + len(old)] = new
open(dst, "wb").write(b)
PY
chmod +x "$2"
