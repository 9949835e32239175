// DeepSeek-MoE routing on the GPU (kernels/cuda/routing.h), the twin of kernels/cpu/routing.cpp.
//
// routing_forward / routing_backward: one warp per token. A lane holds the experts
// lane, lane + 32, … (at most 8 of them, experts <= 256) in registers, so a token's scores never
// round-trip through memory. The top-k is top_k rounds of a warp-wide arg-max under the CPU's
// order (higher key first, equal keys to the lower expert), which lists the chosen experts in the
// same order as the CPU's insertion list. Every per-token sum the CPU does in slot order (the
// chosen-score sum, the backward's slot sums) is done here in slot order too, by every lane
// alike, so equal scores give equal weights and gradients.
//
// The sequence-wise balance loss, declared in routing.h too, is in balance_loss.cu.
#include "kernels/cuda/routing.h"

#include <cuda_runtime.h>

#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"
#include "kernels/routing_checks.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;
// One warp per token: a lane keeps experts/32 scores in registers, slot j's choice lives in
// lane j, and group g is scored by lane g.
constexpr int kMaxExperts = 8 * kWarp;
constexpr int kMaxTopK = kWarp;
constexpr int kMaxGroups = kWarp;

// ---- validation (this backend's limits; shared checks: kernels/routing_checks.h) -------------

void check_warp_limits(RoutingShape shape, int64_t groups, const char* op) {
  if (shape.experts > kMaxExperts || shape.top_k > kMaxTopK || groups > kMaxGroups) {
    throw std::invalid_argument(
        std::string(op) + " (CUDA): supports experts <= " + std::to_string(kMaxExperts) +
        ", top_k <= " + std::to_string(kMaxTopK) + ", groups <= " +
        std::to_string(kMaxGroups) + "; got experts=" + std::to_string(shape.experts) +
        " top_k=" + std::to_string(shape.top_k) + " groups=" + std::to_string(groups));
  }
}

// ---- device helpers --------------------------------------------------------------------------

// The CPU's ranking (insert_ranked): a higher key first, an equal key to the lower index. A
// strict total order on (key, index) for non-NaN keys, so a butterfly arg-max under it gives
// every lane the same winner.
__device__ inline bool ranks_before(float key, int index, float other_key, int other_index) {
  return key > other_key || (key == other_key && index < other_index);
}

// ---- what both kernels share ------------------------------------------------------------------

// What both kernels take from the shape and options.
struct TokenArgs {
  int64_t tokens;
  int experts, top_k;
  bool softmax, normalize;
  double route_scale;

  void set_shape(RoutingShape shape, RoutingOptions options) {
    tokens = shape.tokens;
    experts = static_cast<int>(shape.experts);
    top_k = static_cast<int>(shape.top_k);
    softmax = options.score == ScoreFunction::kSoftmax;
    normalize = options.normalize;
    route_scale = options.route_scale;
  }
};

// A kernel's instances for 1, 2, 4 and 8 experts per lane.
template <typename Args>
using PerLaneKernels = std::array<void (*)(Args), 4>;

// One warp per token, with the fewest experts per lane that hold args.experts (at most
// kMaxExperts, checked by check_warp_limits).
template <typename Args>
void launch_per_token(const PerLaneKernels<Args>& kernels, const Args& args,
                      cudaStream_t stream) {
  const int instance = args.experts <= kWarp       ? 0
                       : args.experts <= 2 * kWarp ? 1
                       : args.experts <= 4 * kWarp ? 2
                                                   : 3;
  kernels[instance]<<<blocks_for(args.tokens, kWarpsPerBlock), kThreads, 0, stream>>>(args);
  BALEINE_CUDA_LAUNCH_CHECK();
}

// ---- routing_forward -------------------------------------------------------------------------

struct ForwardArgs : TokenArgs {
  const float* logits;
  const float* bias;  // nullptr = zeros
  float* scores;
  int32_t* chosen;
  float* weights;
  bool limited;  // node-limited routing actually restricts (0 < max_groups < groups)
  int groups, max_groups;
};

// Scores of one token into score[] (lane's experts; entries past `experts` untouched).
// Mirrors score_row of kernels/cpu/routing.cpp: sigmoid in float; softmax with the max
// subtracted, exp in float, the total in double and the scaling in double.
template <int kPerLane>
__device__ void score_token(const ForwardArgs& p, const float* logit_row, unsigned present,
                            float (&score)[kPerLane]) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (present >> i & 1u) score[i] = logit_row[lane + kWarp * i];
  }
  if (!p.softmax) {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (present >> i & 1u) score[i] = 1.0f / (1.0f + expf(-score[i]));
    }
    return;
  }
  float max_logit = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (present >> i & 1u) max_logit = fmaxf(max_logit, score[i]);
  }
  max_logit = warp_max(max_logit);
  double total = 0;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (present >> i & 1u) {
      score[i] = expf(score[i] - max_logit);
      total += score[i];
    }
  }
  const double inverse = 1.0 / warp_sum(total);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (present >> i & 1u) score[i] = static_cast<float>(score[i] * inverse);
  }
}

