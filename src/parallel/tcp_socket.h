// Socket plumbing shared by the TCP bootstrap and the TCP communicator (private to
// parallel/): an owning fd, deadline-bounded send/receive on non-blocking sockets, and
// little-endian integers. Errors are Statuses that say what was being done.
#pragma once

#include <netdb.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokenmill/parallel/tcp_bootstrap.h"

namespace tokenmill::tcp {

// Owns a socket.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset();

 private:
  int fd_;
};

std::string ErrnoText(int err);

// Waits until `fd` is ready for `events`; DEADLINE_EXCEEDED ("<prefix>: timed out <what>")
// past `deadline`.
absl::Status WaitFd(int fd, short events, absl::Time deadline, const char* what);

// Sends / receives exactly `n` bytes before `deadline`. A peer that closed the connection
// is UNAVAILABLE ("connection closed by the other side").
absl::Status SendAll(int fd, const void* data, size_t n, absl::Time deadline);
absl::Status RecvAll(int fd, void* data, size_t n, absl::Time deadline);

void PutU32(uint32_t v, char* out);
uint32_t GetU32(const char* in);
void PutU64(uint64_t v, char* out);
uint64_t GetU64(const char* in);

using AddrInfoPtr = std::unique_ptr<addrinfo, void (*)(addrinfo*)>;
// The addresses of `hp`, owned by *owner.
absl::StatusOr<std::vector<addrinfo*>> Resolve(const HostPort& hp, bool passive,
                                               AddrInfoPtr* owner);

// Low latency for small collectives, and keepalive so a peer on a dead node is noticed.
void TuneConnection(int fd);

}  // namespace tokenmill::tcp
