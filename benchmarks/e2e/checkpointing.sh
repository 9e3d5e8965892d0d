#!/usr/bin/env bash
# The activation-checkpointing table of docs/performance.md: train_gpt's model
# at a few depths, plain against every block recomputed (e2e_bench
# checkpointing: interleaved ms/step and the peak bytes of a step counted by
# an allocation counter), one process per depth.
#   benchmarks/e2e/checkpointing.sh [BUILD_DIR] [e2e_bench options...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"; shift || true
eval "$("$root/scripts/bootstrap.sh")"
echo "| layers | configuration | ms/step | time / plain | peak bytes in a step | peak / plain's |"
echo "|---|---|---|---|---|---|"
for layers in 2 4 8; do
  "$build/benchmarks/e2e_bench" checkpointing --layers "$layers" "$@" 2>&1 \
    | grep '^| stage 0' \
    | awk -F'|' -v l="$layers" '{ sub(/ \(.*\)/, "", $4); printf "| %s |%s|%s|%s|%s|%s|\n", l, $2, $3, $4, $5, $6 }'
done
