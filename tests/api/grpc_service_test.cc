#include "api/grpc_service.h"

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

// Regression (issue #10, soak test): a client whose deadline expires cancels the call itself,
// and its cancel can reach the server just before the server's copy of the deadline passes;
// such calls were counted as client aborts instead of deadline_exceeded.
TEST(CancelReasonForTest, ACancelAtTheDeadlineIsTheDeadline) {
  EXPECT_EQ(CancelReasonFor(std::nullopt), FinishReason::kCancelled);
  EXPECT_EQ(CancelReasonFor(5.0), FinishReason::kCancelled);
  EXPECT_EQ(CancelReasonFor(kDeadlineCancelSlackS + 0.01), FinishReason::kCancelled);
  EXPECT_EQ(CancelReasonFor(kDeadlineCancelSlackS), FinishReason::kDeadline);
  EXPECT_EQ(CancelReasonFor(0.002), FinishReason::kDeadline);
  EXPECT_EQ(CancelReasonFor(0.0), FinishReason::kDeadline);
  EXPECT_EQ(CancelReasonFor(-1.0), FinishReason::kDeadline);
}

}  // namespace
}  // namespace tokenmill
