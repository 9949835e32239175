// The consistency of a checkpoint's shards and records, checked before any of it is used: a
// record that pointed outside its shard or its tensor, or two records that claimed the same
// elements, would otherwise read garbage or write past a buffer.
#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "trainer/checkpoint/manifest_json.h"
#include "trainer/errors.h"

namespace baleine::ckpt::detail {

namespace {

// Elements such that every byte offset (elements × the widest dtype) fits in int64.
constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 8;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text + "]";
}

std::string range_text(int64_t begin, int64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// A file name with no directory part: a manifest must not send a reader elsewhere.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

[[noreturn]] void refuse(const std::string& path, const std::string& field,
                         const std::string& what) {
  throw UserError(path, field, what, kDamagedHint);
}

void check_shards(const std::vector<ShardFile>& shards, const std::string& path) {
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string field = "shards[" + std::to_string(i) + "]";
    const ShardFile& shard = shards[i];
    if (!is_plain_file_name(shard.file)) {
      refuse(path, field + ".file", "\"" + shard.file + "\" is not a plain file name");
    }
    const auto [previous, inserted] = seen.emplace(shard.file, i);
    if (!inserted) {
      refuse(
          path, field + ".file",
          shard.file + " is listed twice (also shards[" + std::to_string(previous->second) + "])");
    }
    if (shard.rank < 0) refuse(path, field + ".rank", "is negative");
    if (shard.bytes < 0) refuse(path, field + ".bytes", "is negative");
  }
}

void check_record(const Record& record, size_t index, const std::vector<ShardFile>& shards,
                  const std::string& path) {
  const std::string field = "records[" + std::to_string(index) + "]";
  int64_t elements = 1;
  for (const int64_t dim : record.shape) {
    if (dim < 0) refuse(path, field + ".shape", shape_text(record.shape) + " has a negative size");
    if (dim != 0 && elements > kMaxElements / dim) {
      refuse(path, field + ".shape", shape_text(record.shape) + " has too many elements");
    }
    elements *= dim;
  }
  if (record.begin < 0) refuse(path, field + ".begin", "is negative");
  if (record.begin > record.end) {
    refuse(path, field + ".begin",
           std::to_string(record.begin) + " is after end " + std::to_string(record.end));
  }
  if (record.end > elements) {
    refuse(path, field + ".end",
           std::to_string(record.end) + " is beyond the " + std::to_string(elements) +
               " elements of " + record.name + " (shape " + shape_text(record.shape) + ")");
  }
  if (record.shard < 0 || static_cast<size_t>(record.shard) >= shards.size()) {
    refuse(path, field + ".shard",
           std::to_string(record.shard) + " is not a shard (there are " +
               std::to_string(shards.size()) + ")");
  }
  const ShardFile& shard = shards[static_cast<size_t>(record.shard)];
  const int64_t bytes = record.bytes();  // fits: end <= kMaxElements
  if (record.offset < 0 || record.offset > shard.bytes || bytes > shard.bytes - record.offset) {
    refuse(path, field + ".offset",
           "bytes " + range_text(record.offset, record.offset + bytes) + " of " + record.name +
               " lie beyond the end of " + shard.file + " (" + std::to_string(shard.bytes) +
               " bytes)");
  }
}

// Records of one tensor (name, kind): same shape and dtype, disjoint element ranges.
void check_tensor(const std::vector<Record>& records, std::vector<size_t> group,
                  const std::string& path) {
  const Record& first = records[group.front()];
  for (const size_t i : group) {
    const std::string field = "records[" + std::to_string(i) + "]";
    if (records[i].shape != first.shape) {
      refuse(path, field + ".shape",
             shape_text(records[i].shape) + " differs from " + shape_text(first.shape) +
                 " in records[" + std::to_string(group.front()) + "] of the same tensor");
    }
    if (records[i].dtype != first.dtype) {
      refuse(path, field + ".dtype",
             std::string(dtype_name(records[i].dtype)) + " differs from " +
                 dtype_name(first.dtype) + " in records[" + std::to_string(group.front()) +
                 "] of the same tensor");
    }
  }
  // Empty ranges hold nothing and overlap nothing.
  group.erase(std::remove_if(group.begin(), group.end(),
                             [&](size_t i) { return records[i].begin == records[i].end; }),
              group.end());
  std::sort(group.begin(), group.end(),
            [&](size_t a, size_t b) { return records[a].begin < records[b].begin; });
  for (size_t k = 1; k < group.size(); ++k) {
    const Record& before = records[group[k - 1]];
    const Record& after = records[group[k]];
    if (after.begin < before.end) {
      refuse(path, "records[" + std::to_string(group[k]) + "]",
             "elements " + range_text(after.begin, after.end) + " of " + after.name + " (" +
                 kind_name(after.kind) + ") overlap " + range_text(before.begin, before.end) +
                 " in records[" + std::to_string(group[k - 1]) + "]");
    }
  }
}

}  // namespace

void check_shards_and_records(const std::vector<ShardFile>& shards,
                              const std::vector<Record>& records, const std::string& path) {
  check_shards(shards, path);
  std::map<std::pair<std::string, Kind>, std::vector<size_t>> tensors;
  for (size_t i = 0; i < records.size(); ++i) {
    check_record(records[i], i, shards, path);
    tensors[{records[i].name, records[i].kind}].push_back(i);
  }
  for (auto& [tensor, group] : tensors) check_tensor(records, std::move(group), path);
}

}  // namespace baleine::ckpt::detail
