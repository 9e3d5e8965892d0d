#!/usr/bin/env bash
# Fuzzes the config parser and the checkpoint manifest/safetensors-header
# parsers with libFuzzer (clang), under AddressSanitizer and
# UndefinedBehaviorSanitizer, seeded with configs/ and a saved checkpoint.
#
#   scripts/fuzz.sh                 # 20 s per target (what CI runs)
#   ZEROTRAIN_FUZZ_SECONDS=600 scripts/fuzz.sh   # the documented run
#
# The parsers' sources are compiled here with instrumentation (linking the
# gcc-built library would leave them uninstrumented); LibTorch provides c10.
# Exits non-zero on any finding; libFuzzer writes the input to crash-*/timeout-*
# under the work directory, which this prints.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$root/scripts/bootstrap.sh")"
seconds="${ZEROTRAIN_FUZZ_SECONDS:-20}"
work="${ZEROTRAIN_FUZZ_DIR:-$root/build-fuzz}"
mkdir -p "$work"
torch_root="$(cd "$ZEROTRAIN_TORCH_PREFIX/../.." && pwd)"
version_dir="$work/generated/zerotrain"
mkdir -p "$version_dir"
# version.h as CMake writes it from cmake/version.h.in (the manifest code includes it).
sed -e "s/@PROJECT_VERSION_[A-Z]*@/0/g" -e "s/@PROJECT_VERSION@/fuzz/g" -e "s/@Torch_VERSION@/fuzz/g" \
  "$root/cmake/version.h.in" > "$version_dir/version.h"

cxx=(clang++)
command -v ccache > /dev/null && cxx=(ccache clang++)
compile_flags=(-std=c++17 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
               -I"$root/include" -I"$root/src" -I"$work/generated"
               -isystem "$torch_root/include" -isystem "$torch_root/include/torch/csrc/api/include")
link_flags=(-fsanitize=fuzzer,address,undefined -L"$torch_root/lib" -Wl,-rpath,"$torch_root/lib" -lc10 -lxxhash)
build() {  # name, sources...: one object per source (ccache caches each), then the link
  local name="$1"; shift
  local objects=()
  mkdir -p "$work/obj"
  for src in "$@"; do
    local obj="$work/obj/$(echo "${src#"$root"/}" | tr '/' '_').o"
    [[ -f "$obj" && "$obj" -nt "$src" ]] || "${cxx[@]}" "${compile_flags[@]}" -c "$src" -o "$obj"
    objects+=("$obj")
  done
  echo "[fuzz] linking $name" >&2
  clang++ "${objects[@]}" "${link_flags[@]}" -o "$work/$name"
}
config_sources=("$root"/src/config/*.cpp)
build config_fuzz "$root/tests/fuzz/config_fuzz.cpp" "${config_sources[@]}"
build checkpoint_fuzz "$root/tests/fuzz/checkpoint_fuzz.cpp" "${config_sources[@]}" \
  "$root"/src/checkpoint/{manifest,safetensors,checksum,file_io}.cpp "$root/src/precision/loss_scaler.cpp"

# Seeds: every example config; a manifest and a rank file of a saved checkpoint
# (the first byte picks the parser: odd = manifest, even = safetensors header).
mkdir -p "$work/corpus/config" "$work/corpus/checkpoint"
cp "$root"/configs/*.json "$work/corpus/config/"
# Inputs that once failed (tests/fuzz/regressions/config-*, checkpoint-*) are seeds too.
for f in "$root"/tests/fuzz/regressions/*; do
  cp "$f" "$work/corpus/$(basename "$f" | cut -d- -f1)/"
done
fixture="$root/tests/checkpoint/data/v1_mlp_zero2_bf16_n2/global_step3"
{ printf '\001'; cat "$fixture/manifest.json"; } > "$work/corpus/checkpoint/seed-manifest"
{ printf '\000'; cat "$fixture/module.safetensors"; } > "$work/corpus/checkpoint/seed-module"
{ printf '\000'; head -c 65536 "$fixture/rank_00000.safetensors"; } > "$work/corpus/checkpoint/seed-rank-head"

status=0
for target in config checkpoint; do
  echo "[fuzz] ${target}_fuzz for ${seconds} s" >&2
  ( cd "$work" && "./${target}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -max_len=65536 -print_final_stats=1 "corpus/$target" ) > "$work/$target.log" 2>&1 || status=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^stat::new_units_added|^#[0-9]+ *DONE|ERROR|SUMMARY" "$work/$target.log" >&2 || true
  if [[ $status -ne 0 ]]; then
    echo "[fuzz] ${target}_fuzz FOUND A PROBLEM (exit $status); log: $work/$target.log" >&2
    tail -40 "$work/$target.log" >&2
    exit "$status"
  fi
done
echo "[fuzz] no crash, hang, leak or sanitizer report in either target" >&2
