// The sequence-wise balance loss on the GPU (declared in kernels/cuda/routing.h, as the CPU's is
// in kernels/routing.h), the twin of kernels/cpu/routing.cpp's. Per sequence:
// f_e = E/(K·L)·count_e and loss_seq = 1/L·Σ_t (Σ_e f_e·s[t,e]) / Z_t.
//
// One block per sequence; the expert fractions f_e live in shared memory and each warp takes
// every 8th token of the sequence. All sums are in double, in a fixed order, so the result is
// deterministic (it differs from the CPU's only in the order of double additions).
#include "kernels/cuda/routing.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"
#include "kernels/routing_checks.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;
// One sequence's fractions (double) and counts (int) live in shared memory:
// 2048 · 12 bytes = 24 KiB, well inside the 48 KiB every GPU gives a block by default.
constexpr int kMaxLossExperts = 2048;

// kernels/cpu/routing.cpp's checks plus this backend's limit.
void check_loss_arguments(RoutingShape shape, int64_t seq_len, const char* op) {
  check_sequences(shape, seq_len, op);
  if (shape.experts > kMaxLossExperts) {
    throw std::invalid_argument(std::string(op) + " (CUDA): supports experts <= " +
                                std::to_string(kMaxLossExperts) +
                                "; got experts=" + std::to_string(shape.experts));
  }
}

struct LossArgs {
  const float* scores;
  const int32_t* chosen;
  int64_t seq_len, sequences;
  int experts, top_k;
  double fraction_scale;  // E / (K·L)
};

// f_e of sequence b into fraction[] (shared memory). Integer counts are exact whatever order the
// atomics land in. Ends with a barrier. Back-to-back calls need none between them: the first
// writes (count) follow the previous call's last barrier, after which count is no longer read,
// and fraction is rewritten only after two more barriers.
__device__ void expert_fractions(const LossArgs& p, int64_t b, int* count, double* fraction) {
  for (int e = threadIdx.x; e < p.experts; e += blockDim.x) count[e] = 0;
  __syncthreads();
  const int64_t begin = b * p.seq_len * p.top_k, end = begin + p.seq_len * p.top_k;
  for (int64_t a = begin + threadIdx.x; a < end; a += blockDim.x) {
    const int32_t e = p.chosen[a];
    if (e >= 0 && e < p.experts) atomicAdd(&count[e], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < p.experts; e += blockDim.x) {
    fraction[e] = double(count[e]) * p.fraction_scale;
  }
  __syncthreads();
}

// Z = Σ_e s_e and Σ_e f_e·s_e of one token's scores, in every lane of the warp.
__device__ void row_sums(const float* row, const double* fraction, int experts, double& z,
                         double& weighted) {
  z = 0;
  weighted = 0;
  for (int e = threadIdx.x % kWarp; e < experts; e += kWarp) {
    const double s = row[e];
    z += s;
    weighted += fraction[e] * s;
  }
  z = warp_sum(z);
  weighted = warp_sum(weighted);
}

// Shared memory of the loss kernels: fraction [experts] (double, first for its alignment), then
// count [experts] (int).
size_t loss_shared_bytes(int experts) {
  return size_t(experts) * (sizeof(double) + sizeof(int));
}

// per_sequence[b] = loss_seq of sequence b. Needs blockDim.x == kThreads.
__global__ void __launch_bounds__(kThreads) balance_loss_per_sequence(LossArgs p,
                                                                      double* per_sequence) {
  extern __shared__ double fraction[];
  int* count = reinterpret_cast<int*>(fraction + p.experts);
  __shared__ double warp_totals[kWarpsPerBlock];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int64_t b = blockIdx.x; b < p.sequences; b += gridDim.x) {  // b is block-uniform
    expert_fractions(p, b, count, fraction);
    double total = 0;  // this warp's tokens, in token order
    for (int64_t t = b * p.seq_len + warp; t < (b + 1) * p.seq_len; t += kWarpsPerBlock) {
      double z, weighted;
      row_sums(p.scores + t * p.experts, fraction, p.experts, z, weighted);
      total += weighted / z;
    }
    if (lane == 0) warp_totals[warp] = total;
    __syncthreads();
    if (threadIdx.x == 0) {
      double sum = 0;
      for (int w = 0; w < kWarpsPerBlock; ++w) sum += warp_totals[w];
      per_sequence[b] = sum / double(p.seq_len);
    }
    __syncthreads();  // thread 0 has read warp_totals (cheap, and keeps each pass self-contained)
  }
}

