#include "tokenmill/loadgen/progress.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tokenmill::loadgen {
namespace {
constexpr int kBarWidth = 30;
constexpr double kRedrawInterval_s = 0.1;
}  // namespace

Progress Progress::ForStderr() { return Progress(stderr, isatty(fileno(stderr)) == 1); }

void Progress::Start(const std::string& label, int64_t total_requests, double duration_s,
                     double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  label_ = label;
  total_ = total_requests;
  duration_s_ = duration_s;
  start_s_ = now_s;
  done_ = errors_ = output_tokens_ = 0;
  last_draw_s_ = -1;
  last_decile_ = 0;
}

double Progress::FractionLocked(double now_s) const {
  double f = 0;
  if (total_ > 0) {
    f = static_cast<double>(done_) / static_cast<double>(total_);
  } else if (duration_s_ > 0) {
    f = (now_s - start_s_) / duration_s_;
  }
  return std::clamp(f, 0.0, 1.0);
}

std::string Progress::LineLocked(double now_s) const {
  const double f = FractionLocked(now_s);
  const double elapsed = std::max(0.0, now_s - start_s_);
  const int filled = static_cast<int>(f * kBarWidth);
  std::string bar = std::string(filled, '#') + std::string(kBarWidth - filled, '.');
  std::string count = total_ > 0 ? absl::StrCat(done_, "/", total_) : absl::StrCat(done_);
  return absl::StrFormat(
      "%s [%s] %3.0f%% %s req  %.1f s  %.1f tok/s  errors %d", label_, bar, f * 100, count, elapsed,
      elapsed > 0 ? static_cast<double>(output_tokens_) / elapsed : 0.0, errors_);
}

std::string Progress::Line(double now_s) const {
  std::lock_guard<std::mutex> lock(mu_);
  return LineLocked(now_s);
}

void Progress::RequestDone(bool ok, int64_t output_tokens, double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  ++done_;
  if (!ok) ++errors_;
  output_tokens_ += output_tokens;
  if (out_ == nullptr) return;
  if (is_tty_) {
    if (now_s - last_draw_s_ < kRedrawInterval_s) return;
    last_draw_s_ = now_s;
    std::fprintf(out_, "\r%s\x1b[K", LineLocked(now_s).c_str());
    std::fflush(out_);
    return;
  }
  const int decile = static_cast<int>(FractionLocked(now_s) * 10);
  if (decile > last_decile_ && decile < 10) {
    last_decile_ = decile;
    std::fprintf(out_, "%s\n", LineLocked(now_s).c_str());
    std::fflush(out_);
  }
}

void Progress::Finish(double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (out_ == nullptr) return;
  // The phase is over: show it whole even when a duration bound stopped it early.
  if (done_ > 0) total_ = done_;
  std::fprintf(out_, is_tty_ ? "\r%s\x1b[K\n" : "%s\n", LineLocked(now_s).c_str());
  std::fflush(out_);
}

}  // namespace tokenmill::loadgen
