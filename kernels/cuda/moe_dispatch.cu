// Token permutation for a dropless MoE layer on the GPU (kernels/cuda/moe_dispatch.h), the twin
// of kernels/cpu/moe_dispatch.cpp.
//
// build_expert_index is a stable counting sort done in three kernels, with no atomics and no
// host round trip:
//   1. the assignments split into chunks of kChunk; one warp per chunk counts its assignments
//      per expert (workspace: chunk_rows [chunks, experts]);
//   2. one block turns the counts into expert_offsets (exclusive scan over experts) and each
//      chunk's first row per expert (offsets[e] + the counts of the earlier chunks);
//   3. one warp per chunk walks it again in assignment order and places each assignment at its
//      chunk's first row for the expert plus the number of earlier assignments of the chunk to
//      the same expert (__match_any_sync groups a step's 32 lanes by expert).
// A row is therefore offsets[e] + the number of earlier assignments to e: the CPU's row exactly.
//
// The row kernels give each output row (or token) to one block (or warp), so every output
// element is written once and every sum runs in the CPU's order.
#include "kernels/cuda/moe_dispatch.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;
// Assignments per chunk of build_expert_index: 64 warp steps. Bigger chunks shrink the
// workspace and the scan's serial loop over chunks; smaller ones give more warps.
constexpr int64_t kChunk = 2048;
// Kernels 1 and 3 keep a running count per expert for each of a block's 8 warps in shared
// memory: 1024 experts · 8 · 4 bytes = 32 KiB.
constexpr int64_t kMaxIndexExperts = 1024;
// permute_tokens_backward orders a token's rows in shared memory, one thread per slot.
constexpr int64_t kMaxTopK = 64;

void fail(const std::string& what) { throw std::invalid_argument(what); }

// ---- build_expert_index ----------------------------------------------------------------------

struct IndexArgs {
  const int32_t* chosen;
  int64_t assignments, chunks;
  int top_k, experts;
};

// Walks chunk `chunk` 32 assignments at a time, in order. For every assignment a of the chunk
// calls visit(a, expert, rank): expert is -1 for an id outside [0, experts), otherwise rank is
// the number of earlier assignments of the chunk to the same expert. `running` ([experts],
// this warp's shared memory) ends holding the chunk's count per expert. Warp-uniform control.
template <typename Visit>
__device__ void walk_chunk(const IndexArgs& p, int64_t chunk, int* running, Visit visit) {
  const int lane = threadIdx.x % kWarp;
  for (int e = lane; e < p.experts; e += kWarp) running[e] = 0;
  __syncwarp();
  const int64_t begin = chunk * kChunk;
  const int64_t end = begin + kChunk < p.assignments ? begin + kChunk : p.assignments;
  const unsigned lower_lanes = (1u << lane) - 1;
  for (int64_t base = begin; base < end; base += kWarp) {
    const int64_t a = base + lane;
    int expert = -1;
    if (a < end) {
      const int32_t id = p.chosen[a];
      if (id >= 0 && id < p.experts) expert = id;
    }
    // Lanes with the same expert; the lower lanes hold the earlier assignments.
    const unsigned same = __match_any_sync(kFullMask, expert);
    const unsigned earlier = same & lower_lanes;
    if (a < end) visit(a, expert, expert >= 0 ? running[expert] + __popc(earlier) : -1);
    __syncwarp();  // every lane has read running[] before the group's first lane moves it on
    if (expert >= 0 && earlier == 0) running[expert] += __popc(same);
    __syncwarp();
  }
}

// Kernel 1: chunk_rows[c, e] = how many assignments of chunk c go to expert e.
__global__ void __launch_bounds__(kThreads) count_chunk_experts(IndexArgs p, int32_t* chunk_rows) {
  extern __shared__ int running_per_warp[];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  int* running = running_per_warp + warp * p.experts;
  const int64_t warps_in_grid = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t c = int64_t(blockIdx.x) * kWarpsPerBlock + warp; c < p.chunks; c += warps_in_grid) {
    walk_chunk(p, c, running, [](int64_t, int, int) {});
    for (int e = lane; e < p.experts; e += kWarp) chunk_rows[c * p.experts + e] = running[e];
    __syncwarp();  // before the next chunk clears running[]
  }
}

