// Rotary position embedding (kernels/cuda/rope.h), the rotation of kernels/cpu/rope.cpp:
//   out[2i] = c·x[2i] − s·x[2i+1],  out[2i+1] = s·x[2i] + c·x[2i+1]
// with (c, s) the table's cos/sin of the pair's angle, s negated for the backward.
//
// One block per (batch, position) row, a thread per pair of the row's heads: the row's angles
// (head_dim/2 float2) are shared by all its heads and stay in L1. Each thread reads its pair
// before writing it, so in-place calls are safe. Pairs move as one float2 when both pointers
// are 8-byte aligned (an even element offset always is, head_dim being even).
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"
#include "kernels/cuda/rope.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;

void require_even_head_dim(const char* op, int64_t head_dim) {
  if (head_dim < 0 || head_dim % 2 != 0)
    throw std::invalid_argument(std::string(op) + ": head_dim must be even and non-negative, got " +
                                std::to_string(head_dim));
}

// The CPU's angle, term for term: inv_freq = theta^(−2i/head_dim) and angle = p · inv_freq in
// double, cos and sin rounded to float once.
__global__ void build_table_kernel(float2* table, int64_t seq, int64_t half, int64_t head_dim,
                                   float theta) {
  const int64_t entries = seq * half;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < entries;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = e / half, i = e % half;
    const double inv_freq = pow(double(theta), -2.0 * double(i) / double(head_dim));
    const double angle = double(p) * inv_freq;
    double s, c;
    sincos(angle, &s, &c);
    table[e] = make_float2(static_cast<float>(c), static_cast<float>(s));
  }
}

// kPairs: move each pair as one float2 (both pointers 8-byte aligned).
// sign = +1 rotates forward, −1 back.
template <bool kPairs>
__global__ void rotate_pairs_kernel(const float* in, float* out, const float2* table,
                                    int64_t rows, int64_t seq, int pairs_per_row, int half,
                                    float sign) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float2* angles = table + (row % seq) * half;
    const int64_t base = row * 2 * int64_t(pairs_per_row);
    for (int k = threadIdx.x; k < pairs_per_row; k += blockDim.x) {
      const float2 cos_sin = angles[k % half];
      const int64_t at = base + 2 * int64_t(k);
      float x0, x1;
      if (kPairs) {
        const float2 v = *reinterpret_cast<const float2*>(in + at);
        x0 = v.x;
        x1 = v.y;
      } else {
        x0 = in[at];
        x1 = in[at + 1];
      }
      const float c = cos_sin.x, sn = sign * cos_sin.y;
      const float y0 = c * x0 - sn * x1, y1 = sn * x0 + c * x1;
      if (kPairs) {
        *reinterpret_cast<float2*>(out + at) = make_float2(y0, y1);
      } else {
        out[at] = y0;
        out[at + 1] = y1;
      }
    }
  }
}

void rotate(const char* op, const float* in, float* out, const float* table, int64_t batch,
            int64_t seq, int64_t heads, int64_t head_dim, float sign, cudaStream_t stream) {
  require_even_head_dim(op, head_dim);
  if (batch <= 0 || seq <= 0 || heads <= 0 || head_dim <= 0) return;
  if (!is_aligned(table, 8))
    throw std::invalid_argument(std::string(op) + ": the angle table must be 8-byte aligned");
  const int64_t half = head_dim / 2, pairs_per_row = heads * half;
  if (pairs_per_row > INT_MAX)
    throw std::invalid_argument(std::string(op) + ": heads · head_dim / 2 exceeds INT_MAX");
  const int64_t rows = batch * seq;
  const int64_t warps = (pairs_per_row + kWarp - 1) / kWarp;
  const int64_t max_warps = kThreads / kWarp;
  const int threads = static_cast<int>(kWarp * (warps < max_warps ? warps : max_warps));
  const auto* angles = reinterpret_cast<const float2*>(table);
  if (is_aligned(in, 8) && is_aligned(out, 8)) {
    rotate_pairs_kernel<true><<<blocks_for(rows, 1), threads, 0, stream>>>(
        in, out, angles, rows, seq, static_cast<int>(pairs_per_row), static_cast<int>(half),
        sign);
  } else {
    rotate_pairs_kernel<false><<<blocks_for(rows, 1), threads, 0, stream>>>(
        in, out, angles, rows, seq, static_cast<int>(pairs_per_row), static_cast<int>(half),
        sign);
  }
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace

int64_t rope_table_floats(int64_t seq, int64_t head_dim) {
  require_even_head_dim("rope_table_floats", head_dim);
  return seq > 0 ? seq * head_dim : 0;
}

void rope_build_table(float* table, int64_t seq, int64_t head_dim, float theta,
                      cudaStream_t stream) {
  NvtxRange range("rope_build_table");
  require_even_head_dim("rope_build_table", head_dim);
  if (seq <= 0 || head_dim <= 0) return;
  if (!is_aligned(table, 8))
    throw std::invalid_argument("rope_build_table: the angle table must be 8-byte aligned");
  const int64_t half = head_dim / 2;
  build_table_kernel<<<blocks_for(seq * half, kThreads), kThreads, 0, stream>>>(
      reinterpret_cast<float2*>(table), seq, half, head_dim, theta);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void rope_forward(const float* x, float* y, const float* table, int64_t batch, int64_t seq,
                  int64_t heads, int64_t head_dim, cudaStream_t stream) {
  NvtxRange range("rope_forward");
  rotate("rope_forward", x, y, table, batch, seq, heads, head_dim, 1.0f, stream);
}

void rope_backward(const float* dy, float* dx, const float* table, int64_t batch, int64_t seq,
                   int64_t heads, int64_t head_dim, cudaStream_t stream) {
  NvtxRange range("rope_backward");
  rotate("rope_backward", dy, dx, table, batch, seq, heads, head_dim, -1.0f, stream);
}

}  // namespace baleine::kernels::cuda
