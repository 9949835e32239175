// FP8 GEMM with per-tile scales, emulated on the CPU (the interface and the recipe are in
// kernels/fp8_gemm.h; DeepSeek-V3 technical report §3.3.2).
//
// What each mode computes, for one output element C[m, n], with sa[t] = A's scale for row m
// in K tile t, sb[t] = B's scale for row n in K tile t, and the K tiles taken from k = 0:
// - promote_every == the K tile (the recipe): the unscaled products dec(a)·dec(b) of tile t
//   are summed in the limited accumulator, k ascending, from zero; then the partial is
//   promoted: acc ← fma(partial, sa[t]·sb[t], acc) in FP32 (sa·sb rounded to FP32 first, then
//   one fused multiply-add, which is what a GPU compiler emits for the promotion's
//   multiply-add under its default --fmad=true).
// - promote_every == j·tile (j ≥ 2), or 0 (never: one partial spans all of K): a partial spans
//   tiles with different scales, so there is no one scale to apply at promotion. Each product
//   is scaled by its own tile's sa·sb (the product rounded to FP32) as it enters the limited
//   accumulator, and every promote_every products (and at the end of K) acc ← acc + partial.
// - The limited accumulator: mantissa_bits == 23 is FP32, rounding to nearest even. Fewer bits
//   keep the exact sum truncated toward zero to that many fraction bits after every addition
//   (a model of the ~14-bit accumulation DeepSeek-V3 measured on H800 tensor cores; the
//   hardware's internal alignment of addends is not modelled).
// - C = acc, or C += acc (rounded once to T) when accumulating.
//
// Two implementations, both giving the same bits for any thread count (each C element is
// summed by one thread in a fixed order):
// - Exact mode (23 bits, promotion every tile) is what training runs on every Linear, so it is
//   fast: the codes are decoded to float once, kernels::gemm<float> forms each K tile's
//   partials (a product of two FP8 values has at most 8 significant bits, so it is exact in
//   FP32, and gemm sums a tile's k ascending from zero: the partial is exactly the recipe's),
//   and a pass over them promotes. See exact_gemm for how the threads share the work.
// - Every other mode is a scalar loop, one output element at a time. It exists for the
//   accumulator experiments, not for training.
#include "kernels/fp8_gemm.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/thread_scratch.h"
#include "kernels/gemm.h"

namespace baleine::kernels {
namespace {

std::string describe(const Fp8View& v) {
  std::ostringstream s;
  s << "[" << v.rows << ", " << v.cols << "] in " << v.tile.rows << "x" << v.tile.cols << " tiles";
  return s.str();
}

void validate(const Fp8View& a, const Fp8View& b, const Fp8Accumulation& accumulation) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("fp8_gemm_tn: " + why + " (A " + describe(a) + ", B " +
                                describe(b) + ")");
  };
  if (a.rows < 0 || a.cols < 0 || b.rows < 0 || b.cols < 0) fail("negative shape");
  if (a.cols != b.cols) fail("A [M, K] and B [N, K] must have the same K");
  if (a.tile.rows <= 0 || a.tile.cols <= 0 || b.tile.rows <= 0 || b.tile.cols <= 0) {
    fail("tile sides must be positive");
  }
  if (a.tile.rows != 1) fail("A's tiles must be one row high (1xT)");
  if (b.tile.cols != a.tile.cols) fail("A and B must use the same K tile");
  if (b.tile.rows != 1 && b.tile.rows != b.tile.cols) {
    fail("B's tiles must be one row high (1xT) or square (TxT)");
  }
  if (accumulation.mantissa_bits < 1 || accumulation.mantissa_bits > 23) {
    fail("mantissa_bits must be in [1, 23], got " + std::to_string(accumulation.mantissa_bits));
  }
  if (accumulation.promote_every < 0 || accumulation.promote_every % a.tile.cols != 0) {
    fail("promote_every must be 0 or a positive multiple of the K tile " +
         std::to_string(a.tile.cols) + ", got " + std::to_string(accumulation.promote_every));
  }
}

// Below this many multiply-adds a parallel region's fork and join cost more than they save.
constexpr int64_t kParallelMinWork = int64_t(1) << 17;

