// Causal attention on the GPU in FP32, FlashAttention-style. Layouts and contract:
// kernels/cuda/attention.h; the CPU twin: kernels/cpu/attention.cpp.
//
// Forward (FlashAttention, Dao et al. 2022, arXiv 2205.14135, Algorithm 1, with the causal
// skip): one thread block per (batch·head, block of kRows query rows). It keeps its q rows in
// shared memory and walks the key blocks from the first to the one holding its last row; blocks
// entirely above the diagonal are never touched. Per key block: S = q·kᵀ/√D, masked above the
// diagonal; the running row maximum m and partial sums l are updated online, the accumulated
// output is rescaled by exp(m_old − m_new), and O += exp(S − m)·v. At the end out = O / l and
// lse = m + log l: one float per row is all the backward keeps.
//
// Backward (FlashAttention-2, Dao 2023, arXiv 2307.08691, Algorithm 2), in three launches so
// that no two blocks write the same gradient and nothing needs atomics:
//   1. delta_i = dout_i·out_i, one warp per row. This is the softmax Jacobian's row term
//      Σ_j P_ij dP_ij (FA-2's D_i), in head_dim products instead of seq.
//   2. dk, dv: one block per key block, looping over the query blocks at or below the diagonal:
//      P = exp(S − lse), dP = dout·vᵀ, dS = P ⊙ (dP − delta); dv += Pᵀ·dout, dk += dSᵀ·q/√D.
//   3. dq: one block per query block, looping over its causal key blocks and recomputing P and
//      dS the same way: dq += dS·k/√D.
// Recomputing S and dP in both 2 and 3 costs more FLOPs than FA-2's single pass with an atomic
// dq, and buys determinism: every gradient element is summed by one thread in a fixed order.
//
// Thread layout, the same in every kernel: 16 threads (a half-warp, so a row reduction is four
// shuffles) share kOwn consecutive rows of the block the thread block owns (queries in the
// forward and dq, keys in dk/dv); of the block streamed through shared memory each thread takes
// the 16-strided rows tx, tx + 16, ...; of head_dim it accumulates kD/16 columns laid out so a
// half-warp reads consecutive floats. Shared rows carry 4 floats of padding: they stay 16-byte
// aligned for float4 reads, and 16 lanes reading 16 rows at one column hit distinct banks.
// head_dim is zero-padded to kD = 32, 64 or 128: zero columns add nothing to q·k, and padded
// output columns are never written. The tile sizes per kD (Tiles below) keep every kernel under
// the 64 KiB of shared memory a block may opt into on sm_75 (sm_86/89 allow 99 KiB).
// FP32 FMAs throughout (no TF32), so results match the CPU up to summation order.
#include "kernels/cuda/attention.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kLanes = 16;  // threads sharing one owned row
constexpr int kPad = 4;     // floats of padding after every shared-memory row

// ---- tile sizes ---------------------------------------------------------------------------
// Per padded head_dim kD: for each kernel, the rows of the block a thread block owns, the rows
// of the block it streams, and its threads. Shared memory (bytes below) must stay <= 64 KiB:
//   kD    forward           dk/dv             dq
//   32    64x64  35.0 KiB   64x32  44.3 KiB   64x32  35.5 KiB
//   64    64x64  51.0 KiB   32x32  43.3 KiB   64x32  59.5 KiB
//   128   64x32  58.0 KiB   32x16  54.1 KiB   32x16  51.8 KiB
// Each thread owns 4 rows of its block; the forward's larger tiles fit because it streams k and
// v through one buffer, the backward needs q, dout, k, v (and P, dS) all at once.
template <int kD>
struct Tiles;
template <>
struct Tiles<32> {
  static constexpr int kForwardRows = 64, kForwardKeys = 64, kForwardThreads = 256;
  static constexpr int kDkdvKeys = 64, kDkdvRows = 32, kDkdvThreads = 256;
  static constexpr int kDqRows = 64, kDqKeys = 32, kDqThreads = 256;
};
template <>
struct Tiles<64> {
  static constexpr int kForwardRows = 64, kForwardKeys = 64, kForwardThreads = 256;
  static constexpr int kDkdvKeys = 32, kDkdvRows = 32, kDkdvThreads = 128;
  static constexpr int kDqRows = 64, kDqKeys = 32, kDqThreads = 256;
};
template <>
struct Tiles<128> {
  static constexpr int kForwardRows = 64, kForwardKeys = 32, kForwardThreads = 256;
  static constexpr int kDkdvKeys = 32, kDkdvRows = 16, kDkdvThreads = 128;
  static constexpr int kDqRows = 32, kDqKeys = 16, kDqThreads = 128;
};
constexpr int kSmallestOwnedRows = 32;  // min over Tiles of the owned rows: bounds gridDim.y

