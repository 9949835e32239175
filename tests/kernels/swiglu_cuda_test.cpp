// The CUDA SwiGLU gate (kernels/cuda/swiglu.h) against kernels::swiglu_*<float>: forward and
// backward on sizes with and without a scalar tail, 4096 × 2048, unaligned pointers (the scalar
// path), gates from −100 to 100 (σ saturating both ways), and the backward with da or db
// aliasing dh. Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaSwiGlu, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/swiglu.h"
#include "kernels/swiglu.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::relative_error;

class CudaSwiGlu : public cuda::testing::GpuTest {};

// Elementwise FP32: the GPU's expf and the CPU's vector_exp are each within ~2 ulp of e^x, and
// the rest is a handful of roundings, possibly fused differently: a few ulps per element,
// ~1e-7 relative over a vector; 1e-6 (cuda_test_support.h) leaves room and still catches a
// wrong formula (a sign or a missing term is O(1)).
constexpr double kTolerance = 1e-6;

// Sizes: below one float4, a whole number of float4s, a scalar tail, odd rows, realistic.
const std::vector<int64_t> kSizes = {3, 1000, 1003, 37 * 257, 4096 * 2048};

struct Grads {
  std::vector<float> da, db;
};

Grads cpu_backward(const std::vector<float>& dh, const std::vector<float>& a,
                   const std::vector<float>& b) {
  Grads g{std::vector<float>(a.size()), std::vector<float>(a.size())};
  swiglu_backward(dh.data(), a.data(), b.data(), g.da.data(), g.db.data(),
                  static_cast<int64_t>(a.size()));
  return g;
}

TEST_F(CudaSwiGlu, ForwardMatchesTheCpu) {
  for (const int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const auto a = random_floats(n, 1, 0.05f, 6.0f), b = random_floats(n, 2);
    std::vector<float> want(static_cast<size_t>(n));
    swiglu_forward(a.data(), b.data(), want.data(), n);
    ASSERT_GT(relative_error(want, b), 0.1);  // the reference is not an input

    auto d_a = upload(a), d_b = upload(b);
    auto d_h = empty<float>(n);
    cuda::swiglu_forward(d_a.data(), d_b.data(), d_h.data(), n, stream());
    EXPECT_LE(relative_error(download(d_h), want), kTolerance);
  }
}

TEST_F(CudaSwiGlu, BackwardMatchesTheCpu) {
  for (const int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const auto a = random_floats(n, 3, 0.05f, 6.0f), b = random_floats(n, 4),
               dh = random_floats(n, 5);
    const Grads want = cpu_backward(dh, a, b);
    ASSERT_GT(relative_error(want.da, dh), 0.1);
    ASSERT_GT(relative_error(want.db, dh), 0.1);

    auto d_a = upload(a), d_b = upload(b), d_dh = upload(dh);
    auto d_da = empty<float>(n), d_db = empty<float>(n);
    cuda::swiglu_backward(d_dh.data(), d_a.data(), d_b.data(), d_da.data(), d_db.data(), n,
                          stream());
    EXPECT_LE(relative_error(download(d_da), want.da), kTolerance);
    EXPECT_LE(relative_error(download(d_db), want.db), kTolerance);
  }
}

// da aliasing dh, then db aliasing dh (the header allows either).
TEST_F(CudaSwiGlu, BackwardInPlaceOverDh) {
  const int64_t n = 37 * 257;
  const auto a = random_floats(n, 6, 0.05f, 6.0f), b = random_floats(n, 7),
             dh = random_floats(n, 8);
  const Grads want = cpu_backward(dh, a, b);
  auto d_a = upload(a), d_b = upload(b);
  {
    auto d_dh = upload(dh);
    auto d_db = empty<float>(n);
    cuda::swiglu_backward(d_dh.data(), d_a.data(), d_b.data(), d_dh.data(), d_db.data(), n,
                          stream());
    EXPECT_LE(relative_error(download(d_dh), want.da), kTolerance);
    EXPECT_LE(relative_error(download(d_db), want.db), kTolerance);
  }
  {
    auto d_dh = upload(dh);
    auto d_da = empty<float>(n);
    cuda::swiglu_backward(d_dh.data(), d_a.data(), d_b.data(), d_da.data(), d_dh.data(), n,
                          stream());
    EXPECT_LE(relative_error(download(d_da), want.da), kTolerance);
    EXPECT_LE(relative_error(download(d_dh), want.db), kTolerance);
  }
}

// Offsets of 1..3 floats break 16-byte alignment: the scalar loop alone. Values before the
// offset must stay as they were.
TEST_F(CudaSwiGlu, UnalignedPointers) {
  const int64_t n = 1003;
  for (int64_t offset = 1; offset <= 3; ++offset) {
    SCOPED_TRACE("offset = " + std::to_string(offset));
    const auto a = random_floats(n + offset, 9, 0.05f, 6.0f), b = random_floats(n + offset, 10),
               dh = random_floats(n + offset, 11);
    const auto canary = random_floats(n + offset, 12);
    std::vector<float> h = canary, da = canary, db = canary;
    swiglu_forward(a.data() + offset, b.data() + offset, h.data() + offset, n);
    swiglu_backward(dh.data() + offset, a.data() + offset, b.data() + offset, da.data() + offset,
                    db.data() + offset, n);
    auto d_a = upload(a), d_b = upload(b), d_dh = upload(dh);
    auto d_h = upload(canary), d_da = upload(canary), d_db = upload(canary);
    cuda::swiglu_forward(d_a.data() + offset, d_b.data() + offset, d_h.data() + offset, n,
                         stream());
    cuda::swiglu_backward(d_dh.data() + offset, d_a.data() + offset, d_b.data() + offset,
                          d_da.data() + offset, d_db.data() + offset, n, stream());
    EXPECT_LE(relative_error(download(d_h), h), kTolerance);
    EXPECT_LE(relative_error(download(d_da), da), kTolerance);
    EXPECT_LE(relative_error(download(d_db), db), kTolerance);
  }
}

// |a| up to 100: e^(−a) overflows to inf (σ = 0) or underflows (σ = 1) on both devices; the
// outputs stay finite and agree.
TEST_F(CudaSwiGlu, SaturatedGates) {
  const int64_t n = 4099;
  const auto a = random_floats(n, 13, 20.0f, 100.0f), b = random_floats(n, 14),
             dh = random_floats(n, 15);
  std::vector<float> h(static_cast<size_t>(n));
  swiglu_forward(a.data(), b.data(), h.data(), n);
  const Grads want = cpu_backward(dh, a, b);
  auto d_a = upload(a), d_b = upload(b), d_dh = upload(dh);
  auto d_h = empty<float>(n), d_da = empty<float>(n), d_db = empty<float>(n);
  cuda::swiglu_forward(d_a.data(), d_b.data(), d_h.data(), n, stream());
  cuda::swiglu_backward(d_dh.data(), d_a.data(), d_b.data(), d_da.data(), d_db.data(), n,
                        stream());
  EXPECT_LE(relative_error(download(d_h), h), kTolerance);
  EXPECT_LE(relative_error(download(d_da), want.da), kTolerance);
  EXPECT_LE(relative_error(download(d_db), want.db), kTolerance);
}

TEST_F(CudaSwiGlu, EmptyInputsLaunchNothing) {
  EXPECT_NO_THROW(cuda::swiglu_forward(nullptr, nullptr, nullptr, 0, stream()));
  EXPECT_NO_THROW(cuda::swiglu_backward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, stream()));
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
