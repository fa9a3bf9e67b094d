// Progress of a bench run on stderr: a bar redrawn in place when stderr is a terminal,
// otherwise one plain line each 10% (logs stay readable in CI).
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"

namespace tokenmill::loadgen {

class Progress {
 public:
  // `out` is usually stderr; `is_tty` chooses the bar or the lines. Nothing is printed when
  // `out` is null.
  Progress(std::FILE* out, bool is_tty) : out_(out), is_tty_(is_tty) {}
  // Progress for stderr, detecting whether it is a terminal.
  static Progress ForStderr();

  // Starts a phase. Its length is `total_requests` when > 0, else `duration_s` (time).
  void Start(const std::string& label, int64_t total_requests, double duration_s, double now_s);
  // One request finished (thread-safe).
  void RequestDone(bool ok, int64_t output_tokens, double now_s);
  // Ends the phase (final line).
  void Finish(double now_s);

  // What the bar shows now, without the carriage return (for tests).
  std::string Line(double now_s) const;

 private:
  double FractionLocked(double now_s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string LineLocked(double now_s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::FILE* out_;
  const bool is_tty_;
  mutable std::mutex mu_;
  std::string label_ ABSL_GUARDED_BY(mu_);
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  double duration_s_ ABSL_GUARDED_BY(mu_) = 0;
  double start_s_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t output_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  double last_draw_s_ ABSL_GUARDED_BY(mu_) = -1;
  int last_decile_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenmill::loadgen