constexpr size_t forward_shared_bytes(int d, int rows, int keys) {
  return sizeof(float) * size_t((rows + keys) * (d + kPad) + keys * (rows + kPad));
}
constexpr size_t dkdv_shared_bytes(int d, int keys, int rows) {
  return sizeof(float) * size_t(2 * (keys + rows) * (d + kPad) + 2 * rows * (keys + kPad) + 2 * rows);
}
constexpr size_t dq_shared_bytes(int d, int rows, int keys) {
  return sizeof(float) * size_t(2 * (rows + keys) * (d + kPad) + keys * (rows + kPad));
}
constexpr size_t kMaxSharedBytes = 64 * 1024;  // sm_75's opt-in limit per block

// ---- device helpers -----------------------------------------------------------------------

// Where one (batch, head) pair's rows lie in a [batch, seq, heads, head_dim] tensor.
struct HeadLayout {
  int seq, heads, head_dim;
  __device__ int64_t stride() const { return int64_t(heads) * head_dim; }  // between positions
  __device__ int64_t offset(int64_t pair) const {  // of position 0 of pair b·heads + h
    return (pair / heads) * seq * stride() + (pair % heads) * head_dim;
  }
  // head_dim rounded up to a multiple of 4: the columns row_dots runs over.
  __device__ int dot_width() const { return (head_dim + 3) & ~3; }
};

// Key blocks of kKeys that the causal query block [i0, i0 + kRows) sees: up to the block
// holding its last row before seq.
template <int kRows, int kKeys>
__device__ __forceinline__ int visible_key_blocks(int i0, int seq) {
  return (min(i0 + kRows, seq) - 1) / kKeys + 1;
}

// kN consecutive floats of shared memory in one access (16-byte aligned for kN = 4).
template <int kN>
__device__ __forceinline__ void load_run(const float* from, float* to) {
  if constexpr (kN == 4) {
    const float4 x = *reinterpret_cast<const float4*>(from);
    to[0] = x.x, to[1] = x.y, to[2] = x.z, to[3] = x.w;
  } else if constexpr (kN == 2) {
    const float2 x = *reinterpret_cast<const float2*>(from);
    to[0] = x.x, to[1] = x.y;
  } else {
    static_assert(kN == 1, "runs of 1, 2 or 4 floats");
    to[0] = from[0];
  }
}
template <int kN>
__device__ __forceinline__ void store_run(const float* from, float* to) {
  if constexpr (kN == 4) {
    *reinterpret_cast<float4*>(to) = make_float4(from[0], from[1], from[2], from[3]);
  } else if constexpr (kN == 2) {
    *reinterpret_cast<float2*>(to) = make_float2(from[0], from[1]);
  } else {
    static_assert(kN == 1, "runs of 1, 2 or 4 floats");
    to[0] = from[0];
  }
}

// The kD/16 head_dim columns of lane tx: runs of kVec consecutive columns, the 16 lanes' runs
// side by side, so a half-warp reads 16·kVec consecutive floats (two 128-byte wavefronts at most).
template <int kD>
struct LaneColumns {
  static constexpr int kCount = kD / kLanes;
  static constexpr int kVec = kCount < 4 ? kCount : 4;
  static_assert(kD % (kLanes * kVec) == 0, "kD must be 32, 64 or 128");
  __device__ static int column(int tx, int n) {
    return (n / kVec) * kLanes * kVec + tx * kVec + n % kVec;
  }
};

// Rows first .. first + kRows − 1 of one head into tile[kRows][kD + kPad], with zeros for rows
// at or past seq and columns at or past head_dim, so padding adds nothing to any product.
template <int kRows, int kD, int kThreads>
__device__ __forceinline__ void load_rows(float* tile, const float* __restrict__ head,
                                          int64_t stride, int first, const HeadLayout& l) {
  for (int e = threadIdx.x; e < kRows * kD; e += kThreads) {
    const int r = e / kD, d = e % kD, row = first + r;
    tile[r * (kD + kPad) + d] =
        row < l.seq && d < l.head_dim ? __ldg(head + row * stride + d) : 0.0f;
  }
}

