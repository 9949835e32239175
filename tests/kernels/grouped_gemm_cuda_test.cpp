// The grouped expert GEMMs (kernels/cuda/grouped_gemm.h) against a per-expert loop of the CPU's
// linear_* (kernels/gemm.h):
//   - E = 8 experts with uneven row counts, empty ones included (the first, a middle one);
//   - forward and backward input over NaN-filled outputs (overwritten), backward weight onto a
//     non-zero dw, twice (accumulated);
//   - FP32, and BF16 operands with FP32 and BF16 outputs (the CPU on the same rounded inputs);
//   - which path runs: 16-byte-aligned shapes take the grouped call for FP32 and for BF16 →
//     BF16 (the combinations cuBLAS documents), odd shapes and force_loop the loop;
//   - many calls in a row, with different experts' rows, each keep their own pointers (the ring);
//   - no expert with rows: nothing runs, nothing is written;
//   - more experts than the ring holds: it grows once; a second call allocates nothing.
//
// Tolerances (relative, ‖got − want‖₂ / ‖want‖₂; the reasoning is gemm_cuda_test.cpp's):
//   FP32 outputs, FP32 or BF16 operands: 1e-5 (the same products summed in another order; the
//   sums here are ≤ 128 long, the accumulated dw 40 additions deep).
//   BF16 outputs: one rounding to 8 significant bits on top: 2⁻⁸ + 1e-5.
//   TF32: 3e-3.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaGroupedGemm, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/grouped_gemm.h"
#include "kernels/gemm.h"
#include "tests/kernels/cuda_test_support.h"
#include "tests/kernels/gemm_cuda_test_support.h"

namespace baleine::kernels::cuda {
namespace {

using testing::decode;
using testing::kFp32Tolerance;
using testing::kTf32Tolerance;
using testing::LinearLayerTest;
using testing::LinearResults;
using testing::random_floats;
using testing::relative_error;
using testing::tolerance_for;

// Row counts per expert and their prefix sums (the host offsets the API takes).
struct Experts {
  std::vector<int64_t> counts, offsets;

