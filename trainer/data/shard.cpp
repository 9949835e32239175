// Token shards: writing (atomic) and reading (memory-mapped, validated against the file size).
// The layout is llm.c's (karpathy/llm.c dev/data/data_common.py): 256 int32 header, uint16
// tokens. Both the header and the tokens are little-endian on disk; the tokens are used in
// place from the mapping, so a big-endian host would need a byte swap we do not have.
#include "trainer/data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "trainer/errors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token shards are read in place as little-endian uint16; this host is big-endian"
#endif

namespace baleine::data {
namespace {

constexpr int64_t kHeaderBytes = kShardHeaderInts * static_cast<int64_t>(sizeof(int32_t));
constexpr const char* kRegenerateHint =
    "re-create the shard with `baleine data prepare` (or llm.c's dev/data scripts)";

// Closes a file descriptor on every exit path, including throws.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::string system_error_text() { return std::strerror(errno); }

// write(2) may write less than asked (signals, pipes, quotas); loop until done or failed.
void write_all(int fd, const void* data, size_t bytes, const std::string& tmp_path) {
  const char* cursor = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t written = ::write(fd, cursor, bytes);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      throw UserError(tmp_path, "", "cannot write token shard: " + system_error_text(),
                      "check that the disk has space and the directory is writable");
    }
    cursor += written;
    bytes -= static_cast<size_t>(written);
  }
}

// After rename(2) the new name lives in the directory's data; without syncing the directory a
// crash may forget the rename even though the file's bytes are durable. Best effort: some
// filesystems refuse fsync on a directory, and the shard itself is already complete.
void sync_parent_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  FileDescriptor handle{::open(dir.c_str(), O_RDONLY | O_DIRECTORY)};
  if (handle.fd >= 0) ::fsync(handle.fd);
}

}  // namespace

