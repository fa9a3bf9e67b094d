#include "api/connection_watcher.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <vector>

namespace tokenmill {
namespace {

int PortOf(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

// The numeric host as httplib writes remote_addr (getnameinfo, NI_NUMERICHOST).
std::string HostOf(const sockaddr_storage& a, socklen_t len) {
  char host[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof(host), nullptr, 0,
                  NI_NUMERICHOST) != 0) {
    return "";
  }
  return host;
}

// Calls `fn(fd, peer, peer_len)` for each connected TCP socket of this process whose local
// port is `local_port`, until it returns false.
void ForEachConnection(int local_port,
                       const std::function<bool(int, const sockaddr_storage&, socklen_t)>& fn) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
        PortOf(local) != local_port) {
      continue;
    }
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      continue;  // the listening socket, or not connected
    }
    if (!fn(static_cast<int>(fd), peer, peer_len)) break;
  }
  closedir(dir);
}

}  // namespace

int FindConnectionSocket(int local_port, const std::string& remote_addr, int remote_port) {
  int found = -1;
  ForEachConnection(local_port, [&](int fd, const sockaddr_storage& peer, socklen_t len) {
    if (PortOf(peer) != remote_port || HostOf(peer, len) != remote_addr) return true;
    found = fd;
    return false;
  });
  return found;
}

int ShutdownConnections(int local_port) {
  int n = 0;
  ForEachConnection(local_port, [&](int fd, const sockaddr_storage&, socklen_t) {
    n += shutdown(fd, SHUT_RDWR) == 0;
    return true;
  });
  return n;
}

ConnectionWatcher::ConnectionWatcher(double poll_interval_s)
    : poll_ms_(std::max(1, static_cast<int>(poll_interval_s * 1000))) {
  thread_ = std::thread([this] { Run(); });
}

ConnectionWatcher::~ConnectionWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  thread_.join();
}

int ConnectionWatcher::Watch(int fd, std::function<void()> on_gone) {
  std::lock_guard<std::mutex> lock(mu_);
  const int id = next_id_++;
  entries_[id] = Entry{fd, std::move(on_gone)};
  return id;
}

void ConnectionWatcher::Unwatch(int id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.erase(id);
  }
  // A callback picked before the erase may be running: wait for it.
  std::lock_guard<std::mutex> wait(callback_mu_);
}

void ConnectionWatcher::Run() {
  std::vector<pollfd> fds;
  std::vector<int> ids;
  for (;;) {
    fds.clear();
    ids.clear();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      for (const auto& [id, e] : entries_) {
        // Only hang-ups: asking for POLLIN would spin on a pipelined next request.
        fds.push_back(pollfd{e.fd, POLLRDHUP, 0});
        ids.push_back(id);
      }
    }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms_));
      continue;
    }
    if (poll(fds.data(), fds.size(), poll_ms_) <= 0) continue;
    std::lock_guard<std::mutex> running(callback_mu_);
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0) continue;
      std::function<void()> fn;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = entries_.find(ids[i]);
        if (it == entries_.end()) continue;
        fn = std::move(it->second.on_gone);
        entries_.erase(it);
      }
      if (fn) fn();
    }
  }
}

ScopedWatch::ScopedWatch(ConnectionWatcher& watcher, int fd, std::function<void()> on_gone)
    : watcher_(watcher) {
  if (fd >= 0) id_ = watcher_.Watch(fd, std::move(on_gone));
}

ScopedWatch::~ScopedWatch() {
  if (id_ >= 0) watcher_.Unwatch(id_);
}

}  // namespace tokenmill