// dots[i][j] = a[ty·kOwn + i] · b[tx + 16·j] over the first `width` columns (a multiple of 4,
// at most kD); a and b have rows of kD + kPad floats. The a reads are broadcasts (two rows per
// warp), the b reads 16 rows whose padded stride puts them in distinct banks.
template <int kOwn, int kCols, int kD>
__device__ __forceinline__ void row_dots(const float* a, const float* b, int ty, int tx,
                                         int width, float (&dots)[kOwn][kCols]) {
#pragma unroll
  for (int i = 0; i < kOwn; ++i)
#pragma unroll
    for (int j = 0; j < kCols; ++j) dots[i][j] = 0.0f;
#pragma unroll 2
  for (int d = 0; d < width; d += 4) {
    float x[kOwn][4], y[kCols][4];
#pragma unroll
    for (int i = 0; i < kOwn; ++i) load_run<4>(a + (ty * kOwn + i) * (kD + kPad) + d, x[i]);
#pragma unroll
    for (int j = 0; j < kCols; ++j) load_run<4>(b + (tx + kLanes * j) * (kD + kPad) + d, y[j]);
#pragma unroll
    for (int i = 0; i < kOwn; ++i)
#pragma unroll
      for (int j = 0; j < kCols; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) dots[i][j] = fmaf(x[i][e], y[j][e], dots[i][j]);
  }
}

// acc[i][n] += Σ_c w[c][ty·kOwn + i] · x[c][column n] for c < kCount: w has rows of `w_stride`
// floats (a transposed probability block), x rows of kD + kPad (a q, k, v or dout tile).
template <int kOwn, int kD, int kCount>
__device__ __forceinline__ void accumulate_weighted(const float* w, int w_stride, const float* x,
                                                    int ty, int tx,
                                                    float (&acc)[kOwn][kD / kLanes]) {
  using Cols = LaneColumns<kD>;
#pragma unroll 4
  for (int c = 0; c < kCount; ++c) {
    float weight[kOwn], value[Cols::kCount];
    load_run<kOwn>(w + c * w_stride + ty * kOwn, weight);
#pragma unroll
    for (int g = 0; g < Cols::kCount / Cols::kVec; ++g)
      load_run<Cols::kVec>(x + c * (kD + kPad) + (g * kLanes + tx) * Cols::kVec,
                           value + g * Cols::kVec);
#pragma unroll
    for (int i = 0; i < kOwn; ++i)
#pragma unroll
      for (int n = 0; n < Cols::kCount; ++n) acc[i][n] = fmaf(weight[i], value[n], acc[i][n]);
  }
}

// Max and sum over the 16 lanes sharing a row (xor offsets below 16 stay in the half-warp).
// Every lane of the warp must call them.
__device__ __forceinline__ float half_warp_max(float v) {
  return lanes_reduce<kLanes>(v, MaxOp{});
}
__device__ __forceinline__ float half_warp_sum(float v) {
  return lanes_reduce<kLanes>(v, SumOp{});
}

// Writes acc[i][·]·factor to rows first + ty·kOwn + i (those before seq) of one head.
template <int kOwn, int kD>
__device__ __forceinline__ void store_rows(const float (&acc)[kOwn][kD / kLanes], float factor,
                                           float* __restrict__ head, int64_t stride, int first,
                                           int ty, int tx, const HeadLayout& l) {
  using Cols = LaneColumns<kD>;
#pragma unroll
  for (int i = 0; i < kOwn; ++i) {
    const int row = first + ty * kOwn + i;
    if (row >= l.seq) continue;
#pragma unroll
    for (int n = 0; n < Cols::kCount; ++n) {
      const int col = Cols::column(tx, n);
      if (col < l.head_dim) head[row * stride + col] = acc[i][n] * factor;
    }
  }
}

