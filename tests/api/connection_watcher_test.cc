#include "api/connection_watcher.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

// A connected loopback TCP pair: the accepted (server) side and the client side.
struct TcpPair {
  int server = -1, client = -1, listen_port = 0, client_port = 0;
  TcpPair() {
    const int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(l, 1);
    socklen_t len = sizeof(a);
    getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
    listen_port = ntohs(a.sin_port);
    client = socket(AF_INET, SOCK_STREAM, 0);
    connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    server = accept(l, nullptr, nullptr);
    close(l);
    sockaddr_in c{};
    len = sizeof(c);
    getsockname(client, reinterpret_cast<sockaddr*>(&c), &len);
    client_port = ntohs(c.sin_port);
  }
  ~TcpPair() {
    if (server >= 0) close(server);
    if (client >= 0) close(client);
  }
};

bool Eventually(const std::atomic<bool>& flag) {
  for (int i = 0; i < 300 && !flag; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return flag;
}

TEST(ConnectionWatcherTest, FindsTheServerSideSocketByItsEndpoints) {
  TcpPair p;
  EXPECT_EQ(FindConnectionSocket(p.listen_port, "127.0.0.1", p.client_port), p.server);
  EXPECT_EQ(FindConnectionSocket(p.listen_port, "127.0.0.2", p.client_port), -1);
  EXPECT_EQ(FindConnectionSocket(p.listen_port, "127.0.0.1", p.client_port + 1), -1);
}

TEST(ConnectionWatcherTest, CallsBackWhenThePeerHangsUp) {
  ConnectionWatcher watcher(0.005);
  TcpPair p;
  std::atomic<bool> gone{false};
  ScopedWatch watch(watcher, p.server, [&] { gone = true; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(gone);  // alive: nothing happens, even with data waiting
  ASSERT_EQ(write(p.client, "x", 1), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(gone);
  close(p.client);
  p.client = -1;
  EXPECT_TRUE(Eventually(gone));
}

TEST(ConnectionWatcherTest, UnwatchedSocketsAreForgotten) {
  ConnectionWatcher watcher(0.005);
  TcpPair p;
  std::atomic<bool> gone{false};
  {
    ScopedWatch watch(watcher, p.server, [&] { gone = true; });
  }
  close(p.client);
  p.client = -1;
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_FALSE(gone);
  ScopedWatch none(watcher, -1, [&] { gone = true; });  // fd < 0: no-op
}

}  // namespace
}  // namespace tokenmill
