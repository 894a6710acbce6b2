// Drives edgeward's request callbacks under Node's V8 with a mock proxy-wasm host (ABI 0.2.1), the way
// Envoy calls them for the benchmark's configuration D: context create, request headers (held), request
// body (256 bytes, end of stream), response headers, log, delete. Noise-free exploration of the module's
// own cost: `node --cpu-prof` names the module's functions (given the build before wasm-opt: docs/benchmark.md),
// and the run prints the module's time per request, its host calls per request by kind, the bytes the
// host hands it through `proxy_on_memory_allocate` and how often its memory grew.
//
//   node benches/node-host/run.mjs --wasm dist/edgeward.wasm --case case.json [--requests 200000]
//
// case.json (benches/node-host/case.py writes D's): {"configuration": "<policy document>",
// "headers": [[name, value], ...], "body": "<text>", "response_headers": [[name, value], ...],
// "properties": {"xds\u0000route_name": "api", ...}, "expect_status": 200}; with "no_response_headers": true
// the stream ends without response headers (as when the client goes away), straight to the log callback.
// Not Envoy: the host's side costs almost nothing here, so this measures the module alone; Envoy's own
// work per host call is what the end-to-end benchmark's Phost configuration prices.

import fs from "node:fs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const wasmPath = args.wasm;
const kase = JSON.parse(fs.readFileSync(args.case, "utf8"));
const REQUESTS = Number(args.requests || 200000);
const WARMUP = Number(args.warmup || 20000);
const ROUNDS = Number(args.rounds || 5);

const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, CAS_MISMATCH = 8;
const enc = new TextEncoder();
const dec = new TextDecoder();

let inst; // the instance
const mem = () => new DataView(inst.exports.memory.buffer);
const bytesAt = (p, n) => new Uint8Array(inst.exports.memory.buffer, p, n);
const str = (p, n) => dec.decode(bytesAt(p, n));

const calls = {};
// Calls by callback and kind ("request_headers:get_property"): where in the request each one is made.
const byCallback = {};
let callback = "(start)";
let allocated = 0, allocations = 0;
const count = (k) => {
  calls[k] = (calls[k] || 0) + 1;
  const c = `${callback}:${k}`;
  byCallback[c] = (byCallback[c] || 0) + 1;
};

// Hands `data` to the module: a buffer from proxy_on_memory_allocate, its address and size written back.
function give(data, ptrOut, sizeOut) {
  const n = data.length;
  allocations++; allocated += n;
  const p = inst.exports.proxy_on_memory_allocate(n);
  if (n) bytesAt(p, n).set(data);
  const dv = mem();
  dv.setUint32(ptrOut, p, true);
  dv.setUint32(sizeOut, n, true);
  return OK;
}

function serializePairs(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let p = 4 + parts.length * 8;
  parts.forEach(([k, v], i) => {
    dv.setUint32(4 + i * 8, k.length, true);
    dv.setUint32(8 + i * 8, v.length, true);
    out.set(k, p); p += k.length + 1;
    out.set(v, p); p += v.length + 1;
  });
  return out;
}

// The host's state.
const config = enc.encode(kase.configuration);
const body = enc.encode(kase.body || "");
const properties = Object.fromEntries(Object.entries(kase.properties || {}).map(([k, v]) => [k, enc.encode(v)]));
let requestHeaders = [], responseHeaders = [];
const requestHeadersBytes = serializePairs(kase.headers);
const shared = new Map(); // key → {value, cas}
let nextCas = 1;
const filterState = new Map();
let localReply = null;
let clock = BigInt(Date.now()) * 1000000n;

const maps = (t) => (t === 0 ? requestHeaders : t === 2 ? responseHeaders : null);
function setHeader(t, k, v, add) {
  const m = maps(t);
  if (!m) return BAD_ARGUMENT;
  if (!add) {
    for (let i = m.length - 1; i >= 0; i--) if (m[i][0] === k) m.splice(i, 1);
  }
  if (v !== null) m.push([k, v]);
  return OK;
}

