#pragma once
// A fresh scratch directory for the running test. ctest runs every TEST as its own process, in
// parallel, so each test needs a directory of its own: BALEINE_TEST_TMP (per test executable,
// set by tests/CMakeLists.txt) / <suite>.<test>.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace baleine::testing {

inline std::string scratch_dir() {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::path(BALEINE_TEST_TMP) /
                                    (std::string(test->test_suite_name()) + "." + test->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace baleine::testing