// Kernel 2 (one block): expert_offsets [experts + 1] from the totals, then chunk_rows[c, e]
// becomes chunk c's first row for expert e. Thread e walks the chunks in order for expert e.
__global__ void __launch_bounds__(kThreads) scan_expert_offsets(IndexArgs p, int32_t* chunk_rows,
                                                                int32_t* expert_offsets) {
  extern __shared__ int first_row[];  // [experts + 1]
  for (int e = threadIdx.x; e < p.experts; e += blockDim.x) {
    int total = 0;
    for (int64_t c = 0; c < p.chunks; ++c) total += chunk_rows[c * p.experts + e];
    first_row[e] = total;
  }
  __syncthreads();
  if (threadIdx.x == 0) {  // at most 1024 additions: not worth a parallel scan
    int row = 0;
    for (int e = 0; e < p.experts; ++e) {
      const int count = first_row[e];
      first_row[e] = row;
      row += count;
    }
    first_row[p.experts] = row;
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= p.experts; e += blockDim.x) expert_offsets[e] = first_row[e];
  for (int e = threadIdx.x; e < p.experts; e += blockDim.x) {
    int row = first_row[e];
    for (int64_t c = 0; c < p.chunks; ++c) {
      const int count = chunk_rows[c * p.experts + e];
      chunk_rows[c * p.experts + e] = row;
      row += count;
    }
  }
}

// Kernel 3: places every assignment; rows left over by dropped (out-of-range) ids get token -1.
__global__ void __launch_bounds__(kThreads) place_assignments(IndexArgs p,
                                                              const int32_t* chunk_rows,
                                                              const int32_t* expert_offsets,
                                                              int32_t* row_token,
                                                              int32_t* assignment_row) {
  extern __shared__ int running_per_warp[];
  const int warp = threadIdx.x / kWarp;
  int* running = running_per_warp + warp * p.experts;
  const int64_t warps_in_grid = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t c = int64_t(blockIdx.x) * kWarpsPerBlock + warp; c < p.chunks; c += warps_in_grid) {
    const int32_t* first_row = chunk_rows + c * p.experts;
    walk_chunk(p, c, running, [&](int64_t a, int expert, int rank) {
      if (expert < 0) {
        assignment_row[a] = -1;
        return;
      }
      const int32_t row = first_row[expert] + rank;
      row_token[row] = static_cast<int32_t>(a / p.top_k);
      assignment_row[a] = row;
    });
  }
  const int64_t valid_rows = expert_offsets[p.experts];
  const int64_t threads_in_grid = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = valid_rows + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       r < p.assignments; r += threads_in_grid) {
    row_token[r] = -1;
  }
}

// ---- row kernels -----------------------------------------------------------------------------
// Templated on the element moved per thread: float, or float4 when dim % 4 == 0 and the pointers
// are 16-byte aligned (4× fewer, wider memory instructions). Both do the same per-float
// arithmetic in the same order, rounding every product and sum (no fused multiply-add), as the
// CPU loops do.

__device__ inline float zero_of(float) { return 0.0f; }
__device__ inline float4 zero_of(float4) { return make_float4(0.0f, 0.0f, 0.0f, 0.0f); }
__device__ inline float add(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float4 add(float4 a, float4 b) {
  return make_float4(__fadd_rn(a.x, b.x), __fadd_rn(a.y, b.y), __fadd_rn(a.z, b.z),
                     __fadd_rn(a.w, b.w));
}
__device__ inline float scaled(float w, float v) { return __fmul_rn(w, v); }
__device__ inline float4 scaled(float w, float4 v) {
  return make_float4(__fmul_rn(w, v.x), __fmul_rn(w, v.y), __fmul_rn(w, v.z), __fmul_rn(w, v.w));
}

// xe[r,:] = x[row_token[r],:]; one block per row, `width` elements of V per row.
template <typename V>
__global__ void __launch_bounds__(kThreads) gather_rows(const V* x, const int32_t* row_token,
                                                        V* xe, int64_t rows, int64_t width) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int32_t t = row_token[r];
    V* out = xe + r * width;
    if (t < 0) {  // a row no assignment filled (dropped id): zeros, not stale memory
      for (int64_t c = threadIdx.x; c < width; c += blockDim.x) out[c] = zero_of(V{});
      continue;
    }
    const V* in = x + int64_t(t) * width;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) out[c] = in[c];
  }
}

// dx[t,:] = Σ of token t's rows of dxe in ascending row order (the CPU's order: it adds rows
// r = 0, 1, … into their tokens). One block per token; threads j < top_k rank slot j's row.
template <typename V>
__global__ void __launch_bounds__(kThreads) sum_token_rows(const V* dxe,
                                                           const int32_t* assignment_row, V* dx,
                                                           int64_t tokens, int top_k,
                                                           int64_t width) {
  __shared__ int32_t rows_ascending[kMaxTopK];
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {  // t is block-uniform
    const int32_t* rows = assignment_row + t * top_k;
    if (int(threadIdx.x) < top_k) {
      const int slot = threadIdx.x;
      const int32_t row = rows[slot];
      int rank = 0;  // rows before this one; equal rows (only -1 can repeat) by slot
      for (int other = 0; other < top_k; ++other) {
        rank += rows[other] < row || (rows[other] == row && other < slot);
      }
      rows_ascending[rank] = row;
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
      V sum = zero_of(V{});
      for (int j = 0; j < top_k; ++j) {
        const int32_t row = rows_ascending[j];
        if (row >= 0) sum = add(sum, dxe[int64_t(row) * width + c]);
      }
      dx[t * width + c] = sum;
    }
    __syncthreads();  // every thread has read rows_ascending before the next token's ranks
  }
}

