// Test helper: drives a LlamaModel for one sequence with a contiguous block table, the
// simplest possible caller of the op interface (the engine is the real one).
#pragma once

#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "tokenmill/backend/cpu_backend.h"
#include "tokenmill/model/llama_model.h"

namespace tokenmill::testing {

class SingleSequenceRunner {
 public:
  SingleSequenceRunner(const LoadedModel& model, int max_tokens = 512, int block_size = 16,
                       int num_threads = 2)
      : backend_(MakeCpuBackend({.num_threads = num_threads})), block_size_(block_size) {
    LlamaModelOptions opts;
    opts.max_num_tokens = max_tokens;
    opts.max_num_logits = max_tokens;
    auto m = LlamaModel::Create(model, backend_.get(), opts);
    EXPECT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
    const int num_blocks = (max_tokens + block_size - 1) / block_size + 1;
    EXPECT_TRUE(backend_->AllocateKvCache(model_->KvSpec(num_blocks, block_size)).ok());
    // Deliberately not 0..n-1: reversed ids catch code that ignores the block table.
    table_.resize(num_blocks);
    std::iota(table_.rbegin(), table_.rend(), 0);
  }

  // Feeds `tokens` at positions [num_cached, num_cached + n) in chunks of `chunk`;
  // returns the logits of every fed token when all_logits, else of the last one.
  std::vector<float> Feed(const std::vector<int32_t>& tokens, bool all_logits, int chunk = 1 << 30) {
    std::vector<float> out;
    for (size_t start = 0; start < tokens.size(); start += chunk) {
      const size_t end = std::min(tokens.size(), start + static_cast<size_t>(chunk));
      BatchPlan plan;
      BatchSequence seq;
      seq.query_start = 0;
      seq.num_query_tokens = static_cast<int32_t>(end - start);
      seq.context_len = num_cached_ + seq.num_query_tokens;
      const int blocks = (seq.context_len + block_size_ - 1) / block_size_;
      seq.block_table.assign(table_.begin(), table_.begin() + blocks);
      for (size_t i = start; i < end; ++i) {
        plan.token_ids.push_back(tokens[i]);
        plan.positions.push_back(num_cached_ + static_cast<int32_t>(i - start));
      }
      if (all_logits) {
        for (int32_t r = 0; r < seq.num_query_tokens; ++r) plan.logits_rows.push_back(r);
      } else if (end == tokens.size()) {
        plan.logits_rows.push_back(seq.num_query_tokens - 1);
      }
      plan.sequences.push_back(seq);
      std::vector<float> logits;
      const absl::Status s = model_->Forward(plan, &logits);
      EXPECT_TRUE(s.ok()) << s;
      out.insert(out.end(), logits.begin(), logits.end());
      num_cached_ += seq.num_query_tokens;
    }
    return out;
  }

  // Greedy continuation of `prompt` (argmax, ties to the lowest id).
  std::vector<int32_t> Greedy(const std::vector<int32_t>& prompt, int num_new, int chunk = 1 << 30) {
    std::vector<float> logits = Feed(prompt, false, chunk);
    std::vector<int32_t> out;
    const int vocab = model_->config().vocab_size;
    for (int i = 0; i < num_new; ++i) {
      const int32_t next = static_cast<int32_t>(
          std::max_element(logits.end() - vocab, logits.end()) - (logits.end() - vocab));
      out.push_back(next);
      if (i + 1 < num_new) logits = Feed({next}, false);
    }
    return out;
  }

  LlamaModel& model() { return *model_; }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  int block_size_;
  int num_cached_ = 0;
  std::vector<int32_t> table_;
};

}  // namespace tokenmill::testing
