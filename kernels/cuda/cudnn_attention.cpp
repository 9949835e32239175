// cuDNN flash attention through the backend graph API (see kernels/cuda/cudnn_attention.h for
// the why). The graphs follow the composite pattern cudnn-frontend builds for its SDPA nodes on
// cuDNN < 9.21 (include/cudnn_frontend/node/scaled_dot_product_flash_attention.h, softmax.h,
// diagonal_band_mask.h; facts used, not code): which tensors are virtual, their types and the
// node order are the ones cuDNN's flash-attention engine is known to recognise.
#include "kernels/cuda/cudnn_attention.h"

#include <cuda_runtime_api.h>
#include <cudnn_graph.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int64_t kMaxHeadDim = 128;
constexpr int64_t kAlignment = 16;      // bytes, declared on every tensor
constexpr size_t kWorkspaceAlign = 256;  // between the workspace's parts

// ---- errors -------------------------------------------------------------------------------

// A cuDNN call that failed: while building, supported() turns it into a refusal; while running,
// it reaches the caller (a std::runtime_error).
class CudnnFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string describe(cudnnStatus_t status, const std::string& step) {
  std::string text = step + ": " + cudnnGetErrorString(status);
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof(detail));  // cuDNN's own words, when it has some
  if (detail[0] != '\0') text += " (" + std::string(detail) + ")";
  return text;
}

void check(cudnnStatus_t status, const std::string& step) {
  if (status != CUDNN_STATUS_SUCCESS) throw CudnnFailure(describe(status, step));
}

// ---- one backend descriptor ---------------------------------------------------------------

// Owns a cudnnBackendDescriptor_t; `what` names it in error messages.
class Descriptor {
 public:
  Descriptor(cudnnBackendDescriptorType_t type, std::string what) : what_(std::move(what)) {
    check(cudnnBackendCreateDescriptor(type, &desc_), what_ + ": create");
  }
  Descriptor(Descriptor&& other) noexcept
      : desc_(std::exchange(other.desc_, nullptr)), what_(std::move(other.what_)) {}
  Descriptor& operator=(Descriptor&& other) noexcept {
    std::swap(desc_, other.desc_);
    std::swap(what_, other.what_);
    return *this;
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (desc_ != nullptr) cudnnBackendDestroyDescriptor(desc_);
  }

  cudnnBackendDescriptor_t get() const { return desc_; }

  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
           const void* values) {
    check(cudnnBackendSetAttribute(desc_, name, type, count, values),
          what_ + ": attribute " + std::to_string(static_cast<int>(name)));
  }
  void set(cudnnBackendAttributeName_t name, int64_t value) {
    set(name, CUDNN_TYPE_INT64, 1, &value);
  }
  void set(cudnnBackendAttributeName_t name, const std::array<int64_t, 4>& values) {
    set(name, CUDNN_TYPE_INT64, 4, values.data());
  }
  void set(cudnnBackendAttributeName_t name, cudnnDataType_t type) {
    set(name, CUDNN_TYPE_DATA_TYPE, 1, &type);
  }
  void set(cudnnBackendAttributeName_t name, bool value) {
    set(name, CUDNN_TYPE_BOOLEAN, 1, &value);
  }
  void set(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value) {
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
  }
  void finalize() { check(cudnnBackendFinalize(desc_), what_ + ": finalize"); }
  int64_t get_int64(cudnnBackendAttributeName_t name) const {
    int64_t value = 0, count = 0;
    check(cudnnBackendGetAttribute(desc_, name, CUDNN_TYPE_INT64, 1, &count, &value),
          what_ + ": read attribute " + std::to_string(static_cast<int>(name)));
    return value;
  }

 private:
  cudnnBackendDescriptor_t desc_ = nullptr;
  std::string what_;
};

// ---- layouts ------------------------------------------------------------------------------

// A problem shape in our order; the layouts below give cuDNN's [b, h, rows, cols] views of it.
struct Shape {
  int64_t b, s, h, d;
};

