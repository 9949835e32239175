// safetensors writing (streamed, one tensor in memory at a time, made durable with fsync and an
// atomic rename) and header parsing with every field checked before use. The format's rules
// quoted in safetensors.h come from https://huggingface.co/docs/safetensors ("Format").
#include "trainer/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "trainer/checkpoint/durable_files.h"
#include "trainer/config/json_text.h"
#include "trainer/errors.h"

// The buffer is little-endian; baleine copies floats as they lie in memory, which is only
// right on a little-endian host (every platform baleine targets: x86-64, aarch64).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors writing assumes a little-endian host");

namespace baleine::ckpt {

namespace {

namespace fs = std::filesystem;
using config::json_string;
using detail::write_all;

// Reads exactly `bytes` at `offset`; false when the file ends first or the read fails.
bool read_exactly(int fd, int64_t offset, void* dst, size_t bytes) {
  return detail::pread_full(fd, dst, bytes, offset) == static_cast<int64_t>(bytes);
}

constexpr int64_t kF32Bytes = 4;
// The reference implementation (safetensors' Rust crate, MAX_HEADER_SIZE) refuses headers over
// 100 MB; so do we, before allocating anything for a header length read from a file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

const char* const kWriteHint =
    "check that the output directory is writable and its disk is not full (df -h)";
const char* const kFormatHint =
    "a safetensors file is an 8-byte little-endian header length, a JSON header, then the "
    "tensors (https://huggingface.co/docs/safetensors); the file may be truncated or not a "
    "safetensors file: export it again with `baleine export`";

[[noreturn]] void io_error(const std::string& path, const std::string& what) {
  throw UserError(path, "", what + ": " + std::strerror(errno), kWriteHint);
}

[[noreturn]] void format_error(const std::string& path, const std::string& what) {
  throw UserError(path, "", what, kFormatHint);
}

// Element count of a row-major shape, or -1 when a dimension is negative or the byte count
// (× element_bytes) would not fit in int64.
int64_t checked_elements(const std::vector<int64_t>& shape, int64_t element_bytes) {
  const int64_t limit = std::numeric_limits<int64_t>::max() / element_bytes;
  int64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > limit / d) return -1;
    n *= d;
  }
  return n;
}


std::string json_int_array(const std::vector<int64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "]";
}



// The temporary a file is written to: removed on destruction unless it was renamed into place.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) io_error(path_, "cannot create");
  }
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(path_.c_str());
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

  // fsync (the data must be on disk before the rename makes it visible), close, rename.
  void commit(const std::string& final_path) {
    if (::fsync(fd_) != 0) io_error(path_, "cannot fsync");
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) io_error(path_, "cannot close");
    if (::rename(path_.c_str(), final_path.c_str()) != 0) {
      io_error(final_path, "cannot rename " + path_ + " to it");
    }
    renamed_ = true;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool renamed_ = false;
};

// The header: metadata first, then tensors in `order` with consecutive data offsets; padded
// with spaces so that 8 + N, where the buffer starts, is a multiple of 8.
std::string header_json(const std::vector<SafetensorsSource>& tensors,
                        const std::vector<int64_t>& elements, const std::vector<size_t>& order,
                        const std::map<std::string, std::string>& metadata) {
  std::string json = "{";
  if (!metadata.empty()) {
    json += json_string(kMetadataKey) + ":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      json += (first ? "" : ",") + json_string(key) + ":" + json_string(value);
      first = false;
    }
    json += "}";
  }
  int64_t offset = 0;
  for (const size_t i : order) {
    const int64_t end = offset + elements[i] * kF32Bytes;
    json += (json.size() > 1 ? "," : "") + json_string(tensors[i].name) +
            ":{\"dtype\":\"F32\",\"shape\":" + json_int_array(tensors[i].shape) +
            ",\"data_offsets\":" + json_int_array({offset, end}) + "}";
    offset = end;
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  return json;
}

// Element sizes of the dtypes the format defines (the Rust crate's Dtype enum, byte-sized ones).
int64_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// JSON strings come back from yaml-cpp as scalars tagged "!" (quoted); numbers, true, null and
// YAML's bare words are tagged "?".
bool is_json_string(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "!"; }