// The thread layout's requirements on a kernel's tiles: whole half-warps and warps, owned rows
// split evenly in runs of 1, 2 or 4 (one shared access), streamed rows a multiple of 16.
template <int kOwned, int kStreamed, int kThreads>
__host__ __device__ constexpr bool valid_tiles() {
  return kThreads % kWarp == 0 && kOwned % (kThreads / kLanes) == 0 &&
         (kOwned / (kThreads / kLanes) == 1 || kOwned / (kThreads / kLanes) == 2 ||
          kOwned / (kThreads / kLanes) == 4) &&
         kStreamed % kLanes == 0;
}

// ---- kernels ------------------------------------------------------------------------------
// __launch_bounds__(threads, 1): with no minimum-blocks hint, ptxas (CUDA 13) capped some
// instances at 64–96 registers and spilled; with it, every instance gets 120–150 registers and
// no spills (nvcc -Xptxas -v), and shared memory limits blocks per SM before registers do.

// Grid: x = batch·heads pair, y = query block, last first (the last blocks see the most keys).
template <int kD, int kRows, int kKeys, int kThreads>
__global__ void __launch_bounds__(kThreads, 1)
    attention_forward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                             const float* __restrict__ v, float* __restrict__ out,
                             float* __restrict__ lse, HeadLayout l, float scale) {
  static_assert(valid_tiles<kRows, kKeys, kThreads>(), "see valid_tiles");
  constexpr int kOwn = kRows / (kThreads / kLanes);  // query rows per thread
  constexpr int kCols = kKeys / kLanes;             // keys per thread
  using Cols = LaneColumns<kD>;
  extern __shared__ float4 attention_shared[];
  float* q_tile = reinterpret_cast<float*>(attention_shared);  // [kRows][kD + kPad]
  float* kv_tile = q_tile + kRows * (kD + kPad);  // [kKeys][kD + kPad]: the k block, then v's
  float* p_tile = kv_tile + kKeys * (kD + kPad);  // [kKeys][kRows + kPad]: Pᵀ

  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  const int64_t pair = blockIdx.x, head = l.offset(pair), stride = l.stride();
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kRows;
  const int width = l.dot_width();
  load_rows<kRows, kD, kThreads>(q_tile, q + head, stride, i0, l);

  // m: the row maximum so far (-inf before any key); row_sum: this lane's share of Σ exp(S − m).
  float m[kOwn], row_sum[kOwn], o[kOwn][Cols::kCount];
#pragma unroll
  for (int i = 0; i < kOwn; ++i) {
    m[i] = -INFINITY, row_sum[i] = 0.0f;
#pragma unroll
    for (int n = 0; n < Cols::kCount; ++n) o[i][n] = 0.0f;
  }
  // Block 0 comes first and holds key 0, which every row sees, so m is finite from then on and
  // exp(m_old − m_new) is never exp(−inf + inf).
  const int key_blocks = visible_key_blocks<kRows, kKeys>(i0, l.seq);
  for (int kb = 0; kb < key_blocks; ++kb) {
    const int j0 = kb * kKeys;
    __syncthreads();  // the previous block's v and P are read (and q_tile complete)
    load_rows<kKeys, kD, kThreads>(kv_tile, k + head, stride, j0, l);
    __syncthreads();
    float s[kOwn][kCols];
    row_dots<kOwn, kCols, kD>(q_tile, kv_tile, ty, tx, width, s);
#pragma unroll
    for (int i = 0; i < kOwn; ++i) {
      const int row = i0 + ty * kOwn + i;
      float block_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        // Keys past seq are past every row before seq, so the causal test masks them too.
        s[i][j] = j0 + tx + kLanes * j <= row ? s[i][j] * scale : -INFINITY;
        block_max = fmaxf(block_max, s[i][j]);
      }
      const float m_new = fmaxf(m[i], half_warp_max(block_max));
      const float rescale = expf(m[i] - m_new);
      m[i] = m_new;
      row_sum[i] *= rescale;
#pragma unroll
      for (int n = 0; n < Cols::kCount; ++n) o[i][n] *= rescale;
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        s[i][j] = expf(s[i][j] - m_new);  // 0 where masked
        row_sum[i] += s[i][j];
      }
    }
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      float column[kOwn];
#pragma unroll
      for (int i = 0; i < kOwn; ++i) column[i] = s[i][j];
      store_run<kOwn>(column, p_tile + (tx + kLanes * j) * (kRows + kPad) + ty * kOwn);
    }
    __syncthreads();  // k is read and P complete
    load_rows<kKeys, kD, kThreads>(kv_tile, v + head, stride, j0, l);
    __syncthreads();
    accumulate_weighted<kOwn, kD, kKeys>(p_tile, kRows + kPad, kv_tile, ty, tx, o);
  }

