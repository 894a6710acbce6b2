// Signs a request with one of the npm libraries and prints the headers to add.
//
// stdin: {"lib", "method", "url", "request_target"?, "headers": [[name, value | {"b64"}]], "body_b64"?,
//         "key_id", "alg": "hmac-sha256" | "ed25519", "secret_b64" | "private_key_pem",
//         "components": ["@method", "x-dict;key=\"a\"", ...], "created", "expires"?, "nonce"?, "tag"?,
//         "label"?, "include_alg"? (default true), "content_digest"?: "sha-256" | "sha-512"}
// stdout: {"library", "headers": [[name, value]], "base"} or, when the library refuses, {"library", "error"}
// (exit 1). With "content_digest", Content-Digest (node:crypto) is added and covered.
// stdin may also be an array of such objects: stdout is then the array of results (exit 0).
import * as m from "./message.mjs";

const input = await m.readSpec();
if (Array.isArray(input)) {
  const results = [];
  for (const spec of input) results.push(await sign(spec));
  m.emit(results);
} else {
  const result = await sign(input);
  m.emit(result);
  process.exitCode = result.error ? 1 : 0;
}

async function sign(spec) {
  const { module: lib, library } = m.load(spec.lib);
  const lines = m.fieldLines(spec);
  const added = [];
  const components = [...spec.components];
  if (spec.content_digest) {
    const value = m.contentDigest(spec.content_digest, m.body(spec));
    lines.push(["Content-Digest", value]);
    added.push(["Content-Digest", value]);
    if (!components.includes("content-digest")) components.push("content-digest");
  }
  const hmac = spec.alg === "hmac-sha256";
  const secret = hmac ? Buffer.from(spec.secret_b64, "base64") : null;
  const privateKey = hmac ? null : m.createPrivateKey(spec.private_key_pem);
  const includeAlg = spec.include_alg ?? true;
  let base = null;

  try {
    if (spec.lib === "http-message-signatures") {
      const headers = m.headerObject(lines);
      const signer = lib.createSigner(hmac ? secret : privateKey, spec.alg, spec.key_id);
      const sign = signer.sign;
      signer.sign = async (data) => {
        base = Buffer.from(data).toString("latin1");
        return sign(data);
      };
      const params = ["created", "keyid"];
      const paramValues = { created: new Date(spec.created * 1000), keyid: spec.key_id };
      if (includeAlg) params.push("alg");
      if (spec.expires != null) {
        params.push("expires");
        paramValues.expires = new Date(spec.expires * 1000);
      }
      for (const name of ["nonce", "tag"]) {
        if (spec[name] != null) {
          params.push(name);
          paramValues[name] = spec[name];
        }
      }
      const signed = await lib.httpbis.signMessage(
        { key: signer, name: spec.label ?? "sig1", fields: components, params, paramValues },
        { method: spec.method, url: spec.url, headers },
      );
      for (const [name, value] of Object.entries(signed.headers)) {
        if (["signature", "signature-input"].includes(name.toLowerCase())) added.push([name, value]);
      }
    } else {
      const descriptor = {
        kind: "request",
        method: spec.method,
        targetUri: spec.url,
        requestTarget: spec.request_target ?? undefined,
        fields: lines.map(([name, value]) => ({ name, value })),
      };
      let signer;
      if (hmac) {
        // The library has no HMAC provider; signers are the caller's (its Signer interface).
        const sign = m.hmacSign(secret);
        signer = { algorithm: "hmac-sha256", sign: (data) => new Uint8Array(sign(data)) };
      } else {
        // Its WebCrypto provider, with the key imported into Node's WebCrypto.
        const der = privateKey.export({ format: "der", type: "pkcs8" });
        const key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
        signer = lib.webcrypto.signer(key);
      }
      const inner = signer;
      signer = {
        algorithm: inner.algorithm,
        sign: (data) => {
          base = Buffer.from(data).toString("latin1");
          return inner.sign(data);
        },
      };
      const parameters = { created: spec.created, keyid: spec.key_id };
      if (includeAlg) parameters.alg = spec.alg;
      if (spec.expires != null) parameters.expires = spec.expires;
      if (spec.nonce != null) parameters.nonce = spec.nonce;
      if (spec.tag != null) parameters.tag = spec.tag;
      const fields = await lib.createSignature(descriptor, {
        label: spec.label ?? "sig1",
        components: components.map((c) => {
          const { name, params } = m.parseComponent(c);
          return lib.component(name, params);
        }),
        parameters,
        signer,
      });
      added.push(["Signature-Input", fields.signatureInput], ["Signature", fields.signature]);
    }
  } catch (e) {
    return { library, error: `${e.name}: ${e.message}` };
  }
  return { library, headers: added, base };
}
