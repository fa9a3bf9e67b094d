// NCCL ranks. Without a GPU: creation is a clean UNAVAILABLE and the library answers its
// version. With GPUs: one rank per visible device (threads of this process), exchanging
// the unique id over the TCP bootstrap on 127.0.0.1, against the loopback results.
#include "tokenmill/parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

TEST(NcclCommunicatorTest, ReportsItsVersionAndRefusesBadRanks) {
  EXPECT_EQ(NcclVersionString().substr(0, 2), "2.");
  NcclOptions bad;
  bad.rank = 2;
  bad.world_size = 2;
  EXPECT_EQ(MakeNcclCommunicator(bad).status().code(), absl::StatusCode::kInvalidArgument);
  if (NcclVisibleDeviceCount() == 0) {
    EXPECT_EQ(MakeNcclCommunicator({}).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(NcclGetUniqueId().status().code(), absl::StatusCode::kUnavailable);
  }
}

TEST(NcclCommunicatorTest, CollectivesOnEveryVisibleGpu) {
  const int n = NcclVisibleDeviceCount();
  if (n == 0) GTEST_SKIP() << "no CUDA device";
  auto server = BootstrapServer::Listen({.address = "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  auto id = NcclGetUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  std::thread serve([&] { EXPECT_TRUE((*server)->Serve(n, *id).ok()); });
  constexpr int64_t kCount = 1000;
  std::vector<std::vector<float>> reduced(n), gathered(n);
  std::vector<std::thread> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.emplace_back([&, r] {
      NcclOptions o;
      o.rank = r;
      o.world_size = n;
      o.device = r;
      if (r == 0) {
        o.unique_id = *id;  // rank 0 already holds it; the others use the bootstrap
      } else {
        o.bootstrap.address = address;
      }
      auto comm = MakeNcclCommunicator(o);
      ASSERT_TRUE(comm.ok()) << comm.status();
      void *dv = nullptr, *gv = nullptr;
      ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&dv, kCount * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&gv, n * kCount * sizeof(float)), cudaSuccess);
      float* d = static_cast<float*>(dv);
      float* g = static_cast<float*>(gv);
      std::vector<float> h(kCount);
      for (int64_t i = 0; i < kCount; ++i) h[i] = static_cast<float>(r + 1) * (i % 7);
      cudaMemcpy(d, h.data(), kCount * sizeof(float), cudaMemcpyHostToDevice);
      EXPECT_TRUE((*comm)->AllReduceSum(d, kCount).ok());
      EXPECT_TRUE((*comm)->AllGather(d, kCount, g).ok());
      EXPECT_TRUE((*comm)->Barrier().ok());
      reduced[r].resize(kCount);
      gathered[r].resize(n * kCount);
      cudaMemcpy(reduced[r].data(), d, kCount * sizeof(float), cudaMemcpyDeviceToHost);
      cudaMemcpy(gathered[r].data(), g, n * kCount * sizeof(float), cudaMemcpyDeviceToHost);
      cudaFree(d);
      cudaFree(g);
    });
  }
  for (std::thread& t : ranks) t.join();
  serve.join();
  const float ranks_sum = n * (n + 1) / 2.0f;
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < kCount; ++i) {
      ASSERT_EQ(reduced[r][i], ranks_sum * (i % 7)) << "rank " << r << " element " << i;
      ASSERT_EQ(gathered[r][(n - 1) * kCount + i], reduced[r][i]);
    }
  }
}

}  // namespace
}  // namespace tokenmill
