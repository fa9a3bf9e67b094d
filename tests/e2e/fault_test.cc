// End to end: failures and load on the real daemon.
// - Injected step errors (--inject-faults, testing only): the requests in a failed step end
//   with gRPC INTERNAL, HTTP 500 with an OpenAI error body, or an SSE error event; the server
//   stays ready, serves the next requests in full and counts the failures.
// - An injected throw kills the engine: every request ends (INTERNAL naming the cause, or
//   UNAVAILABLE), health turns NOT_SERVING and /ready, /health 503, the failure is logged
//   once and ledgered, and the daemon exits 1.
// - KV exhaustion: a tiny KV cache preempts and recomputes instead of failing; every request
//   completes with the tokens an unconstrained server gives.
// - Priority under load: with one running slot, queued urgent requests are admitted before
//   queued low-priority ones (ordering read from the ledger, never from timing).
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "e2e/e2e_util.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "metrics/exposition_parser.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"
#include "testing/testdata.h"

namespace tokenmill::e2e {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

v1::GenerateRequest Greedy(const std::string& text, int max_tokens) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  r.mutable_sampling()->set_temperature(0);
  return r;
}

Json GreedyBody(const std::string& prompt, int max_tokens) {
  return {{"model", "demo"},
          {"prompt", prompt},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"ignore_eos", true}};
}

// A counter's value in the server's /metrics (0 when the labelled sample does not exist yet).
double MetricValue(httplib::Client& http, const std::string& family,
                   const std::map<std::string, std::string>& labels) {
  auto res = http.Get("/metrics");
  EXPECT_TRUE(res && res->status == 200);
  if (!res) return -1;
  auto families = metrics::testing::ParseExposition(res->body);
  EXPECT_TRUE(families.ok()) << families.status();
  if (!families.ok() || !metrics::testing::HasSample(*families, family, family, labels)) return 0;
  return metrics::testing::SampleValue(*families, family, family, labels);
}

bool IsServing(const std::string& address) {
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckResponse res;
  return health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &res).ok() &&
         res.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

void ExpectIdle(v1::Inference::Stub& stub) {
  EXPECT_TRUE(PollUntil(
      [&] {
        const v1::GetStatsResponse s = Stats(stub);
        return s.num_pending_requests() == 0 && s.kv_cache().num_used_blocks() == 0;
      },
      10))
      << Stats(stub).DebugString();
}

// The JSON payloads of an SSE body; the last event must be [DONE] (not returned).
std::vector<Json> SseEvents(const std::string& body) {
  std::vector<Json> events;
  std::vector<std::string> parts = absl::StrSplit(body, "\n\n", absl::SkipEmpty());
  EXPECT_FALSE(parts.empty());
  if (parts.empty()) return events;
  EXPECT_EQ(parts.back(), "data: [DONE]");
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    EXPECT_EQ(parts[i].rfind("data: ", 0), 0u) << parts[i];
    events.push_back(Json::parse(parts[i].substr(6), nullptr, false));
  }
  return events;
}

