// cuDNN flash attention (kernels/cuda/cudnn_attention.h): per shape, the two graphs of
// kernels/cuda/cudnn_attention_graph.cpp turned into execution plans (cuDNN's heuristics, first
// configuration that finalizes), cached with the reason when cuDNN declines; execution binds the
// caller's tensors, the by-value scalars and a grown-only device workspace by uid.
#include "kernels/cuda/cudnn_attention.h"

#include <cuda_runtime_api.h>
#include <cudnn_graph.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cudnn_attention_graph.h"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

// Descriptor, Graph, Shape, the Uid constants, check(), describe(), last_cudnn_message().
using namespace cudnn_attention_detail;

constexpr int64_t kMaxHeadDim = 128;
constexpr size_t kWorkspaceAlign = 256;  // between the workspace's parts

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
  // Kept when no configuration is proposed: cuDNN's last message then says which rule failed.
  std::string failure = name + ": cuDNN's heuristics proposed no engine for this graph";
  const std::vector<Descriptor> configs = engine_configs(op_graph, name);
  if (configs.empty()) failure += " (" + last_cudnn_message() + ")";
  for (const Descriptor& config : configs) {
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
  // cudnn-frontend refuses s_q = s_kv = 1 in the backward (sdpa_support_surface.h); follow it.
  if (x.s < 2) return dims + ": cudnn-frontend refuses the attention backward at seq 1";
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
    if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(kTensorAlignment) != 0)
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

  // Runs a plan with its non-virtual tensors bound by uid: device pointers, or for the by-value
  // scalars host pointers (cuDNN reads those during the call).
  void execute(const Plan& plan, const std::vector<std::pair<int64_t, void*>>& bindings,
               void* cudnn_workspace, cudaStream_t stream) {
    std::vector<int64_t> uids;
    std::vector<void*> pointers;
    for (const auto& [uid, pointer] : bindings) {
      uids.push_back(uid);
      pointers.push_back(pointer);
    }
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
  state_->execute(plan,
                  {{kQ, const_cast<uint16_t*>(q)},
                   {kK, const_cast<uint16_t*>(k)},
                   {kV, const_cast<uint16_t*>(v)},
                   {kO, out},
                   {kStats, lse},
                   {kScale, &scale},
                   {kNegativeInfinity, &negative_infinity}},
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
  std::vector<std::pair<int64_t, void*>> bindings = {
      {kQ, const_cast<uint16_t*>(q)},
      {kK, const_cast<uint16_t*>(k)},
      {kV, const_cast<uint16_t*>(v)},
      {kO, const_cast<uint16_t*>(out)},
      {kDO, const_cast<uint16_t*>(dout)},
      {kStats, const_cast<float*>(lse)},
      {kDQ, dq},
      {kDK, dk},
      {kDV, dv},
      {kScale, &scale},
      {kOne, &one},
      {kNegativeInfinity, &negative_infinity},
      {kRowTerm, workspace + row_term_at}};
  if (atomic) bindings.emplace_back(kDQAccumulator, workspace + accumulator_at);
  state_->execute(plan, bindings, workspace, stream);
}

}  // namespace baleine::kernels::cuda