using DecodeTable = std::array<float, 256>;

DecodeTable decode_table(Fp8Format format) {
  DecodeTable table{};
  for (int code = 0; code < 256; ++code) table[code] = fp8_decode(uint8_t(code), format);
  return table;
}

// Scratch buffers of the calling thread, kept between calls so the training loop's GEMMs do
// not allocate (and page-fault) every time.
enum ScratchSlot { kAccumulator, kValuesA, kValuesB, kPartial, kScales, kSlotCount };

struct Fp8GemmScratch;
float* scratch(ScratchSlot slot, int64_t elements) {
  return thread_scratch<Fp8GemmScratch, float, kSlotCount>(size_t(elements), slot);
}

// The scale of `row`'s tile in K tile t (tiles one row high or square).
float tile_scale(const Fp8View& v, int64_t row, int64_t t) {
  return v.scales[(row / v.tile.rows) * v.tile_cols() + t];
}

// out [count, kt] ← the decoded (unscaled) codes of rows [first, first + count), columns
// [k0, k0 + kt).
void decode_block(const Fp8View& v, const DecodeTable& table, int64_t first, int64_t count,
                  int64_t k0, int64_t kt, float* out) {
  for (int64_t r = 0; r < count; ++r) {
    const uint8_t* codes = v.codes + (first + r) * v.cols + k0;
    float* dst = out + r * kt;
    for (int64_t k = 0; k < kt; ++k) dst[k] = table[codes[k]];
  }
}

// Inside a parallel region: the team decodes all of v into out [v.rows, v.cols], rows shared
// out statically. No barrier at the end: the caller places the one it needs.
void decode_all_shared(const Fp8View& v, float* out) {
  const DecodeTable table = decode_table(v.format);
#pragma omp for schedule(static) nowait
  for (int64_t r = 0; r < v.rows; ++r) decode_block(v, table, r, 1, 0, v.cols, out + r * v.cols);
}

// Exact mode: acc [M, N] ← Σ_t fma-promoted gemm partials (see the top of the file).
// One parallel region for the whole product, with one barrier: the operand with fewer rows
// ("whole") is decoded once and shared; the other ("split") is cut into one contiguous range of
// rows per thread, and each thread runs its own tile loop (decode its panel, gemm, promote) on
// its slice of C. gemm is called inside the region, so it runs on the calling thread alone
// (OpenMP's default of one active level). A tile loop around a parallel gemm would cross about
// five barriers per K tile, and barriers are what costs most when the cores are shared: a
// waiting thread spins while the late one may not even be scheduled. No element's sum depends
// on the partition, so the result is the same for any thread count.
void exact_gemm(const Fp8View& a, const Fp8View& b, float* acc) {
  const int64_t M = a.rows, N = b.rows, K = a.cols, tile = a.tile.cols;
  const bool split_a = M >= N;
  const Fp8View& whole = split_a ? b : a;
  const Fp8View& split = split_a ? a : b;
  float* whole_values = scratch(split_a ? kValuesB : kValuesA, whole.rows * K);
  const DecodeTable split_table = decode_table(split.format);
#pragma omp parallel if (M * N * K >= kParallelMinWork)
  {
    decode_all_shared(whole, whole_values);
#pragma omp barrier
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t first = split.rows * id / threads, last = split.rows * (id + 1) / threads;
    const int64_t rows = last - first, panel_k = std::min(tile, K);
    // This thread's panel of `split`, its partials [rows, whole.rows] and the tile's scales.
    float* panel = scratch(split_a ? kValuesA : kValuesB, rows * panel_k);
    float* partial = scratch(kPartial, rows * whole.rows);
    float* split_scales = scratch(kScales, rows + whole.rows);
    float* whole_scales = split_scales + rows;
    for (int64_t r = first; r < last; ++r) {  // this thread's slice of C starts at zero
      if (split_a) {
        std::fill(acc + r * N, acc + (r + 1) * N, 0.0f);
      } else {
        for (int64_t m = 0; m < M; ++m) acc[m * N + r] = 0.0f;
      }
    }
    for (int64_t t = 0, k0 = 0; rows > 0 && k0 < K; ++t, k0 += tile) {
      const int64_t kt = std::min(tile, K - k0);
      decode_block(split, split_table, first, rows, k0, kt, panel);
      for (int64_t r = 0; r < rows; ++r) split_scales[r] = tile_scale(split, first + r, t);
      for (int64_t r = 0; r < whole.rows; ++r) whole_scales[r] = tile_scale(whole, r, t);
      if (split_a) {  // partial [rows, N] = panel · Bᵀ
        gemm<float>(false, true, rows, N, kt, 1.0f, panel, kt, whole_values + k0, K, 0.0f, partial,
                    N);
        for (int64_t r = 0; r < rows; ++r) {
          float* c = acc + (first + r) * N;
          const float* p = partial + r * N;
          const float sa = split_scales[r];
          for (int64_t n = 0; n < N; ++n) c[n] = std::fma(p[n], sa * whole_scales[n], c[n]);
        }
      } else {  // partial [M, rows] = A · panelᵀ
        gemm<float>(false, true, M, rows, kt, 1.0f, whole_values + k0, K, panel, kt, 0.0f, partial,
                    rows);
        for (int64_t m = 0; m < M; ++m) {
          float* c = acc + m * N + first;
          const float* p = partial + m * rows;
          const float sa = whole_scales[m];
          for (int64_t j = 0; j < rows; ++j) c[j] = std::fma(p[j], sa * split_scales[j], c[j]);
        }
      }
    }
  }
}

