#!/usr/bin/env python3
"""Splits a `perf record -g` profile of one Envoy process by where each sample falls, with V8's names.

Envoy's V8 writes /tmp/perf-PID.map when started with `--perf-basic-prof` (benches/profile/envoy-perfmap.sh
makes a copy of Envoy that passes it). The map names the module's functions as V8 compiled them (from the
.wasm's name section: build with names, `wasm-opt -g`), V8's builtins (which live in Envoy's binary, so
perf itself does not use the map for them) and the wrappers between Envoy and the module. The rest of
Envoy's binary is stripped: it stays one bucket, split by what the stack says it was doing.

    perf script -i perf.data -F ip,sym,dso > samples.txt
    python3 benches/profile/perf_split.py samples.txt --map /tmp/perf-PID.map --pid PID --requests N

PID's /proc/PID/maps must still exist (to place Envoy's binary), or pass --binary-base HEX (the address
the binary's file offset 0 is mapped at). Prints CPU-µs per request (samples × period / requests) by
bucket and by function.
"""

import argparse
import bisect
import collections
import re


def load_map(path):
    ranges = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) == 3:
                ranges.append((int(parts[0], 16), int(parts[1], 16), parts[2]))
    ranges.sort()
    return ranges, [r[0] for r in ranges]


def binary_offset_to_address(pid, binary):
    """(map start, file offset) of each mapping of `binary` in the process."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5].endswith(binary):
                start, _ = fields[0].split("-")
                out.append((int(start, 16), int(fields[2], 16)))
    return out


def clean(name):
    name = re.sub(r"-\d+-turbofan$", "", name)
    name = re.sub(r"17h[0-9a-f]{16}E$", "", name)
    return name


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("samples")
    p.add_argument("--map", required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--binary", default="envoy", help="the Envoy binary's file name (a suffix of its path)")
    p.add_argument("--period-us", type=float, required=True, help="µs per sample (1e6 / perf -F)")
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--top", type=int, default=40)
    a = p.parse_args()
    ranges, starts = load_map(a.map)
    text_maps = binary_offset_to_address(a.pid, a.binary) if a.pid else []
    # perf prints a binary's addresses as file offsets; the mapping whose offset is the largest one
    # at or below an address places it.
    text_maps.sort(key=lambda m: m[1])

    def absolute(off):
        best = None
        for start, pgoff in text_maps:
            if pgoff <= off:
                best = start + off - pgoff
        return best

    def lookup(addr):
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0:
            s, size, name = ranges[i]
            if s <= addr < s + size:
                return name
        return None

    def frame_name(ip, dso):
        if dso.startswith("/tmp/perf-"):
            n = lookup(ip)
            return ("jit", clean(n) if n else "JIT code not in the map")
        if dso.endswith(a.binary):
            addr = absolute(ip)
            n = lookup(addr) if addr is not None else None
            if n:
                return ("builtin", clean(n))
            return ("envoy", "Envoy's binary (stripped)")
        if "kernel" in dso or dso.startswith("[k"):
            return ("kernel", "kernel")
        return ("lib", dso.rsplit("/", 1)[-1])

    samples = []
    cur = None
    with open(a.samples) as f:
        for line in f:
            if not line.strip():
                if cur:
                    samples.append(cur)
                cur = None
                continue
            if not line.startswith((" ", "\t")):
                cur = []
                continue
            m = re.match(r"\s*([0-9a-f]+)\s+(.*)\s+\((.*)\)\s*$", line)
            if m and cur is not None:
                cur.append(frame_name(int(m.group(1), 16), m.group(3)))
    if cur:
        samples.append(cur)

    per = a.period_us / a.requests
    buckets = collections.Counter()
    leaf_names = collections.Counter()
    host_call_from = collections.Counter()
    for stack in samples:
        if not stack:
            continue
        kind, name = stack[0]
        leaf_names[f"{kind}: {name}"] += 1
        # The innermost frame of the module's code, and whether the stack entered the module at all.
        wasm_frames = [n for k, n in stack if k == "jit" and not n.startswith(("Stub:", "Builtin:", "JIT code"))]
        entered = any(n.startswith("Stub:c-wasm-entry") for _, n in stack)
        if kind == "jit" and not name.startswith(("Stub:", "JIT code")):
            where = "module code (wasm, TurboFan)"
        elif wasm_frames:
            where = "called from the module (host calls, allocator round trips, V8 runtime and builtins)"
            host_call_from[wasm_frames[0]] += 1
        elif entered:
            where = "entering/leaving the module (c-wasm-entry, C API)"
        else:
            where = "outside the module (Envoy, kernel)"
        buckets[where] += 1
    print(f"{len(samples)} samples, {a.requests} requests: {len(samples) * per:.1f} CPU-µs per request sampled")
    for k, v in buckets.most_common():
        print(f"  {v * per:7.2f} µs  {k}")
    print("\nby leaf function (µs per request):")
    for k, v in leaf_names.most_common(a.top):
        print(f"  {v * per:7.3f}  {k[:140]}")
    print("\nhost-side time by the module function that made the call (µs per request):")
    for k, v in host_call_from.most_common(20):
        print(f"  {v * per:7.3f}  {k[:140]}")


if __name__ == "__main__":
    main()
