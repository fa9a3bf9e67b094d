#include "server/server_config.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

namespace pb = google::protobuf;
using ::tokenmill::testing::ReadFileOrDie;
using ::tokenmill::testing::SourceDir;

std::string ErrorOf(const std::string& yaml) {
  auto c = ParseServerConfig(yaml, "t.yaml");
  if (!c.ok()) return std::string(c.status().message());
  auto o = ResolveServeOptions(*c);
  return o.ok() ? "" : std::string(o.status().message());
}

TEST(ServerConfigTest, UnknownAndMistypedFieldsNameTheirPathAndLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"model:\n  path: demo\nengine:\n  max_num_seqz: 4\n",
       "engine.max_num_seqz: unknown field (t.yaml:4)"},
      {"modle:\n  path: demo\n", "modle: unknown field (t.yaml:1)"},
      {"server:\n  grpc_port: lots\n",
       "server.grpc_port: expected an integer, got 'lots' (t.yaml:2)"},
      {"server:\n  grpc_port: 99999999999\n",
       "server.grpc_port: expected an integer, got '99999999999' (t.yaml:2)"},
      {"server:\n  drain_timeout_s: .nan\n",
       "server.drain_timeout_s: expected a number, got '.nan' (t.yaml:2)"},
      {"server:\n  enable_grpc: yes\n",
       "server.enable_grpc: expected true or false, got 'yes' (t.yaml:2)"},
      {"server:\n  host: [a, b]\n", "server.host: expected a string (t.yaml:2)"},
      {"server: 3\n", "server: expected a mapping (t.yaml:1)"},
      {"auth:\n  keys:\n    - sha256: abc\n      tenannt: x\n",
       "auth.keys[0].tenannt: unknown field (t.yaml:4)"},
      {"auth:\n  keys: {a: 1}\n", "auth.keys: expected a list (t.yaml:2)"},
      {"tenants:\n  acme:\n    rps: 3\n", "tenants.acme.rps: unknown field (t.yaml:3)"},
      {"tenants:\n  acme:\n    burst: many\n",
       "tenants.acme.burst: expected a number, got 'many' (t.yaml:3)"},
      {"cost:\n  per_model:\n    llama:\n      pue: high\n",
       "cost.per_model.llama.pue: expected a number, got 'high' (t.yaml:4)"},
      {"server:\n  host: a\n  host: b\n", "server.host: duplicate field (t.yaml:3)"},
  };
  for (const auto& [yaml, message] : cases) EXPECT_EQ(ErrorOf(yaml), message) << yaml;
  EXPECT_EQ(ErrorOf("model: [\n").rfind("t.yaml:", 0), 0u);  // YAML syntax error, with position
}

TEST(ServerConfigTest, RangesAreCheckedNamingTheField) {
  const std::string demo = "model:\n  path: demo\n";
  const std::pair<std::string, const char*> cases[] = {
      {"", "model.path: required (or --model PATH|demo)"},
      {demo + "server:\n  grpc_port: 70000\n",
       "server.grpc_port: must be in [0, 65535], got 70000"},
      {demo + "server:\n  log_format: xml\n",
       "server.log_format: must be one of text, json, got 'xml'"},
      {demo + "server:\n  enable_grpc: false\n  enable_http: false\n",
       "server: enable_grpc and enable_http are both false"},
      {demo + "engine:\n  backend: tpu\n", "engine.backend: must be one of cpu, cuda, got 'tpu'"},
      {demo + "engine:\n  max_num_seqs: 0\n", "engine.max_num_seqs: must be >= 1, got 0"},
      {demo + "limits:\n  max_logprobs: 50\n", "limits.max_logprobs: must be in [0, 20], got 50"},
      {demo + "metrics:\n  energy_meter: static\n",
       "metrics.static_watts: must be > 0 with energy_meter: static"},
      {demo + "metrics:\n  energy_meter: geiger\n",
       "metrics.energy_meter: must be one of auto, nvml, rapl, static, none, got 'geiger'"},
      {demo + "cost:\n  pue: 0.5\n", "cost.pue: must be >= 1, got 0.5"},
      {demo + "auth:\n  enabled: true\n", "auth.keys: auth is enabled but no key is configured"},
      {demo + "tenants:\n  t:\n    tokens_per_minute: -1\n",
       "tenants.t.tokens_per_minute: must be >= 0, got -1"},
      {demo + "tls:\n  cert_file: c.pem\n", "tls: set both cert_file and key_file, or neither"},
  };
  for (const auto& [yaml, message] : cases) EXPECT_EQ(ErrorOf(yaml), message) << yaml;
}

