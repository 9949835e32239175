// Step 2 and 3 of the write protocol (checkpoint_store.h): each rank streams its records into
// shard-RRRRR.bin and describes them in index-RRRRR.json; rank 0 gathers the indexes into the
// manifest through the file system, so no variable-size MPI gather is needed.
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include "trainer/checkpoint/checkpoint_store.h"
#include "trainer/checkpoint/durable_files.h"
#include "trainer/checkpoint/kill_point.h"
#include "trainer/checkpoint/manifest_json.h"
#include "trainer/errors.h"

namespace baleine::ckpt {

namespace fs = std::filesystem;

namespace {

// Large chunks keep the syscall count low; small ones, while a kill-point hook is set, give a
// shard of a test-sized model many points at which a kill can land.
constexpr size_t kChunkBytes = size_t{1} << 20;
constexpr size_t kKillTestChunkBytes = size_t{4} << 10;
// An index lists one rank's records; a file far beyond this is not an index.
constexpr int64_t kMaxIndexBytes = int64_t{1} << 30;

}  // namespace

ShardWriter::ShardWriter(const std::string& dir, int rank)
    : path_((fs::path(dir) / detail::shard_file_name(rank)).string()), rank_(rank) {
  if (rank < 0) throw std::invalid_argument("ShardWriter: negative rank");
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) detail::throw_io_error(path_, "cannot create the shard", errno);
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void ShardWriter::append(Record& record, const void* data) {
  if (fd_ < 0) throw std::logic_error("ShardWriter::append after finish: " + path_);
  if (record.begin < 0 || record.end < record.begin) {
    throw std::invalid_argument("ShardWriter::append: bad element range for " + record.name);
  }
  record.shard = rank_;
  record.offset = bytes_;
  const size_t chunk = detail::kill_points_armed() ? kKillTestChunkBytes : kChunkBytes;
  const auto* p = static_cast<const char*>(data);
  for (int64_t left = record.bytes(); left > 0;) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(chunk)));
    detail::kill_point("before a chunk of " + path_);
    detail::write_all(fd_, p, n, path_);
    crc_ = crc32c(p, n, crc_);
    detail::kill_point("after a chunk of " + path_);
    p += n;
    left -= static_cast<int64_t>(n);
  }
  bytes_ += record.bytes();
  records_.push_back(record);
}

ShardFile ShardWriter::finish() {
  if (fd_ < 0) throw std::logic_error("ShardWriter::finish called twice: " + path_);
  detail::UniqueFd fd(fd_);
  fd_ = -1;
  detail::sync_file(fd.get(), path_);
  detail::close_checked(fd, path_);
  ShardFile shard;
  shard.file = detail::shard_file_name(rank_);
  shard.rank = rank_;
  shard.bytes = bytes_;
  shard.crc32c = crc_;
  return shard;
}

void write_shard_index(const std::string& dir, const ShardFile& shard,
                       const std::vector<Record>& records) {
  std::string text = "{\n  \"version\": " + std::to_string(kFormatVersion) +
                     ",\n  \"shard\": " + detail::shard_json(shard) + ",\n  \"records\": [";
  for (size_t i = 0; i < records.size(); ++i) {
    text += (i ? ",\n    " : "\n    ") + detail::record_json(records[i]);
  }
  text += records.empty() ? "]\n}\n" : "\n  ]\n}\n";
  detail::write_file_durably((fs::path(dir) / detail::index_file_name(shard.rank)).string(), text);
}

void read_shard_indexes(const std::string& dir, int world, Manifest& m) {
  std::vector<std::string> read;
  for (int rank = 0; rank < world; ++rank) {
    const std::string path = (fs::path(dir) / detail::index_file_name(rank)).string();
    std::error_code error;
    if (!fs::exists(path, error)) continue;  // a rank that holds nothing writes no index
    const std::string text = detail::read_whole_file(path, kMaxIndexBytes);
    try {
      const detail::JsonFields root(detail::load_json_object(text, path), path, "");
      detail::read_version(root);
      ShardFile shard = detail::parse_shard(root.object("shard"));
      if (shard.rank != rank || shard.file != detail::shard_file_name(rank)) {
        root.refuse("shard", "describes " + shard.file + " of rank " + std::to_string(shard.rank) +
                                 ", not " + detail::shard_file_name(rank));
      }
      std::vector<Record> records;
      for (const auto& fields : root.objects("records")) {
        records.push_back(detail::parse_record(fields));
        records.back().shard = 0;
      }
      // Checked alone first, so an error names this index rather than the merged manifest.
      detail::check_shards_and_records({shard}, records, path);
      const int index = static_cast<int>(m.shards.size());
      m.shards.push_back(shard);
      for (Record& record : records) {
        record.shard = index;
        m.records.push_back(std::move(record));
      }
    } catch (const YAML::Exception& error) {
      throw UserError(path, "", "is not a valid shard index (" + error.msg + ")",
                      detail::kDamagedHint);
    }
    read.push_back(path);
  }
  // Together: no two ranks wrote the same elements of a tensor.
  detail::check_shards_and_records(m.shards, m.records, dir + " (the ranks' shard indexes)");
  // Removed only once all are read, so a failure leaves them for inspection. Their removal is
  // made durable by the fsync of the directory in commit().
  for (const std::string& path : read) {
    std::error_code error;
    fs::remove(path, error);
    if (error) detail::throw_io_error(path, "cannot delete", error.value());
  }
}

}  // namespace baleine::ckpt
