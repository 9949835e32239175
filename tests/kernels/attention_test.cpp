// Causal attention: forward and log-sum-exp against a naive per-query loop, causality, the
// q/k/v gradients by finite differences, float against double, and bit-identical results for
// 1 and 2 OpenMP threads. The kernel works in blocks of 64 query rows (kernels/cpu/attention.cpp),
// so the shapes include sequences shorter than a block, of exactly one block, one row more,
// and several blocks with a ragged last one (seq 1, 7, 48, 64, 65, 130).
#include "kernels/attention.h"

#include <omp.h>

#include <cmath>
#include <limits>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

struct Dims {
  int64_t batch, seq, heads, head_dim;
  size_t qkv() const { return size_t(batch * seq * heads * head_dim); }
  size_t rows() const { return size_t(batch * heads * seq); }  // lse: one value per query row
  size_t at(int64_t b, int64_t s, int64_t h, int64_t d) const {
    return size_t(((b * seq + s) * heads + h) * head_dim + d);
  }
  size_t lse_at(int64_t b, int64_t h, int64_t s) const {
    return size_t((b * heads + h) * seq + s);
  }
};

struct Naive {
  std::vector<double> out, lse;
};

// softmax_{j <= i}(q_i · k_j / sqrt(D)) · v_j and log Σ_{j <= i} exp(q_i · k_j / sqrt(D)), one
// query at a time, with no max subtraction: the scores of N(0,1) inputs with D <= 16 stay far
// from exp's overflow.
Naive naive_attention(const Dims& n, const std::vector<double>& q, const std::vector<double>& k,
                      const std::vector<double>& v) {
  Naive r{std::vector<double>(n.qkv(), 0.0), std::vector<double>(n.rows(), 0.0)};
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
            r.out[n.at(b, i, h, d)] += w[size_t(j)] / total * v[n.at(b, j, h, d)];
        r.lse[n.lse_at(b, h, i)] = std::log(total);
      }
  return r;
}

TEST(Attention, ForwardAndLogSumExpMatchNaive) {
  for (const Dims n : {Dims{1, 1, 1, 4}, Dims{2, 7, 3, 4}, Dims{1, 48, 2, 5}, Dims{1, 64, 1, 6},
                       Dims{2, 65, 2, 3}, Dims{1, 130, 2, 8}}) {
    SCOPED_TRACE(n.seq);
    const auto q = random_vector(n.qkv(), 1), k = random_vector(n.qkv(), 2),
               v = random_vector(n.qkv(), 3);
    std::vector<double> out(n.qkv(), 99.0), lse(n.rows(), 99.0);
    attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), n.batch, n.seq,
                      n.heads, n.head_dim);
    const Naive expected = naive_attention(n, q, k, v);
    // Double round-off over <= 130 terms of size ~1: far below 1e-12, while a missing or
    // extra key moves an output by ~1/seq.
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected.out[i], 1e-12) << i;
    for (size_t i = 0; i < lse.size(); ++i) ASSERT_NEAR(lse[i], expected.lse[i], 1e-12) << i;
  }
}

// A key or value at position p must not change anything before p: not the outputs, not the
// log-sum-exps, to the bit. Positions in the first, a middle and the last block are perturbed.
TEST(Attention, FutureTokensDoNotChangeEarlierOutputs) {
  const Dims n{1, 130, 2, 4};
  const auto q = random_vector(n.qkv(), 4), k0 = random_vector(n.qkv(), 5),
             v0 = random_vector(n.qkv(), 6);
  std::vector<double> before(n.qkv()), lse_before(n.rows());
  attention_forward(q.data(), k0.data(), v0.data(), before.data(), lse_before.data(), n.batch,
                    n.seq, n.heads, n.head_dim);
  for (const int64_t future : {4, 50, 129}) {
    SCOPED_TRACE(future);
    auto k = k0, v = v0;
    for (int64_t h = 0; h < n.heads; ++h)
      for (int64_t d = 0; d < n.head_dim; ++d) {
        k[n.at(0, future, h, d)] += 3.0;
        v[n.at(0, future, h, d)] -= 2.0;
      }
    std::vector<double> after(n.qkv()), lse_after(n.rows());
    attention_forward(q.data(), k.data(), v.data(), after.data(), lse_after.data(), n.batch,
                      n.seq, n.heads, n.head_dim);
    for (int64_t s = 0; s < n.seq; ++s)
      for (int64_t h = 0; h < n.heads; ++h) {
        const size_t r = n.lse_at(0, h, s);
        if (s < future) ASSERT_EQ(lse_after[r], lse_before[r]) << "position " << s;
        else ASSERT_NE(lse_after[r], lse_before[r]) << "position " << s;
        for (int64_t d = 0; d < n.head_dim; ++d) {
          const size_t i = n.at(0, s, h, d);
          if (s < future) ASSERT_EQ(after[i], before[i]) << "position " << s;
          else ASSERT_NE(after[i], before[i]) << "position " << s;
        }
      }
  }
}

