// The CUDA FP8 GEMM paths (kernels/fp8_gemm_cuda.h) against the CPU emulation of the same
// recipe (kernels/fp8_gemm.h), on the same codes and scales:
//   - which path each GPU generation gets, and the requirements each path refuses (no GPU
//     needed, only the CUDA build);
//   - on a GPU, every path it runs (forced), for Fprop / Dgrad (A 1×128, B 128×128) and Wgrad
//     (both 1×128) tilings, C in FP32 and BF16, overwrite and accumulate:
//       * bit-exact on inputs where every intermediate is exact (small integers, power-of-two
//         scales), which pins down scale layouts, tile edges and the tile loop's passes;
//       * within stated tolerances on quantized random data, shapes 256×384×512 and the
//         DeepSeek-like 512×7168×2048;
//   - no allocation once a shape has run.
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#include "kernels/fp8_gemm_cuda.h"

#ifndef BALEINE_HAVE_CUDA

TEST(CudaFp8Gemm, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/fp8.h"
#include "kernels/fp8_gemm.h"
#include "kernels/fp8_quantize.h"

namespace baleine::kernels {
namespace {

using Path = CudaFp8GemmPath;
constexpr Path kConcretePaths[] = {Path::kBlockScaledFp8, Path::kTileLoopFp8,
                                   Path::kDequantBf16};

// ---- no GPU needed ---------------------------------------------------------------------------

TEST(CudaFp8GemmPath, OnePathPerGeneration) {
  EXPECT_EQ(cuda_fp8_gemm_path(9, 0), Path::kBlockScaledFp8);   // H100 / H200
  EXPECT_EQ(cuda_fp8_gemm_path(10, 0), Path::kBlockScaledFp8);  // newer: same cuBLASLt modes
  EXPECT_EQ(cuda_fp8_gemm_path(8, 9), Path::kTileLoopFp8);      // L4, L40S, RTX 40xx
  EXPECT_EQ(cuda_fp8_gemm_path(8, 6), Path::kDequantBf16);      // A10, RTX 30xx
  EXPECT_EQ(cuda_fp8_gemm_path(8, 0), Path::kDequantBf16);      // A100
  EXPECT_EQ(cuda_fp8_gemm_path(7, 5), Path::kDequantBf16);      // T4
  EXPECT_THROW(cuda_fp8_gemm_path(7, 0), std::invalid_argument);
  EXPECT_STREQ(cuda_fp8_gemm_path_name(Path::kBlockScaledFp8), "block-scaled-fp8");
  EXPECT_STREQ(cuda_fp8_gemm_path_name(Path::kTileLoopFp8), "tile-loop-fp8");
  EXPECT_STREQ(cuda_fp8_gemm_path_name(Path::kDequantBf16), "dequant-bf16");
  EXPECT_STREQ(cuda_fp8_gemm_path_name(Path::kAuto), "auto");
}

TEST(CudaFp8GemmPath, EachPathNeedsItsHardware) {
  EXPECT_TRUE(cuda_fp8_gemm_path_runs_on(Path::kBlockScaledFp8, 9, 0));
  EXPECT_FALSE(cuda_fp8_gemm_path_runs_on(Path::kBlockScaledFp8, 8, 9));
  EXPECT_TRUE(cuda_fp8_gemm_path_runs_on(Path::kTileLoopFp8, 8, 9));
  EXPECT_TRUE(cuda_fp8_gemm_path_runs_on(Path::kTileLoopFp8, 9, 0));
  EXPECT_FALSE(cuda_fp8_gemm_path_runs_on(Path::kTileLoopFp8, 8, 6));
  EXPECT_TRUE(cuda_fp8_gemm_path_runs_on(Path::kDequantBf16, 7, 5));
  EXPECT_TRUE(cuda_fp8_gemm_path_runs_on(Path::kDequantBf16, 9, 0));
  EXPECT_FALSE(cuda_fp8_gemm_path_runs_on(Path::kDequantBf16, 7, 0));
}

// The check reads shapes and pointer values only, so host addresses stand in for device ones.
alignas(256) uint8_t g_codes[32];
alignas(256) float g_scales[8];

Fp8View shape_view(int64_t rows, int64_t cols, Fp8Tile tile,
                   Fp8Format format = Fp8Format::kE4M3, const uint8_t* codes = g_codes) {
  return {codes, g_scales, rows, cols, tile, format};
}

void expect_refused(const Fp8View& a, const Fp8View& b, Path path, const std::string& part) {
  try {
    cuda_fp8_gemm_check(a, b, path);
    ADD_FAILURE() << cuda_fp8_gemm_path_name(path) << " accepted a case it should refuse with '"
                  << part << "'";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find(part), std::string::npos)
        << "'" << part << "' not in: " << error.what();
  }
}

TEST(CudaFp8GemmCheck, RefusesWhatEachPathCannotRun) {
  const Fp8Tile row{1, 128}, block{128, 128};
  const auto act = [&](int64_t m, int64_t k) { return shape_view(m, k, row); };
  const auto weight = [&](int64_t n, int64_t k) { return shape_view(n, k, block); };
  for (Path path : kConcretePaths) {
    expect_refused(act(256, 512), weight(384, 256), path, "same K");
    expect_refused(shape_view(256, 512, block), weight(384, 512), path, "A's tiles");
    expect_refused(act(256, 512), shape_view(384, 512, {1, 64}), path, "same K tile");
    expect_refused(act(256, 512), shape_view(384, 512, {64, 128}), path, "B's tiles");
    expect_refused(shape_view(256, 512, row, Fp8Format::kE4M3, nullptr), weight(384, 512), path,
                   "null");
  }
  expect_refused(act(256, 512), weight(384, 512), Path::kAuto, "concrete path");

  const Path hopper = Path::kBlockScaledFp8;
  expect_refused(shape_view(256, 512, {1, 64}), shape_view(384, 512, {64, 64}), hopper, "128");
  expect_refused(act(256, 320), weight(384, 320), hopper, "K % 128");
  expect_refused(act(200, 512), weight(384, 512), hopper, "M % 16");
  expect_refused(act(256, 512), weight(200, 512), hopper, "N % 16");
  for (Path fp8 : {Path::kBlockScaledFp8, Path::kTileLoopFp8}) {
    expect_refused(shape_view(256, 512, row, Fp8Format::kE5M2),
                   shape_view(384, 512, block, Fp8Format::kE5M2), fp8, "E5M2");
    expect_refused(shape_view(256, 512, row, Fp8Format::kE4M3, g_codes + 1), weight(384, 512),
                   fp8, "16-byte aligned");
  }
  const Path ada = Path::kTileLoopFp8;
  expect_refused(act(256, 200), weight(384, 200), ada, "K % 16");
  expect_refused(shape_view(256, 512, {1, 8}), shape_view(384, 512, {8, 8}), ada, "K tile % 16");
  expect_refused(act(256, 512), weight(202, 512), ada, "N % 4");
}

TEST(CudaFp8GemmCheck, AcceptsTheShapesTrainingRuns) {
  const Fp8Tile row{1, 128}, block{128, 128};
  // DeepSeek-V3 Linear shapes (tokens 4096, hidden 7168, expert width 2048).
  for (Path path : kConcretePaths) {
    EXPECT_NO_THROW(cuda_fp8_gemm_check(shape_view(4096, 7168, row),
                                        shape_view(2048, 7168, block), path));
    EXPECT_NO_THROW(cuda_fp8_gemm_check(shape_view(7168, 4096, row),
                                        shape_view(2048, 4096, row), path));
    EXPECT_NO_THROW(cuda_fp8_gemm_check(shape_view(0, 7168, row),
                                        shape_view(2048, 7168, block), path));
  }
  // The dequantizing path takes any shape, tile and format.
  EXPECT_NO_THROW(cuda_fp8_gemm_check(
      shape_view(37, 53, {1, 7}, Fp8Format::kE5M2, g_codes + 3),
      shape_view(29, 53, {7, 7}, Fp8Format::kE5M2), Path::kDequantBf16));
  // The tile loop takes a last K tile narrower than the others.
  EXPECT_NO_THROW(cuda_fp8_gemm_check(shape_view(37, 320, row), shape_view(52, 320, block),
                                      Path::kTileLoopFp8));
}

// ---- device helpers --------------------------------------------------------------------------

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : size_(host.size()) {
    cuda_ok(cudaMalloc(&ptr_, bytes()), "cudaMalloc");
    cuda_ok(cudaMemcpy(ptr_, host.data(), bytes(), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr_); }
  T* get() const { return static_cast<T*>(ptr_); }
  std::vector<T> download() const {
    std::vector<T> host(size_);
    cuda_ok(cudaDeviceSynchronize(), "kernels before the download");
    cuda_ok(cudaMemcpy(host.data(), ptr_, bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return host;
  }

 private:
  size_t bytes() const { return size_ * sizeof(T); }
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// An Fp8Matrix copied to the device, and a view of the copy.
struct DeviceFp8 {
  explicit DeviceFp8(const Fp8Matrix& m)
      : codes(m.codes.to_host()), scales(m.scales.to_host()),
        view{codes.get(), scales.get(), m.rows, m.cols, m.tile, m.format} {}
  DeviceArray<uint8_t> codes;
  DeviceArray<float> scales;
  Fp8View view;
};

#define SKIP_WITHOUT_GPU()                                          \
  if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device"

std::vector<Path> paths_this_gpu_runs(const CudaFp8GemmWorkspace& workspace) {
  std::vector<Path> paths;
  for (Path path : kConcretePaths) {
    if (cuda_fp8_gemm_path_runs_on(path, workspace.sm_major(), workspace.sm_minor())) {
      paths.push_back(path);
    }
  }
  return paths;
}

// C after cuda_fp8_gemm_tn on a device copy of c0 (FP32 or BF16 bit patterns).
template <typename T>
std::vector<T> gpu_gemm(CudaFp8GemmWorkspace& workspace, const DeviceFp8& a, const DeviceFp8& b,
                        const std::vector<T>& c0, bool accumulate) {
  DeviceArray<T> c(c0);
  cuda_fp8_gemm_tn(a.view, b.view, c.get(), accumulate, workspace, nullptr);
  return c.download();
}

double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(diff / norm);
}

std::vector<float> decode_bf16(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_decode(bits[i]);
  return out;
}

double as_number(float x) { return x; }
double as_number(uint16_t bf16) { return bf16_decode(bf16); }

// Equal values element by element (so +0 == -0), reporting how many differ and the first.
template <typename T>
::testing::AssertionResult same_values(const std::vector<T>& got, const std::vector<T>& want) {
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (as_number(got[i]) != as_number(want[i]) && differ++ == 0) first = i;
  }
  if (differ == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << differ << " of " << want.size()
                                       << " elements differ; the first, #" << first << ", is "
                                       << as_number(got[first]) << " instead of "
                                       << as_number(want[first]);
}

// ---- bit-exact inputs ------------------------------------------------------------------------

// Values are integers in [-4, 4] and scales powers of two in [2⁻², 2²], so every product is a
// multiple of 2⁻⁴ below 2⁸ and every sum over K ≤ 512 stays below 2¹⁷: 21 significant bits,
// exact in FP32 whatever the order. Unscaled sums inside a 128-wide tile are integers ≤ 2048,
// exact even in the ~14-bit accumulator of FP8 tensor cores (DeepSeek-V3 §3.3.2), and code·scale
// is exact in BF16. So every path must give the CPU emulation's result bit for bit.
Fp8Matrix exact_operand(int64_t rows, int64_t cols, Fp8Tile tile, Fp8Format format,
                        uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> value(-4, 4), exponent(-2, 2);
  Fp8Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.tile = tile;
  m.format = format;
  m.codes.resize(size_t(rows * cols));
  for (auto& code : m.codes) code = fp8_encode(float(value(rng)), format);
  m.scales.resize(size_t(m.view().tile_rows() * m.view().tile_cols()));
  for (auto& scale : m.scales) scale = std::ldexp(1.0f, exponent(rng));
  return m;
}

struct ExactCase {
  const char* name;
  int64_t M, N, K;
  Fp8Tile b_tile;
  Fp8Format a_format, b_format;
};

TEST(CudaFp8Gemm, EveryPathIsExactWhereEveryIntermediateIs) {
  SKIP_WITHOUT_GPU();
  CudaFp8GemmWorkspace workspace;
  const ExactCase cases[] = {
      // M and N not multiples of 128: partial 128×128 blocks at the edges.
      {"fprop", 208, 320, 512, {128, 128}, Fp8Format::kE4M3, Fp8Format::kE4M3},
      {"wgrad", 208, 320, 512, {1, 128}, Fp8Format::kE4M3, Fp8Format::kE4M3},
      {"dgrad, dy in e5m2", 208, 320, 512, {128, 128}, Fp8Format::kE5M2, Fp8Format::kE4M3},
      // K = 2.5 tiles: block-scaled refuses it, the tile loop runs a narrower last tile.
      {"odd shape", 37, 52, 320, {128, 128}, Fp8Format::kE4M3, Fp8Format::kE4M3},
  };
  for (const ExactCase& t : cases) {
    const Fp8Matrix a = exact_operand(t.M, t.K, {1, 128}, t.a_format, 11);
    const Fp8Matrix b = exact_operand(t.N, t.K, t.b_tile, t.b_format, 12);
    const DeviceFp8 a_dev(a), b_dev(b);
    std::mt19937_64 rng(13);
    std::uniform_int_distribution<int> small(-64, 64);
    std::vector<float> c0(size_t(t.M * t.N));
    for (auto& x : c0) x = float(small(rng));  // exact in BF16 too
    std::vector<uint16_t> c0_bf16(c0.size());
    for (size_t i = 0; i < c0.size(); ++i) c0_bf16[i] = bf16_encode(c0[i]);

    for (bool accumulate : {false, true}) {
      std::vector<float> want = c0;
      fp8_gemm_tn(a.view(), b.view(), want.data(), accumulate);
      std::vector<uint16_t> want_bf16(want.size());
      for (size_t i = 0; i < want.size(); ++i) want_bf16[i] = bf16_encode(want[i]);

      for (Path path : paths_this_gpu_runs(workspace)) {
        const std::string label = std::string(t.name) + ", " + cuda_fp8_gemm_path_name(path) +
                                  (accumulate ? ", C +=" : ", C =");
        try {
          cuda_fp8_gemm_check(a_dev.view, b_dev.view, path);
        } catch (const std::invalid_argument&) {
          EXPECT_EQ(path, Path::kBlockScaledFp8) << label << ": only block-scaled refuses";
          continue;
        }
        // The tile loop runs twice: all K tiles in one pass, then one tile per pass.
        for (int64_t budget : {int64_t(256) << 20, int64_t(1)}) {
          if (budget == 1 && path != Path::kTileLoopFp8) continue;
          workspace.set_tile_loop_partials_budget(budget);
          workspace.force_path(path);
          EXPECT_TRUE(same_values(gpu_gemm(workspace, a_dev, b_dev, c0, accumulate), want))
              << label << ", FP32 C, partials budget " << budget;
          EXPECT_TRUE(
              same_values(gpu_gemm(workspace, a_dev, b_dev, c0_bf16, accumulate), want_bf16))
              << label << ", BF16 C, partials budget " << budget;
        }
        workspace.set_tile_loop_partials_budget(int64_t(256) << 20);
      }
    }
  }
}

// ---- quantized random data -------------------------------------------------------------------

// Normal values whose magnitude jumps by up to 2^±4 from one 64-column chunk (and row) to the
// next, so neighbouring tiles get very different scales and a scale applied to the wrong tile
// is an O(1) error.
std::vector<float> random_tensor(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> octave(-4.0f, 4.0f);
  std::vector<float> x(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    float magnitude = 1.0f;
    for (int64_t c = 0; c < cols; ++c) {
      if (c % 64 == 0) magnitude = std::exp2(octave(rng));
      x[size_t(r * cols + c)] = magnitude * normal(rng);
    }
  }
  return x;
}

struct Operands {
  const char* name;
  Fp8Matrix a, b;
};

// The three GEMMs of a Linear y = x·Wᵀ, quantized as DeepSeek-V3 does (kernels/fp8_gemm.h):
//   Fprop y [M, N]  = x [M, K] (1×128) · W [N, K] (128×128)
//   Dgrad dx [M, N] = dy [M, K] (1×128) · Wᵀ (W [K, N] quantized transposed, 128×128)
//   Wgrad dW [M, N] = dyᵀ · xᵀ, dy [K, M] and x [K, N] (tokens = K) in 128×1 tiles, transposed.
std::vector<Operands> linear_gemms(int64_t M, int64_t N, int64_t K) {
  const Fp8ScaleOptions e4m3;
  std::vector<Operands> out(3);
  out[0].name = "fprop";
  fp8_quantize(random_tensor(M, K, 1).data(), M, K, {1, 128}, e4m3, &out[0].a);
  fp8_quantize(random_tensor(N, K, 2).data(), N, K, {128, 128}, e4m3, &out[0].b);
  out[1].name = "dgrad";
  fp8_quantize(random_tensor(M, K, 3).data(), M, K, {1, 128}, e4m3, &out[1].a);
  fp8_quantize_transposed(random_tensor(K, N, 4).data(), K, N, {128, 128}, e4m3, &out[1].b);
  out[2].name = "wgrad";
  fp8_quantize_transposed(random_tensor(K, M, 5).data(), K, M, {128, 1}, e4m3, &out[2].a);
  fp8_quantize_transposed(random_tensor(K, N, 6).data(), K, N, {128, 1}, e4m3, &out[2].b);
  return out;
}

// Tolerances on ‖Δ‖/‖ref‖ against the exact emulation (FP32 sums per tile, FP32 promotion):
// - FP8 tensor-core paths: between promotions the FP8 accumulator keeps about 14 bits
//   (DeepSeek-V3 §3.3.2). A model of that (products aligned to the largest in each group of
//   32 and truncated to 14 / 13 bits, FP32 promotion every 128) gives 2·10⁻⁴ / 4·10⁻⁴ on
//   these inputs; 2·10⁻³ leaves a ×5 margin, while any misplaced scale gives O(1). A
//   full-FP32 accumulator would give ~10⁻⁷: bit-exactness is what the exact test checks.
// - dequant-bf16: each operand value is rounded to BF16 (relative ≤ 2⁻⁹, uniform), giving
//   ≈ 2⁻⁹·√(2/3) ≈ 1.6·10⁻³ on a dot product; 10⁻² as planned for the path. Against the
//   product of the BF16-rounded operands in double only FP32 accumulation is left: ≤ 10⁻⁴
//   (typical √K·2⁻²⁴ ≈ 3·10⁻⁶; tensor cores truncate rather than round).
// - BF16 C adds its own rounding (≤ 2⁻⁹ relative per element): + 2⁻⁸.
constexpr double kFp8PathTolerance = 2e-3;
constexpr double kDequantTolerance = 1e-2;
constexpr double kDequantVsBf16OperandsTolerance = 1e-4;
constexpr double kBf16OutputTolerance = 1.0 / 256;

// Rows [first, first + count) of A·Bᵀ: exact emulation, and the BF16-operand product.
struct Reference {
  std::vector<double> fp8, bf16_operands;
};

Reference reference_rows(const Fp8Matrix& a, const Fp8Matrix& b, int64_t first, int64_t count) {
  const int64_t N = b.rows, K = a.cols;
  Reference ref;
  std::vector<float> c(size_t(count * N));
  fp8_gemm_tn(a.view().row_slice(first, count), b.view(), c.data(), false);
  ref.fp8.assign(c.begin(), c.end());
  const Fp8View av = a.view(), bv = b.view();
  std::vector<float> b_bf16(static_cast<size_t>(N * K));
  std::vector<float> a_row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) b_bf16[size_t(n * K + k)] = bf16_round(bv.value(n, k));
  }
  ref.bf16_operands.resize(size_t(count * N));
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t k = 0; k < K; ++k) a_row[size_t(k)] = bf16_round(av.value(first + i, k));
    for (int64_t n = 0; n < N; ++n) {
      const float* b_row = &b_bf16[size_t(n * K)];
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += double(a_row[size_t(k)]) * b_row[k];
      ref.bf16_operands[size_t(i * N + n)] = sum;
    }
  }
  return ref;
}

