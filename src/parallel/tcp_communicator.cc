#include "tokenmill/parallel/tcp_communicator.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallel/collective_kind.h"
#include "parallel/tcp_socket.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

using Kind = parallel_internal::CollectiveKind;
constexpr auto KindName = parallel_internal::CollectiveKindName;

constexpr uint32_t kMagic = 0x4f434d54;  // "TMCO"
// What rank 0 hands out at the bootstrap: a rank of another protocol (an NCCL rendezvous
// on the same port, say) is refused instead of misreading collectives.
constexpr char kHello[] = "tokenmill tcp communicator v1";
constexpr size_t kRequestBytes = 40;  // magic, kind, root, 0, seq, count, payload bytes
constexpr size_t kReplyBytes = 24;    // magic, status code, seq, bytes
// Rank 0's last words to the others when the group breaks: best effort, never a wait.
constexpr absl::Duration kFarewellTimeout = absl::Seconds(1);
constexpr uint64_t kMaxErrorBytes = 1 << 16;
constexpr absl::Duration kDiagnosisGrace = absl::Seconds(2);

// One rank's call: the collective, its size (floats, or bytes for Broadcast), its root.
struct Request {
  Kind kind = Kind::kBarrier;
  int root = 0;
  uint64_t seq = 0;
  int64_t count = 0;
  int64_t payload_bytes = 0;  // what follows the header: the rank's contribution

  bool SameCall(const Request& o) const {
    return kind == o.kind && root == o.root && seq == o.seq && count == o.count;
  }
  std::string ToString() const {
    return absl::StrCat(KindName(kind), "(", count,
                        kind == Kind::kBroadcast ? absl::StrCat(", root ", root) : std::string(),
                        ") as collective #", seq);
  }
};

