#pragma once
// SwiGLU gate (Shazeer 2020): h = silu(a) · b, elementwise, silu(a) = a · sigmoid(a).
// In an MLP, a = x·W1ᵀ (gate), b = x·W3ᵀ (up), out = h·W2ᵀ (down).
#include <cstdint>

namespace baleine::kernels {

template <typename T>
void swiglu_forward(const T* a, const T* b, T* h, int64_t n);
// da, db overwritten (either may alias dh).
template <typename T>
void swiglu_backward(const T* dh, const T* a, const T* b, T* da, T* db, int64_t n);

}  // namespace baleine::kernels