// y[t,:] = Σ_j weights[t,j] · ye[row_j,:] in slot order; one block per token.
template <typename V>
__global__ void __launch_bounds__(kThreads) combine_rows(const V* ye, const float* weights,
                                                         const int32_t* assignment_row, V* y,
                                                         int64_t tokens, int top_k,
                                                         int64_t width) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int32_t* rows = assignment_row + t * top_k;
    const float* w = weights + t * top_k;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
      V sum = zero_of(V{});
      for (int j = 0; j < top_k; ++j) {
        const int32_t row = rows[j];
        if (row >= 0) sum = add(sum, scaled(w[j], ye[int64_t(row) * width + c]));
      }
      y[t * width + c] = sum;
    }
  }
}

// One warp per assignment a = t·top_k + j: dye[row,:] = w·dy[t,:] and
// dweights[a] = <dy[t,:], ye[row,:]>, the dot product in double (each float·float product is
// exact in double, so only the order of the additions differs from the CPU's).
__global__ void __launch_bounds__(kThreads) combine_backward_kernel(
    const float* dy, const float* ye, const float* weights, const int32_t* assignment_row,
    float* dye, float* dweights, int64_t tokens, int top_k, int64_t dim) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t assignments = tokens * top_k;
  const int64_t warps_in_grid = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t a = int64_t(blockIdx.x) * kWarpsPerBlock + warp; a < assignments;
       a += warps_in_grid) {  // a is warp-uniform
    const int32_t row = assignment_row[a];
    if (row < 0) {  // a dropped assignment has no row and contributes nothing
      if (lane == 0) dweights[a] = 0.0f;
      continue;
    }
    const float w = weights[a];
    const float* upstream = dy + (a / top_k) * dim;
    const float* expert_out = ye + int64_t(row) * dim;
    float* dexpert_out = dye + int64_t(row) * dim;
    double dot = 0;
    for (int64_t c = lane; c < dim; c += kWarp) {
      const float g = upstream[c];
      dexpert_out[c] = __fmul_rn(w, g);
      dot += double(g) * double(expert_out[c]);
    }
    dot = warp_sum(dot);
    if (lane == 0) dweights[a] = static_cast<float>(dot);
  }
}

void check_rows(int64_t tokens, int64_t top_k, int64_t dim, const char* op) {
  if (tokens < 0 || top_k <= 0 || dim < 0) {
    fail(std::string(op) + ": bad sizes tokens=" + std::to_string(tokens) +
         " top_k=" + std::to_string(top_k) + " dim=" + std::to_string(dim));
  }
}

}  // namespace

// ---- host functions --------------------------------------------------------------------------

size_t build_expert_index_workspace_bytes(int64_t tokens, int64_t top_k, int64_t experts) {
  if (tokens <= 0 || top_k <= 0 || experts <= 0) return 0;
  const int64_t chunks = (tokens * top_k + kChunk - 1) / kChunk;
  return size_t(chunks) * size_t(experts) * sizeof(int32_t);
}

