#pragma once
// Pointer alignment, asked by the CUDA ops before they pick a vectorized (float4) path or tell
// cuBLASLt how aligned its operands are. Plain host code: usable from .cu and .cpp alike.
#include <cstdint>

namespace baleine::kernels::cuda {

// Whether p is a multiple of `bytes` (a power of two).
inline bool is_aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// The largest power of two (≤ 256, cuBLASLt's default assumption) dividing the address, and the
// batch stride in bytes when the matrices of a strided batch start at p + i·stride. A submatrix
// or an expert's rows start less aligned than an allocation; cuBLASLt must be told.
inline uint32_t alignment_of(const void* p, int64_t stride_bytes = 0) {
  const auto address = reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(stride_bytes);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

}  // namespace baleine::kernels::cuda