// A non-negative integer JSON number (no quotes, no sign, no fraction), exactly as written.
bool read_count(const YAML::Node& node, int64_t& value) {
  if (!node.IsScalar() || node.Tag() != "?") return false;
  try {
    const uint64_t v = node.as<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    value = static_cast<int64_t>(v);
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name,
                             const YAML::Node& node) {
  const std::string where = "tensor '" + name + "'";
  if (!node.IsMap()) format_error(path, where + " is not a JSON object");
  const YAML::Node dtype = node["dtype"], shape = node["shape"], offsets = node["data_offsets"];
  if (!dtype || !shape || !offsets) {
    format_error(path, where + " lacks one of \"dtype\", \"shape\", \"data_offsets\"");
  }
  SafetensorsEntry entry;
  entry.name = name;
  if (!is_json_string(dtype)) format_error(path, where + ": \"dtype\" is not a string");
  entry.dtype = dtype.as<std::string>();
  const int64_t element_bytes = dtype_size(entry.dtype);
  if (element_bytes == 0) format_error(path, where + ": unknown dtype '" + entry.dtype + "'");
  if (!shape.IsSequence()) format_error(path, where + ": \"shape\" is not an array");
  for (const YAML::Node& d : shape) {
    int64_t dim = 0;
    if (!read_count(d, dim)) {
      format_error(path, where + ": \"shape\" holds something other than non-negative integers");
    }
    entry.shape.push_back(dim);
  }
  if (!offsets.IsSequence() || offsets.size() != 2 || !read_count(offsets[0], entry.begin) ||
      !read_count(offsets[1], entry.end) || entry.begin > entry.end) {
    format_error(path, where + ": \"data_offsets\" is not [begin, end] with 0 <= begin <= end");
  }
  const int64_t elements = checked_elements(entry.shape, element_bytes);
  if (elements < 0 || elements * element_bytes != entry.end - entry.begin) {
    format_error(path, where + ": data_offsets [" + std::to_string(entry.begin) + ", " +
                           std::to_string(entry.end) + ") do not hold its shape " +
                           json_int_array(entry.shape) + " of " + entry.dtype);
  }
  return entry;
}

// The tensors must tile [0, buffer_bytes) exactly, as the reference implementation requires:
// a gap or an overlap means a corrupt header, bytes past the last tensor a wrong length.
void check_tiling(const std::string& path, std::vector<SafetensorsEntry> tensors,
                  int64_t buffer_bytes) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  int64_t expected = 0;
  for (const SafetensorsEntry& t : tensors) {
    if (t.begin != expected) {
      format_error(path, "tensor '" + t.name + "' starts at byte " + std::to_string(t.begin) +
                             " of the buffer, the previous tensor ends at " +
                             std::to_string(expected) + (t.begin < expected ? " (overlap)" : " (gap)"));
    }
    expected = t.end;
  }
  if (expected != buffer_bytes) {
    format_error(path, "the tensors end at byte " + std::to_string(expected) +
                           " of the buffer, which holds " + std::to_string(buffer_bytes) +
                           (expected > buffer_bytes ? " (truncated file?)" : " (trailing bytes)"));
  }
}


class ReadOnlyFile {
 public:
  explicit ReadOnlyFile(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    struct stat info {};
    if (fd_ < 0 || ::fstat(fd_, &info) != 0) {
      throw UserError(path, "", std::string("cannot open: ") + std::strerror(errno),
                      "check the path and its permissions");
    }
    if (!S_ISREG(info.st_mode)) throw UserError(path, "", "not a regular file", kFormatHint);
    bytes_ = info.st_size;
  }
  ~ReadOnlyFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  int fd() const { return fd_; }
  int64_t bytes() const { return bytes_; }

 private:
  int fd_;
  int64_t bytes_ = 0;
};

}  // namespace

