// Tensor parallelism over processes, through the binary: a leader (`generate` or `serve`
// with --tensor-parallel 2 --bootstrap 127.0.0.1:0) and a `tokenmill worker` for rank 1,
// on the CPU backend with the TCP communicator. The ids equal one rank's, a served request
// works, and whichever process dies, the other exits non-zero with a clear message
// instead of hanging.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

using json = nlohmann::json;

std::string Stories() { return testing::TestdataPath("models/stories260K/stories260K.gguf"); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// `tokenmill <args>` in the background, its stdout and stderr in files.
class Process {
 public:
  explicit Process(std::vector<std::string> args) {
    static int counter = 0;
    const std::string base =
        ::testing::TempDir() + "/mp_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
    out_path_ = base + ".out";
    err_path_ = base + ".err";
    args.insert(args.begin(), testing::TokenmillBinary());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Opened before fork(): the test has threads, the child makes only async-safe calls.
    const int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out, 1);
      dup2(err, 2);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out);
    close(err);
  }
  ~Process() {
    if (Running()) {
      kill(pid_, SIGKILL);
      WaitExit(10);
    }
  }

  std::string Out() const { return ReadFile(out_path_); }
  std::string Err() const { return ReadFile(err_path_); }
  void Signal(int sig) { kill(pid_, sig); }

  bool Running() {
    if (exit_code_ >= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  // The exit code, 128 + signal when killed, -1 if still running after `timeout_s`.
  int WaitExit(double timeout_s) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (Running() && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return exit_code_;
  }
  // Waits until stderr matches `re` (first group returned); "" when the process exits or
  // the time runs out first.
  std::string WaitForLog(const std::string& re, double timeout_s = 60) {
    const std::regex pattern(re);
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < end) {
      const std::string log = Err();
      std::smatch m;
      if (std::regex_search(log, m, pattern)) return m.size() > 1 ? m[1].str() : m[0].str();
      if (!Running()) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return "";
  }

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string out_path_, err_path_;
};

// The leader's bootstrap port, from its log.
std::string LeaderPort(Process& leader) {
  return leader.WaitForLog(R"(tensor-parallel leader listening on \S+ \(port (\d+)\))");
}

std::unique_ptr<Process> StartWorker(const std::string& model, const std::string& port) {
  return std::make_unique<Process>(std::vector<std::string>{
      "worker", "--model", model, "--rank", "1", "--tensor-parallel", "2", "--bootstrap",
      "127.0.0.1:" + port, "--threads", "1", "--join-timeout-s", "30"});
}

std::vector<std::string> GenerateArgs(const std::string& prompt, int max_tokens) {
  return {"generate", "--model",      Stories(),
          "--prompt", prompt,         "--temperature",
          "0",        "--max-tokens", std::to_string(max_tokens),
          "--output", "json",         "--kv-cache-blocks",
          "64",       "--threads",    "1"};
}

// A JSON POST over a plain socket; the response's body ("" on failure).
std::string HttpPost(int port, const std::string& path, const std::string& body) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                              "Content-Type: application/json\r\nConnection: close\r\n" +
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, n);
  close(fd);
  const size_t split = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.1 200", 0) != 0 || split == std::string::npos) return "";
  return response.substr(split + 4);
}

class MultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf"); }
};

TEST_F(MultiProcessTest, GenerateWithAWorkerProcessGivesTheIdsOfOneRank) {
  for (const char* prompt : {"Once upon a time", "The little dog"}) {
    SCOPED_TRACE(prompt);
    const testing::CommandResult one = testing::RunCommand([&] {
      std::vector<std::string> a = GenerateArgs(prompt, 32);
      a.insert(a.begin(), testing::TokenmillBinary());
      return a;
    }());
    ASSERT_EQ(one.exit_code, 0) << one.err;
    std::vector<std::string> args = GenerateArgs(prompt, 32);
    args.insert(args.end(), {"--tensor-parallel", "2", "--bootstrap", "127.0.0.1:0"});
    Process leader(args);
    const std::string port = LeaderPort(leader);
    ASSERT_FALSE(port.empty()) << leader.Err();
    auto worker = StartWorker(Stories(), port);
    ASSERT_EQ(leader.WaitExit(120), 0) << leader.Err() << "\nworker:\n" << worker->Err();
    // The leader ended the group: the worker exits cleanly.
    EXPECT_EQ(worker->WaitExit(30), 0) << worker->Err();
    EXPECT_NE(worker->Err().find("the leader stopped the group"), std::string::npos);
    EXPECT_NE(leader.Err().find("x2 ranks in 2 processes"), std::string::npos) << leader.Err();
    const json a = json::parse(testing::LastLine(one.out));
    const json b = json::parse(testing::LastLine(leader.Out()));
    EXPECT_EQ(b["ids"], a["ids"]);
    EXPECT_EQ(b["ids"].size(), 32u);
  }
}

