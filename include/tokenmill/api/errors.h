// Error conventions of the front ends: one place maps an absl::Status to a gRPC status and
// to an OpenAI-style HTTP error, so both protocols agree.
//
// Messages start with the offending field ("max_tokens: must be >= 1, got 0"); ErrorParam
// recovers it for OpenAI's "param". A status may carry an ErrorReason payload where one
// code covers cases a client must tell apart (a prompt longer than the context is
// RESOURCE_EXHAUSTED in gRPC but HTTP 400 "context_length_exceeded", not a retryable 429).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"

namespace tokenmill {

enum class ErrorReason {
  kNone,
  kContextLengthExceeded,  // prompt (+ max_tokens) does not fit the context
  kRateLimited,            // tenant requests/s or concurrency limit
  kQuotaExceeded,          // tenant token quota
  kModelNotFound,          // `model` is not served here
  kInvalidApiKey,          // missing, malformed or unknown key
  kPayloadTooLarge,        // request body over limits.max_request_bytes
};

// `status` with `reason` attached (a payload; the code and message are unchanged).
absl::Status WithReason(absl::Status status, ErrorReason reason);
ErrorReason ReasonOf(const absl::Status& status);

// The field a message names ("n: 5 is outside..." -> "n", "SamplingParams.top_p must be" ->
// "top_p", "messages[2].content: ..." -> "messages[2].content"); "" when it names none.
std::string ErrorParam(const absl::Status& status);

// absl and gRPC share the canonical codes; the message passes unchanged.
grpc::Status ToGrpcStatus(const absl::Status& status);

struct HttpError {
  int http_status = 500;
  std::string type;   // OpenAI error type: "invalid_request_error", "rate_limit_error", ...
  std::string code;   // machine-readable: "context_length_exceeded", "invalid_api_key", ...
  std::string param;  // the offending field, "" when none
  std::string message;
};

// 400 invalid argument / context length, 401 unauthenticated, 403 permission denied,
// 404 not found, 413 payload too large, 429 rate limit / quota / queue full,
// 503 unavailable (draining), 504 deadline exceeded, 499 cancelled (the client went away;
// nginx's code), 500 everything else.
HttpError ToHttpError(const absl::Status& status);

// {"error": {"message", "type", "param", "code"}} with null for an empty param or code.
nlohmann::json OpenAiErrorBody(const HttpError& error);

}  // namespace tokenmill
