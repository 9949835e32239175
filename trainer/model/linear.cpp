#include "trainer/model/linear.h"

#include <algorithm>
#include <cstring>

#include "kernels/fp8_gemm.h"
#include "kernels/gemm.h"

namespace baleine::model {

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

std::string describe(const LinearFormat& f) {
  switch (f.precision) {
    case LinearPrecision::kFp32: return "fp32";
    case LinearPrecision::kBf16: return "bf16";
    case LinearPrecision::kFp8: break;
  }
  std::string formats = k::fp8_format_name(f.forward_format);
  if (f.gradient_format != f.forward_format) {
    formats += "/" + std::string(k::fp8_format_name(f.gradient_format));
  }
  const std::string t = std::to_string(f.tile);
  return "fp8 " + formats + " (x,dy 1x" + t + ", W " + t + "x" + t + ", Wgrad " + t + "x1" +
         (f.power_of_two ? ", power-of-two scales" : "") + ")";
}

LinearFormat PrecisionPlan::for_block(int64_t block) const {
  const bool kept = std::find(high_precision_blocks.begin(), high_precision_blocks.end(),
                              block) != high_precision_blocks.end();
  return kept ? high_precision : compute;
}

PrecisionPlan plan_precision(const config::PrecisionSection& p) {
  PrecisionPlan plan;
  if (p.compute == "fp32") return plan;
  plan.high_precision.precision = LinearPrecision::kBf16;
  plan.compute.precision = LinearPrecision::kBf16;
  if (p.compute == "fp8") {
    LinearFormat& f = plan.compute;
    f.precision = LinearPrecision::kFp8;
    f.forward_format = p.fp8.format == "e5m2" ? k::Fp8Format::kE5M2 : k::Fp8Format::kE4M3;
    f.gradient_format = p.fp8.format == "e4m3" ? k::Fp8Format::kE4M3 : k::Fp8Format::kE5M2;
    f.tile = p.fp8.tile;
    f.power_of_two = p.fp8.power_of_two_scales;
    plan.high_precision_blocks = p.fp8.high_precision_blocks;
  }
  return plan;
}

template <typename T>
LinearInputView<T> LinearInputView<T>::row_slice(int64_t first, int64_t count) const {
  LinearInputView<T> v = *this;
  v.rows = count;
  switch (precision) {
    case LinearPrecision::kFp32: v.values = values + first * cols; break;
    case LinearPrecision::kBf16: v.bf16 = bf16 + first * cols; break;
    case LinearPrecision::kFp8: v.fp8 = fp8.row_slice(first, count); break;
  }
  return v;
}

template <typename T>
void LinearInput<T>::allocate(int64_t r, int64_t c, const LinearFormat& f) {
  precision = f.precision;
  rows = r;
  cols = c;
  const size_t n = static_cast<size_t>(r * c);
  switch (precision) {
    case LinearPrecision::kFp32: values.resize(n); break;
    case LinearPrecision::kBf16: bf16.resize(n); break;
    case LinearPrecision::kFp8:
      fp8.rows = r;
      fp8.cols = c;
      fp8.tile = {1, f.tile};
      fp8.format = f.forward_format;
      fp8.codes.resize(n);
      fp8.scales.resize(static_cast<size_t>(r * ((c + f.tile - 1) / f.tile)));
      break;
  }
}

template <typename T>
void LinearInput<T>::store_rows(int64_t first, const T* x, int64_t count, const LinearFormat& f) {
  if (count == 0) return;
  const int64_t n = count * cols;
  switch (precision) {
    case LinearPrecision::kFp32: std::copy(x, x + n, values.data() + first * cols); break;
    case LinearPrecision::kBf16:
      for (int64_t i = 0; i < n; ++i) bf16[first * cols + i] = k::bf16_encode(static_cast<float>(x[i]));
      break;
    case LinearPrecision::kFp8: {
      const auto options = scale_options(f.forward_format, f.power_of_two);
      if (first == 0 && count == rows) {
        k::fp8_quantize(x, count, cols, {1, f.tile}, options, &fp8);
        break;
      }
      k::Fp8Matrix& part = scratch<T>().qa;
      k::fp8_quantize(x, count, cols, {1, f.tile}, options, &part);
      std::memcpy(fp8.codes.data() + first * cols, part.codes.data(), part.codes.size());
      std::memcpy(fp8.scales.data() + first * part.view().tile_cols(), part.scales.data(),
                  part.scales.size() * sizeof(float));
      break;
    }
  }
}

template <typename T>
LinearInputView<T> LinearInput<T>::view() const {
  LinearInputView<T> v;
  v.precision = precision;
  v.rows = rows;
  v.cols = cols;
  v.values = values.data();
  v.bf16 = bf16.data();
  if (precision == LinearPrecision::kFp8) v.fp8 = fp8.view();
  return v;
}

template <typename T>
int64_t LinearInput<T>::bytes() const {
  switch (precision) {
    case LinearPrecision::kFp32: return rows * cols * static_cast<int64_t>(sizeof(T));
    case LinearPrecision::kBf16: return rows * cols * 2;
    case LinearPrecision::kFp8: return fp8.bytes();
  }
  return 0;
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

#define BALEINE_INSTANTIATE(T)                                                                  \
  template struct LinearInputView<T>;                                                           \
  template struct LinearInput<T>;                                                               \
  template void linear_fprop<T>(const LinearFormat&, const LinearInputView<T>&, const T*, T*,  \
                                int64_t, int64_t, int64_t);                                     \
  template void linear_dgrad<T>(const LinearFormat&, const T*, const T*, T*, int64_t, int64_t, \
                                int64_t, bool);                                                 \
  template void linear_wgrad<T>(const LinearFormat&, const T*, const LinearInputView<T>&, T*,  \
                                int64_t, int64_t, int64_t);
BALEINE_INSTANTIATE(float)
BALEINE_INSTANTIATE(double)
#undef BALEINE_INSTANTIATE

}  // namespace baleine::model
