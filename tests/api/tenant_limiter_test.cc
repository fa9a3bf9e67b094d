#include "tokenmill/api/tenant_limiter.h"

#include "gtest/gtest.h"
#include "tokenmill/api/errors.h"

namespace tokenmill {
namespace {

TEST(TenantLimiterTest, UnlistedTenantsWithoutDefaultAreUnlimited) {
  FakeClock clock;
  TenantLimiter limiter({{"acme", {.requests_per_second = 1}}}, clock);
  std::vector<TenantLimiter::Lease> leases;
  for (int i = 0; i < 100; ++i) leases.push_back(limiter.Acquire("other", 1 << 20).value());
}

TEST(TenantLimiterTest, RequestRateIsATokenBucket) {
  FakeClock clock;
  TenantLimiter limiter({{"acme", {.requests_per_second = 2, .burst = 3}}}, clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("acme", 1).ok()) << i;
  auto refused = limiter.Acquire("acme", 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(refused.status()), ErrorReason::kRateLimited);
  EXPECT_NE(std::string(refused.status().message()).find("retry in 0.500 s"), std::string::npos)
      << refused.status();
  clock.Advance(0.5);  // one request's worth at 2/s
  EXPECT_TRUE(limiter.Acquire("acme", 1).ok());
  EXPECT_FALSE(limiter.Acquire("acme", 1).ok());
  clock.Advance(100);  // refills to the burst, not beyond
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("acme", 1).ok()) << i;
  EXPECT_FALSE(limiter.Acquire("acme", 1).ok());
}

TEST(TenantLimiterTest, ConcurrencySlotsReturnWhenTheLeaseEnds) {
  FakeClock clock;
  TenantLimiter limiter({{"*", {.max_concurrent_requests = 2}}}, clock);
  auto a = limiter.Acquire("x", 1).value();
  auto b = limiter.Acquire("x", 1).value();
  auto c = limiter.Acquire("x", 1);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("2 requests in flight"), std::string::npos);
  EXPECT_TRUE(limiter.Acquire("y", 1).ok());  // "*" limits each tenant separately
  a.Release();
  auto d = limiter.Acquire("x", 1);
  EXPECT_TRUE(d.ok());
  TenantLimiter::Lease moved = std::move(b);  // moving keeps one slot, not two
  EXPECT_FALSE(limiter.Acquire("x", 1).ok());
}

TEST(TenantLimiterTest, TokenQuotaReservesAndRefundsTheUnusedPart) {
  FakeClock clock;
  TenantLimiter limiter({{"acme", {.tokens_per_minute = 600}}}, clock);
  auto too_big = limiter.Acquire("acme", 601);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(ReasonOf(too_big.status()), ErrorReason::kQuotaExceeded);
  {
    auto lease = limiter.Acquire("acme", 500).value();
    EXPECT_FALSE(limiter.Acquire("acme", 200).ok());  // 100 left
    lease.set_used_tokens(100);                       // 400 come back
  }
  auto next = limiter.Acquire("acme", 500);
  EXPECT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(limiter.Acquire("acme", 10).ok());  // 0 left
  clock.Advance(1.0);                              // refills 10 per second
  EXPECT_TRUE(limiter.Acquire("acme", 10).ok());
}

TEST(TenantLimiterTest, ARefusedRequestConsumesNothing) {
  FakeClock clock;
  TenantLimiter limiter({{"t", {.requests_per_second = 1, .burst = 1, .tokens_per_minute = 10}}},
                        clock);
  EXPECT_FALSE(limiter.Acquire("t", 20).ok());  // quota refuses: the rate token stays
  EXPECT_TRUE(limiter.Acquire("t", 5).ok());
}

}  // namespace
}  // namespace tokenmill
