#pragma once
// What the dense and grouped GEMM tests of kernels/cuda share (gemm_cuda_test.cpp,
// grouped_gemm_cuda_test.cpp): their tolerances, FP32 / BF16 conversions, and a fixture that
// runs a Linear layer's three passes against a CPU reference.
//
// Tolerances (relative, ‖got − want‖₂ / ‖want‖₂; the reasoning is gemm_cuda_test.cpp's):
//   FP32 outputs, FP32 or BF16 operands: 1e-5. BF16 outputs: one rounding to 8 significant bits
//   on top: 2⁻⁸ + 1e-5. TF32: 3e-3.
// Only compiled with the CUDA backend (BALEINE_HAVE_CUDA).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/fp8.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels::cuda::testing {

constexpr double kFp32Tolerance = 1e-5;
constexpr double kBf16OutTolerance = 1.0 / 256 + 1e-5;
constexpr double kTf32Tolerance = 3e-3;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Values as a type T holds them: FP32 as is, BF16 rounded (so the CPU sees what the GPU sees).
template <typename T>
std::vector<float> values_for(std::vector<float> x) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    for (float& v : x) v = bf16_round(v);
  }
  return x;
}

template <typename T>
std::vector<T> encode(const std::vector<float>& x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    std::vector<uint16_t> bits(x.size());
    for (size_t i = 0; i < x.size(); ++i) bits[i] = bf16_encode(x[i]);
    return bits;
  }
}

template <typename T>
std::vector<float> decode(const std::vector<T>& x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    std::vector<float> values(x.size());
    for (size_t i = 0; i < x.size(); ++i) values[i] = bf16_decode(x[i]);
    return values;
  }
}

template <typename Out>
double tolerance_for(double fp32_tolerance) {
  return std::is_same_v<Out, float> ? fp32_tolerance : kBf16OutTolerance;
}

// A Linear layer's inputs as the CPU sees them (rounded to what In / Out hold): x [rows, K],
// w [weights], dy [rows, N] and the dw the backward weight accumulates onto. On the device as
// In / Out, with the outputs y and dx NaN-filled (they must be overwritten).
template <typename In, typename Out>
struct LinearLayer {
  std::vector<float> x, w, dy, dw0;
  DeviceBuffer<In> x_dev, w_dev, dy_dev;
  DeviceBuffer<Out> y_dev, dx_dev, dw_dev;
};

// What the GPU's passes gave: forward, backward input, and backward weight once and twice.
struct LinearResults {
  std::vector<float> y, dx, dw_once, dw_twice;
};

class LinearLayerTest : public GpuTest {
 protected:
  template <typename In, typename Out>
  LinearLayer<In, Out> make_layer(int64_t rows, int64_t K, int64_t N, int64_t weights) {
    std::vector<float> x = values_for<In>(random_floats(rows * K, 1));
    std::vector<float> w = values_for<In>(random_floats(weights, 2));
    std::vector<float> dy = values_for<In>(random_floats(rows * N, 3));
    std::vector<float> dw0 = values_for<Out>(random_floats(weights, 4));
    DeviceBuffer<In> x_dev = upload(encode<In>(x)), w_dev = upload(encode<In>(w)),
                     dy_dev = upload(encode<In>(dy));
    DeviceBuffer<Out> y_dev = upload(encode<Out>(std::vector<float>(rows * N, kNaN)));
    DeviceBuffer<Out> dx_dev = upload(encode<Out>(std::vector<float>(rows * K, kNaN)));
    DeviceBuffer<Out> dw_dev = upload(encode<Out>(dw0));
    return {std::move(x),      std::move(w),      std::move(dy),     std::move(dw0),
            std::move(x_dev),  std::move(w_dev),  std::move(dy_dev), std::move(y_dev),
            std::move(dx_dev), std::move(dw_dev)};
  }

  // `got` against `cpu`'s passes on the same inputs. Cpu has forward(x, w, y),
  // backward_input(dy, w, dx) (both overwrite) and backward_weight(dy, x, dw) (accumulates).
  template <typename In, typename Out, typename Cpu>
  void expect_layer_matches(const LinearLayer<In, Out>& layer, const LinearResults& got,
                            const Cpu& cpu, double tolerance, const std::string& label) {
    std::vector<float> y(layer.dy.size()), dx(layer.x.size()), dw = layer.dw0;
    cpu.forward(layer.x, layer.w, y);
    cpu.backward_input(layer.dy, layer.w, dx);
    cpu.backward_weight(layer.dy, layer.x, dw);
    // A BF16 dw is rounded after each accumulation: the second starts from the GPU's first.
    std::vector<float> dw_twice = std::is_same_v<Out, float> ? dw : got.dw_once;
    cpu.backward_weight(layer.dy, layer.x, dw_twice);

    EXPECT_LT(relative_error(got.y, y), tolerance) << "forward, " << label;
    EXPECT_LT(relative_error(got.dx, dx), tolerance) << "backward input, " << label;
    EXPECT_LT(relative_error(got.dw_once, dw), tolerance) << "backward weight, " << label;
    EXPECT_LT(relative_error(got.dw_twice, dw_twice), tolerance)
        << "backward weight accumulated twice, " << label;
  }
};

}  // namespace baleine::kernels::cuda::testing
