// The factory ledger: one JSON line per finished request (ToLedgerJson), appended to
// DIR/ledger-YYYY-MM-DD.jsonl, one file per UTC day of the record's finish time. Each line is
// written with a single write(2) on an O_APPEND descriptor (no user-space buffer), so readers
// may read the files while the server runs; at worst they see a partly written last line,
// which ReadLedger skips.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/metrics/request_record.h"

namespace tokenmill::metrics {

// "ledger-2024-05-01.jsonl" for a time on that UTC day.
std::string LedgerFileName(double unix_s);

// Thread-safe appender. Requires: `clock` outlives the writer.
class LedgerWriter {
 public:
  struct Options {
    bool fsync_each_line = false;  // durability against power loss, at one fsync per request
  };

  // Creates `dir` (and parents) if needed. Errors name the directory.
  static absl::StatusOr<std::unique_ptr<LedgerWriter>> Open(const std::string& dir,
                                                            const Clock& clock, Options options);
  static absl::StatusOr<std::unique_ptr<LedgerWriter>> Open(const std::string& dir,
                                                            const Clock& clock) {
    return Open(dir, clock, Options{});
  }
  ~LedgerWriter();
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  // Appends one line. A record whose time_unix_s is 0 is stamped with clock.WallSeconds().
  // The file is chosen by the (stamped) time, so a record lands in its own day's file.
  absl::Status Append(const RequestRecord& record);
  // Path of the file the last Append went to ("" before the first).
  std::string current_path() const;
  const std::string& dir() const { return dir_; }

 private:
  LedgerWriter(std::string dir, const Clock& clock, Options options);
  absl::Status SwitchFileLocked(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const Clock& clock_;
  const Options options_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::string path_ ABSL_GUARDED_BY(mu_);
};

struct LedgerContents {
  std::vector<RequestRecord> records;  // file order (files in date order)
  std::vector<std::string> files;      // files read
  int num_partial_lines = 0;           // a last line without its newline: still being written
  int num_malformed_lines = 0;         // complete lines that failed to parse (logged, skipped)
};

// Reads a ledger file, or every ledger-*.jsonl in a directory. Keeps records with
// time_unix_s >= since_unix_s when given (files of earlier days are not opened). Tolerates a
// partly written last line. Errors: the path does not exist or a file cannot be read.
absl::StatusOr<LedgerContents> ReadLedger(const std::string& path,
                                          std::optional<double> since_unix_s = std::nullopt);

}  // namespace tokenmill::metrics