void check_random_gemms(int64_t M, int64_t N, int64_t K, int64_t rows_per_end) {
  CudaFp8GemmWorkspace workspace;
  // Rows compared: all of them, or the first and last rows_per_end (the CPU reference of the
  // full DeepSeek-like product would take minutes).
  const int64_t compared = std::min(M, 2 * rows_per_end);
  for (const Operands& op : linear_gemms(M, N, K)) {
    Reference head = reference_rows(op.a, op.b, 0, compared / 2);
    const Reference tail = reference_rows(op.a, op.b, M - compared / 2, compared / 2);
    head.fp8.insert(head.fp8.end(), tail.fp8.begin(), tail.fp8.end());
    head.bf16_operands.insert(head.bf16_operands.end(), tail.bf16_operands.begin(),
                              tail.bf16_operands.end());
    const auto compared_rows = [&](const std::vector<float>& c) {
      std::vector<float> rows(c.begin(), c.begin() + compared / 2 * N);
      rows.insert(rows.end(), c.end() - compared / 2 * N, c.end());
      return rows;
    };

    const DeviceFp8 a(op.a), b(op.b);
    for (Path path : paths_this_gpu_runs(workspace)) {
      workspace.force_path(path);
      const std::string label = std::string(op.name) + " " + std::to_string(M) + "×" +
                                std::to_string(N) + "×" + std::to_string(K) + ", " +
                                cuda_fp8_gemm_path_name(path);
      const double tolerance =
          path == Path::kDequantBf16 ? kDequantTolerance : kFp8PathTolerance;
      const auto c32 = compared_rows(
          gpu_gemm(workspace, a, b, std::vector<float>(size_t(M * N), NAN), false));
      const auto c16 = compared_rows(decode_bf16(
          gpu_gemm(workspace, a, b, std::vector<uint16_t>(size_t(M * N), 0x7FC0), false)));
      const double e32 = relative_error(c32, head.fp8), e16 = relative_error(c16, head.fp8);
      EXPECT_LE(e32, tolerance) << label << ", FP32 C";
      EXPECT_LE(e16, tolerance + kBf16OutputTolerance) << label << ", BF16 C";
      if (path == Path::kDequantBf16) {
        EXPECT_LE(relative_error(c32, head.bf16_operands), kDequantVsBf16OperandsTolerance)
            << label << ", FP32 C against the BF16-rounded operands";
      }
      std::printf("[ %-34s ] ‖Δ‖/‖ref‖ FP32 C %.2e, BF16 C %.2e\n", label.c_str(), e32, e16);
    }
  }
}

