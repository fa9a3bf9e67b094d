// Debian's real Prometheus server scrapes a running tokenmill and answers a query for a
// tokenmill metric through its HTTP API (issue 6). Skipped, with the reason, when the
// `prometheus` binary is not installed.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>

#include "e2e/e2e_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tokenmill::e2e {
namespace {

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string FindPrometheus() {
  for (const char* p : {"/usr/bin/prometheus", "/usr/local/bin/prometheus"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

TEST(PrometheusTest, ScrapesTokenmillAndAnswersAQuery) {
  const std::string prometheus = FindPrometheus();
  if (prometheus.empty()) {
    GTEST_SKIP() << "Debian's prometheus package is not installed (apt-get install prometheus; "
                    "scripts/setup.sh tries to)";
  }
  auto server = ServerProcess::Start({"--model", "demo"});
  ASSERT_NE(server, nullptr);
  auto http = MakeHttpClient(*server);
  const auto done = http->Post(
      "/v1/completions", R"({"model":"demo","prompt":"hello","max_tokens":4})", "application/json");
  ASSERT_TRUE(done && done->status == 200);

  TempDir dir;
  const int port = FreePort();
  const std::string config =
      dir.WriteFile("prometheus.yml",
                    "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tokenmill\n"
                    "    static_configs:\n      - targets: ['" +
                        server->http_host() + ":" + std::to_string(server->http_port()) + "']\n");
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port);
    const std::string storage = "--storage.tsdb.path=" + dir.path() + "/data";
    const std::string cfg = "--config.file=" + config;
    freopen((dir.path() + "/prometheus.log").c_str(), "w", stderr);
    execl(prometheus.c_str(), prometheus.c_str(), cfg.c_str(), storage.c_str(), listen.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  httplib::Client prom("127.0.0.1", port);
  nlohmann::json answer;
  const bool found = PollUntil(
      [&] {
        auto r = prom.Get("/api/v1/query?query=tokenmill%3Aprompt_tokens_total");
        if (!r || r->status != 200) return false;
        answer = nlohmann::json::parse(r->body, nullptr, false);
        return answer.is_object() && answer["status"] == "success" &&
               !answer["data"]["result"].empty();
      },
      60);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(found) << "Prometheus never returned tokenmill:prompt_tokens_total: "
                     << answer.dump();
  const auto& sample = answer["data"]["result"][0];
  EXPECT_EQ(sample["metric"]["__name__"], "tokenmill:prompt_tokens_total");
  EXPECT_GT(std::stod(sample["value"][1].get<std::string>()), 0.0);
}

}  // namespace
}  // namespace tokenmill::e2e
