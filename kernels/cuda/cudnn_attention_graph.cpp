// The forward and backward attention graphs of kernels/cuda/cudnn_attention.h, built with the
// cuDNN backend API. They follow the composite pattern cudnn-frontend builds for its SDPA nodes on
// cuDNN < 9.21 (include/cudnn_frontend/node/scaled_dot_product_flash_attention.h, softmax.h,
// diagonal_band_mask.h, reshape.h; facts used, not code): which tensors are virtual, their types,
// their strides and the node order are those cuDNN's flash-attention engines recognise.
#include "kernels/cuda/cudnn_attention_graph.h"

#include <string>

namespace baleine::kernels::cuda::cudnn_attention_detail {
namespace {

// ---- layouts: cuDNN's [b, h, rows, cols] views of our [b, s, h, d] memory ------------------

// q, k, v, out and their gradients: [b, s, h, d] memory seen as [b, h, s, d].
Layout bshd(const Shape& x) {
  return {{x.b, x.h, x.s, x.d}, {x.s * x.h * x.d, x.d, x.h * x.d, 1}};
}
// K (or V) seen transposed, [b, h, d, s], as the backend's matmul operand (cudnn-frontend swaps
// K's last two dims and strides the same way).
Layout bshd_transposed(const Shape& x) {
  return {{x.b, x.h, x.d, x.s}, {x.s * x.h * x.d, x.d, 1, x.h * x.d}};
}
// dO ⊙ O before its row sum: the strides cudnn-frontend declares (virtual, so no memory).
Layout row_products(const Shape& x) {
  return {{x.b, x.h, x.s, x.d}, {x.h * x.s * x.d, x.s * x.d, x.h * x.d, 1}};
}
// A packed [b, h, s, d] FP32 buffer (the kAtomic dQ accumulator).
Layout bhsd(const Shape& x) {
  return {{x.b, x.h, x.s, x.d}, {x.h * x.s * x.d, x.s * x.d, x.d, 1}};
}
// Scores and probabilities [b, h, s, s], and their transposed view.
Layout scores(const Shape& x) {
  return {{x.b, x.h, x.s, x.s}, {x.h * x.s * x.s, x.s * x.s, x.s, 1}};
}
Layout scores_transposed(const Shape& x) {
  return {{x.b, x.h, x.s, x.s}, {x.h * x.s * x.s, x.s * x.s, 1, x.s}};
}
// One value per query row: Stats (= our lse), the row max and sum, the backward's row term.
Layout per_row(const Shape& x) { return {{x.b, x.h, x.s, 1}, {x.h * x.s, x.s, 1, 1}}; }
Layout scalar() { return {{1, 1, 1, 1}, {1, 1, 1, 1}}; }

// ---- pieces of the graphs ------------------------------------------------------------------

// score where row >= column, else -inf (exp gives 0): the top-left-aligned causal mask, written
// as cudnn-frontend's composite diagonal band mask does (GEN_INDEX rows and columns, CMP_GE,
// BINARY_SELECT y = t ? x : b).
Tensor causal_mask(Graph& g, const Shape& x, Tensor score, Tensor negative_infinity) {
  const Tensor row = g.virt(scores(x), CUDNN_DATA_INT32);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, row, score, nullptr, nullptr, CUDNN_DATA_INT32, 2);
  const Tensor column = g.virt(scores(x), CUDNN_DATA_INT32);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, column, score, nullptr, nullptr, CUDNN_DATA_INT32, 3);
  const Tensor keep = g.virt(scores(x), CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, keep, row, column, nullptr, CUDNN_DATA_BOOLEAN);
  const Tensor masked = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, masked, score, negative_infinity, keep);
  return masked;
}

// The row term delta_i = Σ_d dO_i ⊙ O_i (FlashAttention-2's D), which cuDNN wants non-virtual:
// the engine computes it in a first pass and reads it back, from the caller's workspace.
void row_term(Graph& g, const Shape& x, Tensor dout, Tensor out, Tensor delta) {
  const Tensor products = g.virt(row_products(x));
  g.pointwise(CUDNN_POINTWISE_MUL, products, dout, out);
  const Tensor sums = g.virt(per_row(x));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, products, sums);
  // × 1: the dropout-scale slot of the pattern, kept even without dropout as cudnn-frontend does.
  g.pointwise(CUDNN_POINTWISE_MUL, delta, sums, g.host_scalar(kOne));
}