SafetensorsWriteSummary write_safetensors(const std::string& path,
                                          const std::vector<SafetensorsSource>& tensors,
                                          const std::map<std::string, std::string>& metadata) {
  SafetensorsWriteSummary summary;
  std::vector<int64_t> elements(tensors.size());
  std::set<std::string> names;
  int64_t largest = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsSource& t = tensors[i];
    if (t.name.empty() || t.name == kMetadataKey || !names.insert(t.name).second) {
      throw UserError(path, "", "cannot write tensor '" + t.name +
                                    "': names must be unique, non-empty and not __metadata__");
    }
    elements[i] = checked_elements(t.shape, kF32Bytes);
    if (elements[i] < 0 ||
        summary.elements > std::numeric_limits<int64_t>::max() / kF32Bytes - elements[i]) {
      throw UserError(path, "", "cannot write tensor '" + t.name + "': shape " +
                                    json_int_array(t.shape) + " is negative or too large");
    }
    summary.elements += elements[i];
    largest = std::max(largest, elements[i]);
  }
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors[a].name < tensors[b].name; });

  const std::string header = header_json(tensors, elements, order, metadata);
  summary.tensors = static_cast<int64_t>(tensors.size());
  summary.header_bytes = static_cast<int64_t>(header.size());
  summary.file_bytes = 8 + summary.header_bytes + summary.elements * kF32Bytes;

  TemporaryFile temporary(path + ".tmp-" + std::to_string(::getpid()));
  unsigned char length[8];
  for (int b = 0; b < 8; ++b) length[b] = static_cast<unsigned char>(header.size() >> (8 * b));
  write_all(temporary.fd(), length, sizeof(length), temporary.path());
  write_all(temporary.fd(), header.data(), header.size(), temporary.path());
  std::vector<float> buffer(static_cast<size_t>(largest));
  for (const size_t i : order) {
    // Zeroed first, so a `fill` that writes too little leaves zeros rather than the previous
    // tensor's values.
    std::fill(buffer.begin(), buffer.begin() + elements[i], 0.0f);
    tensors[i].fill(buffer.data());
    write_all(temporary.fd(), buffer.data(), static_cast<size_t>(elements[i] * kF32Bytes),
              temporary.path());
  }
  temporary.commit(path);
  const std::string dir = fs::path(path).parent_path().string();
  detail::sync_directory(dir.empty() ? "." : dir);
  return summary;
}

SafetensorsHeader parse_safetensors(const std::string& path) {
  const ReadOnlyFile file(path);
  SafetensorsHeader result;
  result.file_bytes = file.bytes();
  unsigned char length[8];
  if (file.bytes() < 8 || !read_exactly(file.fd(), 0, length, sizeof(length))) {
    format_error(path, "is " + std::to_string(file.bytes()) +
                           " bytes, too short for the 8-byte header length");
  }
  uint64_t n = 0;
  for (int b = 7; b >= 0; --b) n = (n << 8) | length[b];
  if (n > kMaxHeaderBytes) {
    format_error(path, "header length " + std::to_string(n) + " exceeds the format's 100 MB cap");
  }
  if (n > static_cast<uint64_t>(file.bytes() - 8)) {
    format_error(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                           std::to_string(file.bytes()) + " bytes)");
  }
  result.header_bytes = static_cast<int64_t>(n);
  result.data_start = 8 + result.header_bytes;
  std::string text(static_cast<size_t>(n), '\0');
  if (!read_exactly(file.fd(), 8, text.data(), text.size())) {
    throw UserError(path, "", std::string("cannot read the header: ") + std::strerror(errno));
  }
  if (text.empty() || text[0] != '{') format_error(path, "the header does not start with '{'");

  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    format_error(path, std::string("the header is not valid JSON: ") + e.what());
  }
  if (!root.IsMap()) format_error(path, "the header is not a JSON object");
  std::set<std::string> names;
  bool seen_metadata = false;
  for (const auto& item : root) {
    if (!is_json_string(item.first)) format_error(path, "the header has a key that is not a string");
    const std::string name = item.first.as<std::string>();
    if (name == kMetadataKey) {
      if (seen_metadata) format_error(path, "the header has two \"__metadata__\" entries");
      seen_metadata = true;
      if (!item.second.IsMap()) format_error(path, "\"__metadata__\" is not a JSON object");
      for (const auto& kv : item.second) {
        if (!is_json_string(kv.first) || !is_json_string(kv.second)) {
          format_error(path, "\"__metadata__\" must map strings to strings");
        }
        result.metadata[kv.first.as<std::string>()] = kv.second.as<std::string>();
      }
      continue;
    }
    if (!names.insert(name).second) format_error(path, "tensor '" + name + "' appears twice");
    result.tensors.push_back(parse_entry(path, name, item.second));
  }
  check_tiling(path, result.tensors, result.file_bytes - result.data_start);
  std::sort(result.tensors.begin(), result.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return result;
}

std::vector<char> read_safetensors_bytes(const std::string& path, const SafetensorsHeader& header,
                                         const SafetensorsEntry& tensor) {
  const ReadOnlyFile file(path);
  if (tensor.begin < 0 || tensor.end < tensor.begin ||
      header.data_start + tensor.end > file.bytes()) {
    format_error(path, "tensor '" + tensor.name + "' lies past the end of the file");
  }
  std::vector<char> bytes(static_cast<size_t>(tensor.end - tensor.begin));
  if (!read_exactly(file.fd(), header.data_start + tensor.begin, bytes.data(), bytes.size())) {
    throw UserError(path, "", "cannot read tensor '" + tensor.name + "': " + std::strerror(errno));
  }
  return bytes;
}

}  // namespace baleine::ckpt
