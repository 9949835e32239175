// The grouped expert GEMMs of kernels/cuda/grouped_gemm.h: one cublasGemmGroupedBatchedEx per
// call, or a loop of cuBLASLt GEMMs (the header says when). Host code only: cuBLAS launches the
// kernels.
//
// Each expert's product is first written as a row-major GEMM, exactly as kernels/gemm.h's
// linear_* form it (ExpertGemm); the loop hands it to GemmContext as is, and the grouped call
// turns it into cuBLAS's column-major terms as kernels/cuda/gemm.cu does: Cᵀ = op(B)ᵀ·op(A)ᵀ,
// so cuBLAS's A is our B (transposed iff trans_b), its B our A, and its m, n, k our N, M, K.
#include <cublasLt.h>  // before check.h, which names cuBLAS statuses with cublasLtGetStatusName
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

// Calls that may be in flight before the host waits for the oldest; each slot holds 3 pointers
// per expert (24 B), so the ring is a few KiB for any realistic expert count.
constexpr int kPointerSlots = 16;
constexpr int64_t kMinExpertsPerSlot = 64;  // the first capacity; it doubles when outgrown

enum class Pass { kForward, kBackwardInput, kBackwardWeight };

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::kForward: return "grouped_linear_forward";
    case Pass::kBackwardInput: return "grouped_linear_backward_input";
    case Pass::kBackwardWeight: return "grouped_linear_backward_weight";
  }
  return "grouped_linear_?";
}

// One expert's product in kernels/gemm.h's row-major terms: C [M, N] = op(A)·op(B) + beta·C.
struct ExpertGemm {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  const void* A = nullptr;
  int64_t lda = 0;
  const void* B = nullptr;
  int64_t ldb = 0;
  void* C = nullptr;
  int64_t ldc = 0;
};

// Whether cublasGemmGroupedBatchedEx takes a type combination: unknown until a first call.
enum class Support { kUnknown, kYes, kNo };

// Pinned host and device arrays of kPointerSlots slots, each [A pointers, B pointers, C pointers]
// of `capacity` entries, and the event that says when a slot's last call no longer reads it.
struct PointerRing {
  int64_t capacity = 0;
  void** host = nullptr;
  void** device = nullptr;
  std::array<cudaEvent_t, kPointerSlots> done{};
  std::array<bool, kPointerSlots> in_flight{};
  int next = 0;

  void** host_slot(int slot) const { return host + int64_t(slot) * 3 * capacity; }
  void** device_slot(int slot) const { return device + int64_t(slot) * 3 * capacity; }
};

}  // namespace

struct GroupedGemmContext::State {
  GemmContext dense;  // declared first: destroyed last, after the handle that borrows its workspace
  int device = 0;
  cublasHandle_t handle = nullptr;
  bool force_loop = false;
  GroupedGemmPath last_path = GroupedGemmPath::kNone;
  int64_t own_allocations = 0;
  PointerRing ring;
  std::map<std::array<int, 3>, Support> support;  // by (operand type, C type, compute type)

  // Per-call host arrays, kept to reuse their storage.
  std::vector<ExpertGemm> problems;
  std::vector<cublasOperation_t> trans_a, trans_b;
  std::vector<int> m, n, k, lda, ldb, ldc, group_size;
  std::vector<float> alpha, beta;

  explicit State(GemmMath math) : dense(math) {}
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    for (int slot = 0; slot < kPointerSlots; ++slot) {
      if (ring.in_flight[slot]) BALEINE_CUDA_CALL_WARN(cudaEventSynchronize(ring.done[slot]));
    }
    if (ring.host != nullptr) BALEINE_CUDA_CALL_WARN(cudaFreeHost(ring.host));
    if (ring.device != nullptr) BALEINE_CUDA_CALL_WARN(cudaFree(ring.device));
    for (cudaEvent_t event : ring.done) {
      if (event != nullptr) BALEINE_CUDA_CALL_WARN(cudaEventDestroy(event));
    }
    if (handle != nullptr) cublasDestroy(handle);
  }
};

namespace {

using State = GroupedGemmContext::State;

template <typename T>
constexpr cudaDataType_t data_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, uint16_t>, "FP32 or BF16 bits");
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

