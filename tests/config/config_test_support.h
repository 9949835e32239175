#pragma once
// Helpers shared by the config tests: load YAML text under a fixed file name, and capture the
// UserError a load must throw.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/errors.h"

namespace baleine::config::testing {

// Every test config is called q.yaml, so expected locations read "q.yaml:<line>".
inline const char* kFile = "q.yaml";
// The smallest valid config: two lines, so a key appended after it sits on line 3 or later.
inline const char* kMinimal = "data:\n  train: shards/train\n";
// kMinimal plus `extra`, whose first line is line 3 of the file.
inline std::string with(const std::string& extra) { return std::string(kMinimal) + extra; }

inline RunConfig load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return load_config_from_string(yaml, kFile, overrides);
}

// The UserError that `action` throws; a test failure (and an empty error) when it throws none.
// Any other exception escapes and fails the test, since it would mean exit status 1 (a bug).
template <typename Action>
UserError user_error_of(Action&& action) {
  try {
    action();
  } catch (const UserError& error) {
    return error;
  }
  ADD_FAILURE() << "expected a baleine::UserError, but nothing was thrown";
  return UserError("", "", "");
}

inline UserError load_error(const std::string& yaml,
                            const std::vector<std::string>& overrides = {}) {
  return user_error_of([&] { load(yaml, overrides); });
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Checks the parts of an error that the user reads: where, the key, the message and the hint.
inline void expect_error(const UserError& error, const std::string& where, const std::string& key,
                         const std::string& message_part, const std::string& hint_part = "") {
  EXPECT_EQ(error.where(), where) << error.what();
  EXPECT_EQ(error.key(), key) << error.what();
  EXPECT_TRUE(contains(error.what(), message_part))
      << "message: " << error.what() << "\nexpected to contain: " << message_part;
  // what() is "where: key: message", the form main() prints.
  const std::string prefix = where.empty() ? "" : where + ": ";
  EXPECT_EQ(std::string(error.what()).rfind(prefix + (key.empty() ? "" : key + ": "), 0), 0u)
      << error.what();
  EXPECT_TRUE(contains(error.hint(), hint_part))
      << "hint: " << error.hint() << "\nexpected to contain: " << hint_part;
}

}  // namespace baleine::config::testing
