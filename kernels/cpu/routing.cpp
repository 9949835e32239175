// DeepSeek-MoE routing on the CPU (DeepSeek-V3 report, arXiv 2412.19437, §2.1.2, eqs. 12-20).
// Every token is independent, so the token loop is the parallel loop and each token's work is
// done in a fixed order: results are bit-identical for any OpenMP thread count.
#include "kernels/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/thread_scratch.h"
#include "kernels/routing_checks.h"

namespace baleine::kernels {
namespace {

// Below this many scores a parallel region costs more than it saves.
constexpr int64_t kParallelElements = 1 << 14;


// s = sigmoid(x) or softmax(x) over one token's experts. The softmax subtracts the max
// (overflow) and sums in double so float and double scores differ only by the final rounding.
template <typename T>
void score_row(const T* logits, T* scores, int64_t experts, ScoreFunction score) {
  if (score == ScoreFunction::kSigmoid) {
    for (int64_t e = 0; e < experts; ++e) scores[e] = T(1) / (T(1) + std::exp(-logits[e]));
    return;
  }
  const T max_logit = *std::max_element(logits, logits + experts);
  double total = 0;
  for (int64_t e = 0; e < experts; ++e) {
    scores[e] = std::exp(logits[e] - max_logit);
    total += scores[e];
  }
  const double inverse = 1.0 / total;
  for (int64_t e = 0; e < experts; ++e) scores[e] = T(scores[e] * inverse);
}

// Adds (key, index) to a list of the best `capacity` so far, kept in descending key order.
// Callers offer indices in ascending order and a later index only passes an earlier one with a
// STRICTLY larger key, so ties go to the lower index. An insertion list (O(n·capacity)) beats a
// sort for the small capacities of routing (top_k <= 8, a few groups).
template <typename T>
void insert_ranked(T key, int64_t index, T* keys, int32_t* indices, int64_t& filled,
                   int64_t capacity) {
  if (filled == capacity && !(key > keys[capacity - 1])) return;
  int64_t slot = filled < capacity ? filled++ : capacity - 1;
  while (slot > 0 && key > keys[slot - 1]) {
    keys[slot] = keys[slot - 1];
    indices[slot] = indices[slot - 1];
    --slot;
  }
  keys[slot] = key;
  indices[slot] = static_cast<int32_t>(index);
}

template <typename T>
T choice_key(const T* scores, const T* bias, int64_t e) {
  return bias ? T(scores[e] + bias[e]) : scores[e];
}

// Per-thread scratch for one token's selection, kept between calls (one per thread, sized by
// for_this_thread) so neither the token loop nor the step loop allocates.
template <typename T>
struct SelectionScratch {
  std::vector<T> keys;            // [top_k]
  std::vector<T> group_keys;      // [max_groups]
  std::vector<int32_t> kept;      // [max_groups] the kept groups
  std::vector<char> allowed;      // [groups] 1 = kept
  static SelectionScratch& for_this_thread(int64_t top_k, int64_t max_groups, int64_t groups) {
    thread_local SelectionScratch scratch;
    scratch.keys.resize(static_cast<size_t>(top_k));
    scratch.group_keys.resize(static_cast<size_t>(max_groups));
    scratch.kept.resize(static_cast<size_t>(max_groups));
    scratch.allowed.resize(static_cast<size_t>(groups));
    return scratch;
  }
};

// Marks the max_groups groups with the highest sums of their 2 best keys. DeepSeek-V3 §2.1.2
// ranks nodes by the sum of their highest K_r/M affinities; with K_r = 8 and M = 4 that is 2,
// the fixed count DeepSeek's released inference code uses. A 1-expert group has just its own.
template <typename T>
void keep_best_groups(const T* scores, const T* bias, int64_t experts, RoutingOptions options,
                      SelectionScratch<T>& scratch) {
  const int64_t group_size = experts / options.groups;
  int64_t filled = 0;
  for (int64_t g = 0; g < options.groups; ++g) {
    T best = -std::numeric_limits<T>::infinity(), second = best;
    for (int64_t e = g * group_size; e < (g + 1) * group_size; ++e) {
      const T key = choice_key(scores, bias, e);
      if (key > best) {
        second = best;
        best = key;
      } else if (key > second) {
        second = key;
      }
    }
    const T group_key = group_size == 1 ? best : T(best + second);
    insert_ranked(group_key, g, scratch.group_keys.data(), scratch.kept.data(), filled,
                  options.max_groups);
  }
  std::fill(scratch.allowed.begin(), scratch.allowed.end(), char(0));
  for (int64_t j = 0; j < filled; ++j) scratch.allowed[scratch.kept[j]] = 1;
}

// The top_k experts by key = score + bias, in descending key order, ties to the lower index;
// under node-limited routing only the experts of the kept groups compete. Without a limit (or
// with max_groups == groups, which keeps every group) no group is scored at all, so those
// choices are the plain top-k bit for bit.
template <typename T>
void select_top_k(const T* scores, const T* bias, int32_t* chosen, int64_t experts,
                  int64_t top_k, RoutingOptions options, SelectionScratch<T>& scratch) {
  const bool limited = options.max_groups > 0 && options.max_groups < options.groups;
  if (limited) keep_best_groups(scores, bias, experts, options, scratch);
  const int64_t group_size = experts / options.groups;
  int64_t filled = 0;
  for (int64_t e = 0; e < experts; ++e) {
    if (limited && !scratch.allowed[e / group_size]) continue;
    insert_ranked(choice_key(scores, bias, e), e, scratch.keys.data(), chosen, filled, top_k);
  }
}

}  // namespace

template <typename T>
void routing_forward(const T* logits, const T* bias, T* scores, int32_t* chosen, T* weights,
                     RoutingShape shape, RoutingOptions options) {
  check_shape(shape, "routing_forward");
  check_groups(shape, options, "routing_forward");
  const int64_t experts = shape.experts, top_k = shape.top_k;
#pragma omp parallel if (shape.tokens * shape.experts > kParallelElements)
  {
    SelectionScratch<T>& scratch =
        SelectionScratch<T>::for_this_thread(top_k, options.max_groups, options.groups);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < shape.tokens; ++t) {
      const T* logit_row = logits + t * experts;
      T* score_row_out = scores + t * experts;
      int32_t* chosen_row = chosen + t * top_k;
      T* weight_row = weights + t * top_k;
      score_row(logit_row, score_row_out, experts, options.score);
      select_top_k(score_row_out, bias, chosen_row, experts, top_k, options, scratch);
      // Weights read the scores WITHOUT the bias (eq. 13): the bias balances load, it must not
      // change how much an expert's output counts.
      double chosen_sum = 0;
      for (int64_t j = 0; j < top_k; ++j) chosen_sum += score_row_out[chosen_row[j]];
      const double factor = options.normalize ? options.route_scale / chosen_sum
                                              : options.route_scale;
      for (int64_t j = 0; j < top_k; ++j) {
        weight_row[j] = T(factor * score_row_out[chosen_row[j]]);
      }
    }
  }
}