template <typename In>
cublasComputeType_t compute_type(const State& s) {
  return std::is_same_v<In, float> && s.dense.math() == GemmMath::kTf32
             ? CUBLAS_COMPUTE_32F_FAST_TF32
             : CUBLAS_COMPUTE_32F;
}

[[noreturn]] void fail(Pass pass, int64_t experts, int64_t K, int64_t N, const std::string& what) {
  throw std::invalid_argument(std::string(pass_name(pass)) + " (E=" + std::to_string(experts) +
                              " K=" + std::to_string(K) + " N=" + std::to_string(N) +
                              "): " + what);
}

// s.problems = the products of `pass` that have something to do: `act` is x (forward) or dy,
// `other` is w (forward, backward input) or x (backward weight), `out` is y, dx or dw.
template <typename In, typename Out>
void collect_problems(State& s, Pass pass, const ExpertRows& rows, const In* act,
                      const In* other, Out* out, int64_t K, int64_t N, bool accumulate) {
  int current = -1;
  BALEINE_CUDA_CALL(cudaGetDevice(&current));
  if (current != s.device) {
    fail(pass, rows.experts, K, N,
         "the GroupedGemmContext belongs to CUDA device " + std::to_string(s.device) +
             " but device " + std::to_string(current) + " is current");
  }
  if (K < 0 || N < 0 || rows.experts < 0) fail(pass, rows.experts, K, N, "negative size");
  if (rows.experts > 0 && rows.offsets == nullptr) {
    fail(pass, rows.experts, K, N, "the row offsets are null");
  }
  for (int64_t e = 0; e < rows.experts; ++e) {
    if (rows.offsets[e] < 0 || rows.rows(e) < 0) {
      fail(pass, rows.experts, K, N,
           "row offsets must be non-negative and non-decreasing; expert " + std::to_string(e) +
               " has [" + std::to_string(rows.offsets[e]) + ", " +
               std::to_string(rows.offsets[e + 1]) + ")");
    }
  }

  s.problems.clear();
  for (int64_t e = 0; e < rows.experts; ++e) {
    const int64_t first = rows.offsets[e], m = rows.rows(e);
    ExpertGemm g;
    switch (pass) {
      case Pass::kForward:  // y_e [m, N] = x_e [m, K] · w_e [N, K]ᵀ
        g.trans_b = true;
        g.M = m, g.N = N, g.K = K;
        break;
      case Pass::kBackwardInput:  // dx_e [m, K] = dy_e [m, N] · w_e [N, K]
        g.M = m, g.N = K, g.K = N;
        break;
      case Pass::kBackwardWeight:  // dw_e [N, K] += dy_e [m, N]ᵀ · x_e [m, K]
        g.trans_a = true;
        g.M = N, g.N = K, g.K = m;
        break;
    }
    // Nothing to write, or (accumulating) nothing to add.
    if (g.M == 0 || g.N == 0 || (accumulate && g.K == 0)) continue;
    if (out == nullptr) fail(pass, rows.experts, K, N, "the output is null");
    if (g.K > 0 && (act == nullptr || other == nullptr)) {
      fail(pass, rows.experts, K, N, "an operand is null");
    }
    switch (pass) {
      case Pass::kForward:
        g.A = act + first * K, g.lda = K;
        g.B = other + e * N * K, g.ldb = K;
        g.C = out + first * N, g.ldc = N;
        break;
      case Pass::kBackwardInput:
        g.A = act + first * N, g.lda = N;
        g.B = other + e * N * K, g.ldb = K;
        g.C = out + first * K, g.ldc = K;
        break;
      case Pass::kBackwardWeight:
        g.A = act + first * N, g.lda = N;
        g.B = other + first * K, g.ldb = K;
        g.C = out + e * N * K, g.ldc = K;
        break;
    }
    s.problems.push_back(g);
  }
}

