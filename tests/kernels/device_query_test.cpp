// Device discovery: never throws, and where a GPU exists it is described correctly. Skips on
// machines without the CUDA backend or without a GPU (CI), as every GPU test does.
#include <gtest/gtest.h>

#include "kernels/device.h"

namespace baleine::kernels {
namespace {

TEST(DeviceQuery, SummaryNeverThrows) {
  const std::string summary = cuda_summary();
  EXPECT_FALSE(summary.empty());
  if (!built_with_cuda()) {
    EXPECT_EQ(summary, "CUDA backend not built");
  }
}

TEST(DeviceQuery, DescribesEachGpu) {
  if (!built_with_cuda()) GTEST_SKIP() << "built without the CUDA backend";
  const auto devices = cuda_devices();
  if (devices.empty()) GTEST_SKIP() << "no CUDA device on this machine";
  for (const auto& d : devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GE(d.sm_major * 10 + d.sm_minor, 75) << d.name << ": baleine targets sm_75 and newer";
    EXPECT_GT(d.memory_gib, 1.0) << d.name;
  }
  EXPECT_NE(cuda_summary().find("devices: " + std::to_string(devices.size())), std::string::npos);
}

}  // namespace
}  // namespace baleine::kernels
