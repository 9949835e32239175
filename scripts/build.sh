#!/usr/bin/env bash
# Configures and builds baleine into build/ (Ninja, Release). Extra arguments are build targets.
#   BALEINE_CMAKE_ARGS="-DBALEINE_CUDA=OFF" scripts/build.sh      # CPU only
set -euo pipefail
cd "$(dirname "$0")/.."

# Put the CUDA toolkit on PATH when it is installed in the usual place, so check_language finds it.
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
mkdir -p build
# shellcheck disable=SC2086
if ! cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${BALEINE_CMAKE_ARGS:-} >build/cmake.log 2>&1; then
  cat build/cmake.log >&2
  exit 1
fi
grep -E "^-- baleine" build/cmake.log || true
cmake --build build --parallel "$(nproc)" ${1:+--target "$@"}