TEST(CudaFp8Gemm, MatchesTheCpuEmulationOnQuantizedRandomData) {
  SKIP_WITHOUT_GPU();
  check_random_gemms(256, 384, 512, 128);
}

TEST(CudaFp8Gemm, MatchesTheCpuEmulationAtDeepSeekShape) {
  SKIP_WITHOUT_GPU();
  check_random_gemms(512, 7168, 2048, 4);
}

// ---- the rest --------------------------------------------------------------------------------

TEST(CudaFp8Gemm, DefaultPathIsTheGenerationsAndOthersAreRefusedWhereMissing) {
  SKIP_WITHOUT_GPU();
  CudaFp8GemmWorkspace workspace;
  EXPECT_EQ(workspace.path(), cuda_fp8_gemm_path(workspace.sm_major(), workspace.sm_minor()));
  for (Path path : kConcretePaths) {
    if (cuda_fp8_gemm_path_runs_on(path, workspace.sm_major(), workspace.sm_minor())) {
      EXPECT_NO_THROW(workspace.force_path(path));
      EXPECT_EQ(workspace.path(), path);
    } else {
      EXPECT_THROW(workspace.force_path(path), std::invalid_argument);
    }
  }
  workspace.force_path(Path::kAuto);
  EXPECT_EQ(workspace.path(), cuda_fp8_gemm_path(workspace.sm_major(), workspace.sm_minor()));
}

