// Token embedding (kernels/cuda/embedding.h).
//
// Forward: a row gather, one block per token, float4 copies when the rows allow it.
//
// Backward: dtable[tokens[t], :] += dout[t, :] with repeated ids, deterministically and in the
// CPU's order. Columns are independent, so each block owns a tile of kTileCols columns of
// every table row and nobody else writes them. It walks the tokens in chunks of kChunkTokens:
//   1. every thread loads its share of the chunk's gradient tile and of the table rows the
//      chunk's ids name, into shared memory; meanwhile the first threads find, for each token
//      of the chunk, whether it is the first of its id in the chunk and which later token of the
//      chunk repeats its id (an O(chunk) scan of the ids in shared memory per token);
//   2. for each (first token of an id, column), one thread adds the old table value and the
//      gradients of that id's tokens in token order, and stores the sum once.
// The next chunk starts after a barrier, so it reads the sums the previous one stored. Every
// element thus sees old + g[t1] + g[t2] + ... in token order: the CPU's sequence of float
// additions (kernels/cpu/embedding.cpp), hence the same bits, and no atomics.
// The next chunk's ids are fetched during step 1 into a second buffer, hiding their latency.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

// ---- forward -------------------------------------------------------------------------------

// V is float or float4; `cols` counts V's per row.
template <typename V>
__global__ void gather_rows_kernel(const int32_t* tokens, const V* table, V* out,
                                   int64_t n_tokens, int64_t cols) {
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    const V* from = table + int64_t(tokens[t]) * cols;
    V* to = out + t * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) to[c] = from[c];
  }
}

// A warp multiple covering `cols`, at most 256: short rows do not leave most threads idle.
int row_threads(int64_t cols) {
  const int64_t warps = (cols + kWarp - 1) / kWarp;
  return static_cast<int>(kWarp * (warps < 8 ? warps : 8));
}

// ---- backward ------------------------------------------------------------------------------

constexpr int kChunkTokens = 128;
constexpr int kTileCols = 16;  // 64 bytes of a row: two full 32-byte sectors
constexpr int kBackwardThreads = 256;
constexpr int kPerThread = kChunkTokens * kTileCols / kBackwardThreads;
static_assert(kChunkTokens * kTileCols % kBackwardThreads == 0, "tile must split evenly");
static_assert(kChunkTokens <= kBackwardThreads, "one thread per chunk token scans the ids");

__global__ void __launch_bounds__(kBackwardThreads)
    scatter_add_rows_kernel(const int32_t* tokens, const float* dout, float* dtable,
                            int64_t n_tokens, int64_t dim) {
  __shared__ int32_t ids[2][kChunkTokens];       // this chunk's ids and the next one's
  __shared__ int32_t next_same_id[kChunkTokens];  // the chunk's next token with this id, or -1
  __shared__ bool first_of_id[kChunkTokens];      // no earlier token of the chunk has this id
  __shared__ float grad[kChunkTokens][kTileCols];
  __shared__ float old_row[kChunkTokens][kTileCols];

  const int tid = threadIdx.x;
  const int64_t tiles = (dim + kTileCols - 1) / kTileCols;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t col0 = tile * kTileCols;
    if (tid < kChunkTokens && tid < n_tokens) ids[0][tid] = tokens[tid];
    __syncthreads();

    int buffer = 0;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kChunkTokens, buffer ^= 1) {
      const int len = static_cast<int>(n_tokens - t0 < kChunkTokens ? n_tokens - t0 : kChunkTokens);
      const int32_t* chunk_ids = ids[buffer];

      // Step 1: loads into registers first, so they are all in flight during the id scan.
      float g[kPerThread], old[kPerThread];
#pragma unroll
      for (int q = 0; q < kPerThread; ++q) {
        const int e = tid + q * kBackwardThreads;
        const int j = e / kTileCols;
        const int64_t col = col0 + e % kTileCols;
        g[q] = 0.0f;
        old[q] = 0.0f;
        if (j < len && col < dim) {
          g[q] = dout[(t0 + j) * dim + col];
          old[q] = dtable[int64_t(chunk_ids[j]) * dim + col];
        }
      }
      const bool fetch_next = tid < kChunkTokens && t0 + kChunkTokens + tid < n_tokens;
      const int32_t upcoming_id = fetch_next ? tokens[t0 + kChunkTokens + tid] : 0;

      if (tid < len) {
        const int32_t id = chunk_ids[tid];
        int next = -1;
        bool first = true;
        for (int k = 0; k < len; ++k) {
          if (chunk_ids[k] != id) continue;
          if (k < tid) first = false;
          if (k > tid && next < 0) next = k;
        }
        next_same_id[tid] = next;
        first_of_id[tid] = first;
      }
#pragma unroll
      for (int q = 0; q < kPerThread; ++q) {
        const int e = tid + q * kBackwardThreads;
        grad[e / kTileCols][e % kTileCols] = g[q];
        old_row[e / kTileCols][e % kTileCols] = old[q];
      }
      // The other buffer was last read before the previous chunk's closing barrier.
      if (fetch_next) ids[buffer ^ 1][tid] = upcoming_id;
      __syncthreads();

      // Step 2: one thread per (first token of an id, column) sums that id's gradients.
#pragma unroll
      for (int q = 0; q < kPerThread; ++q) {
        const int e = tid + q * kBackwardThreads;
        const int j = e / kTileCols, c = e % kTileCols;
        const int64_t col = col0 + c;
        if (j >= len || col >= dim || !first_of_id[j]) continue;
        float sum = old_row[j][c];
        for (int k = j; k >= 0; k = next_same_id[k]) sum += grad[k][c];
        dtable[int64_t(chunk_ids[j]) * dim + col] = sum;
      }
      // The next chunk reads these stores (same block: the barrier makes them visible) and
      // overwrites the shared arrays.
      __syncthreads();
    }
  }
}

}  // namespace

void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t n_tokens,
                       int64_t dim, cudaStream_t stream) {
  NvtxRange range("embedding_forward");
  if (n_tokens <= 0 || dim <= 0) return;
  const unsigned blocks = blocks_for(n_tokens, 1);
  if (dim % 4 == 0 && is_aligned(table, 16) && is_aligned(out, 16)) {
    const int64_t cols = dim / 4;
    gather_rows_kernel<float4><<<blocks, row_threads(cols), 0, stream>>>(
        tokens, reinterpret_cast<const float4*>(table), reinterpret_cast<float4*>(out), n_tokens,
        cols);
  } else {
    gather_rows_kernel<float><<<blocks, row_threads(dim), 0, stream>>>(tokens, table, out,
                                                                        n_tokens, dim);
  }
  BALEINE_CUDA_LAUNCH_CHECK();
}

void embedding_backward(const int32_t* tokens, const float* dout, float* dtable,
                        int64_t n_tokens, int64_t dim, cudaStream_t stream) {
  NvtxRange range("embedding_backward");
  if (n_tokens <= 0 || dim <= 0) return;
  const int64_t tiles = (dim + kTileCols - 1) / kTileCols;
  scatter_add_rows_kernel<<<blocks_for(tiles, 1), kBackwardThreads, 0, stream>>>(
      tokens, dout, dtable, n_tokens, dim);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace baleine::kernels::cuda
