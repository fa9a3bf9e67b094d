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
#include "parallel/tcp_socket.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

using tcp::ErrnoText;
using tcp::Fd;
using tcp::GetU32;
using tcp::PutU32;

constexpr char kMagic[4] = {'T', 'M', 'B', 'S'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxMessageBytes = 1 << 20;
// A peer that connected must say hello quickly; a silent stray connection must not hold
// the rendezvous for the whole timeout.
constexpr absl::Duration kHelloTimeout = absl::Seconds(5);

// Socket errors say what failed; the bootstrap's say where it happened.
absl::Status Bootstrap(const absl::Status& s) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("bootstrap: ", std::string(s.message())));
}

// {code, length, bytes}: code 0 carries the payload, 1 an error message.
absl::Status SendReply(int fd, uint32_t code, const std::string& body, absl::Time deadline) {
  std::string msg(8, '\0');
  PutU32(code, msg.data());
  PutU32(static_cast<uint32_t>(body.size()), msg.data() + 4);
  msg += body;
  return Bootstrap(tcp::SendAll(fd, msg.data(), msg.size(), deadline));
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
  tcp::AddrInfoPtr owner(nullptr, ::freeaddrinfo);
  absl::StatusOr<std::vector<addrinfo*>> resolved = tcp::Resolve(hp, /*passive=*/true, &owner);
  if (!resolved.ok()) return Bootstrap(resolved.status());
  const std::vector<addrinfo*>& addrs = *resolved;
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
  return ServeImpl(world_size, payload, nullptr);
}

absl::StatusOr<std::vector<int>> BootstrapServer::ServeAndKeep(int world_size,
                                                               const std::string& payload) {
  std::vector<int> fds;
  TM_RETURN_IF_ERROR(ServeImpl(world_size, payload, &fds));
  return fds;
}

absl::Status BootstrapServer::ServeImpl(int world_size, const std::string& payload,
                                        std::vector<int>* keep) {
  if (world_size < 1) return absl::InvalidArgumentError("bootstrap: world_size must be >= 1");
  if (payload.size() > kMaxMessageBytes)
    return absl::InvalidArgumentError("bootstrap: payload too large");
  const absl::Time deadline = absl::Now() + options_.timeout;
  std::map<int, Fd> peers;   // rank -> connection, for consistent hellos
  std::vector<Fd> rejected;  // inconsistent hellos, told why before rank 0 fails
  absl::Status verdict;
  while (static_cast<int>(peers.size()) < world_size - 1 && verdict.ok()) {
    if (absl::Status s = tcp::WaitFd(fd_, POLLIN, deadline, "waiting for ranks"); !s.ok()) {
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
    if (!tcp::RecvAll(conn.get(), hello, sizeof(hello), hello_deadline).ok() ||
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
  if (verdict.ok() && keep != nullptr) {
    keep->assign(world_size, -1);
    for (auto& [rank, conn] : peers) {
      tcp::TuneConnection(conn.get());
      (*keep)[rank] = conn.release();
    }
  }
  return verdict;
}

absl::StatusOr<std::string> FetchBootstrapPayload(const BootstrapOptions& options, int rank,
                                                  int world_size) {
  TM_ASSIGN_OR_RETURN(BootstrapConnection c, ConnectBootstrap(options, rank, world_size));
  ::close(c.fd);
  return std::move(c.payload);
}

absl::StatusOr<BootstrapConnection> ConnectBootstrap(const BootstrapOptions& options, int rank,
                                                     int world_size) {
  if (rank < 1 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap: rank ", rank, " cannot fetch (world_size ", world_size, ")"));
  }
  TM_ASSIGN_OR_RETURN(const HostPort hp, ParseHostPort(options.address));
  const absl::Time deadline = absl::Now() + options.timeout;
  std::string last_error = "no attempt";
  for (;;) {
    tcp::AddrInfoPtr owner(nullptr, ::freeaddrinfo);
    absl::StatusOr<std::vector<addrinfo*>> addrs = tcp::Resolve(hp, /*passive=*/false, &owner);
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
        if (!tcp::WaitFd(fd.get(), POLLOUT, std::min(deadline, absl::Now() + absl::Seconds(5)),
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
      TM_RETURN_IF_ERROR(Bootstrap(tcp::SendAll(fd.get(), hello, sizeof(hello), deadline)));
      char header[8];
      TM_RETURN_IF_ERROR(Bootstrap(tcp::RecvAll(fd.get(), header, sizeof(header), deadline)));
      const uint32_t code = GetU32(header), length = GetU32(header + 4);
      if (length > kMaxMessageBytes) {
        return absl::DataLossError(absl::StrCat("bootstrap: rank 0 sent ", length, " bytes"));
      }
      std::string body(length, '\0');
      TM_RETURN_IF_ERROR(Bootstrap(tcp::RecvAll(fd.get(), body.data(), length, deadline)));
      if (code != 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("bootstrap: rank 0 refused rank ", rank, ": ", body));
      }
      tcp::TuneConnection(fd.get());
      return BootstrapConnection{fd.release(), std::move(body)};
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
