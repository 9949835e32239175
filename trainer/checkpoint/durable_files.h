#pragma once
// POSIX file I/O for checkpoints: every write checked, every file and directory fsync'd, so a
// checkpoint marked complete survives a power cut (a rename or a new file is durable only once
// its directory is fsync'd too: fsync(2), "Notes"). Failures are UserErrors naming the path.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace baleine::ckpt::detail {

// A file descriptor closed when it goes out of scope: a kill-point hook that throws, or a
// failed write, must not leak descriptors.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Throws a UserError "<path>: <doing>: <strerror>" with a hint fit for the error (disk full,
// permissions, I/O error).
[[noreturn]] void throw_io_error(const std::string& path, const std::string& doing,
                                 int error_number);

// write(2) until every byte is written (it may write less, or be interrupted by a signal).
void write_all(int fd, const void* data, size_t bytes, const std::string& path);

// fsync(2) of an open file, between kill points.
void sync_file(int fd, const std::string& path);

// close(2) and check it: some file systems (NFS) report a failed write only there.
void close_checked(UniqueFd& fd, const std::string& path);

// open(dir, O_RDONLY | O_DIRECTORY) + fsync, between kill points: makes the directory's
// entries (new files, renames, deletions) durable.
void sync_directory(const std::string& dir);

// Creates or truncates `path`, writes `text`, fsyncs and closes it, with kill points before
// the write and around the fsync. The directory entry is not fsync'd here.
void write_file_durably(const std::string& path, const std::string& text);

// The whole file. UserError naming it when it is missing, unreadable or over `max_bytes`.
std::string read_whole_file(const std::string& path, int64_t max_bytes);

// pread(2) until `bytes` are read or the file ends: the count read, or -1 (errno set).
int64_t pread_full(int fd, void* dst, size_t bytes, int64_t offset);

}  // namespace baleine::ckpt::detail
