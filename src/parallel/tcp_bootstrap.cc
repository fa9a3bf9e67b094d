#include "tokenmill/parallel/tcp_bootstrap.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

constexpr char kMagic[4] = {'T', 'M', 'B', 'S'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxMessageBytes = 1 << 20;
// A peer that connected must say hello quickly; a silent stray connection must not hold
// the rendezvous for the whole timeout.
constexpr absl::Duration kHelloTimeout = absl::Seconds(5);

std::string ErrnoText(int err) { return std::strerror(err); }

// Owns a socket.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

int RemainingMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

// Waits until `fd` is ready for `events`; DEADLINE_EXCEEDED past `deadline`.
absl::Status WaitFd(int fd, short events, absl::Time deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return absl::OkStatus();
    if (n == 0) return absl::DeadlineExceededError(absl::StrCat("bootstrap: timed out ", what));
    if (errno != EINTR)
      return absl::UnavailableError(absl::StrCat("bootstrap: poll: ", ErrnoText(errno)));
  }
}

absl::Status SendAll(int fd, const void* data, size_t n, absl::Time deadline) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k > 0) {
      p += k;
      n -= static_cast<size_t>(k);
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      TM_RETURN_IF_ERROR(WaitFd(fd, POLLOUT, deadline, "sending"));
    } else {
      return absl::UnavailableError(absl::StrCat("bootstrap: send: ", ErrnoText(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, void* data, size_t n, absl::Time deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k > 0) {
      p += k;
      n -= static_cast<size_t>(k);
    } else if (k == 0) {
      return absl::UnavailableError("bootstrap: connection closed by the other side");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      TM_RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline, "receiving"));
    } else {
      return absl::UnavailableError(absl::StrCat("bootstrap: recv: ", ErrnoText(errno)));
    }
  }
  return absl::OkStatus();
}

void PutU32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

// {code, length, bytes}: code 0 carries the payload, 1 an error message.
absl::Status SendReply(int fd, uint32_t code, const std::string& body, absl::Time deadline) {
  std::string msg(8, '\0');
  PutU32(code, msg.data());
  PutU32(static_cast<uint32_t>(body.size()), msg.data() + 4);
  msg += body;
  return SendAll(fd, msg.data(), msg.size(), deadline);
}

using AddrInfoPtr = std::unique_ptr<addrinfo, void (*)(addrinfo*)>;

// The addresses of `hp`, owned by *owner.
absl::StatusOr<std::vector<addrinfo*>> Resolve(const HostPort& hp, bool passive,
                                               AddrInfoPtr* owner) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp.port);
  const int rc =
      ::getaddrinfo(hp.host.empty() ? nullptr : hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("bootstrap: cannot resolve '", hp.host, "': ", ::gai_strerror(rc)));
  }
  owner->reset(res);
  std::vector<addrinfo*> out;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) out.push_back(a);
  return out;
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(std::string_view address) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("bootstrap address '", std::string(address),
                                                   "' is not host:port (IPv6: [addr]:port)"));
  };
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= address.size()) return bad();
  std::string_view host = address.substr(0, colon);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 2 || host.back() != ']') return bad();
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad();
  }
  int port = 0;
  if (!absl::SimpleAtoi(std::string(address.substr(colon + 1)), &port) || port < 0 ||
      port > 65535) {
    return bad();
  }
  return HostPort{std::string(host), port};
}

