#!/usr/bin/env bash
# The GPU check (issue [gpu]): on a machine with an NVIDIA GPU, runs every
# CUDA test and the GPU rows of the benchmarks, and prints one summary.
#
#   scripts/gpu_check.sh              # builds build-gpu/ with CUDA here (needs bootstrap's packages)
#   scripts/gpu_check.sh .gpu         # runs the programs scripts/gpu_bundle.sh packed into .gpu
#
# Each step has a time limit and the whole check a budget (ZEROTRAIN_GPU_BUDGET
# seconds, default 480): steps past it are reported as not run. Logs go to
# $OUT (or gpu-check/ in the clone): gpu_check.log holds every step's output.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/gpu-check}"
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
budget="${ZEROTRAIN_GPU_BUDGET:-480}"

if [[ $# -ge 1 ]]; then
  # Prebuilt: put the bundle where its programs look (their RUNPATH and the
  # tests' configs/ name the clone they were built in).
  bundle="$(cd "$1" && pwd)"
  src="$(cat "$bundle/SOURCE_ROOT")" build_dir="$(cat "$bundle/BUILD_DIR")"
  if [[ "$src" != "$root" ]]; then
    [[ -e "$src" ]] && { echo "gpu_check: $src exists and is not this clone" >&2; exit 2; }
    mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
  fi
  [[ -e "$build_dir" ]] || ln -s "$bundle" "$build_dir"
  build="$build_dir"
  torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  cudart="$(python3 -c 'import glob, os, torch; d = os.path.dirname(os.path.dirname(torch.__file__)); print(":".join(sorted(set(os.path.dirname(p) for p in glob.glob(d + "/nvidia/**/libcudart.so*", recursive=True)))))')"
  export LD_LIBRARY_PATH="$torch_lib:$cudart:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  data="$bundle/fortunes"
  python=python3
else
  eval "$("$root/scripts/bootstrap.sh")"
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  build="$root/build-gpu"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$ZEROTRAIN_TORCH_PREFIX" \
    -DZEROTRAIN_BUILD_TESTS=ON -DZEROTRAIN_BUILD_BENCHMARKS=ON -DZEROTRAIN_WITH_CUDA=ON >>"$log" 2>&1 &&
    cmake --build "$build" >>"$log" 2>&1 || { tail -40 "$log"; echo "gpu_check: build failed" >&2; exit 1; }
  data=/usr/share/games/fortunes
  python="$ZEROTRAIN_PYTHON"
fi

start=$SECONDS
summary=()
# step NAME LIMIT_S COMMAND...: runs it with a limit, appends its output to the log.
step() {
  local name="$1" limit="$2"; shift 2
  if (( SECONDS - start + limit / 2 > budget )); then summary+=("$(printf '%-34s %s' "$name" "NOT RUN (budget)")"); return; fi
  local t0=$SECONDS
  echo "===== $name: $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$? verdict
  case $rc in 0) verdict=ok ;; 124|137) verdict="TIMEOUT ($limit s)" ;; *) verdict="FAILED rc=$rc" ;; esac
  echo "===== $name: $verdict in $((SECONDS - t0)) s" >>"$log"
  summary+=("$(printf '%-34s %-18s %4d s' "$name" "$verdict" $((SECONDS - t0)))")
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv >>"$log" 2>&1
gpt2=(--layers 12 --width 768 --heads 12 --context 1024)

# Correctness first: kernels against the fp64 reference and ATen, NCCL, the engine.
step "kernels (optim_cuda_test)" 180 "$build/tests/optim_cuda_test"
step "nccl collectives (nccl_test)" 90 "$build/tests/nccl_test"
step "engine on CUDA (EngineCuda.*)" 180 "$build/tests/engine_test" --gtest_filter='EngineCuda.*'
# Two ranks on the one GPU under NCCL: initialize names them before any
# collective on the model (Note [One GPU per rank under NCCL]).
if [[ "$(nvidia-smi -L 2>/dev/null | wc -l)" == 1 ]]; then
  step "shared GPU named under NCCL" 120 bash -c '"$1" -m torch.distributed.run --no-python --standalone \
    --nproc-per-node=2 "$2" --config "$4" --device cuda --bar off --steps 2 --data "$3" 2>&1 | tee /dev/stderr |
    grep -q "NCCL needs one GPU per rank, but ranks 0 and 1 both use cuda:0"' _ "$python" \
    "$build/examples/train_gpt/train_gpt" "$data" "$root/configs/train_gpt_zero2.json"
