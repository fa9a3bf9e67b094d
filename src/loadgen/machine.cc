// The machine and commit a report was measured on.
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "tokenmill/loadgen/report.h"

namespace tokenmill::loadgen {
namespace {

// stdout of a shell command (stderr discarded); "" when it fails.
std::string RunQuiet(const std::string& cmd) {
  std::FILE* p = popen(absl::StrCat(cmd, " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  return pclose(p) == 0 ? out : "";
}

std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

}  // namespace

MachineInfo DetectMachine() {
  MachineInfo m;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) m.hostname = host;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        m.cpu = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
      break;
    }
  }
  m.num_cpus = static_cast<int>(std::thread::hardware_concurrency());
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0) m.memory_bytes = static_cast<int64_t>(pages) * page_size;
  struct utsname u;
  if (uname(&u) == 0) m.os = absl::StrCat(u.sysname, " ", u.release, " ", u.machine);
  const std::string gpus =
      RunQuiet("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader");
  for (absl::string_view line : absl::StrSplit(gpus, '\n', absl::SkipWhitespace())) {
    m.gpus.push_back(std::string(absl::StripAsciiWhitespace(line)));
  }
  return m;
}

std::string DetectCommit(const std::string& dir) {
  std::string d = dir;
#ifdef TOKENMILL_SOURCE_DIR
  if (d.empty()) d = TOKENMILL_SOURCE_DIR;
#endif
  if (d.empty()) return "";
  std::string out =
      RunQuiet(absl::StrCat("git -C ", ShellQuote(d), " describe --always --dirty --abbrev=40"));
  absl::StripAsciiWhitespace(&out);
  return out;
}

}  // namespace tokenmill::loadgen
