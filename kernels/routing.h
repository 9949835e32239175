#pragma once
// DeepSeek-MoE routing (DeepSeek-V3 report, §2.1.2):
//   scores s[t,e] = sigmoid(logits[t,e])            (or softmax over e, selectable)
//   chosen[t,:]   = the top_k experts by s[t,e] + bias[e] (among the kept groups when
//                   max_groups > 0, see RoutingOptions); the bias only CHOOSES experts
//                   (aux-loss-free balancing) and never enters the weights. Ties go to the
//                   lower expert index; chosen[t,:] is listed in descending (s + bias) order.
//   weights[t,j]  = route_scale · s[t,chosen_j] / Σ_j' s[t,chosen_j']   when normalize
//                 = route_scale · s[t,chosen_j]                          otherwise
// The sequence-wise balance loss (eq. 17-20) is here too, since it reads the same scores.
#include <cstdint>

namespace baleine::kernels {

enum class ScoreFunction { kSigmoid, kSoftmax };

struct RoutingShape {
  int64_t tokens = 0;
  int64_t experts = 0;
  int64_t top_k = 0;
};

struct RoutingOptions {
  ScoreFunction score = ScoreFunction::kSigmoid;
  bool normalize = true;
  double route_scale = 1.0;
  // Node-limited routing (§2.1.2): the experts split into `groups` contiguous groups of
  // experts/groups (a group = the experts of one node, so a token's traffic reaches at most
  // max_groups nodes). A group's score is the sum of its 2 highest s + bias (its only one for
  // 1-expert groups); the max_groups best groups are kept (ties to the lower group index) and
  // top_k is taken among their experts only. Weights are unchanged. Needs experts % groups == 0.
  int64_t groups = 1;
  // 0 = no limit; otherwise 1 <= max_groups <= groups and top_k <= max_groups·experts/groups.
  // max_groups == groups chooses exactly what no limit chooses.
  int64_t max_groups = 0;
};

// logits [tokens, experts]; bias [experts] (may be nullptr = zeros).
// Writes scores [tokens, experts], chosen [tokens, top_k], weights [tokens, top_k].
template <typename T>
void routing_forward(const T* logits, const T* bias, T* scores, int32_t* chosen, T* weights,
                     RoutingShape shape, RoutingOptions options);

// dweights [tokens, top_k] is the gradient of the loss w.r.t. weights; dscores_extra
// [tokens, experts] (may be nullptr) is any further gradient w.r.t. scores (the balance loss).
// Writes dlogits [tokens, experts] (overwrites). Selection is piecewise constant: no gradient
// flows through `chosen` or the bias.
template <typename T>
void routing_backward(const T* dweights, const T* dscores_extra, const T* scores,
                      const int32_t* chosen, T* dlogits, RoutingShape shape,
                      RoutingOptions options);

// Sequence-wise balance loss, averaged over sequences. Tokens are grouped into sequences of
// seq_len consecutive rows (shape.tokens = sequences · seq_len):
//   f_e = experts / (top_k · seq_len) · #{t in seq : e in chosen[t]}
//   P_e = 1/seq_len · Σ_t s[t,e] / Σ_e' s[t,e']
//   loss = alpha · mean over sequences of Σ_e f_e · P_e
template <typename T>
double seq_balance_loss_forward(const T* scores, const int32_t* chosen, RoutingShape shape,
                                int64_t seq_len, double alpha);
// dscores [tokens, experts] += d(loss)/d(scores) · dloss   (ACCUMULATES; f_e is a constant).
template <typename T>
void seq_balance_loss_backward(const T* scores, const int32_t* chosen, RoutingShape shape,
                               int64_t seq_len, double alpha, T dloss, T* dscores);

}  // namespace baleine::kernels
