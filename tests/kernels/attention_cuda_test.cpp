// The CUDA attention kernels (kernels/cuda/attention.h) against the CPU kernel
// (kernels/attention.h) on the same random, never-zero inputs: forward (out, lse) and backward
// (dq, dk, dv). Shapes cover seq 1, seqs that are not a multiple of any tile (37, 65, 100, 300),
// several batch / head counts, every head_dim the configs use (24 quickstart, 32
// shakespeare-moe, 56 DeepSeek-V3: hidden / heads), each padded kernel instance (32, 64, 128),
// head_dims that are not multiples of 4 or 8, and realistic sizes (seq 1024, 16 heads).
// Outputs start as NaN, so an element a kernel forgets to write fails the comparison. The
// backward must give the same bits twice, and head_dim above the limit must be refused.
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#include "kernels/cuda/attention.h"

#ifndef BALEINE_HAVE_CUDA

TEST(CudaAttention, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels::cuda {
namespace {

using testing::random_floats;
using testing::relative_error;

// Norm-wise relative errors against the FP32 CPU kernel (tests/kernels/cuda_test_support.h).
// Forward: both sides are FP32 and differ only in summation order (q·k over head_dim, the
// softmax sum and P·v over up to 1024 keys, blocked differently): ~√L·2⁻²⁴ ≈ 2e-6 at L = 1024.
constexpr double kForwardTolerance = 1e-5;
// Backward: the same, plus the softmax row term computed as dout·out on the GPU and as Σ P ⊙ dP
// on the CPU (equal in exact arithmetic), which dS = P ⊙ (dP − delta) passes on; a dropped or
// extra key block, or a wrong mask, moves a gradient by ~1e-2 or more.
constexpr double kBackwardTolerance = 2e-5;

struct Shape {
  int64_t batch, seq, heads, head_dim;
  int64_t elements() const { return batch * seq * heads * head_dim; }  // of q, k, v, out, ...
  int64_t rows() const { return batch * heads * seq; }                 // of lse
  std::string name() const {
    return "batch " + std::to_string(batch) + ", seq " + std::to_string(seq) + ", heads " +
           std::to_string(heads) + ", head_dim " + std::to_string(head_dim);
  }
};

std::vector<float> nans(int64_t n) {
  return std::vector<float>(size_t(n), std::numeric_limits<float>::quiet_NaN());
}

struct Gradients {
  std::vector<float> dq, dk, dv;
};

class CudaAttention : public testing::GpuTest {
 protected:
  struct Inputs {
    std::vector<float> q, k, v, dout;
  };
  static Inputs random_inputs(const Shape& s, uint32_t seed) {
    return {random_floats(s.elements(), seed), random_floats(s.elements(), seed + 1),
            random_floats(s.elements(), seed + 2), random_floats(s.elements(), seed + 3)};
  }

  // The GPU forward's out and lse.
  std::pair<std::vector<float>, std::vector<float>> gpu_forward(const Shape& s,
                                                                const Inputs& in) {
    auto q = upload(in.q), k = upload(in.k), v = upload(in.v);
    auto out = upload(nans(s.elements())), lse = upload(nans(s.rows()));
    attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), s.batch, s.seq,
                      s.heads, s.head_dim, stream());
    return {download(out), download(lse)};
  }

  // The GPU backward on the given forward results.
  Gradients gpu_backward(const Shape& s, const Inputs& in, const std::vector<float>& out,
                         const std::vector<float>& lse) {
    auto q = upload(in.q), k = upload(in.k), v = upload(in.v), dout = upload(in.dout);
    auto out_d = upload(out), lse_d = upload(lse);
    auto dq = upload(nans(s.elements())), dk = upload(nans(s.elements())),
         dv = upload(nans(s.elements()));
    auto workspace =
        upload(nans(attention_backward_workspace_floats(s.batch, s.seq, s.heads)));
    attention_backward(dout.data(), q.data(), k.data(), v.data(), out_d.data(), lse_d.data(),
                       dq.data(), dk.data(), dv.data(), s.batch, s.seq, s.heads, s.head_dim,
                       workspace.data(), stream());
    return {download(dq), download(dk), download(dv)};
  }

  // Forward and backward on one shape, each against the CPU; the backward gets the CPU's out
  // and lse, so it is checked on its own.
  void expect_matches_cpu(const Shape& s, uint32_t seed) {
    SCOPED_TRACE(s.name());
    const Inputs in = random_inputs(s, seed);
    std::vector<float> out(size_t(s.elements())), lse(size_t(s.rows()));
    kernels::attention_forward<float>(in.q.data(), in.k.data(), in.v.data(), out.data(),
                                      lse.data(), s.batch, s.seq, s.heads, s.head_dim);
    const auto [gpu_out, gpu_lse] = gpu_forward(s, in);
    EXPECT_LT(relative_error(gpu_out, out), kForwardTolerance);
    EXPECT_LT(relative_error(gpu_lse, lse), kForwardTolerance);

    Gradients cpu{std::vector<float>(size_t(s.elements())),
                  std::vector<float>(size_t(s.elements())),
                  std::vector<float>(size_t(s.elements()))};
    kernels::attention_backward<float>(in.dout.data(), in.q.data(), in.k.data(), in.v.data(),
                                       lse.data(), cpu.dq.data(), cpu.dk.data(), cpu.dv.data(),
                                       s.batch, s.seq, s.heads, s.head_dim);
    const Gradients gpu = gpu_backward(s, in, out, lse);
    EXPECT_LT(relative_error(gpu.dq, cpu.dq), kBackwardTolerance);
    EXPECT_LT(relative_error(gpu.dk, cpu.dk), kBackwardTolerance);
    EXPECT_LT(relative_error(gpu.dv, cpu.dv), kBackwardTolerance);
  }
};

// seq 1 (one key per row: dq = dk = 0 exactly, dv = dout), seqs shorter than a tile, one more
// than a tile, and ragged across several tiles, for each kernel instance (head_dim <= 32, <= 64,
// <= 128) and head_dims that use only part of it.
TEST_F(CudaAttention, SmallShapesMatchCpu) {
  const Shape shapes[] = {
      {1, 1, 1, 32},  {2, 1, 3, 64},   {1, 1, 2, 128},  {2, 37, 3, 24},  {1, 100, 2, 56},
      {3, 65, 4, 32}, {1, 129, 2, 64}, {2, 100, 2, 128}, {1, 33, 1, 5},  {1, 70, 2, 100},
      {2, 300, 2, 8}, {1, 17, 5, 2},   {1, 200, 1, 96},  {2, 48, 2, 127}, {1, 16, 3, 1}};
  uint32_t seed = 1;
  for (const Shape& s : shapes) expect_matches_cpu(s, seed += 10);
}

// The configs' head_dims at their own head counts: quickstart (hidden 96, 4 heads, seq 128),
// shakespeare-moe (128 / 4), and DeepSeek-V3's 7168 / 128 = 56 at a shortened seq.
TEST_F(CudaAttention, ConfigShapesMatchCpu) {
  expect_matches_cpu({2, 128, 4, 24}, 100);
  expect_matches_cpu({4, 128, 4, 32}, 200);
  expect_matches_cpu({1, 256, 128, 56}, 300);
}

// Realistic sizes: many tiles along seq, 16 heads.
TEST_F(CudaAttention, LongSequencesMatchCpu) {
  expect_matches_cpu({2, 1024, 16, 64}, 400);
  expect_matches_cpu({1, 1024, 8, 128}, 500);
  expect_matches_cpu({1, 1000, 4, 56}, 600);
}

// No atomics and fixed summation orders: the same inputs give the same bits, forward and
// backward (NaN-filled outputs each time, so the second run cannot inherit the first's).
TEST_F(CudaAttention, BitIdenticalWhenRunTwice) {
  for (const Shape s : {Shape{2, 300, 3, 56}, Shape{1, 333, 2, 128}, Shape{2, 150, 2, 32}}) {
    SCOPED_TRACE(s.name());
    const Inputs in = random_inputs(s, 7);
    const auto [out1, lse1] = gpu_forward(s, in);
    const auto [out2, lse2] = gpu_forward(s, in);
    EXPECT_EQ(std::memcmp(out1.data(), out2.data(), out1.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(lse1.data(), lse2.data(), lse1.size() * sizeof(float)), 0);
    const Gradients first = gpu_backward(s, in, out1, lse1);
    const Gradients second = gpu_backward(s, in, out1, lse1);
    for (const auto& [a, b] : {std::pair{&first.dq, &second.dq}, std::pair{&first.dk, &second.dk},
                               std::pair{&first.dv, &second.dv}}) {
      ASSERT_EQ(a->size(), b->size());
      EXPECT_EQ(std::memcmp(a->data(), b->data(), a->size() * sizeof(float)), 0);
    }
    // And the run was real: the gradients are finite (NaN-filled before).
    for (const float x : first.dk) ASSERT_TRUE(std::isfinite(x));
  }
}

// The GPU forward feeding the GPU backward, as the trainer chains them, against the CPU chain.
TEST_F(CudaAttention, ChainedForwardBackwardMatchesCpu) {
  const Shape s{2, 200, 4, 56};
  const Inputs in = random_inputs(s, 900);
  std::vector<float> out(size_t(s.elements())), lse(size_t(s.rows()));
  kernels::attention_forward<float>(in.q.data(), in.k.data(), in.v.data(), out.data(),
                                    lse.data(), s.batch, s.seq, s.heads, s.head_dim);
  Gradients cpu{std::vector<float>(size_t(s.elements())),
                std::vector<float>(size_t(s.elements())),
                std::vector<float>(size_t(s.elements()))};
  kernels::attention_backward<float>(in.dout.data(), in.q.data(), in.k.data(), in.v.data(),
                                     lse.data(), cpu.dq.data(), cpu.dk.data(), cpu.dv.data(),
                                     s.batch, s.seq, s.heads, s.head_dim);
  const auto [gpu_out, gpu_lse] = gpu_forward(s, in);
  const Gradients gpu = gpu_backward(s, in, gpu_out, gpu_lse);
  EXPECT_LT(relative_error(gpu.dq, cpu.dq), kBackwardTolerance);
  EXPECT_LT(relative_error(gpu.dk, cpu.dk), kBackwardTolerance);
  EXPECT_LT(relative_error(gpu.dv, cpu.dv), kBackwardTolerance);
}

// Refused before any launch (no GPU needed), with the limit in the message.
TEST(CudaAttentionShape, HeadDimAboveTheLimitIsRefused) {
  for (const int64_t head_dim : {int64_t(0), kAttentionMaxHeadDim + 1, int64_t(256)}) {
    try {
      attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 8, 2, head_dim, nullptr);
      ADD_FAILURE() << "head_dim " << head_dim << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(kAttentionMaxHeadDim)),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr, nullptr, nullptr, 1, 8, 2, head_dim, nullptr,
                                    nullptr),
                 std::invalid_argument);
  }
  EXPECT_EQ(attention_backward_workspace_floats(2, 100, 3), 600);
}

}  // namespace
}  // namespace baleine::kernels::cuda

#endif  // BALEINE_HAVE_CUDA
