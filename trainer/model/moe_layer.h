#pragma once
// DeepSeek-MoE FFN (DeepSeek-V3 report §2.1.2): shared experts applied to every token, plus
// top_k of routed_experts chosen per token by sigmoid (or softmax) affinity + a balancing bias.
// Dropless: every token reaches its k experts. Tokens are permuted into expert-sorted rows so
// each expert runs one dense SwiGLU over its contiguous slice. With expert parallelism the
// routed experts are sharded over the EP group and the rows travel through ExpertExchange
// (all-to-all dispatch and combine); the gate and the shared experts are replicated.
//
// Aux-loss-free balancing: the bias only affects which experts are chosen; after each
// optimizer step it moves by ±bias_update_speed toward balance (update_bias). The optional
// sequence-wise balance loss adds alpha·Σ f_i·P_i per sequence.
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/routing.h"
#include "parallel/comm.h"
#include "trainer/model/expert_exchange.h"
#include "trainer/model/parameters.h"
#include "trainer/model/shapes.h"
#include "trainer/model/swiglu_mlp.h"

namespace baleine::model {

struct MoeConfig {
  int64_t dim = 0;
  int64_t routed_experts = 0;
  int64_t shared_experts = 0;
  int64_t top_k = 0;
  int64_t expert_width = 0;  // each expert's SwiGLU width
  kernels::RoutingOptions routing;
  double seq_aux_alpha = 0;
  double init_std = 0.02;
  double out_std = 0.02;
  // Expert parallelism: the EP group (nullptr = every expert on this rank). This rank holds
  // routed experts [expert_begin, expert_begin + routed_experts / group size).
  parallel::Comm* ep_group = nullptr;
  int64_t expert_begin = 0;
};

template <typename T>
class MoeLayer {
 public:
  MoeLayer(ParameterStore<T>& store, const std::string& prefix, const MoeConfig& config);

  // x, y: [tokens, dim]. Adds this micro-batch's tokens per expert to the step's load.
  void forward(const T* x, T* y, BatchShape shape);
  // aux_loss_grad: d(total loss)/d(this layer's balance loss), i.e. the micro-batch's loss
  // scale. dx overwritten; parameter gradients accumulated.
  void backward(const T* dy, const T* x, T* dx, BatchShape shape, T aux_loss_grad);

  double aux_loss() const { return aux_loss_; }  // of the last forward (0 when alpha == 0)

  // Tokens routed to each expert since the last reset (all micro-batches of a step).
  const std::vector<int64_t>& load() const { return load_; }
  void restore_load(const std::vector<int64_t>& load) { load_ = load; }
  // max/mean of load(); 1 is perfect balance.
  double load_imbalance() const;
  // bias_e += speed · sign(mean load − load_e), then resets the load counters.
  void update_bias(double speed);
  std::vector<T>& bias() { return bias_; }
  // Rows this rank's experts received in the last forward (from every EP source).
  int64_t rows_received() const { return exchange_.rows_received(); }

 private:
  ParameterStore<T>& store_;
  MoeConfig config_;
  typename ParameterStore<T>::Handle gate_;
  std::vector<typename ParameterStore<T>::Handle> expert_w1_, expert_w3_, expert_w2_;  // local
  ExpertExchange<T> exchange_;
  std::vector<SwiGluMlp<T>> shared_;  // zero or one MLP holding all shared experts
  std::vector<T> bias_;
  std::vector<int64_t> load_;
  double aux_loss_ = 0;

  // saved activations; local_x_/ye_ point into the buffers below, or at xe_/local_y_ when the
  // exchange is local
  std::vector<T> logits_, scores_, weights_, xe_, shared_out_;
  std::vector<T> local_x_buffer_, local_y_, ye_buffer_;
  const T* local_x_ = nullptr;
  const T* ye_ = nullptr;
  std::vector<int32_t> chosen_, offsets_, row_token_, assignment_row_;
  MlpScratch<T> expert_scratch_;
  // backward temporaries
  std::vector<T> dlogits_, dscores_, dweights_, dye_, dlocal_y_buffer_, dlocal_x_, dxe_buffer_,
      dtmp_;
};

}  // namespace baleine::model
