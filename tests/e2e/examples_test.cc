// The C++ client example (examples/cpp/client.cc) against a live server.
#include "e2e/e2e_util.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"

namespace tokenmill::e2e {
namespace {

TEST(ExamplesTest, CppClientStreamsACompletionAndPrintsItsFigures) {
  auto server = ServerProcess::Start({"--model", "demo"});
  ASSERT_NE(server, nullptr);
  auto r = ::tokenmill::testing::RunCommand(
      {TOKENMILL_CLIENT_EXAMPLE, "--target", server->grpc_address(), "--prompt", "Hello",
       "--max-tokens", "7"},
      "", 60);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--- finish: LENGTH; tokens: prompt 6 (cached 0), generated 7"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(" USD"), std::string::npos) << r.out;

  r = ::tokenmill::testing::RunCommand(
      {TOKENMILL_CLIENT_EXAMPLE, "--target", server->grpc_address(), "--max-tokens", "0"}, "", 60);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("max_tokens: must be >= 1"), std::string::npos) << r.err;
  EXPECT_EQ(
      ::tokenmill::testing::RunCommand({TOKENMILL_CLIENT_EXAMPLE, "--bogus"}, "", 10).exit_code, 2);
}

}  // namespace
}  // namespace tokenmill::e2e
