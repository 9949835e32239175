// Causal scaled dot-product attention (Vaswani et al. 2017, eq. 1), per (batch, head):
//   S = q·kᵀ / sqrt(D) + causal mask,  P = softmax_rows(S),  out = P·v.
//
// Memory: the seq x seq matrix P is never stored. The forward keeps one value per query row,
// lse_i = log Σ_{j<=i} exp(S_ij), and the backward recomputes P = exp(S − lse) block by block
// from q, k and lse. This is the recomputation of FlashAttention (Dao et al. 2022,
// arXiv 2205.14135, §3.1): one more q·kᵀ product in the backward buys batch·heads·seq² values
// less to keep per layer and micro-batch.
//
// Blocks: the query rows are taken kBlockRows at a time. Rows i0..i1−1 only ever see keys
// 0..i1−1 (their causal prefix), so every product below runs over that prefix: key blocks
// entirely above the diagonal are never computed. Inside the diagonal block the entries j > i
// are computed and then masked (zero in P and in dS). One block's scores, [rows x prefix], are
// the only per-thread scratch (two of them in the backward), never a whole seq x seq matrix.
//
// Backward of one query block, with dO the output gradient and all products over the prefix:
//   P = exp(S − lse),  dP = dO·vᵀ,  delta_i = Σ_j P_ij dP_ij,  dS = P ⊙ (dP − delta),
//   dq_block = dS·k / sqrt(D),  dk[prefix] += dSᵀ·q_block / sqrt(D),  dv[prefix] += Pᵀ·dO_block.
// (delta is the softmax Jacobian's row term; FlashAttention calls it D_i, renamed here so it is
// not confused with the head dimension D.)
//
// Layout: q, k, v are [batch, seq, heads, D]: one head's rows are D values with a stride of
// heads·D, which gemm takes directly as its leading dimension, so nothing is copied.
//
// Threads and determinism: the (batch, head) pairs run in parallel and each pair is owned by one
// thread from its first block to its last, so its dk and dv are accumulated in one fixed order;
// the gemm calls inside are then single-threaded (nested regions are inactive). With fewer pairs
// than threads the pairs run one after another and each gemm uses all the threads. gemm is
// bit-identical for any thread count, hence so are all the results here.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

#include "kernels/cpu/thread_scratch.h"
#include "kernels/cpu/vector_exp.h"
#include "kernels/gemm.h"

namespace baleine::kernels {
namespace {

// Query rows per block. Smaller blocks compute less of the masked half of each diagonal block
// (about seq·kBlockRows/2 wasted scores against seq²/2 useful ones) but make more and smaller
// gemm calls, each of which repacks the k or v prefix it reads and pays a call's fixed cost.
// Measured on the quickstart (seq 128, head_dim 24) and larger CPU (seq 256, head_dim 64)
// shapes, 16, 24, 32, 48, 64, 96 and 128 rows: 64 was fastest on both, forward and backward.
// A block's scratch is then 64 x seq values (64 KiB of floats at seq 256): L2-resident.
constexpr int64_t kBlockRows = 64;

// Where one (batch, head) pair's rows lie in a [batch, seq, heads, D] tensor.
struct HeadLayout {
  int64_t seq, heads, head_dim;
  int64_t stride() const { return heads * head_dim; }  // between consecutive positions
  int64_t offset(int64_t pair) const {                 // of position 0 of pair b·heads + h
    return (pair / heads) * seq * stride() + (pair % heads) * head_dim;
  }
};

// Per-thread scratch that only grows (kernels/cpu/thread_scratch.h), so calls in steady state
// do not allocate. Slot 0 holds a block's scores / probabilities, slot 1 (backward) dP / dS.
struct AttentionBlocks;
template <typename T>
T* block_scratch(int slot, int64_t elements) {
  return thread_scratch<AttentionBlocks, T, 2>(static_cast<size_t>(elements), slot);
}

// scores[r, j] = q_r · k_j / sqrt(D) for the block's `rows` queries and the `keys` keys of its
// causal prefix; scores is [rows, keys], row-major.
template <typename T>
void score_block(const T* q_block, const T* k, const HeadLayout& l, int64_t rows, int64_t keys,
                 T scale, T* scores) {
  gemm<T>(false, true, rows, keys, l.head_dim, scale, q_block, l.stride(), k, l.stride(), T(0),
          scores, keys);
}

// In place, for the block whose first query is i0: row r (query i0 + r) becomes the softmax
// over keys 0..i0+r and zero beyond; lse[r] receives that row's log-sum-exp. The row maximum
// is subtracted before exp so nothing overflows; the sum is accumulated in double, so a long
// row of small terms loses nothing to float rounding.
// The loops are `omp simd`: without -ffast-math the compiler may not reorder the max and sum
// reductions on its own, and vector_exp (kernels/cpu/vector_exp.h) only vectorises inside
// such a loop (a scalar expf call per score was over a quarter of the backward's time). The
// reduction order is fixed at compile time, so results still do not depend on the thread count.
template <typename T>
void softmax_rows(T* scores, int64_t rows, int64_t keys, int64_t i0, T* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = scores + r * keys;
    const int64_t visible = i0 + r + 1;
    T max_score = row[0];
#pragma omp simd reduction(max : max_score)
    for (int64_t j = 1; j < visible; ++j) max_score = row[j] > max_score ? row[j] : max_score;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < visible; ++j) {
      row[j] = vector_exp(row[j] - max_score);
      sum += double(row[j]);
    }
    const T inv = T(1.0 / sum);
    for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
    for (int64_t j = visible; j < keys; ++j) row[j] = T(0);
    lse[r] = T(double(max_score) + std::log(sum));
  }
}

