#!/usr/bin/env bash
# Runs edgeward: builds the plugin, gets Envoy if needed, starts the echo upstream and Envoy with
# envoy/envoy.yaml (policies/demo.json), and prints requests to try. Ctrl-C stops everything.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
RUN="$ROOT/.run"
mkdir -p "$RUN" "$ROOT/envoy/certs"

build_wasm
log "building the edgeward CLI and the echo upstream"
cargo build --quiet --release --bin edgeward --bin edgeward-echo
ENVOY="$(find_envoy)"
check_envoy "$ENVOY"

if [ ! -s envoy/certs/server.crt ]; then
  log "generating a self-signed certificate for localhost (envoy/certs/)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -keyout envoy/certs/server.key -out envoy/certs/server.crt 2>/dev/null
fi

# Demo secrets, made once and kept in .run/ (never printed): HMAC keys of the partner, the log key.
for name in PARTNER_A_KEY PARTNER_A_KEY_NEXT EDGEWARD_LOG_KEY; do
  [ -s "$RUN/$name" ] || head -c 32 /dev/urandom | base64 | tr -d '\n' > "$RUN/$name"
  export "$name=$(cat "$RUN/$name")"
done

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  log "stopped"
}
trap cleanup EXIT INT TERM

"${CARGO_TARGET_DIR:-$ROOT/target}/release/edgeward-echo" --listen 127.0.0.1:8080 > "$RUN/upstream.log" 2>&1 &
pids+=($!)
"$ENVOY" -c envoy/envoy.yaml --concurrency 2 --log-path "$RUN/envoy.log" > "$RUN/access.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { cat "$RUN/envoy.log" >&2; exit 1; }
  sleep 0.2
done

EW="${CARGO_TARGET_DIR:-$ROOT/target}/release/edgeward"
cat <<MSG

edgeward is running: HTTP 127.0.0.1:10000, HTTPS 127.0.0.1:10443 (self-signed), admin 127.0.0.1:9901.
Access log (one anonymized JSON record per request): $RUN/access.log   (tail -f it, or pipe to jq)
Envoy's log: $RUN/envoy.log

Try:
  # plain HTTP is redirected to HTTPS (301, Location: https://localhost:10443/...)
  curl -si 'http://localhost:10000/docs?token=abc'

  # over HTTPS: the upstream answers, with Strict-Transport-Security
  curl -sik https://localhost:10443/docs

  # a signed request (RFC 9421, hmac-sha256, body bound by Content-Digest); the key is in $RUN
  printf 'POST /partner/orders HTTP/1.1\r\nHost: localhost:10443\r\nContent-Type: application/json\r\n\r\n{"amount":10}' > $RUN/order.http
  mapfile -t sig < <(PARTNER_A_KEY=\$(cat $RUN/PARTNER_A_KEY) $EW sign --key-id partner-a --secret-env PARTNER_A_KEY \\
      --components @method,@authority,@path,@query,content-digest --random-nonce --print headers --request $RUN/order.http)
  curl -sik https://localhost:10443/partner/orders -H 'Content-Type: application/json' --data-binary '{"amount":10}' "\${sig[@]/#/-H}"
  # the same headers again: 401 (replayed nonce); without them: 401 with Accept-Signature

  # a burst that hits the per-client rate limit (20 per 10 s): 429 with Retry-After
  for i in \$(seq 25); do curl -sk -o /dev/null -w '%{http_code} ' https://localhost:10443/docs; done; echo

  # metrics
  curl -s 'http://127.0.0.1:9901/stats?filter=edgeward' | grep -v ': 0\$'

Ctrl-C stops Envoy and the upstream.
MSG
wait "${pids[1]}"