fi
# Figures.
step "fused optimizers (optim_bench)" 150 "$build/benchmarks/optim_bench" --device cuda --params 1000000000 --tensors 200 --steps 10
step "GPT-2 124M bf16 (e2e overhead)" 150 "$build/benchmarks/e2e_bench" overhead --device cuda --dtype bf16 "${gpt2[@]}" --batch 8 --steps 10 --rounds 3 --data "$data"
step "GPT-2 124M PyTorch loop" 120 "$python" "$root/benchmarks/e2e/pytorch_gpt.py" --device cuda "${gpt2[@]}" --batch 8 --steps 20 --peak-tflops 989.4
step "offload bf16 (e2e offload)" 150 "$build/benchmarks/e2e_bench" offload --device cuda --dtype bf16 "${gpt2[@]}" --batch 8 --steps 5 --rounds 3 --data "$data"
step "stage 3 bf16 (e2e stage3)" 120 "$build/benchmarks/e2e_bench" stage3 --device cuda --dtype bf16 "${gpt2[@]}" --batch 8 --steps 5 --rounds 3 --data "$data"
step "train_gpt stage 3 + offload + AC" 90 "$build/examples/train_gpt/train_gpt" --device cuda --bar off \
  --config "$root/configs/zero3_offload_checkpointing_gpt.json" --checkpoint-activations on --steps 40 --data "$data"

# The Python package on the GPU: built against this build (as
# tests/python/install_and_pytest.sh does), then DeepSpeed-style training
# against DDP + torch.optim.AdamW on CUDA, at N = 1 (NCCL) and, on a one-GPU
# machine, N = 2 sharing it through Gloo. A bundle carries no extension (it
# would be built for this machine's Python, not the GPU machine's).
if [[ -z "${bundle:-}" ]]; then
  parity="$root/python/tests/workers/parity_worker.py"
  step "python package builds" 300 bash -c 'cmake --install "$1" --prefix "$1/python-prefix" >/dev/null &&
    "$2" -m pip install -q --no-build-isolation --no-deps "$3/python" \
      -Ccmake.define.CMAKE_PREFIX_PATH="$1/python-prefix" -Cbuild-dir="$1/python-build"' _ "$build" "$python" "$root"
  step "python parity on CUDA (N=1)" 120 "$python" -m torch.distributed.run --standalone --nproc-per-node=1 \
    "$parity" --device cuda
  if [[ "$(nvidia-smi -L 2>/dev/null | wc -l)" == 1 ]]; then
    step "python parity, 2 ranks 1 GPU (gloo)" 150 "$python" -m torch.distributed.run --standalone \
      --nproc-per-node=2 "$parity" --device cuda --backend gloo
  fi
else
  summary+=("$(printf '%-34s %s' "python package on CUDA" "NOT RUN (bundle: build it on the GPU machine)")")
fi

# Memory errors and races in the kernels (the >2 Gi-element case is left out: too slow under the tool).
if command -v compute-sanitizer >/dev/null; then
  step "compute-sanitizer memcheck" 120 compute-sanitizer --tool memcheck --error-exitcode 3 \
    "$build/tests/optim_cuda_test" --gtest_filter='-*BeyondTwoGi*'
  step "compute-sanitizer racecheck" 120 compute-sanitizer --tool racecheck --error-exitcode 3 \
    "$build/tests/optim_cuda_test" --gtest_filter='*Norms*:*Lamb*'
fi

echo "---- tables ----"
grep -E '^\||^PyTorch AdamW' "$log" | cut -c1-240
echo "---- summary (log: $log) ----"
printf '%s\n' "${summary[@]}"
for s in "${summary[@]}"; do [[ "$s" == *FAILED* || "$s" == *TIMEOUT* ]] && exit 1; done
exit 0
