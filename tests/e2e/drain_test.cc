// End to end: the daemon's lifecycle. SIGTERM drains (health NOT_SERVING, /ready 503, new
// requests UNAVAILABLE / 503, every in-flight request completes, exit 0); a second signal
// exits at once; the drain timeout cuts long requests short; startup failures exit non-zero
// with a message naming the cause.
#include <signal.h>

#include <atomic>
#include <thread>

#include "e2e/e2e_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"
#include "testing/testdata.h"

namespace tokenmill::e2e {
namespace {

using Json = nlohmann::json;
using grpc::health::v1::HealthCheckResponse;

v1::GenerateRequest LongRequest(int max_tokens) {
  v1::GenerateRequest r;
  r.set_text("drain");
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  return r;
}

HealthCheckResponse::ServingStatus Health(const std::string& address) {
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckResponse res;
  if (!health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &res).ok()) {
    return HealthCheckResponse::UNKNOWN;
  }
  return res.status();
}

TEST(DrainE2eTest, SigtermFinishesEveryInFlightRequestRefusesNewOnesAndExitsZero) {
  auto server = ServerProcess::Start({"--model", "demo", "--max-num-seqs", "32"});
  ASSERT_NE(server, nullptr);
  constexpr int kGrpcStreams = 24, kHttpStreams = 8, kTokens = 300;
  std::atomic<int> started{0};
  std::vector<GenerateOutcome> grpc_out(kGrpcStreams);
  std::vector<std::string> sse(kHttpStreams);
  std::vector<int> http_status(kHttpStreams, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kGrpcStreams; ++i) {
    threads.emplace_back([&, i] {
      auto stub = MakeStub(server->grpc_address());
      grpc::ClientContext ctx;
      auto reader = stub->Generate(&ctx, LongRequest(kTokens));
      v1::GenerateResponse msg;
      bool first = true;
      while (reader->Read(&msg)) {
        if (first) started++, first = false;
        grpc_out[i].token_ids.insert(grpc_out[i].token_ids.end(), msg.token_ids().begin(),
                                     msg.token_ids().end());
        grpc_out[i].has_final |= msg.has_final();
      }
      grpc_out[i].status = reader->Finish();
    });
  }
  for (int i = 0; i < kHttpStreams; ++i) {
    threads.emplace_back([&, i] {
      auto http = MakeHttpClient(*server);
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body =
          Json{{"prompt", "drain"}, {"max_tokens", kTokens}, {"ignore_eos", true}, {"stream", true}}
              .dump();
      req.set_header("Content-Type", "application/json");
      bool first = true;
      req.content_receiver = [&, i](const char* data, size_t n, uint64_t, uint64_t) {
        if (first) started++, first = false;
        sse[i].append(data, n);
        return true;
      };
      httplib::Response res;
      httplib::Error err;
      http->send(req, res, err);
      http_status[i] = res.status;
    });
  }
  ASSERT_TRUE(PollUntil([&] { return started == kGrpcStreams + kHttpStreams; }, 30));
  server->Signal(SIGTERM);
  // While it drains: not serving, not ready, new requests refused.
  EXPECT_TRUE(PollUntil(
      [&] { return Health(server->grpc_address()) == HealthCheckResponse::NOT_SERVING; }, 5));
  auto http = MakeHttpClient(*server);
  auto ready = http->Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_EQ(http->Get("/health")->status, 200);  // alive
  auto refused =
      http->Post("/v1/completions", R"({"prompt": "late", "max_tokens": 2})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  auto stub = MakeStub(server->grpc_address());
  EXPECT_EQ(RunGenerate(*stub, LongRequest(2)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  http.reset();

  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kGrpcStreams; ++i) {
    EXPECT_TRUE(grpc_out[i].status.ok()) << i << ": " << grpc_out[i].status.error_message();
    EXPECT_EQ(grpc_out[i].token_ids.size(), static_cast<size_t>(kTokens)) << i;
    EXPECT_TRUE(grpc_out[i].has_final) << i;
  }
  for (int i = 0; i < kHttpStreams; ++i) {
    EXPECT_EQ(http_status[i], 200) << i;
    EXPECT_NE(sse[i].find("\"finish_reason\":\"length\""), std::string::npos) << i;
    EXPECT_EQ(sse[i].rfind("data: [DONE]\n\n"), sse[i].size() - 14) << i;
  }
  EXPECT_EQ(server->WaitExit(30), 0) << server->Log();
  EXPECT_NE(server->Log().find("every in-flight request completed"), std::string::npos);
}

TEST(DrainE2eTest, IdleKeepAliveConnectionsDoNotDelayTheExit) {
  auto server = ServerProcess::Start({"--model", "demo"});
  ASSERT_NE(server, nullptr);
  httplib::Client idle(server->http_host(), server->http_port());
  idle.set_keep_alive(true);
  ASSERT_EQ(idle.Get("/health")->status, 200);  // the connection stays open, idle
  const auto start = std::chrono::steady_clock::now();
  server->Signal(SIGTERM);
  EXPECT_EQ(server->WaitExit(10), 0);
  // Well under the 5 s keep-alive timeout httplib would otherwise wait out.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
}

TEST(DrainE2eTest, SecondSignalExitsAtOnce) {
  auto server = ServerProcess::Start({"--model", "demo"});
  ASSERT_NE(server, nullptr);
  auto stub = MakeStub(server->grpc_address());
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, LongRequest(2000));
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  server->Signal(SIGTERM);
  ASSERT_TRUE(PollUntil([&] { return server->Log().find("draining") != std::string::npos; }, 5));
  server->Signal(SIGTERM);
  EXPECT_EQ(server->WaitExit(5), 128 + SIGTERM);
  while (reader->Read(&msg)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
}

TEST(DrainE2eTest, DrainTimeoutCutsLongRequestsShortWithUnavailable) {
  auto server = ServerProcess::Start({"--model", "demo", "--drain-timeout", "0.3"});
  ASSERT_NE(server, nullptr);
  auto stub = MakeStub(server->grpc_address());
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, LongRequest(2000));
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  server->Signal(SIGINT);
  while (reader->Read(&msg)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(server->WaitExit(15), 0) << server->Log();
}

TEST(ServeCliTest, StartupFailuresExitNonZeroNamingTheCause) {
  using ::tokenmill::testing::RunCommand;
  const std::string bin = ::tokenmill::testing::TokenmillBinary();
  TempDir dir;
  const std::string bad =
      dir.WriteFile("bad.yaml", "model:\n  path: demo\nengine:\n  max_num_seqz: 4\n");
  auto r = RunCommand({bin, "serve", "--config", bad}, "", 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("engine.max_num_seqz: unknown field (" + bad + ":4)"), std::string::npos)
      << r.err;

  const std::string typed = dir.WriteFile("typed.yaml", "server:\n  grpc_port: lots\n");
  r = RunCommand({bin, "serve", "--model", "demo", "--config", typed}, "", 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("server.grpc_port: expected an integer, got 'lots'"), std::string::npos)
      << r.err;

  r = RunCommand({bin, "serve", "--model", dir.path() + "/missing.gguf"}, "", 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot load model"), std::string::npos) << r.err;

  r = RunCommand({bin, "serve"}, "", 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model.path: required"), std::string::npos) << r.err;

  auto first = ServerProcess::Start({"--model", "demo"});
  ASSERT_NE(first, nullptr);
  r = RunCommand({bin, "serve", "--model", "demo", "--grpc-port", "0", "--http-port",
                  std::to_string(first->http_port())},
                 "", 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("http: cannot listen"), std::string::npos) << r.err;
  const std::string grpc_port = first->grpc_address().substr(first->grpc_address().rfind(':') + 1);
  r = RunCommand({bin, "serve", "--model", "demo", "--grpc-port", grpc_port, "--http-port", "0"},
                 "", 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("grpc: cannot listen"), std::string::npos) << r.err;
}

TEST(ServeCliTest, JsonLogsAndTheListeningLine) {
  auto server = ServerProcess::Start({"--model", "demo", "--log-format", "json"});
  ASSERT_NE(server, nullptr);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->WaitExit(15), 0);
  int listening = 0;
  std::istringstream lines(server->Log());
  for (std::string line; std::getline(lines, line);) {
    const Json j = Json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;  // lines written before the JSON format was set
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg")) << line;
    if (j["msg"].get<std::string>().rfind("listening grpc=127.0.0.1:", 0) == 0) ++listening;
  }
  EXPECT_EQ(listening, 1);
}

}  // namespace
}  // namespace tokenmill::e2e