#pragma unroll
  for (int i = 0; i < kOwn; ++i) {
    const float total = half_warp_sum(row_sum[i]);  // all lanes: before any branch on row
    const int row = i0 + ty * kOwn + i;
    if (row < l.seq && tx == 0) lse[pair * l.seq + row] = m[i] + logf(total);
    row_sum[i] = total;
  }
#pragma unroll
  for (int i = 0; i < kOwn; ++i) {
    const float inv = 1.0f / row_sum[i];
#pragma unroll
    for (int n = 0; n < Cols::kCount; ++n) o[i][n] *= inv;
  }
  store_rows<kOwn, kD>(o, 1.0f, out + head, stride, i0, ty, tx, l);
}

// delta[pair·seq + i] = dout_i · out_i, one warp per row.
__global__ void attention_delta_kernel(const float* __restrict__ dout,
                                       const float* __restrict__ out, float* __restrict__ delta,
                                       int64_t rows, HeadLayout l) {
  const int lane = threadIdx.x % kWarp, warps = blockDim.x / kWarp;
  for (int64_t r = int64_t(blockIdx.x) * warps + threadIdx.x / kWarp; r < rows;
       r += int64_t(gridDim.x) * warps) {
    const int64_t at = l.offset(r / l.seq) + (r % l.seq) * l.stride();
    float sum = 0.0f;
    for (int d = lane; d < l.head_dim; d += kWarp) sum = fmaf(dout[at + d], out[at + d], sum);
    sum = warp_sum(sum);
    if (lane == 0) delta[r] = sum;
  }
}

// Grid: x = pair, y = key block, first first (the first blocks see the most queries).
template <int kD, int kKeys, int kRows, int kThreads>
__global__ void __launch_bounds__(kThreads, 1) attention_backward_dkdv_kernel(
    const float* __restrict__ dout, const float* __restrict__ q, const float* __restrict__ k,
    const float* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ delta,
    float* __restrict__ dk, float* __restrict__ dv, HeadLayout l, float scale) {
  static_assert(valid_tiles<kKeys, kRows, kThreads>(), "see valid_tiles");
  constexpr int kOwn = kKeys / (kThreads / kLanes);  // keys per thread
  constexpr int kCols = kRows / kLanes;             // query rows per thread
  using Cols = LaneColumns<kD>;
  extern __shared__ float4 attention_shared[];
  float* k_tile = reinterpret_cast<float*>(attention_shared);  // [kKeys][kD + kPad]
  float* v_tile = k_tile + kKeys * (kD + kPad);
  float* q_tile = v_tile + kKeys * (kD + kPad);     // [kRows][kD + kPad]
  float* dout_tile = q_tile + kRows * (kD + kPad);
  float* p_tile = dout_tile + kRows * (kD + kPad);  // [kRows][kKeys + kPad]: P
  float* ds_tile = p_tile + kRows * (kKeys + kPad);  // [kRows][kKeys + kPad]: dS
  float* lse_tile = ds_tile + kRows * (kKeys + kPad);  // [kRows]
  float* delta_tile = lse_tile + kRows;               // [kRows]

  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  const int64_t pair = blockIdx.x, head = l.offset(pair), stride = l.stride();
  const int j0 = blockIdx.y * kKeys;
  const int width = l.dot_width();
  load_rows<kKeys, kD, kThreads>(k_tile, k + head, stride, j0, l);
  load_rows<kKeys, kD, kThreads>(v_tile, v + head, stride, j0, l);

  float dk_acc[kOwn][Cols::kCount], dv_acc[kOwn][Cols::kCount];
#pragma unroll
  for (int i = 0; i < kOwn; ++i)
#pragma unroll
    for (int n = 0; n < Cols::kCount; ++n) dk_acc[i][n] = 0.0f, dv_acc[i][n] = 0.0f;

  // From the query block holding key j0 (rows before it see none of these keys) to the last.
  const int last_block = (l.seq - 1) / kRows;
  for (int qb = j0 / kRows; qb <= last_block; ++qb) {
    const int i0 = qb * kRows;
    __syncthreads();  // the previous query block's tiles are read (and k, v complete)
    load_rows<kRows, kD, kThreads>(q_tile, q + head, stride, i0, l);
    load_rows<kRows, kD, kThreads>(dout_tile, dout + head, stride, i0, l);
    for (int r = threadIdx.x; r < kRows; r += kThreads) {
      const bool valid = i0 + r < l.seq;
      lse_tile[r] = valid ? lse[pair * l.seq + i0 + r] : 0.0f;
      delta_tile[r] = valid ? delta[pair * l.seq + i0 + r] : 0.0f;
    }
    __syncthreads();
    float s[kOwn][kCols], dp[kOwn][kCols];
    row_dots<kOwn, kCols, kD>(k_tile, q_tile, ty, tx, width, s);      // Sᵀ·√D
    row_dots<kOwn, kCols, kD>(v_tile, dout_tile, ty, tx, width, dp);  // dPᵀ
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const int r = tx + kLanes * j, row = i0 + r;
      float p_run[kOwn], ds_run[kOwn];
#pragma unroll
      for (int i = 0; i < kOwn; ++i) {
        // Zero above the diagonal and for padding rows past seq (keys past seq are then past
        // every valid row), so neither reaches dk or dv.
        const bool visible = j0 + ty * kOwn + i <= row && row < l.seq;
        p_run[i] = visible ? expf(s[i][j] * scale - lse_tile[r]) : 0.0f;
        ds_run[i] = p_run[i] * (dp[i][j] - delta_tile[r]);
      }
      store_run<kOwn>(p_run, p_tile + r * (kKeys + kPad) + ty * kOwn);
      store_run<kOwn>(ds_run, ds_tile + r * (kKeys + kPad) + ty * kOwn);
    }
    __syncthreads();
    accumulate_weighted<kOwn, kD, kRows>(p_tile, kKeys + kPad, dout_tile, ty, tx, dv_acc);
    accumulate_weighted<kOwn, kD, kRows>(ds_tile, kKeys + kPad, q_tile, ty, tx, dk_acc);
  }
  store_rows<kOwn, kD>(dk_acc, scale, dk + head, stride, j0, ty, tx, l);
  store_rows<kOwn, kD>(dv_acc, 1.0f, dv + head, stride, j0, ty, tx, l);
}

