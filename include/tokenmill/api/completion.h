// A completion request as the front ends (CLI, gRPC, HTTP) see it: text, token ids or
// chat messages in; token ids, text and usage out. Tokenization, chat templating,
// detokenization and stop strings happen here, on the caller's thread, never on the
// engine's step thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenmill/api/model_bundle.h"
#include "tokenmill/engine/engine.h"

namespace tokenmill {

struct CompletionInput {
  // Exactly one of: prompt text, prompt ids, chat messages.
  std::optional<std::string> prompt;
  std::optional<std::vector<int32_t>> prompt_ids;
  std::optional<nlohmann::ordered_json> messages;
  bool add_generation_prompt = true;      // chat only
  std::optional<bool> add_special;        // text only; default: the tokenizer's own
  SamplingParams sampling;
  int n = 1;
  std::vector<std::string> stop;          // stop strings (need a tokenizer)
  std::string request_id;                 // optional
  std::string tenant = "default";
  int priority = 0;
  std::optional<double> deadline_s;       // monotonic
  bool skip_special_tokens = true;
};

struct CompletionChoice {
  std::vector<int32_t> ids;
  std::string text;
  FinishReason finish_reason = FinishReason::kNone;
  std::vector<SampledToken> logprobs;
};

struct CompletionResult {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  std::vector<CompletionChoice> choices;
  RequestUsage usage;
  absl::Status status;  // non-OK when a sample failed (kError)
};

// Text or tokens of one sample as they stream: (index, new text, new ids).
using DeltaCallback =
    std::function<void(int index, const std::string& text, const std::vector<int32_t>& ids)>;

// One streamed piece of one sample, for front ends that also need log-probs and the
// sample's end (gRPC, SSE).
struct CompletionDelta {
  int index = 0;
  std::string text;                    // new final text (may be empty)
  std::vector<int32_t> ids;            // new ids, up to the one that completed a stop string
  std::vector<SampledToken> logprobs;  // parallel to ids when the request asked for them
  FinishReason finish_reason = FinishReason::kNone;  // set on the sample's last delta only
};
using CompletionDeltaCallback = std::function<void(const CompletionDelta& delta)>;

// Turns the input into an engine request: renders the chat template, tokenizes,
// checks limits. InvalidArgument naming the field for bad input (no prompt, several,
// stop strings without a tokenizer, ...).
absl::StatusOr<EngineRequest> PrepareRequest(const ModelBundle& bundle,
                                             const CompletionInput& input);

// Streams a submitted request to completion: detokenizes, applies stop strings (telling
// the engine to stop the sample), calls `on_delta` for each piece, returns the totals.
CompletionResult CollectCompletion(Engine& engine, const ModelBundle& bundle,
                                   const EngineRequest& request, RequestStream& stream,
                                   const CompletionInput& input,
                                   const DeltaCallback& on_delta = nullptr);

// CollectCompletion with a CompletionDelta per event that carries text, ids or the end of
// a sample (every sample's last delta has its finish_reason, even when empty).
CompletionResult StreamCompletion(Engine& engine, const ModelBundle& bundle,
                                  const EngineRequest& request, RequestStream& stream,
                                  const CompletionInput& input,
                                  const CompletionDeltaCallback& on_delta);

// PrepareRequest + Submit + CollectCompletion.
absl::StatusOr<CompletionResult> RunCompletion(Engine& engine, const ModelBundle& bundle,
                                               const CompletionInput& input,
                                               const DeltaCallback& on_delta = nullptr);

// "stop" / "length" as OpenAI reports them (context_length -> "length").
const char* OpenAiFinishReason(FinishReason reason);

}  // namespace tokenmill