// A served request works; then the worker dies and the daemon exits non-zero.
TEST_F(MultiProcessTest, ServeWithAWorkerAnswersAndExitsWhenTheWorkerDies) {
  Process leader({"serve", "--model", Stories(), "--tensor-parallel", "2", "--bootstrap",
                  "127.0.0.1:0", "--grpc-port", "0", "--http-port", "0", "--threads", "1",
                  "--kv-cache-blocks", "64", "--max-num-seqs", "8"});
  const std::string port = LeaderPort(leader);
  ASSERT_FALSE(port.empty()) << leader.Err();
  auto worker = StartWorker(Stories(), port);
  const std::string http = leader.WaitForLog(R"(listening grpc=\S+ http=\S+:(\d+))");
  ASSERT_FALSE(http.empty()) << leader.Err() << "\nworker:\n" << worker->Err();
  const std::string body = HttpPost(
      std::stoi(http), "/v1/completions",
      R"({"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0})");
  ASSERT_FALSE(body.empty()) << leader.Err();
  const json got = json::parse(body);
  const testing::CommandResult one = testing::RunCommand([&] {
    std::vector<std::string> a = GenerateArgs("Once upon a time", 16);
    a.insert(a.begin(), testing::TokenmillBinary());
    return a;
  }());
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(got["choices"][0]["text"], json::parse(testing::LastLine(one.out))["text"]) << body;

  worker->Signal(SIGKILL);
  // Idle, the leader's heartbeat notices within about a second; it drains and exits 1.
  EXPECT_EQ(leader.WaitExit(30), 1) << leader.Err();
  EXPECT_NE(leader.Err().find("tensor-parallel group lost"), std::string::npos) << leader.Err();
  EXPECT_NE(leader.Err().find("lost rank 1"), std::string::npos) << leader.Err();
}

TEST_F(MultiProcessTest, WorkerExitsNonZeroWhenTheLeaderDies) {
  Process leader({"serve", "--model", Stories(), "--tensor-parallel", "2", "--bootstrap",
                  "127.0.0.1:0", "--grpc-port", "0", "--http-port", "0", "--threads", "1",
                  "--kv-cache-blocks", "64"});
  const std::string port = LeaderPort(leader);
  ASSERT_FALSE(port.empty()) << leader.Err();
  auto worker = StartWorker(Stories(), port);
  ASSERT_FALSE(leader.WaitForLog(R"(listening grpc=)").empty()) << leader.Err();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a heartbeat or two
  ASSERT_TRUE(worker->Running()) << worker->Err();
  leader.Signal(SIGKILL);
  EXPECT_EQ(worker->WaitExit(30), 1) << worker->Err();
  EXPECT_NE(worker->Err().find("lost rank 0"), std::string::npos) << worker->Err();
}

TEST_F(MultiProcessTest, AWorkerWithAnotherModelIsRefusedOnBothSides) {
  std::vector<std::string> args = GenerateArgs("Once upon a time", 4);
  args.insert(args.end(), {"--tensor-parallel", "2", "--bootstrap", "127.0.0.1:0"});
  Process leader(args);
  const std::string port = LeaderPort(leader);
  ASSERT_FALSE(port.empty()) << leader.Err();
  auto worker = StartWorker("demo", port);
  EXPECT_EQ(worker->WaitExit(60), 1) << worker->Err();
  EXPECT_NE(worker->Err().find("give every rank the same model"), std::string::npos)
      << worker->Err();
  EXPECT_EQ(leader.WaitExit(60), 2) << leader.Err();
  EXPECT_NE(leader.Err().find("rank(s) 1 could not match the leader's model"), std::string::npos)
      << leader.Err();
}

TEST_F(MultiProcessTest, BadWorkerFlagsAreStartUpErrors) {
  const testing::CommandResult rank0 =
      testing::RunCommand({testing::TokenmillBinary(), "worker", "--model", Stories(), "--rank",
                           "0", "--tensor-parallel", "2", "--bootstrap", "127.0.0.1:1"});
  EXPECT_EQ(rank0.exit_code, 2) << rank0.err;
  EXPECT_NE(rank0.err.find("--rank 0 must be in [1, 2)"), std::string::npos) << rank0.err;
  std::vector<std::string> one_rank = GenerateArgs("hi", 2);
  one_rank.insert(one_rank.begin(), testing::TokenmillBinary());
  one_rank.insert(one_rank.end(), {"--bootstrap", "127.0.0.1:0"});
  const testing::CommandResult r = testing::RunCommand(one_rank);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("needs --tensor-parallel >= 2"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tokenmill
