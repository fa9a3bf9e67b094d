#include "server/signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "spdlog/spdlog.h"

namespace tokenmill {
namespace {

sigset_t WatchedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR2);  // only the destructor sends it, to stop the watcher
  return set;
}

}  // namespace

std::unique_ptr<ShutdownSignals> ShutdownSignals::Install() {
  // A client that hangs up mid-write must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  const sigset_t set = WatchedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::unique_ptr<ShutdownSignals> s(new ShutdownSignals());
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

ShutdownSignals::~ShutdownSignals() {
  pthread_kill(thread_.native_handle(), SIGUSR2);
  thread_.join();
}

void ShutdownSignals::Run() {
  const sigset_t set = WatchedSignals();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR2) return;
    int expected = 0;
    if (first_.compare_exchange_strong(expected, sig)) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_all();
      continue;
    }
    // Second signal: the operator wants out now. Skip destructors (threads may be busy).
    spdlog::warn("received {} again: exiting at once", strsignal(sig));
    spdlog::default_logger()->flush();
    _exit(128 + sig);
  }
}

int ShutdownSignals::WaitForFirst() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return first_.load() != 0; });
  return first_.load();
}

}  // namespace tokenmill