// Whether every product suits the grouped kernels (see the header): 16-byte aligned matrices and
// row strides, a product to form (K > 0: C = beta·C is the loop's job), 32-bit sizes.
template <typename In, typename Out>
bool grouped_can_run(const std::vector<ExpertGemm>& problems) {
  constexpr int64_t in_bytes = sizeof(In), out_bytes = sizeof(Out);
  for (const ExpertGemm& p : problems) {
    if (p.K == 0) return false;
    if (!is_aligned(p.A, 16) || !is_aligned(p.B, 16) || !is_aligned(p.C, 16)) return false;
    if ((p.lda * in_bytes) % 16 != 0 || (p.ldb * in_bytes) % 16 != 0 ||
        (p.ldc * out_bytes) % 16 != 0) {
      return false;
    }
    if (std::max({p.M, p.N, p.K, p.lda, p.ldb, p.ldc}) > INT_MAX) return false;
  }
  return true;
}

// Room for `experts` pointers of each kind in every slot. Growing waits for the slots in flight,
// whose calls still read the old arrays.
void reserve_pointer_slots(State& s, int64_t experts) {
  PointerRing& r = s.ring;
  if (experts <= r.capacity) return;
  int64_t capacity = std::max(kMinExpertsPerSlot, 2 * r.capacity);
  while (capacity < experts) capacity *= 2;
  for (int slot = 0; slot < kPointerSlots; ++slot) {
    if (r.in_flight[slot]) BALEINE_CUDA_CALL(cudaEventSynchronize(r.done[slot]));
    r.in_flight[slot] = false;
  }
  if (r.host != nullptr) BALEINE_CUDA_CALL(cudaFreeHost(r.host));
  if (r.device != nullptr) BALEINE_CUDA_CALL(cudaFree(r.device));
  r.host = r.device = nullptr;
  r.capacity = 0;
  const size_t bytes = sizeof(void*) * 3 * static_cast<size_t>(capacity) * kPointerSlots;
  void* host = nullptr;
  BALEINE_CUDA_CALL(cudaHostAlloc(&host, bytes, cudaHostAllocDefault));
  r.host = static_cast<void**>(host);
  s.own_allocations += 1;
  void* device = nullptr;
  BALEINE_CUDA_CALL(cudaMalloc(&device, bytes));
  r.device = static_cast<void**>(device);
  s.own_allocations += 1;
  r.capacity = capacity;
}

// The next slot, once no call reads it any more (the host blocks only if the GPU is a whole ring
// of calls behind).
int take_pointer_slot(PointerRing& r) {
  const int slot = r.next;
  r.next = (r.next + 1) % kPointerSlots;
  if (r.in_flight[slot]) {
    BALEINE_CUDA_CALL(cudaEventSynchronize(r.done[slot]));
    r.in_flight[slot] = false;
  }
  return slot;
}