void build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k, int64_t experts,
                        int32_t* expert_offsets, int32_t* row_token, int32_t* assignment_row,
                        void* workspace, cudaStream_t stream) {
  NvtxRange range("build_expert_index");
  const int64_t assignments = tokens * top_k;
  if (tokens < 0 || top_k <= 0 || experts <= 0 || assignments > INT32_MAX) {
    fail("build_expert_index: bad sizes tokens=" + std::to_string(tokens) +
         " top_k=" + std::to_string(top_k) + " experts=" + std::to_string(experts));
  }
  if (experts > kMaxIndexExperts) {
    fail("build_expert_index (CUDA): supports experts <= " + std::to_string(kMaxIndexExperts) +
         "; got experts=" + std::to_string(experts));
  }
  if (assignments == 0) {  // no rows: every offset is 0 (a memset, no kernel)
    BALEINE_CUDA_CALL(cudaMemsetAsync(expert_offsets, 0,
                                      size_t(experts + 1) * sizeof(int32_t), stream));
    return;
  }
  if (workspace == nullptr || !is_aligned(workspace, alignof(int32_t))) {
    fail("build_expert_index: needs a 4-byte aligned workspace of "
         "build_expert_index_workspace_bytes() bytes");
  }
  IndexArgs args{chosen, assignments, (assignments + kChunk - 1) / kChunk,
                 static_cast<int>(top_k), static_cast<int>(experts)};
  int32_t* chunk_rows = static_cast<int32_t*>(workspace);
  const unsigned chunk_blocks = blocks_for(args.chunks, kWarpsPerBlock);
  const size_t running_bytes = size_t(kWarpsPerBlock) * size_t(experts) * sizeof(int);
  count_chunk_experts<<<chunk_blocks, kThreads, running_bytes, stream>>>(args, chunk_rows);
  BALEINE_CUDA_LAUNCH_CHECK();
  scan_expert_offsets<<<1, kThreads, size_t(experts + 1) * sizeof(int), stream>>>(
      args, chunk_rows, expert_offsets);
  BALEINE_CUDA_LAUNCH_CHECK();
  place_assignments<<<chunk_blocks, kThreads, running_bytes, stream>>>(
      args, chunk_rows, expert_offsets, row_token, assignment_row);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void permute_tokens_forward(const float* x, const int32_t* row_token, float* xe, int64_t rows,
                            int64_t dim, cudaStream_t stream) {
  NvtxRange range("permute_tokens_forward");
  check_rows(rows, 1, dim, "permute_tokens_forward");
  if (rows == 0 || dim == 0) return;
  const unsigned blocks = blocks_for(rows, 1);
  if (dim % 4 == 0 && is_aligned(x, 16) && is_aligned(xe, 16)) {
    gather_rows<float4><<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const float4*>(x),
                                                         row_token, reinterpret_cast<float4*>(xe),
                                                         rows, dim / 4);
  } else {
    gather_rows<float><<<blocks, kThreads, 0, stream>>>(x, row_token, xe, rows, dim);
  }
  BALEINE_CUDA_LAUNCH_CHECK();
}

void permute_tokens_backward(const float* dxe, const int32_t* assignment_row, float* dx,
                             int64_t tokens, int64_t top_k, int64_t dim, cudaStream_t stream) {
  NvtxRange range("permute_tokens_backward");
  check_rows(tokens, top_k, dim, "permute_tokens_backward");
  if (top_k > kMaxTopK) {
    fail("permute_tokens_backward (CUDA): supports top_k <= " + std::to_string(kMaxTopK) +
         "; got top_k=" + std::to_string(top_k));
  }
  if (tokens == 0 || dim == 0) return;
  const unsigned blocks = blocks_for(tokens, 1);
  if (dim % 4 == 0 && is_aligned(dxe, 16) && is_aligned(dx, 16)) {
    sum_token_rows<float4><<<blocks, kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(dxe), assignment_row, reinterpret_cast<float4*>(dx),
        tokens, static_cast<int>(top_k), dim / 4);
  } else {
    sum_token_rows<float><<<blocks, kThreads, 0, stream>>>(dxe, assignment_row, dx, tokens,
                                                           static_cast<int>(top_k), dim);
  }
  BALEINE_CUDA_LAUNCH_CHECK();
}

void combine_forward(const float* ye, const float* weights, const int32_t* assignment_row,
                     float* y, int64_t tokens, int64_t top_k, int64_t dim, cudaStream_t stream) {
  NvtxRange range("combine_forward");
  check_rows(tokens, top_k, dim, "combine_forward");
  if (tokens == 0 || dim == 0) return;
  const unsigned blocks = blocks_for(tokens, 1);
  if (dim % 4 == 0 && is_aligned(ye, 16) && is_aligned(y, 16)) {
    combine_rows<float4><<<blocks, kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(ye), weights, assignment_row,
        reinterpret_cast<float4*>(y), tokens, static_cast<int>(top_k), dim / 4);
  } else {
    combine_rows<float><<<blocks, kThreads, 0, stream>>>(ye, weights, assignment_row, y, tokens,
                                                         static_cast<int>(top_k), dim);
  }
  BALEINE_CUDA_LAUNCH_CHECK();
}

void combine_backward(const float* dy, const float* ye, const float* weights,
                      const int32_t* assignment_row, float* dye, float* dweights, int64_t tokens,
                      int64_t top_k, int64_t dim, cudaStream_t stream) {
  NvtxRange range("combine_backward");
  check_rows(tokens, top_k, dim, "combine_backward");
  if (tokens == 0) return;
  if (dim == 0) {  // empty dot products: dweights = 0, as on the CPU
    BALEINE_CUDA_CALL(
        cudaMemsetAsync(dweights, 0, size_t(tokens * top_k) * sizeof(float), stream));
    return;
  }
  combine_backward_kernel<<<blocks_for(tokens * top_k, kWarpsPerBlock), kThreads, 0, stream>>>(
      dy, ye, weights, assignment_row, dye, dweights, tokens, static_cast<int>(top_k), dim);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace baleine::kernels::cuda
