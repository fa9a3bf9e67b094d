// TCP ranks on 127.0.0.1 (threads of this test standing in for processes): the loopback's
// results bit for bit, every collective and root, many mixed rounds, and the failures a
// multi-process group meets: a rank that disappears (its process ended), one that never
// calls, ranks that disagree, a stranger's rendezvous. None of them may hang.
#include "tokenmill/parallel/tcp_communicator.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tokenmill/parallel/loopback.h"

namespace tokenmill {
namespace {

using Comms = std::vector<std::unique_ptr<Communicator>>;

// A group of n TCP ranks, rank 0 listening on a free port of 127.0.0.1.
Comms MakeGroup(int n, absl::Duration timeout = absl::Seconds(30)) {
  auto server = BootstrapServer::Listen({.address = "127.0.0.1:0", .timeout = absl::Seconds(20)});
  EXPECT_TRUE(server.ok()) << server.status();
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  Comms comms(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      TcpCommunicatorOptions o;
      o.rank = r;
      o.world_size = n;
      o.bootstrap = {.address = address,
                     .timeout = absl::Seconds(20),
                     .retry_interval = absl::Milliseconds(20)};
      o.timeout = timeout;
      auto c = r == 0 ? MakeTcpCommunicator(**server, o) : MakeTcpCommunicator(o);
      EXPECT_TRUE(c.ok()) << "rank " << r << ": " << c.status();
      if (c.ok()) comms[r] = std::move(c).value();
    });
  }
  for (std::thread& t : threads) t.join();
  return comms;
}

void RunRanks(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

// Values over many magnitudes: another summation order would change bits.
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

TEST(TcpCommunicatorTest, AllReduceSumHasTheLoopbacksBitsOnEveryRank) {
  constexpr int64_t kCount = 100003;  // larger than a socket buffer
  for (int n : {1, 2, 3, 4}) {
    SCOPED_TRACE(n);
    Comms tcp = MakeGroup(n);
    auto loop = std::move(LoopbackGroup::Create({.world_size = n})).value();
    std::vector<std::vector<float>> a(n), b(n);
    for (int r = 0; r < n; ++r) a[r] = b[r] = RandomData(7 + r, kCount);
    RunRanks(n, [&](int r) {
      EXPECT_TRUE(tcp[r]->AllReduceSum(a[r].data(), kCount).ok());
      EXPECT_TRUE(loop->rank(r)->AllReduceSum(b[r].data(), kCount).ok());
    });
    for (int r = 0; r < n; ++r) {
      EXPECT_TRUE(SameBits(a[r], b[0])) << "rank " << r;
      EXPECT_TRUE(tcp[r]->status().ok());
    }
  }
}

TEST(TcpCommunicatorTest, AllGatherBroadcastAndBarrierOverManyRounds) {
  constexpr int kRanks = 3;
  Comms c = MakeGroup(kRanks);
  RunRanks(kRanks, [&](int r) {
    for (int i = 0; i < 200; ++i) {
      const int64_t count = 1 + (i * 37) % 300;
      const std::vector<float> mine = RandomData(i * 10 + r, count);
      std::vector<float> all(kRanks * count, -1.0f);
      if (i % 2 == 0) {
        ASSERT_TRUE(c[r]->AllGather(mine.data(), count, all.data()).ok());
      } else {  // in place
        std::copy(mine.begin(), mine.end(), all.begin() + r * count);
        ASSERT_TRUE(c[r]->AllGather(all.data() + r * count, count, all.data()).ok());
      }
      for (int q = 0; q < kRanks; ++q) {
        const std::vector<float> theirs = RandomData(i * 10 + q, count);
        ASSERT_TRUE(std::equal(theirs.begin(), theirs.end(), all.begin() + q * count)) << i;
      }
      std::string bytes(13 + i % 5, static_cast<char>('a' + r));  // not whole floats
      const int root = i % kRanks;
      ASSERT_TRUE(c[r]->Broadcast(bytes.data(), static_cast<int64_t>(bytes.size()), root).ok());
      ASSERT_EQ(bytes, std::string(bytes.size(), static_cast<char>('a' + root)));
      if (i % 50 == 0) {
        ASSERT_TRUE(c[r]->Barrier().ok());
      }
    }
  });
}

TEST(TcpCommunicatorTest, ARankThatGoesAwayFailsTheOthersAtOnce) {
  for (int gone : {0, 2}) {
    SCOPED_TRACE(gone);
    Comms c = MakeGroup(3, absl::Minutes(5));
    c[gone].reset();  // its process ended: the kernel closes its connections
    std::vector<absl::Status> got(3);
    const absl::Time start = absl::Now();
    RunRanks(3, [&](int r) {
      if (r == gone) return;
      float x = 1;
      got[r] = c[r]->AllReduceSum(&x, 1);
    });
    EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "nobody waited for the timeout";
    for (int r = 0; r < 3; ++r) {
      if (r == gone) continue;
      EXPECT_EQ(got[r].code(), absl::StatusCode::kUnavailable) << got[r];
      EXPECT_NE(got[r].message().find("lost rank " + std::to_string(gone)), std::string::npos)
          << got[r];
      EXPECT_FALSE(c[r]->status().ok());
    }
  }
}

TEST(TcpCommunicatorTest, ASilentRankIsATimeoutThatEveryRankHears) {
  Comms c = MakeGroup(3, absl::Milliseconds(300));
  std::vector<absl::Status> got(2);
  RunRanks(2, [&](int r) {
    float x = 1;
    got[r] = c[r]->AllReduceSum(&x, 1);
  });
  EXPECT_EQ(got[0].code(), absl::StatusCode::kDeadlineExceeded) << got[0];
  EXPECT_NE(got[0].message().find("for rank 2"), std::string::npos) << got[0];
  // Rank 1 heard rank 0's reason, not a lost connection.
  EXPECT_EQ(got[1].code(), absl::StatusCode::kDeadlineExceeded) << got[1];
  EXPECT_NE(got[1].message().find("for rank 2"), std::string::npos) << got[1];
  float x = 1;
  EXPECT_FALSE(c[2]->AllReduceSum(&x, 1).ok()) << "the late rank fails too";
}

TEST(TcpCommunicatorTest, RanksThatDisagreeAllFail) {
  Comms c = MakeGroup(2);
  std::vector<absl::Status> got(2);
  RunRanks(2, [&](int r) {
    std::vector<float> x(20, 1.0f), y(40);
    got[r] = r == 0 ? c[0]->AllReduceSum(x.data(), 10) : c[1]->AllGather(x.data(), 10, y.data());
  });
  for (const absl::Status& s : got) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_NE(s.message().find("disagree"), std::string::npos) << s;
  }
}