// scale · Q·Kᵀ in FP32 [b, h, s, s], the start of both graphs (k is Kᵀ's view).
Tensor scaled_scores(Graph& g, const Shape& x, Tensor q, Tensor k, Tensor scale) {
  const Tensor products = g.virt(scores(x));
  g.matmul(q, k, products);
  const Tensor scaled = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_MUL, scaled, products, scale);
  return scaled;
}

}  // namespace

std::string last_cudnn_message() {
  char message[1024] = {};
  cudnnGetLastErrorString(message, sizeof(message));
  return message;
}

std::string describe(cudnnStatus_t status, const std::string& step) {
  const std::string detail = last_cudnn_message();
  return step + ": " + cudnnGetErrorString(status) + (detail.empty() ? "" : " (" + detail + ")");
}

// ---- Graph ---------------------------------------------------------------------------------

Tensor Graph::real(int64_t uid, const Layout& layout, cudnnDataType_t type, bool by_value) {
  return tensor(uid, layout, type, false, by_value);
}

Tensor Graph::host_scalar(int64_t uid) { return real(uid, scalar(), CUDNN_DATA_FLOAT, true); }

Tensor Graph::virt(const Layout& layout, cudnnDataType_t type) {
  return tensor(next_virtual_uid_++, layout, type, true, false);
}

void Graph::pointwise(cudnnPointwiseMode_t mode, Tensor y, Tensor x, Tensor b, Tensor t,
                      cudnnDataType_t math, int64_t axis) {
  const std::string name = "pointwise mode " + std::to_string(static_cast<int>(mode));
  Descriptor& pw = keep(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, name);
  pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  pw.set(CUDNN_ATTR_POINTWISE_MATH_PREC, math);
  if (axis >= 0) pw.set(CUDNN_ATTR_POINTWISE_AXIS, axis);
  pw.finalize();
  Descriptor& op = keep(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, name + " operation");
  op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw.get());
  op.set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
  if (b != nullptr) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
  if (t != nullptr) op.set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t);
  op.set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
  add_operation(op);
}

void Graph::matmul(Tensor a, Tensor b, Tensor c) {
  Descriptor& mm = keep(CUDNN_BACKEND_MATMUL_DESCRIPTOR, "matmul");
  mm.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT);
  mm.finalize();
  Descriptor& op = keep(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "matmul operation");
  op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
  op.set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
  op.set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
  op.set(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm.get());
  add_operation(op);
}

void Graph::reduction(cudnnReduceTensorOp_t mode, Tensor x, Tensor y) {
  Descriptor& red = keep(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "reduction");
  red.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
  red.set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT);
  red.finalize();
  Descriptor& op = keep(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "reduction operation");
  op.set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
  op.set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
  op.set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, red.get());
  add_operation(op);
}

void Graph::reshape(Tensor x, Tensor y) {
  Descriptor& op = keep(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape operation");
  op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x);
  op.set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
  add_operation(op);
}

Descriptor Graph::finalize(cudnnHandle_t handle, const std::string& name) const {
  Descriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, name + " operation graph");
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
            static_cast<int64_t>(operations_.size()), operations_.data());
  graph.finalize();
  return graph;
}

Tensor Graph::tensor(int64_t uid, const Layout& layout, cudnnDataType_t type, bool is_virtual,
                     bool by_value) {
  Descriptor& t = keep(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor " + std::to_string(uid));
  t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid);
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, type);
  t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, layout.dims);
  t.set(CUDNN_ATTR_TENSOR_STRIDES, layout.strides);
  t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, kTensorAlignment);
  t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, is_virtual);
  if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, true);
  t.finalize();
  return t.get();
}

Descriptor& Graph::keep(cudnnBackendDescriptorType_t type, std::string what) {
  owned_.emplace_back(type, std::move(what));
  return owned_.back();
}

void Graph::add_operation(Descriptor& op) {
  op.finalize();
  operations_.push_back(op.get());
}

// ---- the two graphs ------------------------------------------------------------------------

