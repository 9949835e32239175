#include "trainer/checkpoint/durable_files.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "trainer/checkpoint/kill_point.h"
#include "trainer/errors.h"

namespace baleine::ckpt::detail {

namespace {

std::string hint_for(int error_number) {
  switch (error_number) {
    case ENOSPC:
    case EDQUOT:
      return "the disk is full: free space there, or keep fewer checkpoints (checkpoint.keep)";
    case EACCES:
    case EPERM:
    case EROFS: return "check that the run directory is writable by this user";
    case EIO: return "the storage reported an I/O error: check the disk (dmesg) before trusting it";
    default: return "";
  }
}

}  // namespace

void throw_io_error(const std::string& path, const std::string& doing, int error_number) {
  throw UserError(path, "", doing + ": " + std::strerror(error_number), hint_for(error_number));
}

void write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t written = ::write(fd, p, bytes);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw_io_error(path, "cannot write", errno);
    }
    p += written;
    bytes -= static_cast<size_t>(written);
  }
}

void sync_file(int fd, const std::string& path) {
  kill_point("before fsync of " + path);
  if (::fsync(fd) != 0) throw_io_error(path, "cannot fsync", errno);
  kill_point("after fsync of " + path);
}

void close_checked(UniqueFd& fd, const std::string& path) {
  // Released before close: after a failed close(2) the descriptor is gone anyway (Linux).
  const int raw = fd.release();
  if (raw >= 0 && ::close(raw) != 0 && errno != EINTR) throw_io_error(path, "cannot close", errno);
}

void sync_directory(const std::string& dir) {
  kill_point("before fsync of directory " + dir);
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) throw_io_error(dir, "cannot open the directory to fsync it", errno);
  if (::fsync(fd.get()) != 0) throw_io_error(dir, "cannot fsync the directory", errno);
  kill_point("after fsync of directory " + dir);
}

void write_file_durably(const std::string& path, const std::string& text) {
  kill_point("before writing " + path);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) throw_io_error(path, "cannot create", errno);
  write_all(fd.get(), text.data(), text.size(), path);
  sync_file(fd.get(), path);
  close_checked(fd, path);
}

std::string read_whole_file(const std::string& path, int64_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) {
      throw UserError(path, "", "is missing",
                      "the checkpoint is incomplete or damaged: resume from an older one");
    }
    throw_io_error(path, "cannot open", errno);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) throw_io_error(path, "cannot stat", errno);
  if (!S_ISREG(info.st_mode)) throw UserError(path, "", "is not a regular file");
  if (info.st_size > max_bytes) {
    throw UserError(path, "",
                    "is " + std::to_string(info.st_size) + " bytes, more than the " +
                        std::to_string(max_bytes) + " such a file can be",
                    "the file is damaged or is not what baleine wrote there");
  }
  std::string text(static_cast<size_t>(info.st_size), '\0');
  const int64_t got = pread_full(fd.get(), text.data(), text.size(), 0);
  if (got < 0) throw_io_error(path, "cannot read", errno);
  text.resize(static_cast<size_t>(got));  // a file shrunk meanwhile reads as what is left
  return text;
}

int64_t pread_full(int fd, void* dst, size_t bytes, int64_t offset) {
  auto* p = static_cast<char*>(dst);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd, p + done, bytes - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (got == 0) break;  // end of file
    done += static_cast<size_t>(got);
  }
  return static_cast<int64_t>(done);
}

}  // namespace baleine::ckpt::detail