TEST(FaultE2eTest, FailedStepsFailTheirRequestsAndTheServerKeepsServing) {
  // Steps are numbered from 1 over the server's life; requests sent one at a time take one
  // prefill step plus one decode step per further token, so the failing steps are known.
  auto server = ServerProcess::Start(
      {"--model", "demo", "--inject-faults", "step_error:at=3,6,9,30", "--max-num-seqs", "16"});
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->Log(), HasSubstr("FAULT INJECTION ON (--inject-faults "
                                       "'step_error:at=3,6,9,30')"));
  auto stub = MakeStub(server->grpc_address());
  auto http = MakeHttpClient(*server);

  // gRPC: steps 1 and 2 stream two tokens, step 3 fails: INTERNAL, no final message.
  const GenerateOutcome grpc_failed = RunGenerate(*stub, Greedy("fault one", 8));
  EXPECT_EQ(grpc_failed.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(grpc_failed.status.error_message(), HasSubstr("step failed: injected fault: step 3"));
  EXPECT_EQ(grpc_failed.token_ids.size(), 2u);
  EXPECT_FALSE(grpc_failed.has_final);

  // HTTP, unary: steps 4 and 5, then step 6 fails: 500 with an OpenAI error body.
  auto unary = http->Post("/v1/completions", GreedyBody("fault two", 8).dump(), "application/json");
  ASSERT_TRUE(unary);
  EXPECT_EQ(unary->status, 500) << unary->body;
  const Json error = Json::parse(unary->body, nullptr, false);
  ASSERT_TRUE(error.contains("error")) << unary->body;
  EXPECT_EQ(error["error"]["type"], "server_error");
  EXPECT_THAT(error["error"]["message"].get<std::string>(), HasSubstr("injected fault: step 6"));

  // HTTP, streamed: steps 7 and 8 stream two chunks, step 9 fails: an error event, [DONE].
  Json streamed = GreedyBody("fault three", 8);
  streamed["stream"] = true;
  auto sse = http->Post("/v1/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(sse);
  EXPECT_EQ(sse->status, 200);  // the headers went out with the first chunk
  const std::vector<Json> events = SseEvents(sse->body);
  ASSERT_GE(events.size(), 2u) << sse->body;
  int num_token_chunks = 0;  // one per generated token (the text of a byte may be held back)
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "text_completion") << events[i].dump();
    num_token_chunks += events[i]["choices"][0]["finish_reason"].is_null();
  }
  EXPECT_EQ(num_token_chunks, 2) << sse->body;
  const Json& last = events.back();
  ASSERT_TRUE(last.contains("error")) << last.dump();
  EXPECT_EQ(last["error"]["type"], "server_error");
  EXPECT_THAT(last["error"]["message"].get<std::string>(), HasSubstr("injected fault: step 9"));

  // Still ready, and the next requests are served in full (steps 10..17 and 18..25).
  EXPECT_TRUE(IsServing(server->grpc_address()));
  auto ready = http->Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  const GenerateOutcome grpc_ok = RunGenerate(*stub, Greedy("fault four", 8));
  EXPECT_TRUE(grpc_ok.status.ok()) << grpc_ok.status.error_message();
  EXPECT_EQ(grpc_ok.token_ids.size(), 8u);
  EXPECT_TRUE(grpc_ok.has_final);
  auto http_ok =
      http->Post("/v1/completions", GreedyBody("fault five", 8).dump(), "application/json");
  ASSERT_TRUE(http_ok);
  EXPECT_EQ(http_ok->status, 200) << http_ok->body;

  // A burst: step 30 fails every stream running then. The first to arrive runs from step 26
  // for 12 steps, so at least one fails; the others either fail too or complete in full.
  constexpr int kBurst = 8, kBurstTokens = 12;
  std::vector<GenerateOutcome> burst(kBurst);
  std::vector<std::thread> threads;
  for (int i = 0; i < kBurst; ++i) {
    threads.emplace_back([&, i] {
      auto own = MakeStub(server->grpc_address());
      burst[i] = RunGenerate(*own, Greedy(absl::StrCat("burst ", i), kBurstTokens));
    });
  }
  for (std::thread& t : threads) t.join();
  int num_burst_failed = 0;
  for (const GenerateOutcome& o : burst) {
    if (o.status.error_code() == grpc::StatusCode::INTERNAL) {
      ++num_burst_failed;
      EXPECT_THAT(o.status.error_message(), HasSubstr("injected fault: step 30"));
      EXPECT_LT(o.token_ids.size(), static_cast<size_t>(kBurstTokens));
    } else {
      EXPECT_TRUE(o.status.ok()) << o.status.error_message();
      EXPECT_EQ(o.token_ids.size(), static_cast<size_t>(kBurstTokens));
    }
  }
  EXPECT_GE(num_burst_failed, 1);

  ExpectIdle(*stub);
  const v1::GetStatsResponse stats = Stats(*stub);
  EXPECT_EQ(stats.num_failed_steps(), 4);
  EXPECT_EQ(MetricValue(*http, "tokenmill:request_errors_total", {{"error_code", "internal"}}),
            3 + num_burst_failed);
  EXPECT_EQ(MetricValue(*http, "tokenmill:request_success_total", {{"finished_reason", "length"}}),
            2 + kBurst - num_burst_failed);
  const std::string log = server->Log();
  EXPECT_THAT(log, HasSubstr("engine: step failed, failing its 1 sequences: INTERNAL: injected "
                             "fault: step 3"));
  EXPECT_THAT(log, HasSubstr("finish=error status=INTERNAL"));
}

