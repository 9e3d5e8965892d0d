#!/usr/bin/env bash
# README command 2: installs what is missing, builds zerotrain with its tests,
# and runs the whole suite with ctest (which prints how many tests ran).
#
#   scripts/test.sh                  # build/ in the clone; ccache and LibTorch under ~/.cache/zerotrain
#   ZEROTRAIN_BUILD_DIR=/tmp/b scripts/test.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$root/scripts/bootstrap.sh")"
build="${ZEROTRAIN_BUILD_DIR:-$root/build}"
# Relative paths in the cache key let a fresh clone elsewhere reuse compiled objects.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1

start=$SECONDS
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$ZEROTRAIN_TORCH_PREFIX" \
  -DZEROTRAIN_BUILD_TESTS=ON \
  -DZEROTRAIN_BUILD_BENCHMARKS=ON \
  -DZEROTRAIN_WARNINGS_AS_ERRORS=ON
cmake --build "$build"
echo "[test.sh] configure + build: $((SECONDS - start)) s"
ctest --test-dir "$build" -j "$(nproc)" --output-on-failure --timeout 900
echo "[test.sh] total: $((SECONDS - start)) s"
