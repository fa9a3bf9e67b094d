// End to end: API keys (hashed in the config) and tenants, admin-only views, per-tenant rate,
// concurrency and token quotas, the bounded queue, secrets kept out of logs, and TLS on both
// ports with a certificate made at test time.
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"
#include "gtest/gtest.h"
#include "metrics/exposition_parser.h"
#include "nlohmann/json.hpp"
#include "tokenmill/api/auth.h"

namespace tokenmill::e2e {
namespace {

using Json = nlohmann::json;

constexpr char kAdminKey[] = "tm-admin-5f2c9e";
constexpr char kAliceKey[] = "tm-alice-0a7d41";
constexpr char kBobKey[] = "tm-bob-83be22";
constexpr char kCarolKey[] = "tm-carol-c1d00f";
constexpr char kSecretPrompt[] = "the quarterly numbers are confidential";

std::string AuthConfig(const std::string& ledger_dir) {
  return absl::StrCat(R"(
model:
  path: demo
engine:
  max_pending_requests: 2
metrics:
  ledger_dir: )",
                      ledger_dir, R"(
auth:
  enabled: true
  keys:
    - sha256: )",
                      Sha256Hex(kAdminKey), R"(
      tenant: ops
      admin: true
    - sha256: )",
                      Sha256Hex(kAliceKey), R"(
      tenant: acme
    - sha256: )",
                      Sha256Hex(kBobKey), R"(
      tenant: beta
    - sha256: )",
                      Sha256Hex(kCarolKey), R"(
      tenant: gamma
tenants:
  acme:
    max_concurrent_requests: 1
  beta:
    tokens_per_minute: 100
  gamma:
    requests_per_second: 0.001
    burst: 1
)");
}

class AuthE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string config = dir_->WriteFile("server.yaml", AuthConfig(dir_->path() + "/ledger"));
    server_ = ServerProcess::Start({"--config", config}).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = MakeStub(server_->grpc_address());
    http_ = MakeHttpClient(*server_);
  }
  static v1::GenerateRequest Request(int max_tokens, const std::string& text = "hi") {
    v1::GenerateRequest r;
    r.set_text(text);
    r.set_max_tokens(max_tokens);
    r.set_ignore_eos(true);
    return r;
  }
  httplib::Result Post(const std::string& key, const Json& body) {
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    return http_->Post("/v1/completions", h, body.dump(), "application/json");
  }
  httplib::Result Get(const std::string& path, const std::string& key) {
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    return http_->Get(path.c_str(), h);
  }
  static Json Body(int max_tokens, const std::string& prompt = "hi") {
    return {{"prompt", prompt}, {"max_tokens", max_tokens}, {"ignore_eos", true}};
  }
  static std::string ErrorCode(const httplib::Result& r) {
    return r ? Json::parse(r->body)["error"].value("code", "") : "";
  }
  void ExpectIdle() {
    EXPECT_TRUE(PollUntil(
        [&] {
          const v1::GetStatsResponse s = Stats(*stub_, kAdminKey);
          return s.num_pending_requests() == 0 && s.kv_cache().num_used_blocks() == 0;
        },
        5));
  }

  static TempDir* dir_;
  static ServerProcess* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<httplib::Client> http_;
};
TempDir* AuthE2eTest::dir_ = nullptr;
ServerProcess* AuthE2eTest::server_ = nullptr;

