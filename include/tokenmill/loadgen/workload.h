// Workloads of `tokenmill bench`: what requests a run sends, as lengths and structure.
// Seeded and reproducible: session i of a workload depends only on (seed, i), never on
// timing or thread order, so two runs with one seed send the same token ids.
//
// Spec strings (docs/bench.md):
//   fixed:IN:OUT                          every request IN prompt tokens, OUT output tokens
//   random:IN_MIN-IN_MAX:OUT_MIN-OUT_MAX  uniform integer lengths in the closed ranges
//   chat[:key=value,...]                  log-normal lengths (ChatParams)
//   agentic[:key=value,...]               multi-turn sessions sharing a system prompt
//                                         (AgenticParams)
// A request's prompt length counts every token the server sees, BOS included.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::loadgen {

enum class WorkloadKind { kFixed, kRandom, kChat, kAgentic };

// Log-normal lengths: length = round(median x exp(sigma x N(0,1))), clamped to [min, max].
// Defaults follow the shape of ShareGPT conversations as used by vLLM's serving benchmark
// (median prompt a few hundred tokens, long right tail; shorter answers).
struct ChatParams {
  double input_median = 256;   // key in_median
  double input_sigma = 1.0;    // key in_sigma
  int input_min = 4;           // key in_min
  int input_max = 4096;        // key in_max
  double output_median = 128;  // key out_median
  double output_sigma = 0.8;   // key out_sigma
  int output_min = 1;          // key out_min
  int output_max = 1024;       // key out_max
};

// Agentic sessions: turn k's prompt is the system prompt, then turns 1..k-1 (user message
// and the assistant's reply), then user message k; so each turn's prompt extends the
// previous one and a prefix cache can serve all of it. The assistant's reply in the history
// is a seeded stand-in of the length that turn asked for (not the server's text), so the
// workload is the same on every target. Think time before each turn after the first.
struct AgenticParams {
  int system_tokens = 2000;  // key system: shared by every session of the run
  int min_turns = 10;        // key turns=MIN-MAX
  int max_turns = 50;
  double user_median = 150;    // key user_median (tool results and instructions)
  double user_sigma = 0.8;     // key user_sigma
  int user_max = 2048;         // key user_max
  double output_median = 100;  // key out_median
  double output_sigma = 0.6;   // key out_sigma
  int output_max = 1024;       // key out_max
  double think_mean_s = 1.0;   // key think: exponential think time, mean seconds (0: none)
};

struct WorkloadSpec {
  WorkloadKind kind = WorkloadKind::kFixed;
  std::string text;                    // as given
  int input_min = 0, input_max = 0;    // fixed / random
  int output_min = 0, output_max = 0;  // fixed / random
  ChatParams chat;
  AgenticParams agentic;
};

// InvalidArgument naming the part of the spec that is wrong.
absl::StatusOr<WorkloadSpec> ParseWorkloadSpec(absl::string_view text);
// Every parameter of the spec, for report.json.
nlohmann::ordered_json WorkloadSpecJson(const WorkloadSpec& spec);

// One request of a session. Its prompt is the session's segments [0, num_prompt_segments)
// concatenated: segments are shared, so turn k+1's prompt extends turn k's.
struct Turn {
  int num_prompt_segments = 0;
  int prompt_tokens = 0;      // sum of those segments' lengths
  int max_tokens = 0;         // output tokens asked for (exact: ignore_eos)
  double think_before_s = 0;  // pause after the previous turn finished
};

struct Session {
  int64_t index = 0;
  // Token ids of each segment; segment 0 starts with BOS when the tokenizer adds one. The
  // agentic system prompt is a shared segment (same ids in every session).
  std::vector<std::shared_ptr<const std::vector<int32_t>>> segments;
  std::vector<Turn> turns;
  bool truncated = false;  // the context could not hold every planned turn
  // Prompt ids of turn `t` (the concatenated segments).
  std::vector<int32_t> PromptIds(int t) const;
};

// Random content ids for prompts: normal tokens of the vocabulary (no control, special,
// unused or byte tokens where the tokenizer has others), plus the BOS rule.
struct TokenSource {
  std::vector<int32_t> content_ids;
  int32_t bos_id = -1;  // prepended to every prompt when >= 0
};

// Builds the token source of a tokenizer: ids whose text is printable UTF-8 (so text
// prompts look like text), excluding EOS. Error when it has no usable content token.
absl::StatusOr<TokenSource> MakeTokenSource(const Tokenizer& tokenizer);

// Sessions of a workload. Thread-safe (const); Session(i) is a pure function of
// (spec, seed, i). `max_model_len` bounds prompt + output of every turn: fixed/random/chat
// lengths are clamped to it, agentic sessions end at the last turn that fits (truncated).
class WorkloadGenerator {
 public:
  // Error when even the shortest request cannot fit max_model_len.
  static absl::StatusOr<WorkloadGenerator> Create(const WorkloadSpec& spec,
                                                  std::shared_ptr<const TokenSource> tokens,
                                                  uint64_t seed, int max_model_len);

  Session MakeSession(int64_t index) const;
  const WorkloadSpec& spec() const { return spec_; }
  uint64_t seed() const { return seed_; }
  int max_model_len() const { return max_model_len_; }

 private:
  WorkloadGenerator() = default;
  Session MakeSingleTurn(int64_t index) const;
  Session MakeAgentic(int64_t index) const;

  WorkloadSpec spec_;
  std::shared_ptr<const TokenSource> tokens_;
  uint64_t seed_ = 0;
  int max_model_len_ = 0;
  std::shared_ptr<const std::vector<int32_t>> system_prompt_;  // agentic only
};

}  // namespace tokenmill::loadgen
