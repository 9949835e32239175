#pragma once
// Asserts that an action rejects bad input the way baleine promises: with a UserError whose
// message (what() followed by " HINT: " and the hint) holds every one of `parts`.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "trainer/errors.h"

namespace baleine::testing {

inline void expect_user_error(const std::function<void()>& action,
                              const std::vector<std::string>& parts) {
  try {
    action();
    FAIL() << "expected a UserError";
  } catch (const UserError& error) {
    const std::string message = std::string(error.what()) + " HINT: " + error.hint();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }
}

}  // namespace baleine::testing