template <typename T>
void routing_backward(const T* dweights, const T* dscores_extra, const T* scores,
                      const int32_t* chosen, T* dlogits, RoutingShape shape,
                      RoutingOptions options) {
  check_shape(shape, "routing_backward");
  const int64_t experts = shape.experts, top_k = shape.top_k;
#pragma omp parallel if (shape.tokens * shape.experts > kParallelElements)
  {
    struct ScoreGradients;
    std::vector<double>& dscores =
        thread_vector<ScoreGradients, double>(static_cast<size_t>(experts));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < shape.tokens; ++t) {
      const T* score_row_in = scores + t * experts;
      const int32_t* chosen_row = chosen + t * top_k;
      const T* dweight_row = dweights + t * top_k;
      for (int64_t e = 0; e < experts; ++e) {
        dscores[e] = dscores_extra ? double(dscores_extra[t * experts + e]) : 0.0;
      }
      // Through the weights. With S = Σ_j s_cj and w_j = r·s_cj/S:
      //   dL/ds_cj = r/S · (dw_j − Σ_j' dw_j'·s_cj'/S);   without normalisation dL/ds_cj = r·dw_j.
      // The chosen experts are distinct, so each dscores entry receives one term.
      if (options.normalize) {
        double chosen_sum = 0, weighted = 0;
        for (int64_t j = 0; j < top_k; ++j) {
          chosen_sum += score_row_in[chosen_row[j]];
          weighted += double(dweight_row[j]) * score_row_in[chosen_row[j]];
        }
        const double shared = weighted / chosen_sum;
        for (int64_t j = 0; j < top_k; ++j) {
          dscores[chosen_row[j]] +=
              options.route_scale / chosen_sum * (double(dweight_row[j]) - shared);
        }
      } else {
        for (int64_t j = 0; j < top_k; ++j) {
          dscores[chosen_row[j]] += options.route_scale * double(dweight_row[j]);
        }
      }
      // Through the score function.
      T* dlogit_row = dlogits + t * experts;
      if (options.score == ScoreFunction::kSigmoid) {
        for (int64_t e = 0; e < experts; ++e) {
          const double s = score_row_in[e];
          dlogit_row[e] = T(dscores[e] * s * (1.0 - s));
        }
      } else {
        // Softmax Jacobian: dx_e = s_e · (ds_e − Σ_e' ds_e'·s_e').
        double projection = 0;
        for (int64_t e = 0; e < experts; ++e) projection += dscores[e] * score_row_in[e];
        for (int64_t e = 0; e < experts; ++e) {
          dlogit_row[e] = T(score_row_in[e] * (dscores[e] - projection));
        }
      }
    }
  }
}

