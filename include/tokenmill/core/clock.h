// Injected time source (STYLE.md "Inject the world"). Seconds as double, monotonic.
#pragma once

#include <atomic>
#include <chrono>

namespace tokenmill {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic seconds since an arbitrary epoch.
  virtual double NowSeconds() const = 0;
  // Seconds since the Unix epoch (for ledgers and logs).
  virtual double WallSeconds() const = 0;
};

class SystemClock final : public Clock {
 public:
  double NowSeconds() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  double WallSeconds() const override {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static const SystemClock& Get() {
    static const SystemClock clock;
    return clock;
  }
};

// Test clock: time moves only when told. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(double start = 1000.0) : now_(start) {}
  double NowSeconds() const override { return now_.load(); }
  double WallSeconds() const override { return 1.7e9 + now_.load(); }
  void Advance(double seconds) { now_.store(now_.load() + seconds); }

 private:
  std::atomic<double> now_;
};

}  // namespace tokenmill