struct Layout {
  std::array<int64_t, 4> dims, strides;
};

// q, k, v, out and their gradients: [b, s, h, d] memory seen as [b, h, s, d].
Layout bshd(const Shape& x) {
  return {{x.b, x.h, x.s, x.d}, {x.s * x.h * x.d, x.d, x.h * x.d, 1}};
}
// K (or V) seen transposed, [b, h, d, s], as the backend's first-matmul operand (cudnn-frontend
// swaps K's last two dims and strides the same way).
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

// The UIDs of the variant packs' tensors; virtual tensors are numbered from kFirstVirtualUid.
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV,  // caller memory
  kScale, kNegativeInfinity, kOne,                // host scalars passed by value
  kRowTerm, kDQAccumulator,                       // the backward's FP32 workspace tensors
  kFirstVirtualUid = 100,
};

// ---- a graph under construction ------------------------------------------------------------

using Tensor = cudnnBackendDescriptor_t;

// The tensors and operations of one graph; owns every descriptor for as long as its execution
// plan lives (the plan was made from them).
class Graph {
 public:
  // Non-virtual: device memory (or, with by_value, a host scalar) bound at execution by uid.
  Tensor real(int64_t uid, const Layout& layout, cudnnDataType_t type, bool by_value = false) {
    return tensor(uid, layout, type, false, by_value);
  }
  Tensor host_scalar(int64_t uid) { return real(uid, scalar(), CUDNN_DATA_FLOAT, true); }
  Tensor virt(const Layout& layout, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    return tensor(next_virtual_uid_++, layout, type, true, false);
  }

  // y = mode(x[, b[, t]]) elementwise; `axis` only for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, Tensor y, Tensor x, Tensor b = nullptr,
                 Tensor t = nullptr, cudnnDataType_t math = CUDNN_DATA_FLOAT, int64_t axis = -1) {
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
  // c = a · b over the last two dims, FP32 accumulation.
  void matmul(Tensor a, Tensor b, Tensor c) {
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
  // y = reduce(x) over the dims where y has extent 1.
  void reduction(cudnnReduceTensorOp_t mode, Tensor x, Tensor y) {
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
  // y = x seen through y's dims and strides (a transpose here).
  void reshape(Tensor x, Tensor y) {
    Descriptor& op = keep(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape operation");
    op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x);
    op.set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
    add_operation(op);
  }

  // The operation graph of everything added, bound to `handle`.
  Descriptor finalize(cudnnHandle_t handle, const std::string& name) const {
    Descriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, name + " operation graph");
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
              static_cast<int64_t>(operations_.size()), operations_.data());
    graph.finalize();
    return graph;
  }

 private:
  Tensor tensor(int64_t uid, const Layout& layout, cudnnDataType_t type, bool is_virtual,
                bool by_value) {
    Descriptor& t = keep(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor " + std::to_string(uid));
    t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid);
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, type);
    t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, layout.dims);
    t.set(CUDNN_ATTR_TENSOR_STRIDES, layout.strides);
    t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, kAlignment);
    t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, is_virtual);
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, true);
    t.finalize();
    return t.get();
  }
  Descriptor& keep(cudnnBackendDescriptorType_t type, std::string what) {
    owned_.emplace_back(type, std::move(what));
    return owned_.back();
  }
  void add_operation(Descriptor& op) {
    op.finalize();
    operations_.push_back(op.get());
  }

  std::deque<Descriptor> owned_;   // tensors and operations; a deque keeps references valid
  std::vector<Tensor> operations_;  // in the order added, which is topological
  int64_t next_virtual_uid_ = kFirstVirtualUid;
};

// ---- the two graphs ------------------------------------------------------------------------

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

  const Tensor products = g.virt(scores(x));
  g.matmul(q, k, products);
  const Tensor scaled = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_MUL, scaled, products, scale);
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

  const Tensor products = g.virt(scores(x));
  g.matmul(q, k, products);
  const Tensor scaled = g.virt(scores(x));
  g.pointwise(CUDNN_POINTWISE_MUL, scaled, products, scale);
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

