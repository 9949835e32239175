#pragma once
// What MoE rows look like on the expert-parallel wire (DeepSeek-V3 report §3.3.4, low-precision
// communication): the forward dispatch carries FP8 when the experts compute in FP8, quantized
// in 1×tile tiles with power-of-two scales, each scale sent as one exponent byte (2^e, like
// the E8M0 scales of the OCP microscaling formats); the combine and both backward moves carry
// BF16. With BF16 Linears every move is BF16; with FP32 ones rows travel as they are.
//
// The encoding is applied even when no exchange happens (one EP rank), so a model computes the
// same numbers on any layout.
#include <cstdint>
#include <vector>

#include "kernels/fp8_quantize.h"

namespace baleine::model {

// FP8 rows: [dim codes][one exponent byte per tile] each.
int64_t fp8_wire_row_bytes(int64_t dim, int64_t tile);

// rows [n, dim] → FP8 wire rows (power-of-two scales, which the quantizer keeps within
// [2^-126, 2^120]: each fits one signed exponent byte).
template <typename T>
void encode_fp8_rows(const T* rows, int64_t n, int64_t dim, int64_t tile,
                     kernels::Fp8Format format, kernels::Array<uint8_t>& wire);
// FP8 wire rows → an FP8 matrix [n, dim] in 1×tile tiles (codes and scales as sent).
void decode_fp8_rows(const uint8_t* wire, int64_t n, int64_t dim, int64_t tile,
                     kernels::Fp8Format format, kernels::Fp8Matrix* out);

// rows [n, dim] ↔ BF16 wire rows (2·dim bytes each).
template <typename T>
void encode_bf16_rows(const T* rows, int64_t n, int64_t dim, kernels::Array<uint8_t>& wire);
template <typename T>
void decode_bf16_rows(const uint8_t* wire, int64_t n, int64_t dim, T* rows);

}  // namespace baleine::model
