// Embedding: lookup, gradient by finite differences, repeated ids accumulating, and a
// bit-identical backward for 1 and 2 threads.
#include "kernels/embedding.h"

#include <omp.h>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

TEST(Embedding, ForwardCopiesRows) {
  const int64_t vocab = 7, dim = 5;
  const auto table = random_vector(size_t(vocab * dim), 1);
  const std::vector<int32_t> tokens = {3, 0, 6, 3};
  std::vector<double> out(tokens.size() * size_t(dim));
  embedding_forward(tokens.data(), table.data(), out.data(), int64_t(tokens.size()), dim);
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int64_t c = 0; c < dim; ++c)
      EXPECT_EQ(out[t * size_t(dim) + size_t(c)], table[size_t(tokens[t] * dim + c)]);
}

TEST(Embedding, GradientMatchesFiniteDifferencesWithRepeatedIds) {
  const int64_t vocab = 6, dim = 4;
  auto table = random_vector(size_t(vocab * dim), 2);
  const std::vector<int32_t> tokens = {1, 4, 1, 1, 5, 0};  // id 1 three times, 2 and 3 never
  const auto R = random_vector(tokens.size() * size_t(dim), 3);
  auto loss = [&] {
    std::vector<double> out(R.size());
    embedding_forward(tokens.data(), table.data(), out.data(), int64_t(tokens.size()), dim);
    return testing::dot(out, R);
  };
  std::vector<double> dtable(table.size(), 0.0);
  embedding_backward(tokens.data(), R.data(), dtable.data(), int64_t(tokens.size()), dim);
  testing::expect_gradient_matches("dtable", table, dtable, loss);
  // Row 1 is the sum of the three gradient rows of its occurrences (exact in this order).
  for (int64_t c = 0; c < dim; ++c)
    EXPECT_EQ(dtable[size_t(dim + c)],
              R[size_t(c)] + R[size_t(2 * dim + c)] + R[size_t(3 * dim + c)]);
  // Accumulates into what is there.
  auto twice = dtable;
  embedding_backward(tokens.data(), R.data(), twice.data(), int64_t(tokens.size()), dim);
  for (size_t i = 0; i < twice.size(); ++i) EXPECT_NEAR(twice[i], 2 * dtable[i], 1e-12);
}

TEST(Embedding, BackwardBitIdenticalForOneAndTwoThreads) {
  const int64_t vocab = 50, dim = 96, n_tokens = 2000;  // many collisions, parallel path
  const auto tokens = testing::random_ids(size_t(n_tokens), int32_t(vocab), 4);
  const auto dout = testing::to_float(random_vector(size_t(n_tokens * dim), 5));
  std::vector<float> d1(size_t(vocab * dim), 0.25f), d2 = d1;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  embedding_backward(tokens.data(), dout.data(), d1.data(), n_tokens, dim);
  omp_set_num_threads(2);
  embedding_backward(tokens.data(), dout.data(), d2.data(), n_tokens, dim);
  omp_set_num_threads(saved);
  testing::expect_bitwise_equal("dtable", d1, d2);
}

}  // namespace
}  // namespace baleine::kernels
