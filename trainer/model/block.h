#pragma once
// One transformer block, pre-norm:  h = x + attn(norm1(x));  out = h + ffn(norm2(h)),
// where ffn is a dense SwiGLU MLP or a DeepSeek-MoE layer.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/model/attention_layer.h"
#include "trainer/model/moe_layer.h"
#include "trainer/model/parameters.h"
#include "trainer/model/swiglu_mlp.h"

namespace baleine::model {

template <typename T>
class TransformerBlock {
 public:
  TransformerBlock(ParameterStore<T>& store, const config::ModelSection& model, int64_t index,
                   const ModelParallelism& parallelism);

  // What the forward keeps for the backward, nested layers' included (trainer/model/
  // saved_state.h): one per micro-batch in flight.
  struct Saved {
    std::vector<T> xn1, rstd1, h, xn2, rstd2;
    typename AttentionLayer<T>::Saved attention;
    typename SwiGluMlp<T>::Saved mlp;
    typename MoeLayer<T>::Saved moe;
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
  std::vector<T> branch_;        // forward temporary: a branch's output
  std::vector<T> dbranch_, dh_;  // backward temporaries
};

}  // namespace baleine::model