  explicit Experts(std::vector<int64_t> per_expert) : counts(std::move(per_expert)) {
    offsets.push_back(0);
    for (int64_t c : counts) offsets.push_back(offsets.back() + c);
  }
  int64_t experts() const { return static_cast<int64_t>(counts.size()); }
  int64_t rows() const { return offsets.back(); }
  ExpertRows view() const { return {offsets.data(), experts()}; }
};

const Experts kUneven({0, 37, 5, 64, 0, 1, 19, 3});

// The CPU's results for one set of inputs: expert by expert, as the per-expert loop would.
struct CpuLayer {
  std::vector<float> y, dx, dw;
};
void cpu_forward(const Experts& e, const std::vector<float>& x, const std::vector<float>& w,
                 std::vector<float>& y, int64_t K, int64_t N) {
  for (int64_t i = 0; i < e.experts(); ++i) {
    if (e.counts[i] == 0) continue;
    kernels::linear_forward<float>(x.data() + e.offsets[i] * K, w.data() + i * N * K,
                                   y.data() + e.offsets[i] * N, e.counts[i], K, N);
  }
}
void cpu_backward_input(const Experts& e, const std::vector<float>& dy,
                        const std::vector<float>& w, std::vector<float>& dx, int64_t K,
                        int64_t N) {
  for (int64_t i = 0; i < e.experts(); ++i) {
    if (e.counts[i] == 0) continue;
    kernels::linear_backward_input<float>(dy.data() + e.offsets[i] * N, w.data() + i * N * K,
                                          dx.data() + e.offsets[i] * K, e.counts[i], K, N);
  }
}
void cpu_backward_weight(const Experts& e, const std::vector<float>& dy,
                         const std::vector<float>& x, std::vector<float>& dw, int64_t K,
                         int64_t N) {
  for (int64_t i = 0; i < e.experts(); ++i) {
    if (e.counts[i] == 0) continue;
    kernels::linear_backward_weight<float>(dy.data() + e.offsets[i] * N,
                                           x.data() + e.offsets[i] * K, dw.data() + i * N * K,
                                           e.counts[i], K, N);
  }
}

// The per-expert loop above, the reference of expect_passes.
struct CpuGroupedLinear {
  const Experts& e;
  int64_t K, N;
  void forward(const std::vector<float>& x, const std::vector<float>& w,
               std::vector<float>& y) const {
    cpu_forward(e, x, w, y, K, N);
  }
  void backward_input(const std::vector<float>& dy, const std::vector<float>& w,
                      std::vector<float>& dx) const {
    cpu_backward_input(e, dy, w, dx, K, N);
  }
  void backward_weight(const std::vector<float>& dy, const std::vector<float>& x,
                       std::vector<float>& dw) const {
    cpu_backward_weight(e, dy, x, dw, K, N);
  }
};

class CudaGroupedGemm : public LinearLayerTest {
 protected:
  // The three passes on the GPU against the CPU loop; returns the path they took (the same for
  // all three: they share alignment and types).
  template <typename In, typename Out>
  GroupedGemmPath expect_passes(GroupedGemmContext& context, const Experts& e, int64_t K,
                                int64_t N, double fp32_tolerance = kFp32Tolerance) {
    const std::string label = "K=" + std::to_string(K) + " N=" + std::to_string(N) +
                              (std::is_same_v<In, float> ? ", FP32 in" : ", BF16 in") +
                              (std::is_same_v<Out, float> ? ", FP32 out" : ", BF16 out");
    auto layer = make_layer<In, Out>(e.rows(), K, N, e.experts() * N * K);
    LinearResults got;
    grouped_linear_forward(context, e.view(), layer.x_dev.data(), layer.w_dev.data(),
                           layer.y_dev.data(), K, N, stream());
    const GroupedGemmPath path = context.last_path();
    grouped_linear_backward_input(context, e.view(), layer.dy_dev.data(), layer.w_dev.data(),
                                  layer.dx_dev.data(), K, N, stream());
    EXPECT_EQ(context.last_path(), path) << label;
    grouped_linear_backward_weight(context, e.view(), layer.dy_dev.data(), layer.x_dev.data(),
                                   layer.dw_dev.data(), K, N, stream());
    EXPECT_EQ(context.last_path(), path) << label;
    got.dw_once = decode(download(layer.dw_dev));
    grouped_linear_backward_weight(context, e.view(), layer.dy_dev.data(), layer.x_dev.data(),
                                   layer.dw_dev.data(), K, N, stream());
    got.y = decode(download(layer.y_dev));
    got.dx = decode(download(layer.dx_dev));
    got.dw_twice = decode(download(layer.dw_dev));
    expect_layer_matches(layer, got, CpuGroupedLinear{e, K, N},
                         tolerance_for<Out>(fp32_tolerance),
                         label + ", " + grouped_gemm_path_name(path) + " path");
    return path;
  }
};

// K and N multiples of 8: every expert's matrices and row strides are 16-byte aligned in FP32
// and BF16 alike (the buffers themselves are 256-byte aligned).
constexpr int64_t kAlignedK = 64, kAlignedN = 48;
constexpr int64_t kOddK = 29, kOddN = 53;

TEST_F(CudaGroupedGemm, Fp32AlignedShapesRunOneGroupedCall) {
  GroupedGemmContext context;
  EXPECT_EQ(context.last_path(), GroupedGemmPath::kNone);
  EXPECT_EQ((expect_passes<float, float>(context, kUneven, kAlignedK, kAlignedN)),
            GroupedGemmPath::kGrouped);
}

TEST_F(CudaGroupedGemm, Fp32OddShapesRunTheLoop) {
  GroupedGemmContext context;
  EXPECT_EQ((expect_passes<float, float>(context, kUneven, kOddK, kOddN)),
            GroupedGemmPath::kLoop);
}

TEST_F(CudaGroupedGemm, ForcedLoopGivesTheSameResults) {
  GroupedGemmContext context;
  context.force_loop(true);
  EXPECT_EQ((expect_passes<float, float>(context, kUneven, kAlignedK, kAlignedN)),
            GroupedGemmPath::kLoop);
  EXPECT_EQ((expect_passes<uint16_t, uint16_t>(context, kUneven, kAlignedK, kAlignedN)),
            GroupedGemmPath::kLoop);
}

TEST_F(CudaGroupedGemm, Bf16OperandsWithBf16Outputs) {
  GroupedGemmContext context;
  EXPECT_EQ((expect_passes<uint16_t, uint16_t>(context, kUneven, kAlignedK, kAlignedN)),
            GroupedGemmPath::kGrouped);
  EXPECT_EQ((expect_passes<uint16_t, uint16_t>(context, kUneven, kOddK, kOddN)),
            GroupedGemmPath::kLoop);
}

// cuBLAS does not document BF16 operands with FP32 C for the grouped call: either path is
// right as long as the numbers are; the test records which one this cuBLAS took.
TEST_F(CudaGroupedGemm, Bf16OperandsWithFp32Outputs) {
  GroupedGemmContext context;
  const GroupedGemmPath path =
      expect_passes<uint16_t, float>(context, kUneven, kAlignedK, kAlignedN);
  EXPECT_NE(path, GroupedGemmPath::kNone);
  RecordProperty("bf16_in_fp32_out_path", grouped_gemm_path_name(path));
  std::printf("BF16 operands, FP32 outputs: %s path\n", grouped_gemm_path_name(path));
  // Once refused, the combination stays on the loop without asking cuBLAS again.
  EXPECT_EQ((expect_passes<uint16_t, float>(context, kUneven, kAlignedK, kAlignedN)), path);
  EXPECT_EQ((expect_passes<uint16_t, float>(context, kUneven, kOddK, kOddN)),
            GroupedGemmPath::kLoop);
}

TEST_F(CudaGroupedGemm, Tf32WhenAsked) {
  GroupedGemmContext context(GemmMath::kTf32);
  EXPECT_EQ(context.math(), GemmMath::kTf32);
  const GroupedGemmPath path =
      expect_passes<float, float>(context, kUneven, kAlignedK, kAlignedN, kTf32Tolerance);
  RecordProperty("tf32_path", grouped_gemm_path_name(path));
}

// 40 backward-weight calls without a pause (the host runs ahead of the GPU and wraps the pointer
// ring twice), alternating between two batches with different experts' rows into one dw: a call
// that read another call's pointers or sizes would add the wrong batch's gradient.
TEST_F(CudaGroupedGemm, ManyCallsInARowEachKeepTheirOwnPointers) {
  const int64_t K = kAlignedK, N = kAlignedN;
  const Experts batches[2] = {kUneven, Experts({9, 0, 22, 3, 41, 7, 0, 16})};
  std::vector<std::vector<float>> x, dy;
  std::vector<DeviceBuffer<float>> x_dev, dy_dev;
  for (int b = 0; b < 2; ++b) {
    x.push_back(random_floats(batches[b].rows() * K, 10 + b));
    dy.push_back(random_floats(batches[b].rows() * N, 20 + b));
    x_dev.push_back(upload(x[b]));
    dy_dev.push_back(upload(dy[b]));
  }
  const std::vector<float> dw0 = random_floats(8 * N * K, 30);
  DeviceBuffer<float> dw_dev = upload(dw0);
  std::vector<float> dw = dw0;

  GroupedGemmContext context;
  for (int call = 0; call < 40; ++call) {
    const int b = call % 2;
    grouped_linear_backward_weight(context, batches[b].view(), dy_dev[b].data(),
                                   x_dev[b].data(), dw_dev.data(), K, N, stream());
    ASSERT_EQ(context.last_path(), GroupedGemmPath::kGrouped) << "call " << call;
    cpu_backward_weight(batches[b], dy[b], x[b], dw, K, N);
  }
  EXPECT_LT(relative_error(download(dw_dev), dw), kFp32Tolerance);
}

// As the MoE layer calls it (model/grouped_experts.cpp): the rows of an expert-parallel source
// block start mid-buffer (offsets[0] > 0), and the backward input adds db·W3 to da·W1 with
// accumulate. Rows outside the block must keep their values.
TEST_F(CudaGroupedGemm, ABlockMidBufferAndAnAccumulatingBackwardInput) {
  const int64_t K = kAlignedK, N = kAlignedN, before = 11, after = 3;
  std::vector<int64_t> offsets;
  for (int64_t o : kUneven.offsets) offsets.push_back(before + o);
  const ExpertRows block{offsets.data(), kUneven.experts()};
  const int64_t rows = before + kUneven.rows() + after;
  const std::vector<float> dy1 = random_floats(rows * N, 41), dy2 = random_floats(rows * N, 42);
  const std::vector<float> w1 = random_floats(8 * N * K, 43), w2 = random_floats(8 * N * K, 44);
  const std::vector<float> dx0 = random_floats(rows * K, 45);
  const DeviceBuffer<float> dy1_dev = upload(dy1), dy2_dev = upload(dy2);
  const DeviceBuffer<float> w1_dev = upload(w1), w2_dev = upload(w2);
  DeviceBuffer<float> dx_dev = upload(dx0);

  GroupedGemmContext context;
  grouped_linear_backward_input(context, block, dy1_dev.data(), w1_dev.data(), dx_dev.data(), K,
                                N, stream());
  EXPECT_EQ(context.last_path(), GroupedGemmPath::kGrouped);
  grouped_linear_backward_input(context, block, dy2_dev.data(), w2_dev.data(), dx_dev.data(), K,
                                N, stream(), /*accumulate=*/true);
  EXPECT_EQ(context.last_path(), GroupedGemmPath::kGrouped);
  const std::vector<float> got = download(dx_dev);

  // The CPU: dx = dy1·W1 + dy2·W2 on the block's rows, dx0 elsewhere.
  std::vector<float> want = dx0;
  const std::vector<float> dy1_block(dy1.begin() + before * N, dy1.end() - after * N);
  const std::vector<float> dy2_block(dy2.begin() + before * N, dy2.end() - after * N);
  std::vector<float> dx1(static_cast<size_t>(kUneven.rows() * K), 0.0f), dx2 = dx1;
  cpu_backward_input(kUneven, dy1_block, w1, dx1, K, N);
  cpu_backward_input(kUneven, dy2_block, w2, dx2, K, N);
  for (size_t i = 0; i < dx1.size(); ++i) want[before * K + i] = dx1[i] + dx2[i];
  EXPECT_LT(relative_error(got, want), kFp32Tolerance);
  for (int64_t i = 0; i < before * K; ++i) ASSERT_EQ(got[i], dx0[i]) << "row before the block";
  for (int64_t i = (rows - after) * K; i < rows * K; ++i) {
    ASSERT_EQ(got[i], dx0[i]) << "row after the block";
  }
}

TEST_F(CudaGroupedGemm, NoExpertWithRowsRunsNothing) {
  const int64_t K = kAlignedK, N = kAlignedN;
  const Experts idle({0, 0, 0, 0, 0, 0, 0, 0}), none({});
  const std::vector<float> dw0 = random_floats(8 * N * K, 5);
  DeviceBuffer<float> dw_dev = upload(dw0);
  const DeviceBuffer<float> w_dev = upload(random_floats(8 * N * K, 6));
  GroupedGemmContext context;
  for (const Experts* e : {&idle, &none}) {
    // No rows: no activations at all (null), and the weights' gradient stays as it was.
    grouped_linear_forward(context, e->view(), static_cast<const float*>(nullptr), w_dev.data(),
                           static_cast<float*>(nullptr), K, N, stream());
    EXPECT_EQ(context.last_path(), GroupedGemmPath::kNone);
    grouped_linear_backward_weight(context, e->view(), static_cast<const float*>(nullptr),
                                   static_cast<const float*>(nullptr), dw_dev.data(), K, N,
                                   stream());
    EXPECT_EQ(context.last_path(), GroupedGemmPath::kNone);
  }
  EXPECT_EQ(download(dw_dev), dw0);
  EXPECT_EQ(context.device_allocations(), 1) << "only the dense context's workspace";
}

TEST_F(CudaGroupedGemm, TheRingGrowsOnceThenNothingIsAllocated) {
  GroupedGemmContext context;
  EXPECT_EQ(context.device_allocations(), 1) << "the dense context's workspace";
  expect_passes<float, float>(context, kUneven, kAlignedK, kAlignedN);
  const int64_t after_first = context.device_allocations();
  EXPECT_EQ(after_first, 3) << "the workspace, then the pinned and device pointer arrays";
  const int64_t arena_allocations = arena().stats().device_allocations;

  const int64_t K = kAlignedK, N = kAlignedN;
  const int64_t rows = kUneven.rows();
  const DeviceBuffer<float> x = upload(random_floats(rows * K, 7));
  const DeviceBuffer<float> w = upload(random_floats(8 * N * K, 8));
  DeviceBuffer<float> y = empty<float>(rows * N);
  for (int call = 0; call < 3; ++call) {
    grouped_linear_forward(context, kUneven.view(), x.data(), w.data(), y.data(), K, N,
                           stream());
  }
  EXPECT_EQ(context.device_allocations(), after_first);
  EXPECT_EQ(arena().stats().device_allocations, arena_allocations);

  // 100 experts (0 to 4 rows each) outgrow the first 64 pointers per slot: one more pinned and
  // one more device array, and the results still right.
  std::vector<int64_t> counts(100);
  for (size_t i = 0; i < counts.size(); ++i) counts[i] = static_cast<int64_t>(i % 5);
  const Experts many(counts);
  EXPECT_EQ((expect_passes<float, float>(context, many, kAlignedK, kAlignedN)),
            GroupedGemmPath::kGrouped);
  EXPECT_EQ(context.device_allocations(), after_first + 2);
  expect_passes<float, float>(context, many, kAlignedK, kAlignedN);
  EXPECT_EQ(context.device_allocations(), after_first + 2);
}

TEST_F(CudaGroupedGemm, RefusesBadArguments) {
  GroupedGemmContext context;
  DeviceBuffer<float> buffer = empty<float>(1024);
  float* p = buffer.data();
  const std::vector<int64_t> decreasing = {0, 4, 2};
  const ExpertRows bad_rows{decreasing.data(), 2};
  EXPECT_THROW(grouped_linear_forward(context, bad_rows, p, p, p, 4, 4, stream()),
               std::invalid_argument);
  const ExpertRows null_rows{nullptr, 2};
  EXPECT_THROW(grouped_linear_forward(context, null_rows, p, p, p, 4, 4, stream()),
               std::invalid_argument);
  const std::vector<int64_t> fine = {0, 4, 8};
  const ExpertRows rows{fine.data(), 2};
  EXPECT_THROW(grouped_linear_forward(context, rows, p, p, p, -1, 4, stream()),
               std::invalid_argument);
  EXPECT_THROW(grouped_linear_forward(context, rows, p, p, static_cast<float*>(nullptr), 4, 4,
                                      stream()),
               std::invalid_argument);
  EXPECT_THROW(grouped_linear_backward_weight(context, rows, static_cast<const float*>(nullptr),
                                              p, p, 4, 4, stream()),
               std::invalid_argument);
}

}  // namespace
}  // namespace baleine::kernels::cuda

#endif  // BALEINE_HAVE_CUDA
