#!/usr/bin/env bash
# The scaling table of docs/performance.md: e2e_bench scaling at N = 1, 2 for
# ZeRO stages 0-3, one torchrun launch per row (so each row's peak RSS is its own).
#   benchmarks/e2e/scaling.sh [BUILD_DIR] [e2e_bench options...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"; shift || true
eval "$("$root/scripts/bootstrap.sh")"
echo "| N | stage | ms/step (slowest rank) | tokens/s | model states per rank (engine) | zerotrain estimate | measured / estimate | peak RSS per rank |"
echo "|---|---|---|---|---|---|---|---|"
# Stage 3 twice: prefetching one block ahead (the bucket of one block at the
# default width 256: 12 x 256^2 + 13 x 256 elements) and without prefetch;
# blocks are never persistent (--persistence 0).
block=$((12 * 256 * 256 + 13 * 256))
for n in 1 2; do
  for stage in 0 1 2 "3 --persistence 0 --prefetch-bucket $block" "3 --persistence 0 --prefetch-bucket 0"; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$((2 / n)) "$ZEROTRAIN_VENV/bin/torchrun" --no-python --standalone --nproc-per-node=$n \
      "$build/benchmarks/e2e_bench" scaling --stage $stage "$@" 2>&1 | grep '^|' | sed "s/^| $n | 3 |/| $n | 3 (${stage#3 }) |/"
  done
done
