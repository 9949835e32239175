#pragma once
// SwiGLU MLP: y = (silu(x·W1ᵀ) ⊙ x·W3ᵀ)·W2ᵀ. Used for the dense FFN blocks, for the MoE
// layer's shared experts (one MLP of width shared_experts × moe.intermediate) and, through the
// free functions, for every routed expert on its slice of the permuted tokens.
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model/parameters.h"

namespace baleine::model {

// Scratch of one MLP application to `rows` rows of width `width`.
template <typename T>
struct MlpScratch {
  std::vector<T> a, b, h;        // saved for the backward
  std::vector<T> da, db, dh;     // backward temporaries
  void resize(int64_t rows, int64_t width);
};

// Runs the MLP on rows [row_begin, row_end) of x/y; a, b, h (in scratch) use the same rows.
template <typename T>
void swiglu_mlp_forward(const T* x, T* y, int64_t rows, int64_t dim, int64_t width, const T* w1,
                        const T* w3, const T* w2, T* a, T* b, T* h);
// dx (overwritten) and dw1, dw3, dw2 (accumulated).
template <typename T>
void swiglu_mlp_backward(const T* dy, const T* x, T* dx, int64_t rows, int64_t dim,
                         int64_t width, const T* w1, const T* w3, const T* w2, const T* a,
                         const T* b, const T* h, T* dw1, T* dw3, T* dw2, T* da, T* db, T* dh);

template <typename T>
class SwiGluMlp {
 public:
  SwiGluMlp(ParameterStore<T>& store, const std::string& prefix, int64_t dim, int64_t width,
            double init_std, double out_std);
  void forward(const T* x, T* y, int64_t rows);
  void backward(const T* dy, const T* x, T* dx, int64_t rows);
  int64_t width() const { return width_; }

 private:
  ParameterStore<T>& store_;
  int64_t dim_, width_;
  typename ParameterStore<T>::Handle w1_, w3_, w2_;
  MlpScratch<T> scratch_;
};

}  // namespace baleine::model
