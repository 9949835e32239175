// kernels/array.h: the model's buffer type keeps std::vector's resize semantics (the model was
// written against them: a grown tail reads as zeros), allocates in the memory current at its
// first allocation and keeps it, copies deeply, and moves without copying.
#include "kernels/array.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/kernels/stand_in_device_memory.h"

namespace baleine::kernels {
namespace {

using baleine::testing::StandInDeviceMemory;

TEST(Array, ResizeKeepsThePrefixAndZeroesWhatItAdds) {
  Array<float> a;
  EXPECT_TRUE(a.empty());
  a.assign(5, 3.5f);
  a.resize(3);
  a.resize(8);  // within capacity? no: 8 > 5, so it grows and must keep 3 values
  ASSERT_EQ(a.size(), 8u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a[i], 3.5f) << i;
  for (size_t i = 3; i < 8; ++i) EXPECT_EQ(a[i], 0.0f) << i;  // std::vector would give 0 too
  // Shrinking and growing back inside the capacity zeroes the regrown tail as well (the old
  // values are still in the memory; a vector would not show them either).
  a[6] = 7.0f;
  const float* before = a.data();
  a.resize(4);
  a.resize(8);
  EXPECT_EQ(a.data(), before) << "a resize within the capacity must not move the data";
  EXPECT_EQ(a[6], 0.0f);
}

TEST(Array, CopiesAreDeepAndMovesTakeTheBuffer) {
  Array<int32_t> a(4);
  for (int i = 0; i < 4; ++i) a[i] = 10 + i;
  Array<int32_t> b = a;
  b[0] = -1;
  EXPECT_EQ(a[0], 10);
  EXPECT_NE(a, b);
  b = a;
  EXPECT_EQ(a, b);
  const int32_t* data = a.data();
  Array<int32_t> c = std::move(a);
  EXPECT_EQ(c.data(), data);
  EXPECT_EQ(c.to_host(), (std::vector<int32_t>{10, 11, 12, 13}));
}

TEST(Array, TakesTheMemoryCurrentAtItsFirstAllocationAndKeepsIt) {
  StandInDeviceMemory memory;
  Array<double> a;
  {
    const MemoryScope scope(memory);
    EXPECT_EQ(&current_memory(), &memory);
    a.resize(10);
    const std::vector<double> host{1, 2, 3};
    a.assign_from_host(host.data(), host.size());
    a.assign(6, 2.5);  // not on the host: staged through from_host
    Array<double> zeros;
    zeros.assign(4, 0.0);  // zeros need no transfer: a fill
  }
  EXPECT_EQ(&current_memory(), &host_memory()) << "the scope restores the previous memory";
  EXPECT_FALSE(a.on_host());
  a.resize(100);  // grows in its own memory, whatever is current now
  EXPECT_EQ(&a.memory(), &memory);
  EXPECT_EQ(memory.live.size(), 1u);
  const std::vector<double> back = a.to_host();
  EXPECT_EQ(back[5], 2.5);
  EXPECT_EQ(back[6], 0.0);
  EXPECT_EQ(memory.transfers(), 3);  // from_host twice, to_host once
  Array<double> host_copy;
  host_copy.resize(1);
  EXPECT_THROW(host_copy = a, std::logic_error) << "host = device needs an explicit transfer";
  a = Array<double>();
  EXPECT_TRUE(memory.live.empty()) << "everything allocated was released";
}

}  // namespace
}  // namespace baleine::kernels
