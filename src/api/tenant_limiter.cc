#include "tokenmill/api/tenant_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenmill/api/errors.h"

namespace tokenmill {
namespace {

double BurstOf(const TenantLimits& l) {
  return l.burst > 0 ? l.burst : std::max(1.0, l.requests_per_second);
}

}  // namespace

TenantLimiter::TenantLimiter(std::map<std::string, TenantLimits> limits, const Clock& clock)
    : limits_(std::move(limits)), clock_(clock) {}

TenantLimiter::~TenantLimiter() = default;

TenantLimiter::Lease& TenantLimiter::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    limiter_ = std::exchange(other.limiter_, nullptr);
    tenant_ = std::move(other.tenant_);
    reserved_tokens_ = other.reserved_tokens_;
    used_tokens_ = other.used_tokens_;
  }
  return *this;
}

void TenantLimiter::Lease::Release() {
  if (limiter_ == nullptr) return;
  const int64_t refund =
      used_tokens_ >= 0 ? std::max<int64_t>(0, reserved_tokens_ - used_tokens_) : 0;
  std::exchange(limiter_, nullptr)->Return(tenant_, refund);
}

TenantLimiter::State& TenantLimiter::StateFor(const std::string& tenant) {
  auto it = states_.find(tenant);
  if (it != states_.end()) return *it->second;
  auto s = std::make_unique<State>();
  auto l = limits_.find(tenant);
  if (l == limits_.end()) l = limits_.find("*");
  if (l != limits_.end()) s->limits = l->second;
  // A tenant starts with full buckets.
  s->request_tokens = BurstOf(s->limits);
  s->quota_tokens = static_cast<double>(s->limits.tokens_per_minute);
  s->last_refill_s = clock_.NowSeconds();
  return *states_.emplace(tenant, std::move(s)).first->second;
}

void TenantLimiter::Refill(State& s, double now_s) const {
  const double dt = std::max(0.0, now_s - s.last_refill_s);
  s.last_refill_s = now_s;
  const TenantLimits& l = s.limits;
  if (l.requests_per_second > 0) {
    s.request_tokens = std::min(BurstOf(l), s.request_tokens + dt * l.requests_per_second);
  }
  if (l.tokens_per_minute > 0) {
    const double cap = static_cast<double>(l.tokens_per_minute);
    s.quota_tokens = std::min(cap, s.quota_tokens + dt * cap / 60.0);
  }
}

absl::StatusOr<TenantLimiter::Lease> TenantLimiter::Acquire(const std::string& tenant,
                                                            int64_t tokens) {
  absl::MutexLock lock(&mu_);
  State& s = StateFor(tenant);
  const TenantLimits& l = s.limits;
  Refill(s, clock_.NowSeconds());
  if (l.max_concurrent_requests > 0 && s.num_in_flight >= l.max_concurrent_requests) {
    return WithReason(absl::ResourceExhaustedError(
                          absl::StrCat("tenant '", tenant, "': ", s.num_in_flight,
                                       " requests in flight, the limit (max_concurrent_requests)")),
                      ErrorReason::kRateLimited);
  }
  if (l.requests_per_second > 0 && s.request_tokens < 1.0) {
    return WithReason(
        absl::ResourceExhaustedError(absl::StrFormat(
            "tenant '%s': rate limit of %g requests/s (burst %g) exceeded; retry in %.3f s", tenant,
            l.requests_per_second, BurstOf(l), (1.0 - s.request_tokens) / l.requests_per_second)),
        ErrorReason::kRateLimited);
  }
  if (l.tokens_per_minute > 0) {
    if (tokens > l.tokens_per_minute) {
      return WithReason(absl::ResourceExhaustedError(absl::StrCat(
                            "tenant '", tenant, "': the request reserves ", tokens,
                            " tokens (prompt + max_tokens x n), more than the quota of ",
                            l.tokens_per_minute, " tokens per minute; lower max_tokens")),
                        ErrorReason::kQuotaExceeded);
    }
    if (s.quota_tokens < static_cast<double>(tokens)) {
      return WithReason(absl::ResourceExhaustedError(absl::StrFormat(
                            "tenant '%s': token quota exhausted: the request reserves %d tokens, "
                            "%.0f of %d per minute are left",
                            tenant, tokens, s.quota_tokens, l.tokens_per_minute)),
                        ErrorReason::kQuotaExceeded);
    }
    s.quota_tokens -= static_cast<double>(tokens);
  }
  if (l.requests_per_second > 0) s.request_tokens -= 1.0;
  ++s.num_in_flight;
  Lease lease;
  lease.limiter_ = this;
  lease.tenant_ = tenant;
  lease.reserved_tokens_ = l.tokens_per_minute > 0 ? tokens : 0;
  return lease;
}

void TenantLimiter::Return(const std::string& tenant, int64_t refund_tokens) {
  absl::MutexLock lock(&mu_);
  State& s = StateFor(tenant);
  --s.num_in_flight;
  if (s.limits.tokens_per_minute > 0 && refund_tokens > 0) {
    s.quota_tokens = std::min(static_cast<double>(s.limits.tokens_per_minute),
                              s.quota_tokens + static_cast<double>(refund_tokens));
  }
}

}  // namespace tokenmill