// Node-limited routing: the bits of `available` whose expert lies outside the max_groups best
// groups are cleared. A group's key is the sum of its 2 best expert keys (kernels/routing.h);
// lane g scores group g from the token's keys staged in shared memory, then counts how many
// groups rank before its own.
template <int kPerLane>
__device__ unsigned keep_best_groups(const ForwardArgs& p, const float (&key)[kPerLane],
                                     unsigned available, float* staged_keys) {
  const int lane = threadIdx.x % kWarp;
  __syncwarp();  // the previous token's group pass has finished reading staged_keys
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (available >> i & 1u) staged_keys[lane + kWarp * i] = key[i];
  }
  __syncwarp();
  const int group_size = p.experts / p.groups;
  float group_key = -INFINITY;
  if (lane < p.groups) {
    float best = -INFINITY, second = -INFINITY;
    for (int e = lane * group_size; e < (lane + 1) * group_size; ++e) {
      const float k = staged_keys[e];
      if (k > best) {
        second = best;
        best = k;
      } else if (k > second) {
        second = k;
      }
    }
    group_key = group_size == 1 ? best : best + second;
    if (isnan(group_key)) group_key = -INFINITY;  // +inf + -inf: rank it last, like NaN keys
  }
  int rank = 0;  // groups ranking before this lane's
  for (int g = 0; g < p.groups; ++g) {
    const float other = __shfl_sync(kFullMask, group_key, g);
    if (ranks_before(other, g, group_key, lane)) ++rank;
  }
  const unsigned kept = __ballot_sync(kFullMask, lane < p.groups && rank < p.max_groups);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    // Only present experts are tested: their group index is < groups <= 32.
    if ((available >> i & 1u) && !(kept >> ((lane + kWarp * i) / group_size) & 1u)) {
      available &= ~(1u << i);
    }
  }
  return available;
}

template <int kPerLane>
__global__ void __launch_bounds__(kThreads) routing_forward_kernel(ForwardArgs p) {
  __shared__ float staged_keys[kWarpsPerBlock][kMaxExperts];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t warps_in_grid = int64_t(gridDim.x) * kWarpsPerBlock;
  // t is the same in every lane, so the whole warp runs each iteration (shuffles need that).
  for (int64_t t = int64_t(blockIdx.x) * kWarpsPerBlock + warp; t < p.tokens;
       t += warps_in_grid) {
    unsigned present = 0;  // bit i: expert lane + 32·i exists
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (lane + kWarp * i < p.experts) present |= 1u << i;
    }
    float score[kPerLane] = {}, key[kPerLane];
    score_token<kPerLane>(p, p.logits + t * p.experts, present, score);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + kWarp * i;
      key[i] = -INFINITY;
      if (present >> i & 1u) {
        p.scores[t * p.experts + e] = score[i];
        // The bias only chooses (aux-loss-free balancing); the weights below never see it.
        key[i] = p.bias != nullptr ? score[i] + p.bias[e] : score[i];
        if (isnan(key[i])) key[i] = -INFINITY;  // keeps every chosen id in range
      }
    }
    unsigned available = present;  // bit i: expert lane + 32·i may still be chosen
    if (p.limited) available = keep_best_groups<kPerLane>(p, key, available, staged_keys[warp]);

    // top_k rounds of a warp arg-max. At least top_k experts are available (checked on the
    // host), so each round finds a real one.
    double chosen_sum = 0;  // Σ chosen scores in slot order, as the CPU adds them
    int my_expert = 0;      // slot `lane`'s choice
    float my_score = 0;
    for (int slot = 0; slot < p.top_k; ++slot) {
      float best_key = -INFINITY, best_score = 0;
      int best_expert = INT_MAX;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int e = lane + kWarp * i;
        if ((available >> i & 1u) && ranks_before(key[i], e, best_key, best_expert)) {
          best_key = key[i];
          best_expert = e;
          best_score = score[i];
        }
      }
      for (int offset = kWarp / 2; offset > 0; offset /= 2) {
        const float other_key = __shfl_xor_sync(kFullMask, best_key, offset);
        const int other_expert = __shfl_xor_sync(kFullMask, best_expert, offset);
        const float other_score = __shfl_xor_sync(kFullMask, best_score, offset);
        if (ranks_before(other_key, other_expert, best_key, best_expert)) {
          best_key = other_key;
          best_expert = other_expert;
          best_score = other_score;
        }
      }
      if (lane == slot) {
        my_expert = best_expert;
        my_score = best_score;
      }
      chosen_sum += best_score;
      if (best_expert < p.experts && best_expert % kWarp == lane) {
        available &= ~(1u << (best_expert / kWarp));
      }
    }
    // Weights read the scores without the bias (eq. 13), in double as on the CPU.
    const double factor = p.normalize ? p.route_scale / chosen_sum : p.route_scale;
    if (lane < p.top_k) {
      p.chosen[t * p.top_k + lane] = my_expert;
      p.weights[t * p.top_k + lane] = static_cast<float>(factor * my_score);
    }
  }
}

// ---- routing_backward ------------------------------------------------------------------------

