// The CUDA backend's device memory (kernels/cuda/device_memory.h): the caching arena reaches a
// steady state with no device allocation, reuses blocks across streams only after their last
// use finished, reports out-of-memory clearly; pinned buffers, streams, events and copies work.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(DeviceMemory, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels::cuda {
namespace {

using testing::GpuTest;

// No GPU needed: only arithmetic.
TEST(DeviceArenaSizes, RoundsSmallTo512BytesAndLargeToMiB) {
  EXPECT_EQ(DeviceArena::rounded_size(1), 512u);
  EXPECT_EQ(DeviceArena::rounded_size(512), 512u);
  EXPECT_EQ(DeviceArena::rounded_size(513), 1024u);
  EXPECT_EQ(DeviceArena::rounded_size((1u << 20) - 1), 1u << 20);
  EXPECT_EQ(DeviceArena::rounded_size((1u << 20) + 1), 2u << 20);
}

class DeviceMemory : public GpuTest {};

TEST_F(DeviceMemory, ASecondStepOfTheSameSizesAllocatesNothing) {
  const std::vector<int64_t> sizes = {1000, 4096 * 2048, 37, 1 << 20, 257 * 1000};
  auto step = [&] {
    std::vector<DeviceBuffer<float>> live;
    for (int64_t n : sizes) live.push_back(empty<float>(n));
    for (auto& b : live) fill_zero(b.data(), b.bytes(), stream());
  };
  step();
  const ArenaStats first = arena().stats();
  EXPECT_EQ(first.device_allocations, static_cast<int64_t>(sizes.size()));
  EXPECT_EQ(first.bytes_in_use, 0);
  step();
  step();
  const ArenaStats third = arena().stats();
  EXPECT_EQ(third.device_allocations, first.device_allocations);
  EXPECT_EQ(third.reused, 2 * static_cast<int64_t>(sizes.size()));
  EXPECT_EQ(third.bytes_reserved, first.bytes_reserved);
  EXPECT_GE(third.peak_bytes_in_use, static_cast<int64_t>(4096 * 2048 * sizeof(float)));
}

TEST_F(DeviceMemory, ABlockGoesToAnotherStreamOnlyAfterItsLastUse) {
  Stream other;
  {
    DeviceBuffer<float> a = empty<float>(1 << 16);
    fill_zero(a.data(), a.bytes(), stream());
  }  // released on stream(), event recorded there
  synchronize();
  // The release event has completed: another stream may take the block.
  DeviceBuffer<float> b(arena(), 1 << 16, other.get());
  EXPECT_EQ(arena().stats().device_allocations, 1);
  b.reset();
  other.synchronize();
}

TEST_F(DeviceMemory, DataSurvivesARoundTripThroughPinnedMemory) {
  const int64_t n = 300001;
  PinnedBytes pinned(n * sizeof(float));
  auto* host = static_cast<float*>(pinned.data());
  const std::vector<float> x = testing::random_floats(n, 7);
  std::memcpy(host, x.data(), n * sizeof(float));
  DeviceBuffer<float> a = empty<float>(n), b = empty<float>(n);
  copy_to_device(a.data(), host, a.bytes(), stream());
  copy_on_device(b.data(), a.data(), a.bytes(), stream());
  EXPECT_EQ(download(b), x);
}

TEST_F(DeviceMemory, EventsOrderWorkBetweenStreams) {
  Stream other;
  Event written;
  const std::vector<float> x = testing::random_floats(1 << 20, 3);
  DeviceBuffer<float> a = upload(x);
  written.record(stream());
  written.make_wait(other.get());
  DeviceBuffer<float> b(arena(), a.size(), other.get());
  copy_on_device(b.data(), a.data(), a.bytes(), other.get());
  other.synchronize();
  EXPECT_TRUE(written.done());
  std::vector<float> back(x.size());
  copy_to_host(back.data(), b.data(), b.bytes(), other.get());
  other.synchronize();
  EXPECT_EQ(back, x);
  b.reset();
  other.synchronize();
}

TEST_F(DeviceMemory, OutOfMemoryNamesWhatWasAsked) {
  try {
    DeviceBuffer<char> huge(arena(), int64_t(1) << 50, stream());
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const std::runtime_error& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find("out of device memory"), std::string::npos) << what;
    EXPECT_NE(what.find("hint"), std::string::npos) << what;
  }
  EXPECT_EQ(arena().stats().bytes_in_use, 0);
}

}  // namespace
}  // namespace baleine::kernels::cuda

#endif  // BALEINE_HAVE_CUDA
