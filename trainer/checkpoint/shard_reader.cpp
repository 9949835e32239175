// Reading a checkpoint back: shards checked against the manifest's sizes and CRC-32Cs, and
// element ranges of tensors assembled from whichever records hold them, reading only those
// bytes (pread), so each rank of a new layout reads just its part.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <vector>

#include "trainer/checkpoint/checkpoint_store.h"
#include "trainer/checkpoint/durable_files.h"
#include "trainer/errors.h"

namespace baleine::ckpt {

namespace fs = std::filesystem;

namespace {

constexpr size_t kVerifyChunkBytes = size_t{1} << 20;

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "%08x", value);
  return text;
}

// "" when the file has the size and checksum the manifest says.
std::string verify_shard(const std::string& path, const ShardFile& shard) {
  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return path + " is missing";
    return path + " cannot be opened: " + std::strerror(errno);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return path + " cannot be read: " + std::strerror(errno);
  const int64_t size = info.st_size;
  if (size != shard.bytes) {
    return path + " is " + std::to_string(size) + " bytes, the manifest says " +
           std::to_string(shard.bytes) + (size < shard.bytes ? " (truncated)" : " (too long)");
  }
  std::vector<char> buffer(kVerifyChunkBytes);
  uint32_t crc = 0;
  for (int64_t offset = 0; offset < size;) {
    const size_t want =
        static_cast<size_t>(std::min<int64_t>(size - offset, static_cast<int64_t>(buffer.size())));
    const int64_t got = detail::pread_full(fd.get(), buffer.data(), want, offset);
    if (got < 0) return path + " cannot be read: " + std::strerror(errno);
    if (got < static_cast<int64_t>(want)) return path + " shrank while being read";
    crc = crc32c(buffer.data(), want, crc);
    offset += got;
  }
  if (crc != shard.crc32c) {
    return path + ": checksum mismatch (expected " + hex32(shard.crc32c) + ", got " + hex32(crc) +
           "): the file is corrupt";
  }
  return "";
}

}  // namespace

std::string verify_shards(const std::string& checkpoint_dir, const Manifest& m, int offset,
                          int stride) {
  if (stride < 1 || offset < 0 || offset >= stride) {
    throw std::invalid_argument("verify_shards: offset must be in [0, stride)");
  }
  for (size_t i = static_cast<size_t>(offset); i < m.shards.size();
       i += static_cast<size_t>(stride)) {
    const std::string path = (fs::path(checkpoint_dir) / m.shards[i].file).string();
    std::string problem = verify_shard(path, m.shards[i]);
    if (!problem.empty()) return problem;
  }
  return "";
}

TensorReader::TensorReader(std::string checkpoint_dir, const Manifest& manifest)
    : dir_(std::move(checkpoint_dir)), manifest_(manifest) {
  for (const Record& r : manifest_.records) index_[{r.name, r.kind}].push_back(&r);
}

const std::vector<const Record*>& TensorReader::records_of(const std::string& name,
                                                           Kind kind) const {
  static const std::vector<const Record*> none;
  const auto it = index_.find({name, kind});
  return it == index_.end() ? none : it->second;
}

bool TensorReader::has(const std::string& name, Kind kind) const {
  return !records_of(name, kind).empty();
}

const std::vector<int64_t>& TensorReader::shape(const std::string& name, Kind kind) const {
  const auto& records = records_of(name, kind);
  if (!records.empty()) return records.front()->shape;
  throw UserError(dir_, "", std::string("holds no ") + kind_name(kind) + " of tensor " + name,
                  "the checkpoint is of another model, or damaged");
}

void TensorReader::read(const std::string& name, Kind kind, DType dtype, int64_t begin, int64_t end,
                        void* dst) const {
  const std::string tensor = name + " (" + kind_name(kind) + ")";
  const auto refuse = [&](const std::string& what, const std::string& hint) {
    throw UserError(dir_, "", tensor + ": " + what, hint);
  };
  if (begin < 0 || end < begin) {
    throw std::invalid_argument("TensorReader::read: bad range for " + tensor);
  }

  // The records' pieces inside [begin, end), in element order.
  struct Piece {
    const Record* record;
    int64_t from, to;  // elements
  };
  std::vector<Piece> pieces;
  bool found = false;
  for (const Record* record : records_of(name, kind)) {
    const Record& r = *record;
    found = true;
    if (r.dtype != dtype) {
      refuse(std::string("is stored as ") + dtype_name(r.dtype) + ", not " + dtype_name(dtype),
             "resume with the precision.optimizer_state the checkpoint was written with");
    }
    const int64_t from = std::max(begin, r.begin), to = std::min(end, r.end);
    if (from < to) pieces.push_back({&r, from, to});
  }
  if (!found) {
    refuse("is not in the checkpoint", "the checkpoint is of another model, or damaged");
  }
  std::sort(pieces.begin(), pieces.end(),
            [](const Piece& a, const Piece& b) { return a.from < b.from; });
  int64_t covered = begin;
  for (const Piece& piece : pieces) {
    if (piece.from != covered) break;
    covered = piece.to;
  }
  if (covered < end) {
    int64_t gap_end = end;
    for (const Piece& piece : pieces) {
      if (piece.from > covered) {
        gap_end = std::min(gap_end, piece.from);
      }
    }
    refuse("elements [" + std::to_string(covered) + ", " + std::to_string(gap_end) +
               ") are in no record",
           "the checkpoint is incomplete or of another model shape");
  }

  // One descriptor per shard used by this call.
  std::map<int, detail::UniqueFd> files;
  const int64_t element_bytes = dtype_bytes(dtype);
  for (const Piece& piece : pieces) {
    const Record& r = *piece.record;
    if (r.shard < 0 || static_cast<size_t>(r.shard) >= manifest_.shards.size()) {
      refuse("a record names shard " + std::to_string(r.shard) + ", which is not listed",
             "the manifest is damaged");
    }
    const std::string path = (fs::path(dir_) / manifest_.shards[r.shard].file).string();
    auto [it, opened] = files.try_emplace(r.shard);
    if (opened) {
      it->second = detail::UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (it->second.get() < 0) {
        refuse("cannot open " + path + ": " + std::strerror(errno),
               "the checkpoint is incomplete or damaged: resume from an older one");
      }
    }
    const int64_t offset = r.offset + (piece.from - r.begin) * element_bytes;
    const auto bytes = static_cast<size_t>((piece.to - piece.from) * element_bytes);
    char* out = static_cast<char*>(dst) + (piece.from - begin) * element_bytes;
    const int64_t got = detail::pread_full(it->second.get(), out, bytes, offset);
    if (got < 0) {
      refuse("cannot read " + path + ": " + std::strerror(errno),
             "the storage failed: check the disk, or resume from an older checkpoint");
    }
    if (got < static_cast<int64_t>(bytes)) {
      refuse(path + " ends at byte " + std::to_string(offset + got) + ", before the record's " +
                 std::to_string(offset + static_cast<int64_t>(bytes)) + " (truncated)",
             "the checkpoint is damaged: resume from an older one");
    }
  }
}

}  // namespace baleine::ckpt
