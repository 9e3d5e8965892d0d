#!/usr/bin/env bash
# README command 1, the main job. Sets everything up (scripts/bootstrap.sh),
# builds train_gpt, and trains a byte-level GPT on Debian's `fortunes` with
# ZeRO stage 2 on 2 CPU ranks (about 3 minutes of training on 2 cores). It
# prints the loss every 50 steps, the validation loss, a sample of generated
# text and where the checkpoint is, then plots the csv_monitor logs.
#
#   scripts/main_job.sh                          # 600 steps into runs/train_gpt
#   scripts/main_job.sh --resume runs/train_gpt/checkpoints --steps 800
#
# Extra arguments go to train_gpt (see examples/train_gpt/train_gpt.cpp).
# ZEROTRAIN_MAIN_NPROC sets the number of ranks (default 2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$root/scripts/bootstrap.sh")"
build="${ZEROTRAIN_MAIN_BUILD_DIR:-$root/build-main}"
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1

echo "== Building train_gpt (libzerotrain and the example only) =="
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$ZEROTRAIN_TORCH_PREFIX" \
  -DZEROTRAIN_BUILD_TESTS=OFF -DZEROTRAIN_BUILD_BENCHMARKS=OFF -DZEROTRAIN_BUILD_PYTHON=OFF \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target train_gpt zerotrain_cli

cd "$root"  # configs/train_gpt_zero2.json writes its monitors under ./runs
nproc="${ZEROTRAIN_MAIN_NPROC:-2}"
echo
echo "== Training: ZeRO stage 2 on $nproc CPU ranks (configs/train_gpt_zero2.json) =="
# One thread per rank: the ranks share the machine's cores.
OMP_NUM_THREADS=1 "$ZEROTRAIN_VENV/bin/torchrun" --no-python --standalone --nproc-per-node="$nproc" \
  "$build/examples/train_gpt/train_gpt" --config configs/train_gpt_zero2.json \
  --save runs/train_gpt/checkpoints "$@"
echo
echo "== Monitoring =="
"$ZEROTRAIN_PYTHON" scripts/plot_run.py runs/train_gpt
echo "CSV logs: runs/train_gpt/*.csv; TensorBoard: $ZEROTRAIN_VENV/bin/tensorboard --logdir runs"
echo "Checkpoint contents: $build/zerotrain checkpoint inspect runs/train_gpt/checkpoints"
