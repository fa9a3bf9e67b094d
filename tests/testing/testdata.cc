#include "testing/testdata.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tokenmill::testing {
namespace fs = std::filesystem;

std::string SourceDir() {
  if (const char* s = std::getenv("TOKENMILL_SOURCE_DIR"); s != nullptr && *s) return s;
  return fs::path(__FILE__).parent_path().parent_path().parent_path().string();
}

std::string TestdataDir() {
  if (const char* s = std::getenv("TOKENMILL_TESTDATA"); s != nullptr && *s) {
    return fs::is_directory(s) ? std::string(s) : std::string();
  }
  fs::path p = fs::path(SourceDir()) / ".." / "shared" / "testdata";
  return fs::is_directory(p) ? fs::weakly_canonical(p).string() : std::string();
}

std::string TestdataPath(const std::string& relative) {
  const std::string dir = TestdataDir();
  if (dir.empty()) return "";
  fs::path p = fs::path(dir) / relative;
  return fs::exists(p) ? p.string() : std::string();
}

std::string TokenmillBinary() {
  if (const char* s = std::getenv("TOKENMILL_BINARY"); s != nullptr && *s) return s;
  return "tokenmill";
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace tokenmill::testing
