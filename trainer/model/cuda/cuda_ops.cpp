#include "trainer/model/cuda/cuda_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/fp8_dequantize.h"
#include "kernels/cuda/fp8_quantize.h"
#include "kernels/cuda/moe_dispatch.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/routing.h"
#include "kernels/cuda/swiglu.h"
#include "trainer/model/expert_wire.h"

namespace baleine::model::cuda {

namespace k = baleine::kernels;
namespace kc = baleine::kernels::cuda;

namespace {

k::Fp8ScaleOptions scale_options(k::Fp8Format format, bool power_of_two) {
  k::Fp8ScaleOptions o;
  o.format = format;
  o.power_of_two = power_of_two;
  return o;
}

const uint16_t* as_bf16(const uint8_t* bytes) { return reinterpret_cast<const uint16_t*>(bytes); }

}  // namespace

CudaOps::CudaOps(CudaMemory& memory) : memory_(memory), stream_(memory.stream()) {}

CudaOps::~CudaOps() = default;

template <typename T>
T* CudaOps::scratch(Slot slot, int64_t count) {
  const size_t bytes = sizeof(T) * static_cast<size_t>(std::max<int64_t>(count, 1));
  kc::DeviceBuffer<uint8_t>& b = slots_[slot];
  if (b.bytes() < bytes) {
    b = kc::DeviceBuffer<uint8_t>(memory_.arena(), static_cast<int64_t>(bytes), stream_);
  }
  return reinterpret_cast<T*>(b.data());
}

k::Fp8View CudaOps::quantize(const float* x, int64_t rows, int64_t cols, k::Fp8Tile tile,
                             k::Fp8Format format, bool power_of_two, bool transposed, Slot codes,
                             Slot scales) {
  uint8_t* c = scratch<uint8_t>(codes, rows * cols);
  float* s = scratch<float>(scales, kc::fp8_scale_count(rows, cols, tile));
  const auto options = scale_options(format, power_of_two);
  return transposed ? kc::fp8_quantize_transposed(x, rows, cols, tile, options, c, s, stream_)
                    : kc::fp8_quantize(x, rows, cols, tile, options, c, s, stream_);
}

// ---- Linears ---------------------------------------------------------------------------------

void CudaOps::store_linear_input(LinearInput<float>& in, int64_t first, const float* x,
                                 int64_t count, const LinearFormat& f) {
  if (count == 0) return;
  const int64_t cols = in.cols, n = count * cols;
  switch (in.precision) {
    case LinearPrecision::kFp32:
      memory_.copy(in.values.data() + first * cols, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case LinearPrecision::kBf16:
      kc::float_to_bf16(x, in.bf16.data() + first * cols, n, stream_);
      return;
    case LinearPrecision::kFp8: {
      // 1×tile tiles never span rows, so a block of rows quantizes in place.
      const k::Fp8Tile tile{1, f.tile};
      const int64_t tiles_per_row = (cols + f.tile - 1) / f.tile;
      kc::fp8_quantize(x, count, cols, tile, scale_options(f.forward_format, f.power_of_two),
                       in.fp8.codes.data() + first * cols,
                       in.fp8.scales.data() + first * tiles_per_row, stream_);
      return;
    }
  }
}

void CudaOps::linear_fprop(const LinearFormat& f, const LinearInputView<float>& x,
                           const float* w, float* y, int64_t M, int64_t K, int64_t N) {
  if (M == 0) return;
  switch (f.precision) {
    case LinearPrecision::kFp32: kc::linear_forward(gemm_, x.values, w, y, M, K, N, stream_); return;
    case LinearPrecision::kBf16: {
      kc::linear_forward(gemm_, x.bf16, bf16_copy(w, N * K, kOperandB), y, M, K, N, stream_);
      return;
    }
    case LinearPrecision::kFp8: {
      const k::Fp8View wq = quantize(w, N, K, {f.tile, f.tile}, f.forward_format,
                                     f.power_of_two, false, kOperandB, kScalesB);
      k::cuda_fp8_gemm_tn(x.fp8, wq, y, false, fp8_gemm_, stream_);
      return;
    }
  }
}

void CudaOps::linear_dgrad(const LinearFormat& f, const float* dy, const float* w, float* dx,
                           int64_t M, int64_t K, int64_t N, bool accumulate) {
  if (M == 0) return;
  const float beta = accumulate ? 1.0f : 0.0f;
  switch (f.precision) {
    case LinearPrecision::kFp32:
      gemm_.gemm(false, false, M, K, N, 1.0f, dy, N, w, K, beta, dx, K, stream_);
      return;
    case LinearPrecision::kBf16: {
      const uint16_t* dy16 = bf16_copy(dy, M * N, kOperandA);
      const uint16_t* w16 = bf16_copy(w, N * K, kOperandB);
      gemm_.gemm(false, false, M, K, N, 1.0f, dy16, N, w16, K, beta, dx, K, stream_);
      return;
    }
    case LinearPrecision::kFp8: {
      const k::Fp8View dyq = quantize(dy, M, N, {1, f.tile}, f.gradient_format, f.power_of_two,
                                      false, kOperandA, kScalesA);
      // Wᵀ [K, N] in the same tile×tile blocks.
      const k::Fp8View wq = quantize(w, N, K, {f.tile, f.tile}, f.forward_format,
                                     f.power_of_two, true, kOperandB, kScalesB);
      k::cuda_fp8_gemm_tn(dyq, wq, dx, accumulate, fp8_gemm_, stream_);
      return;
    }
  }
}

void CudaOps::linear_wgrad(const LinearFormat& f, const float* dy, const LinearInputView<float>& x,
                           float* dw, int64_t M, int64_t K, int64_t N) {
  if (M == 0) return;
  switch (f.precision) {
    case LinearPrecision::kFp32:
      kc::linear_backward_weight(gemm_, dy, x.values, dw, M, K, N, stream_);
      return;
    case LinearPrecision::kBf16: {
      kc::linear_backward_weight(gemm_, bf16_copy(dy, M * N, kOperandA), x.bf16, dw, M, K, N,
                                 stream_);
      return;
    }
    case LinearPrecision::kFp8: {
      // Both operands along the tokens (tile×1 tiles of dy and x); the cached 1×tile input is
      // dequantized and re-quantized, as the CPU emulation does.
      const k::Fp8View dyq = quantize(dy, M, N, {f.tile, 1}, f.gradient_format, f.power_of_two,
                                      true, kOperandA, kScalesA);
      float* xf = scratch<float>(kOperandC, M * K);
      kc::fp8_dequantize(x.fp8, xf, stream_);
      const k::Fp8View xq = quantize(xf, M, K, {f.tile, 1}, f.forward_format, f.power_of_two,
                                     true, kOperandB, kScalesB);
      k::cuda_fp8_gemm_tn(dyq, xq, dw, true, fp8_gemm_, stream_);
      return;
    }
  }
}

const uint16_t* CudaOps::bf16_copy(const float* x, int64_t n, Slot slot) {
  uint16_t* out = scratch<uint16_t>(slot, n);
  kc::float_to_bf16(x, out, n, stream_);
  return out;
}

const uint16_t* CudaOps::bf16_rows(const float* x, const int64_t* offsets, int64_t experts,
                                   int64_t cols, Slot slot) {
  const int64_t first = offsets[0], end = offsets[experts];
  uint16_t* out = scratch<uint16_t>(slot, end * cols);
  kc::float_to_bf16(x + first * cols, out + first * cols, (end - first) * cols, stream_);
  return out;
}

void CudaOps::grouped_linear_fprop(const LinearFormat& f, const int64_t* offsets,
                                   int64_t experts, const LinearInputView<float>& x,
                                   const float* w, float* y, int64_t K, int64_t N) {
  const kc::ExpertRows rows{offsets, experts};
  switch (f.precision) {
    case LinearPrecision::kFp32:
      kc::grouped_linear_forward(grouped_, rows, x.values, w, y, K, N, stream_);
      return;
    case LinearPrecision::kBf16: {
      kc::grouped_linear_forward(grouped_, rows, x.bf16, bf16_copy(w, experts * N * K, kOperandB),
                                 y, K, N, stream_);
      return;
    }
    case LinearPrecision::kFp8:
      Ops<float>::grouped_linear_fprop(f, offsets, experts, x, w, y, K, N);
      return;
  }
}

void CudaOps::grouped_linear_dgrad(const LinearFormat& f, const int64_t* offsets,
                                   int64_t experts, const float* dy, const float* w, float* dx,
                                   int64_t K, int64_t N, bool accumulate) {
  const kc::ExpertRows rows{offsets, experts};
  switch (f.precision) {
    case LinearPrecision::kFp32:
      kc::grouped_linear_backward_input(grouped_, rows, dy, w, dx, K, N, stream_, accumulate);
      return;
    case LinearPrecision::kBf16: {
      const uint16_t* dy16 = bf16_rows(dy, offsets, experts, N, kOperandA);
      const uint16_t* w16 = bf16_copy(w, experts * N * K, kOperandB);
      kc::grouped_linear_backward_input(grouped_, rows, dy16, w16, dx, K, N, stream_,
                                        accumulate);
      return;
    }
    case LinearPrecision::kFp8:
      Ops<float>::grouped_linear_dgrad(f, offsets, experts, dy, w, dx, K, N, accumulate);
      return;
  }
}

void CudaOps::grouped_linear_wgrad(const LinearFormat& f, const int64_t* offsets,
                                   int64_t experts, const float* dy,
                                   const LinearInputView<float>& x, float* dw, int64_t K,
                                   int64_t N) {
  const kc::ExpertRows rows{offsets, experts};
  switch (f.precision) {
    case LinearPrecision::kFp32:
      kc::grouped_linear_backward_weight(grouped_, rows, dy, x.values, dw, K, N, stream_);
      return;
    case LinearPrecision::kBf16:
      kc::grouped_linear_backward_weight(grouped_, rows,
                                         bf16_rows(dy, offsets, experts, N, kOperandA), x.bf16,
                                         dw, K, N, stream_);
      return;
    case LinearPrecision::kFp8:
      Ops<float>::grouped_linear_wgrad(f, offsets, experts, dy, x, dw, K, N);
      return;
  }
}

void CudaOps::linear_forward(const float* x, const float* w, float* y, int64_t M, int64_t K,
                             int64_t N) {
  kc::linear_forward(gemm_, x, w, y, M, K, N, stream_);
}

void CudaOps::linear_backward_input(const float* dy, const float* w, float* dx, int64_t M,
                                    int64_t K, int64_t N) {
  kc::linear_backward_input(gemm_, dy, w, dx, M, K, N, stream_);
}

void CudaOps::linear_backward_weight(const float* dy, const float* x, float* dw, int64_t M,
                                     int64_t K, int64_t N) {
  kc::linear_backward_weight(gemm_, dy, x, dw, M, K, N, stream_);
}

// ---- elementwise, norms, attention, loss ------------------------------------------------------

void CudaOps::add(const float* a, const float* b, float* out, int64_t n) {
  kc::add(a, b, out, n, stream_);
}

void CudaOps::swiglu_backward(const float* dh, const float* a, const float* b, float* da,
                              float* db, int64_t n) {
  kc::swiglu_backward(dh, a, b, da, db, n, stream_);
}

void CudaOps::swiglu_into_linear_input(const float* a, const float* b, LinearInput<float>& h,
                                       int64_t first, int64_t rows, const LinearFormat& f) {
  const int64_t n = rows * h.cols;
  if (h.precision == LinearPrecision::kFp32) {
    kc::swiglu_forward(a, b, h.values.data() + first * h.cols, n, stream_);
    return;
  }
  float* block = scratch<float>(kOperandC, n);
  kc::swiglu_forward(a, b, block, n, stream_);
  store_linear_input(h, first, block, rows, f);
}

void CudaOps::rmsnorm_forward(const float* x, const float* weight, float* y, float* rstd,
                              int64_t rows, int64_t dim, float eps) {
  kc::rmsnorm_forward(x, weight, y, rstd, rows, dim, eps, stream_);
}

void CudaOps::residual_rmsnorm_forward(const float* x, const float* branch, float* h,
                                       const float* weight, float* y, float* rstd, int64_t rows,
                                       int64_t dim, float eps) {
  kc::residual_rmsnorm_forward(x, branch, h, weight, y, rstd, rows, dim, eps, stream_);
}

void CudaOps::rmsnorm_backward(const float* dy, const float* x, const float* weight,
                               const float* rstd, float* dx, float* dweight, int64_t rows,
                               int64_t dim, const float* residual) {
  float* workspace =
      scratch<float>(kWorkspace, kc::rmsnorm_backward_workspace_floats(rows, dim));
  kc::rmsnorm_backward(dy, x, weight, rstd, dx, dweight, rows, dim, residual, workspace,
                       stream_);
}

const float* CudaOps::rope_table(int64_t seq, int64_t head_dim, float theta) {
  auto key = std::make_tuple(seq, head_dim, theta);
  auto it = rope_tables_.find(key);
  if (it == rope_tables_.end()) {
    kc::DeviceBuffer<float> table(memory_.arena(), kc::rope_table_floats(seq, head_dim), stream_);
    kc::rope_build_table(table.data(), seq, head_dim, theta, stream_);
    it = rope_tables_.emplace(key, std::move(table)).first;
  }
  return it->second.data();
}

void CudaOps::rope_forward(const float* x, float* y, int64_t batch, int64_t seq, int64_t heads,
                           int64_t head_dim, float theta) {
  kc::rope_forward(x, y, rope_table(seq, head_dim, theta), batch, seq, heads, head_dim, stream_);
}

void CudaOps::rope_backward(const float* dy, float* dx, int64_t batch, int64_t seq,
                            int64_t heads, int64_t head_dim, float theta) {
  kc::rope_backward(dy, dx, rope_table(seq, head_dim, theta), batch, seq, heads, head_dim,
                    stream_);
}

kc::CudnnAttention* CudaOps::cudnn_attention(AttentionCore core, int64_t batch, int64_t seq,
                                             int64_t heads, int64_t head_dim) {
  if (core != AttentionCore::kBf16) return nullptr;
  if (!cudnn_attention_) cudnn_attention_ = std::make_unique<kc::CudnnAttention>();
  if (cudnn_attention_->supported(batch, seq, heads, head_dim)) return cudnn_attention_.get();
  if (!cudnn_refusal_noted_) {
    std::fprintf(stderr,
                 "note: cuDNN fused attention does not run batch %lld, seq %lld, heads %lld, "
                 "head_dim %lld here (%s); using baleine's FP32 attention kernel\n",
                 static_cast<long long>(batch), static_cast<long long>(seq),
                 static_cast<long long>(heads), static_cast<long long>(head_dim),
                 cudnn_attention_->why_not().c_str());
    cudnn_refusal_noted_ = true;
  }
  return nullptr;
}

void CudaOps::attention_forward(const float* q, const float* k, const float* v, float* out,
                                float* lse, int64_t batch, int64_t seq, int64_t heads,
                                int64_t head_dim, AttentionCore core) {
  kc::CudnnAttention* cudnn = cudnn_attention(core, batch, seq, heads, head_dim);
  if (cudnn == nullptr) {
    kc::attention_forward(q, k, v, out, lse, batch, seq, heads, head_dim, stream_);
    return;
  }
  const int64_t n = batch * seq * heads * head_dim;
  uint16_t* bf16 = scratch<uint16_t>(kAttentionBf16, 4 * n);
  uint16_t *q16 = bf16, *k16 = bf16 + n, *v16 = bf16 + 2 * n, *out16 = bf16 + 3 * n;
  kc::float_to_bf16(q, q16, n, stream_);
  kc::float_to_bf16(k, k16, n, stream_);
  kc::float_to_bf16(v, v16, n, stream_);
  cudnn->forward(q16, k16, v16, out16, lse, batch, seq, heads, head_dim,
                 1.0f / std::sqrt(static_cast<float>(head_dim)), stream_);
  kc::bf16_to_float(out16, out, n, stream_);
}

void CudaOps::attention_backward(const float* dout, const float* q, const float* k,
                                 const float* v, const float* out, const float* lse, float* dq,
                                 float* dk, float* dv, int64_t batch, int64_t seq, int64_t heads,
                                 int64_t head_dim, AttentionCore core) {
  kc::CudnnAttention* cudnn = cudnn_attention(core, batch, seq, heads, head_dim);
  if (cudnn == nullptr) {
    float* workspace =
        scratch<float>(kWorkspace, kc::attention_backward_workspace_floats(batch, seq, heads));
    kc::attention_backward(dout, q, k, v, out, lse, dq, dk, dv, batch, seq, heads, head_dim,
                           workspace, stream_);
    return;
  }
  // out came from the BF16 forward, so its BF16 copy is the forward's own bits again.
  const int64_t n = batch * seq * heads * head_dim;
  uint16_t* bf16 = scratch<uint16_t>(kAttentionBf16, 8 * n);
  const float* inputs[] = {dout, q, k, v, out};
  for (int i = 0; i < 5; ++i) kc::float_to_bf16(inputs[i], bf16 + i * n, n, stream_);
  uint16_t *dq16 = bf16 + 5 * n, *dk16 = bf16 + 6 * n, *dv16 = bf16 + 7 * n;
  cudnn->backward(bf16, bf16 + n, bf16 + 2 * n, bf16 + 3 * n, bf16 + 4 * n, lse, dq16, dk16,
                  dv16, batch, seq, heads, head_dim,
                  1.0f / std::sqrt(static_cast<float>(head_dim)), stream_);
  kc::bf16_to_float(dq16, dq, n, stream_);
  kc::bf16_to_float(dk16, dk, n, stream_);
  kc::bf16_to_float(dv16, dv, n, stream_);
}

void CudaOps::embedding_forward(const int32_t* tokens, const float* table, float* out,
                                int64_t n_tokens, int64_t dim) {
  kc::embedding_forward(tokens, table, out, n_tokens, dim, stream_);
}

void CudaOps::embedding_backward(const int32_t* tokens, const float* dout, float* dtable,
                                 int64_t n_tokens, int64_t dim) {
  kc::embedding_backward(tokens, dout, dtable, n_tokens, dim, stream_);
}

double CudaOps::cross_entropy_forward(const float* logits, const int32_t* targets, float* lse,
                                      int64_t n, int64_t vocab) {
  if (losses_.size() < n + 1) losses_ = kc::DeviceBuffer<double>(memory_.arena(), n + 1, stream_);
  kc::cross_entropy_forward(logits, targets, lse, losses_.data(), losses_.data() + n, n, vocab,
                            stream_);
  double mean = 0;
  memory_.to_host(&mean, losses_.data() + n, sizeof(double));
  return mean;
}

void CudaOps::cross_entropy_backward(const float* logits, const int32_t* targets,
                                     const float* lse, float scale, float* dlogits, int64_t n,
                                     int64_t vocab) {
  kc::cross_entropy_backward(logits, targets, lse, scale, dlogits, n, vocab, stream_);
}

// ---- routing and token movement --------------------------------------------------------------

void CudaOps::routing_forward(const float* logits, const float* bias, float* scores,
                              int32_t* chosen, float* weights, k::RoutingShape shape,
                              k::RoutingOptions options) {
  kc::routing_forward(logits, bias, scores, chosen, weights, shape, options, stream_);
}

void CudaOps::routing_backward(const float* dweights, const float* dscores_extra,
                               const float* scores, const int32_t* chosen, float* dlogits,
                               k::RoutingShape shape, k::RoutingOptions options) {
  kc::routing_backward(dweights, dscores_extra, scores, chosen, dlogits, shape, options, stream_);
}

double CudaOps::seq_balance_loss_forward(const float* scores, const int32_t* chosen,
                                         k::RoutingShape shape, int64_t seq_len, double alpha) {
  void* workspace = scratch<uint8_t>(
      kWorkspace, static_cast<int64_t>(kc::seq_balance_loss_forward_workspace_bytes(shape, seq_len)));
  if (losses_.size() < 1) losses_ = kc::DeviceBuffer<double>(memory_.arena(), 1, stream_);
  kc::seq_balance_loss_forward(scores, chosen, shape, seq_len, alpha, losses_.data(), workspace,
                               stream_);
  double loss = 0;
  memory_.to_host(&loss, losses_.data(), sizeof(double));
  return loss;
}

void CudaOps::seq_balance_loss_backward(const float* scores, const int32_t* chosen,
                                        k::RoutingShape shape, int64_t seq_len, double alpha,
                                        float dloss, float* dscores) {
  kc::seq_balance_loss_backward(scores, chosen, shape, seq_len, alpha, dloss, dscores, stream_);
}

void CudaOps::build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k,
                                 int64_t experts, int32_t* expert_offsets, int32_t* row_token,
                                 int32_t* assignment_row) {
  void* workspace = scratch<uint8_t>(
      kWorkspace,
      static_cast<int64_t>(kc::build_expert_index_workspace_bytes(tokens, top_k, experts)));
  kc::build_expert_index(chosen, tokens, top_k, experts, expert_offsets, row_token,
                         assignment_row, workspace, stream_);
}

void CudaOps::permute_tokens_forward(const float* x, const int32_t* row_token, float* xe,
                                     int64_t rows, int64_t dim) {
  kc::permute_tokens_forward(x, row_token, xe, rows, dim, stream_);
}

void CudaOps::permute_tokens_backward(const float* dxe, const int32_t* /*row_token*/,
                                      const int32_t* assignment_row, float* dx, int64_t tokens,
                                      int64_t top_k, int64_t dim) {
  kc::permute_tokens_backward(dxe, assignment_row, dx, tokens, top_k, dim, stream_);
}

void CudaOps::combine_forward(const float* ye, const float* weights,
                              const int32_t* assignment_row, float* y, int64_t tokens,
                              int64_t top_k, int64_t dim) {
  kc::combine_forward(ye, weights, assignment_row, y, tokens, top_k, dim, stream_);
}

void CudaOps::combine_backward(const float* dy, const float* ye, const float* weights,
                               const int32_t* assignment_row, float* dye, float* dweights,
                               int64_t tokens, int64_t top_k, int64_t dim) {
  kc::combine_backward(dy, ye, weights, assignment_row, dye, dweights, tokens, top_k, dim,
                       stream_);
}

// ---- wire formats ----------------------------------------------------------------------------

void CudaOps::encode_bf16_rows(const float* rows, int64_t n, int64_t dim,
                               k::Array<uint8_t>& wire) {
  // The wire's BF16 rows are the codes themselves, little-endian (model/expert_wire.h).
  wire.resize(static_cast<size_t>(std::max<int64_t>(2 * n * dim, 1)));
  kc::float_to_bf16(rows, reinterpret_cast<uint16_t*>(wire.data()), n * dim, stream_);
}

void CudaOps::decode_bf16_rows(const uint8_t* wire, int64_t n, int64_t dim, float* rows) {
  kc::bf16_to_float(as_bf16(wire), rows, n * dim, stream_);
}

void CudaOps::encode_fp8_rows(const float* rows, int64_t n, int64_t dim, int64_t tile,
                              k::Fp8Format format, k::Array<uint8_t>& wire) {
  std::vector<float> host_rows(static_cast<size_t>(n * dim));
  memory_.to_host(host_rows.data(), rows, host_rows.size() * sizeof(float));
  k::Array<uint8_t> host_wire;
  {
    const k::MemoryScope on_host(k::host_memory());
    model::encode_fp8_rows(host_rows.data(), n, dim, tile, format, host_wire);
  }
  wire.assign_from_host(host_wire.data(), host_wire.size());
}

void CudaOps::decode_fp8_rows(const uint8_t* wire, int64_t n, int64_t dim, int64_t tile,
                              k::Fp8Format format, k::Fp8Matrix* out) {
  std::vector<uint8_t> host_wire(static_cast<size_t>(n * fp8_wire_row_bytes(dim, tile)));
  memory_.to_host(host_wire.data(), wire, host_wire.size());
  k::Fp8Matrix host;
  {
    const k::MemoryScope on_host(k::host_memory());
    model::decode_fp8_rows(host_wire.data(), n, dim, tile, format, &host);
  }
  out->codes.assign_from_host(host.codes.data(), host.codes.size());
  out->scales.assign_from_host(host.scales.data(), host.scales.size());
  out->rows = host.rows;
  out->cols = host.cols;
  out->tile = host.tile;
  out->format = host.format;
}

}  // namespace baleine::model::cuda