// The accumulator that sums products between promotions. Its value always lies on the grid of
// `mantissa_bits` fraction bits; 23 bits is plain FP32.
class LimitedAccumulator {
 public:
  explicit LimitedAccumulator(int mantissa_bits)
      : round_to_nearest_(mantissa_bits >= 23),
        keep_mask_(~((uint32_t(1) << (23 - std::min(mantissa_bits, 23))) - 1)) {}

  float value() const { return value_; }
  void reset() { value_ = 0.0f; }

  void add(float x) {
    if (round_to_nearest_) {
      value_ += x;
      return;
    }
    // Knuth's TwoSum: sum + error == value_ + x exactly (round to nearest, no overflow).
    const float sum = value_ + x;
    const float x_part = sum - value_;
    const float error = (value_ - (sum - x_part)) + (x - x_part);
    float kept = truncate(sum);
    // When the rounded sum already lies on the coarse grid but the exact sum is a little
    // nearer zero, truncating the exact sum lands one grid step lower. (A sum off the grid
    // truncates like the exact sum: |error| is at most half a float ulp.)
    if (kept == sum && error != 0.0f && std::signbit(error) != std::signbit(sum)) {
      kept = truncate(std::nextafter(sum, 0.0f));
    }
    value_ = kept;
  }

 private:
  // x truncated toward zero to the kept fraction bits.
  float truncate(float x) const {
    if (!std::isfinite(x)) return x;
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    bits &= keep_mask_;
    std::memcpy(&x, &bits, sizeof x);
    return x;
  }

  bool round_to_nearest_;
  uint32_t keep_mask_;
  float value_ = 0.0f;
};

// A product scaled as it enters the accumulator, rounded to FP32 on its own. Deliberately not
// inlined: GCC contracts a multiply feeding an add into one fused multiply-add by default
// (-ffp-contract=fast, even under -std=c++17), which would skip this rounding.
[[gnu::noinline]] float scaled_product(float product, float scale) { return product * scale; }

// C[m, n] in any mode, as the top of the file defines it, from the decoded rows of A and B.
float limited_sum(const Fp8View& a, const Fp8View& b, int64_t m, int64_t n, const float* row_a,
                  const float* row_b, const Fp8Accumulation& accumulation) {
  const int64_t K = a.cols, tile = a.tile.cols;
  const int64_t interval = accumulation.promote_every == 0 ? K : accumulation.promote_every;
  LimitedAccumulator partial(accumulation.mantissa_bits);
  float sum = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += interval) {
    const int64_t k_end = std::min(K, k0 + interval);
    partial.reset();
    if (interval == tile) {
      // Products of two FP8 values are exact in FP32: only the additions round.
      for (int64_t k = k0; k < k_end; ++k) partial.add(row_a[k] * row_b[k]);
      const int64_t t = k0 / tile;
      sum = std::fma(partial.value(), tile_scale(a, m, t) * tile_scale(b, n, t), sum);
      continue;
    }
    for (int64_t t0 = k0; t0 < k_end; t0 += tile) {
      const int64_t t = t0 / tile;
      const float scale = tile_scale(a, m, t) * tile_scale(b, n, t);
      for (int64_t k = t0; k < std::min(k_end, t0 + tile); ++k) {
        partial.add(scaled_product(row_a[k] * row_b[k], scale));
      }
    }
    sum += partial.value();
  }
  return sum;
}

