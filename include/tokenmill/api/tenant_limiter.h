// Per-tenant admission limits (overload protection before the engine's queue): a request
// rate (token bucket), a bound on requests in flight, and a token quota per minute. A refused
// request gets RESOURCE_EXHAUSTED at once (reason kRateLimited or kQuotaExceeded), so one
// tenant cannot collapse everyone's latency.
//
// Token quota: admission reserves prompt + max_tokens x n tokens from a bucket refilled at
// tokens_per_minute / 60 per second (capacity tokens_per_minute); when the request ends,
// the unused part of the reservation goes back.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tokenmill/core/clock.h"

namespace tokenmill {

struct TenantLimits {
  double requests_per_second = 0;   // 0: unlimited
  double burst = 0;                 // bucket size in requests; 0: max(1, requests_per_second)
  int max_concurrent_requests = 0;  // 0: unlimited
  int64_t tokens_per_minute = 0;    // 0: unlimited

  bool unlimited() const {
    return requests_per_second <= 0 && max_concurrent_requests <= 0 && tokens_per_minute <= 0;
  }
};

// Thread-safe. Requires: `clock` outlives the limiter, and the limiter outlives its leases.
class TenantLimiter {
 public:
  // `limits` by tenant name; the entry "*" applies to tenants without their own.
  TenantLimiter(std::map<std::string, TenantLimits> limits, const Clock& clock);
  ~TenantLimiter();
  TenantLimiter(const TenantLimiter&) = delete;
  TenantLimiter& operator=(const TenantLimiter&) = delete;

  // Holds one admitted request's share; releasing it (destructor) frees its concurrency
  // slot and refunds unused reserved tokens. Move-only.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease() { Release(); }
    // Records the tokens the request really used (prompt + generated); call before release.
    void set_used_tokens(int64_t tokens) { used_tokens_ = tokens; }
    void Release();

   private:
    friend class TenantLimiter;
    TenantLimiter* limiter_ = nullptr;
    std::string tenant_;
    int64_t reserved_tokens_ = 0;
    int64_t used_tokens_ = -1;  // -1: unknown, refund nothing
  };

  // Admits one request of `tenant` reserving `tokens`, or says why not.
  absl::StatusOr<Lease> Acquire(const std::string& tenant, int64_t tokens);

 private:
  struct State {
    TenantLimits limits;
    double request_tokens = 0;  // request-rate bucket
    double quota_tokens = 0;    // token-quota bucket
    double last_refill_s = 0;
    int num_in_flight = 0;
  };
  State& StateFor(const std::string& tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Refill(State& s, double now_s) const;
  void Return(const std::string& tenant, int64_t refund_tokens);

  const std::map<std::string, TenantLimits> limits_;
  const Clock& clock_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<State>> states_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenmill
