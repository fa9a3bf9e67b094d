#include "tokenmill/parallel/loopback.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallel/collective_kind.h"
#include "tokenmill/core/status.h"

namespace tokenmill {

namespace {

using Kind = parallel_internal::CollectiveKind;
constexpr auto KindName = parallel_internal::CollectiveKindName;

constexpr int kMaxWorldSize = 1024;

}  // namespace

// One rank's contribution to one collective. Written only by its rank, before it
// arrives; read by every rank after the round completes and before the rank arrives at
// the next round, which is what makes two buffers (round parity) enough.
struct Slot {
  Kind kind = Kind::kBarrier;
  int64_t count = 0;  // floats (AllReduceSum, AllGather) or bytes (Broadcast)
  int root = 0;
  std::vector<float> data;
};

struct LoopbackGroup::State {
  State(int n, absl::Duration t) : world_size(n), timeout(t), last_arrival(n, -1) {
    for (auto& s : slots) s.resize(n);
  }

  const int world_size;
  const absl::Duration timeout;
  std::vector<Slot> slots[2];  // [round parity][rank]

  // std::mutex rather than absl::Mutex: ThreadSanitizer sees through pthreads, while the
  // distribution's prebuilt absl carries no TSan annotations.
  std::mutex mu;
  std::condition_variable cv;
  int arrived[2] ABSL_GUARDED_BY(mu) = {0, 0};
  int64_t completed_round ABSL_GUARDED_BY(mu) = -1;
  std::vector<int64_t> last_arrival ABSL_GUARDED_BY(mu);  // per rank, for error messages
  absl::Status broken ABSL_GUARDED_BY(mu);

  void Break(const absl::Status& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (broken.ok()) broken = reason;
    cv.notify_all();
  }
  absl::Status Fail(const absl::Status& reason) {
    std::lock_guard<std::mutex> lock(mu);
    Break(reason);
    return reason;
  }
  absl::Status Status() {
    std::lock_guard<std::mutex> lock(mu);
    return broken;
  }

  // Marks `rank` as arrived at `round` and waits until every rank has.
  absl::Status ArriveAndWait(int rank, int64_t round, Kind kind) {
    std::unique_lock<std::mutex> lock(mu);
    if (!broken.ok()) return broken;
    last_arrival[rank] = round;
    const int p = static_cast<int>(round & 1);
    if (++arrived[p] == world_size) {
      arrived[p] = 0;
      completed_round = round;
      cv.notify_all();
      return absl::OkStatus();
    }
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    const bool done = cv.wait_until(lock, deadline, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return completed_round >= round || !broken.ok();
    });
    // A round that completed before the group broke still delivered its data.
    if (completed_round >= round) return absl::OkStatus();
    if (!done) {
      std::vector<int> missing;
      for (int r = 0; r < world_size; ++r) {
        if (last_arrival[r] < round) missing.push_back(r);
      }
      Break(absl::DeadlineExceededError(absl::StrCat(
          "loopback ", KindName(kind), " (collective #", round, "): rank ", rank, " waited ",
          absl::FormatDuration(timeout), " for rank(s) ", absl::StrJoin(missing, ", "))));
    }
    return broken;
  }

  // Every rank checks the same slots, so every rank reaches the same verdict.
  absl::Status CheckAgreement(int rank, int64_t round) {
    const std::vector<Slot>& s = slots[round & 1];
    const Slot& mine = s[rank];
    for (int r = 0; r < world_size; ++r) {
      if (s[r].kind == mine.kind && s[r].count == mine.count && s[r].root == mine.root) continue;
      absl::Status st = absl::InternalError(absl::StrCat(
          "loopback collective #", round, ": ranks disagree: rank ", rank, " called ",
          KindName(mine.kind), "(", mine.count, ", root ", mine.root, "), rank ", r, " called ",
          KindName(s[r].kind), "(", s[r].count, ", root ", s[r].root, ")"));
      return Fail(st);
    }
    return absl::OkStatus();
  }
};

namespace {

class LoopbackCommunicator final : public Communicator {
 public:
  LoopbackCommunicator(LoopbackGroup::State* state, int rank) : state_(state), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return state_->world_size; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }

  absl::Status AllReduceSum(float* data, int64_t count) override {
    TM_RETURN_IF_ERROR(CheckCount("AllReduceSum", count, data != nullptr));
    TM_ASSIGN_OR_RETURN(const std::vector<Slot>* slots,
                        Run(Kind::kAllReduceSum, count, 0, data, count * sizeof(float)));
    if (count == 0) return absl::OkStatus();
    // Fixed order ((s0 + s1) + s2) + ...: the same bits on every rank.
    const float* s0 = (*slots)[0].data.data();
    std::copy(s0, s0 + count, data);
    for (int r = 1; r < state_->world_size; ++r) {
      const float* src = (*slots)[r].data.data();
      for (int64_t i = 0; i < count; ++i) data[i] += src[i];
    }
    return absl::OkStatus();
  }

