#!/usr/bin/env bash
# Bounded fuzz run of every cargo-fuzz target in fuzz/ (a CI smoke test).
#
# Builds all targets, then runs each for FUZZ_SECONDS seconds (default 15),
# FUZZ_JOBS targets at a time (default: the number of cores), starting from
# fuzz/seeds/<target>/ plus whatever fuzz/corpus/<target>/ already holds.
# Prints, per target, the executions, exec/s, coverage and crashes, and
# exits non-zero if any target crashed (or failed to run). A crashing input
# is kept in fuzz/artifacts/<target>/.
#
#   scripts/fuzz-smoke.sh                      # smoke run, ~15 s per target
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh     # longer run
#   FUZZ_TARGETS="answer wire_frame" scripts/fuzz-smoke.sh
#
# Other knobs: FUZZ_SANITIZER (none | address; default none: codext and its
# parsing dependencies are safe Rust, and an ASan build takes about twice as
# long), FUZZ_MAX_LEN (default 8192 bytes), FUZZ_CODEGEN_UNITS (default 16:
# a much faster build for slightly slower fuzzing; 1 is cargo-fuzz's own
# default), CARGO_TARGET_DIR (default fuzz/target).
#
# cargo-fuzz needs nightly flags; on a stable toolchain RUSTC_BOOTSTRAP=1
# allows them. cargo-fuzz is installed with `cargo install` if missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ_DIR=$ROOT/fuzz
SECONDS_PER_TARGET=${FUZZ_SECONDS:-15}
SANITIZER=${FUZZ_SANITIZER:-none}
MAX_LEN=${FUZZ_MAX_LEN:-8192}
CGU=${FUZZ_CODEGEN_UNITS:-16}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FUZZ_DIR/target}
export RUSTC_BOOTSTRAP=1
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$ROOT"
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
fi
[ "${#TARGETS[@]}" -gt 0 ] || { echo "fuzz-smoke: no fuzz targets" >&2; exit 1; }

echo "fuzz-smoke: building ${#TARGETS[@]} targets (sanitizer $SANITIZER, target dir $CARGO_TARGET_DIR)"
build_start=$(date +%s)
cargo fuzz build --fuzz-dir "$FUZZ_DIR" -O -a --sanitizer "$SANITIZER" \
    --codegen-units "$CGU" --target "$TRIPLE"
build_secs=$(( $(date +%s) - build_start ))
echo "fuzz-smoke: build took ${build_secs}s"

BIN_DIR=$CARGO_TARGET_DIR/$TRIPLE/release
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/codext-fuzz-logs.XXXXXX")
# Scratch files of targets that need a file path (helper_config).
export CODEXT_FUZZ_TMP=$LOG_DIR/scratch
trap 'rm -rf "$LOG_DIR"' EXIT

run_one() {
    local t=$1 corpus=$FUZZ_DIR/corpus/$1 seeds=$FUZZ_DIR/seeds/$1
    local artifacts=$FUZZ_DIR/artifacts/$1
    mkdir -p "$corpus" "$artifacts"
    local dirs=("$corpus")
    [ -d "$seeds" ] && dirs+=("$seeds")
    # Marker: artifacts newer than it were written by this run.
    touch "$LOG_DIR/$t.start"
    local rc=0
    "$BIN_DIR/$t" "${dirs[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$MAX_LEN" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$LOG_DIR/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$LOG_DIR/$t.rc"
}

run_start=$(date +%s)
for t in "${TARGETS[@]}"; do
    [ -x "$BIN_DIR/$t" ] || { echo "fuzz-smoke: $BIN_DIR/$t is missing" >&2; exit 1; }
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n || true
    done
    echo "fuzz-smoke: running $t for ${SECONDS_PER_TARGET}s"
    run_one "$t" &
done
wait
run_secs=$(( $(date +%s) - run_start ))

failed=0
printf '\n%-14s %12s %10s %8s %8s %8s %8s  %s\n' target execs exec/s cov ft corpus crashes result
for t in "${TARGETS[@]}"; do
    log=$LOG_DIR/$t.log
    rc=$(cat "$LOG_DIR/$t.rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    # Last libFuzzer status line: "#N  ...  cov: C ft: F corp: U/S ...".
    status=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$status")
    crashes=$(find "$FUZZ_DIR/artifacts/$t" -maxdepth 1 -type f \
        \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) \
        -newer "$LOG_DIR/$t.start" | wc -l)
    result=ok
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        result="FAILED (exit $rc)"
        failed=1
    fi
    printf '%-14s %12s %10s %8s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes" "$result"
done

for t in "${TARGETS[@]}"; do
    rc=$(cat "$LOG_DIR/$t.rc" 2>/dev/null || echo 1)
    [ "$rc" = 0 ] && continue
    echo
    echo "=== $t: exit $rc; end of its log ==="
    grep -A3 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$LOG_DIR/$t.log" | head -20 || true
    grep -E 'Test unit written to|^Base64:' "$LOG_DIR/$t.log" || true
    echo "reproduce: $BIN_DIR/$t <artifact>"
done

echo
echo "fuzz-smoke: build ${build_secs}s, fuzzing ${run_secs}s (${#TARGETS[@]} targets, ${SECONDS_PER_TARGET}s each, $JOBS at a time)"
if [ "$failed" != 0 ]; then
    echo "fuzz-smoke: FAILED: a target crashed (inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "fuzz-smoke: all targets ran clean"
