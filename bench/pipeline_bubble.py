#!/usr/bin/env python3
"""Pipeline bubble, measured beside the simulator (issue 4's benchmark).

Trains the same model on the same global batch with PP=4 (--pp) under 1F1B and DualPipeV, reads
each rank's measured busy and bubble seconds from metrics.jsonl (steps after the warm-up), and
puts the measured bubble fraction beside the one `baleine schedule` simulates for the same
schedule, with the simulator's costs either given (--costs F,B,W,FB) or the default 1,2,1,3.

    bench/pipeline_bubble.py [--binary build/baleine] [--pp 4] [--steps 30] [--costs F,B,W,FB]

Bubble fraction = bubble / (busy + bubble) on each rank, averaged over ranks and steps. On a
machine with fewer cores than ranks (CI: 2 cores for 4 ranks) ranks share cores, so "busy"
includes time a rank was runnable but descheduled, and the measured figure mixes the schedule's
bubble with oversubscription: quote the machine with the numbers.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    result = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {cmd}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def measured(run_dir, warmup):
    fractions, step_s = [], []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    for r in records[warmup:]:
        for busy, bubble in zip(r["pipeline_busy_s"], r["pipeline_bubble_s"]):
            fractions.append(bubble / (busy + bubble))
        step_s.append(r["step_s"])
    return statistics.mean(fractions), statistics.median(step_s)


def simulated(binary, config, overrides, costs):
    text = run(f"{binary} schedule {config} {overrides} --costs {costs}")
    makespan = float(re.search(r"makespan ([0-9.]+)", text).group(1))
    bubbles = [float(b) for b in re.findall(r"bubble ([0-9.]+) \(", text)]
    return statistics.mean(b / makespan for b in bubbles)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default="build/baleine")
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--costs", default="1,2,1,3")
    p.add_argument("--pp", type=int, default=4)
    p.add_argument("--launcher", default="mpirun --oversubscribe -np {pp}")
    args = p.parse_args()
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")

    # The same model (2·pp blocks) and batch (2·pp micro-batches of 2 sequences) for both
    # schedules: 1F1B puts 2 blocks on each of pp stages, DualPipeV 1 block on each of 2·pp
    # stages (2 per rank). 2·pp micro-batches is the least DualPipeV accepts.
    pp, micro_batches = args.pp, 2 * args.pp
    launcher = args.launcher.format(pp=pp)
    common = (f"--set parallel.pp={pp} --set parallel.dp=1 --set parallel.ep=1 "
              f"--set model.layers={2 * pp} --set train.micro_batch=2 "
              f"--set train.global_batch={2 * micro_batches} "
              f"--set train.steps={args.steps} --set train.eval_every=0 --set data.val= "
              f"--set log.every={args.steps}")
    print(f"pipeline bubble, PP={pp}, {micro_batches} micro-batches, {args.steps} steps "
          f"({args.warmup} warm-up), {os.cpu_count()} cores; "
          f"simulator costs F,B,W,F&B = {args.costs}")
    print(f"{'schedule':<10} {'measured bubble':>16} {'simulated bubble':>17} {'step (median)':>14}")
    for schedule in ("1f1b", "dualpipev"):
        overrides = f"{common} --set parallel.schedule={schedule}"
        run_dir = f"runs/bench-bubble-pp{pp}-{schedule}"
        run(f"{launcher} {args.binary} train {args.config} {overrides} --set run.dir={run_dir}")
        fraction, step_s = measured(os.path.join(ROOT, run_dir), args.warmup)
        predicted = simulated(args.binary, args.config, overrides, args.costs)
        print(f"{schedule:<10} {fraction:>15.1%} {predicted:>16.1%} {step_s:>13.3f}s")


if __name__ == "__main__":
    main()
