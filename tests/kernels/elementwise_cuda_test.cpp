// The CUDA elementwise kernels (kernels/cuda/elementwise.h) against the CPU, bit for bit:
//   - add against kernels::add<float> (one IEEE addition per element on both devices), on sizes
//     with and without a scalar tail, on unaligned pointers (the scalar path), in place (out
//     aliasing a, then b), and at 4096 × 2048;
//   - float_to_bf16 against kernels::bf16_encode on 8M random bit patterns (every exponent, so
//     NaNs, infinities and subnormals too) and on listed specials: ±0, ±inf, NaNs with several
//     payloads, subnormals, round-to-even ties on both sides, overflow to infinity;
//   - bf16_to_float against kernels::bf16_decode on all 65536 codes.
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaElementwise, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/elementwise.h"
#include "kernels/elementwise.h"
#include "kernels/fp8.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::relative_error;

class CudaElementwise : public cuda::testing::GpuTest {};

// The index of the first element whose bits differ (NaNs compared by bits too), or -1.
template <typename T>
int64_t first_bit_difference(const std::vector<T>& got, const std::vector<T>& want) {
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) return static_cast<int64_t>(i);
  return -1;
}

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::vector<float> random_bit_patterns(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = from_bits(static_cast<uint32_t>(rng()));
  return x;
}

std::vector<uint16_t> cpu_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> codes(x.size());
  for (size_t i = 0; i < x.size(); ++i) codes[i] = bf16_encode(x[i]);
  return codes;
}

// Sizes: below one float4, a whole number of float4s, a scalar tail, odd rows, realistic.
const std::vector<int64_t> kAddSizes = {1, 3, 1000, 1003, 37 * 257, 4096 * 2048};

TEST_F(CudaElementwise, AddIsBitIdenticalToTheCpu) {
  for (const int64_t n : kAddSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const auto a = random_floats(n, 1), b = random_floats(n, 2);
    std::vector<float> want(static_cast<size_t>(n));
    add(a.data(), b.data(), want.data(), n);
    ASSERT_GT(relative_error(want, a), 0.1);  // the reference is not the input

    auto d_a = upload(a), d_b = upload(b);
    auto d_out = empty<float>(n);
    cuda::add(d_a.data(), d_b.data(), d_out.data(), n, stream());
    EXPECT_EQ(first_bit_difference(download(d_out), want), -1);

    cuda::add(d_a.data(), d_b.data(), d_a.data(), n, stream());  // out aliases a
    EXPECT_EQ(first_bit_difference(download(d_a), want), -1);
    auto d_a2 = upload(a);
    cuda::add(d_a2.data(), d_b.data(), d_b.data(), n, stream());  // out aliases b
    EXPECT_EQ(first_bit_difference(download(d_b), want), -1);
  }
}

// Offsets of 1..3 floats break 16-byte alignment, so the kernel takes its scalar loop only.
TEST_F(CudaElementwise, AddOnUnalignedPointers) {
  const int64_t n = 1003;
  for (int64_t offset = 1; offset <= 3; ++offset) {
    SCOPED_TRACE("offset = " + std::to_string(offset));
    const auto a = random_floats(n + offset, 3), b = random_floats(n + offset, 4);
    std::vector<float> want = random_floats(n + offset, 5);
    const std::vector<float> before = want;
    add(a.data() + offset, b.data() + offset, want.data() + offset, n);
    auto d_a = upload(a), d_b = upload(b), d_out = upload(before);
    cuda::add(d_a.data() + offset, d_b.data() + offset, d_out.data() + offset, n, stream());
    EXPECT_EQ(first_bit_difference(download(d_out), want), -1);  // the leading floats untouched
  }
}

TEST_F(CudaElementwise, ScaleIsBitIdenticalToTheCpu) {
  for (const int64_t n : kAddSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const auto x = random_floats(n, 6);
    std::vector<float> want = x;
    scale(want.data(), 1.0f / 3.0f, n);  // not a power of two: every product rounds
    ASSERT_GT(relative_error(want, x), 0.1);
    auto d_x = upload(x);
    cuda::scale(d_x.data(), 1.0f / 3.0f, n, stream());
    EXPECT_EQ(first_bit_difference(download(d_x), want), -1);
    // Unaligned: the scalar loop alone.
    auto d_y = upload(x);
    std::vector<float> want_tail = x;
    scale(want_tail.data() + 1, 1.0f / 3.0f, n - 1);
    cuda::scale(d_y.data() + 1, 1.0f / 3.0f, n - 1, stream());
    EXPECT_EQ(first_bit_difference(download(d_y), want_tail), -1);
  }
}

TEST_F(CudaElementwise, EmptyInputsLaunchNothing) {
  EXPECT_NO_THROW(cuda::add(nullptr, nullptr, nullptr, 0, stream()));
  EXPECT_NO_THROW(cuda::float_to_bf16(nullptr, nullptr, 0, stream()));
  EXPECT_NO_THROW(cuda::bf16_to_float(nullptr, nullptr, 0, stream()));
}

