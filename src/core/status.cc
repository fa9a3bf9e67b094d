#include "tokenmill/core/status.h"

namespace tokenmill::internal {

void CheckFailed(const char* file, int line, const char* cond, const std::string& msg) {
  // stderr directly: the logger may be the thing that is broken.
  std::fprintf(stderr, "FATAL %s:%d: check failed: %s %s\n", file, line, cond, msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace tokenmill::internal
