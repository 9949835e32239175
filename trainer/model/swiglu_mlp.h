#pragma once
// SwiGLU MLP: y = (silu(x·W1ᵀ) ⊙ x·W3ᵀ)·W2ᵀ. Used for the dense FFN blocks, for the MoE
// layer's shared experts (one MLP of width shared_experts × moe.intermediate) and, through the
// free functions, for every routed expert on its slice of the permuted tokens.
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model/parameters.h"
#include "trainer/model/weight_grad_queue.h"

namespace baleine::model {

// What one MLP application to `rows` rows of width `width` keeps for its backward.
template <typename T>
struct MlpActivations {
  std::vector<T> a, b, h;  // x·W1ᵀ, x·W3ᵀ, silu(a) ⊙ b
  void resize(int64_t rows, int64_t width);
};

// Backward temporaries: gradients of a, b and h.
template <typename T>
struct MlpGradients {
  std::vector<T> da, db, dh;
  void resize(int64_t rows, int64_t width);
};

// y = MLP(x) over `rows` rows; a, b, h are saved for the backward.
template <typename T>
void swiglu_mlp_forward(const T* x, T* y, int64_t rows, int64_t dim, int64_t width, const T* w1,
                        const T* w3, const T* w2, T* a, T* b, T* h);
// B: dx (overwritten), and da, db for the weight gradients; dh is scratch.
template <typename T>
void swiglu_mlp_backward_input(const T* dy, T* dx, int64_t rows, int64_t dim, int64_t width,
                               const T* w1, const T* w3, const T* w2, const T* a, const T* b,
                               T* da, T* db, T* dh);
// W: dw1 += daᵀ·x, dw3 += dbᵀ·x, dw2 += dyᵀ·h.
template <typename T>
void swiglu_mlp_backward_weight(const T* dy, const T* x, int64_t rows, int64_t dim,
                                int64_t width, const T* h, const T* da, const T* db, T* dw1,
                                T* dw3, T* dw2);

template <typename T>
class SwiGluMlp {
 public:
  using Saved = MlpActivations<T>;

  SwiGluMlp(ParameterStore<T>& store, const std::string& prefix, int64_t dim, int64_t width,
            double init_std, double out_std);
  void forward(const T* x, T* y, int64_t rows);
  // dx overwritten; weight gradients accumulated or queued (x must then outlive the queue).
  void backward(const T* dy, const T* x, T* dx, int64_t rows,
                WeightGradQueue<T>* weight_grads = nullptr);
  void swap_saved(Saved& other) { std::swap(saved_, other); }
  int64_t width() const { return width_; }

 private:
  ParameterStore<T>& store_;
  int64_t dim_, width_;
  typename ParameterStore<T>::Handle w1_, w3_, w2_;
  Saved saved_;
  MlpGradients<T> grads_;
};

}  // namespace baleine::model
