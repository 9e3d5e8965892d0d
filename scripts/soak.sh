#!/usr/bin/env bash
# Soak run (docs/reliability.md, "Soak"): the main job (scripts/main_job.sh:
# train_gpt, ZeRO stage 2, 2 CPU ranks) for ZEROTRAIN_SOAK_STEPS steps
# (default 8000: 32 minutes of training on the 2-core machine), saving a checkpoint
# every 1000 steps, while each rank's resident memory is sampled every 10 s
# from /proc. Prints the memory after warm-up (first and last samples, the
# drift per hour from a least-squares line) and the throughput of each
# quarter of the run from the report lines. Not part of CI.
#
#   scripts/soak.sh                  # writes runs/soak/{train.log,rss.csv}
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
steps="${ZEROTRAIN_SOAK_STEPS:-8000}"
out="$root/runs/soak"
mkdir -p "$out"
eval "$("$root/scripts/bootstrap.sh")"

sample() {  # every 10 s: seconds since start, then each train_gpt rank's RSS in MB
  local start=$SECONDS
  echo "seconds,rank_pid,rss_mb" > "$out/rss.csv"
  while true; do
    for pid in $(pgrep -x train_gpt || true); do  # the ranks, not torchrun
      rss=$(awk '/^VmRSS:/ {print $2 / 1024}' "/proc/$pid/status" 2>/dev/null || true)
      [[ -n "$rss" ]] && echo "$((SECONDS - start)),$pid,$rss" >> "$out/rss.csv"
    done
    sleep 10
  done
}
sample & sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT

rm -rf "$root/runs/train_gpt/checkpoints"
"$root/scripts/main_job.sh" --steps "$steps" --save-every 1000 --eval-every 1000 2>&1 | tee "$out/train.log"
kill $sampler 2>/dev/null || true

"$ZEROTRAIN_PYTHON" - "$out" <<'EOF'
import csv, re, sys
from collections import defaultdict
out = sys.argv[1]
series = defaultdict(list)
for row in csv.DictReader(open(f"{out}/rss.csv")):
    series[row["rank_pid"]].append((float(row["seconds"]), float(row["rss_mb"])))
print("== Soak: resident memory per rank (warm-up: the first 10% of samples left out) ==")
for pid, pts in series.items():
    pts = pts[len(pts) // 10:]
    if len(pts) < 2:
        continue
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mr = sum(r for _, r in pts) / n
    slope = sum((t - mt) * (r - mr) for t, r in pts) / max(sum((t - mt) ** 2 for t, _ in pts), 1e-9)
    print(f"pid {pid}: {n} samples over {pts[-1][0] - pts[0][0]:.0f} s; first {pts[0][1]:.1f} MB, last "
          f"{pts[-1][1]:.1f} MB, min {min(r for _, r in pts):.1f}, max {max(r for _, r in pts):.1f}; "
          f"drift {slope * 3600:+.1f} MB/hour")
rates = [(int(m.group(1)), float(m.group(2))) for m in
         re.finditer(r"step (\d+)/\d+ \| .*?\| ([\d.]+) samples/s", open(f"{out}/train.log").read())]
if rates:
    print("== Soak: throughput (samples/s) by quarter of the run ==")
    q = max(len(rates) // 4, 1)
    for i in range(0, len(rates), q):
        chunk = rates[i:i + q]
        print(f"steps {chunk[0][0]}-{chunk[-1][0]}: mean {sum(r for _, r in chunk) / len(chunk):.1f}, "
              f"min {min(r for _, r in chunk):.1f}, max {max(r for _, r in chunk):.1f}")
EOF
