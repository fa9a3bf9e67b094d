// `tokenmill bench` end to end at a small size: in-process on stories260K and the demo
// model, and against a real `tokenmill serve` on loopback over HTTP and gRPC.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Stories() { return testing::TestdataPath("models/stories260K/stories260K.gguf"); }

std::string OutDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("bench_e2e_" + name);
  fs::remove_all(dir);
  return dir.string();
}

testing::CommandResult Bench(std::vector<std::string> args) {
  args.insert(args.begin(), {testing::TokenmillBinary(), "bench"});
  return testing::RunCommand(args, "", 120);
}

json Report(const std::string& dir) {
  return json::parse(testing::ReadFileOrDie(dir + "/report.json"));
}

// The figures every successful run must have, with exact lengths.
void ExpectExactRun(const json& r, int requests, int prompt_tokens, int output_tokens) {
  EXPECT_EQ(r["num_completed"], requests) << r.dump(2);
  EXPECT_EQ(r["errors"]["total"], 0);
  EXPECT_EQ(r["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(r["output_tokens"], output_tokens);
  EXPECT_EQ(r["prompt_length_mismatches"], 0);
  EXPECT_EQ(r["output_length_mismatches"], 0);
  EXPECT_GT(r["output_throughput_tok_s"].get<double>(), 0);
  EXPECT_GT(r["request_throughput_req_s"].get<double>(), 0);
  for (const char* k : {"ttft_s", "tpot_s", "itl_s", "e2e_s"}) {
    EXPECT_GT(r[k]["p50"].get<double>(), 0) << k;
    EXPECT_LE(r[k]["p50"].get<double>(), r[k]["p99"].get<double>()) << k;
  }
  EXPECT_LT(r["ttft_s"]["p50"].get<double>(), r["e2e_s"]["p50"].get<double>());
  EXPECT_TRUE(r.contains("tokens_per_joule"));
  EXPECT_TRUE(r.contains("cost_per_1m_tokens"));
}

TEST(BenchE2eTest, InprocStoriesWritesTheReport) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  const std::string out = OutDir("inproc");
  const auto r = Bench({"--target", "inproc", "--model", Stories(), "--workload", "fixed:24:8",
                        "--concurrency", "2", "--requests", "6", "--warmup", "2", "--save-requests",
                        "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = Report(out);
  ExpectExactRun(j, 6, 6 * 24, 6 * 8);
  EXPECT_EQ(j["config"]["target_kind"], "inproc");
  EXPECT_EQ(j["warmup"]["requests"], 2);
  EXPECT_EQ(j["points"].size(), 1u);
  EXPECT_TRUE(j["tokens_per_joule"].is_null());  // no meter on a CI machine unless asked
  EXPECT_TRUE(j["cost_per_1m_tokens"].is_null());
  EXPECT_TRUE(fs::exists(out + "/report.md"));
  EXPECT_NE(r.out.find("| c=2 |"), std::string::npos);  // the summary on stdout
  // --save-requests: one line per measured request (not the warm-up), times from the start.
  const std::string lines = testing::ReadFileOrDie(out + "/requests.jsonl");
  int n = 0;
  for (size_t pos = 0; pos < lines.size();) {
    const size_t nl = lines.find('\n', pos);
    const json q = json::parse(lines.substr(pos, nl - pos));
    EXPECT_EQ(q["prompt_tokens"], 24);
    EXPECT_EQ(q["output_tokens"], 8);
    EXPECT_EQ(q["itl_s"].size(), 7u);
    EXPECT_GE(q["send_s"].get<double>(), 0);
    EXPECT_LT(q["send_s"].get<double>(), q["first_token_s"].get<double>());
    EXPECT_LE(q["first_token_s"].get<double>(), q["end_s"].get<double>());
    EXPECT_TRUE(q["error_code"].is_null());
    ++n;
    pos = nl + 1;
  }
  EXPECT_EQ(n, 6);
}

TEST(BenchE2eTest, InprocSweepWithEstimatedEnergyAndPrices) {
  const std::string out = OutDir("sweep");
  const auto r = Bench({"--model", "demo", "--workload", "fixed:16:4", "--sweep-concurrency", "1,3",
                        "--requests", "6", "--energy-meter", "static", "--static-watts", "100",
                        "--price-gpu-hour", "2.0", "--slo-ttft", "10", "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = Report(out);
  ASSERT_EQ(j["points"].size(), 2u);
  EXPECT_EQ(j["points"][0]["load"]["value"], 1);
  EXPECT_EQ(j["points"][1]["load"]["value"], 3);
  for (const json& p : j["points"]) ExpectExactRun(p, 6, 6 * 16, 6 * 4);
  EXPECT_GT(j["tokens_per_joule"].get<double>(), 0);
  EXPECT_EQ(j["energy_source"], "estimated");
  EXPECT_GT(j["cost_per_1m_tokens"].get<double>(), 0);
  EXPECT_EQ(j["currency"], "USD");
  EXPECT_EQ(j["goodput_req_s"], j["request_throughput_req_s"]);  // a 10 s TTFT SLO holds
  EXPECT_EQ(j["config"]["engine"]["random_weights"], true);
}

TEST(BenchE2eTest, InprocAgenticAtARate) {
  const std::string out = OutDir("agentic");
  const auto r = Bench({"--model", "demo", "--workload",
                        "agentic:system=64,turns=3-4,user_median=8,out_median=4,think=0.01",
                        "--rate", "20", "--requests", "10", "--seed", "3", "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = Report(out);
  EXPECT_EQ(j["num_completed"], 10);
  EXPECT_EQ(j["points"][0]["load"]["mode"], "rate");
  EXPECT_GE(j["sessions"].get<int>(), 3);
  // Turns after the first reuse the system prompt and the history: the engine's prefix cache
  // serves whole blocks of them.
  EXPECT_GT(j["prefix_cache_hit_rate"].get<double>(), 0.2);
  EXPECT_EQ(j["config"]["workload_params"]["kind"], "agentic");
}

TEST(BenchE2eTest, BadFlagsAndUnreachableServers) {
  EXPECT_EQ(Bench({"--model", "demo", "--workload", "fixed:1", "--requests", "1"}).exit_code, 2);
  EXPECT_EQ(
      Bench({"--model", "demo", "--requests", "1", "--concurrency", "2", "--rate", "1"}).exit_code,
      2);
  EXPECT_EQ(Bench({"--model", "demo", "--workload", "fixed:4:2"}).exit_code, 2);  // no bound
  const std::string out = OutDir("refused");
  // Port 1 on loopback: nothing listens there.
  const auto r = Bench({"--target", "http://127.0.0.1:1", "--model", "demo", "--workload",
                        "fixed:4:2", "--requests", "3", "--out", out});
  EXPECT_EQ(r.exit_code, 1) << r.err;  // ran, but nothing completed
  const json j = Report(out);
  EXPECT_EQ(j["errors"]["total"], 3);
  EXPECT_EQ(j["errors"]["by_code"]["connection"], 3);
}

// `tokenmill serve` on loopback with OS-chosen ports, stopped with SIGTERM at the end.
class Server {
 public:
  explicit Server(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDERR_FILENO);
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    fd_ = fds[0];
    ReadUntilListening(30.0);
    // Keep draining its log so the server never blocks on a full pipe.
    drain_ = std::thread([this] {
      char buf[4096];
      while (read(fd_, buf, sizeof(buf)) > 0) {
      }
    });
  }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    if (drain_.joinable()) drain_.join();
    if (fd_ >= 0) close(fd_);
  }
  const std::string& grpc() const { return grpc_; }
  const std::string& http() const { return http_; }
  const std::string& log() const { return log_; }

 private:
  void ReadUntilListening(double timeout_s) {
    const std::regex re(R"(listening grpc=(\S+) http=(\S+))");
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) return;  // exited
      log_.append(buf, n);
      std::smatch m;
      if (std::regex_search(log_, m, re)) {
        grpc_ = m[1];
        http_ = m[2];
        return;
      }
    }
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string log_, grpc_, http_;
  std::thread drain_;
};

TEST(BenchE2eTest, AgainstTokenmillServeOverHttpAndGrpc) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  Server server({testing::TokenmillBinary(), "serve", "--model", Stories(), "--grpc-port", "0",
                 "--http-port", "0", "--kv-cache-mb", "64"});
  ASSERT_FALSE(server.http().empty()) << server.log();
  struct Case {
    std::string name, target, format;
  };
  const std::vector<Case> cases = {{"http", "http://" + server.http(), "ids"},
                                   {"http_text", "http://" + server.http(), "text"},
                                   {"grpc", "grpc://" + server.grpc(), "ids"}};
  int seed = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string out = OutDir(c.name);
    // A new seed each time: no run hits the cache on an earlier run's prompts.
    const auto r =
        Bench({"--target", c.target, "--model", Stories(), "--workload", "random:20-60:4-12",
               "--concurrency", "3", "--requests", "9", "--prompt-format", c.format, "--seed",
               std::to_string(++seed), "--out", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json j = Report(out);
    EXPECT_EQ(j["num_completed"], 9) << j.dump(2);
    EXPECT_EQ(j["errors"]["total"], 0);
    // The server counted exactly the prompts sent (ids, or text that re-tokenizes to them)
    // and generated exactly max_tokens (ignore_eos).
    EXPECT_EQ(j["prompt_length_mismatches"], 0);
    EXPECT_EQ(j["output_length_mismatches"], 0);
    EXPECT_GE(j["prompt_tokens"].get<int>(), 9 * 20);
    EXPECT_LE(j["output_tokens"].get<int>(), 9 * 12);
    EXPECT_EQ(j["prefix_cache_hit_rate"], 0.0);    // fresh random prompts, reported by usage
    EXPECT_TRUE(j["tokens_per_joule"].is_null());  // the server has no meter
    EXPECT_GT(j["ttft_s"]["p50"].get<double>(), 0);
    EXPECT_EQ(j["config"]["target_kind"], c.name == "grpc" ? "grpc" : "http");
  }
  // Agentic over gRPC: the server's prefix cache serves the shared history.
  const std::string out = OutDir("serve_agentic");
  const auto r = Bench({"--target", "grpc://" + server.grpc(), "--model", Stories(), "--workload",
                        "agentic:system=96,turns=4-5,user_median=16,out_median=8,think=0.005",
                        "--concurrency", "2", "--requests", "12", "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(Report(out)["prefix_cache_hit_rate"].get<double>(), 0.3);
}

}  // namespace
}  // namespace tokenmill