const env = {
  proxy_log(level, p, n) { count("log"); if (level >= 3 || args.verbose) console.error(`[wasm ${level}] ${str(p, n)}`); return OK; },
  proxy_define_metric(_t, _p, _n, idOut) { count("define_metric"); mem().setUint32(idOut, (calls.define_metric || 0), true); return OK; },
  proxy_increment_metric() { count("increment_metric"); return OK; },
  proxy_get_property(p, n, dOut, sOut) {
    count("get_property");
    const v = properties[str(p, n)];
    return v === undefined ? NOT_FOUND : give(v, dOut, sOut);
  },
  proxy_set_property(p, n, vp, vn) { count("set_property"); filterState.set(str(p, n), str(vp, vn)); return OK; },
  proxy_get_current_time_nanoseconds(out) { count("get_current_time"); clock += 1000n; mem().setBigUint64(out, clock, true); return OK; },
  proxy_get_header_map_pairs(t, dOut, sOut) {
    count("get_map");
    return give(t === 0 ? requestHeadersBytes : serializePairs(maps(t) || []), dOut, sOut);
  },
  proxy_get_header_map_value(t, kp, kn, dOut, sOut) {
    count("get_map_value");
    const k = str(kp, kn);
    const hit = (maps(t) || []).find(([n]) => n === k);
    return hit ? give(enc.encode(hit[1]), dOut, sOut) : NOT_FOUND;
  },
  proxy_replace_header_map_value(t, kp, kn, vp, vn) { count("set_header"); return setHeader(t, str(kp, kn), str(vp, vn), false); },
  proxy_add_header_map_value(t, kp, kn, vp, vn) { count("set_header"); return setHeader(t, str(kp, kn), str(vp, vn), true); },
  proxy_remove_header_map_value(t, kp, kn) { count("set_header"); return setHeader(t, str(kp, kn), null, false); },
  proxy_get_buffer_bytes(t, start, max, dOut, sOut) {
    count("get_buffer");
    max >>>= 0; // wasm's i32 arrives signed; the module passes usize::MAX for "all of it"
    const src = t === 7 ? config : t === 0 ? body : null;
    if (!src) return NOT_FOUND;
    return give(src.subarray(start, Math.min(src.length, start + max)), dOut, sOut);
  },
  proxy_get_shared_data(kp, kn, dOut, sOut, casOut) {
    count("get_shared_data");
    const e = shared.get(str(kp, kn));
    if (!e) return NOT_FOUND;
    mem().setUint32(casOut, e.cas, true);
    return give(e.value, dOut, sOut);
  },
  proxy_set_shared_data(kp, kn, vp, vn, cas) {
    count("set_shared_data");
    const k = str(kp, kn);
    const e = shared.get(k);
    cas >>>= 0;
    if (cas !== 0 && e && e.cas !== cas) return CAS_MISMATCH;
    shared.set(k, { value: bytesAt(vp, vn).slice(), cas: nextCas++ });
    return OK;
  },
  proxy_send_local_response(status) { count("send_local_response"); localReply = status; return OK; },
  proxy_continue_stream() { count("continue_stream"); return OK; },
  proxy_set_tick_period_milliseconds() { return OK; },
  proxy_set_effective_context() { return OK; },
  proxy_grpc_call() { count("dispatch_grpc_call"); return BAD_ARGUMENT; },
  proxy_http_call() { count("dispatch_http_call"); return BAD_ARGUMENT; },
};
const wasi = {
  environ_sizes_get(cOut, sOut) { mem().setUint32(cOut, 0, true); mem().setUint32(sOut, 0, true); return 0; },
  environ_get() { return 0; },
  fd_write(fd, iovs, n, wOut) {
    let total = 0;
    for (let i = 0; i < n; i++) {
      const p = mem().getUint32(iovs + i * 8, true), l = mem().getUint32(iovs + i * 8 + 4, true);
      process.stderr.write(str(p, l)); total += l;
    }
    mem().setUint32(wOut, total, true);
    return 0;
  },
  proc_exit(code) { throw new Error(`proc_exit(${code})`); },
  random_get(p, n) { for (let i = 0; i < n; i++) bytesAt(p, n)[i] = (Math.random() * 256) | 0; return 0; },
};

const module = new WebAssembly.Module(fs.readFileSync(wasmPath));
inst = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
const x = inst.exports;
x._initialize?.();
const ROOT = 1;
x.proxy_on_context_create(ROOT, 0);
x.proxy_on_vm_start(ROOT, 0);
if (!x.proxy_on_configure(ROOT, config.length)) throw new Error("proxy_on_configure refused the document");

let nextId = 2;
const expected = kase.expect_status ?? 200;
function request() {
  const id = nextId++;
  requestHeaders = kase.headers.slice();
  responseHeaders = kase.response_headers.slice();
  localReply = null;
  callback = "context_create";
  x.proxy_on_context_create(id, ROOT);
  callback = "request_headers";
  let a = x.proxy_on_request_headers(id, kase.headers.length, body.length ? 0 : 1);
  callback = "request_body";
  if (a !== 0 && localReply === null && body.length) a = x.proxy_on_request_body(id, body.length, 1);
  callback = "response_headers";
  if (localReply === null && !kase.no_response_headers) x.proxy_on_response_headers(id, responseHeaders.length, 1);
  callback = "log";
  x.proxy_on_log(id);
  callback = "delete";
  x.proxy_on_delete(id);
  if ((localReply ?? 200) !== expected) throw new Error(`request ${id}: status ${localReply ?? 200}, expected ${expected}`);
}

for (let i = 0; i < WARMUP; i++) request();
const pages0 = x.memory.buffer.byteLength;
for (const k of Object.keys(calls)) delete calls[k];
for (const k of Object.keys(byCallback)) delete byCallback[k];
allocated = allocations = 0;
// CPU time (user + system of this process), not wall time: other processes on a shared machine
// then inflate it less.
const times = [];
for (let r = 0; r < ROUNDS; r++) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < REQUESTS; i++) request();
  const c = process.cpuUsage(c0);
  times.push((c.user + c.system) / REQUESTS);
}
const n = REQUESTS * ROUNDS;
times.sort((a, b) => a - b);
const perKind = Object.entries(calls).sort().map(([k, v]) => `${k} ${(v / n).toFixed(2)}`).join(", ");
const total = Object.values(calls).reduce((a, b) => a + b, 0) / n;
console.log(JSON.stringify({
  wasm: wasmPath,
  cpu_us_per_request: { median: times[Math.floor(ROUNDS / 2)], min: times[0], max: times[ROUNDS - 1] },
  host_calls_per_request: total,
  host_calls: perKind,
  host_calls_by_callback: Object.fromEntries(Object.entries(byCallback).sort().map(([k, v]) => [k, +(v / n).toFixed(2)])),
  allocations_per_request: allocations / n,
  bytes_allocated_per_request: allocated / n,
  memory_bytes: x.memory.buffer.byteLength,
  memory_grew_during_run: x.memory.buffer.byteLength - pages0,
  upstream: Object.fromEntries([...filterState].filter(([k]) => k.startsWith("edgeward.upstream"))),
  record_bytes: (filterState.get("edgeward.log") || "").length,
  record: filterState.get("edgeward.log") ?? null,
  shared_data: { keys: shared.size, value_bytes: [...new Set([...shared.values()].map((v) => v.value.length))] },
}, null, 1));
