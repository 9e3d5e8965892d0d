#!/usr/bin/env bash
# train_gpt on 2 ranks (torchrun), small: trains 24 steps in one go, and 16
# steps then a resume to 24; the two final checkpoints must hold the same
# weights bit for bit, the resumed run must continue the step count, and the
# monitors must have logged every step (CSV rows appended across the resume,
# TensorBoard files readable by TensorBoard, a plot written).
#
#   train_gpt_resume.sh TRAIN_GPT ZEROTRAIN_CLI TORCHRUN PYTHON SOURCE_DIR WORK_DIR [CONFIG [FLAGS]]
#
# CONFIG: a file in configs/ (default train_gpt_zero2.json). FLAGS: more
# train_gpt options for every run (e.g. "--checkpoint-activations on"). A
# config with offload or activation_checkpointing also trains without them
# (and without FLAGS): the weights must be bit for bit the same.
set -euo pipefail
train_gpt=$1 cli=$2 torchrun=$3 python=$4 src=$5 work=$6 config=${7:-train_gpt_zero2.json}
read -r -a flags <<<"${8:-}"
rm -rf "$work" && mkdir -p "$work/straight" "$work/resumed" "$work/plain"
fail() { echo "FAIL: $*" >&2; exit 1; }
# The example's config, printing every 5 steps instead of 50, its monitors
# under runs/train_gpt; at stage 3 every block (tiny here) is gathered and
# released rather than persistent.
"$python" - "$src/configs/$config" "$work/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["steps_per_print"] = 5
for monitor in ("csv_monitor", "tensorboard"):
    c[monitor]["job_name"] = "train_gpt"
if c["zero_optimization"]["stage"] == 3:
    c["zero_optimization"]["stage3_param_persistence_threshold"] = 0
json.dump(c, open(sys.argv[2], "w"))
z = c["zero_optimization"]
plain = "offload_optimizer" in z or "offload_param" in z or "activation_checkpointing" in c
for key in ("offload_optimizer", "offload_param"):
    z.pop(key, None)
c.pop("activation_checkpointing", None)
if plain:
    json.dump(c, open(sys.argv[2].replace("config.json", "plain.json"), "w"))
PY

run() {  # run DIR ARGS...: train_gpt in DIR on 2 ranks, output to DIR/log
  local dir=$1; shift
  (cd "$dir" && OMP_NUM_THREADS=1 "$torchrun" --no-python --standalone --nproc-per-node=2 "$train_gpt" \
      --config "$work/config.json" --layers 2 --heads 2 --width 32 --context 32 \
      --eval-every 8 --val-windows 16 --sample-bytes 40 --bar off ${flags[@]+"${flags[@]}"} "$@" >>log 2>&1) \
    || { cat "$dir/log"; fail "train_gpt $* exited with an error"; }
}

run "$work/straight" --steps 24 --save ckpt
run "$work/resumed" --steps 16 --save ckpt
run "$work/resumed" --steps 24 --save ckpt --resume ckpt
cat "$work/resumed/log"

grep -q "resumed from .*global_step16 at step 16" "$work/resumed/log" || fail "no resume message at step 16"
grep -q "final validation loss: .* after 24 steps" "$work/resumed/log" || fail "the resumed run did not reach step 24"
grep -q "step 20/24 | loss .* samples/s | .* tokens/s | .* peak RSS r0 .*, r1 " "$work/resumed/log" \
  || fail "no steps_per_print line with throughput and both ranks' memory"
grep -q "time per step (ms): forward .* | backward .* | step " "$work/resumed/log" || fail "no wall_clock_breakdown line"

# Same weights, optimizer state aside: export both and compare every tensor exactly.
"$cli" checkpoint export "$work/straight/ckpt" --out "$work/straight.safetensors" >/dev/null
"$cli" checkpoint export "$work/resumed/ckpt" --out "$work/resumed.safetensors" >/dev/null
"$python" - "$work/straight.safetensors" "$work/resumed.safetensors" <<'PY'
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), (sorted(a), sorted(b))
bad = [k for k in a if not (a[k] == b[k]).all()]
assert not bad, f"resumed weights differ from the uninterrupted run's in {bad}"
print(f"resume is bitwise: {len(a)} tensors equal")
PY

csv="$work/resumed/runs/train_gpt/Train_Samples_train_loss.csv"
[[ $(head -1 "$csv") == "step,Train/Samples/train_loss" ]] || fail "$csv: bad header"
rows=$(($(wc -l <"$csv") - 1))
[[ $rows -eq 24 ]] || fail "$csv: $rows rows, expected 24 (16 + 8 appended on resume)"
# x is the global sample count: 32 samples per step (16 per rank x 2 ranks).
[[ $(sed -n 2p "$csv" | cut -d, -f1) == 32 && $(tail -1 "$csv" | cut -d, -f1) == 768 ]] || fail "$csv: wrong x values"
"$python" "$src/tests/examples/read_tfevents.py" "$work/resumed/runs/train_gpt" \
  Train/Samples/train_loss 24 Train/Samples/lr 24 Validation/loss 3 Train/Samples/tokens_per_sec 20
"$python" "$src/scripts/plot_run.py" "$work/resumed/runs/train_gpt" -o "$work/curves.png"
[[ $(head -c 8 "$work/curves.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "curves.png is not a PNG"
if [[ -f "$work/plain.json" ]]; then
  # Offload and activation checkpointing change where bytes live, not a bit of the result.
  (cd "$work/plain" && OMP_NUM_THREADS=1 "$torchrun" --no-python --standalone --nproc-per-node=2 "$train_gpt" \
      --config "$work/plain.json" --layers 2 --heads 2 --width 32 --context 32 \
      --eval-every 8 --val-windows 16 --sample-bytes 40 --bar off --steps 24 --save ckpt >>log 2>&1) \
    || { cat "$work/plain/log"; fail "train_gpt without offload and checkpointing exited with an error"; }
  "$cli" checkpoint export "$work/plain/ckpt" --out "$work/plain.safetensors" >/dev/null
  "$python" - "$work/straight.safetensors" "$work/plain.safetensors" <<'PY'
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
bad = [k for k in a if not (a[k] == b[k]).all()]
assert a.keys() == b.keys() and not bad, f"the run without offload and checkpointing differs in {bad}"
print(f"offload and checkpointing are bitwise neutral: {len(a)} tensors equal")
PY
  if [[ " ${flags[*]-} " == *" --checkpoint-activations on "* ]]; then
    grep -q "activation checkpointing: .* checkpointed forwards .* recomputes" "$work/straight/log" \
      || fail "no activation checkpointing profile line"
  fi
fi
echo "PASS"
