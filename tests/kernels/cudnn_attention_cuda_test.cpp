// cuDNN's fused flash attention (kernels/cuda/cudnn_attention.h) against the CPU kernel
// (kernels/attention.h): random never-zero q, k, v, dout rounded to BF16, cuDNN forward and
// backward in BF16, the CPU kernel in FP32 on the same rounded values. Shapes: the configs' head
// dims at their head counts (24 quickstart, 32 shakespeare-moe, 56 DeepSeek-V3), seqs that are no
// multiple of 64 (100, 300), head_dim 64 and 128, and a realistic one (seq 1024, 16 heads, 128).
// On sm_80+ every one of them must be supported() (a graph cuDNN declines fails here, with its
// reason, instead of passing quietly); head_dims that are no multiple of 8 or exceed 128 must be
// refused. Outputs start as NaN, so an element cuDNN does not write fails the comparison. The
// default (deterministic) backward must give the same bits twice; the atomic one must match the
// CPU too. Skips without the CUDA backend, without a GPU, or on a GPU older than sm_80.
#include <gtest/gtest.h>

#include "kernels/cuda/cudnn_attention.h"

#ifndef BALEINE_HAVE_CUDA

TEST(CudnnAttention, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/device.h"
#include "kernels/fp8.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels::cuda::cudnn_attention_test {
namespace {

using testing::random_floats;
using testing::relative_error;

// Norm-wise relative errors ‖cuDNN − CPU‖ / ‖CPU‖, both on the same BF16-rounded inputs, so
// input rounding cancels out and what is left is cuDNN's own rounding:
//   out: P is rounded to BF16 (2⁻⁹ relative, ~1.1e-3 rms) before P·V and out itself is stored
//   in BF16 (another ~1.1e-3 rms); the rounding errors of different elements are independent,
//   so the norm-wise error is ~2e-3. 1e-2 leaves a 5x margin, and a dropped key block, a wrong
//   mask or a wrong scale moves out by 1e-1 or more.
//   lse: Q·Kᵀ is exact on BF16 inputs with FP32 accumulation and the softmax statistics are
//   FP32, so the CPU and cuDNN differ by FP32 summation order and exp/log approximations
//   (~1e-6); 1e-4 is generous and still catches a base-2 log (off by ln 2) or a missing scale.
//   dq, dk, dv: dV = Pᵀ·dO with P in BF16, dQ and dK from dS rounded to BF16, the row term
//   Σ dO ⊙ O taken from the BF16 out, and BF16 outputs: a few 2⁻⁹ roundings, ~3e-3 norm-wise.
constexpr double kOutTolerance = 1e-2;
constexpr double kLseTolerance = 1e-4;
constexpr double kGradientTolerance = 1e-2;

constexpr uint16_t kBf16Nan = 0x7FC0;

struct Shape {
  int64_t batch, seq, heads, head_dim;
  int64_t elements() const { return batch * seq * heads * head_dim; }  // of q, k, v, out, ...
  int64_t rows() const { return batch * heads * seq; }                 // of lse
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }
  std::string name() const {
    return "batch " + std::to_string(batch) + ", seq " + std::to_string(seq) + ", heads " +
           std::to_string(heads) + ", head_dim " + std::to_string(head_dim);
  }
};

std::vector<uint16_t> to_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> bits(x.size());
  for (size_t i = 0; i < x.size(); ++i) bits[i] = bf16_encode(x[i]);
  return bits;
}

std::vector<float> from_bf16(const std::vector<uint16_t>& bits) {
  std::vector<float> x(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) x[i] = bf16_decode(bits[i]);
  return x;
}

// BF16 inputs (bit patterns) and their exact FP32 values, which the CPU reference takes.
struct Inputs {
  std::vector<uint16_t> q, k, v, dout;
  std::vector<float> qf, kf, vf, doutf;
};

Inputs random_inputs(const Shape& s, uint32_t seed) {
  Inputs in;
  in.q = to_bf16(random_floats(s.elements(), seed));
  in.k = to_bf16(random_floats(s.elements(), seed + 1));
  in.v = to_bf16(random_floats(s.elements(), seed + 2));
  in.dout = to_bf16(random_floats(s.elements(), seed + 3));
  in.qf = from_bf16(in.q);
  in.kf = from_bf16(in.k);
  in.vf = from_bf16(in.v);
  in.doutf = from_bf16(in.dout);
  return in;
}

struct Forward {
  std::vector<uint16_t> out;
  std::vector<float> lse;
};

struct Gradients {
  std::vector<uint16_t> dq, dk, dv;
};

struct CpuResult {
  std::vector<float> out, lse, dq, dk, dv;
};