// Any mode: acc [M, N] ← limited_sum of every element (rows of C shared out among threads).
void scalar_gemm(const Fp8View& a, const Fp8View& b, const Fp8Accumulation& accumulation,
                 float* acc) {
  const int64_t M = a.rows, N = b.rows, K = a.cols;
  float* values_a = scratch(kValuesA, M * K);
  float* values_b = scratch(kValuesB, N * K);
#pragma omp parallel if (M * N * K >= kParallelMinWork)
  {
    decode_all_shared(a, values_a);
    decode_all_shared(b, values_b);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        acc[m * N + n] = limited_sum(a, b, m, n, values_a + m * K, values_b + n * K, accumulation);
      }
    }
  }
}

bool is_exact_mode(const Fp8View& a, const Fp8Accumulation& accumulation) {
  return accumulation.mantissa_bits == 23 && accumulation.promote_every == a.tile.cols;
}

}  // namespace

template <typename T>
void fp8_gemm_tn(const Fp8View& a, const Fp8View& b, T* c, bool accumulate,
                 const Fp8Accumulation& accumulation) {
  validate(a, b, accumulation);
  const int64_t M = a.rows, N = b.rows, K = a.cols;
  if (M == 0 || N == 0) return;
  // Summed in FP32 whatever T is; C itself serves as the accumulator when it is FP32 and
  // overwritten.
  float* acc = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (!accumulate) acc = c;
  }
  if (acc == nullptr) acc = scratch(kAccumulator, M * N);
  if (K == 0) {
    std::fill(acc, acc + M * N, 0.0f);
  } else if (is_exact_mode(a, accumulation)) {
    exact_gemm(a, b, acc);
  } else {
    scalar_gemm(a, b, accumulation, acc);
  }
  if (static_cast<void*>(acc) == static_cast<void*>(c)) return;
#pragma omp parallel for schedule(static) if (M * N >= kParallelMinWork)
  for (int64_t i = 0; i < M * N; ++i) c[i] = accumulate ? c[i] + T(acc[i]) : T(acc[i]);
}

void fp8_gemm_tn_reference(const Fp8View& a, const Fp8View& b, double* c) {
  if (a.cols != b.cols) {
    const std::string shapes = "(A " + describe(a) + ", B " + describe(b) + ")";
    throw std::invalid_argument(
        "fp8_gemm_tn_reference: A [M, K] and B [N, K] must have the same K " + shapes);
  }
  const int64_t M = a.rows, N = b.rows, K = a.cols;
  // decode(code) · scale is exact in double (an ≤4-bit significand times a 24-bit one), so the
  // only rounding is the double summation's, ~K·2⁻⁵³ relative.
  auto dequantize = [K](const Fp8View& v) {
    std::vector<double> out(size_t(v.rows * K));
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t k = 0; k < K; ++k)
        out[size_t(r * K + k)] =
            double(fp8_decode(v.codes[r * K + k], v.format)) * double(v.scale_at(r, k));
    return out;
  };
  const std::vector<double> values_a = dequantize(a), values_b = dequantize(b);
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double sum = 0.0;
      for (int64_t k = 0; k < K; ++k)
        sum += values_a[size_t(m * K + k)] * values_b[size_t(n * K + k)];
      c[m * N + n] = sum;
    }
  }
}

template void fp8_gemm_tn<float>(const Fp8View&, const Fp8View&, float*, bool,
                                 const Fp8Accumulation&);
template void fp8_gemm_tn<double>(const Fp8View&, const Fp8View&, double*, bool,
                                  const Fp8Accumulation&);

}  // namespace baleine::kernels
