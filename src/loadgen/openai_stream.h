// The OpenAI /v1/completions streaming protocol as a bench client reads it: the request
// body, and the meaning of each SSE event (text chunks, the usage chunk, [DONE], errors).
#pragma once

#include <string>

#include "nlohmann/json.hpp"
#include "tokenmill/core/clock.h"
#include "tokenmill/loadgen/target.h"

namespace tokenmill::loadgen {

// Body of a streaming /v1/completions request: prompt as ids (or text), max_tokens,
// stream with include_usage, temperature, seed and, for exact output lengths, ignore_eos
// (vLLM, SGLang, llama.cpp and tokenmill all take it). `extra_body`'s fields (an object)
// are added last and override (e.g. {"min_tokens": 128} for vLLM).
nlohmann::json CompletionRequestBody(const TargetRequest& request, const std::string& model,
                                     bool send_token_ids,
                                     const nlohmann::json& extra_body = nlohmann::json::object());

// Fills a RequestResult from the stream's events, stamping chunk times with `clock`.
// One instance per request; not thread-safe.
class OpenAiStreamReader {
 public:
  OpenAiStreamReader(RequestResult* result, const Clock* clock) : result_(result), clock_(clock) {}

  // One event's data. False once the stream is over ([DONE] or an error event).
  bool OnData(const std::string& data);
  // End of the byte stream: fills output_tokens from the chunks when no usage came, and
  // marks a stream that ended before any finish as a "protocol" error.
  void Finish();

 private:
  void ReadUsage(const nlohmann::json& usage);
  void ReadChoice(const nlohmann::json& choice, double now_s);
  void Fail(std::string code, std::string message);

  RequestResult* result_;
  const Clock* clock_;
  int64_t num_output_chunks_ = 0;
  int64_t num_output_ids_ = 0;  // when chunks carry token ids
  bool saw_finish_ = false;
  bool saw_done_ = false;
};

}  // namespace tokenmill::loadgen
