// The TCP bootstrap on 127.0.0.1: the payload reaches every rank, ranks that start before
// rank 0 retry, inconsistent ranks and missing ranks are clear errors on both sides, and
// strangers on the port are ignored.
#include "tokenmill/parallel/tcp_bootstrap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

// 128 bytes with NULs and high bytes, like an NCCL unique id.
std::string BinaryPayload() {
  std::string p(128, '\0');
  for (int i = 0; i < 128; ++i) p[i] = static_cast<char>((i * 73) & 0xff);
  return p;
}

std::unique_ptr<BootstrapServer> ListenAnyPort(absl::Duration timeout = absl::Seconds(20)) {
  auto server = BootstrapServer::Listen({.address = "127.0.0.1:0", .timeout = timeout});
  EXPECT_TRUE(server.ok()) << server.status();
  return std::move(server).value();
}

BootstrapOptions ClientOptions(int port, absl::Duration timeout = absl::Seconds(20)) {
  return {.address = "127.0.0.1:" + std::to_string(port),
          .timeout = timeout,
          .retry_interval = absl::Milliseconds(20)};
}

TEST(TcpBootstrapTest, ParsesHostAndPort) {
  auto a = ParseHostPort("node-0.cluster:29500");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "node-0.cluster");
  EXPECT_EQ(a->port, 29500);
  auto b = ParseHostPort("[fe80::1]:8");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "fe80::1");
  EXPECT_EQ(ParseHostPort(":0")->host, "");
  for (const char* bad : {"", "host", "host:", "host:70000", "host:-1", "fe80::1:80", "h:12x"}) {
    const auto s = ParseHostPort(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(TcpBootstrapTest, EveryRankReceivesRankZerosPayload) {
  constexpr int kWorld = 4;
  auto server = ListenAnyPort();
  const std::string payload = BinaryPayload();
  std::vector<absl::StatusOr<std::string>> got(kWorld, absl::UnknownError("not run"));
  std::vector<std::thread> peers;
  for (int r = 1; r < kWorld; ++r) {
    peers.emplace_back(
        [&, r] { got[r] = FetchBootstrapPayload(ClientOptions(server->port()), r, kWorld); });
  }
  EXPECT_TRUE(server->Serve(kWorld, payload).ok());
  for (std::thread& t : peers) t.join();
  for (int r = 1; r < kWorld; ++r) {
    ASSERT_TRUE(got[r].ok()) << got[r].status();
    EXPECT_EQ(*got[r], payload) << "rank " << r;
  }
}

TEST(TcpBootstrapTest, RanksThatStartBeforeRankZeroRetry) {
  // Learn a free port, release it, and let rank 0 bind it only after the peers started.
  int port = ListenAnyPort()->port();
  absl::StatusOr<std::string> got = absl::UnknownError("not run");
  std::thread peer([&] { got = FetchBootstrapPayload(ClientOptions(port), 1, 2); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const BootstrapOptions opts{.address = "127.0.0.1:" + std::to_string(port),
                              .timeout = absl::Seconds(20)};
  auto late = ExchangeBootstrapPayload(opts, 0, 2, "id");
  peer.join();
  ASSERT_TRUE(late.ok()) << late.status();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "id");
}

TEST(TcpBootstrapTest, AWorldSizeMismatchFailsBothSides) {
  auto server = ListenAnyPort();
  absl::StatusOr<std::string> got = absl::UnknownError("not run");
  std::thread peer([&] { got = FetchBootstrapPayload(ClientOptions(server->port()), 1, 3); });
  const absl::Status s = server->Serve(2, "id");
  peer.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("world_size 3"), std::string::npos) << s;
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition) << got.status();
  EXPECT_NE(got.status().message().find("world_size 3"), std::string::npos);
}

TEST(TcpBootstrapTest, AMissingRankTimesOutAndTheOthersHearWhy) {
  auto server = ListenAnyPort(absl::Milliseconds(300));
  absl::StatusOr<std::string> got = absl::UnknownError("not run");
  std::thread peer([&] { got = FetchBootstrapPayload(ClientOptions(server->port()), 1, 3); });
  const absl::Status s = server->Serve(3, "id");
  peer.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("rank(s) 2"), std::string::npos) << s;
  EXPECT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("rank(s) 2"), std::string::npos) << got.status();
}

TEST(TcpBootstrapTest, NoRankZeroIsUnavailableWithinTheTimeout) {
  const int port = ListenAnyPort()->port();  // closed again: nobody listens there
  const absl::Time start = absl::Now();
  auto got = FetchBootstrapPayload(ClientOptions(port, absl::Milliseconds(300)), 1, 2);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_NE(got.status().message().find(std::to_string(port)), std::string::npos);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(FetchBootstrapPayload(ClientOptions(port), 0, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TcpBootstrapTest, StrangersOnThePortAreIgnored) {
  auto server = ListenAnyPort();
  const int port = server->port();
  std::thread stranger([port] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      const char junk[] = "GET / HTTP/1.0\r\n\r\n";
      (void)::send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
    }
    ::close(fd);
  });
  stranger.join();
  absl::StatusOr<std::string> got = absl::UnknownError("not run");
  std::thread peer([&] { got = FetchBootstrapPayload(ClientOptions(port), 1, 2); });
  EXPECT_TRUE(server->Serve(2, "id").ok());
  peer.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "id");
}

TEST(TcpBootstrapTest, ASingleRankNeedsNobody) {
  auto got = ExchangeBootstrapPayload({.address = "127.0.0.1:0"}, 0, 1, "solo");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "solo");
}

}  // namespace
}  // namespace tokenmill