// S = scale · Q·Kᵀ masked; Stats = max + ln Σ exp(S − max); O = softmax(S)·V with P in BF16.
Graph forward_graph(const Shape& x) {
  Graph g;
  const Tensor q = g.real(kQ, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor k = g.real(kK, bshd_transposed(x), CUDNN_DATA_BFLOAT16);
  const Tensor v = g.real(kV, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor out = g.real(kO, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor stats = g.real(kStats, per_row(x), CUDNN_DATA_FLOAT);
  const Tensor scale = g.host_scalar(kScale);
  const Tensor negative_infinity = g.host_scalar(kNegativeInfinity);

  const Tensor scaled = scaled_scores(g, x, q, k, scale);
  const Tensor masked = causal_mask(g, x, scaled, negative_infinity);

  const Tensor row_max = g.virt(per_row(x));
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, row_max);
  const Tensor shifted = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_SUB, shifted, masked, row_max);
  const Tensor exps = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_EXP, exps, shifted);
  const Tensor row_sum = g.virt(per_row(x));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, exps, row_sum);
  const Tensor log_sum = g.virt(per_row(x));
  g.pointwise(CUDNN_POINTWISE_LOG, log_sum, row_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, stats, row_max, log_sum);
  const Tensor probabilities = g.virt(scores(x), CUDNN_DATA_BFLOAT16);  // the P·V operand
  g.pointwise(CUDNN_POINTWISE_DIV, probabilities, exps, row_sum);
  g.matmul(probabilities, v, out);
  return g;
}

// P = exp(scale · Q·Kᵀ − lse) masked; dV = Pᵀ·dO; dS = P ⊙ (dO·Vᵀ − delta) · scale;
// dK = dSᵀ·Q; dQ = dS·K, directly (deterministic) or through an FP32 accumulator (atomic).
Graph backward_graph(const Shape& x, CudnnBackwardAlgorithm algorithm) {
  Graph g;
  const Tensor q = g.real(kQ, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor k = g.real(kK, bshd_transposed(x), CUDNN_DATA_BFLOAT16);
  const Tensor v = g.real(kV, bshd_transposed(x), CUDNN_DATA_BFLOAT16);
  const Tensor out = g.real(kO, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor dout = g.real(kDO, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor lse = g.real(kStats, per_row(x), CUDNN_DATA_FLOAT);
  const Tensor dq = g.real(kDQ, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor dk = g.real(kDK, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor dv = g.real(kDV, bshd(x), CUDNN_DATA_BFLOAT16);
  const Tensor scale = g.host_scalar(kScale);
  const Tensor negative_infinity = g.host_scalar(kNegativeInfinity);
  const Tensor delta = g.real(kRowTerm, per_row(x), CUDNN_DATA_FLOAT);
  row_term(g, x, dout, out, delta);

  const Tensor scaled = scaled_scores(g, x, q, k, scale);
  const Tensor shifted = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_SUB, shifted, scaled, lse);
  const Tensor masked = causal_mask(g, x, shifted, negative_infinity);
  const Tensor probabilities = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_EXP, probabilities, masked);

  const Tensor probabilities_t = g.virt(scores_transposed(x), CUDNN_DATA_BFLOAT16);
  g.reshape(probabilities, probabilities_t);
  g.matmul(probabilities_t, dout, dv);

  const Tensor dp = g.virt(scores(x));
  g.matmul(dout, v, dp);
  const Tensor centered = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_SUB, centered, dp, delta);
  const Tensor ds_unscaled = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_MUL, ds_unscaled, centered, probabilities);
  const Tensor ds = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_MUL, ds, ds_unscaled, scale);

  const Tensor ds_t = g.virt(scores_transposed(x), CUDNN_DATA_BFLOAT16);
  g.reshape(ds, ds_t);
  g.matmul(ds_t, q, dk);

  const Tensor k_rows = g.virt(bshd(x));  // K back in [b, h, s, d]; FP32 as frontend leaves it
  g.reshape(k, k_rows);
  if (algorithm == CudnnBackwardAlgorithm::kDeterministic) {
    g.matmul(ds, k_rows, dq);
  } else {
    const Tensor accumulator = g.real(kDQAccumulator, bhsd(x), CUDNN_DATA_FLOAT);
    g.matmul(ds, k_rows, accumulator);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, dq, accumulator);
  }
  return g;
}

}  // namespace baleine::kernels::cuda::cudnn_attention_detail
