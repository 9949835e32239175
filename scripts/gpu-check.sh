#!/usr/bin/env bash
# Verifies the CUDA backend on the GPU of this machine: builds baleine for that GPU's
# architecture only, runs every GPU test program (tests/**/*_cuda_test.cpp, the NCCL test and
# device discovery) and the GPU benchmarks (the FP8 GEMM, and the training step against
# PyTorch: scripts/gpu-bench.sh), and prints one table. Exit status 0 only when every
# GPU test ran and passed: a GPU test that SKIPS on a GPU machine counts as a failure here.
#
#   scripts/gpu-check.sh                 # build into build-gpu/, results in build-gpu/gpu-check/
#   BALEINE_CMAKE_ARGS="-DNCCL_ROOT=... -DCUDNN_ROOT=..." scripts/gpu-check.sh
#   GPU_CHECK_SKIP_BENCH=1 scripts/gpu-check.sh   # tests only
#
# Commit what it prints to bench/results/ with the date, the GPU and the command.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi finds none); nothing to check" >&2
  exit 1
fi
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
build=build-gpu
out="$build/gpu-check"
mkdir -p "$out"
echo "gpu-check: $gpu_name (sm_$arch), driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"

# shellcheck disable=SC2086
if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
     ${BALEINE_CMAKE_ARGS:-} >"$out/cmake.log" 2>&1; then
  cat "$out/cmake.log" >&2
  exit 1
fi
if ! grep -q "CUDA backend ON" "$out/cmake.log"; then
  echo "gpu-check: CMake did not enable the CUDA backend:" >&2
  grep -E "^-- baleine|CUDA|NCCL|CUDNN" "$out/cmake.log" >&2 || true
  exit 1
fi
cmake --build "$build" --parallel "$(nproc)" >"$out/build.log" 2>&1 || { tail -50 "$out/build.log" >&2; exit 1; }

programs=$(ls "$build"/tests/*_cuda_test "$build"/tests/nccl_comm_test "$build"/tests/device_query_test 2>/dev/null)
status=0
for program in $programs; do
  name=$(basename "$program")
  "$program" --gtest_output="json:$out/$name.json" >"$out/$name.log" 2>&1 || status=1
done

benches=()
if [[ -z "${GPU_CHECK_SKIP_BENCH:-}" ]]; then
  for bench in fp8_gemm_gpu_bench; do
    if [[ -x "$build/$bench" ]]; then
      "$build/$bench" >"$out/$bench.log" 2>&1 || status=1
      benches+=("$out/$bench.log")
    fi
  done
  # The training step on this GPU against PyTorch eager (tokens/s, MFU, ratio).
  scripts/gpu-bench.sh "$build" >"$out/gpu-bench.log" 2>&1 || status=1
  benches+=("$out/gpu-bench.log")
fi

python3 - "$out" "$gpu_name" "$arch" "${benches[@]}" <<'PY' || status=1
import glob, json, os, sys
out, gpu, arch, benches = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows, bad = [], []
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(path)[:-5]
    report = json.load(open(path))
    passed = failed = skipped = 0
    for suite in report.get("testsuites", []):
        for test in suite.get("testsuite", []):
            full = suite["name"] + "." + test["name"]
            if test.get("failures"):
                failed += 1; bad.append(full + " FAILED")
            elif test.get("result") == "SKIPPED" or test.get("status") == "NOTRUN":
                skipped += 1; bad.append(full + " skipped on a GPU machine")
            else:
                passed += 1
    rows.append((name, passed, failed, skipped, report.get("time", "")))
print(f"\nGPU tests on {gpu} (sm_{arch})")
print(f"{'program':32} {'passed':>6} {'failed':>6} {'skipped':>7}  time")
for name, p, f, s, t in rows:
    print(f"{name:32} {p:6} {f:6} {s:7}  {t}")
print(f"{'total':32} {sum(r[1] for r in rows):6} {sum(r[2] for r in rows):6} {sum(r[3] for r in rows):7}")
for line in bad:
    print("  " + line)
for bench in benches:
    print(f"\n{os.path.basename(bench)[:-4]}:")
    print(open(bench).read().rstrip())
sys.exit(1 if bad or not rows else 0)
PY
echo "gpu-check: logs in $out/"
exit $status