// seq 130 spans three query blocks, so dk and dv are summed over several blocks' prefixes. It
// is one (batch, head) pair: each checked element costs two forwards, and a parallel region
// per forward is slow on a loaded 2-core machine (the threaded paths are checked against the
// single-threaded one, bit for bit, below).
TEST(Attention, GradientsMatchFiniteDifferences) {
  for (const Dims n : {Dims{2, 5, 2, 4}, Dims{1, 1, 1, 3}, Dims{1, 130, 1, 3}}) {
    SCOPED_TRACE(n.seq);
    auto q = random_vector(n.qkv(), 7), k = random_vector(n.qkv(), 8),
         v = random_vector(n.qkv(), 9);
    const auto R = random_vector(n.qkv(), 10);
    std::vector<double> out(n.qkv()), lse(n.rows());
    auto loss = [&] {
      attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), n.batch, n.seq,
                        n.heads, n.head_dim);
      return testing::dot(out, R);
    };
    loss();  // leaves lse of the unperturbed inputs for the backward
    const std::vector<double> saved_lse = lse;
    // NaN-filled: the input gradients must be overwritten, never added to.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> dq(n.qkv(), nan), dk(n.qkv(), nan), dv(n.qkv(), nan);
    attention_backward(R.data(), q.data(), k.data(), v.data(), saved_lse.data(), dq.data(),
                       dk.data(), dv.data(), n.batch, n.seq, n.heads, n.head_dim);
    testing::expect_gradient_matches("dq", q, dq, loss);
    testing::expect_gradient_matches("dk", k, dk, loss);
    testing::expect_gradient_matches("dv", v, dv, loss);
  }
}

TEST(Attention, FloatAgreesWithDouble) {
  const Dims n{2, 100, 2, 16};
  const auto q = random_vector(n.qkv(), 11), k = random_vector(n.qkv(), 12),
             v = random_vector(n.qkv(), 13), dout = random_vector(n.qkv(), 14);
  std::vector<double> out(n.qkv()), lse(n.rows()), dq(n.qkv()), dk(n.qkv()), dv(n.qkv());
  attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), n.batch, n.seq,
                    n.heads, n.head_dim);
  attention_backward(dout.data(), q.data(), k.data(), v.data(), lse.data(), dq.data(), dk.data(),
                     dv.data(), n.batch, n.seq, n.heads, n.head_dim);
  const auto qf = testing::to_float(q), kf = testing::to_float(k), vf = testing::to_float(v),
             doutf = testing::to_float(dout);
  std::vector<float> outf(n.qkv()), lsef(n.rows()), dqf(n.qkv()), dkf(n.qkv()), dvf(n.qkv());
  attention_forward(qf.data(), kf.data(), vf.data(), outf.data(), lsef.data(), n.batch, n.seq,
                    n.heads, n.head_dim);
  attention_backward(doutf.data(), qf.data(), kf.data(), vf.data(), lsef.data(), dqf.data(),
                     dkf.data(), dvf.data(), n.batch, n.seq, n.heads, n.head_dim);
  // Scores of size ~4 carry float error ~1e-6, exp turns it into a relative error of the same
  // order; outputs are weighted means of N(0,1) values, lse is ~log(seq) + max score. (Seen:
  // at most 5e-7 for both.)
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(outf[i], out[i], 1e-5) << i;
  for (size_t i = 0; i < lse.size(); ++i) ASSERT_NEAR(lsef[i], lse[i], 1e-5) << i;
  // The gradients sum up to 100 products of such terms (dk, dv of early keys collect every
  // later query's share) and go through the recomputed P = exp(S − lse), whose float error
  // is ~1e-6 relative: 2e-5 absolute on gradients of size up to ~4 leaves room for that (seen:
  // at most 1.5e-6) and still fails on any wrong term.
  for (size_t i = 0; i < dq.size(); ++i) ASSERT_NEAR(dqf[i], dq[i], 2e-5) << "dq " << i;
  for (size_t i = 0; i < dk.size(); ++i) ASSERT_NEAR(dkf[i], dk[i], 2e-5) << "dk " << i;
  for (size_t i = 0; i < dv.size(); ++i) ASSERT_NEAR(dvf[i], dv[i], 2e-5) << "dv " << i;
}

struct Results {
  std::vector<float> out, lse, dq, dk, dv;
};

Results run_with_threads(const Dims& n, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const auto q = testing::to_float(random_vector(n.qkv(), 15)),
             k = testing::to_float(random_vector(n.qkv(), 16)),
             v = testing::to_float(random_vector(n.qkv(), 17)),
             dout = testing::to_float(random_vector(n.qkv(), 18));
  Results r{std::vector<float>(n.qkv()), std::vector<float>(n.rows()),
            std::vector<float>(n.qkv()), std::vector<float>(n.qkv()),
            std::vector<float>(n.qkv())};
  attention_forward(q.data(), k.data(), v.data(), r.out.data(), r.lse.data(), n.batch, n.seq,
                    n.heads, n.head_dim);
  attention_backward(dout.data(), q.data(), k.data(), v.data(), r.lse.data(), r.dq.data(),
                     r.dk.data(), r.dv.data(), n.batch, n.seq, n.heads, n.head_dim);
  omp_set_num_threads(saved);
  return r;
}

// More (batch, head) pairs than threads: the pairs are split over the threads. Fewer: they run
// one after another and the gemm calls inside use both threads (head_dim 32 makes each block's
// products large enough for gemm to go parallel). Either way nothing may change by a bit.
TEST(Attention, BitIdenticalForOneAndTwoThreads) {
  for (const Dims n : {Dims{2, 130, 3, 8}, Dims{1, 130, 1, 32}, Dims{1, 7, 1, 4}}) {
    SCOPED_TRACE(n.batch * n.heads);
    const Results one = run_with_threads(n, 1), two = run_with_threads(n, 2);
    testing::expect_bitwise_equal("out", one.out, two.out);
    testing::expect_bitwise_equal("lse", one.lse, two.lse);
    testing::expect_bitwise_equal("dq", one.dq, two.dq);
    testing::expect_bitwise_equal("dk", one.dk, two.dk);
    testing::expect_bitwise_equal("dv", one.dv, two.dv);
  }
}

}  // namespace
}  // namespace baleine::kernels