// One cublasGemmGroupedBatchedEx for s.problems; false when cuBLAS does not take this type
// combination (then nothing but a pointer copy was enqueued, and the caller runs the loop).
template <typename In, typename Out>
bool run_grouped(State& s, float beta, cudaStream_t stream) {
  const cudaDataType_t ab_type = data_type<In>(), c_type = data_type<Out>();
  const cublasComputeType_t compute = compute_type<In>(s);
  Support& support = s.support[{int(ab_type), int(c_type), int(compute)}];
  if (support == Support::kNo) return false;

  const int64_t groups = static_cast<int64_t>(s.problems.size());
  reserve_pointer_slots(s, groups);
  PointerRing& r = s.ring;
  const int slot = take_pointer_slot(r);
  void** host = r.host_slot(slot);
  const size_t count = static_cast<size_t>(groups);
  for (auto* v : {&s.m, &s.n, &s.k, &s.lda, &s.ldb, &s.ldc, &s.group_size}) v->resize(count);
  s.trans_a.resize(count);
  s.trans_b.resize(count);
  s.alpha.assign(count, 1.0f);
  s.beta.assign(count, beta);
  for (size_t g = 0; g < count; ++g) {
    const ExpertGemm& p = s.problems[g];
    // cuBLAS's A, B, C (column-major): our B, A, C; cast away const for the one pointer array.
    host[g] = const_cast<void*>(p.B);
    host[count + g] = const_cast<void*>(p.A);
    host[2 * count + g] = p.C;
    s.trans_a[g] = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    s.trans_b[g] = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    s.m[g] = static_cast<int>(p.N);
    s.n[g] = static_cast<int>(p.M);
    s.k[g] = static_cast<int>(p.K);
    s.lda[g] = static_cast<int>(p.ldb);
    s.ldb[g] = static_cast<int>(p.lda);
    s.ldc[g] = static_cast<int>(p.ldc);
    s.group_size[g] = 1;  // every expert its own group: its own m
  }
  BALEINE_CUBLAS_CALL(cublasSetStream(s.handle, stream));
  // cublasSetStream puts the handle back on cuBLAS's own workspace pool: lend ours after it.
  BALEINE_CUBLAS_CALL(
      cublasSetWorkspace(s.handle, s.dense.workspace(), s.dense.workspace_bytes()));
  // From the copy on, nothing throws before the slot's event is recorded.
  void** device = r.device_slot(slot);
  BALEINE_CUDA_CALL(cudaMemcpyAsync(device, host, sizeof(void*) * 3 * count,
                                    cudaMemcpyHostToDevice, stream));
  const cublasStatus_t status = cublasGemmGroupedBatchedEx(
      s.handle, s.trans_a.data(), s.trans_b.data(), s.m.data(), s.n.data(), s.k.data(),
      s.alpha.data(), device, ab_type, s.lda.data(), device + count, ab_type, s.ldb.data(),
      s.beta.data(), device + 2 * count, c_type, s.ldc.data(), static_cast<int>(groups),
      s.group_size.data(), compute);
  // Recorded whatever the status: the copy into the slot was enqueued either way.
  BALEINE_CUDA_CALL(cudaEventRecord(r.done[slot], stream));
  r.in_flight[slot] = true;

  if (status == CUBLAS_STATUS_SUCCESS) {
    support = Support::kYes;
    return true;
  }
  const bool refused = status == CUBLAS_STATUS_NOT_SUPPORTED ||
                       status == CUBLAS_STATUS_INVALID_VALUE ||
                       status == CUBLAS_STATUS_ARCH_MISMATCH;
  if (support == Support::kUnknown && refused) {
    support = Support::kNo;
    return false;
  }
  throw std::runtime_error(std::string("cublasGemmGroupedBatchedEx failed: ") +
                           cublasLtGetStatusName(status) + " (" +
                           cublasLtGetStatusString(status) + ") for " + std::to_string(groups) +
                           " experts, first " + std::to_string(s.problems[0].M) + "x" +
                           std::to_string(s.problems[0].N) + "x" +
                           std::to_string(s.problems[0].K));
}

template <typename In, typename Out>
void run_loop(State& s, float beta, cudaStream_t stream) {
  for (const ExpertGemm& p : s.problems) {
    s.dense.gemm(p.trans_a, p.trans_b, p.M, p.N, p.K, 1.0f, static_cast<const In*>(p.A), p.lda,
                 static_cast<const In*>(p.B), p.ldb, beta, static_cast<Out*>(p.C), p.ldc,
                 stream);
  }
}

template <typename In, typename Out>
void run_pass(GroupedGemmContext& context, Pass pass, const ExpertRows& rows, const In* act,
              const In* other, Out* out, int64_t K, int64_t N, cudaStream_t stream,
              bool accumulate_input = false) {
  NvtxRange range(pass_name(pass));
  State& s = context.state();
  const bool accumulate = pass == Pass::kBackwardWeight || accumulate_input;
  collect_problems(s, pass, rows, act, other, out, K, N, accumulate);
  if (s.problems.empty()) {
    s.last_path = GroupedGemmPath::kNone;
    return;
  }
  const float beta = accumulate ? 1.0f : 0.0f;
  if (!s.force_loop && grouped_can_run<In, Out>(s.problems) &&
      run_grouped<In, Out>(s, beta, stream)) {
    s.last_path = GroupedGemmPath::kGrouped;
    return;
  }
  run_loop<In, Out>(s, beta, stream);
  s.last_path = GroupedGemmPath::kLoop;
}

}  // namespace

// ---- public ------------------------------------------------------------------------------------

const char* grouped_gemm_path_name(GroupedGemmPath path) {
  switch (path) {
    case GroupedGemmPath::kNone: return "none";
    case GroupedGemmPath::kGrouped: return "grouped";
    case GroupedGemmPath::kLoop: return "loop";
  }
  return "?";
}