// In place: scores S become the forward's probabilities P = exp(S − lse) on each row's causal
// prefix, zero beyond. No max or sum is needed: lse already normalises each row, and S − lse
// <= 0 up to rounding, so exp cannot overflow.
template <typename T>
void recompute_probabilities(T* scores, int64_t rows, int64_t keys, int64_t i0, const T* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = scores + r * keys;
    const int64_t visible = i0 + r + 1;
    const T row_lse = lse[r];
#pragma omp simd
    for (int64_t j = 0; j < visible; ++j) row[j] = vector_exp(row[j] - row_lse);
    for (int64_t j = visible; j < keys; ++j) row[j] = T(0);
  }
}

// In place: dprobs (dP) becomes dS = P ⊙ (dP − delta), delta_r = Σ_j P_rj dP_rj summed in
// double; zero above the diagonal, where P is zero.
template <typename T>
void softmax_backward_rows(const T* probs, T* dprobs, int64_t rows, int64_t keys, int64_t i0) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* prow = probs + r * keys;
    T* drow = dprobs + r * keys;
    const int64_t visible = i0 + r + 1;
    double delta = 0;
#pragma omp simd reduction(+ : delta)
    for (int64_t j = 0; j < visible; ++j) delta += double(prow[j]) * double(drow[j]);
    const T d = T(delta);
    for (int64_t j = 0; j < visible; ++j) drow[j] = prow[j] * (drow[j] - d);
    for (int64_t j = visible; j < keys; ++j) drow[j] = T(0);
  }
}

// One (batch, head) pair's forward: q, k, v, out point at its position 0, lse at its row 0.
template <typename T>
void forward_pair(const T* q, const T* k, const T* v, T* out, T* lse, const HeadLayout& l,
                  T scale, T* scores) {
  const int64_t stride = l.stride();
  for (int64_t i0 = 0; i0 < l.seq; i0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, l.seq - i0), keys = i0 + rows;
    score_block(q + i0 * stride, k, l, rows, keys, scale, scores);
    softmax_rows(scores, rows, keys, i0, lse + i0);
    // out_block = P · v[prefix]
    gemm<T>(false, false, rows, l.head_dim, keys, T(1), scores, keys, v, stride, T(0),
            out + i0 * stride, stride);
  }
}

