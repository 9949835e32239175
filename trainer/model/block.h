#pragma once
// One transformer block, pre-norm:  h = x + attn(norm1(x));  out = h + ffn(norm2(h)),
// where ffn is a dense SwiGLU MLP or a DeepSeek-MoE layer.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/model/attention_layer.h"
#include "trainer/model/linear.h"
#include "trainer/model/moe_layer.h"
#include "trainer/model/parameters.h"
#include "trainer/model/swiglu_mlp.h"

namespace baleine::model {

template <typename T>
class TransformerBlock {
 public:
  TransformerBlock(ParameterStore<T>& store, const config::ModelSection& model, int64_t index,
                   const ModelParallelism& parallelism, const PrecisionPlan& precision);

  // What the forward keeps for the backward, nested layers' included (trainer/model/
  // saved_state.h): one per micro-batch in flight.
  // (The norms' outputs are not kept: each Linear keeps its own input, in its format.)
  struct Saved {
    Array<T> rstd1, h, rstd2;
    typename AttentionLayer<T>::Saved attention;
    typename SwiGluMlp<T>::Saved mlp;
    typename MoeLayer<T>::Saved moe;
    void add_bytes(ActivationBytes& b, int64_t dim, bool is_moe) const {
      b.other += vector_bytes(rstd1) + vector_bytes(h) + vector_bytes(rstd2);
      attention.add_bytes(b);
      if (is_moe) moe.add_bytes(b, dim);
      else mlp.add_bytes(b);
    }
  };
  void swap_saved(Saved& other);

  // x, out: [tokens, dim]; x must stay unchanged until backward.
  void forward(const T* x, T* out, BatchShape shape);
  // dout → dx (overwritten); parameter gradients accumulated, or the weight gradients queued on
  // weight_grads (x and this micro-batch's Saved must then outlive the queue). loss_scale
  // weighs the balance loss.
  void backward(const T* dout, const T* x, T* dx, BatchShape shape, T loss_scale,
                WeightGradQueue<T>* weight_grads = nullptr);

  MoeLayer<T>* moe() { return moe_.get(); }

 private:
  ParameterStore<T>& store_;
  int64_t dim_;
  T norm_eps_;
  typename ParameterStore<T>::Handle norm1_, norm2_;
  AttentionLayer<T> attention_;
  std::unique_ptr<SwiGluMlp<T>> mlp_;
  std::unique_ptr<MoeLayer<T>> moe_;

  Saved saved_;
  Array<T> normed_, branch_;  // forward temporaries: a norm's and a branch's output
  Array<T> dbranch_, dh_;  // backward temporaries
};

}  // namespace baleine::model
