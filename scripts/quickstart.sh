#!/usr/bin/env bash
# From a fresh checkout to a training MoE model: installs what is missing, builds, turns the
# project's own docs and sources into a byte-level corpus and trains configs/quickstart.yaml on
# 4 MPI ranks (DualPipeV pipeline of 2 x expert parallelism of 2).
# The run's files land in runs/quickstart/ (config.resolved.yaml, metrics.jsonl, ledger.jsonl,
# checkpoints/).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh
scripts/build.sh baleine

# The corpus ships with every checkout: baleine's own text and code (no download).
build/baleine data prepare --input README.md docs trainer kernels parallel configs scripts tests \
  --output data/quickstart --val-fraction 0.05

# A finished quickstart would resume from its last checkpoint and train nothing: start afresh,
# keeping the earlier run beside it.
if [ -d runs/quickstart/checkpoints ]; then
  kept="runs/quickstart.$(date +%Y%m%d-%H%M%S)"
  mv runs/quickstart "$kept"
  echo "quickstart: the previous run is kept in $kept"
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# --oversubscribe: 4 ranks may share fewer cores (CI has 2); each rank then runs 1 OpenMP thread.
mpirun --oversubscribe -np 4 build/baleine train configs/quickstart.yaml "$@"
echo "quickstart: done in $(( $(date +%s) - start )) s; metrics in runs/quickstart/metrics.jsonl"
