#!/usr/bin/env bash
# Installs what baleine needs to build on Debian/Ubuntu, and nothing when it is all there.
# Needs root (or sudo) only when something is missing. The CUDA toolkit is optional: when nvcc
# is found the CUDA backend is built too.
#   scripts/setup.sh            build and test dependencies
#   scripts/setup.sh --bench    also PyTorch for the side-by-side benchmark (scripts/bench.sh)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config   # toolchain
  libopenmpi-dev openmpi-bin                     # MPI: launch and CPU-rank communication
  libyaml-cpp-dev                                # the config file
  libgtest-dev libgmock-dev                      # tests
  libbenchmark-dev                               # micro-benchmarks
)
if [[ "${1:-}" == "--bench" ]]; then
  # Debian's PyTorch for /usr/bin/python3, on OpenBLAS: without libopenblas0-pthread the BLAS
  # alternative is the reference BLAS (~7 GFLOP/s sgemm on 2 cores, against ~170).
  packages+=(python3-torch python3-yaml libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all build dependencies present"
fi
