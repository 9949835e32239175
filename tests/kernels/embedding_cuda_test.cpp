// The CUDA token embedding (kernels/cuda/embedding.h) against kernels::embedding_*<float>,
// bit for bit:
//   - forward: a copy of table rows, on row widths that take the float4 path (1000, 2048) and
//     the scalar one (257, and an unaligned output);
//   - backward: dtable starts non-zero (accumulation), ids repeat within a 128-token chunk and
//     across chunks (a vocabulary of 7 for 300 tokens, one id for 1000 tokens, random ids for
//     4096 tokens × 2048), and two calls accumulate. The GPU adds each element's gradients in
//     token order, as the CPU does, and float addition is correctly rounded on both with no
//     product to fuse: the results must be the same bits (which also makes them deterministic).
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaEmbedding, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/embedding.h"
#include "kernels/embedding.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::random_ids;
using cuda::testing::relative_error;

class CudaEmbedding : public cuda::testing::GpuTest {
 protected:
  void expect_backward_matches_cpu(const std::vector<int32_t>& tokens, int64_t dim,
                                   int32_t vocab, int calls);
};

// The index of the first element whose bits differ, or -1.
int64_t first_bit_difference(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) return static_cast<int64_t>(i);
  return -1;
}

struct Shape {
  int64_t n_tokens, dim;
  int32_t vocab;
};
std::string describe(const Shape& s) {
  return std::to_string(s.n_tokens) + " tokens, dim " + std::to_string(s.dim) + ", vocab " +
         std::to_string(s.vocab);
}

TEST_F(CudaEmbedding, ForwardCopiesTheCpusRows) {
  for (const Shape& s : {Shape{37, 257, 1000}, Shape{37, 1000, 50}, Shape{4096, 2048, 5000}}) {
    SCOPED_TRACE(describe(s));
    const auto tokens = random_ids(s.n_tokens, s.vocab, 1);
    const auto table = random_floats(int64_t(s.vocab) * s.dim, 2);
    std::vector<float> want(static_cast<size_t>(s.n_tokens * s.dim));
    embedding_forward(tokens.data(), table.data(), want.data(), s.n_tokens, s.dim);

    auto d_tokens = upload(tokens);
    auto d_table = upload(table);
    auto d_out = empty<float>(s.n_tokens * s.dim);
    cuda::embedding_forward(d_tokens.data(), d_table.data(), d_out.data(), s.n_tokens, s.dim,
                            stream());
    EXPECT_EQ(first_bit_difference(download(d_out), want), -1);
  }
}

// An output one float off 16-byte alignment takes the scalar copy; the float before it stays.
TEST_F(CudaEmbedding, ForwardIntoAnUnalignedOutput) {
  const int64_t n_tokens = 37, dim = 1000;
  const auto tokens = random_ids(n_tokens, 100, 3);
  const auto table = random_floats(100 * dim, 4);
  std::vector<float> want = random_floats(n_tokens * dim + 1, 5);
  auto d_out = upload(want);
  embedding_forward(tokens.data(), table.data(), want.data() + 1, n_tokens, dim);
  auto d_tokens = upload(tokens);
  auto d_table = upload(table);
  cuda::embedding_forward(d_tokens.data(), d_table.data(), d_out.data() + 1, n_tokens, dim,
                          stream());
  EXPECT_EQ(first_bit_difference(download(d_out), want), -1);
}

// Runs the backward `calls` times with fresh gradients on both devices from the same non-zero
// table, and compares.
void CudaEmbedding::expect_backward_matches_cpu(const std::vector<int32_t>& tokens, int64_t dim,
                                                int32_t vocab, int calls) {
  const int64_t n_tokens = static_cast<int64_t>(tokens.size());
  const auto initial = random_floats(int64_t(vocab) * dim, 6);
  std::vector<float> want = initial;
  auto d_tokens = upload(tokens);
  auto d_dtable = upload(initial);
  for (int call = 0; call < calls; ++call) {
    const auto dout = random_floats(n_tokens * dim, 7 + call);
    embedding_backward(tokens.data(), dout.data(), want.data(), n_tokens, dim);
    auto d_dout = upload(dout);
    cuda::embedding_backward(d_tokens.data(), d_dout.data(), d_dtable.data(), n_tokens, dim,
                             stream());
  }
  ASSERT_GT(relative_error(want, initial), 0.1);  // the gradients did change the table
  const auto got = download(d_dtable);
  const int64_t at = first_bit_difference(got, want);
  EXPECT_EQ(at, -1) << "first difference at row " << at / dim << ", column " << at % dim;
}

TEST_F(CudaEmbedding, BackwardAccumulatesTheCpusBits) {
  // Odd widths (a partial 16-column tile), repeats within and across 128-token chunks, a
  // partial last chunk; then the realistic shape with random ids.
  for (const Shape& s : {Shape{37, 257, 10}, Shape{300, 257, 7}, Shape{300, 1000, 1000},
                         Shape{4096, 2048, 5000}}) {
    SCOPED_TRACE(describe(s));
    expect_backward_matches_cpu(random_ids(s.n_tokens, s.vocab, 8), s.dim, s.vocab, 1);
  }
}

// One id for every token: a chain of 128 additions per chunk, carried across 8 chunks.
TEST_F(CudaEmbedding, BackwardWithASingleRepeatedId) {
  expect_backward_matches_cpu(std::vector<int32_t>(1000, 3), 33, 5, 1);
}

// Two calls without clearing: the second adds to the first.
TEST_F(CudaEmbedding, BackwardAccumulatesOverCalls) {
  expect_backward_matches_cpu(random_ids(200, 20, 9), 100, 20, 2);
}

TEST_F(CudaEmbedding, EmptyInputsLaunchNothing) {
  EXPECT_NO_THROW(cuda::embedding_forward(nullptr, nullptr, nullptr, 0, 16, stream()));
  EXPECT_NO_THROW(cuda::embedding_backward(nullptr, nullptr, nullptr, 0, 16, stream()));
  EXPECT_NO_THROW(cuda::embedding_backward(nullptr, nullptr, nullptr, 16, 0, stream()));
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