class TcpCommunicator final : public Communicator {
 public:
  // links[r]: rank 0 holds ranks 1..N-1's connections; rank r > 0 holds rank 0's at [0].
  TcpCommunicator(int rank, int world_size, absl::Duration timeout, std::vector<tcp::Fd> links)
      : rank_(rank), world_size_(world_size), timeout_(timeout), links_(std::move(links)) {
    if (rank_ == 0) slots_.resize(world_size_);
  }
  ~TcpCommunicator() override = default;  // closing the links tells the peers

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }
  absl::Status status() const override { return broken_; }

  absl::Status AllReduceSum(float* data, int64_t count) override {
    const Request req = Begin(Kind::kAllReduceSum, count, 0, count * int64_t{sizeof(float)});
    TM_RETURN_IF_ERROR(Check(req, count == 0 || data != nullptr));
    if (rank_ != 0) return Exchange(req, data, data, req.payload_bytes);
    TM_RETURN_IF_ERROR(GatherRequests(req));
    // The loopback's order, ((s0 + s1) + s2) + ...: the same bits as a loopback group.
    for (int r = 1; r < world_size_; ++r) {
      const float* src = slots_[r].data();
      for (int64_t i = 0; i < count; ++i) data[i] += src[i];
    }
    return ReplyAll(req, data, req.payload_bytes);
  }

  absl::Status AllGather(const float* send, int64_t count, float* recv) override {
    const int64_t bytes = count * int64_t{sizeof(float)};
    const Request req = Begin(Kind::kAllGather, count, 0, bytes);
    TM_RETURN_IF_ERROR(Check(req, count == 0 || (send != nullptr && recv != nullptr)));
    if (rank_ != 0) return Exchange(req, send, recv, world_size_ * bytes);
    TM_RETURN_IF_ERROR(GatherRequests(req));
    std::memmove(recv, send, bytes);  // send may be recv itself (in place)
    for (int r = 1; r < world_size_; ++r) std::memcpy(recv + r * count, slots_[r].data(), bytes);
    return ReplyAll(req, recv, world_size_ * bytes);
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    const Request req = Begin(Kind::kBroadcast, bytes, root, rank_ == root ? bytes : 0);
    if (root < 0 || root >= world_size_) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("tcp Broadcast: root ", root, " is not a rank of ", world_size_)));
    }
    TM_RETURN_IF_ERROR(Check(req, bytes == 0 || data != nullptr));
    if (rank_ != 0) return Exchange(req, data, data, bytes);
    TM_RETURN_IF_ERROR(GatherRequests(req));
    if (root != 0 && bytes > 0) std::memcpy(data, slots_[root].data(), bytes);
    return ReplyAll(req, data, bytes);
  }

  absl::Status Barrier() override {
    const Request req = Begin(Kind::kBarrier, 0, 0, 0);
    TM_RETURN_IF_ERROR(Check(req, true));
    if (rank_ != 0) return Exchange(req, nullptr, nullptr, 0);
    TM_RETURN_IF_ERROR(GatherRequests(req));
    return ReplyAll(req, nullptr, 0);
  }

 private:
  Request Begin(Kind kind, int64_t count, int root, int64_t payload_bytes) {
    return Request{kind, root, next_seq_++, count, payload_bytes};
  }

  // A rank that skipped a collective would leave the others waiting: bad arguments break
  // the group (closing the links), so every rank fails now.
  absl::Status Check(const Request& req, bool has_buffers) {
    if (!broken_.ok()) return broken_;
    if (req.count >= 0 && has_buffers) return absl::OkStatus();
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("tcp ", KindName(req.kind), " on rank ", rank_,
                                                ": count ", req.count, " or a null buffer")));
  }

  std::string Where(const Request& req) const {
    return absl::StrCat("tcp ", KindName(req.kind), " (collective #", req.seq, ") on rank ", rank_);
  }

  // Why the link to `peer` failed, in words an operator can act on.
  absl::Status LinkError(const Request& req, int peer, const absl::Status& s) const {
    if (absl::IsDeadlineExceeded(s)) {
      const absl::Duration waited = peer == 0 ? timeout_ + kDiagnosisGrace : timeout_;
      return absl::DeadlineExceededError(
          absl::StrCat(Where(req), ": waited ", absl::FormatDuration(waited), " for rank ", peer));
    }
    return absl::UnavailableError(absl::StrCat(Where(req), ": lost rank ", peer, " (",
                                               std::string(s.message()),
                                               "; did its process exit?)"));
  }

  // Rank > 0: sends the request and `payload`, then receives rank 0's verdict and
  // `result_bytes` of result into `result`.
  absl::Status Exchange(const Request& req, const void* payload, void* result,
                        int64_t result_bytes) {
    const int fd = links_[0].get();
    // Rank 0 waits `timeout` for the others and then says why; waiting a little longer
    // here hears that diagnosis instead of timing out alongside it.
    const absl::Time deadline = absl::Now() + timeout_ + kDiagnosisGrace;
    char header[kRequestBytes] = {};
    tcp::PutU32(kMagic, header);
    tcp::PutU32(static_cast<uint32_t>(req.kind), header + 4);
    tcp::PutU32(static_cast<uint32_t>(req.root), header + 8);
    tcp::PutU64(req.seq, header + 16);
    tcp::PutU64(static_cast<uint64_t>(req.count), header + 24);
    tcp::PutU64(static_cast<uint64_t>(req.payload_bytes), header + 32);
    absl::Status s = tcp::SendAll(fd, header, sizeof(header), deadline);
    if (s.ok() && req.payload_bytes > 0) {
      s = tcp::SendAll(fd, payload, static_cast<size_t>(req.payload_bytes), deadline);
    }
    // A failed send may still find rank 0's diagnosis waiting to be read.
    const absl::Status sent = s;
    char reply[kReplyBytes];
    const absl::Time reply_deadline = s.ok() ? deadline : absl::Now() + kFarewellTimeout;
    s = tcp::RecvAll(fd, reply, sizeof(reply), reply_deadline);
    if (!s.ok() || (!sent.ok() && tcp::GetU32(reply + 4) == 0)) {
      return Fail(LinkError(req, 0, sent.ok() ? s : sent));
    }
    const uint32_t code = tcp::GetU32(reply + 4);
    const uint64_t seq = tcp::GetU64(reply + 8), bytes = tcp::GetU64(reply + 16);
    // An error reply may answer any collective (rank 0 broke the group while this rank
    // was on its way); a result must answer this one.
    const bool garbled = tcp::GetU32(reply) != kMagic ||
                         (code == 0 && (seq != req.seq || bytes != uint64_t(result_bytes))) ||
                         (code != 0 && bytes > kMaxErrorBytes);
    if (garbled) {
      return Fail(absl::DataLossError(absl::StrCat(Where(req), ": garbled reply from rank 0")));
    }
    if (code != 0) {
      std::string why(bytes, '\0');
      s = tcp::RecvAll(fd, why.data(), why.size(), deadline);
      return Fail(absl::Status(static_cast<absl::StatusCode>(code),
                               s.ok() ? why : std::string("rank 0 broke the group")));
    }
    s = tcp::RecvAll(fd, result, static_cast<size_t>(result_bytes), deadline);
    if (!s.ok()) return Fail(LinkError(req, 0, s));
    return absl::OkStatus();
  }

  // Rank 0: receives ranks 1..N-1's requests for `mine`, in rank order, their payloads into
  // slots_. Every rank must call the same collective.
  absl::Status GatherRequests(const Request& mine) {
    const absl::Time deadline = absl::Now() + timeout_;
    for (int r = 1; r < world_size_; ++r) {
      const int fd = links_[r].get();
      char header[kRequestBytes];
      absl::Status s = tcp::RecvAll(fd, header, sizeof(header), deadline);
      if (!s.ok()) return Fail(LinkError(mine, r, s));
      Request theirs;
      theirs.kind = static_cast<Kind>(tcp::GetU32(header + 4));
      theirs.root = static_cast<int>(tcp::GetU32(header + 8));
      theirs.seq = tcp::GetU64(header + 16);
      theirs.count = static_cast<int64_t>(tcp::GetU64(header + 24));
      theirs.payload_bytes = static_cast<int64_t>(tcp::GetU64(header + 32));
      const int64_t expected = ExpectedPayload(mine, r);
      if (tcp::GetU32(header) != kMagic || !mine.SameCall(theirs) ||
          theirs.payload_bytes != expected) {
        return Fail(
            absl::InternalError(absl::StrCat("tcp ranks disagree: rank 0 called ", mine.ToString(),
                                             ", rank ", r, " called ", theirs.ToString())));
      }
      std::vector<float>& slot = slots_[r];
      slot.resize((static_cast<size_t>(expected) + sizeof(float) - 1) / sizeof(float));
      s = tcp::RecvAll(fd, slot.data(), static_cast<size_t>(expected), deadline);
      if (!s.ok()) return Fail(LinkError(mine, r, s));
    }
    return absl::OkStatus();
  }

  int64_t ExpectedPayload(const Request& mine, int r) const {
    switch (mine.kind) {
      case Kind::kAllReduceSum:
      case Kind::kAllGather:
        return mine.count * int64_t{sizeof(float)};
      case Kind::kBroadcast:
        return r == mine.root ? mine.count : 0;
      case Kind::kBarrier:
        return 0;
    }
    return 0;
  }

  // Rank 0: sends every rank > 0 the result.
  absl::Status ReplyAll(const Request& req, const void* result, int64_t bytes) {
    const absl::Time deadline = absl::Now() + timeout_;
    for (int r = 1; r < world_size_; ++r) {
      absl::Status s = SendReply(links_[r].get(), req.seq, 0, result, bytes, deadline);
      if (!s.ok()) return Fail(LinkError(req, r, s));
    }
    return absl::OkStatus();
  }

  static absl::Status SendReply(int fd, uint64_t seq, uint32_t code, const void* body,
                                int64_t bytes, absl::Time deadline) {
    char header[kReplyBytes];
    tcp::PutU32(kMagic, header);
    tcp::PutU32(code, header + 4);
    tcp::PutU64(seq, header + 8);
    tcp::PutU64(static_cast<uint64_t>(bytes), header + 16);
    TM_RETURN_IF_ERROR(tcp::SendAll(fd, header, sizeof(header), deadline));
    if (bytes == 0) return absl::OkStatus();
    return tcp::SendAll(fd, body, static_cast<size_t>(bytes), deadline);
  }

  // Breaks the group for good. Rank 0 first tells every other rank why; then the links
  // close, so ranks still waiting fail at once rather than at their timeout.
  absl::Status Fail(const absl::Status& reason) {
    if (!broken_.ok()) return broken_;
    broken_ = reason;
    spdlog::error("{}", std::string(reason.message()));
    if (rank_ == 0) {
      const std::string why(reason.message());
      const absl::Time deadline = absl::Now() + kFarewellTimeout;
      for (int r = 1; r < world_size_; ++r) {
        if (links_[r].get() < 0) continue;
        (void)SendReply(links_[r].get(), next_seq_ - 1, static_cast<uint32_t>(reason.code()),
                        why.data(), static_cast<int64_t>(why.size()), deadline);
      }
    }
    for (tcp::Fd& link : links_) {
      // Closing a socket with unread bytes resets the connection, which can destroy the
      // farewell before the peer reads it: drain what has arrived first.
      char sink[4096];
      while (link.get() >= 0 && ::recv(link.get(), sink, sizeof(sink), MSG_DONTWAIT) > 0) {
      }
      link.reset();
    }
    return broken_;
  }

  const int rank_;
  const int world_size_;
  const absl::Duration timeout_;
  std::vector<tcp::Fd> links_;
  std::vector<std::vector<float>> slots_;  // rank 0: each rank's contribution
  uint64_t next_seq_ = 0;
  absl::Status broken_;
};

