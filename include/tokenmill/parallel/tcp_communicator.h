// TCP ranks: host-memory collectives between processes, on one machine or several. The
// host twin of NCCL across processes, and what a CPU-backend worker process uses
// (`tokenmill worker`, docs/parallel.md).
//
// A star through rank 0: ranks join over the TCP bootstrap (tcp_bootstrap.h) and keep the
// connection. In every collective each rank > 0 sends its contribution with a header
// (kind, sequence number, count, root) to rank 0; rank 0 checks that all ranks called the
// same collective, combines in rank order 0..N-1 exactly as LoopbackGroup does (so the
// results are bit for bit the loopback's, on every rank) and sends the result back.
// Traffic: 2 x (N-1) x the buffer through rank 0, fine for a few ranks; NCCL is for speed.
//
// Failures (Communicator's contract): a rank that closed its connection (its process
// ended) is UNAVAILABLE at once, a silent one DEADLINE_EXCEEDED after `timeout`, ranks
// that disagree INTERNAL. Rank 0 tells every other rank why before it closes the links,
// and a rank that fails closes its link, so the whole group fails together, never hangs.
// Thread-safety: one thread drives a communicator at a time.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokenmill/parallel/communicator.h"
#include "tokenmill/parallel/tcp_bootstrap.h"

namespace tokenmill {

struct TcpCommunicatorOptions {
  int rank = 0;
  int world_size = 1;
  // Rank 0's "host:port" (it listens there; the others connect). bootstrap.timeout bounds
  // joining: how long rank 0 waits for the others, and the others retry.
  BootstrapOptions bootstrap;
  // Longest rank 0 waits inside one collective for the others (ranks > 0 wait 2 s more,
  // so that they hear rank 0's diagnosis rather than time out alongside it).
  absl::Duration timeout = absl::Minutes(5);
};

// Rank 0 listens on options.bootstrap.address and waits until every rank joined; ranks
// > 0 connect (retrying until bootstrap.timeout). Errors as the bootstrap's.
absl::StatusOr<std::unique_ptr<Communicator>> MakeTcpCommunicator(
    const TcpCommunicatorOptions& options);

// Rank 0 on a server already listening (so a caller with port 0 can learn the port
// first). Requires: options.rank == 0.
absl::StatusOr<std::unique_ptr<Communicator>> MakeTcpCommunicator(
    BootstrapServer& server, const TcpCommunicatorOptions& options);

}  // namespace tokenmill
