// A small TCP rendezvous: rank 0 hands an opaque payload (NCCL's 128-byte unique id) to
// ranks 1..N-1, which may live in other processes or on other nodes. Used before
// ncclCommInitRank; plain POSIX sockets, no CUDA.
//
// Protocol (version 1, integers little-endian u32): a rank > 0 connects to rank 0's
// address and sends {"TMBS", version, world_size, rank}. Once all N-1 ranks have said hello,
// rank 0 answers each with {0, length, payload}; if a hello is inconsistent (other
// world_size, rank out of range or taken twice) it answers every peer {1, length, message}
// and fails, so all ranks fail with the same reason. Connections that do not start with
// the magic are dropped and ignored.
//
// Time bounds: everything is bounded by `timeout`; ranks > 0 retry the connection every
// `retry_interval` until then (rank 0 may start later than they do).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tokenmill {

struct BootstrapOptions {
  // "host:port" of rank 0. Host: a name, an IPv4 address or a bracketed IPv6 address
  // ("[::1]:29500"). Rank 0 listens on it (port 0: any free port, see BootstrapServer).
  std::string address;
  absl::Duration timeout = absl::Minutes(2);
  absl::Duration retry_interval = absl::Milliseconds(200);
};

struct HostPort {
  std::string host;
  int port = 0;
};
// INVALID_ARGUMENT naming `address` when it is not host:port with a port in [0, 65535].
absl::StatusOr<HostPort> ParseHostPort(std::string_view address);

// Rank 0's side. Listening starts in Listen(), so a caller may learn the port (port 0)
// before the peers connect. Not thread-safe; one Serve() per server.
class BootstrapServer {
 public:
  static absl::StatusOr<std::unique_ptr<BootstrapServer>> Listen(const BootstrapOptions& options);
  ~BootstrapServer();
  BootstrapServer(const BootstrapServer&) = delete;
  BootstrapServer& operator=(const BootstrapServer&) = delete;

  // The port actually bound.
  int port() const { return port_; }
  // Waits for ranks 1..world_size-1 and sends them `payload`. DEADLINE_EXCEEDED naming the
  // ranks still missing; INVALID_ARGUMENT for an inconsistent peer.
  absl::Status Serve(int world_size, const std::string& payload);
  // As Serve(), but keeps the connections open (the TCP communicator's links): element r
  // is rank r's connected socket (element 0 is -1), owned by the caller, who close()s it.
  absl::StatusOr<std::vector<int>> ServeAndKeep(int world_size, const std::string& payload);

 private:
  BootstrapServer(int fd, int port, const BootstrapOptions& options)
      : fd_(fd), port_(port), options_(options) {}
  absl::Status ServeImpl(int world_size, const std::string& payload, std::vector<int>* keep);
  int fd_;
  int port_;
  BootstrapOptions options_;
};

// A rank > 0's side: connects to options.address (retrying), says hello, returns the
// payload. UNAVAILABLE when rank 0 never answered within the timeout.
absl::StatusOr<std::string> FetchBootstrapPayload(const BootstrapOptions& options, int rank,
                                                  int world_size);

// As FetchBootstrapPayload, keeping the connection to rank 0 open: `fd` is a connected,
// non-blocking socket owned by the caller (who close()s it).
struct BootstrapConnection {
  int fd = -1;
  std::string payload;
};
absl::StatusOr<BootstrapConnection> ConnectBootstrap(const BootstrapOptions& options, int rank,
                                                     int world_size);

// Both sides in one call: rank 0 serves `payload` and returns it; other ranks fetch it.
absl::StatusOr<std::string> ExchangeBootstrapPayload(const BootstrapOptions& options, int rank,
                                                     int world_size, const std::string& payload);

}  // namespace tokenmill
