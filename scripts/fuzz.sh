#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers (fuzz/, cargo-fuzz on nightly; the crate itself stays on stable).
#
#   bash scripts/fuzz.sh [targets...]                 each target FUZZ_SECONDS (default 7) from its kept
#                                                     corpus; fails on any finding (CI does this)
#   bash scripts/fuzz.sh --long 1800 [targets...]     long runs, FUZZ_JOBS (default 2) at a time under
#                                                     nice, corpora kept in ~/.cache/edgeward/fuzz-corpus
#   bash scripts/fuzz.sh --cmin [targets...]          minimizes the long runs' corpora into fuzz/corpus/
#
# Prints per target: seconds, executions, coverage (libFuzzer's cov and ft), corpus size, findings.
# A finding's input is left in ~/.cache/edgeward/fuzz-artifacts/<target>/; keep it as
# fuzz/regressions/<target>/<finding-name> (tests/fuzz_regressions.rs runs it on stable).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

CARGO_FUZZ_VERSION=0.13.2
NIGHTLY="${FUZZ_TOOLCHAIN:-nightly}"
BUILD="$CACHE/fuzz-build"
ARTIFACTS="$CACHE/fuzz-artifacts"
LOGS="$CACHE/fuzz-logs"
mode=brief
seconds="${FUZZ_SECONDS:-7}"
case "${1:-}" in
  --long) mode=long; seconds="${2:?--long needs seconds}"; shift 2 ;;
  --cmin) mode=cmin; shift ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
fi

if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
  log "installing the $NIGHTLY toolchain (for cargo-fuzz only)"
  rustup toolchain install "$NIGHTLY" --profile minimal >&2
fi
FUZZ_BIN="$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION/bin"
if [ ! -x "$FUZZ_BIN/cargo-fuzz" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_BIN"
  cargo +"$NIGHTLY" install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" \
    --root "$(dirname "$FUZZ_BIN")" --quiet >&2
fi
export PATH="$FUZZ_BIN:$PATH"

log "building the fuzz targets (nightly, ASan, release with debug assertions)"
(cd fuzz && CARGO_TARGET_DIR="$BUILD" cargo +"$NIGHTLY" fuzz build -O 2>&1 | grep -v '^\s*Compiling' >&2)
BIN="$BUILD/$(rustc +"$NIGHTLY" -vV | sed -n 's/^host: //p')/release"
mkdir -p "$ARTIFACTS" "$LOGS"

# One run of target $1 for $2 seconds over corpus dir $3 (read and extended) and the kept corpus; log $4.
run_one() {
  local t="$1" secs="$2" corpus="$3" logf="$4"
  mkdir -p "$corpus" "$ARTIFACTS/$t"
  local args=(-max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t/"
              -timeout=10 -rss_limit_mb=2048 -max_len=8192)
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
  # Long runs go on past a finding (a child process per run; every finding saved as an artifact).
  [ "${FUZZ_FORK:-0}" = 1 ] && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  local status=0
  "$BIN/$t" "${args[@]}" "$corpus" "fuzz/corpus/$t" >"$logf" 2>&1 || status=$?
  return $status
}

# target seconds execs cov ft corpus findings, from a log.
report() {
  local t="$1" logf="$2" status="$3"
  local execs cov ft corp secs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1)
  # Fork mode: the parent's last status line counts every child's executions.
  if [ "${FUZZ_FORK:-0}" = 1 ]; then
    execs=$( (grep -oE '^#[0-9]+' "$logf" || true) | tail -1 | tr -d '#')
  fi
  secs=$( (grep -o 'Done [0-9]* runs in [0-9]* second' "$logf" || true) | tail -1 | awk '{print $5}')
  if [ -z "$secs" ]; then
    secs=$( (grep -oE ' time: [0-9]+s' "$logf" || true) | tail -1 | tr -dc '0-9')
  fi
  cov=$( (grep -o 'cov: [0-9]*' "$logf" || true) | tail -1 | awk '{print $2}')
  ft=$( (grep -o 'ft: [0-9]*' "$logf" || true) | tail -1 | awk '{print $2}')
  corp=$( (grep -oE 'corp: [0-9]+(/[0-9]+[a-zA-Z]*)?' "$logf" || true) | tail -1 | awk '{print $2}')
  local finding=none
  local found
  # Fork mode: the parent's last status line counts the children's failures (oom/timeout/crash).
  found=$( (grep -oE 'oom/timeout/crash: [0-9/]+' "$logf" || true) | tail -1 | awk '{print $2}')
  if [ "${FUZZ_FORK:-0}" = 1 ] && [ -n "$found" ] && [ "$found" != 0/0/0 ]; then
    finding="oom/timeout/crash: $found; artifacts in $ARTIFACTS/$t"
  elif [ "$status" != 0 ]; then
    finding="FAILED: $( (grep -m1 -E '^(thread .* panicked|==[0-9]+==ERROR)' "$logf" || true) | cut -c1-160) ($( (grep -o "Test unit written to .*" "$logf" || true) | tail -1))"
  fi
  printf '| %s | %s s | %s | cov %s, ft %s | %s | %s |\n' "$t" "${secs:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$finding"
}

summary="$LOGS/summary-$mode.md"
printf '| target | time | executions | coverage | corpus (inputs/bytes) | findings |\n|---|---|---|---|---|---|\n' >"$summary"
failed=0
case "$mode" in
  brief)
    for t in "${targets[@]}"; do
      work=$(mktemp -d)
      status=0
      run_one "$t" "$seconds" "$work" "$LOGS/$t-brief.log" || status=$?
      rm -rf "$work"
      report "$t" "$LOGS/$t-brief.log" "$status" | tee -a "$summary"
      [ "$status" = 0 ] || { failed=1; tail -30 "$LOGS/$t-brief.log" >&2; }
    done
    ;;
  long)
    export FUZZ_FORK=1
    jobs_max="${FUZZ_JOBS:-2}"
    # Each run uses a copy of its binary taken as it starts: fork mode starts every child from the file,
    # which a later build would replace.
    snap="$CACHE/fuzz-long-bin/$$"
    mkdir -p "$snap"
    for t in "${targets[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
      log "$t: $seconds s (log: $LOGS/$t-long.log)"
      cp "$BIN/$t" "$snap/"
      ( status=0
        nice -n 19 bash -c "$(declare -f run_one); cd '$ROOT'; BIN='$snap' ARTIFACTS='$ARTIFACTS' run_one '$t' '$seconds' '$CACHE/fuzz-corpus/$t' '$LOGS/$t-long.log'" || status=$?
        echo "$status" >"$LOGS/$t-long.status" ) &
    done
    wait
    for t in "${targets[@]}"; do
      status=$(cat "$LOGS/$t-long.status" 2>/dev/null || echo 1)
      report "$t" "$LOGS/$t-long.log" "$status" | tee -a "$summary"
      [ "$status" = 0 ] || failed=1
    done
    ;;
  cmin)
    for t in "${targets[@]}"; do
      merged=$(mktemp -d)
      "$BIN/$t" -merge=1 -max_len=8192 "$merged" "fuzz/corpus/$t" "$CACHE/fuzz-corpus/$t" >"$LOGS/$t-cmin.log" 2>&1
      rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t" && cp "$merged"/* "fuzz/corpus/$t/"
      rm -rf "$merged"
      echo "$t: $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sh "fuzz/corpus/$t" | cut -f1)"
    done
    ;;
esac
echo "summary: $summary" >&2
exit "$failed"