// Inputs whose rounding is easy to get wrong, with the codes bf16_encode gives them.
struct Special {
  uint32_t bits;
  uint16_t code;
};
const std::vector<Special> kSpecials = {
    {0x00000000, 0x0000}, {0x80000000, 0x8000},  // ±0 keep their sign
    {0x7F800000, 0x7F80}, {0xFF800000, 0xFF80},  // ±inf
    {0x7FC00000, 0x7FFF}, {0xFFC00000, 0x7FFF},  // quiet NaNs: one canonical code
    {0x7F800001, 0x7FFF}, {0xFF800001, 0x7FFF},  // signaling NaNs (a carry would make inf)
    {0x7FFFFFFF, 0x7FFF}, {0xFFFFFFFF, 0x7FFF}, {0x7FBFFFFF, 0x7FFF},
    {0x00000001, 0x0000}, {0x80000001, 0x8000},  // smallest subnormals round to ±0
    {0x00008000, 0x0000}, {0x00018000, 0x0002},  // subnormal ties: to even, down then up
    {0x007FFFFF, 0x0080}, {0x00400000, 0x0040},  // largest subnormal rounds up to min normal
    {0x00800000, 0x0080},                        // smallest normal
    {0x3F800000, 0x3F80}, {0x3F808000, 0x3F80},  // 1, and the tie above it: down to even
    {0x3F818000, 0x3F82}, {0x3F808001, 0x3F81},  // tie from odd: up; just above a tie: up
    {0x3F807FFF, 0x3F80}, {0xBF808000, 0xBF80}, {0xBF818000, 0xBF82},
    {0x7F7F7FFF, 0x7F7F}, {0x7F7F8000, 0x7F80},  // largest values: a tie from odd overflows
    {0x7F7FFFFF, 0x7F80}, {0xFF7FFFFF, 0xFF80},  // FLT_MAX rounds to ±inf
};

TEST_F(CudaElementwise, Bf16EncodingOfSpecialsIsTheCpus) {
  std::vector<float> x;
  std::vector<uint16_t> want;
  for (const Special& s : kSpecials) {
    x.push_back(from_bits(s.bits));
    want.push_back(s.code);
    ASSERT_EQ(bf16_encode(x.back()), s.code) << std::hex << "0x" << s.bits;  // the table itself
  }
  auto d_x = upload(x);
  auto d_codes = empty<uint16_t>(static_cast<int64_t>(x.size()));
  cuda::float_to_bf16(d_x.data(), d_codes.data(), static_cast<int64_t>(x.size()), stream());
  const auto got = download(d_codes);
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(got[i], want[i]) << std::hex << "input 0x" << kSpecials[i].bits;
}

TEST_F(CudaElementwise, Bf16EncodingOfRandomBitPatternsIsTheCpus) {
  const int64_t n = (int64_t{1} << 23) + 5;  // 8M values and a scalar tail
  const auto x = random_bit_patterns(n, 6);
  const auto want = cpu_bf16(x);
  auto d_x = upload(x);
  auto d_codes = empty<uint16_t>(n);
  cuda::float_to_bf16(d_x.data(), d_codes.data(), n, stream());
  const auto got = download(d_codes);
  const int64_t at = first_bit_difference(got, want);
  if (at >= 0) {
    const size_t i = static_cast<size_t>(at);
    uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    ADD_FAILURE() << std::hex << "input 0x" << bits << ": got 0x" << got[i] << ", want 0x"
                  << want[i];
  }
}

// Offsets break the 16-byte (input) and 8-byte (output) alignment: the scalar loop alone.
TEST_F(CudaElementwise, Bf16EncodingOnUnalignedPointers) {
  const int64_t n = 100003;
  for (int64_t offset = 1; offset <= 3; ++offset) {
    SCOPED_TRACE("offset = " + std::to_string(offset));
    const auto x = random_bit_patterns(n + offset, 7);
    std::vector<uint16_t> want = cpu_bf16(x);
    for (int64_t i = 0; i < offset; ++i) want[static_cast<size_t>(i)] = 0x1234;  // untouched
    auto d_x = upload(x);
    auto d_codes = upload(std::vector<uint16_t>(static_cast<size_t>(n + offset), 0x1234));
    cuda::float_to_bf16(d_x.data() + offset, d_codes.data() + offset, n, stream());
    EXPECT_EQ(first_bit_difference(download(d_codes), want), -1);
  }
}

TEST_F(CudaElementwise, Bf16DecodingOfEveryCodeIsTheCpus) {
  std::vector<uint16_t> codes;  // every code, then three more for a scalar tail
  for (uint32_t c = 0; c < 65536; ++c) codes.push_back(static_cast<uint16_t>(c));
  codes.insert(codes.end(), {0x7FC1, 0xFF81, 0x3F80});
  std::vector<float> want(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) want[i] = bf16_decode(codes[i]);
  const int64_t n = static_cast<int64_t>(codes.size());
  for (int64_t offset = 0; offset <= 1; ++offset) {  // 1: unaligned, the scalar loop
    SCOPED_TRACE("offset = " + std::to_string(offset));
    auto d_codes = upload(codes);
    auto d_out = upload(std::vector<float>(codes.size(), -7.0f));
    cuda::bf16_to_float(d_codes.data() + offset, d_out.data() + offset, n - offset, stream());
    std::vector<float> expected = want;
    if (offset == 1) expected[0] = -7.0f;  // before the range: untouched
    EXPECT_EQ(first_bit_difference(download(d_out), expected), -1);
  }
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
