// The CUDA token permutation (kernels/cuda/moe_dispatch.h) against the CPU kernels
// (kernels/moe_dispatch.h) on the same inputs:
//   - build_expert_index bit for bit: offsets, row_token, assignment_row, for experts left
//     without tokens, repeated ids, one expert, 1024 experts, no tokens, and 560k assignments
//     (hundreds of chunks); out-of-range ids dropped as documented;
//   - permute forward / backward bit for bit (copies, and the CPU's order of additions), on the
//     float and the float4 paths; combine forward and backward within stated tolerances;
//   - the checks that throw before anything runs (no GPU needed).
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#include "kernels/cuda/moe_dispatch.h"

#ifndef BALEINE_HAVE_CUDA

TEST(CudaMoeDispatch, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/moe_dispatch.h"
#include "tests/kernels/cuda_test_support.h"
#include "tests/kernels/moe_dispatch_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::random_ids;
using cuda::testing::relative_error;

using moe_dispatch_testing::all_experts;
using moe_dispatch_testing::build_index;
using moe_dispatch_testing::ExpertIndex;
using moe_dispatch_testing::random_distinct_choice;

class CudaMoeDispatch : public cuda::testing::GpuTest {
 protected:
  ExpertIndex index_on_gpu(const std::vector<int32_t>& chosen, int64_t tokens, int64_t top_k,
                           int64_t experts) {
    auto device_chosen = upload(chosen);
    // Pre-filled with -7, which no kernel writes, so an element left unwritten shows.
    auto offsets = upload(std::vector<int32_t>(experts + 1, -7));
    auto row_token = upload(std::vector<int32_t>(tokens * top_k, -7));
    auto assignment_row = upload(std::vector<int32_t>(tokens * top_k, -7));
    const size_t bytes = cuda::build_expert_index_workspace_bytes(tokens, top_k, experts);
    auto workspace = empty<int32_t>(int64_t(bytes / sizeof(int32_t)));
    cuda::build_expert_index(device_chosen.data(), tokens, top_k, experts, offsets.data(),
                             row_token.data(), assignment_row.data(), workspace.data(),
                             stream());
    return ExpertIndex{download(offsets), download(row_token), download(assignment_row)};
  }

  void expect_index_matches(const std::vector<int32_t>& chosen, int64_t tokens, int64_t top_k,
                            int64_t experts) {
    const ExpertIndex want = build_index(chosen, tokens, top_k, experts);
    const ExpertIndex got = index_on_gpu(chosen, tokens, top_k, experts);
    const std::string what = "tokens=" + std::to_string(tokens) +
                             " top_k=" + std::to_string(top_k) +
                             " experts=" + std::to_string(experts);
    EXPECT_EQ(got.offsets, want.offsets) << what;
    EXPECT_EQ(got.row_token, want.row_token) << what;
    EXPECT_EQ(got.assignment_row, want.assignment_row) << what;
  }
};

// The index is integer bookkeeping: bit for bit the CPU's.
TEST_F(CudaMoeDispatch, IndexMatchesCpu) {
  expect_index_matches(random_distinct_choice(37, 3, all_experts(8), 1), 37, 3, 8);
  expect_index_matches(random_distinct_choice(1000, 8, all_experts(256), 2), 1000, 8, 256);
  // Only the even experts and expert 63 receive tokens.
  std::vector<int32_t> some;
  for (int32_t e = 0; e < 64; e += 2) some.push_back(e);
  some.push_back(63);
  expect_index_matches(random_distinct_choice(1000, 8, some, 3), 1000, 8, 64);
  // Repeated ids within a token are not routing's output, but the index is still a stable sort.
  expect_index_matches(random_ids(3001 * 4, 16, 4), 3001, 4, 16);
  expect_index_matches(std::vector<int32_t>(500 * 2, 0), 500, 2, 1);
  expect_index_matches(random_distinct_choice(1000, 8, all_experts(1024), 5), 1000, 8, 1024);
  // 560000 assignments: 274 chunks, so every expert's rows span many chunks.
  expect_index_matches(random_distinct_choice(70000, 8, all_experts(256), 6), 70000, 8, 256);
  // No tokens: the offsets are still written (all 0).
  expect_index_matches({}, 0, 2, 4);
}

// GPU-specific (kernels/cuda/moe_dispatch.h): an id outside [0, experts) cannot throw, so its
// assignment is dropped and visible as such.
TEST_F(CudaMoeDispatch, IndexDropsOutOfRangeIds) {
  // Assignments 1 (id 4) and 3 (id -1) are out of range for 4 experts.
  const auto got = index_on_gpu({0, 4, 1, -1, 2, 3}, 3, 2, 4);
  EXPECT_EQ(got.offsets, (std::vector<int32_t>{0, 1, 2, 3, 4})) << "4 valid of 6";
  EXPECT_EQ(got.assignment_row, (std::vector<int32_t>{0, -1, 1, -1, 2, 3}));
  EXPECT_EQ(got.row_token, (std::vector<int32_t>{0, 1, 2, 2, -1, -1}));
}

struct RowCase {
  int64_t tokens, top_k, experts, dim;
};
// dim 70 takes the float path, 128 and 132 the float4 path; 37 and 1000 tokens are not
// multiples of anything the kernels tile by.
const RowCase kRowCases[] = {{37, 3, 8, 70}, {1000, 8, 64, 128}, {37, 1, 4, 132},
                             {200, 8, 256, 70}};

TEST_F(CudaMoeDispatch, PermuteMatchesCpuBitForBit) {
  uint32_t seed = 10;
  for (const RowCase& c : kRowCases) {
    const int64_t rows = c.tokens * c.top_k;
    const ExpertIndex index = build_index(
        random_distinct_choice(c.tokens, c.top_k, all_experts(int32_t(c.experts)), seed++),
        c.tokens, c.top_k, c.experts);
    const auto x = random_floats(c.tokens * c.dim, seed++);
    const auto dxe = random_floats(rows * c.dim, seed++);
    std::vector<float> want_xe(rows * c.dim), want_dx(c.tokens * c.dim);
    permute_tokens_forward(x.data(), index.row_token.data(), want_xe.data(), rows, c.dim);
    permute_tokens_backward(dxe.data(), index.row_token.data(), want_dx.data(), rows, c.tokens,
                            c.dim);

    auto device_x = upload(x);
    auto device_dxe = upload(dxe);
    auto row_token = upload(index.row_token);
    auto assignment_row = upload(index.assignment_row);
    auto xe = upload(std::vector<float>(rows * c.dim, 777.0f));        // must be overwritten
    auto dx = upload(std::vector<float>(c.tokens * c.dim, 777.0f));    // must be overwritten
    cuda::permute_tokens_forward(device_x.data(), row_token.data(), xe.data(), rows, c.dim,
                                 stream());
    cuda::permute_tokens_backward(device_dxe.data(), assignment_row.data(), dx.data(), c.tokens,
                                  c.top_k, c.dim, stream());
    // Copies are exact; the backward adds a token's rows in ascending row order from 0, as
    // the CPU does, with no multiplications to fuse: the same bits.
    EXPECT_EQ(download(xe), want_xe) << "tokens=" << c.tokens << " dim=" << c.dim;
    EXPECT_EQ(download(dx), want_dx) << "tokens=" << c.tokens << " dim=" << c.dim;
  }
}

TEST_F(CudaMoeDispatch, CombineMatchesCpu) {
  uint32_t seed = 20;
  for (const RowCase& c : kRowCases) {
    const int64_t rows = c.tokens * c.top_k;
    const ExpertIndex index = build_index(
        random_distinct_choice(c.tokens, c.top_k, all_experts(int32_t(c.experts)), seed++),
        c.tokens, c.top_k, c.experts);
    const auto ye = random_floats(rows * c.dim, seed++);
    const auto weights = random_floats(rows, seed++);
    const auto dy = random_floats(c.tokens * c.dim, seed++);
    std::vector<float> want_y(c.tokens * c.dim), want_dye(rows * c.dim), want_dweights(rows);
    combine_forward(ye.data(), weights.data(), index.assignment_row.data(), want_y.data(),
                    c.tokens, c.top_k, c.dim);
    combine_backward(dy.data(), ye.data(), weights.data(), index.assignment_row.data(),
                     want_dye.data(), want_dweights.data(), c.tokens, c.top_k, c.dim);

    auto device_ye = upload(ye);
    auto device_weights = upload(weights);
    auto device_dy = upload(dy);
    auto assignment_row = upload(index.assignment_row);
    auto y = upload(std::vector<float>(c.tokens * c.dim, 777.0f));  // all three overwritten
    auto dye = upload(std::vector<float>(rows * c.dim, 777.0f));
    auto dweights = upload(std::vector<float>(rows, 777.0f));
    cuda::combine_forward(device_ye.data(), device_weights.data(), assignment_row.data(),
                          y.data(), c.tokens, c.top_k, c.dim, stream());
    cuda::combine_backward(device_dy.data(), device_ye.data(), device_weights.data(),
                           assignment_row.data(), dye.data(), dweights.data(), c.tokens,
                           c.top_k, c.dim, stream());
    const std::string what = "tokens=" + std::to_string(c.tokens) +
                             " top_k=" + std::to_string(c.top_k) + " dim=" + std::to_string(c.dim);
    // The GPU rounds every product and sum in slot order as the CPU source does; a CPU
    // compiler that fuses w·ye + sum (clang's default) differs by <= 1 ulp per slot: <= 8 ulp
    // ≈ 1e-6 per element, far less for the norm.
    EXPECT_LE(relative_error(download(y), want_y), 1e-6) << what;
    // One float multiply per element on both sides: the same bits.
    EXPECT_EQ(download(dye), want_dye) << what;
    // Dot products of float·float products (exact in double) summed in double on both sides;
    // only the order of the double additions differs (~1e-16 relative), then one rounding to
    // float: at most 1 ulp on rare elements.
    EXPECT_LE(relative_error(download(dweights), want_dweights), 1e-6) << what;
  }
}

// The dispatch round trip on the GPU: identity experts and weights 1/top_k return x.
TEST_F(CudaMoeDispatch, PermuteThenCombineIsIdentity) {
  const int64_t tokens = 301, top_k = 2, experts = 16, dim = 96;
  const auto chosen = random_distinct_choice(tokens, top_k, all_experts(experts), 30);
  const auto x = random_floats(tokens * dim, 31);
  auto device_chosen = upload(chosen);
  auto offsets = empty<int32_t>(experts + 1);
  auto row_token = empty<int32_t>(tokens * top_k);
  auto assignment_row = empty<int32_t>(tokens * top_k);
  auto workspace = empty<int32_t>(
      int64_t(cuda::build_expert_index_workspace_bytes(tokens, top_k, experts) / 4));
  cuda::build_expert_index(device_chosen.data(), tokens, top_k, experts, offsets.data(),
                           row_token.data(), assignment_row.data(), workspace.data(), stream());
  auto device_x = upload(x);
  auto xe = empty<float>(tokens * top_k * dim);
  auto weights = upload(std::vector<float>(tokens * top_k, 1.0f / top_k));
  auto y = empty<float>(tokens * dim);
  cuda::permute_tokens_forward(device_x.data(), row_token.data(), xe.data(), tokens * top_k, dim,
                               stream());
  cuda::combine_forward(xe.data(), weights.data(), assignment_row.data(), y.data(), tokens, top_k,
                        dim, stream());
  // 0 + x/2 + x/2: every step exact in binary floating point, so x comes back bit for bit.
  EXPECT_EQ(download(y), x);
}

// ---- checks before anything runs: no GPU needed -------------------------------------------

TEST(CudaMoeDispatchLimits, RejectsWhatItCannotRun) {
  EXPECT_THROW(cuda::build_expert_index(nullptr, 4, 2, 2000, nullptr, nullptr, nullptr, nullptr,
                                        nullptr),
               std::invalid_argument)
      << "experts > 1024";
  EXPECT_THROW(cuda::build_expert_index(nullptr, -1, 2, 8, nullptr, nullptr, nullptr, nullptr,
                                        nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda::build_expert_index(nullptr, 4, 2, 8, nullptr, nullptr, nullptr, nullptr,
                                        nullptr),
               std::invalid_argument)
      << "no workspace";
  EXPECT_THROW(cuda::permute_tokens_backward(nullptr, nullptr, nullptr, 4, 65, 8, nullptr),
               std::invalid_argument)
      << "top_k > 64";
  EXPECT_THROW(cuda::combine_forward(nullptr, nullptr, nullptr, nullptr, 4, 0, 8, nullptr),
               std::invalid_argument);
  // 2048 assignments per chunk, 4 bytes per expert per chunk.
  EXPECT_EQ(cuda::build_expert_index_workspace_bytes(2049, 1, 8), 2 * 8 * sizeof(int32_t));
  EXPECT_EQ(cuda::build_expert_index_workspace_bytes(0, 2, 8), 0u);
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
