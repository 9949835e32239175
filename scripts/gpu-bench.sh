#!/usr/bin/env bash
# The one-GPU training-step benchmark (issue 6): baleine on the CUDA backend against the same
# architecture in PyTorch eager on the same GPU, both in BF16, on bench/configs/gpu-1b-proxy.yaml
# (its header gives the model, the batch and the FLOPs per token). Prints tokens/s, MFU against
# the GPU's BF16 dense peak (the formula is in baleine's log) and the ratio to PyTorch.
#   scripts/gpu-bench.sh [BUILD_DIR]     # default build-gpu (scripts/gpu-check.sh builds it)
#   STEPS=30 WARMUP=5 scripts/gpu-bench.sh
# Goals (issue 6): >= 1.3x PyTorch eager tokens/s and >= 35% BF16 MFU.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
steps=${STEPS:-30}
warmup=${WARMUP:-5}
config=bench/configs/gpu-1b-proxy.yaml
out="$build/gpu-bench"
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [[ ! -x "$build/baleine" ]]; then
  echo "gpu-bench: $build/baleine is missing (run scripts/gpu-check.sh first)" >&2
  exit 2
fi
if [[ ! -f data/quickstart/train_000000.bin ]]; then
  "$build/baleine" data prepare --input README.md docs trainer kernels parallel configs scripts \
    tests --output data/quickstart --val-fraction 0.05 >"$out/prepare.log"
fi

run_dir="$out/baleine"
rm -rf "$run_dir"
echo "gpu-bench: baleine, $steps steps of $config on the GPU"
"$build/baleine" train "$config" --set device=cuda --set train.steps="$steps" \
  --set run.dir="$run_dir" >"$out/baleine.log" 2>&1 || { tail -30 "$out/baleine.log" >&2; exit 1; }
echo "gpu-bench: PyTorch eager, the same model and batch"
torch_status=0
python3 bench/pytorch_reference.py "$config" --device cuda --precision bf16 --steps "$steps" \
  --warmup "$warmup" --json "$out/pytorch.json" >"$out/pytorch.log" 2>&1 || torch_status=$?
if ((torch_status)); then
  echo "gpu-bench: the PyTorch reference failed (exit $torch_status); see $out/pytorch.log" >&2
  tail -5 "$out/pytorch.log" >&2
fi

python3 - "$run_dir/metrics.jsonl" "$out/pytorch.json" "$warmup" "$out/baleine.log" <<'PY'
import json, os, statistics, sys
metrics, torch_json, warmup, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
steps = [json.loads(l) for l in open(metrics)]
step_s = statistics.median(s["step_s"] for s in steps[warmup:])
tokens_per_step = steps[0]["tokens"]
tokens_per_s = tokens_per_step / step_s
# metrics.jsonl's mfu_bf16 is tokens_per_s x FLOPs per token / (devices x peak): the same factor
# turns the median step into MFU.
per_token = steps[-1]["mfu_bf16"] / steps[-1]["tokens_per_s"]
mfu = tokens_per_s * per_token
formula = [l.strip() for l in open(log) if l.startswith(("FLOPs per token", "cost:"))]
print(f"\n{'tool':<10}{'median step':>14}{'tokens/s':>12}{'BF16 MFU':>10}{'last loss':>11}")
print(f"{'baleine':<10}{step_s * 1e3:>11.1f} ms{tokens_per_s:>12.0f}{mfu:>9.1%}{steps[-1]['loss']:>11.3f}")
if os.path.exists(torch_json):
    t = json.load(open(torch_json))
    torch_mfu = t["tokens_per_s"] * per_token
    print(f"{'PyTorch':<10}{t['median_step_s'] * 1e3:>11.1f} ms{t['tokens_per_s']:>12.0f}"
          f"{torch_mfu:>9.1%}{t['last_loss']:>11.3f}")
    print(f"\nbaleine / PyTorch eager: {tokens_per_s / t['tokens_per_s']:.2f}x tokens/s "
          f"(goal >= 1.3x); baleine BF16 MFU {mfu:.1%} (goal >= 35%)")
print(f"median over steps {warmup + 1}-{len(steps)}; " + "; ".join(formula))
PY
