// Notices HTTP clients that go away while their request runs, so the engine request is
// cancelled at once (its KV blocks freed) instead of generating for nobody. cpp-httplib
// 0.11 does not expose a connection's socket or its closing, so the socket is found by its
// endpoints and polled for the peer's hang-up (POLLRDHUP) by one background thread.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"

namespace tokenmill {

// The descriptor of this process's TCP socket with these endpoints (as httplib reports them
// in Request::local_port / remote_addr / remote_port), or -1.
int FindConnectionSocket(int local_port, const std::string& remote_addr, int remote_port);

// shutdown(2)s every connected TCP socket of this process whose local port is `local_port`
// (not the listening socket), so threads blocked on idle keep-alive connections return at
// once. Returns how many. For a server that is stopping.
int ShutdownConnections(int local_port);

class ConnectionWatcher {
 public:
  explicit ConnectionWatcher(double poll_interval_s = 0.02);
  ~ConnectionWatcher();  // stops the thread
  ConnectionWatcher(const ConnectionWatcher&) = delete;
  ConnectionWatcher& operator=(const ConnectionWatcher&) = delete;

  // Calls `on_gone` once (on the watcher thread) when the peer of socket `fd` hangs up.
  // Returns an id for Unwatch. Requires: `fd` stays open until Unwatch returns.
  int Watch(int fd, std::function<void()> on_gone);
  // After it returns, `on_gone` of `id` is not running and will not run.
  void Unwatch(int id);

 private:
  struct Entry {
    int fd;
    std::function<void()> on_gone;
  };
  void Run();

  const int poll_ms_;
  std::mutex mu_;
  std::map<int, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::mutex callback_mu_;  // held while callbacks run, so Unwatch can wait them out
  std::thread thread_;
};

// Watches for as long as it lives (RAII over Watch/Unwatch); a no-op when fd < 0.
class ScopedWatch {
 public:
  ScopedWatch(ConnectionWatcher& watcher, int fd, std::function<void()> on_gone);
  ~ScopedWatch();
  ScopedWatch(const ScopedWatch&) = delete;
  ScopedWatch& operator=(const ScopedWatch&) = delete;

 private:
  ConnectionWatcher& watcher_;
  int id_ = -1;
};

}  // namespace tokenmill
