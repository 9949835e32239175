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
#include "trainer/model/grouped_experts.h"
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
  LinearFormat linear;       // the experts' (routed and shared) Linears; also picks the wire
                             // format of the EP moves (expert_wire.h)
  LinearFormat gate_linear;  // the gate (kept out of FP8)
};

// max/mean of tokens per expert; 1 is perfect balance (and an empty step).
double load_imbalance(const std::vector<int64_t>& load);

template <typename T>
class MoeLayer {
 public:
  MoeLayer(ParameterStore<T>& store, const std::string& prefix, const MoeConfig& config);

  // What the forward keeps for the backward (one per micro-batch in flight; see swap_saved).
  struct Saved {
    Array<T> scores, weights, xe, local_x_buffer, local_y, ye_buffer;
    // local_x / ye point into the buffers above, or at xe / local_y when the exchange is local
    // (under FP32 Linears; BF16/FP8 ones keep the received rows in expert_x instead)
    const T* local_x = nullptr;
    const T* ye = nullptr;
    LinearInput<T> expert_x;  // the rows the local experts received, as they arrived
    LinearInput<T> gate_x;    // the layer's input, for the gate's Wgrad
    Array<int32_t> chosen, offsets, row_token, assignment_row;
    typename ExpertExchange<T>::Plan plan;
    std::vector<int64_t> expert_rows;       // [local expert] rows over all its segments
    MlpActivations<T> experts;              // of every received row
    typename SwiGluMlp<T>::Saved shared;
    // Under FP32 Linears the experts' input is the received rows themselves (local_x).
    void add_bytes(ActivationBytes& b, int64_t dim) const {
      const bool received_as_is = expert_x.precision == LinearPrecision::kFp32;
      b.linear_inputs += gate_x.bytes() +
                         (received_as_is ? plan.received_rows * dim * static_cast<int64_t>(sizeof(T))
                                         : expert_x.bytes());
      b.other += vector_bytes(scores) + vector_bytes(weights) + vector_bytes(local_y) +
                 vector_bytes(ye_buffer) + vector_bytes(chosen) + vector_bytes(offsets) +
                 vector_bytes(row_token) + vector_bytes(assignment_row);
      experts.add_bytes(b);
      shared.add_bytes(b);
    }
  };
  void swap_saved(Saved& other);

  // x, y: [tokens, dim]. Adds this micro-batch's tokens per expert to the step's load.
  void forward(const T* x, T* y, BatchShape shape);
  // aux_loss_grad: d(total loss)/d(this layer's balance loss), i.e. the micro-batch's loss
  // scale. dx overwritten; weight gradients (gate, experts, shared experts) accumulated, or
  // queued on weight_grads (this micro-batch's Saved must then outlive the queue).
  void backward(const T* dy, T* dx, BatchShape shape, T aux_loss_grad,
                WeightGradQueue<T>* weight_grads = nullptr);

  double aux_loss() const { return aux_loss_; }  // of the last forward (0 when alpha == 0)

  // Whether forwards add to load() and rows_received() (off for validation).
  void set_counting(bool on) { counting_ = on; }
  // Tokens routed to each expert since the last reset (all micro-batches of a step).
  const std::vector<int64_t>& load() const { return load_; }
  void restore_load(const std::vector<int64_t>& load) { load_ = load; }
  // bias_e += speed · sign(mean load − load_e), then resets load() and rows_received().
  void update_bias(double speed);
  std::vector<T>& bias() { return bias_; }
  // Rows this rank's experts received since the last reset (update_bias), from every EP
  // source: the dispatch traffic of a step.
  int64_t rows_received() const { return rows_received_; }
  // Bytes this rank put on the EP wire since the last reset, in the forward dispatch and the
  // forward combine (every row, the ones staying on this rank included: the payload size).
  int64_t dispatch_bytes() const { return dispatch_bytes_; }
  int64_t combine_bytes() const { return combine_bytes_; }

 private:
  ParameterStore<T>& store_;
  MoeConfig config_;
  using Handle = typename ParameterStore<T>::Handle;
  Handle gate_;
  std::vector<Handle> expert_w1_, expert_w3_, expert_w2_;  // local experts, in order
  ExpertExchange<T> exchange_;
  std::vector<SwiGluMlp<T>> shared_;  // zero or one MLP holding all shared experts
  std::vector<T> bias_;
  Array<T> bias_in_memory_;               // bias_, where the routing kernel reads it
  std::vector<int32_t> offsets_on_host_;  // the last forward's expert offsets
  std::vector<int64_t> load_;
  int64_t rows_received_ = 0, dispatch_bytes_ = 0, combine_bytes_ = 0;
  bool counting_ = true;
  double aux_loss_ = 0;

  // Rows of T values to the experts (to_experts) or back, as T under FP32 Linears, else as
  // BF16. Returns the received rows (`rows` itself when local and FP32).
  const T* move_values(const typename ExpertExchange<T>::Plan& plan, bool to_experts,
                       const T* rows, Array<T>& out);
  // The forward dispatch of the permuted rows xe; leaves the received rows in s.local_x
  // (FP32) or s.expert_x.
  void dispatch_inputs(Saved& s, const T* xe);
  LinearInputView<T> expert_input(const Saved& s) const;
  MlpWeights<T> expert_weights(int64_t j) const;
  // Whether the experts run as grouped Linears (the backend groups them; grouped_experts.h)
  // rather than one MLP per expert; then each matrix of the local experts is one array.
  bool grouped() const;
  mutable bool stacking_checked_ = false;  // grouped() has checked the [El, N, K] layout
  MlpWeights<T> stacked_weights() const;  // each matrix's [El, N, K] array
  StackedExpertGrads<T> stacked_grads();
  ExpertBlocksView blocks(const typename ExpertExchange<T>::Plan& plan) const;

  Saved saved_;
  Array<T> logits_, shared_out_, xe_;  // forward temporaries
  Array<uint8_t> send_wire_, recv_wire_;  // encoded rows (expert_wire.h)
  // backward temporaries
  MlpGradients<T> expert_grads_;
  Array<T> dlogits_, dscores_, dweights_, dye_, dlocal_y_buffer_, dlocal_x_, dxe_buffer_,
      dtmp_;
};

}  // namespace baleine::model
