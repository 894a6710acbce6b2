// Verifies a signed request with one of the npm libraries.
//
// stdin: the request as for sign.mjs (with its Signature-Input and Signature headers), plus "key_id",
//        "alg", "secret_b64" | "public_key_pem", "max_age"? (seconds; null: no age limit), "label"?,
//        "check_body"? (default true: when a body is given, Content-Digest must match it; node:crypto,
//        since neither library checks digests).
// stdout: {"library", "ok": true, "label"?, "components"?} or {"library", "ok": false, "error"}. Exit 0 either
// way; non-zero only when the driver failed. stdin may also be an array: stdout is then the array of results.
import * as m from "./message.mjs";

const input = await m.readSpec();
if (Array.isArray(input)) {
  const results = [];
  for (const spec of input) results.push(await verify(spec));
  m.emit(results);
} else {
  m.emit(await verify(input));
}

async function verify(spec) {
  const { module: lib, library } = m.load(spec.lib);
  const lines = m.fieldLines(spec);
  const hmac = spec.alg === "hmac-sha256";
  const secret = hmac ? Buffer.from(spec.secret_b64, "base64") : null;
  const publicKey = hmac ? null : m.createPublicKey(spec.public_key_pem);
  const maxAge = spec.max_age === undefined ? 300 : spec.max_age;

  function digestError() {
    const bytes = m.body(spec);
    if (bytes.length === 0 || spec.check_body === false) return null;
    const field = lines.find(([name]) => name.toLowerCase() === "content-digest");
    if (!field) return "no Content-Digest for the body";
    const alg = field[1].split("=")[0].trim();
    if (!["sha-256", "sha-512"].includes(alg)) return `Content-Digest algorithm ${alg}`;
    return field[1].trim() === m.contentDigest(alg, bytes) ? null : "Content-Digest does not match the body";
  }

  try {
    if (spec.lib === "http-message-signatures") {
      const headers = m.headerObject(lines);
      const verifier = hmac ? lib.createVerifier(secret, "hmac-sha256") : lib.createVerifier(publicKey, "ed25519");
      let found = false;
      const ok = await lib.httpbis.verifyMessage(
        {
          maxAge: maxAge ?? undefined,
          keyLookup: async (params) => {
            if (params.keyid !== spec.key_id) return null;
            found = true;
            return { id: spec.key_id, algs: [spec.alg], verify: verifier };
          },
        },
        { method: spec.method, url: spec.url, headers },
      );
      const digest = digestError();
      if (ok === true && !digest) return { library, ok: true };
      return { library, ok: false, error: digest ?? (found ? `verifyMessage returned ${ok}` : "no signature with the key id") };
    } else {
      const descriptor = {
        kind: "request",
        method: spec.method,
        targetUri: spec.url,
        requestTarget: spec.request_target ?? undefined,
        fields: lines.map(([name, value]) => ({ name, value })),
      };
      let verifier;
      if (hmac) {
        verifier = { algorithm: "hmac-sha256", verify: m.hmacVerify(secret) };
      } else {
        const der = publicKey.export({ format: "der", type: "spki" });
        const key = await crypto.subtle.importKey("spki", der, { name: "Ed25519" }, false, ["verify"]);
        verifier = lib.webcrypto.verifier(key);
      }
      const verified = await lib.verifySignature(descriptor, {
        label: spec.label ?? undefined,
        policy: {
          algorithms: [spec.alg],
          requiredComponents: [],
          requiredParameters: ["keyid"],
          maxAge: maxAge ?? undefined,
          clockSkew: 5,
        },
        resolveVerifier: (candidate) => {
          if (candidate.parameters.keyid !== spec.key_id) throw new Error("unknown key id");
          return verifier;
        },
      });
      const digest = digestError();
      if (digest) return { library, ok: false, error: digest };
      return { library, ok: true, label: verified.label, components: verified.components.map((c) => lib.componentIdentity(c)) };
    }
  } catch (e) {
    return { library, ok: false, error: `${e.name}: ${e.message}${e.cause ? ` (${e.cause.message ?? e.cause})` : ""}` };
  }
}
