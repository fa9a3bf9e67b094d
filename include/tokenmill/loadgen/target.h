// Targets of `tokenmill bench`: where requests go and what comes back, timed on the
// client. Three implementations: the engine in-process, any OpenAI-compatible HTTP server
// (/v1/completions with SSE streaming) and tokenmill's gRPC streaming Generate.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tokenmill/core/clock.h"

namespace tokenmill::loadgen {

struct TargetRequest {
  std::string id;                          // unique per run
  std::vector<int32_t> prompt_ids;         // exactly the prompt's tokens (BOS included)
  std::optional<std::string> prompt_text;  // sent instead of ids when set (text targets)
  int max_tokens = 16;
  bool ignore_eos = true;  // exact output lengths where the server supports it
  double temperature = 0.0;
  uint64_t seed = 0;
};

// What one request did, timed with the target's clock (monotonic seconds). Figures the
// target does not report stay nullopt.
struct RequestResult {
  double send_s = 0;                    // request handed to the client library
  std::optional<double> first_token_s;  // first chunk that carried output
  double end_s = 0;                     // final chunk (or the error)
  std::vector<double> chunk_times_s;    // every chunk that carried output, in order
  int64_t output_tokens = 0;            // from usage when given, else counted chunks/ids
  bool output_tokens_from_usage = false;
  std::optional<int64_t> prompt_tokens;  // as the server counted them
  std::optional<int64_t> cached_tokens;  // prompt tokens served from its prefix cache
  std::optional<double> joules;          // usage.tokenmill / the final message
  std::optional<double> cost;
  std::string currency;
  std::string energy_source;
  std::string finish_reason;
  // "" on success; else a short stable code: an HTTP status ("http_503"), a gRPC / absl
  // code name ("unavailable", "resource_exhausted"), "connection", "timeout", "protocol".
  std::string error_code;
  std::string error_message;

  bool ok() const { return error_code.empty(); }
};

// Thread-safe: many client threads call Send() at once, each blocking until its request
// ends. A target must not throw.
class Target {
 public:
  virtual ~Target() = default;
  virtual RequestResult Send(const TargetRequest& request) = 0;
  // "inproc", "http", "grpc".
  virtual std::string kind() const = 0;
  // True when the target takes token ids as the prompt (else it needs prompt_text).
  virtual bool accepts_token_ids() const = 0;
};

// "inproc", "http://HOST:PORT[/prefix]", "https://...", "grpc://HOST:PORT".
struct TargetAddress {
  std::string kind;    // "inproc", "http", "grpc"
  std::string scheme;  // "http", "https", "grpc", "" for inproc
  std::string host;
  int port = 0;
  std::string path_prefix;  // http only: prepended to /v1/completions, no trailing '/'
};
absl::StatusOr<TargetAddress> ParseTargetAddress(absl::string_view text);

struct HttpTargetOptions {
  TargetAddress address;
  std::string model;           // the "model" field of each request ("" leaves it out)
  std::string api_key;         // Authorization: Bearer, when set
  double timeout_s = 600;      // read timeout of one request
  bool send_token_ids = true;  // prompt as a list of ids (else prompt_text)
  nlohmann::json extra_body = nlohmann::json::object();  // fields added to every request
  const Clock* clock = &SystemClock::Get();
};
std::unique_ptr<Target> MakeHttpTarget(const HttpTargetOptions& options);

// tokenmill's gRPC API (proto/tokenmill/v1/service.proto): streaming Generate with token ids,
// ignore_eos and the final message's usage, energy and cost.
struct GrpcTargetOptions {
  TargetAddress address;
  std::string model;           // GenerateRequest.model ("" : the served model)
  std::string api_key;         // authorization: Bearer metadata, when set
  double timeout_s = 600;      // the call's deadline
  bool send_token_ids = true;  // token_ids input (else text)
  const Clock* clock = &SystemClock::Get();
};
std::unique_ptr<Target> MakeGrpcTarget(const GrpcTargetOptions& options);

}  // namespace tokenmill::loadgen