GroupedGemmContext::GroupedGemmContext(GemmMath math) : state_(std::make_unique<State>(math)) {
  State& s = *state_;
  s.device = s.dense.device();
  BALEINE_CUBLAS_CALL(cublasCreate(&s.handle));
  BALEINE_CUBLAS_CALL(cublasSetPointerMode(s.handle, CUBLAS_POINTER_MODE_HOST));
  // The compute type of each call decides TF32; the handle's math mode must not allow it too.
  BALEINE_CUBLAS_CALL(cublasSetMathMode(s.handle, CUBLAS_DEFAULT_MATH));
  for (cudaEvent_t& event : s.ring.done) {
    BALEINE_CUDA_CALL(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
}

GroupedGemmContext::~GroupedGemmContext() = default;

int GroupedGemmContext::device() const { return state_->device; }
GemmMath GroupedGemmContext::math() const { return state_->dense.math(); }
void GroupedGemmContext::set_math(GemmMath math) { state_->dense.set_math(math); }
void GroupedGemmContext::force_loop(bool loop) { state_->force_loop = loop; }
GroupedGemmPath GroupedGemmContext::last_path() const { return state_->last_path; }
int64_t GroupedGemmContext::device_allocations() const {
  return state_->own_allocations + state_->dense.device_allocations();
}
GemmContext& GroupedGemmContext::dense() { return state_->dense; }

void grouped_linear_forward(GroupedGemmContext& context, const ExpertRows& rows, const float* x,
                            const float* w, float* y, int64_t K, int64_t N,
                            cudaStream_t stream) {
  run_pass(context, Pass::kForward, rows, x, w, y, K, N, stream);
}
void grouped_linear_forward(GroupedGemmContext& context, const ExpertRows& rows,
                            const uint16_t* x, const uint16_t* w, float* y, int64_t K, int64_t N,
                            cudaStream_t stream) {
  run_pass(context, Pass::kForward, rows, x, w, y, K, N, stream);
}
void grouped_linear_forward(GroupedGemmContext& context, const ExpertRows& rows,
                            const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t K,
                            int64_t N, cudaStream_t stream) {
  run_pass(context, Pass::kForward, rows, x, w, y, K, N, stream);
}

void grouped_linear_backward_input(GroupedGemmContext& context, const ExpertRows& rows,
                                   const float* dy, const float* w, float* dx, int64_t K,
                                   int64_t N, cudaStream_t stream, bool accumulate) {
  run_pass(context, Pass::kBackwardInput, rows, dy, w, dx, K, N, stream, accumulate);
}
void grouped_linear_backward_input(GroupedGemmContext& context, const ExpertRows& rows,
                                   const uint16_t* dy, const uint16_t* w, float* dx, int64_t K,
                                   int64_t N, cudaStream_t stream, bool accumulate) {
  run_pass(context, Pass::kBackwardInput, rows, dy, w, dx, K, N, stream, accumulate);
}
void grouped_linear_backward_input(GroupedGemmContext& context, const ExpertRows& rows,
                                   const uint16_t* dy, const uint16_t* w, uint16_t* dx,
                                   int64_t K, int64_t N, cudaStream_t stream, bool accumulate) {
  run_pass(context, Pass::kBackwardInput, rows, dy, w, dx, K, N, stream, accumulate);
}

void grouped_linear_backward_weight(GroupedGemmContext& context, const ExpertRows& rows,
                                    const float* dy, const float* x, float* dw, int64_t K,
                                    int64_t N, cudaStream_t stream) {
  run_pass(context, Pass::kBackwardWeight, rows, dy, x, dw, K, N, stream);
}
void grouped_linear_backward_weight(GroupedGemmContext& context, const ExpertRows& rows,
                                    const uint16_t* dy, const uint16_t* x, float* dw, int64_t K,
                                    int64_t N, cudaStream_t stream) {
  run_pass(context, Pass::kBackwardWeight, rows, dy, x, dw, K, N, stream);
}
void grouped_linear_backward_weight(GroupedGemmContext& context, const ExpertRows& rows,
                                    const uint16_t* dy, const uint16_t* x, uint16_t* dw,
                                    int64_t K, int64_t N, cudaStream_t stream) {
  run_pass(context, Pass::kBackwardWeight, rows, dy, x, dw, K, N, stream);
}

}  // namespace baleine::kernels::cuda
