// CRC-32C (Castagnoli): the checksum of every shard file. Castagnoli's polynomial 0x1EDC6F41
// (bit-reflected: 0x82F63B78) is the one iSCSI (RFC 3720 §12.1), ext4 and Btrfs use, and the one
// SSE4.2's CRC32 instruction computes, so x86-64 checksums at several GB/s, faster than a disk
// reads back. Other CPUs use slice-by-8 tables (Kounavis & Berry, "A Systematic Approach to
// Building High Performance Software-Based CRC Generators", ISCC 2005): eight bytes per step
// through eight 256-entry tables.
#include <cstring>

#include "trainer/checkpoint/checkpoint_store.h"
#include "trainer/checkpoint/crc32c_paths.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace baleine::ckpt {

namespace detail {

namespace {

// The shard format is little-endian (checkpoint_format.h), and so is the 8-byte load below.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "baleine checkpoints are little-endian");

constexpr uint32_t kReflectedPolynomial = 0x82F63B78u;

// table[s][b]: the CRC contribution of byte b followed by s zero bytes, so eight bytes combine
// with eight independent look-ups instead of a chain of eight.
struct SliceTables {
  uint32_t table[8][256];
};

constexpr SliceTables make_slice_tables() {
  SliceTables t{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kReflectedPolynomial : 0u);
    t.table[0][byte] = crc;
  }
  for (int s = 1; s < 8; ++s) {
    for (uint32_t byte = 0; byte < 256; ++byte) {
      const uint32_t previous = t.table[s - 1][byte];
      t.table[s][byte] = (previous >> 8) ^ t.table[0][previous & 0xFFu];
    }
  }
  return t;
}

constexpr SliceTables kTables = make_slice_tables();

}  // namespace

uint32_t crc32c_portable(const void* data, size_t bytes, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  const auto& t = kTables.table;
  crc = ~crc;  // the running value is kept inverted (preset and final XOR of all ones)
  for (; bytes >= 8; bytes -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    word ^= crc;
    // The first byte in memory (lowest in the little-endian word) has seven more to pass.
    crc = t[7][word & 0xFF] ^ t[6][(word >> 8) & 0xFF] ^ t[5][(word >> 16) & 0xFF] ^
          t[4][(word >> 24) & 0xFF] ^ t[3][(word >> 32) & 0xFF] ^ t[2][(word >> 40) & 0xFF] ^
          t[1][(word >> 48) & 0xFF] ^ t[0][word >> 56];
  }
  for (; bytes > 0; --bytes, ++p) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFF];
  return ~crc;
}

#if defined(__x86_64__)

bool crc32c_hardware_available() {
  __builtin_cpu_init();  // harmless when already done; needed if called before constructors
  return __builtin_cpu_supports("sse4.2");
}

// Compiled for SSE4.2 on its own (no global -msse4.2), and only called after the CPU check.
__attribute__((target("sse4.2"))) uint32_t crc32c_hardware(const void* data, size_t bytes,
                                                           uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t running = ~crc;
  for (; bytes >= 8; bytes -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));  // unaligned loads are fine on x86-64
    running = _mm_crc32_u64(running, word);
  }
  auto narrow = static_cast<uint32_t>(running);
  for (; bytes > 0; --bytes, ++p) narrow = _mm_crc32_u8(narrow, *p);
  return ~narrow;
}

#else

bool crc32c_hardware_available() { return false; }

uint32_t crc32c_hardware(const void* data, size_t bytes, uint32_t crc) {
  return crc32c_portable(data, bytes, crc);
}

#endif

}  // namespace detail

uint32_t crc32c(const void* data, size_t bytes, uint32_t crc) {
  using Implementation = uint32_t (*)(const void*, size_t, uint32_t);
  static const Implementation chosen =
      detail::crc32c_hardware_available() ? detail::crc32c_hardware : detail::crc32c_portable;
  return chosen(data, bytes, crc);
}

}  // namespace baleine::ckpt