struct BackwardArgs : TokenArgs {
  const float* dweights;
  const float* dscores_extra;  // nullptr = zeros
  const float* scores;
  const int32_t* chosen;
  float* dlogits;
};

// Mirrors routing_backward of kernels/cpu/routing.cpp, all intermediate math in double.
template <int kPerLane>
__global__ void __launch_bounds__(kThreads) routing_backward_kernel(BackwardArgs p) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t warps_in_grid = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t t = int64_t(blockIdx.x) * kWarpsPerBlock + warp; t < p.tokens;
       t += warps_in_grid) {
    const int64_t row = t * p.experts, slots = t * p.top_k;
    // Lane j holds slot j: its expert, weight gradient and (unbiased) score.
    int expert = -1;
    double dweight = 0, chosen_score = 0;
    if (lane < p.top_k) {
      expert = p.chosen[slots + lane];
      dweight = p.dweights[slots + lane];
      if (expert >= 0 && expert < p.experts) chosen_score = p.scores[row + expert];
    }
    // With S = Σ_j s_cj and w_j = r·s_cj/S:  dL/ds_cj = r/S · (dw_j − Σ_j' dw_j'·s_cj'/S);
    // without normalisation dL/ds_cj = r·dw_j. The sums run in slot order in every lane.
    double term = p.route_scale * dweight;
    if (p.normalize) {
      double chosen_sum = 0, weighted = 0;
      for (int j = 0; j < p.top_k; ++j) {
        const double s = __shfl_sync(kFullMask, chosen_score, j);
        chosen_sum += s;
        weighted += __shfl_sync(kFullMask, dweight, j) * s;  // exact: a product of two floats
      }
      const double shared = weighted / chosen_sum;
      term = p.route_scale / chosen_sum * (dweight - shared);
    }
    double dscore[kPerLane];
    float score[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + kWarp * i;
      dscore[i] = 0;
      score[i] = 0;
      if (e < p.experts) {
        score[i] = p.scores[row + e];
        if (p.dscores_extra != nullptr) dscore[i] = p.dscores_extra[row + e];
      }
    }
    // Each slot's term goes to the lane owning its expert (in slot order, should an id repeat).
    for (int j = 0; j < p.top_k; ++j) {
      const int expert_j = __shfl_sync(kFullMask, expert, j);
      const double term_j = __shfl_sync(kFullMask, term, j);
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        if (expert_j == lane + kWarp * i) dscore[i] += term_j;
      }
    }
    float* dlogit_row = p.dlogits + row;
    if (!p.softmax) {
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int e = lane + kWarp * i;
        const double s = score[i];
        if (e < p.experts) dlogit_row[e] = static_cast<float>(dscore[i] * s * (1.0 - s));
      }
      continue;
    }
    // Softmax Jacobian: dx_e = s_e · (ds_e − Σ_e' ds_e'·s_e').
    double projection = 0;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) projection += dscore[i] * score[i];  // 0 past experts
    projection = warp_sum(projection);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + kWarp * i;
      if (e < p.experts) dlogit_row[e] = static_cast<float>(score[i] * (dscore[i] - projection));
    }
  }
}

}  // namespace

// ---- host functions --------------------------------------------------------------------------

void routing_forward(const float* logits, const float* bias, float* scores, int32_t* chosen,
                     float* weights, RoutingShape shape, RoutingOptions options,
                     cudaStream_t stream) {
  NvtxRange range("routing_forward");
  check_shape(shape, "routing_forward");
  check_groups(shape, options, "routing_forward");
  // max_groups == groups keeps every group: the plain top-k, as on the CPU.
  const bool limited = options.max_groups > 0 && options.max_groups < options.groups;
  check_warp_limits(shape, limited ? options.groups : 1, "routing_forward");
  if (shape.tokens == 0) return;
  ForwardArgs args{};
  args.set_shape(shape, options);
  args.logits = logits;
  args.bias = bias;
  args.scores = scores;
  args.chosen = chosen;
  args.weights = weights;
  args.limited = limited;
  args.groups = static_cast<int>(options.groups);
  args.max_groups = static_cast<int>(options.max_groups);
  launch_per_token<ForwardArgs>({routing_forward_kernel<1>, routing_forward_kernel<2>,
                                 routing_forward_kernel<4>, routing_forward_kernel<8>},
                                args, stream);
}

void routing_backward(const float* dweights, const float* dscores_extra, const float* scores,
                      const int32_t* chosen, float* dlogits, RoutingShape shape,
                      RoutingOptions options, cudaStream_t stream) {
  NvtxRange range("routing_backward");
  check_shape(shape, "routing_backward");
  check_warp_limits(shape, 1, "routing_backward");  // groups play no part in the backward
  if (shape.tokens == 0) return;
  BackwardArgs args{};
  args.set_shape(shape, options);
  args.dweights = dweights;
  args.dscores_extra = dscores_extra;
  args.scores = scores;
  args.chosen = chosen;
  args.dlogits = dlogits;
  launch_per_token<BackwardArgs>({routing_backward_kernel<1>, routing_backward_kernel<2>,
                                  routing_backward_kernel<4>, routing_backward_kernel<8>},
                                 args, stream);
}

}  // namespace baleine::kernels::cuda
