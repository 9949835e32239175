#pragma once
// Causal scaled dot-product attention through cuDNN's fused flash-attention engines, BF16 in and
// out: the cuDNN twin of kernels/cuda/attention.h (our own FP32 kernel), with the same layouts
//   q, k, v, out, dout, dq, dk, dv  [batch, seq, heads, head_dim] contiguous, as BF16 bits,
//   lse                             [batch, heads, seq] FP32, lse_i = ln Σ_{j<=i} e^(scale·q_i·k_j)
// so either can serve the model; a caller asks supported() and falls back to ours when it says no.
//
// How (cuDNN 9 backend graph API; graphs in kernels/cuda/cudnn_attention_graph.cpp, plans and
// execution in kernels/cuda/cudnn_attention.cpp): cuDNN 9.19, the version baleine builds against,
// has dedicated SDPA operation nodes (CUDNN_BACKEND_OPERATION_SDPA_FWD / _BWD_DESCRIPTOR), but
// their attributes (cudnn_graph.h) include no mask: cudnn-frontend reaches a causal mask on them
// only through a score-modifier subgraph attribute that appears in cuDNN 9.21, and proposes its
// "unified" backward from 9.27. So this builds the composite graph cudnn-frontend lowers its SDPA
// node to for these versions, which cuDNN's flash-attention engines recognise as a whole: Q·Kᵀ
// (FP32), × scale, causal mask (row index >= column index, else -inf), softmax written out as
// max / sub / exp / sum / div with Stats = max + log(sum), P·V; and the matching backward
// (dV = Pᵀ·dO, dS = P ⊙ (dO·Vᵀ − Σ dO⊙O) · scale, dK = dSᵀ·Q, dQ = dS·K).
//
// Stats = lse: the forward graph's Stats output is max_j s_ij + ln Σ_j exp(s_ij − max_j s_ij) over
// the scaled, masked scores s_ij (CUDNN_POINTWISE_LOG is the natural logarithm; cudnn-frontend's
// base-2 Stats are an opt-in of cuDNN 9.27+ that this graph does not use), FP32 [b, h, s, 1] with
// strides [h·s, s, 1, 1]: exactly our lse [batch, heads, seq]. The backward takes it back.
//
// Numerics: Q·Kᵀ, the softmax and every accumulation are FP32, but P (and dS) are rounded to BF16
// before their matmuls, as in every flash-attention kernel, and the outputs are BF16: expect
// ~1e-3 relative differences from the FP32 kernel (tests/kernels/cudnn_attention_cuda_test.cpp).
//
// Backward algorithm: kDeterministic (the default) builds the graph in which dQ = dS·K writes dQ
// itself, the one cudnn-frontend builds for its deterministic mode: cuDNN then keeps dS in a
// workspace of batch·heads·seq²·2 bytes (32 MiB at seq 1024 with 16 heads; 4 GiB for DeepSeek-V3's
// 128 heads at seq 4096) and forms dQ from it in a fixed order, so two runs give the same bits.
// kAtomic builds the graph with an FP32 dQ accumulator that the engine adds into with atomics
// (cudnn-frontend's default): less memory (cuDNN asks for at most batch·heads·seq·head_dim·4
// bytes) and no dS round trip through it, but not bitwise repeatable.
//
// Support: sm_80+, cuDNN >= 9.0 (not 9.10.0/9.10.1, whose BF16 attention NVIDIA lists as broken),
// head_dim a multiple of 8 up to 128 (the backward's limit before Hopper), seq >= 2 (cudnn-frontend
// refuses the backward at seq 1, and so do we), and cuDNN building both graphs for the shape.
// Every pointer must be 16-byte aligned (the tensors are declared so; the arena's blocks are).
//
// Bound to the device current at construction. Not thread-safe, and the workspace is shared by
// every call: use one object per stream, or order the streams. This header needs no CUDA headers.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

enum class CudnnBackwardAlgorithm {
  kDeterministic,  // same bits every run; a batch·heads·seq² BF16 workspace
  kAtomic,         // FP32 dQ accumulated with atomics; faster, not bitwise repeatable
};

// One cached pair of cuDNN execution plans (forward and backward) per shape (batch, seq, heads,
// head_dim), built on first use; the scale is a by-value input, so it may change between calls.
class CudnnAttention {
 public:
  // Creates the cuDNN handle on the current device. Never throws for "cuDNN cannot run here"
  // (no GPU, an old GPU or cuDNN): supported() says no and why_not() says why.
  explicit CudnnAttention(
      CudnnBackwardAlgorithm backward = CudnnBackwardAlgorithm::kDeterministic);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Whether cuDNN runs this shape here (see "Support" above). The first call per shape builds both
  // graphs and finalizes their plans, which compiles cuDNN's kernels for the shape at run time
  // (NVRTC: about half a second of host time per plan); the answer is cached, a refusal included,
  // so no shape is built twice. forward() and backward() build on first use too.
  bool supported(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim);
  // The last reason supported() said no: the check or the cuDNN step that failed, with cuDNN's
  // status string and its last error message. Empty before any refusal.
  std::string why_not() const;

  // out and lse overwritten. scale is usually 1/√head_dim (the caller's choice). Asynchronous on
  // `stream`. batch, seq or heads <= 0 is a no-op; an unsupported shape or a misaligned pointer
  // throws std::invalid_argument (with why_not()); a cuDNN failure at execution throws
  // std::runtime_error with cuDNN's status string.
  void forward(const uint16_t* q, const uint16_t* k, const uint16_t* v, uint16_t* out, float* lse,
               int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
               cudaStream_t stream);
  // dq, dk, dv overwritten; out and lse are the forward's, scale the same. Errors as forward().
  void backward(const uint16_t* dout, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                const uint16_t* out, const float* lse, uint16_t* dq, uint16_t* dk, uint16_t* dv,
                int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                cudaStream_t stream);

  CudnnBackwardAlgorithm backward_algorithm() const;
  // The device workspace: one buffer, grown (never shrunk) to the largest plan run so far plus
  // the backward's FP32 row sums (and dQ accumulator for kAtomic); cudaMalloc calls so far.
  size_t workspace_bytes() const;
  int64_t device_allocations() const;

  struct State;  // defined in kernels/cuda/cudnn_attention.cpp

 private:
  std::unique_ptr<State> state_;
};

}  // namespace baleine::kernels::cuda
