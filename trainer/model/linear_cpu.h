#pragma once
// The CPU backend's Linears (model/linear.h): FP32 through kernels/gemm.h, BF16 by rounding the
// operands and multiplying in T, FP8 through the exact emulation of kernels/fp8_gemm.h.
#include <cstdint>

#include "trainer/model/linear.h"

namespace baleine::model::cpu {

template <typename T>
void store_linear_input(LinearInput<T>& in, int64_t first, const T* x, int64_t count,
                        const LinearFormat& f);
template <typename T>
void linear_fprop(const LinearFormat& f, const LinearInputView<T>& x, const T* w, T* y,
                  int64_t M, int64_t K, int64_t N);
template <typename T>
void linear_dgrad(const LinearFormat& f, const T* dy, const T* w, T* dx, int64_t M, int64_t K,
                  int64_t N, bool accumulate);
template <typename T>
void linear_wgrad(const LinearFormat& f, const T* dy, const LinearInputView<T>& x, T* dw,
                  int64_t M, int64_t K, int64_t N);
// h = silu(a) ⊙ b into rows [first, first + rows) of h.
template <typename T>
void swiglu_into_linear_input(const T* a, const T* b, LinearInput<T>& h, int64_t first,
                              int64_t rows, const LinearFormat& f);

}  // namespace baleine::model::cpu
