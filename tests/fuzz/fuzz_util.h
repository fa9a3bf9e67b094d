// Helpers shared by the libFuzzer targets in tests/fuzz/ (see docs/testing.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tokenmill::fuzz {

// An anonymous in-memory file (memfd) for parsers that take a path: Write() replaces its
// contents and returns a path ("/proc/self/fd/<n>") that open()/mmap() see as a regular
// file of exactly `size` bytes. One instance per fuzz target, reused across inputs (no
// disk I/O per input). Not thread-safe.
class MemFile {
 public:
  explicit MemFile(const char* name);
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  const std::string& Write(const uint8_t* data, size_t size);
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// Consumes a value computed from bytes the fuzzer made the code read, so that those reads
// are not optimised away.
void KeepAlive(uint64_t value);

// A property of the code under test was violated (a wrong result, not a memory error):
// prints `what` and `detail`, then aborts so that libFuzzer records the input as a crash.
[[noreturn]] void PropertyFailed(const char* file, int line, const char* what,
                                 const std::string& detail);

#define TM_FUZZ_ASSERT(cond, detail)                                         \
  do {                                                                       \
    if (!(cond)) ::tokenmill::fuzz::PropertyFailed(__FILE__, __LINE__, #cond, detail); \
  } while (0)

}  // namespace tokenmill::fuzz
