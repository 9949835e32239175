#include "trainer/model/linear_cpu.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/fp8_gemm.h"
#include "kernels/gemm.h"
#include "kernels/swiglu.h"

namespace baleine::model::cpu {

namespace k = baleine::kernels;

namespace {

// Promotion into FP32 at every K tile, whatever the tile (V3 §3.3.2: every 128 products).
k::Fp8Accumulation promote_every_tile(const LinearFormat& f) {
  k::Fp8Accumulation a;
  a.promote_every = f.tile;
  return a;
}

k::Fp8ScaleOptions scale_options(k::Fp8Format format, bool power_of_two) {
  k::Fp8ScaleOptions o;
  o.format = format;
  o.power_of_two = power_of_two;
  return o;
}

// Operand copies, reused across calls (the trainer calls Linears from one thread; the GEMMs
// parallelise inside).
template <typename T>
struct Scratch {
  std::vector<T> a, b;
  k::Fp8Matrix qa, qb;
};

template <typename T>
Scratch<T>& scratch() {
  thread_local Scratch<T> s;
  return s;
}

template <typename T>
const T* bf16_rounded(const T* x, int64_t n, std::vector<T>& out) {
  out.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(k::bf16_round(static_cast<float>(x[i])));
  return out.data();
}

template <typename T>
const T* bf16_decoded(const uint16_t* x, int64_t n, std::vector<T>& out) {
  out.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(k::bf16_decode(x[i]));
  return out.data();
}

}  // namespace

template <typename T>
void store_linear_input(LinearInput<T>& in, int64_t first, const T* x, int64_t count,
                        const LinearFormat& f) {
  if (count == 0) return;
  const int64_t cols = in.cols;
  const int64_t n = count * cols;
  switch (in.precision) {
    case LinearPrecision::kFp32: std::copy(x, x + n, in.values.data() + first * cols); break;
    case LinearPrecision::kBf16:
      for (int64_t i = 0; i < n; ++i) {
        in.bf16[first * cols + i] = k::bf16_encode(static_cast<float>(x[i]));
      }
      break;
    case LinearPrecision::kFp8: {
      const auto options = scale_options(f.forward_format, f.power_of_two);
      if (first == 0 && count == in.rows) {
        k::fp8_quantize(x, count, cols, {1, f.tile}, options, &in.fp8);
        break;
      }
      k::Fp8Matrix& part = scratch<T>().qa;
      k::fp8_quantize(x, count, cols, {1, f.tile}, options, &part);
      std::memcpy(in.fp8.codes.data() + first * cols, part.codes.data(), part.codes.size());
      std::memcpy(in.fp8.scales.data() + first * part.view().tile_cols(), part.scales.data(),
                  part.scales.size() * sizeof(float));
      break;
    }
  }
}

template <typename T>
void linear_fprop(const LinearFormat& f, const LinearInputView<T>& x, const T* w, T* y,
                  int64_t M, int64_t K, int64_t N) {
  if (M == 0) return;
  Scratch<T>& s = scratch<T>();
  switch (f.precision) {
    case LinearPrecision::kFp32: k::linear_forward(x.values, w, y, M, K, N); return;
    case LinearPrecision::kBf16:
      k::linear_forward(bf16_decoded(x.bf16, M * K, s.a), bf16_rounded(w, N * K, s.b), y, M, K,
                        N);
      return;
    case LinearPrecision::kFp8:
      k::fp8_quantize(w, N, K, {f.tile, f.tile}, scale_options(f.forward_format, f.power_of_two),
                      &s.qb);
      k::fp8_gemm_tn(x.fp8, s.qb.view(), y, false, promote_every_tile(f));
      return;
  }
}

template <typename T>
void linear_dgrad(const LinearFormat& f, const T* dy, const T* w, T* dx, int64_t M, int64_t K,
                  int64_t N, bool accumulate) {
  if (M == 0) return;
  Scratch<T>& s = scratch<T>();
  const T beta = accumulate ? T(1) : T(0);
  switch (f.precision) {
    case LinearPrecision::kFp32:
      k::gemm<T>(false, false, M, K, N, T(1), dy, N, w, K, beta, dx, K);
      return;
    case LinearPrecision::kBf16:
      k::gemm<T>(false, false, M, K, N, T(1), bf16_rounded(dy, M * N, s.a), N,
                 bf16_rounded(w, N * K, s.b), K, beta, dx, K);
      return;
    case LinearPrecision::kFp8:
      k::fp8_quantize(dy, M, N, {1, f.tile}, scale_options(f.gradient_format, f.power_of_two),
                      &s.qa);
      // Wᵀ [K, N] in the same tile×tile blocks (a block's amax does not care about transposes).
      k::fp8_quantize_transposed(w, N, K, {f.tile, f.tile},
                                 scale_options(f.forward_format, f.power_of_two), &s.qb);
      k::fp8_gemm_tn(s.qa.view(), s.qb.view(), dx, accumulate, promote_every_tile(f));
      return;
  }
}

template <typename T>
void linear_wgrad(const LinearFormat& f, const T* dy, const LinearInputView<T>& x, T* dw,
                  int64_t M, int64_t K, int64_t N) {
  if (M == 0) return;
  Scratch<T>& s = scratch<T>();
  switch (f.precision) {
    case LinearPrecision::kFp32: k::linear_backward_weight(dy, x.values, dw, M, K, N); return;
    case LinearPrecision::kBf16:
      k::linear_backward_weight(bf16_rounded(dy, M * N, s.a), bf16_decoded(x.bf16, M * K, s.b),
                                dw, M, K, N);
      return;
    case LinearPrecision::kFp8: {
      // Both operands along the tokens: dyᵀ [N, M] and xᵀ [K, M] in 1×tile tiles of M, i.e.
      // tile×1 tiles of dy and x.
      k::fp8_quantize_transposed(dy, M, N, {f.tile, 1},
                                 scale_options(f.gradient_format, f.power_of_two), &s.qa);
      s.a.resize(static_cast<size_t>(M * K));
      k::fp8_dequantize(x.fp8, s.a.data());
      k::fp8_quantize_transposed(s.a.data(), M, K, {f.tile, 1},
                                 scale_options(f.forward_format, f.power_of_two), &s.qb);
      k::fp8_gemm_tn(s.qa.view(), s.qb.view(), dw, true, promote_every_tile(f));
      return;
    }
  }
}

template <typename T>
void swiglu_into_linear_input(const T* a, const T* b, LinearInput<T>& h, int64_t first,
                              int64_t rows, const LinearFormat& f) {
  const int64_t width = h.cols;
  // h goes straight into the FP32 cache, or through a scratch row block into the BF16/FP8 one.
  if (h.precision == LinearPrecision::kFp32) {
    k::swiglu_forward(a, b, h.values.data() + first * width, rows * width);
    return;
  }
  thread_local std::vector<T> h_scratch;
  h_scratch.resize(static_cast<size_t>(rows * width));
  k::swiglu_forward(a, b, h_scratch.data(), rows * width);
  store_linear_input(h, first, h_scratch.data(), rows, f);
}

#define BALEINE_INSTANTIATE(T)                                                                  \
  template void store_linear_input<T>(LinearInput<T>&, int64_t, const T*, int64_t,            \
                                      const LinearFormat&);                                     \
  template void linear_fprop<T>(const LinearFormat&, const LinearInputView<T>&, const T*, T*,  \
                                int64_t, int64_t, int64_t);                                     \
  template void linear_dgrad<T>(const LinearFormat&, const T*, const T*, T*, int64_t, int64_t, \
                                int64_t, bool);                                                 \
  template void linear_wgrad<T>(const LinearFormat&, const T*, const LinearInputView<T>&, T*,  \
                                int64_t, int64_t, int64_t);                                     \
  template void swiglu_into_linear_input<T>(const T*, const T*, LinearInput<T>&, int64_t,      \
                                            int64_t, const LinearFormat&);
BALEINE_INSTANTIATE(float)
BALEINE_INSTANTIATE(double)
#undef BALEINE_INSTANTIATE

}  // namespace baleine::model::cpu
