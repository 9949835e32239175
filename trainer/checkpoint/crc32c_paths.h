#pragma once
// The two implementations behind crc32c() (checkpoint_store.h). crc32c() picks one once per
// process; they are declared here so that tests can check that both give the same values.
#include <cstddef>
#include <cstdint>

namespace baleine::ckpt::detail {

// Slice-by-8 tables: any CPU.
uint32_t crc32c_portable(const void* data, size_t bytes, uint32_t crc);

// Whether this CPU has SSE4.2's CRC32 instruction (always false off x86-64).
bool crc32c_hardware_available();

// The CRC32 instruction; call only when crc32c_hardware_available() (off x86-64 it is the
// portable code).
uint32_t crc32c_hardware(const void* data, size_t bytes, uint32_t crc);

}  // namespace baleine::ckpt::detail
