#pragma once
// The safetensors file format (https://huggingface.co/docs/safetensors, "Format"), which other
// tools (PyTorch, JAX, llama.cpp converters, ...) read without running any code from the file:
//
//   8 bytes   N, little-endian u64: the size of the header
//   N bytes   UTF-8 JSON: {"__metadata__": {str: str},
//                          "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
//             starting with '{', possibly padded with trailing spaces
//   the rest  the byte buffer: every tensor row-major, little-endian, at [b, e) relative to the
//             buffer's start; tensors are contiguous and cover the buffer exactly
//
// baleine writes F32 tensors only (master weights are FP32), keys sorted ("__metadata__", then
// tensor names in byte order, the data in the same order) and the header padded to a multiple of
// 8 bytes, so the buffer and every F32 tensor in a memory-mapped file are aligned.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace baleine::ckpt {

// One tensor to write: F32, `shape` row-major (an empty shape is a scalar). `fill(dst)` writes
// its product(shape) floats into dst; it is called once, in output order, so a writer holds one
// tensor in memory at a time, whatever the model's size.
struct SafetensorsSource {
  std::string name;
  std::vector<int64_t> shape;
  std::function<void(float* dst)> fill;
};

struct SafetensorsWriteSummary {
  int64_t tensors = 0;
  int64_t elements = 0;      // sum of the tensors' element counts
  int64_t header_bytes = 0;  // N (padding included)
  int64_t file_bytes = 0;    // 8 + N + buffer
};

// Writes `tensors` (any order; names unique, non-empty, not "__metadata__") and `metadata`
// (omitted when empty) to `path` through a temporary beside it (PATH.tmp-<pid>), fsync'd and
// renamed over `path`, then the directory fsync'd: `path` is either the old file or the whole new
// one. Throws UserError naming the file on bad input (duplicate names, negative dimensions) or
// a write error (the temporary is removed); exceptions from `fill` propagate the same way.
SafetensorsWriteSummary write_safetensors(const std::string& path,
                                          const std::vector<SafetensorsSource>& tensors,
                                          const std::map<std::string, std::string>& metadata);

// One tensor of a parsed file.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;            // "F32", "BF16", "I64", ... as written
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;   // data_offsets: byte range relative to the buffer's start
};

struct SafetensorsHeader {
  int64_t header_bytes = 0;  // N
  int64_t data_start = 0;    // 8 + N: where the buffer begins in the file
  int64_t file_bytes = 0;
  std::map<std::string, std::string> metadata;
  std::vector<SafetensorsEntry> tensors;  // sorted by name
};

// Reads and checks a safetensors file's header without reading the buffer: the header length
// fits the file (and a 100 MB cap, as the reference implementation has), the header is a JSON
// object starting with '{', metadata values are strings, every dtype is known, shapes are
// non-negative integers, names are unique, each tensor's byte count is product(shape) × the
// dtype's size, and the tensors tile the buffer exactly (no gaps, overlaps or trailing bytes).
// Throws UserError naming `path` and what is wrong.
// JSON is parsed with yaml-cpp (JSON is YAML 1.2 flow syntax); keys and metadata values must be
// quoted, which rejects most YAML-only spellings, but not every non-JSON text is caught.
SafetensorsHeader parse_safetensors(const std::string& path);

// The bytes of one tensor of a parsed file (tests, checks). Throws UserError on a read error.
std::vector<char> read_safetensors_bytes(const std::string& path, const SafetensorsHeader& header,
                                         const SafetensorsEntry& tensor);

}  // namespace baleine::ckpt