CpuResult cpu_reference(const Shape& s, const Inputs& in) {
  const size_t n = static_cast<size_t>(s.elements());
  CpuResult r{std::vector<float>(n), std::vector<float>(static_cast<size_t>(s.rows())),
              std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
  kernels::attention_forward<float>(in.qf.data(), in.kf.data(), in.vf.data(), r.out.data(),
                                    r.lse.data(), s.batch, s.seq, s.heads, s.head_dim);
  kernels::attention_backward<float>(in.doutf.data(), in.qf.data(), in.kf.data(), in.vf.data(),
                                     r.lse.data(), r.dq.data(), r.dk.data(), r.dv.data(), s.batch,
                                     s.seq, s.heads, s.head_dim);
  return r;
}

int current_sm() {
  const std::vector<CudaDevice> devices = cuda_devices();
  return devices.empty() ? 0 : devices.front().sm_major * 10 + devices.front().sm_minor;
}

class CudnnAttention : public testing::GpuTest {
 protected:
  void SetUp() override {
    testing::GpuTest::SetUp();
    if (IsSkipped()) return;
    const int sm = current_sm();
    if (sm < 80)
      GTEST_SKIP() << "sm_" << sm << ": cuDNN's flash attention needs sm_80 or newer";
  }

  // cuDNN's forward; out and lse start as NaN.
  Forward run_forward(cuda::CudnnAttention& attention, const Shape& s, const Inputs& in) {
    const auto q = upload(in.q), k = upload(in.k), v = upload(in.v);
    auto out = upload(std::vector<uint16_t>(static_cast<size_t>(s.elements()), kBf16Nan));
    auto lse = upload(std::vector<float>(static_cast<size_t>(s.rows()),
                                         std::numeric_limits<float>::quiet_NaN()));
    attention.forward(q.data(), k.data(), v.data(), out.data(), lse.data(), s.batch, s.seq,
                      s.heads, s.head_dim, s.scale(), stream());
    return {download(out), download(lse)};
  }

  // cuDNN's backward on a forward's out and lse; the gradients start as NaN.
  Gradients run_backward(cuda::CudnnAttention& attention, const Shape& s, const Inputs& in,
                         const Forward& forward) {
    const auto q = upload(in.q), k = upload(in.k), v = upload(in.v), dout = upload(in.dout);
    const auto out = upload(forward.out);
    const auto lse = upload(forward.lse);
    const std::vector<uint16_t> nans(static_cast<size_t>(s.elements()), kBf16Nan);
    auto dq = upload(nans), dk = upload(nans), dv = upload(nans);
    attention.backward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(),
                       dq.data(), dk.data(), dv.data(), s.batch, s.seq, s.heads, s.head_dim,
                       s.scale(), stream());
    return {download(dq), download(dk), download(dv)};
  }

  // cuDNN's forward feeding its backward, as the model chains them, against the CPU kernel.
  void expect_matches_cpu(cuda::CudnnAttention& attention, const Shape& s, uint32_t seed) {
    SCOPED_TRACE(s.name());
    ASSERT_TRUE(attention.supported(s.batch, s.seq, s.heads, s.head_dim)) << attention.why_not();
    const Inputs in = random_inputs(s, seed);
    const CpuResult cpu = cpu_reference(s, in);

    const Forward gpu = run_forward(attention, s, in);
    EXPECT_LT(relative_error(from_bf16(gpu.out), cpu.out), kOutTolerance);
    EXPECT_LT(relative_error(gpu.lse, cpu.lse), kLseTolerance);

    const Gradients grads = run_backward(attention, s, in, gpu);
    EXPECT_LT(relative_error(from_bf16(grads.dq), cpu.dq), kGradientTolerance);
    EXPECT_LT(relative_error(from_bf16(grads.dk), cpu.dk), kGradientTolerance);
    EXPECT_LT(relative_error(from_bf16(grads.dv), cpu.dv), kGradientTolerance);
  }
};

// The configs' head dims at their own head counts: quickstart (hidden 96, 4 heads, seq 128),
// shakespeare-moe (128 / 4), and DeepSeek-V3's 7168 / 128 = 56 at a shortened seq.
TEST_F(CudnnAttention, ConfigShapesMatchCpu) {
  cuda::CudnnAttention attention;
  expect_matches_cpu(attention, {2, 128, 4, 24}, 100);
  expect_matches_cpu(attention, {4, 128, 4, 32}, 200);
  expect_matches_cpu(attention, {1, 256, 8, 56}, 300);
}

// seqs that are no multiple of cuDNN's 64- or 128-row tiles, head_dim 64 and 128, seq 2.
TEST_F(CudnnAttention, RaggedSeqsAndWideHeadsMatchCpu) {
  cuda::CudnnAttention attention;
  expect_matches_cpu(attention, {2, 100, 3, 64}, 11);
  expect_matches_cpu(attention, {1, 300, 2, 128}, 21);
  expect_matches_cpu(attention, {2, 64, 4, 64}, 31);
  expect_matches_cpu(attention, {3, 2, 2, 8}, 41);
}