// Grid: x = pair, y = query block, last first.
template <int kD, int kRows, int kKeys, int kThreads>
__global__ void __launch_bounds__(kThreads, 1) attention_backward_dq_kernel(
    const float* __restrict__ dout, const float* __restrict__ q, const float* __restrict__ k,
    const float* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ delta,
    float* __restrict__ dq, HeadLayout l, float scale) {
  static_assert(valid_tiles<kRows, kKeys, kThreads>(), "see valid_tiles");
  constexpr int kOwn = kRows / (kThreads / kLanes);  // query rows per thread
  constexpr int kCols = kKeys / kLanes;             // keys per thread
  using Cols = LaneColumns<kD>;
  extern __shared__ float4 attention_shared[];
  float* q_tile = reinterpret_cast<float*>(attention_shared);  // [kRows][kD + kPad]
  float* dout_tile = q_tile + kRows * (kD + kPad);
  float* k_tile = dout_tile + kRows * (kD + kPad);  // [kKeys][kD + kPad]
  float* v_tile = k_tile + kKeys * (kD + kPad);
  float* ds_tile = v_tile + kKeys * (kD + kPad);  // [kKeys][kRows + kPad]: dSᵀ

  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  const int64_t pair = blockIdx.x, head = l.offset(pair), stride = l.stride();
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kRows;
  const int width = l.dot_width();
  load_rows<kRows, kD, kThreads>(q_tile, q + head, stride, i0, l);
  load_rows<kRows, kD, kThreads>(dout_tile, dout + head, stride, i0, l);

  float row_lse[kOwn], row_delta[kOwn], dq_acc[kOwn][Cols::kCount];
#pragma unroll
  for (int i = 0; i < kOwn; ++i) {
    const int row = i0 + ty * kOwn + i;
    row_lse[i] = row < l.seq ? lse[pair * l.seq + row] : 0.0f;
    row_delta[i] = row < l.seq ? delta[pair * l.seq + row] : 0.0f;
#pragma unroll
    for (int n = 0; n < Cols::kCount; ++n) dq_acc[i][n] = 0.0f;
  }

  const int key_blocks = visible_key_blocks<kRows, kKeys>(i0, l.seq);
  for (int kb = 0; kb < key_blocks; ++kb) {
    const int j0 = kb * kKeys;
    __syncthreads();  // the previous block's k and dS are read (and q, dout complete)
    load_rows<kKeys, kD, kThreads>(k_tile, k + head, stride, j0, l);
    load_rows<kKeys, kD, kThreads>(v_tile, v + head, stride, j0, l);
    __syncthreads();
    float s[kOwn][kCols], dp[kOwn][kCols];
    row_dots<kOwn, kCols, kD>(q_tile, k_tile, ty, tx, width, s);
    row_dots<kOwn, kCols, kD>(dout_tile, v_tile, ty, tx, width, dp);
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      float ds_run[kOwn];
#pragma unroll
      for (int i = 0; i < kOwn; ++i) {
        const int row = i0 + ty * kOwn + i;
        const bool visible = j0 + tx + kLanes * j <= row && row < l.seq;
        const float p = visible ? expf(s[i][j] * scale - row_lse[i]) : 0.0f;
        ds_run[i] = p * (dp[i][j] - row_delta[i]);
      }
      store_run<kOwn>(ds_run, ds_tile + (tx + kLanes * j) * (kRows + kPad) + ty * kOwn);
    }
    __syncthreads();
    accumulate_weighted<kOwn, kD, kKeys>(ds_tile, kRows + kPad, k_tile, ty, tx, dq_acc);
  }
  store_rows<kOwn, kD>(dq_acc, scale, dq + head, stride, i0, ty, tx, l);
}

