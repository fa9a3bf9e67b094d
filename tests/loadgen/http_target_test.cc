// The HTTP target against a scripted OpenAI-compatible server on loopback: request body,
// SSE timing, usage, HTTP errors, connection errors, keep-alive reuse.
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tokenmill/loadgen/target.h"

namespace tokenmill::loadgen {
namespace {

using json = nlohmann::json;

// Streams max_tokens chunks of "t" 20 ms apart after a 50 ms "prefill", then a usage chunk
// and [DONE]. max_tokens 99 answers 503; max_tokens 98 ends the stream without a finish.
class FakeOpenAiServer {
 public:
  FakeOpenAiServer() {
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const json body = json::parse(req.body);
      {
        std::lock_guard<std::mutex> lock(mu_);
        bodies_.push_back(body);
        auth_ = req.get_header_value("Authorization");
      }
      const int n = body["max_tokens"];
      if (n == 99) {
        res.status = 503;
        res.set_content(R"({"error":{"message":"overloaded","code":503}})", "application/json");
        return;
      }
      const int prompt = static_cast<int>(body["prompt"].size());
      res.set_chunked_content_provider("text/event-stream", [n, prompt](size_t,
                                                                        httplib::DataSink& sink) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        for (int i = 0; i < n; ++i) {
          if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
          const json chunk = {
              {"choices",
               {{{"index", 0},
                 {"text", "t"},
                 {"finish_reason", i + 1 == n && n != 98 ? json("length") : json(nullptr)}}}}};
          const std::string ev = "data: " + chunk.dump() + "\n\n";
          sink.write(ev.data(), ev.size());
        }
        if (n != 98) {
          const json usage = {
              {"choices", json::array()},
              {"usage",
               {{"prompt_tokens", prompt},
                {"completion_tokens", n},
                {"prompt_tokens_details", {{"cached_tokens", 16}}},
                {"tokenmill", {{"joules", 2.0}, {"cost", nullptr}, {"energy_source", "nvml"}}}}}};
          const std::string ev = "data: " + usage.dump() + "\n\ndata: [DONE]\n\n";
          sink.write(ev.data(), ev.size());
        }
        sink.done();
        return true;
      });
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeOpenAiServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<json> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  std::string auth() {
    std::lock_guard<std::mutex> lock(mu_);
    return auth_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<json> bodies_;
  std::string auth_;
};

std::unique_ptr<Target> Make(int port, const std::string& key = "") {
  HttpTargetOptions o;
  auto a = ParseTargetAddress("http://127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(a.ok());
  o.address = *a;
  o.model = "stories";
  o.api_key = key;
  o.timeout_s = 10;
  return MakeHttpTarget(o);
}

TargetRequest Request(int max_tokens) {
  TargetRequest r;
  r.id = "req-" + std::to_string(max_tokens);
  r.prompt_ids = std::vector<int32_t>(32, 7);
  r.prompt_ids[0] = 1;
  r.max_tokens = max_tokens;
  return r;
}

TEST(TargetAddressTest, ParsesEveryForm) {
  auto in = ParseTargetAddress("inproc");
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->kind, "inproc");
  auto h = ParseTargetAddress("http://localhost:8000/v1/");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->kind, "http");
  EXPECT_EQ(h->host, "localhost");
  EXPECT_EQ(h->port, 8000);
  EXPECT_EQ(h->path_prefix, "");
  auto p = ParseTargetAddress("https://gw.example/openai/v1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->port, 443);
  EXPECT_EQ(p->path_prefix, "/openai");
  auto g = ParseTargetAddress("grpc://[::1]:50051");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->kind, "grpc");
  EXPECT_EQ(g->host, "::1");
  EXPECT_EQ(g->port, 50051);
  for (const char* bad : {"localhost:8000", "ftp://x:1", "grpc://host", "http://:80",
                          "http://h:99999", "grpc://h:1/path"}) {
    EXPECT_FALSE(ParseTargetAddress(bad).ok()) << bad;
  }
}

TEST(HttpTargetTest, StreamsTimesAndUsage) {
  FakeOpenAiServer server;
  auto target = Make(server.port(), "secret");
  EXPECT_EQ(target->kind(), "http");
  const RequestResult r = target->Send(Request(5));
  ASSERT_TRUE(r.ok()) << r.error_code << ": " << r.error_message;
  EXPECT_EQ(r.output_tokens, 5);
  EXPECT_TRUE(r.output_tokens_from_usage);
  EXPECT_EQ(*r.prompt_tokens, 32);
  EXPECT_EQ(*r.cached_tokens, 16);
  EXPECT_DOUBLE_EQ(*r.joules, 2.0);
  EXPECT_FALSE(r.cost.has_value());
  EXPECT_EQ(r.energy_source, "nvml");
  EXPECT_EQ(r.finish_reason, "length");
  ASSERT_EQ(r.chunk_times_s.size(), 5u);
  // The server waits 50 ms before the first chunk and 20 ms before each other one, so no
  // chunk can arrive earlier than that (later, on a busy machine, it may).
  EXPECT_GE(*r.first_token_s - r.send_s, 0.045);
  for (size_t i = 0; i < r.chunk_times_s.size(); ++i) {
    EXPECT_GE(r.chunk_times_s[i] - r.send_s, 0.045 + 0.02 * i) << i;
    if (i > 0) {
      EXPECT_GE(r.chunk_times_s[i], r.chunk_times_s[i - 1]);
    }
  }
  EXPECT_GE(r.end_s, r.chunk_times_s.back());
  const std::vector<json> bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(bodies[0]["model"], "stories");
  EXPECT_EQ(bodies[0]["prompt"].size(), 32u);
  EXPECT_EQ(bodies[0]["stream"], true);
  EXPECT_EQ(bodies[0]["ignore_eos"], true);
  EXPECT_EQ(server.auth(), "Bearer secret");
}

TEST(HttpTargetTest, ManyThreadsShareTheTarget) {
  FakeOpenAiServer server;
  auto target = Make(server.port());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 3; ++i) ok += target->Send(Request(2)).ok();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 12);
  EXPECT_EQ(server.bodies().size(), 12u);
}

TEST(HttpTargetTest, HttpErrorsConnectionErrorsAndCutStreams) {
  FakeOpenAiServer server;
  auto target = Make(server.port());
  const RequestResult busy = target->Send(Request(99));
  EXPECT_EQ(busy.error_code, "http_503");
  EXPECT_EQ(busy.error_message, "overloaded");
  const RequestResult cut = target->Send(Request(98));
  EXPECT_EQ(cut.error_code, "protocol");
  // The connection still works after both.
  EXPECT_TRUE(target->Send(Request(1)).ok());

  int closed_port = 0;
  {
    FakeOpenAiServer gone;
    closed_port = gone.port();
  }
  const RequestResult refused = Make(closed_port)->Send(Request(1));
  EXPECT_EQ(refused.error_code, "connection");
  EXPECT_FALSE(refused.first_token_s.has_value());
}

}  // namespace
}  // namespace tokenmill::loadgen
