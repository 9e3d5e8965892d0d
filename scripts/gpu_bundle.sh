#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh runs into one folder that travels to a GPU
# machine which cannot build zerotrain itself (no Debian packages, no network):
# builds build-gpu/ here with CUDA for the GPU's architecture, then copies the
# stripped test and benchmark programs, libzerotrain and the fortunes corpus.
#
#   scripts/gpu_bundle.sh [DEST=.gpu] [ARCH=90]
#
# The programs keep this clone's paths (their RUNPATH and the tests' configs/
# folder); gpu_check.sh links them into place on the GPU machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$(realpath -m "${1:-$root/.gpu}")"
arch="${2:-90}"
eval "$("$root/scripts/bootstrap.sh")"
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
build="$root/build-gpu"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$ZEROTRAIN_TORCH_PREFIX" \
  -DZEROTRAIN_BUILD_TESTS=ON -DZEROTRAIN_BUILD_BENCHMARKS=ON -DZEROTRAIN_WARNINGS_AS_ERRORS=ON \
  -DZEROTRAIN_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
programs=(tests/optim_cuda_test tests/nccl_test tests/engine_test benchmarks/optim_bench
          benchmarks/comm_bench benchmarks/engine_bench benchmarks/e2e_bench examples/train_gpt/train_gpt)
targets=()
for p in "${programs[@]}"; do targets+=("$(basename "$p")"); done
cmake --build "$build" --target "${targets[@]}"
rm -rf "$dest"
mkdir -p "$dest"
for p in "${programs[@]}" libzerotrain.so.0; do
  mkdir -p "$dest/$(dirname "$p")"
  strip --strip-debug -o "$dest/$p" "$build/$p"
done
cp -rL /usr/share/games/fortunes "$dest/fortunes"
echo "$root" >"$dest/SOURCE_ROOT"
echo "$build" >"$dest/BUILD_DIR"
du -sh "$dest" >&2
