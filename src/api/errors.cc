#include "tokenmill/api/errors.h"

#include <cctype>
#include <optional>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"

namespace tokenmill {
namespace {

constexpr char kReasonUrl[] = "type.tokenmill.dev/ErrorReason";

const char* ReasonCode(ErrorReason reason) {
  switch (reason) {
    case ErrorReason::kContextLengthExceeded:
      return "context_length_exceeded";
    case ErrorReason::kRateLimited:
      return "rate_limit_exceeded";
    case ErrorReason::kQuotaExceeded:
      return "quota_exceeded";
    case ErrorReason::kModelNotFound:
      return "model_not_found";
    case ErrorReason::kInvalidApiKey:
      return "invalid_api_key";
    case ErrorReason::kPayloadTooLarge:
      return "payload_too_large";
    case ErrorReason::kNone:
      break;
  }
  return "";
}

bool IsFieldChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '[' ||
         c == ']';
}

}  // namespace

absl::Status WithReason(absl::Status status, ErrorReason reason) {
  if (!status.ok() && reason != ErrorReason::kNone) {
    status.SetPayload(kReasonUrl, absl::Cord(ReasonCode(reason)));
  }
  return status;
}

ErrorReason ReasonOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kReasonUrl);
  if (!payload.has_value()) return ErrorReason::kNone;
  for (ErrorReason r :
       {ErrorReason::kContextLengthExceeded, ErrorReason::kRateLimited, ErrorReason::kQuotaExceeded,
        ErrorReason::kModelNotFound, ErrorReason::kInvalidApiKey, ErrorReason::kPayloadTooLarge}) {
    if (*payload == ReasonCode(r)) return r;
  }
  return ErrorReason::kNone;
}

std::string ErrorParam(const absl::Status& status) {
  absl::string_view msg = status.message();
  // Library messages name fields as "SamplingParams.top_p must be ..."; clients know "top_p".
  if (absl::StartsWith(msg, "SamplingParams.")) msg.remove_prefix(15);
  size_t end = 0;
  while (end < msg.size() && IsFieldChar(msg[end])) ++end;
  if (end == 0 || end == msg.size()) return "";
  // "field: ..." or "field must ..." (one word followed by a colon or by "must").
  if (msg[end] == ':' || absl::StartsWith(msg.substr(end), " must ")) {
    const absl::string_view field = msg.substr(0, end);
    if (std::isalpha(static_cast<unsigned char>(field[0]))) return std::string(field);
  }
  return "";
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // The enums share the canonical values (0..16), which is why one cast suffices.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

HttpError ToHttpError(const absl::Status& status) {
  HttpError e;
  e.message = std::string(status.message());
  e.param = ErrorParam(status);
  const ErrorReason reason = ReasonOf(status);
  e.code = ReasonCode(reason);
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      e.http_status = 400;
      e.type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      if (e.code.empty()) e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "not_found_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      if (reason == ErrorReason::kContextLengthExceeded) {
        e.http_status = 400;
        e.type = "invalid_request_error";
      } else if (reason == ErrorReason::kPayloadTooLarge) {
        e.http_status = 413;
        e.type = "invalid_request_error";
      } else {
        e.http_status = 429;
        e.type = reason == ErrorReason::kQuotaExceeded ? "insufficient_quota" : "rate_limit_error";
        if (e.code.empty()) e.code = "queue_full";
      }
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable_error";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "timeout_error";
      break;
    case absl::StatusCode::kCancelled:
      e.http_status = 499;
      e.type = "cancelled_error";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      break;
  }
  return e;
}

nlohmann::json OpenAiErrorBody(const HttpError& e) {
  nlohmann::json err = {
      {"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return {{"error", err}};
}

}  // namespace tokenmill
