#!/usr/bin/env bash
# The FP8 accuracy run (issue 5): the quickstart-size MoE (configs/quickstart.yaml: 4 ranks,
# PP=2 DualPipeV x EP=2, so FP8 travels through the dispatch) trained STEPS steps on
# tinyshakespeare in fp32, bf16 and fp8, same seed and data order; prints each run's first and
# last loss, the mean training loss over the last 100 steps, the last validation loss, and the
# fp8/bf16 ratio of the means (DeepSeek-V3 reports FP8 within 0.25% of BF16; the acceptance bar
# here is 0.5%). Not a test: it takes ~10 minutes on 2 cores.
#   [BALEINE=build-x/baleine] bench/precision_accuracy.sh [TEXT] [STEPS]
# TEXT defaults to ../shared/data/tinyshakespeare.txt. Run dirs: runs/precision-{fp32,bf16,fp8}.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${1:-../shared/data/tinyshakespeare.txt}
steps=${2:-500}
[[ -f "$text" ]] || { echo "precision_accuracy: no text at $text (pass a path)" >&2; exit 2; }
# BALEINE=path/to/baleine uses an existing build instead of building build/.
bin=${BALEINE:-build/baleine}
[[ -n "${BALEINE:-}" ]] || scripts/build.sh baleine >/dev/null
"$bin" data prepare --input "$text" --output data/precision-accuracy --val-fraction 0.05 >/dev/null

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for compute in fp32 bf16 fp8; do
  start=$(date +%s)
  mpirun --oversubscribe -np 4 "$bin" train configs/quickstart.yaml \
    --set precision.compute=$compute --set train.steps="$steps" --set train.eval_every=100 \
    --set data.train='data/precision-accuracy/train_*.bin' \
    --set data.val='data/precision-accuracy/val_*.bin' \
    --set run.dir=runs/precision-$compute --set log.every=100 | grep -E "^(step|done|memory)"
  echo "$compute: $(( $(date +%s) - start )) s"
done

# Mean training loss over the last 100 steps, from each run's metrics.jsonl.
summary() {
  awk -v steps="$steps" -F'[:,]' '{
      for (i = 1; i < NF; i++) {
        if ($i == "{\"step\"") step = $(i + 1);
        if ($i == "\"loss\"") loss = $(i + 1);
        if ($i == "\"val_loss\"") val = $(i + 1);
      }
      if (step == 1) first = loss;
      if (step > steps - 100) { sum += loss; n++ }
      last = loss
    } END { printf "%.6f %.6f %.6f %.6f\n", first, last, sum / n, val }' "runs/precision-$1/metrics.jsonl"
}
printf "\n%-6s %10s %10s %16s %10s\n" compute "first" "last" "mean last 100" "val"
for compute in fp32 bf16 fp8; do
  read -r first last mean val < <(summary $compute)
  printf "%-6s %10.4f %10.4f %16.4f %10.4f\n" $compute "$first" "$last" "$mean" "$val"
done
read -r _ _ bf16_mean _ < <(summary bf16)
read -r _ _ fp8_mean _ < <(summary fp8)
awk -v a="$fp8_mean" -v b="$bf16_mean" 'BEGIN {
  d = (a - b) / b * 100
  printf "fp8 vs bf16 (mean of the last 100 steps): %+.3f%% (bar: within 0.5%%)\n", d
  exit (d < -0.5 || d > 0.5) }'