// ---- launchers ----------------------------------------------------------------------------

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, int threads, size_t shared_bytes,
            cudaStream_t stream, Args... args) {
  // Above 48 KiB a block's dynamic shared memory must be opted into, per kernel.
  if (shared_bytes > 48 * 1024)
    BALEINE_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared_bytes)));
  kernel<<<grid, threads, shared_bytes, stream>>>(args...);
  BALEINE_CUDA_LAUNCH_CHECK();
}

unsigned blocks_along(int64_t seq, int rows) { return unsigned((seq + rows - 1) / rows); }

template <int kD>
void forward_tiled(const float* q, const float* k, const float* v, float* out, float* lse,
                   int64_t pairs, const HeadLayout& l, float scale, cudaStream_t stream) {
  using T = Tiles<kD>;
  constexpr size_t bytes = forward_shared_bytes(kD, T::kForwardRows, T::kForwardKeys);
  static_assert(bytes <= kMaxSharedBytes, "forward tiles exceed sm_75's shared memory");
  launch(attention_forward_kernel<kD, T::kForwardRows, T::kForwardKeys, T::kForwardThreads>,
         dim3(unsigned(pairs), blocks_along(l.seq, T::kForwardRows)), T::kForwardThreads, bytes,
         stream, q, k, v, out, lse, l, scale);
}

template <int kD>
void backward_tiled(const float* dout, const float* q, const float* k, const float* v,
                    const float* lse, const float* delta, float* dq, float* dk, float* dv,
                    int64_t pairs, const HeadLayout& l, float scale, cudaStream_t stream) {
  using T = Tiles<kD>;
  constexpr size_t dkdv_bytes = dkdv_shared_bytes(kD, T::kDkdvKeys, T::kDkdvRows);
  constexpr size_t dq_bytes = dq_shared_bytes(kD, T::kDqRows, T::kDqKeys);
  static_assert(dkdv_bytes <= kMaxSharedBytes && dq_bytes <= kMaxSharedBytes,
                "backward tiles exceed sm_75's shared memory");
  launch(attention_backward_dkdv_kernel<kD, T::kDkdvKeys, T::kDkdvRows, T::kDkdvThreads>,
         dim3(unsigned(pairs), blocks_along(l.seq, T::kDkdvKeys)), T::kDkdvThreads, dkdv_bytes,
         stream, dout, q, k, v, lse, delta, dk, dv, l, scale);
  launch(attention_backward_dq_kernel<kD, T::kDqRows, T::kDqKeys, T::kDqThreads>,
         dim3(unsigned(pairs), blocks_along(l.seq, T::kDqRows)), T::kDqThreads, dq_bytes, stream,
         dout, q, k, v, lse, delta, dq, l, scale);
}

