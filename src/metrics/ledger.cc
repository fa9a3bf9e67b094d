#include "tokenmill/metrics/ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill::metrics {
namespace {

namespace fs = std::filesystem;

constexpr char kPrefix[] = "ledger-";
constexpr char kSuffix[] = ".jsonl";

std::string UtcDay(double unix_s) {
  return absl::FormatTime("%Y-%m-%d", absl::FromUnixMicros(std::llround(unix_s * 1e6)),
                          absl::UTCTimeZone());
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(absl::StrCat("ledger ", path, ": write: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

std::string LedgerFileName(double unix_s) { return absl::StrCat(kPrefix, UtcDay(unix_s), kSuffix); }

LedgerWriter::LedgerWriter(std::string dir, const Clock& clock, Options options)
    : dir_(std::move(dir)), clock_(clock), options_(options) {}

absl::StatusOr<std::unique_ptr<LedgerWriter>> LedgerWriter::Open(const std::string& dir,
                                                                 const Clock& clock,
                                                                 Options options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ledger dir ", dir, ": cannot create: ", ec ? ec.message() : "not a directory"));
  }
  return std::unique_ptr<LedgerWriter>(new LedgerWriter(dir, clock, options));
}

LedgerWriter::~LedgerWriter() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);
}

absl::Status LedgerWriter::SwitchFileLocked(const std::string& path) {
  if (path == path_ && fd_ >= 0) return absl::OkStatus();
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("ledger ", path, ": open: ", std::strerror(errno)));
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = path;
  return absl::OkStatus();
}

absl::Status LedgerWriter::Append(const RequestRecord& record) {
  RequestRecord stamped = record;
  if (stamped.time_unix_s == 0.0) stamped.time_unix_s = clock_.WallSeconds();
  // One write per line: with O_APPEND concurrent writers (even other processes) never
  // interleave inside a line, and readers see whole lines except possibly the last.
  const std::string line = ToLedgerJson(stamped).dump() + "\n";
  const std::string path = (fs::path(dir_) / LedgerFileName(stamped.time_unix_s)).string();
  absl::MutexLock lock(&mu_);
  TM_RETURN_IF_ERROR(SwitchFileLocked(path));
  TM_RETURN_IF_ERROR(WriteAll(fd_, line, path_));
  if (options_.fsync_each_line && ::fsync(fd_) != 0) {
    return absl::InternalError(absl::StrCat("ledger ", path_, ": fsync: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string LedgerWriter::current_path() const {
  absl::MutexLock lock(&mu_);
  return path_;
}

namespace {

absl::Status ReadFileInto(const std::string& path, std::optional<double> since,
                          LedgerContents& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("ledger ", path, ": cannot open"));
  out.files.push_back(path);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (in.eof()) {
      // No newline yet: the writer is mid-line (or died mid-line). Never a record.
      if (!line.empty()) ++out.num_partial_lines;
      break;
    }
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    absl::StatusOr<RequestRecord> r =
        j.is_discarded() ? absl::InvalidArgumentError("not JSON") : RecordFromLedgerJson(j);
    if (!r.ok()) {
      ++out.num_malformed_lines;
      spdlog::warn("ledger {}:{}: skipped: {}", path, line_no, std::string(r.status().message()));
      continue;
    }
    if (since.has_value() && r->time_unix_s < *since) continue;
    out.records.push_back(*std::move(r));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("ledger ", path, ": read error"));
  return absl::OkStatus();
}

// Day of a "ledger-YYYY-MM-DD.jsonl" name, or "" for other files.
std::string DayOfFileName(const std::string& name) {
  if (!absl::StartsWith(name, kPrefix) || !absl::EndsWith(name, kSuffix)) return "";
  const std::string day =
      name.substr(sizeof(kPrefix) - 1, name.size() - (sizeof(kPrefix) - 1) - (sizeof(kSuffix) - 1));
  absl::Time t;
  std::string err;
  return absl::ParseTime("%Y-%m-%d", day, absl::UTCTimeZone(), &t, &err) ? day : "";
}

}  // namespace

absl::StatusOr<LedgerContents> ReadLedger(const std::string& path,
                                          std::optional<double> since_unix_s) {
  LedgerContents out;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    TM_RETURN_IF_ERROR(ReadFileInto(path, since_unix_s, out));
    return out;
  }
  if (!fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat("ledger ", path, ": no such file or directory"));
  }
  std::vector<std::pair<std::string, std::string>> files;  // (day, path)
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string day = DayOfFileName(entry.path().filename().string());
    if (!day.empty() && entry.is_regular_file(ec)) files.emplace_back(day, entry.path().string());
  }
  if (ec) return absl::InternalError(absl::StrCat("ledger ", path, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  // ISO dates compare as strings; a file of a day before `since` holds nothing we keep.
  const std::string first_day = since_unix_s ? UtcDay(*since_unix_s) : "";
  for (const auto& [day, file] : files) {
    if (day < first_day) continue;
    TM_RETURN_IF_ERROR(ReadFileInto(file, since_unix_s, out));
  }
  return out;
}

}  // namespace tokenmill::metrics