TEST_F(AuthE2eTest, GrpcNeedsAValidKeyAndStatsAnAdminKey) {
  EXPECT_EQ(RunGenerate(*stub_, Request(2)).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(RunGenerate(*stub_, Request(2), 10, "not-a-key").status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const GenerateOutcome ok = RunGenerate(*stub_, Request(2), 10, kAliceKey);
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  for (const std::string& key : {std::string(), std::string(kAliceKey)}) {
    grpc::ClientContext ctx;
    if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
    v1::GetStatsResponse r;
    EXPECT_EQ(
        stub_->GetStats(&ctx, v1::GetStatsRequest(), &r).error_code(),
        key.empty() ? grpc::StatusCode::UNAUTHENTICATED : grpc::StatusCode::PERMISSION_DENIED);
  }
  grpc::ClientContext ctx;
  v1::ListModelsResponse models;
  EXPECT_EQ(stub_->ListModels(&ctx, v1::ListModelsRequest(), &models).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Stats(*stub_, kAdminKey).model(), "demo");
}

TEST_F(AuthE2eTest, HttpNeedsAValidKeyMetricsAndStatsAnAdminKeyHealthIsPublic) {
  auto none = Post("", Body(2));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(ErrorCode(none), "invalid_api_key");
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(Post("not-a-key", Body(2))->status, 401);
  EXPECT_EQ(Post(kAliceKey, Body(2))->status, 200);
  EXPECT_EQ(Get("/v1/models", "")->status, 401);
  EXPECT_EQ(Get("/v1/models", kAliceKey)->status, 200);
  EXPECT_EQ(Get("/metrics", "")->status, 401);
  EXPECT_EQ(Get("/metrics", kAliceKey)->status, 403);
  EXPECT_EQ(Get("/v1/stats", kAliceKey)->status, 403);
  EXPECT_EQ(Get("/v1/stats", kAdminKey)->status, 200);
  EXPECT_EQ(Get("/health", "")->status, 200);
  EXPECT_EQ(Get("/ready", "")->status, 200);

  auto metrics = Get("/metrics", kAdminKey);
  ASSERT_TRUE(metrics && metrics->status == 200);
  auto families = metrics::testing::ParseExposition(metrics->body);
  ASSERT_TRUE(families.ok());
  EXPECT_GE(
      metrics::testing::SampleValue(*families, "tokenmill:generation_tokens_total",
                                    "tokenmill:generation_tokens_total", {{"tenant", "acme"}}),
      2);
}

TEST_F(AuthE2eTest, RequestsAreAccountedToTheKeysTenantInTheLedger) {
  ASSERT_EQ(Post(kAliceKey, Body(3, "ledger me"))->status, 200);
  bool found = false;
  for (const auto& f : std::filesystem::directory_iterator(dir_->path() + "/ledger")) {
    std::ifstream in(f.path());
    for (std::string line; std::getline(in, line);) {
      const Json j = Json::parse(line);
      if (j["tenant"] == "acme" && j["generated_tokens"] == 3 && j["prompt_tokens"] == 10) {
        found = true;
        EXPECT_EQ(j["model"], "demo");
        EXPECT_EQ(j["finish_reason"], "length");
      }
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(AuthE2eTest, TokenQuotaPerTenant) {
  // beta: 100 tokens per minute; prompt "hi" is 3 tokens with BOS.
  auto too_big = Post(kBobKey, Body(200));
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 429);
  EXPECT_EQ(ErrorCode(too_big), "quota_exceeded");
  EXPECT_EQ(Post(kBobKey, Body(57))->status, 200);  // reserves and uses 60
  auto exhausted = Post(kBobKey, Body(57));
  ASSERT_TRUE(exhausted);
  EXPECT_EQ(exhausted->status, 429) << exhausted->body;
  EXPECT_EQ(RunGenerate(*stub_, Request(57), 10, kBobKey).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Other tenants are not affected.
  EXPECT_EQ(Post(kAliceKey, Body(57))->status, 200);
}

TEST_F(AuthE2eTest, RequestRatePerTenant) {
  EXPECT_EQ(Post(kCarolKey, Body(1))->status, 200);
  auto second = Post(kCarolKey, Body(1));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 429);
  EXPECT_EQ(ErrorCode(second), "rate_limit_exceeded");
  const GenerateOutcome g = RunGenerate(*stub_, Request(1), 10, kCarolKey);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(g.status.error_message().find("rate limit"), std::string::npos);
}

TEST_F(AuthE2eTest, ConcurrencyPerTenantAndTheBoundedQueue) {
  // acme may have one request in flight; the engine takes two pending requests in all.
  grpc::ClientContext a_ctx;
  a_ctx.AddMetadata("authorization", std::string("Bearer ") + kAliceKey);
  auto a = stub_->Generate(&a_ctx, Request(1500));
  v1::GenerateResponse msg;
  ASSERT_TRUE(a->Read(&msg));
  const GenerateOutcome second = RunGenerate(*stub_, Request(2), 10, kAliceKey);
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(second.status.error_message().find("in flight"), std::string::npos);

  grpc::ClientContext b_ctx;
  b_ctx.AddMetadata("authorization", std::string("Bearer ") + kAdminKey);
  auto b = stub_->Generate(&b_ctx, Request(1500));
  ASSERT_TRUE(b->Read(&msg));
  const GenerateOutcome full = RunGenerate(*stub_, Request(2), 10, kAdminKey);
  EXPECT_EQ(full.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.status.error_message().find("queue full"), std::string::npos)
      << full.status.error_message();
  auto http_full = Post(kAdminKey, Body(2));
  ASSERT_TRUE(http_full);
  EXPECT_EQ(http_full->status, 429);
  EXPECT_EQ(ErrorCode(http_full), "queue_full");
  a_ctx.TryCancel();
  b_ctx.TryCancel();
  while (a->Read(&msg)) {
  }
  while (b->Read(&msg)) {
  }
  EXPECT_EQ(a->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(b->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ExpectIdle();
}

TEST_F(AuthE2eTest, NoKeyOrPromptTextInTheLogs) {
  ASSERT_EQ(Post(kAliceKey, Body(2, kSecretPrompt))->status, 200);
  const std::string log = server_->Log();
  EXPECT_NE(log.find("tenant=acme"), std::string::npos);  // requests are logged...
  for (const char* secret : {kAdminKey, kAliceKey, kBobKey, kCarolKey, kSecretPrompt}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << secret;  // ...without secrets
  }
}

TEST(TlsE2eTest, GrpcAndHttpsWithATestCertificate) {
  TempDir dir;
  std::string cert, key, why;
  if (!MakeSelfSignedCert(dir, &cert, &key, &why)) GTEST_SKIP() << why;
  auto server = ServerProcess::Start({"--model", "demo", "--tls-cert", cert, "--tls-key", key});
  ASSERT_NE(server, nullptr);
  std::ifstream in(cert);
  const std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem;
  auto secure = v1::Inference::NewStub(
      grpc::CreateChannel(server->grpc_address(), grpc::SslCredentials(ssl)));
  v1::GenerateRequest r;
  r.set_text("tls");
  r.set_max_tokens(3);
  const GenerateOutcome out = RunGenerate(*secure, r);
  EXPECT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.token_ids.size(), 3u);
  // A plaintext client cannot talk to the TLS port.
  auto plain = MakeStub(server->grpc_address());
  EXPECT_FALSE(RunGenerate(*plain, r, 3).status.ok());

  httplib::SSLClient https(server->http_host(), server->http_port());
  https.set_ca_cert_path(cert.c_str());
  https.enable_server_certificate_verification(true);
  auto res =
      https.Post("/v1/completions", R"({"prompt": "tls", "max_tokens": 2})", "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(Json::parse(res->body)["usage"]["completion_tokens"], 2);
  httplib::Client http(server->http_host(), server->http_port());
  auto plain_http = http.Get("/health");
  EXPECT_TRUE(!plain_http || plain_http->status != 200);
}

}  // namespace
}  // namespace tokenmill::e2e
