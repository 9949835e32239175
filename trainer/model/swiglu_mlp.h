#pragma once
// SwiGLU MLP: y = (silu(x·W1ᵀ) ⊙ x·W3ᵀ)·W2ᵀ. Used for the dense FFN blocks, for the MoE
// layer's shared experts (one MLP of width shared_experts × moe.intermediate) and, through the
// free functions, for every routed expert on its slice of the permuted tokens. The three
// Linears run in one LinearFormat (linear.h); their inputs are saved in it.
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model/activation_bytes.h"
#include "trainer/model/linear.h"
#include "trainer/model/parameters.h"
#include "trainer/model/weight_grad_queue.h"

namespace baleine::model {

// What MLP applications over `rows` rows of width `width` keep for their backward.
template <typename T>
struct MlpActivations {
  Array<T> a, b;  // x·W1ᵀ, x·W3ᵀ (the SwiGLU backward reads them)
  LinearInput<T> h;     // silu(a) ⊙ b: W2's input, in the Linears' format
  void resize(int64_t rows, int64_t width, const LinearFormat& format);
  void add_bytes(ActivationBytes& bytes) const {
    bytes.linear_inputs += h.bytes();
    bytes.other += vector_bytes(a) + vector_bytes(b);
  }
};

// Backward temporaries: gradients of a, b and h.
template <typename T>
struct MlpGradients {
  Array<T> da, db, dh;
  void resize(int64_t rows, int64_t width);
};

template <typename T>
struct MlpWeights {
  const T *w1, *w3, *w2;
};

// y = MLP(x) over `rows` rows (x: the input rows in format f, already stored); fills rows
// [first, first + rows) of acts.
template <typename T>
void swiglu_mlp_forward(const LinearFormat& f, const LinearInputView<T>& x, T* y, int64_t rows,
                        int64_t dim, int64_t width, const MlpWeights<T>& w,
                        MlpActivations<T>& acts, int64_t first);
// B: dx (overwritten), and da, db for the weight gradients; dh is scratch. a, b, da, db, dh
// point at the rows' own slice.
template <typename T>
void swiglu_mlp_backward_input(const LinearFormat& f, const T* dy, T* dx, int64_t rows,
                               int64_t dim, int64_t width, const MlpWeights<T>& w, const T* a,
                               const T* b, T* da, T* db, T* dh);
// W: dw1 += daᵀ·x, dw3 += dbᵀ·x, dw2 += dyᵀ·h (x, h: the rows' slices).
template <typename T>
void swiglu_mlp_backward_weight(const LinearFormat& f, const T* dy, const LinearInputView<T>& x,
                                int64_t rows, int64_t dim, int64_t width,
                                const LinearInputView<T>& h, const T* da, const T* db, T* dw1,
                                T* dw3, T* dw2);

template <typename T>
class SwiGluMlp {
 public:
  struct Saved {
    LinearInput<T> x;  // the input, in the Linears' format
    MlpActivations<T> acts;
    void add_bytes(ActivationBytes& b) const {
      b.linear_inputs += x.bytes();
      acts.add_bytes(b);
    }
  };

  SwiGluMlp(ParameterStore<T>& store, const std::string& prefix, int64_t dim, int64_t width,
            double init_std, double out_std, const LinearFormat& format);
  void forward(const T* x, T* y, int64_t rows);
  // dx overwritten; weight gradients accumulated or queued (this micro-batch's Saved must then
  // outlive the queue).
  void backward(const T* dy, T* dx, int64_t rows, WeightGradQueue<T>* weight_grads = nullptr);
  void swap_saved(Saved& other) { std::swap(saved_, other); }
  int64_t width() const { return width_; }

 private:
  MlpWeights<T> weights() const;

  ParameterStore<T>& store_;
  int64_t dim_, width_;
  LinearFormat format_;
  typename ParameterStore<T>::Handle w1_, w3_, w2_;
  Saved saved_;
  MlpGradients<T> grads_;
};

}  // namespace baleine::model
