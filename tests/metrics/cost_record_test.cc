#include "gtest/gtest.h"
#include "tokenmill/metrics/cost_model.h"
#include "tokenmill/metrics/request_record.h"

namespace tokenmill::metrics {
namespace {

CostConfig Config() {
  CostConfig c;
  c.currency = "EUR";
  c.defaults.price_per_device_hour = 2.0;
  c.defaults.price_per_kwh = 0.15;
  c.defaults.pue = 1.2;
  c.defaults.num_devices = 2;
  c.per_model["big"].price_per_device_hour = 4.0;
  c.per_model["big"].num_devices = 8;
  return c;
}

TEST(CostModelTest, DeviceTimePlusEnergyTimesPue) {
  CostModel model(Config());
  // 90 s on 2 GPUs at 2/GPU-hour = 0.1; 36 kJ = 0.01 kWh x 1.2 x 0.15 = 0.0018.
  const CostBreakdown c = model.Cost("small", 90.0, 36000.0);
  EXPECT_DOUBLE_EQ(c.device_cost, 0.1);
  EXPECT_DOUBLE_EQ(c.energy_cost.value(), 0.0018);
  EXPECT_DOUBLE_EQ(c.total(), 0.1018);
  EXPECT_EQ(model.currency(), "EUR");
}

TEST(CostModelTest, UnknownEnergyChargesDeviceTimeOnly) {
  CostModel model(Config());
  const CostBreakdown c = model.Cost("small", 1800.0, std::nullopt);
  EXPECT_EQ(c.energy_cost, std::nullopt);
  EXPECT_DOUBLE_EQ(c.total(), 2.0);
}

TEST(CostModelTest, PerModelOverridesInheritUnsetFields) {
  CostModel model(Config());
  const PriceConfig p = model.PricesFor("big");
  EXPECT_EQ(p.price_per_device_hour, 4.0);
  EXPECT_EQ(p.num_devices, 8);
  EXPECT_EQ(p.price_per_kwh, 0.15);
  EXPECT_EQ(p.pue, 1.2);
  // 450 s x 8 GPUs x 4/h = 4; 3.6 MJ = 1 kWh x 1.2 x 0.15 = 0.18.
  EXPECT_DOUBLE_EQ(model.Cost("big", 450.0, 3.6e6).total(), 4.18);
}

TEST(CostModelTest, ValidationNamesTheField) {
  CostConfig c = Config();
  c.per_model["big"].pue = 0.5;
  EXPECT_EQ(c.Validate().message(), "cost.per_model[big].pue: must be >= 1, got 0.5");
  c = Config();
  c.defaults.price_per_kwh = -1;
  EXPECT_EQ(c.Validate().message(), "cost.price_per_kwh: must be >= 0, got -1");
  c = Config();
  c.currency = "";
  EXPECT_FALSE(c.Validate().ok());
  c = Config();
  c.defaults.num_devices = 0;
  EXPECT_NE(c.Validate().message().find("num_devices"), std::string::npos);
  EXPECT_TRUE(Config().Validate().ok());
}

TEST(CostModelTest, CostPerMillionTokens) {
  EXPECT_DOUBLE_EQ(CostPerMillionTokens(0.5, 250000).value(), 2.0);
  EXPECT_EQ(CostPerMillionTokens(0.5, 0), std::nullopt);
}

RequestRecord Identity() {
  RequestRecord r;
  r.request_id = "req-1";
  r.tenant = "acme";
  r.model = "small";
  r.prompt_tokens = 95;
  r.cached_tokens = 64;
  r.generated_tokens = 5;
  r.finish_reason = "stop";
  r.time_unix_s = 1717243200.25;
  return r;
}

RequestTimes Times() {
  RequestTimes t;
  t.arrival_s = 100.0;
  t.first_scheduled_s = 100.5;
  t.first_token_s = 101.0;
  t.finish_s = 103.0;
  return t;
}

TEST(RequestRecordTest, FinalizeDerivesTimingsEnergyAndCost) {
  CostModel cost(Config());
  SequenceUsage usage;
  usage.device_ns = 1800000000000;  // 1800 s
  usage.energy_uj = 4000000;        // 4 J
  RequestRecord r = Identity();
  FinalizeRequestRecord(Times(), usage, cost, EnergySource::kNvml, r);
  EXPECT_DOUBLE_EQ(r.queue_s.value(), 0.5);
  EXPECT_DOUBLE_EQ(r.ttft_s.value(), 1.0);
  EXPECT_DOUBLE_EQ(r.tpot_s.value(), 0.5);  // 2 s over 4 gaps
  EXPECT_DOUBLE_EQ(r.e2e_s, 3.0);
  EXPECT_DOUBLE_EQ(r.device_s, 1800.0);
  EXPECT_DOUBLE_EQ(r.joules.value(), 4.0);
  EXPECT_DOUBLE_EQ(r.tokens_per_joule.value(), 25.0);  // (95 + 5) / 4
  EXPECT_EQ(r.energy_source, EnergySource::kNvml);
  EXPECT_DOUBLE_EQ(r.cost, 2.0 + 4.0 / 3.6e6 * 1.2 * 0.15);
  EXPECT_EQ(r.currency, "EUR");
}

TEST(RequestRecordTest, NoMeterMeansNullEnergyEverywhere) {
  CostModel cost(Config());
  SequenceUsage usage;
  usage.device_ns = 3600000000000;
  RequestRecord r = Identity();
  FinalizeRequestRecord(Times(), usage, cost, EnergySource::kNone, r);
  EXPECT_EQ(r.joules, std::nullopt);
  EXPECT_EQ(r.tokens_per_joule, std::nullopt);
  EXPECT_EQ(r.energy_source, EnergySource::kNone);
  EXPECT_DOUBLE_EQ(r.cost, 4.0);
  const nlohmann::ordered_json usage_json = ToUsageJson(r);
  EXPECT_TRUE(usage_json["joules"].is_null());
  EXPECT_TRUE(usage_json["tokens_per_joule"].is_null());
  EXPECT_EQ(usage_json["energy_source"], "none");

  // A meter exists, but one of the request's steps had no reading: unknown, not partial.
  usage.is_energy_known = false;
  usage.energy_uj = 123;
  FinalizeRequestRecord(Times(), usage, cost, EnergySource::kRapl, r);
  EXPECT_EQ(r.joules, std::nullopt);
  EXPECT_EQ(r.energy_source, EnergySource::kNone);
}

TEST(RequestRecordTest, TimingsThatDidNotHappenAreNull) {
  CostModel cost(Config());
  RequestRecord r = Identity();
  r.generated_tokens = 1;
  RequestTimes t = Times();
  FinalizeRequestRecord(t, {}, cost, EnergySource::kNone, r);
  EXPECT_EQ(r.tpot_s, std::nullopt);  // one token has no inter-token time
  t.first_token_s.reset();
  t.first_scheduled_s.reset();
  FinalizeRequestRecord(t, {}, cost, EnergySource::kNone, r);
  EXPECT_EQ(r.ttft_s, std::nullopt);
  EXPECT_EQ(r.queue_s, std::nullopt);
  EXPECT_TRUE(ToUsageJson(r)["ttft_s"].is_null());
}

TEST(RequestRecordTest, UsageJsonHasTheApiKeysInOrder) {
  RequestRecord r = Identity();
  FinalizeRequestRecord(Times(), {}, CostModel(Config()), EnergySource::kEstimated, r);
  const nlohmann::ordered_json j = ToUsageJson(r);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys,
            (std::vector<std::string>{"queue_s", "ttft_s", "tpot_s", "e2e_s", "joules",
                                      "tokens_per_joule", "cost", "currency", "energy_source"}));
  EXPECT_EQ(j["energy_source"], "estimated");
  EXPECT_EQ(j["joules"], 0.0);                   // measured (estimated) zero is a number
  EXPECT_TRUE(j["tokens_per_joule"].is_null());  // no ratio over zero joules
  const nlohmann::json plain = j;                // embeds into the API's nlohmann::json
  EXPECT_EQ(plain["currency"], "EUR");
}

TEST(RequestRecordTest, LedgerJsonRoundTrips) {
  RequestRecord r = Identity();
  SequenceUsage usage;
  usage.device_ns = 123456789;
  usage.energy_uj = 987654321;
  FinalizeRequestRecord(Times(), usage, CostModel(Config()), EnergySource::kNvml, r);
  r.finish_reason = "error";
  r.error_code = "deadline_exceeded";
  const std::string line = ToLedgerJson(r).dump();
  EXPECT_EQ(line.rfind("{\"time\":\"2024-06-01T12:00:00.250000Z\",\"request_id\":\"req-1\"", 0), 0u)
      << line;
  auto back = RecordFromLedgerJson(nlohmann::json::parse(line));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->request_id, r.request_id);
  EXPECT_EQ(back->tenant, r.tenant);
  EXPECT_EQ(back->model, r.model);
  EXPECT_EQ(back->prompt_tokens, r.prompt_tokens);
  EXPECT_EQ(back->cached_tokens, r.cached_tokens);
  EXPECT_EQ(back->generated_tokens, r.generated_tokens);
  EXPECT_EQ(back->queue_s, r.queue_s);
  EXPECT_EQ(back->ttft_s, r.ttft_s);
  EXPECT_EQ(back->tpot_s, r.tpot_s);
  EXPECT_EQ(back->e2e_s, r.e2e_s);
  EXPECT_EQ(back->device_s, r.device_s);
  EXPECT_EQ(back->joules, r.joules);
  EXPECT_EQ(back->tokens_per_joule, r.tokens_per_joule);
  EXPECT_EQ(back->cost, r.cost);
  EXPECT_EQ(back->currency, r.currency);
  EXPECT_EQ(back->energy_source, r.energy_source);
  EXPECT_EQ(back->finish_reason, "error");
  EXPECT_EQ(back->error_code, "deadline_exceeded");
  EXPECT_DOUBLE_EQ(back->time_unix_s, r.time_unix_s);
}

