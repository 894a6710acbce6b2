#!/usr/bin/env python3
"""Prices a change to the module side by side under Node's V8: interleaved pairs of benches/node-host/run.mjs
runs of two builds on D's case (the old one first in odd pairs, the new one first in even pairs), each pair
with a freshly signed case (a case's signature expires after the document's max_age). Prints each pair's
µs per request (Node's CPU, mock host included), the medians, and new − old per pair: its median, range and
how many pairs came out lower. Give the same build twice for the A/A spread.

    python3 benches/node-host/compare.py --cli target/release/edgeward --old old.wasm --new new.wasm [--pairs 8]

`--old-case` / `--new-case` (default D) give each side its own case (benches/node-host/case.py), e.g. one
build on D and on Dlease.

On a shared machine this resolves changes of 1–2 µs that Envoy's end-to-end rounds cannot (docs/benchmark.md).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(wasm, case, requests):
    out = subprocess.run(
        ["node", os.path.join(HERE, "run.mjs"), "--wasm", wasm, "--case", case, "--requests", str(requests)],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"run.mjs failed on {wasm}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)["cpu_us_per_request"]["median"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cli", required=True, help="the edgeward command (signs the case's request)")
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--old-case", default="D", help="case.py's --case for the old side")
    p.add_argument("--new-case", default="D", help="case.py's --case for the new side")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--requests", type=int, default=60000, help="per round of run.mjs (5 rounds, after warm-up)")
    a = p.parse_args()
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = {}
        for i in range(a.pairs):
            for name in {a.old_case, a.new_case}:
                cases[name] = os.path.join(tmp, f"{name}.json")
                with open(cases[name], "w") as f:
                    subprocess.run([sys.executable, os.path.join(HERE, "case.py"), "--cli", a.cli, "--case", name],
                                   stdout=f, check=True)
            if i % 2 == 0:
                old = run(a.old, cases[a.old_case], a.requests)
                new = run(a.new, cases[a.new_case], a.requests)
            else:
                new = run(a.new, cases[a.new_case], a.requests)
                old = run(a.old, cases[a.old_case], a.requests)
            pairs.append((old, new))
            print(f"pair {i + 1}: old {old:.2f}  new {new:.2f}  new − old {new - old:+.2f} µs", flush=True)
    d = [n - o for o, n in pairs]
    print(f"old {statistics.median(o for o, _ in pairs):.2f} µs, new {statistics.median(n for _, n in pairs):.2f} µs "
          f"(medians); new − old {statistics.median(d):+.2f} [{min(d):+.2f} .. {max(d):+.2f}], "
          f"lower in {sum(x < 0 for x in d)} of {len(d)} pairs")


if __name__ == "__main__":
    main()
