// LedgerWriter: appends the ledger's JSON lines so that a crash costs at most the line being
// written. Each record is one write(2) of the whole line on an O_APPEND descriptor (POSIX
// write(2): the offset moves to the end and the data lands there in one step), then fsync(2),
// so a record is either on disk whole or torn at the very end of the file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "trainer/cost/ledger.h"
#include "trainer/errors.h"

namespace baleine::cost {

namespace {

const char* const kDiskHint =
    "check that the run directory is writable and its disk is not full (df -h RUN_DIR)";

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void throw_io_error(const std::string& path, const std::string& what) {
  throw UserError(path, "", what + ": " + std::strerror(errno), kDiskHint);
}

// A ledger whose last line was torn by a crash does not end in '\n'. Appending straight after
// it would glue the next record onto the torn bytes and lose both; ending the torn line first
// keeps it a single bad line, which read_ledger reports, and the new records whole.
bool ends_without_newline(const std::string& path, int append_fd) {
  struct stat info {};
  if (::fstat(append_fd, &info) != 0 || !S_ISREG(info.st_mode) || info.st_size == 0) {
    return false;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // unreadable but writable: nothing to repair we could see
  char last = '\n';
  const ssize_t got = ::pread(fd, &last, 1, info.st_size - 1);
  ::close(fd);
  return got == 1 && last != '\n';
}

}  // namespace

LedgerWriter::LedgerWriter(const std::string& path, double flush_every_s)
    : path_(path), flush_every_s_(flush_every_s) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_io_error(path_, "cannot open the GPU-hour ledger for appending");
  if (ends_without_newline(path_, fd_)) {
    try {
      append_line("");
    } catch (...) {
      ::close(fd_);  // the destructor does not run when the constructor throws
      fd_ = -1;
      throw;
    }
  }
}

LedgerWriter::~LedgerWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void LedgerWriter::write(const LedgerStart& start) { append_line(format_ledger_json(start)); }

void LedgerWriter::write(const LedgerLost& lost) { append_line(format_ledger_json(lost)); }

bool LedgerWriter::write(const LedgerTick& tick, bool force) {
  // A record read_ledger would reject is a bug in the caller, not bad user input.
  if (tick.type != "progress" && tick.type != "checkpoint" && tick.type != "end") {
    throw std::invalid_argument("LedgerWriter: tick type \"" + tick.type +
                                "\" is not progress, checkpoint or end");
  }
  if (tick.type == "end" && tick.status != "completed" && tick.status != "stopped" &&
      tick.status != "failed") {
    throw std::invalid_argument("LedgerWriter: end status \"" + tick.status +
                                "\" is not completed, stopped or failed");
  }
  if (tick.type == "progress" && !force && steady_seconds() - last_write_ < flush_every_s_) {
    return false;
  }
  append_line(format_ledger_json(tick));
  return true;
}

void LedgerWriter::append_line(const std::string& line) {
  const std::string record = line + "\n";
  const char* cursor = record.data();
  size_t left = record.size();
  // One write() normally takes the whole line. A regular file writes less only when the disk
  // fills or a quota is hit mid-way; then the rest is tried once more, and that write reports
  // the error.
  while (left > 0) {
    const ssize_t written = ::write(fd_, cursor, left);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      if (written == 0) errno = EIO;
      throw_io_error(path_, "cannot append to the GPU-hour ledger");
    }
    cursor += written;
    left -= static_cast<size_t>(written);
  }
  if (::fsync(fd_) != 0) throw_io_error(path_, "cannot flush the GPU-hour ledger to disk");
  last_write_ = steady_seconds();
}

}  // namespace baleine::cost
