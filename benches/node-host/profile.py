#!/usr/bin/env python3
"""Summarizes a `node --cpu-prof` profile of benches/node-host/run.mjs: self and inclusive time per
function (the module's functions are named when the .wasm keeps its name section), as µs per request.

    python3 benches/node-host/profile.py PROFILE.cpuprofile --requests N [--top 40] [--match REGEX]
"""

import argparse
import collections
import json
import re


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("profile")
    p.add_argument("--requests", type=int, required=True, help="requests the profiled run made (all rounds and warm-up)")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--match", default="", help="only functions whose name matches")
    a = p.parse_args()
    prof = json.load(open(a.profile))
    nodes = {n["id"]: n for n in prof["nodes"]}
    parent = {}
    for n in prof["nodes"]:
        for c in n.get("children", []):
            parent[c] = n["id"]
    deltas = prof["timeDeltas"]
    self_us = collections.Counter()
    module_us = 0
    incl_us = collections.Counter()
    for sample, dt in zip(prof["samples"], deltas[1:] + [0]):
        node = nodes[sample]
        name = node["callFrame"]["functionName"] or f"({node['callFrame']['url'] or 'anonymous'})"
        self_us[name] += dt
        if node["callFrame"]["url"].startswith("wasm://"):
            module_us += dt
        seen = set()
        i = sample
        while i is not None:
            fn = nodes[i]["callFrame"]["functionName"] or "(anonymous)"
            if fn not in seen:
                incl_us[fn] += dt
                seen.add(fn)
            i = parent.get(i)
    total = sum(self_us.values())
    rx = re.compile(a.match) if a.match else None
    print(f"total sampled {total / 1e6:.2f} s, {total / a.requests:.2f} µs per request; in the module's own "
          f"code (wasm://, the rest is the mock host, V8 and Node) {module_us / a.requests:.2f} µs per request")
    print(f"{'self µs/req':>12} {'incl µs/req':>12}  function")
    for name, us in self_us.most_common():
        if rx and not rx.search(name):
            continue
        print(f"{us / a.requests:12.3f} {incl_us[name] / a.requests:12.3f}  {name[:150]}")
        a.top -= 1
        if a.top == 0:
            break


if __name__ == "__main__":
    main()
