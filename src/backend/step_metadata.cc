#include "tokenmill/backend/step_metadata.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace tokenmill {
namespace {

absl::Status PlanError(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("BatchPlan.", field, ": ", what));
}

absl::Status CheckBlockTable(const BatchSequence& seq, int index, const KvCacheSpec& spec,
                             std::vector<int32_t>* seen_in_table, int32_t* stamp) {
  const std::string name = absl::StrCat("sequences[", index, "]");
  const int64_t needed =
      (static_cast<int64_t>(seq.context_len) + spec.block_size - 1) / spec.block_size;
  if (static_cast<int64_t>(seq.block_table.size()) < needed) {
    return PlanError(name + ".block_table",
                     absl::StrCat("has ", seq.block_table.size(), " blocks; context_len ",
                                  seq.context_len, " needs ", needed));
  }
  // A block appearing twice in one table would alias two different positions.
  ++*stamp;
  for (int64_t b = 0; b < needed; ++b) {
    const int32_t id = seq.block_table[b];
    if (id < 0 || id >= spec.num_blocks) {
      return PlanError(absl::StrCat(name, ".block_table[", b, "]"),
                       absl::StrCat("block id ", id, " outside [0, ", spec.num_blocks, ")"));
    }
    if ((*seen_in_table)[id] == *stamp) {
      return PlanError(absl::StrCat(name, ".block_table[", b, "]"),
                       absl::StrCat("block id ", id, " appears twice"));
    }
    (*seen_in_table)[id] = *stamp;
  }
  return absl::OkStatus();
}

absl::Status CheckSequenceRows(const BatchPlan& plan, const BatchSequence& seq, int index,
                               int32_t expected_start) {
  const std::string name = absl::StrCat("sequences[", index, "]");
  if (seq.query_start != expected_start) {
    return PlanError(
        name + ".query_start",
        absl::StrCat(seq.query_start, " but rows must be contiguous: expected ", expected_start));
  }
  if (seq.num_query_tokens < 1 || seq.num_query_tokens > seq.context_len) {
    return PlanError(
        name + ".num_query_tokens",
        absl::StrCat(seq.num_query_tokens, " must be in [1, context_len=", seq.context_len, "]"));
  }
  if (static_cast<int64_t>(seq.query_start) + seq.num_query_tokens > plan.num_tokens()) {
    return PlanError(
        name, absl::StrCat("rows [", seq.query_start, ", ", seq.query_start + seq.num_query_tokens,
                           ") exceed num_tokens ", plan.num_tokens()));
  }
  const int32_t first_position = seq.context_len - seq.num_query_tokens;
  for (int32_t j = 0; j < seq.num_query_tokens; ++j) {
    const int32_t row = seq.query_start + j;
    if (plan.positions[row] != first_position + j) {
      return PlanError(
          absl::StrCat("positions[", row, "]"),
          absl::StrCat(plan.positions[row], " but ", name, " expects ", first_position + j));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StepMetadata> BuildStepMetadata(const BatchPlan& plan, const KvCacheSpec& spec) {
  TM_CHECK(spec.block_size >= 1, "KV cache block_size ", spec.block_size);
  const int32_t num_tokens = plan.num_tokens();
  if (plan.positions.size() != plan.token_ids.size()) {
    return PlanError("positions", absl::StrCat("has ", plan.positions.size(), " entries for ",
                                               num_tokens, " tokens"));
  }
  for (int32_t t = 0; t < num_tokens; ++t) {
    if (plan.token_ids[t] < 0) {
      return PlanError(absl::StrCat("token_ids[", t, "]"), absl::StrCat(plan.token_ids[t]));
    }
  }
  StepMetadata meta;
  meta.slot_mapping.resize(num_tokens);
  meta.token_sequence.resize(num_tokens);
  std::vector<int32_t> seen_in_table(spec.num_blocks, 0);
  int32_t stamp = 0;
  int32_t next_row = 0;
  for (int i = 0; i < static_cast<int>(plan.sequences.size()); ++i) {
    const BatchSequence& seq = plan.sequences[i];
    TM_RETURN_IF_ERROR(CheckSequenceRows(plan, seq, i, next_row));
    TM_RETURN_IF_ERROR(CheckBlockTable(seq, i, spec, &seen_in_table, &stamp));
    for (int32_t j = 0; j < seq.num_query_tokens; ++j) {
      const int32_t row = seq.query_start + j;
      const int32_t pos = plan.positions[row];
      meta.slot_mapping[row] =
          static_cast<int64_t>(seq.block_table[pos / spec.block_size]) * spec.block_size +
          pos % spec.block_size;
      meta.token_sequence[row] = i;
    }
    next_row = seq.query_start + seq.num_query_tokens;
    meta.max_query_len = std::max(meta.max_query_len, seq.num_query_tokens);
    meta.max_context_len = std::max(meta.max_context_len, seq.context_len);
    if (seq.num_query_tokens == 1) ++meta.num_decode_sequences;
  }
  if (next_row != num_tokens) {
    return PlanError("sequences", absl::StrCat("cover ", next_row, " rows of ", num_tokens));
  }
  // Two sequences sharing a prefix block may read it, but never both write one slot.
  std::vector<int64_t> slots = meta.slot_mapping;
  std::sort(slots.begin(), slots.end());
  if (const auto dup = std::adjacent_find(slots.begin(), slots.end()); dup != slots.end()) {
    return PlanError("sequences", absl::StrCat("two new tokens write cache slot ", *dup));
  }
  for (size_t i = 0; i < plan.logits_rows.size(); ++i) {
    if (plan.logits_rows[i] < 0 || plan.logits_rows[i] >= num_tokens) {
      return PlanError(absl::StrCat("logits_rows[", i, "]"),
                       absl::StrCat(plan.logits_rows[i], " outside [0, ", num_tokens, ")"));
    }
  }
  return meta;
}

}  // namespace tokenmill