TEST(TcpCommunicatorTest, BadArgumentsAndStrangersAreClearErrors) {
  TcpCommunicatorOptions bad;
  bad.rank = 2;
  bad.world_size = 2;
  EXPECT_EQ(MakeTcpCommunicator(bad).status().code(), absl::StatusCode::kInvalidArgument);
  TcpCommunicatorOptions alone;
  alone.bootstrap.address = "127.0.0.1:0";
  EXPECT_TRUE(MakeTcpCommunicator(alone).ok()) << "one rank needs nobody";
  // A rendezvous of another protocol (an NCCL unique id, say) on the port.
  auto server = BootstrapServer::Listen({.address = "127.0.0.1:0", .timeout = absl::Seconds(20)});
  ASSERT_TRUE(server.ok());
  std::thread serve([&] { EXPECT_TRUE((*server)->Serve(2, std::string(128, 'x')).ok()); });
  TcpCommunicatorOptions stranger;
  stranger.rank = 1;
  stranger.world_size = 2;
  stranger.bootstrap.address = "127.0.0.1:" + std::to_string((*server)->port());
  auto c = MakeTcpCommunicator(stranger);
  serve.join();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  // Null buffers on one rank fail both instead of hanging the other.
  Comms g = MakeGroup(2);
  std::vector<absl::Status> got(2);
  RunRanks(2, [&](int r) {
    float x = 0;
    got[r] = r == 0 ? g[0]->AllReduceSum(nullptr, 4) : g[1]->AllReduceSum(&x, 1);
  });
  EXPECT_EQ(got[0].code(), absl::StatusCode::kInvalidArgument);
  // Rank 1 may arrive after rank 0 has closed the links: then it hears a lost connection
  // rather than the reason. Either way it fails instead of waiting.
  EXPECT_TRUE(got[1].code() == absl::StatusCode::kInvalidArgument ||
              got[1].code() == absl::StatusCode::kUnavailable)
      << got[1];
}

}  // namespace
}  // namespace tokenmill
