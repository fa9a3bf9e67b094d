#include "tokenmill/metrics/step_accounting.h"

#include <random>
#include <set>

#include "gtest/gtest.h"

namespace tokenmill::metrics {
namespace {

StepSample Step(int64_t ns, std::optional<int64_t> uj, std::vector<SequenceWork> work) {
  StepSample s;
  s.duration_ns = ns;
  s.energy_uj = uj;
  s.work = std::move(work);
  return s;
}

TEST(AttributeStepTest, SplitsByTokensWithLargestRemainder) {
  // 1000 ns over 1:1:1 -> 333.33 each; the one leftover ns goes to the earliest tie.
  auto shares = AttributeStep(Step(1000, 10, {{7, 1}, {8, 1}, {9, 1}}));
  ASSERT_EQ(shares.size(), 3u);
  EXPECT_EQ(shares[0].sequence_id, 7u);
  EXPECT_EQ(shares[0].device_ns, 334);
  EXPECT_EQ(shares[1].device_ns, 333);
  EXPECT_EQ(shares[2].device_ns, 333);
  EXPECT_EQ(shares[0].energy_uj, 4);
  EXPECT_EQ(shares[1].energy_uj, 3);
  EXPECT_EQ(shares[2].energy_uj, 3);
  // 100 ns over 512:1:0 -> 99.8, 0.19, 0 -> 100, 0, 0 (largest remainder goes to 99.8).
  shares = AttributeStep(Step(100, std::nullopt, {{1, 512}, {2, 1}, {3, 0}}));
  EXPECT_EQ(shares[0].device_ns, 100);
  EXPECT_EQ(shares[1].device_ns, 0);
  EXPECT_EQ(shares[2].device_ns, 0);
  EXPECT_FALSE(shares[0].energy_uj.has_value());
}

TEST(AttributeStepTest, StepWithoutTokensAttributesNothing) {
  auto shares = AttributeStep(Step(5000, 70, {{1, 0}, {2, 0}}));
  EXPECT_EQ(shares[0].device_ns + shares[1].device_ns, 0);
  EXPECT_EQ(*shares[0].energy_uj + *shares[1].energy_uj, 0);
  EXPECT_TRUE(AttributeStep(Step(5000, 70, {})).empty());
}

TEST(AttributeStepTest, HugeValuesDoNotOverflow) {
  // 11 days of ns times a million tokens overflows 64 bits in the intermediate product.
  const int64_t ns = 1000000000000000;
  auto shares = AttributeStep(Step(ns, ns, {{1, 1000000}, {2, 2000000}}));
  // Ideal 333333333333333.33 and 666666666666666.67: the leftover ns goes to the larger
  // remainder, the second.
  EXPECT_EQ(shares[0].device_ns, 333333333333333);
  EXPECT_EQ(shares[1].device_ns, 666666666666667);
  EXPECT_EQ(shares[0].device_ns + shares[1].device_ns, ns);
  EXPECT_EQ(*shares[0].energy_uj + *shares[1].energy_uj, ns);
}

TEST(StepAccountantTest, PerSequenceTotalsAddUpExactlyToStepTotalsOverRandomSteps) {
  std::mt19937_64 rng(20240601);
  std::uniform_int_distribution<int> num_seqs(1, 24);
  std::uniform_int_distribution<uint64_t> seq_id(1, 60);
  std::uniform_int_distribution<int64_t> tokens(0, 2048);
  std::uniform_int_distribution<int64_t> ns(0, 2000000000);
  std::uniform_int_distribution<int64_t> uj(0, 900000000);
  std::bernoulli_distribution has_energy(0.9), decode(0.7);
  StepAccountant accountant;
  int64_t sum_ns = 0, sum_uj = 0;
  std::set<uint64_t> seen;
  for (int step = 0; step < 5000; ++step) {
    std::set<uint64_t> ids;
    const int n = num_seqs(rng);
    while (static_cast<int>(ids.size()) < n) ids.insert(seq_id(rng));
    std::vector<SequenceWork> work;
    for (uint64_t id : ids) work.push_back({id, decode(rng) ? 1 : tokens(rng)});
    const std::optional<int64_t> e =
        has_energy(rng) ? std::optional<int64_t>(uj(rng)) : std::nullopt;
    const StepSample s = Step(ns(rng), e, work);
    int64_t step_tokens = 0;
    for (const auto& w : work) step_tokens += w.num_tokens;
    // Per step: shares sum exactly and each is within one unit of its ideal share.
    const auto shares = AttributeStep(s);
    int64_t step_ns = 0;
    for (size_t i = 0; i < shares.size(); ++i) {
      step_ns += shares[i].device_ns;
      if (step_tokens > 0) {
        const long double ideal =
            static_cast<long double>(s.duration_ns) * work[i].num_tokens / step_tokens;
        EXPECT_LT(std::abs(static_cast<long double>(shares[i].device_ns) - ideal), 1.0L);
      }
    }
    EXPECT_EQ(step_ns, step_tokens > 0 ? s.duration_ns : 0);
    accountant.RecordStep(s);
    if (step_tokens > 0) {
      sum_ns += s.duration_ns;
      sum_uj += e.value_or(0);
    }
    seen.insert(ids.begin(), ids.end());
  }
  SequenceUsage all;
  int64_t all_uj = 0;
  for (uint64_t id : seen) {
    const SequenceUsage u = accountant.Release(id);
    all += u;
    all_uj += u.energy_uj;  // energy_uj counts the known steps even when some were unknown
  }
  EXPECT_EQ(all.device_ns, sum_ns);
  EXPECT_EQ(all_uj, sum_uj);
  EXPECT_EQ(accountant.totals().attributed_ns, sum_ns);
  EXPECT_EQ(accountant.totals().attributed_uj, sum_uj);
  EXPECT_EQ(accountant.totals().num_steps, 5000);
  EXPECT_GT(accountant.totals().num_steps_without_energy, 0);
  EXPECT_FALSE(all.is_energy_known);  // some steps had no reading
  EXPECT_EQ(accountant.num_active_sequences(), 0);
}

TEST(StepAccountantTest, UnknownEnergyInAnyStepMakesTheSequenceUnknown) {
  StepAccountant accountant;
  accountant.RecordStep(Step(100, 50, {{1, 1}, {2, 1}}));
  accountant.RecordStep(Step(100, std::nullopt, {{2, 1}}));
  const SequenceUsage one = accountant.Release(1);
  const SequenceUsage two = accountant.Release(2);
  EXPECT_EQ(one.joules(), 25e-6);
  EXPECT_EQ(two.joules(), std::nullopt);
  EXPECT_EQ(two.device_ns, 150);
  EXPECT_EQ(two.num_steps, 2);
  EXPECT_EQ(two.num_tokens, 2);
  const SequenceUsage never = accountant.Release(3);
  EXPECT_EQ(never.num_steps, 0);
  EXPECT_EQ(never.device_ns, 0);
}

TEST(StepAccountantTest, RequestWithSeveralSequencesMergesUsage) {
  StepAccountant accountant;
  accountant.RecordStep(Step(90, 9, {{1, 1}, {2, 2}}));
  SequenceUsage request = accountant.Release(1);
  request += accountant.Release(2);
  EXPECT_EQ(request.device_ns, 90);
  EXPECT_EQ(request.energy_uj, 9);
  EXPECT_TRUE(request.is_energy_known);
}

TEST(StepProbeTest, MeasuresWallTimeAndMeterDelta) {
  FakeClock clock;
  FakeEnergyMeter meter;
  meter.AddMicrojoules(123456);  // whatever the meter read before
  StepProbe probe(clock, &meter);
  probe.Begin();
  clock.Advance(0.020);
  meter.AddMicrojoules(5000);
  StepSample s = probe.End({{1, 16}});
  EXPECT_NEAR(s.duration_ns, 20000000, 1);
  EXPECT_EQ(s.energy_uj, 5000);
  ASSERT_EQ(s.work.size(), 1u);

  probe.Begin();
  meter.SetUnavailable(true);
  s = probe.End({{1, 1}});
  EXPECT_EQ(s.energy_uj, std::nullopt);

  StepProbe no_meter(clock, nullptr);
  no_meter.Begin();
  clock.Advance(0.001);
  s = no_meter.End({});
  EXPECT_EQ(s.energy_uj, std::nullopt);
  EXPECT_NEAR(s.duration_ns, 1000000, 1);
}

}  // namespace
}  // namespace tokenmill::metrics