absl::StatusOr<std::unique_ptr<BootstrapServer>> BootstrapServer::Listen(
    const BootstrapOptions& options) {
  TM_ASSIGN_OR_RETURN(const HostPort hp, ParseHostPort(options.address));
  AddrInfoPtr owner(nullptr, ::freeaddrinfo);
  TM_ASSIGN_OR_RETURN(const std::vector<addrinfo*> addrs, Resolve(hp, /*passive=*/true, &owner));
  std::string last_error = "no address";
  for (const addrinfo* a : addrs) {
    Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (fd.get() < 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
    char port[16] = {};
    ::getnameinfo(reinterpret_cast<sockaddr*>(&bound), len, nullptr, 0, port, sizeof(port),
                  NI_NUMERICSERV);
    const int port_number = std::atoi(port);
    spdlog::debug("bootstrap: rank 0 listening on {} (port {})", options.address, port_number);
    return std::unique_ptr<BootstrapServer>(
        new BootstrapServer(fd.release(), port_number, options));
  }
  return absl::UnavailableError(
      absl::StrCat("bootstrap: rank 0 cannot listen on ", options.address, ": ", last_error));
}

BootstrapServer::~BootstrapServer() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status BootstrapServer::Serve(int world_size, const std::string& payload) {
  if (world_size < 1) return absl::InvalidArgumentError("bootstrap: world_size must be >= 1");
  if (payload.size() > kMaxMessageBytes)
    return absl::InvalidArgumentError("bootstrap: payload too large");
  const absl::Time deadline = absl::Now() + options_.timeout;
  std::map<int, Fd> peers;   // rank -> connection, for consistent hellos
  std::vector<Fd> rejected;  // inconsistent hellos, told why before rank 0 fails
  absl::Status verdict;
  while (static_cast<int>(peers.size()) < world_size - 1 && verdict.ok()) {
    if (absl::Status s = WaitFd(fd_, POLLIN, deadline, "waiting for ranks"); !s.ok()) {
      std::vector<int> missing;
      for (int r = 1; r < world_size; ++r) {
        if (!peers.contains(r)) missing.push_back(r);
      }
      verdict = absl::DeadlineExceededError(absl::StrCat(
          "bootstrap: rank 0 at ", options_.address, " waited ",
          absl::FormatDuration(options_.timeout), " for rank(s) ", absl::StrJoin(missing, ", ")));
      break;
    }
    Fd conn(::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (conn.get() < 0) continue;
    char hello[16];
    const absl::Time hello_deadline = std::min(deadline, absl::Now() + kHelloTimeout);
    if (!RecvAll(conn.get(), hello, sizeof(hello), hello_deadline).ok() ||
        std::memcmp(hello, kMagic, 4) != 0) {
      spdlog::warn("bootstrap: dropped a connection that did not say hello");
      continue;
    }
    const uint32_t version = GetU32(hello + 4), world = GetU32(hello + 8);
    const int rank = static_cast<int>(GetU32(hello + 12));
    if (version != kVersion) {
      verdict = absl::InvalidArgumentError(absl::StrCat(
          "bootstrap: a rank speaks protocol version ", version, ", rank 0 speaks ", kVersion));
    } else if (static_cast<int>(world) != world_size) {
      verdict = absl::InvalidArgumentError(absl::StrCat(
          "bootstrap: rank ", rank, " says world_size ", world, ", rank 0 says ", world_size));
    } else if (rank < 1 || rank >= world_size || peers.contains(rank)) {
      verdict = absl::InvalidArgumentError(
          absl::StrCat("bootstrap: rank ", rank, " is out of range or joined twice (world_size ",
                       world_size, ")"));
    }
    if (verdict.ok()) {
      peers[rank] = std::move(conn);
    } else {
      rejected.push_back(std::move(conn));
    }
  }
  for (Fd& conn : rejected) {
    (void)SendReply(conn.get(), 1, std::string(verdict.message()), deadline);
  }
  // Everyone connected hears the same outcome.
  for (auto& [rank, conn] : peers) {
    const absl::Status s = verdict.ok()
                               ? SendReply(conn.get(), 0, payload, deadline)
                               : SendReply(conn.get(), 1, std::string(verdict.message()), deadline);
    if (!s.ok() && verdict.ok()) {
      verdict = absl::UnavailableError(
          absl::StrCat("bootstrap: sending to rank ", rank, ": ", std::string(s.message())));
    }
  }
  return verdict;
}

absl::StatusOr<std::string> FetchBootstrapPayload(const BootstrapOptions& options, int rank,
                                                  int world_size) {
  if (rank < 1 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap: rank ", rank, " cannot fetch (world_size ", world_size, ")"));
  }
  TM_ASSIGN_OR_RETURN(const HostPort hp, ParseHostPort(options.address));
  const absl::Time deadline = absl::Now() + options.timeout;
  std::string last_error = "no attempt";
  for (;;) {
    AddrInfoPtr owner(nullptr, ::freeaddrinfo);
    absl::StatusOr<std::vector<addrinfo*>> addrs = Resolve(hp, /*passive=*/false, &owner);
    if (!addrs.ok()) last_error = std::string(addrs.status().message());
    for (const addrinfo* a : addrs.ok() ? *addrs : std::vector<addrinfo*>{}) {
      Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
      if (fd.get() < 0) {
        last_error = ErrnoText(errno);
        continue;
      }
      if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
          last_error = ErrnoText(errno);
          continue;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        if (!WaitFd(fd.get(), POLLOUT, std::min(deadline, absl::Now() + absl::Seconds(5)),
                    "connecting")
                 .ok() ||
            ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
          last_error = err != 0 ? ErrnoText(err) : "connect timed out";
          continue;
        }
      }
      // Connected: from here on a failure is final, not a reason to retry.
      char hello[16];
      std::memcpy(hello, kMagic, 4);
      PutU32(kVersion, hello + 4);
      PutU32(static_cast<uint32_t>(world_size), hello + 8);
      PutU32(static_cast<uint32_t>(rank), hello + 12);
      TM_RETURN_IF_ERROR(SendAll(fd.get(), hello, sizeof(hello), deadline));
      char header[8];
      TM_RETURN_IF_ERROR(RecvAll(fd.get(), header, sizeof(header), deadline));
      const uint32_t code = GetU32(header), length = GetU32(header + 4);
      if (length > kMaxMessageBytes) {
        return absl::DataLossError(absl::StrCat("bootstrap: rank 0 sent ", length, " bytes"));
      }
      std::string body(length, '\0');
      TM_RETURN_IF_ERROR(RecvAll(fd.get(), body.data(), length, deadline));
      if (code != 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("bootstrap: rank 0 refused rank ", rank, ": ", body));
      }
      return body;
    }
    if (absl::Now() + options.retry_interval >= deadline) break;
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(options.retry_interval));
  }
  return absl::UnavailableError(
      absl::StrCat("bootstrap: rank ", rank, " could not reach rank 0 at ", options.address,
                   " within ", absl::FormatDuration(options.timeout), ": ", last_error));
}

absl::StatusOr<std::string> ExchangeBootstrapPayload(const BootstrapOptions& options, int rank,
                                                     int world_size, const std::string& payload) {
  if (rank != 0) return FetchBootstrapPayload(options, rank, world_size);
  TM_ASSIGN_OR_RETURN(std::unique_ptr<BootstrapServer> server, BootstrapServer::Listen(options));
  TM_RETURN_IF_ERROR(server->Serve(world_size, payload));
  return payload;
}

}  // namespace tokenmill
