// The request JSON shared by sign.mjs and verify.mjs (the same form as message.py; see
// tests/e2e_interop.rs), and the two npm libraries, loaded from the `npm ci` directory named by
// EDGEWARD_INTEROP_NODE (node_modules is outside the clone, so plain `import` cannot find them).
//
// "lib" picks the library: "http-message-signatures" (dhensby, node-http-message-signatures) or
// "http-message-sig" (Cloudflare's web-bot-auth). Neither computes Content-Digest: node:crypto does.
import { createHash, createHmac, createPrivateKey, createPublicKey, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const prefix = process.env.EDGEWARD_INTEROP_NODE;
if (!prefix) {
  console.error("EDGEWARD_INTEROP_NODE is not set (the npm ci directory)");
  process.exit(2);
}
export const require = createRequire(join(prefix, "package.json"));

export function load(lib) {
  if (lib !== "http-message-signatures" && lib !== "http-message-sig") {
    throw new Error(`unknown lib ${lib}`);
  }
  const pkg = JSON.parse(readFileSync(join(prefix, "node_modules", lib, "package.json"), "utf8"));
  return { module: require(lib), library: `${lib} ${pkg.version}` };
}

export async function readSpec() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// A header value: a string, or {"b64"} for bytes. Node's own HTTP parser hands such bytes to
// applications as Latin-1 strings ("binary"), so that is the form given to the libraries.
export function fieldText(value) {
  if (typeof value === "object" && value !== null) return Buffer.from(value.b64, "base64").toString("latin1");
  return Buffer.from(value, "utf8").toString("latin1");
}

export function fieldLines(spec) {
  return spec.headers.map(([name, value]) => [name, fieldText(value)]);
}

// Headers as npm http-message-signatures takes them: one entry per name, repeated lines as an array.
export function headerObject(lines) {
  const headers = {};
  for (const [name, value] of lines) {
    const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase()) ?? name;
    headers[key] = key in headers ? [].concat(headers[key], value) : value;
  }
  return headers;
}

export function body(spec) {
  return Buffer.from(spec.body_b64 ?? "", "base64");
}

export function contentDigest(alg, bytes) {
  const hash = { "sha-256": "sha256", "sha-512": "sha512" }[alg];
  return `${alg}=:${createHash(hash).update(bytes).digest("base64")}:`;
}

// Document form (`x-dict;key="a"`, `@query-param;name="id"`) to a name and parameters.
export function parseComponent(text) {
  const [name, ...rest] = text.split(";");
  const params = {};
  for (const p of rest) {
    const [k, v] = p.split("=");
    params[k] = v === undefined ? true : JSON.parse(v);
  }
  return { name, params };
}

export function hmacSign(secret) {
  return (data) => createHmac("sha256", secret).update(data).digest();
}

export function hmacVerify(secret) {
  return (data, signature) => {
    const expected = createHmac("sha256", secret).update(data).digest();
    return signature.length === expected.length && timingSafeEqual(Buffer.from(signature), expected);
  };
}

export { createPrivateKey, createPublicKey };
