// FP8 GEMM with DeepSeek-V3 fine-grained scaling against cuBLASLt BF16 on the present GPU
// (issue 5), at DeepSeek-V3 Linear shapes:
//
//   build/fp8_gemm_gpu_bench [runs=30]
//
// Per shape (M×N×K, C = A [M, K] · B [N, K]ᵀ):
//   - the BF16 baseline: cuda_bf16_gemm_tn, BF16 in, FP32 compute, BF16 out (cuBLASLt);
//   - every FP8 path this GPU runs (kernels/fp8_gemm_cuda.h, forced one by one), C in BF16,
//     with the Fprop/Dgrad tiling (A 1×128, B 128×128 blocks) and the Wgrad one (both 1×128).
// Time: CUDA events around each call, 3 warm-up calls (plans, buffers), median of `runs`.
// TFLOP/s = 2·M·N·K / time: the useful work, whatever a path does to get it. An FP8 time
// includes all the call enqueues: scale re-layout (block-scaled), dequantization
// (dequant-bf16), the per-tile products and epilogues (tile-loop). "vs BF16" is the BF16 time
// divided by the path's time (> 1: faster than BF16). Inputs are random codes and scales: the
// timings do not depend on values. Exits 0 with a message when there is no GPU.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/fp8.h"
#include "kernels/fp8_gemm_cuda.h"