// A realistic size: many tiles along seq, 16 heads of 128.
TEST_F(CudnnAttention, LongSequenceMatchesCpu) {
  cuda::CudnnAttention attention;
  expect_matches_cpu(attention, {1, 1024, 16, 128}, 400);
}

// The atomic-dQ backward graph is a different graph: it must build and match too.
TEST_F(CudnnAttention, AtomicBackwardMatchesCpu) {
  cuda::CudnnAttention attention(CudnnBackwardAlgorithm::kAtomic);
  ASSERT_EQ(attention.backward_algorithm(), CudnnBackwardAlgorithm::kAtomic);
  expect_matches_cpu(attention, {2, 100, 3, 64}, 51);
  expect_matches_cpu(attention, {1, 1024, 4, 128}, 61);
}

// The deterministic backward reduces dQ in a fixed order (kernels/cuda/cudnn_attention.h):
// the same inputs give the same bits (NaN-filled outputs each time, so the second run cannot
// inherit the first's). The forward has no cross-block reduction, so it is repeatable too.
TEST_F(CudnnAttention, DeterministicBackwardIsBitIdenticalWhenRunTwice) {
  cuda::CudnnAttention attention;
  ASSERT_EQ(attention.backward_algorithm(), CudnnBackwardAlgorithm::kDeterministic);
  for (const Shape& s : {Shape{2, 300, 3, 64}, Shape{1, 1024, 4, 128}}) {
    SCOPED_TRACE(s.name());
    ASSERT_TRUE(attention.supported(s.batch, s.seq, s.heads, s.head_dim)) << attention.why_not();
    const Inputs in = random_inputs(s, 7);
    const Forward first_forward = run_forward(attention, s, in);
    const Forward second_forward = run_forward(attention, s, in);
    EXPECT_EQ(first_forward.out, second_forward.out);
    EXPECT_EQ(std::memcmp(first_forward.lse.data(), second_forward.lse.data(),
                          first_forward.lse.size() * sizeof(float)),
              0);
    const Gradients first = run_backward(attention, s, in, first_forward);
    const Gradients second = run_backward(attention, s, in, first_forward);
    EXPECT_EQ(first.dq, second.dq);
    EXPECT_EQ(first.dk, second.dk);
    EXPECT_EQ(first.dv, second.dv);
    // And the run was real: the gradients are finite (NaN-filled before).
    for (const uint16_t bits : first.dq) ASSERT_TRUE(std::isfinite(bf16_decode(bits)));
  }
}

// Plans are cached per shape and the workspace only grows: running a shape again allocates
// nothing on the device.
TEST_F(CudnnAttention, WarmCallsAllocateNothing) {
  cuda::CudnnAttention attention;
  const Shape s{2, 128, 4, 32};
  const Inputs in = random_inputs(s, 5);
  const Forward forward = run_forward(attention, s, in);
  run_backward(attention, s, in, forward);
  const int64_t allocations = attention.device_allocations();
  run_backward(attention, s, in, run_forward(attention, s, in));
  EXPECT_EQ(attention.device_allocations(), allocations);
  EXPECT_GT(attention.workspace_bytes(), size_t(0));  // at least the backward's row term
}

// Refused before cuDNN is asked, with the reason: needs no GPU, so it runs everywhere.
TEST(CudnnAttentionShape, HeadDimsCudnnCannotRunAreRefused) {
  cuda::CudnnAttention attention;
  for (const int64_t head_dim : {int64_t(36), int64_t(4), int64_t(136), int64_t(256)}) {
    EXPECT_FALSE(attention.supported(2, 64, 4, head_dim));
    EXPECT_NE(attention.why_not().find("head_dim"), std::string::npos) << attention.why_not();
    try {
      attention.forward(nullptr, nullptr, nullptr, nullptr, nullptr, 2, 64, 4, head_dim, 1.0f,
                        nullptr);
      ADD_FAILURE() << "head_dim " << head_dim << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("head_dim"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(attention.supported(2, 1, 4, 64));  // cudnn-frontend refuses seq 1 backwards
  EXPECT_NE(attention.why_not().find("seq 1"), std::string::npos) << attention.why_not();
  // Empty problems are no-ops, as for the other attention kernels.
  EXPECT_NO_THROW(attention.forward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 64, 4, 36,
                                    1.0f, nullptr));
}

}  // namespace
}  // namespace baleine::kernels::cuda::cudnn_attention_test

#endif  // BALEINE_HAVE_CUDA