  absl::Status AllGather(const float* send, int64_t count, float* recv) override {
    TM_RETURN_IF_ERROR(CheckCount("AllGather", count, send != nullptr && recv != nullptr));
    TM_ASSIGN_OR_RETURN(const std::vector<Slot>* slots,
                        Run(Kind::kAllGather, count, 0, send, count * sizeof(float)));
    for (int r = 0; r < state_->world_size; ++r) {
      std::copy_n((*slots)[r].data.data(), count, recv + r * count);
    }
    return absl::OkStatus();
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    TM_RETURN_IF_ERROR(CheckCount("Broadcast", bytes, data != nullptr));
    if (root < 0 || root >= state_->world_size) {
      return state_->Fail(absl::InvalidArgumentError(absl::StrCat(
          "loopback Broadcast: root ", root, " is not a rank of ", state_->world_size)));
    }
    TM_ASSIGN_OR_RETURN(const std::vector<Slot>* slots,
                        Run(Kind::kBroadcast, bytes, root, rank_ == root ? data : nullptr,
                            rank_ == root ? bytes : 0));
    if (rank_ != root && bytes > 0) std::memcpy(data, (*slots)[root].data.data(), bytes);
    return absl::OkStatus();
  }

  absl::Status Barrier() override { return Run(Kind::kBarrier, 0, 0, nullptr, 0).status(); }

  absl::Status status() const override { return state_->Status(); }

 private:
  // A rank that skips a collective would leave the others waiting: bad arguments break
  // the group so that every rank fails now.
  absl::Status CheckCount(const char* what, int64_t count, bool has_buffers) {
    if (count >= 0 && (count == 0 || has_buffers)) return absl::OkStatus();
    return state_->Fail(absl::InvalidArgumentError(absl::StrCat(
        "loopback ", what, " on rank ", rank_, ": count ", count, " or a null buffer")));
  }

  // Publishes this rank's contribution (`bytes` at `src`, copied into its staging slot),
  // waits for every rank and checks they called the same collective. Returns the round's
  // slots, readable until this rank's next collective.
  absl::StatusOr<const std::vector<Slot>*> Run(Kind kind, int64_t count, int root, const void* src,
                                               int64_t bytes) {
    // Writing the slot is safe only while the group works: a completed previous round
    // proves every rank has finished reading this parity's slots, a failed one does not.
    TM_RETURN_IF_ERROR(state_->Status());
    const int64_t round = next_round_++;
    std::vector<Slot>& slots = state_->slots[round & 1];
    Slot& mine = slots[rank_];
    mine.kind = kind;
    mine.count = count;
    mine.root = root;
    if (bytes > 0) {
      const size_t floats = (static_cast<size_t>(bytes) + sizeof(float) - 1) / sizeof(float);
      if (mine.data.size() < floats) mine.data.resize(floats);
      std::memcpy(mine.data.data(), src, bytes);
    }
    TM_RETURN_IF_ERROR(state_->ArriveAndWait(rank_, round, kind));
    TM_RETURN_IF_ERROR(state_->CheckAgreement(rank_, round));
    return &slots;
  }

  LoopbackGroup::State* state_;
  const int rank_;
  int64_t next_round_ = 0;  // this rank's collectives so far; round k uses parity k & 1
};

}  // namespace

LoopbackGroup::LoopbackGroup(const LoopbackOptions& options)
    : state_(std::make_unique<State>(options.world_size, options.timeout)) {
  for (int r = 0; r < options.world_size; ++r) {
    ranks_.push_back(std::make_unique<LoopbackCommunicator>(state_.get(), r));
  }
}

LoopbackGroup::~LoopbackGroup() = default;

absl::StatusOr<std::unique_ptr<LoopbackGroup>> LoopbackGroup::Create(
    const LoopbackOptions& options) {
  if (options.world_size < 1 || options.world_size > kMaxWorldSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loopback group: world_size ", options.world_size, " is not in [1, ", kMaxWorldSize, "]"));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("loopback group: timeout must be positive");
  }
  return std::unique_ptr<LoopbackGroup>(new LoopbackGroup(options));
}

int LoopbackGroup::world_size() const { return state_->world_size; }

Communicator* LoopbackGroup::rank(int r) {
  TM_CHECK(r >= 0 && r < state_->world_size, "rank ", r, " of ", state_->world_size);
  return ranks_[r].get();
}

void LoopbackGroup::Abort(const absl::Status& reason) {
  TM_CHECK(!reason.ok(), "Abort needs a reason");
  (void)state_->Fail(reason);
}

absl::Status LoopbackGroup::status() const { return state_->Status(); }

}  // namespace tokenmill
