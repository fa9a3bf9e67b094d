// Locating ../shared/testdata from tests. Tests that need it call TM_REQUIRE_TESTDATA()
// and skip with a clear message when it is absent.
#pragma once

#include <string>

#include "gtest/gtest.h"

namespace tokenmill::testing {

// $TOKENMILL_TESTDATA if set, else <source>/../shared/testdata; "" when neither exists.
std::string TestdataDir();
// Path of a file under the testdata directory ("" when the directory is absent).
std::string TestdataPath(const std::string& relative);
// The repository root ($TOKENMILL_SOURCE_DIR or the compile-time source dir).
std::string SourceDir();
// The built tokenmill binary ($TOKENMILL_BINARY), for CLI tests.
std::string TokenmillBinary();
// Whole file as a string; fails the test when it cannot be read.
std::string ReadFileOrDie(const std::string& path);

}  // namespace tokenmill::testing

#define TM_REQUIRE_TESTDATA(relative)                                                   \
  do {                                                                                  \
    if (::tokenmill::testing::TestdataPath(relative).empty())                           \
      GTEST_SKIP() << "testdata absent (set TOKENMILL_TESTDATA or check out ../shared/" \
                      "testdata): needs " << (relative);                                \
  } while (0)
