// The OpenAI-compatible HTTP API's JSON: request bodies of /v1/completions and
// /v1/chat/completions parsed into ClientRequests (errors name the field, unknown fields are
// rejected as OpenAI does), and response objects, SSE chunks, usage and model lists built
// from completion results. Pure functions; no I/O.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenmill/api/frontend.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill {

struct OpenAiRequest {
  ClientRequest client;
  bool chat = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // return log-probs (top_n of them per token)
  int top_logprobs = 0;
};

// Body of POST /v1/completions. `prompt`: a string, token ids, or a one-element list of
// either; vLLM's extra sampling fields (top_k, min_p, repetition_penalty, ignore_eos,
// stop_token_ids, skip_special_tokens, add_special_tokens, priority) are accepted.
absl::StatusOr<OpenAiRequest> ParseCompletionRequest(const nlohmann::ordered_json& body);
// Body of POST /v1/chat/completions. Message content: a string or a list of text parts.
absl::StatusOr<OpenAiRequest> ParseChatRequest(const nlohmann::ordered_json& body);

// What every response object of one request shares.
struct ResponseContext {
  std::string id;  // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;
  std::string model;
  const Tokenizer* tokenizer = nullptr;  // for log-prob token strings; may be null
};

// The usage object: OpenAI's fields plus "tokenmill": metrics::ToUsageJson(record).
nlohmann::ordered_json UsageJson(const RequestUsage& usage);
// A non-streamed response ("text_completion" / "chat.completion").
nlohmann::ordered_json CompletionResponseJson(const ResponseContext& ctx, const OpenAiRequest& req,
                                              const CompletionResult& result);
// One SSE chunk for a delta (chat: the first chunk of each choice also carries the role).
nlohmann::ordered_json StreamChunkJson(const ResponseContext& ctx, const OpenAiRequest& req,
                                       const CompletionDelta& delta, bool first_of_choice);
// The last chunk when stream_options.include_usage: no choices, the usage.
nlohmann::ordered_json UsageChunkJson(const ResponseContext& ctx, const OpenAiRequest& req,
                                      const RequestUsage& usage);
// GET /v1/models (and one entry of it).
nlohmann::ordered_json ModelJson(const std::string& name, int64_t created, int max_model_len);

// JSON text for the wire: invalid UTF-8 is replaced rather than throwing.
std::string DumpJson(const nlohmann::ordered_json& j);

}  // namespace tokenmill
