#!/usr/bin/env bash
# The test command (README, CI): installs what is missing, builds everything, runs the whole
# suite with ctest and prints its summary. GPU tests skip themselves on machines without one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# Open MPI refuses root unless told; CI containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cd build
ctest --output-on-failure --parallel "$(nproc)" --timeout 600
