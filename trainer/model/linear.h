#pragma once
// The three GEMMs of every Linear y = x·Wᵀ (x [M, K], W [N, K]) in the run's precision:
//   Fprop  y  = x·Wᵀ     Dgrad  dx = dy·W     Wgrad  dW += dyᵀ·x
// following DeepSeek-V3's FP8 framework (report §3.3, Figure 6):
//   fp32: the kernels as they are (the reference);
//   bf16: operands rounded to BF16, products summed in FP32 (a BF16 tensor core's contract);
//   fp8:  operands quantized with online fine-grained scales, FP32 accumulation promoted per
//         tile (kernels/fp8_gemm.h): x and dy in 1×tile tiles, W in tile×tile blocks (Dgrad
//         uses the same blocks transposed), and for Wgrad both dy and x in tile×1 tiles along
//         the tokens.
// A Linear's input is saved for its Wgrad in the same format (LinearInput): FP8 codes + scales,
// or BF16 — DeepSeek-V3's FP8 activation cache (§3.3.3). For Wgrad the cached 1×tile input is
// dequantized and re-quantized in tile×1 tiles, as V3 does (power-of-two scales make that step
// lossless more often).
//
// Every function here is templated on the model's scalar T (float trains; double checks
// gradients); low-precision modes round and quantize T's values the same way.
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/array.h"
#include "kernels/fp8_quantize.h"
#include "trainer/config/config.h"

namespace baleine::model {

// The model's buffers: in the current backend's memory (model/backend.h).
template <typename T>
using Array = kernels::Array<T>;

enum class LinearPrecision { kFp32, kBf16, kFp8 };

struct LinearFormat {
  LinearPrecision precision = LinearPrecision::kFp32;
  kernels::Fp8Format forward_format = kernels::Fp8Format::kE4M3;   // x and W
  kernels::Fp8Format gradient_format = kernels::Fp8Format::kE4M3;  // dy
  int64_t tile = 128;
  bool power_of_two = false;
};

// "fp32", "bf16", or e.g. "fp8 e4m3 (x,dy 1x128, W 128x128)".
std::string describe(const LinearFormat& format);

// config.precision resolved into formats (printed at start, one line per Linear family).
struct PrecisionPlan {
  LinearFormat compute;         // the Linears of blocks and experts
  LinearFormat high_precision;  // blocks listed in high_precision_blocks, and the MoE gate
  std::vector<int64_t> high_precision_blocks;

  LinearFormat for_block(int64_t block) const;
  // The MoE gate stays out of FP8 (V3 §3.3: gating keeps BF16/FP32).
  const LinearFormat& gate() const { return high_precision; }
};

PrecisionPlan plan_precision(const config::PrecisionSection& precision);

// A read-only view of a saved Linear input [rows, cols] in its format. Raw heap pointers only,
// so a deferred Wgrad job may capture it by value while the saved state moves around.
template <typename T>
struct LinearInputView {
  LinearPrecision precision = LinearPrecision::kFp32;
  const T* values = nullptr;      // kFp32
  const uint16_t* bf16 = nullptr;  // kBf16
  kernels::Fp8View fp8;            // kFp8 (1×tile tiles)
  int64_t rows = 0, cols = 0;

  LinearInputView row_slice(int64_t first, int64_t count) const;
};

// A Linear input kept for the backward, in the Linear's format.
template <typename T>
struct LinearInput {
  LinearPrecision precision = LinearPrecision::kFp32;
  kernels::Array<T> values;
  kernels::Array<uint16_t> bf16;
  kernels::Fp8Matrix fp8;
  int64_t rows = 0, cols = 0;

  // Sizes the buffers for [rows, cols] in `format` (contents unspecified until stored).
  void allocate(int64_t rows, int64_t cols, const LinearFormat& format);
  // Stores rows [first, first + count) from x (count × cols values).
  void store_rows(int64_t first, const T* x, int64_t count, const LinearFormat& format);
  void store(const T* x, int64_t rows, int64_t cols, const LinearFormat& format) {
    allocate(rows, cols, format);
    store_rows(0, x, rows, format);
  }
  LinearInputView<T> view() const;
  int64_t bytes() const;  // what the cache occupies
};

// y [M, N] = x·Wᵀ, x in its saved format (it was stored with this format).
template <typename T>
void linear_fprop(const LinearFormat& f, const LinearInputView<T>& x, const T* w, T* y,
                  int64_t M, int64_t K, int64_t N);
// dx [M, K] = dy·W, or dx += dy·W when accumulate.
template <typename T>
void linear_dgrad(const LinearFormat& f, const T* dy, const T* w, T* dx, int64_t M, int64_t K,
                  int64_t N, bool accumulate);
// dW [N, K] += dyᵀ·x.
template <typename T>
void linear_wgrad(const LinearFormat& f, const T* dy, const LinearInputView<T>& x, T* dw,
                  int64_t M, int64_t K, int64_t N);

}  // namespace baleine::model
