#include "trainer/model/linear.h"

#include <algorithm>

#include "kernels/fp8.h"
#include "trainer/model/backend.h"

namespace baleine::model {

namespace k = baleine::kernels;


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
  ops<T>().store_linear_input(*this, first, x, count, f);
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
  ops<T>().linear_fprop(f, x, w, y, M, K, N);
}

template <typename T>
void linear_dgrad(const LinearFormat& f, const T* dy, const T* w, T* dx, int64_t M, int64_t K,
                  int64_t N, bool accumulate) {
  ops<T>().linear_dgrad(f, dy, w, dx, M, K, N, accumulate);
}

template <typename T>
void linear_wgrad(const LinearFormat& f, const T* dy, const LinearInputView<T>& x, T* dw,
                  int64_t M, int64_t K, int64_t N) {
  ops<T>().linear_wgrad(f, dy, x, dw, M, K, N);
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
