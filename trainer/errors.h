#pragma once
// Errors are part of baleine's interface. A UserError is bad input (YAML, CLI, data files,
// checkpoints): main() prints it with its HINT line and exits with status 2. Anything else that
// escapes is a bug and exits with status 1.
#include <stdexcept>
#include <string>
#include <utility>

namespace baleine {

constexpr int kExitInvalidInput = 2;
// 3 is parallel::kExitCommTimeout (a collective timed out: a rank died or hung).
// A stop signal (SIGTERM, SIGUSR1, SIGINT) was honoured: a checkpoint was saved; rerun the same
// command to resume.
constexpr int kExitStopped = 4;
// The numerical guard gave up (too many skipped steps and no rollback left); a checkpoint of the
// last good weights was saved when possible.
constexpr int kExitDiverged = 5;

class UserError : public std::runtime_error {
 public:
  // where: "configs/x.yaml:12" or "--set train.steps=abc" or a file path; may be empty.
  // key:   the config key path ("train.lr.peak") or "" when not about a key.
  UserError(std::string where, std::string key, const std::string& what, std::string hint = "")
      : std::runtime_error(format(where, key, what)), where_(std::move(where)),
        key_(std::move(key)), message_(what), hint_(std::move(hint)) {}

  const std::string& where() const { return where_; }
  const std::string& key() const { return key_; }
  const std::string& hint() const { return hint_; }
  const std::string& message() const { return message_; }  // what() without where and key

 private:
  static std::string format(const std::string& where, const std::string& key,
                            const std::string& what) {
    std::string s;
    if (!where.empty()) s += where + ": ";
    if (!key.empty()) s += key + ": ";
    return s + what;
  }
  std::string where_, key_, message_, hint_;
};

}  // namespace baleine
