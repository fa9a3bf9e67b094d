#include "tokenmill/backend/step_metadata.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

KvCacheSpec Spec() { return {1, 10, 4, 1, 8, DType::kF32}; }

// Prefill of 3 tokens at positions 5..7 (2 cached), then a decode at position 4.
BatchPlan ValidPlan() {
  BatchPlan plan;
  plan.token_ids = {11, 12, 13, 14};
  plan.positions = {5, 6, 7, 4};
  plan.sequences = {{0, 3, 8, {7, 2}}, {3, 1, 5, {0, 9}}};
  plan.logits_rows = {2, 3};
  return plan;
}

std::string Error(const BatchPlan& plan) {
  absl::StatusOr<StepMetadata> m = BuildStepMetadata(plan, Spec());
  EXPECT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(m.status().message());
}

TEST(StepMetadataTest, SlotsFollowBlockTablesAndPositions) {
  absl::StatusOr<StepMetadata> m = BuildStepMetadata(ValidPlan(), Spec());
  ASSERT_TRUE(m.ok()) << m.status();
  // position 5 -> block_table[1] = 2, offset 1 -> slot 9; position 4 -> block 9, offset 0.
  EXPECT_THAT(m->slot_mapping, ElementsAre(9, 10, 11, 36));
  EXPECT_THAT(m->token_sequence, ElementsAre(0, 0, 0, 1));
  EXPECT_EQ(m->max_query_len, 3);
  EXPECT_EQ(m->max_context_len, 8);
  EXPECT_EQ(m->num_decode_sequences, 1);
}

TEST(StepMetadataTest, RejectsInconsistentRows) {
  BatchPlan p = ValidPlan();
  p.positions.pop_back();
  EXPECT_THAT(Error(p), HasSubstr("positions"));

  p = ValidPlan();
  p.sequences[1].query_start = 2;
  EXPECT_THAT(Error(p), HasSubstr("sequences[1].query_start"));

  p = ValidPlan();
  p.sequences.pop_back();
  EXPECT_THAT(Error(p), HasSubstr("cover 3 rows of 4"));

  p = ValidPlan();
  p.positions[1] = 9;
  EXPECT_THAT(Error(p), HasSubstr("positions[1]"));

  p = ValidPlan();
  p.sequences[1].num_query_tokens = 0;
  EXPECT_THAT(Error(p), HasSubstr("sequences[1].num_query_tokens"));

  p = ValidPlan();
  p.sequences[0].context_len = 2;  // fewer than its 3 new tokens
  EXPECT_THAT(Error(p), HasSubstr("sequences[0].num_query_tokens"));

  p = ValidPlan();
  p.token_ids[0] = -1;
  EXPECT_THAT(Error(p), HasSubstr("token_ids[0]"));

  p = ValidPlan();
  p.logits_rows = {4};
  EXPECT_THAT(Error(p), HasSubstr("logits_rows[0]"));
}

TEST(StepMetadataTest, RejectsBadBlockTables) {
  BatchPlan p = ValidPlan();
  p.sequences[0].block_table = {7};  // 8 tokens need 2 blocks of 4
  EXPECT_THAT(Error(p), HasSubstr("sequences[0].block_table"));

  p = ValidPlan();
  p.sequences[1].block_table[1] = 10;
  EXPECT_THAT(Error(p), HasSubstr("sequences[1].block_table[1]"));

  p = ValidPlan();
  p.sequences[1].block_table[0] = -3;
  EXPECT_THAT(Error(p), HasSubstr("block id -3"));

  p = ValidPlan();
  p.sequences[0].block_table = {7, 7};
  EXPECT_THAT(Error(p), HasSubstr("appears twice"));

  // Sharing a read-only prefix block across sequences is fine; writing one slot twice is not.
  p = ValidPlan();
  p.sequences[1].block_table = {7, 2};  // block 7 shared, both write into block 2
  p.sequences[1].context_len = 6;
  p.positions[3] = 5;
  EXPECT_THAT(Error(p), HasSubstr("slot 9"));
  p.sequences[1].block_table = {7, 9};
  EXPECT_TRUE(BuildStepMetadata(p, Spec()).ok());
}

TEST(StepMetadataTest, ExtraTrailingBlocksAreAllowed) {
  BatchPlan p = ValidPlan();
  p.sequences[1].block_table.push_back(3);
  EXPECT_TRUE(BuildStepMetadata(p, Spec()).ok());
}

}  // namespace
}  // namespace tokenmill