// One (batch, head) pair's backward. The query blocks run from last to first: the last block's
// prefix is every key, so its dk and dv products overwrite (beta 0) and the earlier blocks,
// whose prefixes are shorter, add onto them (beta 1). That needs no separate zeroing pass and
// fixes the order in which every dk, dv element is summed.
template <typename T>
void backward_pair(const T* dout, const T* q, const T* k, const T* v, const T* lse, T* dq, T* dk,
                   T* dv, const HeadLayout& l, T scale, T* probs, T* dscores) {
  const int64_t stride = l.stride(), head_dim = l.head_dim;
  const int64_t last = (l.seq - 1) / kBlockRows * kBlockRows;
  for (int64_t i0 = last; i0 >= 0; i0 -= kBlockRows) {
    const int64_t rows = std::min(kBlockRows, l.seq - i0), keys = i0 + rows;
    const T* q_block = q + i0 * stride;
    const T* dout_block = dout + i0 * stride;
    const T beta = i0 == last ? T(0) : T(1);

    score_block(q_block, k, l, rows, keys, scale, probs);
    recompute_probabilities(probs, rows, keys, i0, lse + i0);
    // dP = dO_block · v[prefix]ᵀ, then dS in place.
    gemm<T>(false, true, rows, keys, head_dim, T(1), dout_block, stride, v, stride, T(0),
            dscores, keys);
    softmax_backward_rows(probs, dscores, rows, keys, i0);
    // dq_block = dS · k[prefix] / sqrt(D)
    gemm<T>(false, false, rows, head_dim, keys, scale, dscores, keys, k, stride, T(0),
            dq + i0 * stride, stride);
    // dk[prefix] (+)= dSᵀ · q_block / sqrt(D);  dv[prefix] (+)= Pᵀ · dO_block
    gemm<T>(true, false, keys, head_dim, rows, scale, dscores, keys, q_block, stride, beta, dk,
            stride);
    gemm<T>(true, false, keys, head_dim, rows, T(1), probs, keys, dout_block, stride, beta, dv,
            stride);
  }
}

}  // namespace

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse, int64_t batch,
                       int64_t seq, int64_t heads, int64_t head_dim) {
  if (batch <= 0 || seq <= 0 || heads <= 0) return;
  const HeadLayout l{seq, heads, head_dim};
  const T scale = T(1.0 / std::sqrt(double(head_dim)));
  const int64_t pairs = batch * heads;
  const int64_t scratch = std::min(kBlockRows, seq) * seq;  // the largest block's scores
#pragma omp parallel if (pairs >= omp_get_max_threads())
  {
    T* scores = block_scratch<T>(0, scratch);
#pragma omp for schedule(static)
    for (int64_t pair = 0; pair < pairs; ++pair) {
      const int64_t o = l.offset(pair);
      forward_pair(q + o, k + o, v + o, out + o, lse + pair * seq, l, scale, scores);
    }
  }
}

template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* lse,
                        T* dq, T* dk, T* dv, int64_t batch, int64_t seq, int64_t heads,
                        int64_t head_dim) {
  if (batch <= 0 || seq <= 0 || heads <= 0) return;
  const HeadLayout l{seq, heads, head_dim};
  const T scale = T(1.0 / std::sqrt(double(head_dim)));
  const int64_t pairs = batch * heads;
  const int64_t scratch = std::min(kBlockRows, seq) * seq;
#pragma omp parallel if (pairs >= omp_get_max_threads())
  {
    T* probs = block_scratch<T>(0, scratch);
    T* dscores = block_scratch<T>(1, scratch);
#pragma omp for schedule(static)
    for (int64_t pair = 0; pair < pairs; ++pair) {
      const int64_t o = l.offset(pair);
      backward_pair(dout + o, q + o, k + o, v + o, lse + pair * seq, dq + o, dk + o, dv + o, l,
                    scale, probs, dscores);
    }
  }
}

template void attention_forward<float>(const float*, const float*, const float*, float*, float*,
                                       int64_t, int64_t, int64_t, int64_t);
template void attention_forward<double>(const double*, const double*, const double*, double*,
                                        double*, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<float>(const float*, const float*, const float*, const float*,
                                        const float*, float*, float*, float*, int64_t, int64_t,
                                        int64_t, int64_t);
template void attention_backward<double>(const double*, const double*, const double*,
                                         const double*, const double*, double*, double*,
                                         double*, int64_t, int64_t, int64_t, int64_t);

}  // namespace baleine::kernels