// The checked shape as the kernels take it (int fields: grid and index arithmetic), or
// std::invalid_argument naming the limit.
HeadLayout checked_layout(const char* op, int64_t batch, int64_t seq, int64_t heads,
                          int64_t head_dim) {
  const std::string where = std::string("baleine::kernels::cuda::") + op + ": ";
  if (head_dim < 1 || head_dim > kAttentionMaxHeadDim)
    throw std::invalid_argument(where + "head_dim " + std::to_string(head_dim) +
                                " is not supported: the CUDA attention kernels take 1 to " +
                                std::to_string(kAttentionMaxHeadDim) +
                                " (kAttentionMaxHeadDim). HINT: more heads of fewer dimensions");
  // gridDim.y holds the blocks along seq (at most 65535); gridDim.x the batch·heads pairs.
  if (seq > int64_t(65535) * kSmallestOwnedRows || batch * heads > INT_MAX ||
      heads * head_dim > INT_MAX)
    throw std::invalid_argument(where + "shape batch " + std::to_string(batch) + ", seq " +
                                std::to_string(seq) + ", heads " + std::to_string(heads) +
                                " exceeds the launch grid (seq <= " +
                                std::to_string(int64_t(65535) * kSmallestOwnedRows) +
                                ", batch·heads <= 2^31 − 1)");
  return HeadLayout{int(seq), int(heads), int(head_dim)};
}

// The kernel instance for head_dim: the smallest of 32, 64, 128 that holds it.
int padded_head_dim(int head_dim) { return head_dim <= 32 ? 32 : head_dim <= 64 ? 64 : 128; }

// Same as the CPU kernel's scale: 1/√D in double, rounded once.
float score_scale(int64_t head_dim) { return float(1.0 / std::sqrt(double(head_dim))); }

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                       int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                       cudaStream_t stream) {
  NvtxRange range("attention_forward");
  if (batch <= 0 || seq <= 0 || heads <= 0) return;
  const HeadLayout l = checked_layout("attention_forward", batch, seq, heads, head_dim);
  const int64_t pairs = batch * heads;
  const float scale = score_scale(head_dim);
  switch (padded_head_dim(l.head_dim)) {
    case 32: return forward_tiled<32>(q, k, v, out, lse, pairs, l, scale, stream);
    case 64: return forward_tiled<64>(q, k, v, out, lse, pairs, l, scale, stream);
    default: return forward_tiled<128>(q, k, v, out, lse, pairs, l, scale, stream);
  }
}

int64_t attention_backward_workspace_floats(int64_t batch, int64_t seq, int64_t heads) {
  return std::max<int64_t>(0, batch) * std::max<int64_t>(0, seq) * std::max<int64_t>(0, heads);
}

void attention_backward(const float* dout, const float* q, const float* k, const float* v,
                        const float* out, const float* lse, float* dq, float* dk, float* dv,
                        int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                        float* workspace, cudaStream_t stream) {
  NvtxRange range("attention_backward");
  if (batch <= 0 || seq <= 0 || heads <= 0) return;
  const HeadLayout l = checked_layout("attention_backward", batch, seq, heads, head_dim);
  const int64_t pairs = batch * heads, rows = pairs * seq;
  const float scale = score_scale(head_dim);

  float* delta = workspace;  // [batch, heads, seq], like lse
  constexpr int kDeltaThreads = 256;
  attention_delta_kernel<<<blocks_for(rows, kDeltaThreads / kWarp), kDeltaThreads, 0, stream>>>(
      dout, out, delta, rows, l);
  BALEINE_CUDA_LAUNCH_CHECK();

  switch (padded_head_dim(l.head_dim)) {
    case 32:
      return backward_tiled<32>(dout, q, k, v, lse, delta, dq, dk, dv, pairs, l, scale, stream);
    case 64:
      return backward_tiled<64>(dout, q, k, v, lse, delta, dq, dk, dv, pairs, l, scale, stream);
    default:
      return backward_tiled<128>(dout, q, k, v, lse, delta, dq, dk, dv, pairs, l, scale, stream);
  }
}

}  // namespace baleine::kernels::cuda
