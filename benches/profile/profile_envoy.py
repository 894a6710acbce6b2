#!/usr/bin/env python3
"""Profiles configurations of the end-to-end benchmark (benches/e2e/bench.py) in an Envoy whose V8 writes
its perf map, and splits each profile with benches/profile/perf_split.py: the module's functions and V8's
builtins by name, the rest of Envoy by what the stack was doing. For exploration: perf's own overhead
and the sampling make these figures larger than the benchmark's; compare configurations within one run.

    python3 benches/profile/profile_envoy.py --envoy ENVOY --wasm dist/edgeward.wasm \\
        --noop dist/noop-filter.wasm --host-calls dist/host-calls-filter.wasm --cli target/release/edgeward \\
        --only C,Phost,D [--seconds 8] [--out DIR]

ENVOY: a copy made by benches/profile/envoy-perfmap.sh (Envoy passes V8 a fixed set of flags; the copy
adds --perf-basic-prof). Build the .wasm with its name section (wasm-opt -O3 -g) to see names.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import bench  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--envoy", required=True)
    p.add_argument("--wasm", required=True)
    p.add_argument("--wasm-alt", default="")
    p.add_argument("--noop", required=True)
    p.add_argument("--host-calls", required=True)
    p.add_argument("--cli", required=True)
    p.add_argument("--only", default="C,Phost,D")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--frequency", type=int, default=4999)
    p.add_argument("--out", default="")
    a = p.parse_args()
    for k in ("envoy", "wasm", "wasm_alt", "noop", "host_calls", "cli"):
        if getattr(a, k):
            setattr(a, k, os.path.abspath(getattr(a, k)))
    ns = types.SimpleNamespace(envoy=a.envoy, wasm=a.wasm, wasm_alt=a.wasm_alt, wasm_hc=a.wasm, noop=a.noop,
                               host_calls=a.host_calls, cli=a.cli, envoy_cpu="0", load_cpu="1", connections=32)
    work = tempfile.mkdtemp(prefix="edgeward-profile-")
    out = os.path.abspath(a.out) if a.out else work
    os.makedirs(out, exist_ok=True)
    # V8 with --perf-basic-prof also writes isolate-*-v8.log files into the current directory: the work
    # directory, not the checkout.
    os.chdir(work)
    headers, body = bench.signed_request(ns, int(time.time()))
    script = bench.wrk_script(work, headers, body)
    configs, hc, _, clusters = bench.configurations(ns, bench.free_port())
    by_name = {c[0]: c for c in configs + [hc]}
    for name in a.only.split(","):
        _, what, filters, log, resp, expect = by_name[name]
        e = bench.Envoy(ns, work, name, filters, log, resp, clusters.get(name, []))
        try:
            e.wait_ready()
            got = tuple(bench.send_once(e.port, headers, body)[0] for _ in expect)
            if got != expect:
                raise SystemExit(f"{name}: expected {expect}, got {got}")
            bench.run_wrk(ns, e, script, 3)
            load = subprocess.Popen(
                ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{int(a.seconds) + 4}s", "-s", script,
                 f"http://127.0.0.1:{e.port}{bench.PATH}"], stdout=subprocess.DEVNULL)
            time.sleep(2)
            r0 = e.requests()
            data = os.path.join(out, f"{name}.perf.data")
            subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(a.frequency), "-g", "-p",
                            str(e.proc.pid), "-o", data, "--", "sleep", str(a.seconds)], check=True,
                           stderr=subprocess.DEVNULL)
            r1 = e.requests()
            load.wait()
            samples = os.path.join(out, f"{name}.samples.txt")
            with open(samples, "w") as f:
                subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"], stdout=f,
                               stderr=subprocess.DEVNULL, check=True)
            print(f"=== {name}: {what} ({r1 - r0} requests profiled)", flush=True)
            subprocess.run([sys.executable, os.path.join(HERE, "perf_split.py"), samples, "--map",
                            f"/tmp/perf-{e.proc.pid}.map", "--pid", str(e.proc.pid), "--binary",
                            os.path.basename(a.envoy), "--period-us", str(1e6 / a.frequency), "--requests",
                            str(r1 - r0)], check=True)
        finally:
            e.stop()
            try:
                os.remove(f"/tmp/perf-{e.proc.pid}.map")
            except OSError:
                pass


if __name__ == "__main__":
    main()