// *loss = alpha · mean over sequences, summed in a fixed order. One block of kThreads.
__global__ void __launch_bounds__(kThreads) balance_loss_total(const double* per_sequence,
                                                               int64_t sequences, double alpha,
                                                               double* loss) {
  __shared__ double partial[kThreads];
  double sum = 0;
  for (int64_t b = threadIdx.x; b < sequences; b += kThreads) sum += per_sequence[b];
  partial[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int i = 0; i < kThreads; ++i) total += partial[i];
    *loss = alpha * total / double(sequences);
  }
}

// dscores[t,e] += scale · (f_e − Σ_e' f_e'·s[t,e']/Z_t) / Z_t. Needs blockDim.x == kThreads.
__global__ void __launch_bounds__(kThreads) balance_loss_backward(LossArgs p, double scale,
                                                                  float* dscores) {
  extern __shared__ double fraction[];
  int* count = reinterpret_cast<int*>(fraction + p.experts);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int64_t b = blockIdx.x; b < p.sequences; b += gridDim.x) {  // b is block-uniform
    expert_fractions(p, b, count, fraction);
    for (int64_t t = b * p.seq_len + warp; t < (b + 1) * p.seq_len; t += kWarpsPerBlock) {
      double z, weighted;
      row_sums(p.scores + t * p.experts, fraction, p.experts, z, weighted);
      const double mean_fraction = weighted / z;
      float* out = dscores + t * p.experts;
      for (int e = lane; e < p.experts; e += kWarp) {
        out[e] += static_cast<float>(scale * (fraction[e] - mean_fraction) / z);
      }
    }
    // No barrier needed before the next sequence: see expert_fractions.
  }
}

LossArgs loss_args(const float* scores, const int32_t* chosen, RoutingShape shape,
                   int64_t seq_len) {
  return LossArgs{scores,
                  chosen,
                  seq_len,
                  shape.tokens / seq_len,
                  static_cast<int>(shape.experts),
                  static_cast<int>(shape.top_k),
                  double(shape.experts) / double(shape.top_k * seq_len)};
}

}  // namespace

// ---- host functions --------------------------------------------------------------------------

size_t seq_balance_loss_forward_workspace_bytes(RoutingShape shape, int64_t seq_len) {
  check_loss_arguments(shape, seq_len, "seq_balance_loss_forward_workspace_bytes");
  return size_t(shape.tokens / seq_len) * sizeof(double);
}

void seq_balance_loss_forward(const float* scores, const int32_t* chosen, RoutingShape shape,
                              int64_t seq_len, double alpha, double* loss, void* workspace,
                              cudaStream_t stream) {
  NvtxRange range("seq_balance_loss_forward");
  check_loss_arguments(shape, seq_len, "seq_balance_loss_forward");
  const int64_t sequences = shape.tokens / seq_len;
  if (sequences == 0) {  // the CPU returns 0; a memset enqueues that without a kernel
    BALEINE_CUDA_CALL(cudaMemsetAsync(loss, 0, sizeof(double), stream));
    return;
  }
  if (workspace == nullptr || !is_aligned(workspace, alignof(double))) {
    throw std::invalid_argument(
        "seq_balance_loss_forward: needs an 8-byte aligned workspace of "
        "seq_balance_loss_forward_workspace_bytes() bytes");
  }
  double* per_sequence = static_cast<double*>(workspace);
  const LossArgs args = loss_args(scores, chosen, shape, seq_len);
  balance_loss_per_sequence<<<blocks_for(sequences, 1), kThreads,
                              loss_shared_bytes(args.experts), stream>>>(args, per_sequence);
  BALEINE_CUDA_LAUNCH_CHECK();
  balance_loss_total<<<1, kThreads, 0, stream>>>(per_sequence, sequences, alpha, loss);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void seq_balance_loss_backward(const float* scores, const int32_t* chosen, RoutingShape shape,
                               int64_t seq_len, double alpha, float dloss, float* dscores,
                               cudaStream_t stream) {
  NvtxRange range("seq_balance_loss_backward");
  check_loss_arguments(shape, seq_len, "seq_balance_loss_backward");
  const int64_t sequences = shape.tokens / seq_len;
  if (sequences == 0) return;
  // d loss / d s[t,e] = alpha/(B·L) · (f_e − Σ_e' f_e'·s[t,e']/Z_t) / Z_t,  f held constant.
  const double scale = double(dloss) * alpha / double(sequences * seq_len);
  const LossArgs args = loss_args(scores, chosen, shape, seq_len);
  balance_loss_backward<<<blocks_for(sequences, 1), kThreads, loss_shared_bytes(args.experts),
                          stream>>>(args, scale, dscores);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace baleine::kernels::cuda