// ---- plans ---------------------------------------------------------------------------------

// The engine configurations cuDNN's heuristics (mode A, as cudnn-frontend's SDPA samples use)
// propose for a graph, best first.
std::vector<Descriptor> engine_configs(const Descriptor& op_graph, const std::string& name) {
  Descriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, name + " engine heuristics");
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, op_graph.get());
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  heuristics.finalize();
  int64_t available = 0;
  check(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &available, nullptr),
        name + " engine heuristics: count results");
  std::vector<Descriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < available; ++i) {
    configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, name + " engine config");
    raw.push_back(configs.back().get());
  }
  int64_t returned = 0;
  check(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, available, &returned, raw.data()),
        name + " engine heuristics: read results");
  configs.erase(configs.begin() + std::clamp<int64_t>(returned, 0, available), configs.end());
  return configs;
}

// A graph with its finalized execution plan and the workspace that plan needs.
struct Plan {
  Graph graph;  // declared first: destroyed after the descriptors made from it
  Descriptor op_graph;
  Descriptor execution;
  int64_t workspace_bytes = 0;
};

// The first of the heuristics' configurations whose plan finalizes here.
Descriptor first_plan_that_builds(cudnnHandle_t handle, const Descriptor& op_graph,
                                  const std::string& name) {
  std::string failure = name + ": cuDNN's heuristics proposed no engine for this graph";
  for (const Descriptor& config : engine_configs(op_graph, name)) {
    Descriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, name + " execution plan");
    plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    plan.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, config.get());
    const cudnnStatus_t status = cudnnBackendFinalize(plan.get());
    if (status == CUDNN_STATUS_SUCCESS) return plan;
    failure = describe(status, name + " execution plan: finalize");
  }
  throw CudnnFailure(failure);
}

std::unique_ptr<Plan> make_plan(cudnnHandle_t handle, Graph graph, const std::string& name) {
  Descriptor op_graph = graph.finalize(handle, name);
  Descriptor execution = first_plan_that_builds(handle, op_graph, name);
  const int64_t workspace = execution.get_int64(CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE);
  return std::make_unique<Plan>(
      Plan{std::move(graph), std::move(op_graph), std::move(execution), workspace});
}

// Both directions of one shape, or why cuDNN refused it.
struct ShapePlans {
  std::unique_ptr<Plan> forward, backward;
  std::string failure;
};

size_t aligned(size_t bytes) {
  return (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
}

// ---- checks --------------------------------------------------------------------------------

// What rules a shape out before cuDNN is asked; empty when nothing does.
std::string shape_problem(const Shape& x) {
  const std::string dims = "batch " + std::to_string(x.b) + ", seq " + std::to_string(x.s) +
                           ", heads " + std::to_string(x.h) + ", head_dim " + std::to_string(x.d);
  if (x.b <= 0 || x.s <= 0 || x.h <= 0 || x.d <= 0) return dims + ": an empty problem";
  if (x.d % 8 != 0 || x.d > kMaxHeadDim)
    return dims + ": cuDNN's fused attention needs head_dim a multiple of 8 up to " +
           std::to_string(kMaxHeadDim);
  if (x.s < 2) return dims + ": cuDNN's attention backward has no seq 1 case";
  return "";
}

// Why cuDNN cannot run here at all, or empty; opens the handle when it can.
std::string open_device(int* device, cudnnHandle_t* handle) {
  const size_t version = cudnnGetVersion();
  if (version < 90000)
    return "cuDNN " + std::to_string(version) + " is older than 9.0, which the graph needs";
  if (version == 91000 || version == 91001)
    return "cuDNN 9.10.0 and 9.10.1 have known BF16 attention bugs (cudnn-frontend refuses them)";
  const cudaError_t status = cudaGetDevice(device);
  if (status != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(status);
  int major = 0, minor = 0;
  BALEINE_CUDA_CALL(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, *device));
  BALEINE_CUDA_CALL(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, *device));
  if (major < 8)
    return "sm_" + std::to_string(major * 10 + minor) +
           ": cuDNN's flash attention needs sm_80 or newer";
  const cudnnStatus_t created = cudnnCreate(handle);
  if (created != CUDNN_STATUS_SUCCESS) {
    *handle = nullptr;
    return describe(created, "cudnnCreate");
  }
  return "";
}

