# Docker for tests/e2e_docker.rs, sourced by scripts/test.sh after common.sh: a reachable Docker engine, a
# compose command (`docker compose` or Debian's docker-compose) and Debian's docker-registry, installed with apt
# and started here when missing and running as root; stop_docker stops the engine this script started (by its
# pid), nothing else.
DOCKERD_PID=""

have_compose() {
  { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; } ||
    docker-compose version >/dev/null 2>&1
}

docker_up() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

ensure_docker() {
  local pkgs=()
  docker_up || command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
  have_compose || pkgs+=(docker-compose)
  # The registry the plugin image test pushes to (a local one, on loopback).
  command -v docker-registry >/dev/null 2>&1 || pkgs+=(docker-registry)
  if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      log "Docker: ${pkgs[*]} missing and not root: not installed (the Docker tests say why)"
    elif command -v apt-get >/dev/null 2>&1; then
      log "Docker: installing ${pkgs[*]} (apt)"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } >/dev/null 2>&1 ||
        log "Docker: apt-get install ${pkgs[*]} failed"
    else
      log "Docker: ${pkgs[*]} missing and no apt-get"
    fi
  fi
  if docker_up; then
    log "Docker: using the running engine"
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null 2>&1; then
    log "Docker: no engine running, and none can be started here (root and dockerd needed)"
    return 0
  fi
  # No bridge and no iptables rules: the tests' containers use host networking only, and the machine's
  # firewall stays as it is.
  log "Docker: starting dockerd (its log: $CACHE/dockerd.log)"
  dockerd --iptables=false --bridge=none >"$CACHE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  local _
  for _ in $(seq 1 120); do
    docker_up && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  if ! docker_up; then
    log "Docker: dockerd did not come up; the end of its log:"
    tail -n 5 "$CACHE/dockerd.log" >&2 || true
  fi
}

stop_docker() {
  [ -n "$DOCKERD_PID" ] || return 0
  log "Docker: stopping the dockerd started here (pid $DOCKERD_PID)"
  kill "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  DOCKERD_PID=""
}