TEST(CudaFp8Gemm, AllocatesNothingOnceAShapeHasRun) {
  SKIP_WITHOUT_GPU();
  CudaFp8GemmWorkspace workspace;
  const std::vector<Operands> ops = linear_gemms(256, 384, 512);
  for (const Operands& op : {ops[0], ops[2]}) {  // block and row tilings of B
    const DeviceFp8 a(op.a), b(op.b);
    DeviceArray<uint16_t> c(std::vector<uint16_t>(size_t(256 * 384)));
    for (Path path : paths_this_gpu_runs(workspace)) {
      workspace.force_path(path);
      cuda_fp8_gemm_tn(a.view, b.view, c.get(), false, workspace, nullptr);
      const int64_t allocations = workspace.allocations(), bytes = workspace.device_bytes();
      for (int i = 0; i < 3; ++i) {
        cuda_fp8_gemm_tn(a.view, b.view, c.get(), true, workspace, nullptr);
      }
      c.download();
      EXPECT_EQ(workspace.allocations(), allocations) << cuda_fp8_gemm_path_name(path);
      EXPECT_EQ(workspace.device_bytes(), bytes) << cuda_fp8_gemm_path_name(path);
    }
  }
}

TEST(CudaFp8Gemm, Bf16BaselineGemmIsTheProductItClaims) {
  SKIP_WITHOUT_GPU();
  CudaFp8GemmWorkspace workspace;
  const int64_t M = 64, N = 48, K = 96;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  std::vector<uint16_t> a(size_t(M * K)), b(size_t(N * K));
  for (auto& x : a) x = bf16_encode(normal(rng));
  for (auto& x : b) x = bf16_encode(normal(rng));
  std::vector<double> want(size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        sum += double(bf16_decode(a[size_t(m * K + k)])) * bf16_decode(b[size_t(n * K + k)]);
      }
      want[size_t(m * N + n)] = sum;
    }
  }
  const DeviceArray<uint16_t> a_dev(a), b_dev(b);
  DeviceArray<float> c(std::vector<float>(size_t(M * N), NAN));
  cuda_bf16_gemm_tn(a_dev.get(), b_dev.get(), M, N, K, c.get(), false, workspace, nullptr);
  // BF16 products are exact in FP32; only FP32 summation order is left (see above).
  EXPECT_LE(relative_error(c.download(), want), kDequantVsBf16OperandsTolerance);
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