absl::Status CheckOptions(const TcpCommunicatorOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tcp communicator: rank ", o.rank, " is not in a world of ", o.world_size));
  }
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("tcp communicator: timeout must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> MakeTcpCommunicator(
    BootstrapServer& server, const TcpCommunicatorOptions& options) {
  TM_RETURN_IF_ERROR(CheckOptions(options));
  TM_CHECK(options.rank == 0, "only rank 0 serves the bootstrap");
  TM_ASSIGN_OR_RETURN(std::vector<int> fds, server.ServeAndKeep(options.world_size, kHello));
  std::vector<tcp::Fd> links;
  for (int fd : fds) links.emplace_back(fd);
  return std::unique_ptr<Communicator>(
      new TcpCommunicator(0, options.world_size, options.timeout, std::move(links)));
}

absl::StatusOr<std::unique_ptr<Communicator>> MakeTcpCommunicator(
    const TcpCommunicatorOptions& options) {
  TM_RETURN_IF_ERROR(CheckOptions(options));
  if (options.rank == 0) {
    TM_ASSIGN_OR_RETURN(std::unique_ptr<BootstrapServer> server,
                        BootstrapServer::Listen(options.bootstrap));
    return MakeTcpCommunicator(*server, options);
  }
  TM_ASSIGN_OR_RETURN(BootstrapConnection c,
                      ConnectBootstrap(options.bootstrap, options.rank, options.world_size));
  tcp::Fd link(c.fd);
  if (c.payload != kHello) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tcp communicator: rank 0 at ", options.bootstrap.address,
        " is not a tokenmill tcp communicator (another kind of rendezvous on that port?)"));
  }
  std::vector<tcp::Fd> links;
  links.push_back(std::move(link));
  return std::unique_ptr<Communicator>(
      new TcpCommunicator(options.rank, options.world_size, options.timeout, std::move(links)));
}

}  // namespace tokenmill
