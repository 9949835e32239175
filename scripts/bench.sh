#!/usr/bin/env bash
# baleine against PyTorch eager, side by side on this machine: the same model, batch and
# thread count, each timed as the median step after warm-up (bench/pytorch_reference.py is the
# PyTorch side). Prints a table of tokens/s and the ratio, and writes bench/out/bench.json.
#   scripts/bench.sh                      both configs, 2 threads, best of 3 runs each
#   THREADS=1 STEPS=30 REPEAT=5 scripts/bench.sh quickstart
# The two tools run alternately, REPEAT times, and each keeps its best median: on a shared or
# virtual machine a whole run can land on a busy or hyperthread-sibling core (seen here: the
# same binary at 91 or 130 ms per step from one run to the next), and both tools get the same
# chances.
# Configs: quickstart (configs/quickstart.yaml in one process) and cpu-large
# (bench/configs/cpu-large.yaml). Installs PyTorch from Debian on first use (scripts/setup.sh
# --bench) and refuses to compare against a PyTorch that is not on OpenBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
steps=${STEPS:-25}
warmup=${WARMUP:-5}
repeat=${REPEAT:-3}
configs=("$@")
((${#configs[@]})) || configs=(quickstart cpu-large)

scripts/setup.sh --bench
scripts/build.sh baleine >/dev/null
if [[ ! -f data/quickstart/train_000000.bin ]]; then
  build/baleine data prepare --input README.md docs trainer kernels parallel configs scripts tests \
    --output data/quickstart --val-fraction 0.05
fi

config_file() {
  case "$1" in
    quickstart) echo configs/quickstart.yaml ;;
    cpu-large) echo bench/configs/cpu-large.yaml ;;
    *) echo "bench: unknown config '$1' (quickstart | cpu-large)" >&2; exit 2 ;;
  esac
}

out=bench/out
mkdir -p "$out"
export OMP_NUM_THREADS=$threads OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One process, no checkpoints or validation inside the timed steps: the same work as the
# PyTorch loop (data, forward, backward, clipping, AdamW, expert-bias update).
single=(--set parallel.pp=1 --set parallel.dp=1 --set parallel.ep=1 --set train.eval_every=0
        --set checkpoint.every=0 --set log.every=1000)
results=()
for name in "${configs[@]}"; do
  file=$(config_file "$name")
  for ((r = 1; r <= repeat; ++r)); do
    run_dir="$out/baleine-$name-$r"
    rm -rf "$run_dir"
    echo "bench: $name run $r/$repeat: baleine ($threads threads, $steps steps)"
    build/baleine train "$file" "${single[@]}" --set train.steps="$steps" \
      --set train.lr.warmup_steps=$((steps / 4)) --set run.dir="$run_dir" >"$run_dir.log"
    echo "bench: $name run $r/$repeat: PyTorch ($threads threads, $steps steps)"
    /usr/bin/python3 bench/pytorch_reference.py "$file" --threads "$threads" --steps "$steps" \
      --warmup "$warmup" --set train.lr.warmup_steps=$((steps / 4)) \
      --json "$out/pytorch-$name-$r.json" >"$out/pytorch-$name-$r.log"
  done
  results+=("$name")
done

/usr/bin/python3 - "$out" "$warmup" "$repeat" "${results[@]}" <<'PY'
import json, os, statistics, sys
out, warmup, repeat, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rows, report = [], []
for name in names:
    baleine_runs, torch_runs = [], []
    for r in range(1, repeat + 1):
        steps = [json.loads(l) for l in open(os.path.join(out, f"baleine-{name}-{r}", "metrics.jsonl"))]
        baleine_runs.append({"median_step_s": statistics.median(s["step_s"] for s in steps[warmup:]),
                             "tokens_per_step": steps[0]["tokens"], "last_loss": steps[-1]["loss"]})
        torch_runs.append(json.load(open(os.path.join(out, f"pytorch-{name}-{r}.json"))))
    for t in torch_runs:
        if "openblas" not in t.get("blas", "").lower():
            sys.exit(f"bench: PyTorch is not on OpenBLAS ({t.get('blas')}): install "
                     "libopenblas0-pthread (scripts/setup.sh --bench) and select it with "
                     "update-alternatives --config libblas.so.3-x86_64-linux-gnu")
    b = min(baleine_runs, key=lambda x: x["median_step_s"])
    t = min(torch_runs, key=lambda x: x["median_step_s"])
    baleine = b["tokens_per_step"] / b["median_step_s"]
    ratio = baleine / t["tokens_per_s"]
    rows.append((name, b["median_step_s"], baleine, t["median_step_s"], t["tokens_per_s"], ratio,
                 b["last_loss"], t["last_loss"],
                 [x["median_step_s"] for x in baleine_runs], [x["median_step_s"] for x in torch_runs]))
    report.append({"config": name, "threads": t["threads"], "warmup": warmup, "repeat": repeat,
                   "baleine_median_step_s": b["median_step_s"], "baleine_tokens_per_s": baleine,
                   "baleine_runs_median_step_s": rows[-1][8], "pytorch": t,
                   "pytorch_runs_median_step_s": rows[-1][9], "ratio": ratio,
                   "load_average": os.getloadavg()})
print()
print(f"{'config':<12}{'baleine step':>14}{'tok/s':>10}{'PyTorch step':>15}{'tok/s':>10}"
      f"{'ratio':>8}{'loss b/pt':>18}")
for n, bs, bt, ps, pt, r, bl, pl, _, _ in rows:
    print(f"{n:<12}{bs * 1e3:>11.1f} ms{bt:>10.0f}{ps * 1e3:>12.1f} ms{pt:>10.0f}{r:>7.2f}x"
          f"{bl:>9.3f}/{pl:.3f}")
for n, _, _, _, _, _, _, _, bruns, pruns in rows:
    print(f"  {n}: median step per run, baleine " + " ".join(f"{x * 1e3:.1f}" for x in bruns) +
          " ms; PyTorch " + " ".join(f"{x * 1e3:.1f}" for x in pruns) + " ms")
json.dump(report, open(os.path.join(out, "bench.json"), "w"), indent=1)
first = report[0]["pytorch"]
print(f"\n(best of {repeat} runs of each, median step after {warmup} warm-up steps; PyTorch "
      f"{first.get('torch')} on {first.get('blas')}, OMP_WAIT_POLICY={first.get('omp_wait_policy')}; "
      f"details in {out}/)")
PY