namespace {

using baleine::kernels::CudaFp8GemmPath;
using baleine::kernels::CudaFp8GemmWorkspace;
using baleine::kernels::Fp8Tile;
using baleine::kernels::Fp8View;

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

// splitmix64: fast enough to fill hundreds of MB of random inputs.
uint64_t next_random(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : bytes_(host.size() * sizeof(T)) {
    cuda_ok(cudaMalloc(&ptr_, bytes_), "cudaMalloc");
    cuda_ok(cudaMemcpy(ptr_, host.data(), bytes_, cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr_); }
  T* get() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Random E4M3 codes (NaN, 0x7F/0xFF, excluded) and scales in [2⁻⁹, 2⁻⁶].
std::vector<uint8_t> random_codes(int64_t n, uint64_t seed) {
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  for (auto& c : codes) {
    c = static_cast<uint8_t>(next_random(&seed));
    if ((c & 0x7F) == 0x7F) c ^= 1;
  }
  return codes;
}
std::vector<float> random_scales(int64_t n, uint64_t seed) {
  std::vector<float> scales(static_cast<size_t>(n));
  for (auto& s : scales) s = (1 + float(next_random(&seed) % 8)) / 512.0f;
  return scales;
}
std::vector<uint16_t> random_bf16(int64_t n, uint64_t seed) {
  std::vector<uint16_t> values(static_cast<size_t>(n));
  for (auto& v : values) {
    v = baleine::kernels::bf16_encode(float(int64_t(next_random(&seed) % 2001) - 1000) / 1000);
  }
  return values;
}

// Median milliseconds of `runs` calls, after 3 untimed ones.
double median_ms(const std::function<void()>& call, int runs, cudaStream_t stream) {
  cudaEvent_t start, stop;
  cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
  cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < 3; ++i) call();
  cuda_ok(cudaStreamSynchronize(stream), "warm-up");
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    cuda_ok(cudaEventRecord(start, stream), "cudaEventRecord");
    call();
    cuda_ok(cudaEventRecord(stop, stream), "cudaEventRecord");
    cuda_ok(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Shape {
  int64_t M, N, K;
  const char* what;
};

void print_row(const Shape& s, const char* operands, const char* path, double ms,
               double bf16_ms) {
  const double tflops = 2.0 * double(s.M) * double(s.N) * double(s.K) / (ms * 1e-3) / 1e12;
  char shape[64];
  std::snprintf(shape, sizeof(shape), "%lldx%lldx%lld", static_cast<long long>(s.M),
                static_cast<long long>(s.N), static_cast<long long>(s.K));
  std::printf("%-18s %-15s %-17s %9.3f %9.1f %8.2f   %s\n", shape, operands, path, ms, tflops,
              bf16_ms / ms, s.what);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 30;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("fp8_gemm_gpu_bench: no CUDA device; nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf("fp8_gemm_gpu_bench: %s (sm_%d%d, %d SMs), CUDA runtime %d.%d, cuBLASLt %zu, %s\n",
              prop.name, prop.major, prop.minor, prop.multiProcessorCount, runtime / 1000,
              runtime % 1000 / 10, cublasLtGetVersion(), date);
  std::printf("median of %d runs; C in BF16; vs BF16 = BF16 time / this time\n\n", runs);
  std::printf("%-18s %-15s %-17s %9s %9s %8s\n", "MxNxK", "operands", "path", "ms", "TFLOP/s",
              "vs BF16");

  CudaFp8GemmWorkspace workspace;
  cudaStream_t stream = nullptr;
  cuda_ok(cudaStreamCreate(&stream), "cudaStreamCreate");
  // DeepSeek-V3: hidden 7168, MoE expert width 2048; 4096 tokens per micro-batch GEMM.
  const Shape shapes[] = {
      {4096, 7168, 2048, "expert down-projection (in 2048 → out 7168)"},
      {4096, 2048, 7168, "expert up/gate projection (in 7168 → out 2048)"},
      {4096, 7168, 7168, "a square 7168 projection"},
  };
  const struct {
    const char* name;
    Fp8Tile b_tile;
  } tilings[] = {{"1x128·128x128", {128, 128}}, {"1x128·1x128", {1, 128}}};

  int failures = 0;
  for (const Shape& s : shapes) {
    const DeviceArray<uint16_t> a_bf16(random_bf16(s.M * s.K, 1));
    const DeviceArray<uint16_t> b_bf16(random_bf16(s.N * s.K, 2));
    const DeviceArray<uint16_t> c(std::vector<uint16_t>(size_t(s.M * s.N)));
    const DeviceArray<uint8_t> a_codes(random_codes(s.M * s.K, 3));
    const DeviceArray<uint8_t> b_codes(random_codes(s.N * s.K, 4));
    const DeviceArray<float> a_scales(random_scales(s.M * ((s.K + 127) / 128), 5));
    const DeviceArray<float> b_scales(random_scales(s.N * ((s.K + 127) / 128), 6));

    double bf16_ms = 0;
    try {
      bf16_ms = median_ms(
          [&] {
            cuda_bf16_gemm_tn(a_bf16.get(), b_bf16.get(), s.M, s.N, s.K, c.get(), false,
                              workspace, stream);
          },
          runs, stream);
      print_row(s, "bf16", "cublaslt-bf16", bf16_ms, bf16_ms);
    } catch (const std::exception& error) {
      std::printf("%lldx%lldx%lld bf16: error: %s\n", static_cast<long long>(s.M),
                  static_cast<long long>(s.N), static_cast<long long>(s.K), error.what());
      ++failures;
      continue;
    }
    for (CudaFp8GemmPath path : {CudaFp8GemmPath::kBlockScaledFp8, CudaFp8GemmPath::kTileLoopFp8,
                                 CudaFp8GemmPath::kDequantBf16}) {
      if (!baleine::kernels::cuda_fp8_gemm_path_runs_on(path, prop.major, prop.minor)) continue;
      for (const auto& tiling : tilings) {
        const Fp8View a{a_codes.get(), a_scales.get(), s.M, s.K, {1, 128}};
        const Fp8View b{b_codes.get(), b_scales.get(), s.N, s.K, tiling.b_tile};
        try {
          workspace.force_path(path);
          const double ms = median_ms(
              [&] { cuda_fp8_gemm_tn(a, b, c.get(), false, workspace, stream); }, runs, stream);
          print_row(s, tiling.name, baleine::kernels::cuda_fp8_gemm_path_name(path), ms, bf16_ms);
        } catch (const std::exception& error) {
          std::printf("%lldx%lldx%lld %s %s: error: %s\n", static_cast<long long>(s.M),
                      static_cast<long long>(s.N), static_cast<long long>(s.K), tiling.name,
                      baleine::kernels::cuda_fp8_gemm_path_name(path), error.what());
          ++failures;
        }
      }
    }
  }
  cudaStreamDestroy(stream);
  return failures == 0 ? 0 : 1;
}