TEST(RequestRecordTest, LedgerParseErrorsNameTheField) {
  RequestRecord r = Identity();
  nlohmann::json j = ToLedgerJson(r);
  j["prompt_tokens"] = "many";
  EXPECT_NE(RecordFromLedgerJson(j).status().message().find("prompt_tokens"), std::string::npos);
  j = ToLedgerJson(r);
  j["time"] = "yesterday";
  EXPECT_NE(RecordFromLedgerJson(j).status().message().find("yesterday"), std::string::npos);
  j = ToLedgerJson(r);
  j["energy_source"] = "vibes";
  EXPECT_FALSE(RecordFromLedgerJson(j).ok());
  EXPECT_FALSE(RecordFromLedgerJson(nlohmann::json::array()).ok());
}

TEST(RequestRecordTest, Rfc3339RoundTrips) {
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatRfc3339(1700006399.5), "2023-11-14T23:59:59.500000Z");
  EXPECT_DOUBLE_EQ(ParseRfc3339("2023-11-14T23:59:59.500000Z").value(), 1700006399.5);
  EXPECT_DOUBLE_EQ(ParseRfc3339("2023-11-15T01:00:00+01:00").value(), 1700006400.0);
  EXPECT_FALSE(ParseRfc3339("2023-11-15").ok());
}

}  // namespace
}  // namespace tokenmill::metrics
