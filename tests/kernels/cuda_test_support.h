#pragma once
// What the GPU-vs-CPU tests of kernels/cuda share: a fixture that skips without a GPU and owns
// a stream and an arena, uploads and downloads, random inputs that are never zero, and the
// relative error ‖got − want‖ / ‖want‖ the tolerances are stated in.
//
// Tolerances (each test says which applies and why):
//   FP32 kernels against the FP32 CPU reference: the two differ only in the order of sums and
//   in fused multiply-adds, so per-element rounding differences of a few ulps accumulate over
//   reductions of length L to ~L·2⁻²⁴ relative at worst and ~√L·2⁻²⁴ typically: 1e-6 for
//   elementwise ops, 1e-5 for reductions of a few thousand terms.
//   BF16 storage: one rounding of 2⁻⁹ relative per value: 1e-2 bounds an output, 1e-3 a norm
//   over many values whose rounding errors are independent.
// Only compiled with the CUDA backend (BALEINE_HAVE_CUDA).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/device_memory.h"
#include "kernels/device.h"

namespace baleine::kernels::cuda::testing {

// Uniform in ±[lo, hi] with a random sign: never zero, so a kernel that writes nothing (or
// zeros) cannot pass by accident.
inline std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = 0.05f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> magnitude(lo, hi);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = (rng() & 1u) ? magnitude(rng) : -magnitude(rng);
  return x;
}

inline std::vector<int32_t> random_ids(int64_t n, int32_t below, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, below - 1);
  std::vector<int32_t> x(static_cast<size_t>(n));
  for (auto& v : x) v = id(rng);
  return x;
}

// ‖got − want‖₂ / ‖want‖₂ in double (‖want‖ = 0 gives the absolute norm of the difference).
template <typename T>
double relative_error(const std::vector<T>& got, const std::vector<T>& want) {
  EXPECT_EQ(got.size(), want.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - static_cast<double>(want[i]);
    diff += d * d;
    norm += static_cast<double>(want[i]) * static_cast<double>(want[i]);
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// The fixture of every GPU test: skips the test without the CUDA backend's GPU, and gives it a
// stream and an arena (device memory is checked to be given back at the end).
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device on this machine";
    stream_ = std::make_unique<Stream>();
    arena_ = std::make_unique<DeviceArena>();
  }
  void TearDown() override {
    if (arena_ != nullptr) {
      stream_->synchronize();
      EXPECT_EQ(arena_->stats().bytes_in_use, 0) << "a device buffer outlived its test";
    }
  }

  cudaStream_t stream() const { return stream_->get(); }
  void synchronize() const { stream_->synchronize(); }
  DeviceArena& arena() { return *arena_; }

  template <typename T>
  DeviceBuffer<T> empty(int64_t count) {
    return DeviceBuffer<T>(*arena_, count, stream());
  }
  template <typename T>
  DeviceBuffer<T> upload(const std::vector<T>& host) {
    DeviceBuffer<T> buffer(*arena_, static_cast<int64_t>(host.size()), stream());
    copy_to_device(buffer.data(), host.data(), buffer.bytes(), stream());
    return buffer;
  }
  // Waits for the stream, so the result is complete.
  template <typename T>
  std::vector<T> download(const DeviceBuffer<T>& buffer) {
    std::vector<T> host(static_cast<size_t>(buffer.size()));
    copy_to_host(host.data(), buffer.data(), buffer.bytes(), stream());
    stream_->synchronize();
    return host;
  }

 private:
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<DeviceArena> arena_;
};

}  // namespace baleine::kernels::cuda::testing