void write_shard(const std::string& path, const std::vector<uint16_t>& tokens,
                 const ShardMetadata& metadata) {
  constexpr int64_t kMaxHeaderValue = std::numeric_limits<int32_t>::max();
  if (static_cast<int64_t>(tokens.size()) > kMaxHeaderValue) {
    throw UserError(path, "",
                    "a shard holds at most " + std::to_string(kMaxHeaderValue) +
                        " tokens (the header count is an int32), got " +
                        std::to_string(tokens.size()),
                    "write smaller shards (lower shard_tokens)");
  }
  if (metadata.vocab_size < 0 || metadata.vocab_size > kMaxHeaderValue ||
      metadata.documents < 0 || metadata.documents > kMaxHeaderValue) {
    throw UserError(path, "", "shard metadata does not fit the int32 header (vocab_size " +
                                  std::to_string(metadata.vocab_size) + ", documents " +
                                  std::to_string(metadata.documents) + ")");
  }

  int32_t header[kShardHeaderInts] = {};
  header[0] = kBaleineShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  header[3] = static_cast<int32_t>(metadata.vocab_size);
  header[4] = metadata.end_of_text;
  header[5] = static_cast<int32_t>(metadata.documents);

  // Readers must never see a half-written shard under the final name: a crash mid-write leaves
  // only "<path>.tmp", which the next `data prepare` removes and no glob for *.bin picks up.
  const std::string tmp_path = path + ".tmp";
  {
    FileDescriptor handle{::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (handle.fd < 0) {
      throw UserError(tmp_path, "", "cannot create token shard: " + system_error_text(),
                      "check that the output directory exists and is writable");
    }
    try {
      write_all(handle.fd, header, sizeof(header), tmp_path);
      write_all(handle.fd, tokens.data(), tokens.size() * sizeof(uint16_t), tmp_path);
      if (::fsync(handle.fd) != 0) {
        throw UserError(tmp_path, "", "cannot flush token shard to disk: " + system_error_text());
      }
      int fd = handle.fd;
      handle.fd = -1;
      if (::close(fd) != 0) {
        throw UserError(tmp_path, "", "cannot close token shard: " + system_error_text());
      }
    } catch (...) {
      std::remove(tmp_path.c_str());  // a full disk should not also keep a useless partial file
      throw;
    }
  }
  if (std::rename(tmp_path.c_str(), path.c_str()) != 0) {
    std::string reason = system_error_text();
    std::remove(tmp_path.c_str());
    throw UserError(path, "", "cannot move the finished shard into place: " + reason);
  }
  sync_parent_directory(path);
}

TokenShard::TokenShard(const std::string& path) : path_(path) {
  FileDescriptor handle{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (handle.fd < 0) {
    if (errno == ENOENT) {
      throw UserError(path, "", "token shard not found",
                      "check the path, or create shards with `baleine data prepare`");
    }
    throw UserError(path, "", "cannot open token shard: " + system_error_text());
  }
  struct stat info {};
  if (::fstat(handle.fd, &info) != 0) {
    throw UserError(path, "", "cannot stat token shard: " + system_error_text());
  }
  if (!S_ISREG(info.st_mode)) {
    throw UserError(path, "", "token shard is not a regular file");
  }
  const int64_t file_bytes = static_cast<int64_t>(info.st_size);
  if (file_bytes == 0) {
    throw UserError(path, "", "token shard is empty (0 bytes; a shard starts with a " +
                                  std::to_string(kHeaderBytes) + "-byte header)",
                    kRegenerateHint);
  }
  if (file_bytes < kHeaderBytes) {
    throw UserError(path, "", "token shard is " + std::to_string(file_bytes) +
                                  " bytes, shorter than its " + std::to_string(kHeaderBytes) +
                                  "-byte header",
                    kRegenerateHint);
  }

  void* mapping = ::mmap(nullptr, static_cast<size_t>(file_bytes), PROT_READ, MAP_PRIVATE,
                         handle.fd, 0);
  if (mapping == MAP_FAILED) {
    throw UserError(path, "", "cannot memory-map token shard: " + system_error_text());
  }
  // From here the mapping is owned by *this; release() undoes it if validation throws below.
  mapping_ = mapping;
  mapping_bytes_ = static_cast<size_t>(file_bytes);

  int32_t header[kShardHeaderInts];
  std::memcpy(header, mapping, sizeof(header));
  try {
    if (header[0] == kLlmcShardMagic) {
      llmc_ = true;
    } else if (header[0] != kBaleineShardMagic) {
      throw UserError(path, "", "not a token shard: header magic is " +
                                    std::to_string(header[0]) + ", expected " +
                                    std::to_string(kLlmcShardMagic) + " (llm.c) or " +
                                    std::to_string(kBaleineShardMagic) + " (baleine)",
                      kRegenerateHint);
    }
    if (header[1] != kShardVersion) {
      throw UserError(path, "", "unsupported token shard version " + std::to_string(header[1]) +
                                    " (this build reads version " +
                                    std::to_string(kShardVersion) + ")",
                      kRegenerateHint);
    }
    const int64_t count = header[2];
    const int64_t expected_bytes = kHeaderBytes + count * static_cast<int64_t>(sizeof(uint16_t));
    if (count < 0 || expected_bytes != file_bytes) {
      throw UserError(path, "", "header says " + std::to_string(count) +
                                    " tokens, which needs " + std::to_string(expected_bytes) +
                                    " bytes, but the file is " + std::to_string(file_bytes) +
                                    " bytes (truncated or padded)",
                      kRegenerateHint);
    }
    count_ = count;
  } catch (...) {
    release();
    throw;
  }
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(mapping_) + kHeaderBytes);
  if (!llmc_) {
    metadata_.vocab_size = header[3];
    metadata_.end_of_text = header[4];
    metadata_.documents = header[5];
  }
}

TokenShard::~TokenShard() { release(); }

TokenShard::TokenShard(TokenShard&& other) noexcept { *this = std::move(other); }

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    mapping_ = other.mapping_;
    mapping_bytes_ = other.mapping_bytes_;
    tokens_ = other.tokens_;
    count_ = other.count_;
    llmc_ = other.llmc_;
    metadata_ = other.metadata_;
    other.mapping_ = nullptr;
    other.mapping_bytes_ = 0;
    other.tokens_ = nullptr;
    other.count_ = 0;
  }
  return *this;
}

void TokenShard::release() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
  mapping_ = nullptr;
  mapping_bytes_ = 0;
  tokens_ = nullptr;
  count_ = 0;
}

}  // namespace baleine::data
