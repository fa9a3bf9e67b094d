// Loopback collectives: results against a rank-order reference, bit-identical across
// ranks and runs, 1..8 ranks (more ranks than cores), mixed collectives over many rounds,
// and the failure paths (timeout, disagreement, abort) that must never hang.
#include "tokenmill/parallel/loopback.h"

#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

std::unique_ptr<LoopbackGroup> MakeGroup(int n, absl::Duration timeout = absl::Seconds(30)) {
  auto g = LoopbackGroup::Create({.world_size = n, .timeout = timeout});
  EXPECT_TRUE(g.ok()) << g.status();
  return std::move(g).value();
}

// Runs fn(rank) on one thread per rank and joins them.
void RunRanks(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

// Values spanning many magnitudes, so that a different summation order would change bits.
std::vector<float> RandomData(int seed, int64_t count) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-20, 20);
  std::vector<float> v(count);
  for (float& x : v) x = std::ldexp(mant(rng), exp(rng));
  return v;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<std::vector<float>> RunAllReduce(int n, int64_t count) {
  auto group = MakeGroup(n);
  std::vector<std::vector<float>> data(n);
  for (int r = 0; r < n; ++r) data[r] = RandomData(100 + r, count);
  RunRanks(n, [&](int r) {
    const absl::Status s = group->rank(r)->AllReduceSum(data[r].data(), count);
    EXPECT_TRUE(s.ok()) << s;
  });
  return data;
}

TEST(LoopbackTest, AllReduceSumIsTheRankOrderSumBitForBitOnEveryRank) {
  constexpr int64_t kCount = 1031;
  for (int n = 1; n <= 8; ++n) {
    SCOPED_TRACE(n);
    std::vector<float> want = RandomData(100, kCount);
    for (int r = 1; r < n; ++r) {
      const std::vector<float> x = RandomData(100 + r, kCount);
      for (int64_t i = 0; i < kCount; ++i) want[i] += x[i];
    }
    const std::vector<std::vector<float>> got = RunAllReduce(n, kCount);
    for (int r = 0; r < n; ++r) EXPECT_TRUE(SameBits(got[r], want)) << "rank " << r;
    // Another run, other thread timing: the same bits.
    EXPECT_TRUE(SameBits(RunAllReduce(n, kCount)[n - 1], want));
  }
}

TEST(LoopbackTest, AllGatherIsRankMajorAndMayRunInPlace) {
  constexpr int64_t kCount = 77;
  for (int n : {1, 2, 3, 8}) {
    SCOPED_TRACE(n);
    auto group = MakeGroup(n);
    std::vector<std::vector<float>> recv(n, std::vector<float>(n * kCount, -1.0f));
    std::vector<std::vector<float>> in_place(n, std::vector<float>(n * kCount, -1.0f));
    RunRanks(n, [&](int r) {
      const std::vector<float> mine = RandomData(r, kCount);
      EXPECT_TRUE(group->rank(r)->AllGather(mine.data(), kCount, recv[r].data()).ok());
      std::copy(mine.begin(), mine.end(), in_place[r].begin() + r * kCount);
      const float* send = in_place[r].data() + r * kCount;
      EXPECT_TRUE(group->rank(r)->AllGather(send, kCount, in_place[r].data()).ok());
    });
    std::vector<float> want;
    for (int r = 0; r < n; ++r) {
      const std::vector<float> x = RandomData(r, kCount);
      want.insert(want.end(), x.begin(), x.end());
    }
    for (int r = 0; r < n; ++r) {
      EXPECT_TRUE(SameBits(recv[r], want)) << "rank " << r;
      EXPECT_TRUE(SameBits(in_place[r], want)) << "rank " << r << " in place";
    }
  }
}

TEST(LoopbackTest, BroadcastCopiesTheRootsBytesFromEveryRoot) {
  constexpr int kRanks = 4;
  constexpr int kBytes = 13;  // not a whole number of floats
  auto group = MakeGroup(kRanks);
  for (int root = 0; root < kRanks; ++root) {
    std::vector<std::string> buf(kRanks);
    for (int r = 0; r < kRanks; ++r) buf[r] = std::string(kBytes, static_cast<char>('a' + r));
    RunRanks(kRanks, [&](int r) {
      EXPECT_TRUE(group->rank(r)->Broadcast(buf[r].data(), kBytes, root).ok());
    });
    for (int r = 0; r < kRanks; ++r) {
      EXPECT_EQ(buf[r], std::string(kBytes, static_cast<char>('a' + root))) << root << " " << r;
    }
  }
}

