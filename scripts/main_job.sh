#!/usr/bin/env bash
# README command 1, the main job. Until the training engine lands it builds the
# `zerotrain` tool, validates every example config at 2 data-parallel ranks and
# prints the model-state memory a GPT-2-small-sized model needs per rank.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$root/scripts/bootstrap.sh")"
build="${ZEROTRAIN_BUILD_DIR:-$root/build}"
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$ZEROTRAIN_TORCH_PREFIX" >/dev/null
cmake --build "$build" --target zerotrain_cli
zt="$build/zerotrain"

echo
echo "== Validating configs/*.json at world size 2 =="
"$zt" config check --world-size 2 --hidden-size 768 "$root"/configs/*.json
echo
echo "== What configs/zero2_bf16.json resolves to at world size 2 (selected keys) =="
"$zt" config check --world-size 2 "$root/configs/zero2_bf16.json" | "$ZEROTRAIN_PYTHON" "$root/scripts/summarize_config.py"
echo
echo "== Model states per rank for 124M parameters (GPT-2 small) on 2 ranks =="
"$zt" estimate --params 124M --world-size 2 --dtype bf16
