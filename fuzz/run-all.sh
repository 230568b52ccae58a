#!/usr/bin/env bash
# Fuzzes every target in turn (docs/FUZZING.md): SECONDS_PER_TARGET each
# (default 600), in one process (libFuzzer's default; -jobs=1 would run the
# same single job in a child logging to ./fuzz-0.log), at the lowest CPU
# priority. New inputs go to $WORK/corpus/<target> (default
# /tmp/cellucid-fuzz), libFuzzer's output and final statistics to
# $WORK/logs/<target>.log, crashes to fuzz/artifacts/<target>/.
# Usage: fuzz/run-all.sh [target...]
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-600}
WORK=${WORK:-/tmp/cellucid-fuzz}
TARGET_DIR=${CARGO_TARGET_DIR:-fuzz/target}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list --fuzz-dir fuzz)
fi
mkdir -p "$WORK/logs"
for target in "${targets[@]}"; do
  mkdir -p "$WORK/corpus/$target"
  echo "== $target: ${SECONDS_PER_TARGET}s from $(date -u +%H:%M:%S)"
  RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run --fuzz-dir fuzz --target-dir "$TARGET_DIR" \
    "$target" "$WORK/corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
    >"$WORK/logs/$target.log" 2>&1
  echo "   exit $?; $(grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$WORK/logs/$target.log" | tr '\n' ' ')"
done
