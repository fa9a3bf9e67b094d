// The HTTP and gRPC servers in process, on the demo model, when the engine fails for good
// (a step throws): /health and /ready turn 503 naming the cause, completions are refused with
// it, the command's fatal hook (EngineFlags::on_fatal) runs once, and a gRPC server that is
// already gone is left alone.
#include "tokenmill/api/http_server.h"

#include <atomic>
#include <string>

#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tokenmill/api/grpc_server.h"
#include "tokenmill/server/engine_flags.h"

namespace tokenmill {
namespace {

using Json = nlohmann::json;

constexpr char kCause[] =
    "engine failed: step thread died: injected fault: step 2 throws (step_throw:at=2)";

class FailedEngineServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bundle = LoadModelBundle("demo");
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = *std::move(bundle);
    EngineFlags flags;
    flags.max_model_len = 64;
    flags.kv_cache_blocks = 64;
    flags.threads = 1;
    flags.inject_faults = "step_throw:at=2";
    flags.on_fatal = [this](const absl::Status& why) {
      ++num_fatal_;
      EXPECT_EQ(why.message(), kCause);
    };
    auto engine = BuildEngine(bundle_, flags);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    FrontendOptions options;
    options.model_name = "demo";
    frontend_ = std::make_unique<Frontend>(*engine_, bundle_, auth_, nullptr, options);
    HttpServerOptions ho;
    ho.port = 0;
    ho.num_threads = 4;
    auto http = HttpServer::Start(*frontend_, nullptr, ho);
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", http_->port());
  }

  httplib::Result Complete(int max_tokens) {
    const Json body = {{"model", "demo"},
                       {"prompt", "Hi"},
                       {"max_tokens", max_tokens},
                       {"temperature", 0},
                       {"ignore_eos", true}};
    return client_->Post("/v1/completions", body.dump(), "application/json");
  }

  ModelBundle bundle_;
  std::atomic<int> num_fatal_{0};
  std::unique_ptr<Engine> engine_;
  Authenticator auth_;
  std::unique_ptr<Frontend> frontend_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(FailedEngineServerTest, HealthAndReadinessTurn503NamingTheCause) {
  for (const char* path : {"/health", "/ready"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
  }
  // A gRPC server that came and went before the failure: the engine keeps its observer,
  // which must find nothing left to touch.
  GrpcServerOptions go;
  go.port = 0;
  go.reflection = false;
  auto grpc = GrpcServer::Start(*frontend_, go);
  ASSERT_TRUE(grpc.ok()) << grpc.status();
  grpc->reset();

  // Step 1 prefills, step 2 throws: the request fails with the cause.
  auto failed = Complete(8);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 500) << failed->body;
  const Json error = Json::parse(failed->body, nullptr, false);
  EXPECT_EQ(error["error"]["message"], kCause) << failed->body;
  EXPECT_EQ(num_fatal_.load(), 1);

  for (const char* path : {"/health", "/ready"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 503) << path;
    const Json body = Json::parse(res->body, nullptr, false);
    EXPECT_EQ(body["status"], "failed") << res->body;
    EXPECT_EQ(body["error"], kCause) << res->body;
  }
  // Failed trumps draining: the cause is what an operator needs to see.
  frontend_->StartDrain();
  auto ready = client_->Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(Json::parse(ready->body, nullptr, false)["status"], "failed");

  auto refused = Complete(4);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_NE(refused->body.find("server is draining"), std::string::npos) << refused->body;
  EXPECT_EQ(num_fatal_.load(), 1);
  EXPECT_EQ(frontend_->num_active(), 0);
}

TEST_F(FailedEngineServerTest, NewRequestsAreRefusedWithTheCause) {
  auto failed = Complete(8);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 500) << failed->body;
  auto refused = Complete(4);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  const Json error = Json::parse(refused->body, nullptr, false);
  EXPECT_EQ(error["error"]["message"], std::string(kCause) + "; not accepting requests")
      << refused->body;
}

}  // namespace
}  // namespace tokenmill
