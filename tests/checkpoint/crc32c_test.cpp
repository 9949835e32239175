// CRC-32C: the published check values (the CRC catalogue's "123456789" and RFC 3720 B.4's
// iSCSI vectors), and the table and SSE4.2 paths against a bit-at-a-time reference on random
// data of odd lengths and alignments, whole and in chunks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "trainer/checkpoint/checkpoint_store.h"
#include "trainer/checkpoint/crc32c_paths.h"

namespace baleine::ckpt {
namespace {

using Crc = uint32_t (*)(const void*, size_t, uint32_t);

// The definition itself: one bit at a time, reflected polynomial 0x82F63B78, preset and final
// XOR of all ones. Nothing shared with the implementations under test.
uint32_t crc32c_bitwise(const unsigned char* data, size_t bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < bytes; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// The paths this machine can run: the portable one always, the instruction when present.
std::vector<std::pair<const char*, Crc>> paths() {
  std::vector<std::pair<const char*, Crc>> all = {{"portable", detail::crc32c_portable},
                                                  {"dispatched", crc32c}};
  if (detail::crc32c_hardware_available()) all.emplace_back("sse4.2", detail::crc32c_hardware);
  return all;
}

TEST(Crc32c, CatalogueCheckValue) {
  const std::string text = "123456789";
  for (const auto& [name, crc] : paths()) {
    EXPECT_EQ(crc(text.data(), text.size(), 0), 0xE3069283u) << name;
  }
  EXPECT_EQ(crc32c_bitwise(reinterpret_cast<const unsigned char*>(text.data()), text.size()),
            0xE3069283u);
}

// RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32c, Rfc3720Vectors) {
  std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xFF), ascending(32), descending(32);
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<unsigned char>(i);
    descending[i] = static_cast<unsigned char>(31 - i);
  }
  for (const auto& [name, crc] : paths()) {
    EXPECT_EQ(crc(zeros.data(), 32, 0), 0x8A9136AAu) << name;
    EXPECT_EQ(crc(ones.data(), 32, 0), 0x62A8AB43u) << name;
    EXPECT_EQ(crc(ascending.data(), 32, 0), 0x46DD794Eu) << name;
    EXPECT_EQ(crc(descending.data(), 32, 0), 0x113FDB5Cu) << name;
  }
}

TEST(Crc32c, EmptyInputKeepsTheRunningValue) {
  for (const auto& [name, crc] : paths()) {
    EXPECT_EQ(crc(nullptr, 0, 0), 0u) << name;
    EXPECT_EQ(crc(nullptr, 0, 0xE3069283u), 0xE3069283u) << name;
  }
}

TEST(Crc32c, PathsMatchTheBitwiseDefinitionOnRandomData) {
  std::mt19937_64 rng(20240817);
  std::vector<unsigned char> buffer(4096 + 16);
  for (auto& byte : buffer) byte = static_cast<unsigned char>(rng());
  // Every alignment 0..7 and every length 0..70 (all tails of the 8-byte loops), then long
  // odd lengths.
  std::vector<std::pair<size_t, size_t>> cases;
  for (size_t align = 0; align < 8; ++align) {
    for (size_t length = 0; length <= 70; ++length) cases.emplace_back(align, length);
  }
  for (int i = 0; i < 40; ++i) cases.emplace_back(rng() % 8, 1 + 2 * (rng() % 2040));
  for (const auto& [align, length] : cases) {
    const unsigned char* data = buffer.data() + align;
    const uint32_t expected = crc32c_bitwise(data, length);
    for (const auto& [name, crc] : paths()) {
      ASSERT_EQ(crc(data, length, 0), expected)
          << name << ", alignment " << align << ", length " << length;
    }
  }
}

TEST(Crc32c, ChunkedUpdatesEqualOnePass) {
  std::mt19937_64 rng(7);
  std::vector<unsigned char> data(100003);
  for (auto& byte : data) byte = static_cast<unsigned char>(rng());
  const uint32_t whole = crc32c_bitwise(data.data(), data.size());
  for (const auto& [name, crc] : paths()) {
    for (int trial = 0; trial < 5; ++trial) {
      uint32_t running = 0;
      size_t at = 0;
      while (at < data.size()) {
        const size_t n = std::min<size_t>(data.size() - at, rng() % 9000);  // 0 included
        running = crc(data.data() + at, n, running);
        at += n;
      }
      EXPECT_EQ(running, whole) << name << ", trial " << trial;
    }
  }
}

TEST(Crc32c, OneFlippedBitChangesTheValue) {
  std::mt19937_64 rng(11);
  std::vector<unsigned char> data(5000);
  for (auto& byte : data) byte = static_cast<unsigned char>(rng());
  const uint32_t clean = crc32c(data.data(), data.size());
  for (int i = 0; i < 50; ++i) {
    const size_t at = rng() % data.size();
    const auto mask = static_cast<unsigned char>(1u << (rng() % 8));
    data[at] ^= mask;
    EXPECT_NE(crc32c(data.data(), data.size()), clean) << "byte " << at;
    data[at] ^= mask;
  }
}

}  // namespace
}  // namespace baleine::ckpt