TEST(ServerConfigTest, FlagsOverrideTheFile) {
  auto file = ParseServerConfig(
      "model:\n  path: a.gguf\nserver:\n  grpc_port: 1\n  http_port: 2\nengine:\n  "
      "max_num_seqs: 8\n  prefix_caching: false\n");
  ASSERT_TRUE(file.ok());
  v1::ServerConfig flags;
  flags.mutable_model()->set_path("demo");
  flags.mutable_server()->set_http_port(0);
  flags.mutable_engine()->set_prefix_caching(true);
  file->MergeFrom(flags);
  auto o = ResolveServeOptions(*file);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model_path, "demo");
  EXPECT_EQ(o->grpc_port, 1);  // not overridden
  EXPECT_EQ(o->http_port, 0);  // set to 0 by a flag: presence, not value, decides
  EXPECT_EQ(o->engine.max_num_seqs, 8);
  EXPECT_FALSE(o->engine.no_prefix_caching);
}

TEST(ServerConfigTest, KeysTenantsAndCostsAreResolved) {
  auto c = ParseServerConfig(absl::StrCat(R"(model:
  path: demo
engine:
  backend: cuda
  tensor_parallel: 2
auth:
  enabled: true
  keys:
    - sha256: )",
                                          std::string(64, 'a'), R"(
      tenant: acme
      admin: true
tenants:
  "*":
    requests_per_second: 2.5
  acme:
    tokens_per_minute: 1000
cost:
  price_per_device_hour: 2
  per_model:
    big:
      pue: 1.3
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  auto o = ResolveServeOptions(*c);
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->api_keys.size(), 1u);
  EXPECT_EQ(o->api_keys[0].tenant, "acme");
  EXPECT_TRUE(o->api_keys[0].is_admin);
  EXPECT_DOUBLE_EQ(o->tenant_limits.at("*").requests_per_second, 2.5);
  EXPECT_EQ(o->tenant_limits.at("acme").tokens_per_minute, 1000);
  EXPECT_EQ(o->cost.defaults.num_devices, 2);  // a TP-2 GPU engine occupies both GPUs
  EXPECT_DOUBLE_EQ(*o->cost.per_model.at("big").pue, 1.3);
}

// Every leaf field path of ServerConfig, with map keys written as <name> and list items as [].
void LeafPaths(const pb::Descriptor* d, const std::string& prefix, std::vector<std::string>* out) {
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    if (f->is_map()) {
      out->push_back(path);
      const std::string key = f->name() == "per_model" ? "<model>" : "<name>";
      LeafPaths(f->message_type()->map_value()->message_type(), path + "." + key, out);
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) out->push_back(path);
      LeafPaths(f->message_type(), f->is_repeated() ? path + "[]" : path, out);
    } else {
      out->push_back(path);
    }
  }
}

TEST(ServerConfigTest, DocsDescribeEveryField) {
  const std::string docs = ReadFileOrDie(SourceDir() + "/docs/configuration.md");
  std::vector<std::string> paths;
  LeafPaths(v1::ServerConfig::descriptor(), "", &paths);
  EXPECT_GT(paths.size(), 60u);
  for (const std::string& p : paths) {
    EXPECT_NE(docs.find("`" + p + "`"), std::string::npos)
        << p << " is not in docs/configuration.md";
  }
}

