// Causal attention: forward against a naive per-query loop, probabilities (rows sum to 1,
// zero above the diagonal), causality, and the q/k/v gradients by finite differences.
#include "kernels/attention.h"

#include <cmath>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

struct Dims {
  int64_t batch, seq, heads, head_dim;
  size_t qkv() const { return size_t(batch * seq * heads * head_dim); }
  size_t probs() const { return size_t(batch * heads * seq * seq); }
  size_t at(int64_t b, int64_t s, int64_t h, int64_t d) const {
    return size_t(((b * seq + s) * heads + h) * head_dim + d);
  }
};

// softmax_{j <= i}(q_i · k_j / sqrt(D)) · v_j, one query at a time.
std::vector<double> naive_attention(const Dims& n, const std::vector<double>& q,
                                    const std::vector<double>& k, const std::vector<double>& v) {
  std::vector<double> out(n.qkv(), 0.0);
  for (int64_t b = 0; b < n.batch; ++b)
    for (int64_t h = 0; h < n.heads; ++h)
      for (int64_t i = 0; i < n.seq; ++i) {
        std::vector<double> w(size_t(i + 1));
        double total = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t d = 0; d < n.head_dim; ++d) s += q[n.at(b, i, h, d)] * k[n.at(b, j, h, d)];
          w[size_t(j)] = std::exp(s / std::sqrt(double(n.head_dim)));
          total += w[size_t(j)];
        }
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t d = 0; d < n.head_dim; ++d)
            out[n.at(b, i, h, d)] += w[size_t(j)] / total * v[n.at(b, j, h, d)];
      }
  return out;
}

TEST(Attention, ForwardMatchesNaiveAndProbsAreCausalDistributions) {
  for (const Dims n : {Dims{2, 7, 3, 4}, Dims{1, 9, 1, 6}}) {
    const auto q = random_vector(n.qkv(), 1), k = random_vector(n.qkv(), 2),
               v = random_vector(n.qkv(), 3);
    std::vector<double> out(n.qkv()), probs(n.probs(), 99.0);
    attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), n.batch, n.seq,
                      n.heads, n.head_dim);
    const auto expected = naive_attention(n, q, k, v);
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-12) << i;
    for (int64_t bh = 0; bh < n.batch * n.heads; ++bh)
      for (int64_t i = 0; i < n.seq; ++i) {
        double sum = 0;
        for (int64_t j = 0; j < n.seq; ++j) {
          const double p = probs[size_t((bh * n.seq + i) * n.seq + j)];
          if (j > i) { EXPECT_EQ(p, 0.0); }
          sum += p;
        }
        EXPECT_NEAR(sum, 1.0, 1e-14);  // double round-off of <= 9 terms
      }
  }
}

TEST(Attention, FutureTokensDoNotChangeEarlierOutputs) {
  const Dims n{1, 6, 2, 4};
  auto q = random_vector(n.qkv(), 4), k = random_vector(n.qkv(), 5), v = random_vector(n.qkv(), 6);
  std::vector<double> before(n.qkv()), after(n.qkv()), probs(n.probs());
  attention_forward(q.data(), k.data(), v.data(), before.data(), probs.data(), n.batch, n.seq,
                    n.heads, n.head_dim);
  const int64_t future = 4;  // perturb k and v of position 4 in every head
  for (int64_t h = 0; h < n.heads; ++h)
    for (int64_t d = 0; d < n.head_dim; ++d) {
      k[n.at(0, future, h, d)] += 3.0;
      v[n.at(0, future, h, d)] -= 2.0;
    }
  attention_forward(q.data(), k.data(), v.data(), after.data(), probs.data(), n.batch, n.seq,
                    n.heads, n.head_dim);
  for (int64_t s = 0; s < n.seq; ++s)
    for (int64_t h = 0; h < n.heads; ++h)
      for (int64_t d = 0; d < n.head_dim; ++d) {
        const size_t i = n.at(0, s, h, d);
        if (s < future) EXPECT_EQ(after[i], before[i]) << "position " << s;
        else EXPECT_NE(after[i], before[i]) << "position " << s;
      }
}

TEST(Attention, GradientsMatchFiniteDifferences) {
  for (const Dims n : {Dims{2, 5, 2, 4}, Dims{1, 6, 1, 3}}) {
    auto q = random_vector(n.qkv(), 7), k = random_vector(n.qkv(), 8),
         v = random_vector(n.qkv(), 9);
    const auto R = random_vector(n.qkv(), 10);
    std::vector<double> out(n.qkv()), probs(n.probs());
    auto loss = [&] {
      attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), n.batch, n.seq,
                        n.heads, n.head_dim);
      return testing::dot(out, R);
    };
    loss();  // leaves probs of the unperturbed inputs for the backward
    std::vector<double> dq(n.qkv(), 1.0), dk(n.qkv(), 2.0), dv(n.qkv(), 3.0);
    attention_backward(R.data(), q.data(), k.data(), v.data(), probs.data(), dq.data(),
                       dk.data(), dv.data(), n.batch, n.seq, n.heads, n.head_dim);
    testing::expect_gradient_matches("dq", q, dq, loss);
    testing::expect_gradient_matches("dk", k, dk, loss);
    testing::expect_gradient_matches("dv", v, dv, loss);
  }
}

TEST(Attention, FloatAgreesWithDouble) {
  const Dims n{2, 33, 2, 16};
  const auto q = random_vector(n.qkv(), 11), k = random_vector(n.qkv(), 12),
             v = random_vector(n.qkv(), 13);
  std::vector<double> out(n.qkv()), probs(n.probs());
  attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), n.batch, n.seq,
                    n.heads, n.head_dim);
  const auto qf = testing::to_float(q), kf = testing::to_float(k), vf = testing::to_float(v);
  std::vector<float> outf(n.qkv()), probsf(n.probs());
  attention_forward(qf.data(), kf.data(), vf.data(), outf.data(), probsf.data(), n.batch, n.seq,
                    n.heads, n.head_dim);
  // Scores of size ~4 carry float error ~1e-6, exp turns it into a relative error of the same
  // order; outputs are weighted means of N(0,1) values.
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(outf[i], out[i], 1e-5) << i;
}

}  // namespace
}  // namespace baleine::kernels