void check_alignment(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % kAlignment != 0)
      throw std::invalid_argument("CudnnAttention: every pointer must be 16-byte aligned");
}

}  // namespace

// ---- the object ----------------------------------------------------------------------------

struct CudnnAttention::State {
  CudnnBackwardAlgorithm algorithm = CudnnBackwardAlgorithm::kDeterministic;
  int device = -1;
  cudnnHandle_t handle = nullptr;
  std::string unavailable;  // why nothing can run here; empty when cuDNN can
  std::string why_not;
  std::map<std::array<int64_t, 4>, ShapePlans> plans;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int64_t device_allocations = 0;

  // The cached plans of a shape, built on first use (a failure is cached too).
  ShapePlans& plans_for(const Shape& x) {
    const std::array<int64_t, 4> key{x.b, x.s, x.h, x.d};
    auto [it, inserted] = plans.try_emplace(key);
    if (!inserted) return it->second;
    try {
      it->second.forward = make_plan(handle, forward_graph(x), "attention forward");
      it->second.backward = make_plan(handle, backward_graph(x, algorithm), "attention backward");
    } catch (const CudnnFailure& e) {
      it->second = ShapePlans{nullptr, nullptr, e.what()};
    }
    return it->second;
  }

  // Empty when the shape runs, else why not (also remembered for why_not()).
  std::string refusal(const Shape& x) {
    std::string reason = shape_problem(x);
    if (reason.empty()) reason = unavailable;
    if (reason.empty()) reason = plans_for(x).failure;
    if (!reason.empty()) why_not = reason;
    return reason;
  }

  // The plans of a shape the caller is about to run; throws when it cannot.
  ShapePlans& runnable(const Shape& x) {
    const std::string reason = refusal(x);
    if (!reason.empty()) throw std::invalid_argument("CudnnAttention: " + reason);
    int current = -1;
    BALEINE_CUDA_CALL(cudaGetDevice(&current));
    if (current != device)
      throw std::runtime_error("CudnnAttention: made on device " + std::to_string(device) +
                               ", called with device " + std::to_string(current) + " current");
    return plans_for(x);
  }

  // At least `bytes` of device workspace. Growing frees the old buffer first: cudaFree waits for
  // the device, so work still using it finishes.
  char* workspace_of(size_t bytes) {
    if (bytes > workspace_bytes) {
      if (workspace != nullptr) BALEINE_CUDA_CALL(cudaFree(workspace));
      workspace = nullptr;
      workspace_bytes = 0;
      BALEINE_CUDA_CALL(cudaMalloc(&workspace, bytes));
      workspace_bytes = bytes;
      device_allocations += 1;
    }
    return static_cast<char*>(workspace);
  }

  // Runs a plan with the tensors bound by uid (device pointers, or host scalars by value).
  void execute(const Plan& plan, const std::vector<int64_t>& uids, std::vector<void*> pointers,
               void* cudnn_workspace, cudaStream_t stream) {
    Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
             static_cast<int64_t>(uids.size()), uids.data());
    pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
             static_cast<int64_t>(pointers.size()), pointers.data());
    pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &cudnn_workspace);
    pack.finalize();
    check(cudnnSetStream(handle, stream), "cudnnSetStream");
    check(cudnnBackendExecute(handle, plan.execution.get(), pack.get()), "cudnnBackendExecute");
  }
};

CudnnAttention::CudnnAttention(CudnnBackwardAlgorithm backward)
    : state_(std::make_unique<State>()) {
  state_->algorithm = backward;
  state_->unavailable = open_device(&state_->device, &state_->handle);
}