TEST(FaultE2eTest, BadFaultSpecIsAStartupErrorNamingTheFlagAndTheClause) {
  using ::tokenmill::testing::RunCommand;
  const std::string bin = ::tokenmill::testing::TokenmillBinary();
  auto r = RunCommand({bin, "serve", "--model", "demo", "--grpc-port", "0", "--http-port", "0",
                       "--inject-faults", "step_error:every=0"},
                      "", 60);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot start: INVALID_ARGUMENT: --inject-faults: clause "
                               "'step_error:every=0': every must be an integer >= 1"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("listening")));
  // generate shares the flag.
  r = RunCommand({bin, "generate", "--model", "demo", "--prompt", "x", "--inject-faults", "oom"},
                 "", 60);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--inject-faults: clause 'oom': unknown fault"));
}

// Runs `requests` concurrently against `server`, one stream each.
std::vector<GenerateOutcome> RunConcurrently(const ServerProcess& server,
                                             const std::vector<v1::GenerateRequest>& requests) {
  std::vector<GenerateOutcome> out(requests.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < requests.size(); ++i) {
    threads.emplace_back([&, i] {
      auto stub = MakeStub(server.grpc_address());
      out[i] = RunGenerate(*stub, requests[i], 120);
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

TEST(KvExhaustionE2eTest, TinyKvCachePreemptsAndEveryRequestGetsTheUnconstrainedOutput) {
  // 24 blocks of 16 tokens hold 384 tokens; 12 concurrent requests of ~14 + 120 tokens need
  // over 100 blocks, so sequences are preempted and recomputed, never failed.
  auto tiny = ServerProcess::Start(
      {"--model", "demo", "--kv-cache-blocks", "24", "--block-size", "16", "--max-num-seqs", "16"});
  auto roomy = ServerProcess::Start({"--model", "demo", "--max-num-seqs", "16"});
  ASSERT_NE(tiny, nullptr);
  ASSERT_NE(roomy, nullptr);
  constexpr int kRequests = 12, kTokens = 120;
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < kRequests; ++i) {
    requests.push_back(Greedy(absl::StrCat("kv pressure ", i), kTokens));
  }
  const std::vector<GenerateOutcome> constrained = RunConcurrently(*tiny, requests);
  const std::vector<GenerateOutcome> reference = RunConcurrently(*roomy, requests);
  for (int i = 0; i < kRequests; ++i) {
    const GenerateOutcome& got = constrained[i];
    ASSERT_TRUE(got.status.ok()) << "request " << i << ": " << got.status.error_message();
    ASSERT_TRUE(got.has_final);
    EXPECT_EQ(got.final_info.finish_reasons(0), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(got.final_info.usage().generated_tokens(), kTokens);
    EXPECT_EQ(got.token_ids.size(), static_cast<size_t>(kTokens));
    ASSERT_TRUE(reference[i].status.ok()) << reference[i].status.error_message();
    EXPECT_EQ(got.token_ids, reference[i].token_ids) << "request " << i;
  }
  auto tiny_http = MakeHttpClient(*tiny);
  auto roomy_http = MakeHttpClient(*roomy);
  EXPECT_GT(MetricValue(*tiny_http, "tokenmill:num_preemptions_total", {}), 0);
  EXPECT_EQ(MetricValue(*roomy_http, "tokenmill:num_preemptions_total", {}), 0);
  EXPECT_EQ(
      MetricValue(*tiny_http, "tokenmill:request_success_total", {{"finished_reason", "length"}}),
      kRequests);
  auto tiny_stub = MakeStub(tiny->grpc_address());
  ExpectIdle(*tiny_stub);
  EXPECT_GT(Stats(*tiny_stub).scheduler().num_preemptions(), 0);
}

// Ledger lines in the order they were written (files are per UTC day; names sort by date).
std::vector<Json> ReadLedger(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<Json> lines;
  for (const std::string& f : files) {
    std::ifstream in(f);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) lines.push_back(Json::parse(line, nullptr, false));
    }
  }
  return lines;
}

int CountOf(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(FaultE2eTest, AThrowingStepFailsTheEngineTheServerTurnsUnreadyAndExitsNonZero) {
  // Step 10 throws: the engine cannot run again. Steps take 20 ms, so that the streams sent
  // together arrive before it (a late one is refused, never left hanging).
  TempDir dir;
  const std::string ledger = dir.path() + "/ledger";
  const std::string spec = "step_throw:at=10;step_delay_ms=20";
  auto server = ServerProcess::Start(
      {"--model", "demo", "--max-num-seqs", "2", "--ledger-dir", ledger, "--inject-faults", spec});
  ASSERT_NE(server, nullptr);
  auto http = MakeHttpClient(*server);
  EXPECT_TRUE(IsServing(server->grpc_address()));
  auto ready = http->Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  // Four streams, two running and two queued (two slots): every one ends, with INTERNAL
  // naming the cause, or UNAVAILABLE if it came after the engine had failed.
  const std::string cause =
      "engine failed: step thread died: injected fault: step 10 throws (step_delay_ms=20;"
      "step_throw:at=10)";
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(Greedy(absl::StrCat("doomed ", i), 40));
  int num_failed = 0;
  for (const GenerateOutcome& o : RunConcurrently(*server, requests)) {
    if (o.status.error_code() == grpc::StatusCode::INTERNAL) {
      ++num_failed;
      EXPECT_EQ(o.status.error_message(), cause);
      EXPECT_LT(o.token_ids.size(), 10u);
      EXPECT_FALSE(o.has_final);
    } else {
      EXPECT_EQ(o.status.error_code(), grpc::StatusCode::UNAVAILABLE) << o.status.error_message();
    }
  }
  EXPECT_GE(num_failed, 1);

  // The server said it was unready before any client saw the error, and refuses from then on
  // (or is already gone: a closed port is unready too).
  EXPECT_FALSE(IsServing(server->grpc_address()));
  for (const char* path : {"/ready", "/health"}) {
    auto res = http->Get(path);
    if (!res) continue;
    EXPECT_EQ(res->status, 503) << path;
    const Json body = Json::parse(res->body, nullptr, false);
    EXPECT_EQ(body.value("status", ""), "failed") << res->body;
    EXPECT_EQ(body.value("error", ""), cause) << res->body;
  }
  auto stub = MakeStub(server->grpc_address());
  const GenerateOutcome late = RunGenerate(*stub, Greedy("too late", 4), 10);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);

  // The daemon drains what is left and exits non-zero, for a supervisor to restart it.
  EXPECT_EQ(server->WaitExit(60), 1);
  const std::string log = server->Log();
  EXPECT_EQ(CountOf(log, "engine: step thread died: "), 1) << log;
  EXPECT_THAT(log, HasSubstr("engine: step thread died: injected fault: step 10 throws"));
  EXPECT_THAT(log, HasSubstr(cause + "; shutting down"));
  // Every request the engine took has its ledger line, as a failure.
  int num_lines = 0;
  for (const Json& line : ReadLedger(ledger)) {
    ++num_lines;
    EXPECT_EQ(line.value("finish_reason", ""), "error") << line.dump();
    EXPECT_EQ(line.value("error_code", ""), "internal") << line.dump();
  }
  EXPECT_EQ(num_lines, num_failed);
}

TEST(PriorityE2eTest, QueuedUrgentRequestsAreAdmittedBeforeQueuedLowPriorityOnes) {
  // One running slot. A blocker holds it while four low-priority (10) and then four urgent
  // (0) requests queue, half over gRPC and half over HTTP; the blocker is then cancelled.
  // With one slot, the ledger's finish order is the admission order.
  TempDir dir;
  const std::string ledger = dir.path() + "/ledger";
  auto server = ServerProcess::Start({"--model", "demo", "--max-num-seqs", "1", "--ledger-dir",
                                      ledger, "--inject-faults", "step_delay_ms=10"});
  ASSERT_NE(server, nullptr);
  auto stub = MakeStub(server->grpc_address());

  grpc::ClientContext blocker_ctx;
  v1::GenerateRequest blocker = Greedy("blocker", 1500);
  blocker.set_request_id("blocker");
  std::atomic<bool> blocker_started{false};
  grpc::Status blocker_status;
  std::thread blocker_thread([&] {
    auto own = MakeStub(server->grpc_address());
    auto reader = own->Generate(&blocker_ctx, blocker);
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) blocker_started = true;
    blocker_status = reader->Finish();
  });
  ASSERT_TRUE(PollUntil([&] { return blocker_started.load(); }, 30));

  std::vector<std::thread> clients;
  std::mutex mu;
  std::map<std::string, std::string> failures;  // id -> what went wrong
  auto enqueue = [&](const std::string& id, int priority, bool over_http) {
    clients.emplace_back([&, id, priority, over_http] {
      std::string problem;
      if (over_http) {
        auto http = MakeHttpClient(*server);
        Json body = GreedyBody(id, 4);
        body["priority"] = priority;
        const httplib::Headers headers = {{"X-Request-Id", id}};
        auto r = http->Post("/v1/completions", headers, body.dump(), "application/json");
        if (!r || r->status != 200) problem = r ? r->body : "no response";
      } else {
        v1::GenerateRequest req = Greedy(id, 4);
        req.set_priority(priority);
        req.set_request_id(id);
        auto own = MakeStub(server->grpc_address());
        const GenerateOutcome o = RunGenerate(*own, req, 60);
        if (!o.status.ok()) problem = o.status.error_message();
      }
      if (!problem.empty()) {
        std::lock_guard<std::mutex> lock(mu);
        failures[id] = problem;
      }
    });
    // Wait until it is queued, so arrival order within a class is known too.
    const int queued = static_cast<int>(clients.size());
    EXPECT_TRUE(PollUntil([&] { return Stats(*stub).num_waiting() == queued; }, 30)) << id;
  };
  const std::vector<std::string> low = {"low-0", "low-1", "low-2", "low-3"};
  const std::vector<std::string> urgent = {"urgent-0", "urgent-1", "urgent-2", "urgent-3"};
  for (int i = 0; i < 4; ++i) enqueue(low[i], 10, i % 2 == 1);
  for (int i = 0; i < 4; ++i) enqueue(urgent[i], 0, i % 2 == 0);
  EXPECT_EQ(Stats(*stub).num_running(), 1);
  blocker_ctx.TryCancel();
  blocker_thread.join();
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(blocker_status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(failures.empty()) << failures.begin()->first << ": " << failures.begin()->second;

  ExpectIdle(*stub);
  std::vector<std::string> order;
  for (const Json& line : ReadLedger(ledger)) {
    const std::string id = line.value("request_id", "");
    if (id != "blocker") order.push_back(id);
  }
  std::vector<std::string> expected = urgent;
  expected.insert(expected.end(), low.begin(), low.end());
  EXPECT_EQ(order, expected);
}

}  // namespace
}  // namespace tokenmill::e2e