TEST(LoopbackTest, ManyRoundsOfMixedCollectivesStayConsistent) {
  constexpr int kRanks = 4;
  constexpr int kRounds = 300;
  auto group = MakeGroup(kRanks);
  std::vector<std::vector<float>> sums(kRanks);
  std::vector<int> seen(kRanks * kRanks, 0);
  RunRanks(kRanks, [&](int r) {
    Communicator* c = group->rank(r);
    for (int i = 0; i < kRounds; ++i) {
      const int64_t count = 1 + (i * 37) % 500;  // staging grows and shrinks
      std::vector<float> x(count, static_cast<float>(r + 1));
      ASSERT_TRUE(c->AllReduceSum(x.data(), count).ok());
      ASSERT_EQ(x[count - 1], kRanks * (kRanks + 1) / 2.0f) << "round " << i;
      int token = i * 10 + r;
      ASSERT_TRUE(c->Broadcast(&token, sizeof(token), i % kRanks).ok());
      ASSERT_EQ(token, i * 10 + i % kRanks);
      if (i % 50 == 0) {
        // Writes before a barrier are visible to every rank after it.
        seen[r * kRanks + r] = i + 1;
        ASSERT_TRUE(c->Barrier().ok());
        for (int q = 0; q < kRanks; ++q) ASSERT_EQ(seen[q * kRanks + q], i + 1);
        ASSERT_TRUE(c->Barrier().ok());
      }
    }
  });
  EXPECT_TRUE(group->status().ok());
}

TEST(LoopbackTest, AMissingRankIsATimeoutNamingItAndBreaksTheGroup) {
  auto group = MakeGroup(3, absl::Milliseconds(200));
  std::vector<absl::Status> got(2);
  RunRanks(2, [&](int r) {
    float x = 1;
    got[r] = group->rank(r)->AllReduceSum(&x, 1);
  });
  for (const absl::Status& s : got) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_NE(s.message().find("rank(s) 2"), std::string::npos) << s;
  }
  // The late rank fails fast with the same reason instead of waiting.
  float x = 1;
  const absl::Time start = absl::Now();
  EXPECT_EQ(group->rank(2)->AllReduceSum(&x, 1).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_EQ(group->status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(LoopbackTest, RanksThatDisagreeOnTheCollectiveAllFail) {
  auto group = MakeGroup(2);
  std::vector<absl::Status> got(2);
  RunRanks(2, [&](int r) {
    std::vector<float> x(20, 1.0f), y(40);
    got[r] = r == 0 ? group->rank(r)->AllReduceSum(x.data(), 10)
                    : group->rank(r)->AllGather(x.data(), 10, y.data());
  });
  for (const absl::Status& s : got) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_NE(s.message().find("disagree"), std::string::npos) << s;
  }
  float x = 0;
  EXPECT_FALSE(group->rank(0)->AllReduceSum(&x, 1).ok());
}

TEST(LoopbackTest, AbortWakesAWaitingRank) {
  auto group = MakeGroup(2, absl::Minutes(5));
  absl::Status got;
  std::thread waiter([&] { got = group->rank(0)->Barrier(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  group->Abort(absl::AbortedError("rank 1 failed its step"));
  waiter.join();
  EXPECT_EQ(got.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(group->rank(1)->Barrier().code(), absl::StatusCode::kAborted);
}

TEST(LoopbackTest, BadArgumentsFailEveryRankInsteadOfHangingThem) {
  EXPECT_FALSE(LoopbackGroup::Create({.world_size = 0}).ok());
  EXPECT_FALSE(LoopbackGroup::Create({.world_size = 2, .timeout = absl::ZeroDuration()}).ok());
  auto group = MakeGroup(2);
  std::vector<absl::Status> got(2);
  RunRanks(2, [&](int r) {
    float x = 0;
    got[r] =
        r == 0 ? group->rank(0)->AllReduceSum(nullptr, 4) : group->rank(1)->AllReduceSum(&x, 1);
  });
  EXPECT_EQ(got[0].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got[1].code(), absl::StatusCode::kInvalidArgument) << got[1];
  EXPECT_EQ(MakeGroup(2)->rank(0)->Broadcast(&got, 1, 5).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LoopbackTest, ZeroCountCollectivesStillSynchronize) {
  auto group = MakeGroup(3);
  RunRanks(3, [&](int r) {
    EXPECT_TRUE(group->rank(r)->AllReduceSum(nullptr, 0).ok());
    EXPECT_TRUE(group->rank(r)->AllGather(nullptr, 0, nullptr).ok());
    EXPECT_EQ(group->rank(r)->rank(), r);
    EXPECT_EQ(group->rank(r)->world_size(), 3);
    EXPECT_EQ(group->rank(r)->memory_space(), MemorySpace::kHost);
  });
}

}  // namespace
}  // namespace tokenmill