CudnnAttention::~CudnnAttention() {
  state_->plans.clear();  // plans before the handle they were made with
  if (state_->workspace != nullptr) BALEINE_CUDA_CALL_WARN(cudaFree(state_->workspace));
  if (state_->handle != nullptr) cudnnDestroy(state_->handle);
}

bool CudnnAttention::supported(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
  return state_->refusal({batch, seq, heads, head_dim}).empty();
}

std::string CudnnAttention::why_not() const { return state_->why_not; }

CudnnBackwardAlgorithm CudnnAttention::backward_algorithm() const { return state_->algorithm; }
size_t CudnnAttention::workspace_bytes() const { return state_->workspace_bytes; }
int64_t CudnnAttention::device_allocations() const { return state_->device_allocations; }

void CudnnAttention::forward(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                             uint16_t* out, float* lse, int64_t batch, int64_t seq,
                             int64_t heads, int64_t head_dim, float scale, cudaStream_t stream) {
  NvtxRange range("cudnn_attention_forward");
  if (batch <= 0 || seq <= 0 || heads <= 0) return;
  const Plan& plan = *state_->runnable({batch, seq, heads, head_dim}).forward;
  check_alignment({q, k, v, out, lse});
  float negative_infinity = -std::numeric_limits<float>::infinity();
  char* workspace = state_->workspace_of(static_cast<size_t>(plan.workspace_bytes));
  state_->execute(plan, {kQ, kK, kV, kO, kStats, kScale, kNegativeInfinity},
                  {const_cast<uint16_t*>(q), const_cast<uint16_t*>(k), const_cast<uint16_t*>(v),
                   out, lse, &scale, &negative_infinity},
                  workspace, stream);
}

void CudnnAttention::backward(const uint16_t* dout, const uint16_t* q, const uint16_t* k,
                              const uint16_t* v, const uint16_t* out, const float* lse,
                              uint16_t* dq, uint16_t* dk, uint16_t* dv, int64_t batch,
                              int64_t seq, int64_t heads, int64_t head_dim, float scale,
                              cudaStream_t stream) {
  NvtxRange range("cudnn_attention_backward");
  if (batch <= 0 || seq <= 0 || heads <= 0) return;
  const Plan& plan = *state_->runnable({batch, seq, heads, head_dim}).backward;
  check_alignment({dout, q, k, v, out, lse, dq, dk, dv});
  // Workspace: cuDNN's own, then the FP32 row term, then (kAtomic) the FP32 dQ accumulator.
  const size_t rows = static_cast<size_t>(batch * heads * seq);
  const size_t row_term_at = aligned(static_cast<size_t>(plan.workspace_bytes));
  const size_t accumulator_at = row_term_at + aligned(rows * sizeof(float));
  const bool atomic = state_->algorithm == CudnnBackwardAlgorithm::kAtomic;
  const size_t total =
      accumulator_at + (atomic ? rows * static_cast<size_t>(head_dim) * sizeof(float) : 0);
  char* workspace = state_->workspace_of(total);

  float negative_infinity = -std::numeric_limits<float>::infinity();
  float one = 1.0f;
  std::vector<int64_t> uids = {kQ,  kK,  kV,  kO,     kDO,     kStats,           kDQ,
                               kDK, kDV, kScale, kOne, kNegativeInfinity, kRowTerm};
  std::vector<void*> pointers = {
      const_cast<uint16_t*>(q),   const_cast<uint16_t*>(k),    const_cast<uint16_t*>(v),
      const_cast<uint16_t*>(out), const_cast<uint16_t*>(dout), const_cast<float*>(lse),
      dq,                         dk,                          dv,
      &scale,                     &one,                        &negative_infinity,
      workspace + row_term_at};
  if (atomic) {
    uids.push_back(kDQAccumulator);
    pointers.push_back(workspace + accumulator_at);
  }
  state_->execute(plan, uids, std::move(pointers), workspace, stream);
}

}  // namespace baleine::kernels::cuda