// --- sequence-wise balance loss (eqs. 17-20) ---------------------------------------------------
// Per sequence: f_e = E/(K·L)·count_e,  P_e = 1/L·Σ_t s[t,e]/Z_t with Z_t = Σ_e' s[t,e'],
// loss_seq = Σ_e f_e·P_e = 1/L·Σ_t (Σ_e f_e·s[t,e]) / Z_t. The last form lets the forward and
// backward share one per-token pass once f is known.
namespace {

// f_e for the sequence starting at token `first`.
void expert_fractions(const int32_t* chosen, int64_t first, int64_t seq_len, RoutingShape shape,
                      std::vector<double>& fraction) {
  std::fill(fraction.begin(), fraction.end(), 0.0);
  for (int64_t t = first; t < first + seq_len; ++t) {
    for (int64_t j = 0; j < shape.top_k; ++j) fraction[chosen[t * shape.top_k + j]] += 1.0;
  }
  const double scale = double(shape.experts) / double(shape.top_k * seq_len);
  for (double& f : fraction) f *= scale;
}

// One token's score row: its total Z = Σ_e s_e and the f-weighted total Σ_e f_e·s_e.
template <typename T>
struct RowSums {
  double z = 0, weighted = 0;
  RowSums(const T* row, const std::vector<double>& fraction, int64_t experts) {
    for (int64_t e = 0; e < experts; ++e) {
      z += row[e];
      weighted += fraction[e] * row[e];
    }
  }
};

}  // namespace

template <typename T>
double seq_balance_loss_forward(const T* scores, const int32_t* chosen, RoutingShape shape,
                                int64_t seq_len, double alpha) {
  check_sequences(shape, seq_len, "seq_balance_loss_forward");
  const int64_t sequences = shape.tokens / seq_len, experts = shape.experts;
  if (sequences == 0) return 0.0;
  // One slot per sequence, summed serially afterwards: a reduction clause would make the
  // summation order (and so the last bits) depend on the thread count.
  struct PerSequence;
  std::vector<double>& per_sequence =
      thread_vector<PerSequence, double>(static_cast<size_t>(sequences));
#pragma omp parallel if (shape.tokens * shape.experts > kParallelElements)
  {
    struct Fractions;
    std::vector<double>& fraction =
        thread_vector<Fractions, double>(static_cast<size_t>(experts));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < sequences; ++b) {
      expert_fractions(chosen, b * seq_len, seq_len, shape, fraction);
      double total = 0;
      for (int64_t t = b * seq_len; t < (b + 1) * seq_len; ++t) {
        const RowSums<T> sums(scores + t * experts, fraction, experts);
        total += sums.weighted / sums.z;
      }
      per_sequence[b] = total / double(seq_len);
    }
  }
  double sum = 0;
  for (double value : per_sequence) sum += value;
  return alpha * sum / double(sequences);
}

template <typename T>
void seq_balance_loss_backward(const T* scores, const int32_t* chosen, RoutingShape shape,
                               int64_t seq_len, double alpha, T dloss, T* dscores) {
  check_sequences(shape, seq_len, "seq_balance_loss_backward");
  const int64_t sequences = shape.tokens / seq_len, experts = shape.experts;
  if (sequences == 0) return;
  // d loss / d s[t,e] = alpha/(B·L) · (f_e − Σ_e' f_e'·s[t,e']/Z_t) / Z_t,  f held constant.
  const double scale = double(dloss) * alpha / double(sequences * seq_len);
#pragma omp parallel if (shape.tokens * shape.experts > kParallelElements)
  {
    struct Fractions;
    std::vector<double>& fraction =
        thread_vector<Fractions, double>(static_cast<size_t>(experts));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < sequences; ++b) {
      expert_fractions(chosen, b * seq_len, seq_len, shape, fraction);
      for (int64_t t = b * seq_len; t < (b + 1) * seq_len; ++t) {
        const RowSums<T> sums(scores + t * experts, fraction, experts);
        const double z = sums.z, mean_fraction = sums.weighted / sums.z;
        T* out = dscores + t * experts;
        for (int64_t e = 0; e < experts; ++e) {
          out[e] += T(scale * (fraction[e] - mean_fraction) / z);
        }
      }
    }
  }
}

#define BALEINE_INSTANTIATE_ROUTING(T)                                                         \
  template void routing_forward<T>(const T*, const T*, T*, int32_t*, T*, RoutingShape,        \
                                   RoutingOptions);                                           \
  template void routing_backward<T>(const T*, const T*, const T*, const int32_t*, T*,         \
                                    RoutingShape, RoutingOptions);                            \
  template double seq_balance_loss_forward<T>(const T*, const int32_t*, RoutingShape, int64_t, \
                                              double);                                         \
  template void seq_balance_loss_backward<T>(const T*, const int32_t*, RoutingShape, int64_t, \
                                             double, T, T*);
BALEINE_INSTANTIATE_ROUTING(float)
BALEINE_INSTANTIATE_ROUTING(double)
#undef BALEINE_INSTANTIATE_ROUTING

}  // namespace baleine::kernels