TEST(ServerConfigTest, ServerYamlSetsEveryFieldToItsDefault) {
  const std::string path = SourceDir() + "/configs/server.yaml";
  auto c = LoadServerConfigFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  // Every scalar is written out (cost.num_devices is derived from the engine, so commented).
  std::function<void(const pb::Message&, const std::string&)> check =
      [&](const pb::Message& m, const std::string& prefix) {
        const pb::Descriptor* d = m.GetDescriptor();
        for (int i = 0; i < d->field_count(); ++i) {
          const pb::FieldDescriptor* f = d->field(i);
          const std::string p = prefix.empty() ? f->name() : prefix + "." + f->name();
          if (f->is_repeated() || p == "cost.num_devices") continue;
          EXPECT_TRUE(m.GetReflection()->HasField(m, f)) << p << " missing from server.yaml";
          if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
              m.GetReflection()->HasField(m, f)) {
            check(m.GetReflection()->GetMessage(m, f), p);
          }
        }
      };
  check(*c, "");
  auto documented = ResolveServeOptions(*c);
  ASSERT_TRUE(documented.ok()) << documented.status();
  v1::ServerConfig minimal;
  minimal.mutable_model()->set_path("demo");
  auto defaults = ResolveServeOptions(minimal);
  ASSERT_TRUE(defaults.ok());
  const ServeOptions& a = *documented;
  const ServeOptions& b = *defaults;
  EXPECT_EQ(a.host, b.host);
  EXPECT_EQ(a.grpc_port, b.grpc_port);
  EXPECT_EQ(a.http_port, b.http_port);
  EXPECT_EQ(a.enable_grpc, b.enable_grpc);
  EXPECT_EQ(a.enable_http, b.enable_http);
  EXPECT_EQ(a.http_threads, b.http_threads);
  EXPECT_EQ(a.http_keep_alive_timeout_s, b.http_keep_alive_timeout_s);
  EXPECT_EQ(a.drain_timeout_s, b.drain_timeout_s);
  EXPECT_EQ(a.grpc_reflection, b.grpc_reflection);
  EXPECT_EQ(a.log_format, b.log_format);
  EXPECT_EQ(a.log_prompts, b.log_prompts);
  EXPECT_EQ(a.engine.backend, b.engine.backend);
  EXPECT_EQ(a.engine.threads, b.engine.threads);
  EXPECT_EQ(a.engine.tensor_parallel, b.engine.tensor_parallel);
  EXPECT_EQ(a.engine.max_num_seqs, b.engine.max_num_seqs);
  EXPECT_EQ(a.engine.max_batched_tokens, b.engine.max_batched_tokens);
  EXPECT_EQ(a.engine.max_model_len, b.engine.max_model_len);
  EXPECT_EQ(a.engine.kv_cache_blocks, b.engine.kv_cache_blocks);
  EXPECT_EQ(a.engine.kv_cache_mb, b.engine.kv_cache_mb);
  EXPECT_EQ(a.engine.block_size, b.engine.block_size);
  EXPECT_EQ(a.engine.no_prefix_caching, b.engine.no_prefix_caching);
  EXPECT_EQ(a.engine.max_pending_requests, b.engine.max_pending_requests);
  const RequestLimits &la = a.limits, &lb = b.limits;
  EXPECT_EQ(la.max_request_bytes, lb.max_request_bytes);
  EXPECT_EQ(la.max_prompt_tokens, lb.max_prompt_tokens);
  EXPECT_EQ(la.max_tokens, lb.max_tokens);
  EXPECT_EQ(la.default_max_tokens, lb.default_max_tokens);
  EXPECT_EQ(la.max_n, lb.max_n);
  EXPECT_EQ(la.max_stop_strings, lb.max_stop_strings);
  EXPECT_EQ(la.max_stop_string_bytes, lb.max_stop_string_bytes);
  EXPECT_EQ(la.max_stop_token_ids, lb.max_stop_token_ids);
  EXPECT_EQ(la.max_logprobs, lb.max_logprobs);
  EXPECT_EQ(la.max_messages, lb.max_messages);
  EXPECT_EQ(a.auth_enabled, b.auth_enabled);
  EXPECT_EQ(a.public_health, b.public_health);
  EXPECT_EQ(a.public_metrics, b.public_metrics);
  EXPECT_EQ(a.ledger_dir, b.ledger_dir);
  EXPECT_EQ(a.energy_meter, b.energy_meter);
  EXPECT_EQ(a.static_watts, b.static_watts);
  EXPECT_EQ(a.max_tenant_labels, b.max_tenant_labels);
  EXPECT_EQ(a.cost.currency, b.cost.currency);
  EXPECT_EQ(a.cost.defaults.price_per_device_hour, b.cost.defaults.price_per_device_hour);
  EXPECT_EQ(a.cost.defaults.price_per_kwh, b.cost.defaults.price_per_kwh);
  EXPECT_EQ(a.cost.defaults.pue, b.cost.defaults.pue);
  EXPECT_EQ(a.tls_cert_file, b.tls_cert_file);
  EXPECT_EQ(a.tls_grpc, b.tls_grpc);
  EXPECT_EQ(a.tls_http, b.tls_http);
}

TEST(ServerConfigTest, CpuTinyYamlResolves) {
  auto c = LoadServerConfigFile(SourceDir() + "/configs/cpu-tiny.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  auto o = ResolveServeOptions(*c);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model_path, "demo");
  EXPECT_EQ(o->grpc_port, 0);
  EXPECT_EQ(o->http_port, 0);
}

TEST(ServerConfigTest, MissingFileIsNamed) {
  EXPECT_EQ(LoadServerConfigFile("/nonexistent/x.yaml").status().message(),
            "--config: cannot read /nonexistent/x.yaml");
}

}  // namespace
}  // namespace tokenmill
