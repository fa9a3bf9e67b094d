#include "tokenmill/api/errors.h"

#include "gtest/gtest.h"

namespace tokenmill {
namespace {

TEST(ErrorParamTest, NamesTheFieldAMessageStartsWith) {
  EXPECT_EQ(ErrorParam(absl::InvalidArgumentError("n: must be in [1, 16], got 20")), "n");
  EXPECT_EQ(ErrorParam(absl::InvalidArgumentError("messages[2].content: must be a string")),
            "messages[2].content");
  EXPECT_EQ(ErrorParam(absl::InvalidArgumentError("SamplingParams.top_p must be in (0, 1], got 7")),
            "top_p");
  EXPECT_EQ(ErrorParam(absl::ResourceExhaustedError("queue full: 3 requests pending")), "");
  EXPECT_EQ(ErrorParam(absl::UnavailableError("engine is draining")), "");
  EXPECT_EQ(ErrorParam(absl::InternalError("")), "");
}

TEST(ErrorReasonTest, TravelsWithTheStatusWithoutChangingIt) {
  const absl::Status s = WithReason(absl::ResourceExhaustedError("prompt: too long"),
                                    ErrorReason::kContextLengthExceeded);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "prompt: too long");
  EXPECT_EQ(ReasonOf(s), ErrorReason::kContextLengthExceeded);
  EXPECT_EQ(ReasonOf(absl::ResourceExhaustedError("x")), ErrorReason::kNone);
  EXPECT_TRUE(WithReason(absl::OkStatus(), ErrorReason::kRateLimited).ok());
}

TEST(ToGrpcStatusTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status g = ToGrpcStatus(absl::PermissionDeniedError("GetStats: needs an admin key"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(g.error_message(), "GetStats: needs an admin key");
  for (int c = 1; c <= 16; ++c) {
    EXPECT_EQ(static_cast<int>(
                  ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(c), "m")).error_code()),
              c);
  }
}

TEST(ToHttpErrorTest, MapsCodesAndReasonsToOpenAiStatuses) {
  struct Case {
    absl::Status status;
    int http;
    const char* type;
    const char* code;
  };
  const Case cases[] = {
      {absl::InvalidArgumentError("max_tokens: bad"), 400, "invalid_request_error", ""},
      {absl::UnauthenticatedError("no key"), 401, "authentication_error", "invalid_api_key"},
      {absl::PermissionDeniedError("admin"), 403, "permission_error", ""},
      {WithReason(absl::NotFoundError("model: x"), ErrorReason::kModelNotFound), 404,
       "not_found_error", "model_not_found"},
      {WithReason(absl::ResourceExhaustedError("prompt: long"),
                  ErrorReason::kContextLengthExceeded),
       400, "invalid_request_error", "context_length_exceeded"},
      {WithReason(absl::ResourceExhaustedError("body"), ErrorReason::kPayloadTooLarge), 413,
       "invalid_request_error", "payload_too_large"},
      {absl::ResourceExhaustedError("queue full"), 429, "rate_limit_error", "queue_full"},
      {WithReason(absl::ResourceExhaustedError("rate"), ErrorReason::kRateLimited), 429,
       "rate_limit_error", "rate_limit_exceeded"},
      {WithReason(absl::ResourceExhaustedError("quota"), ErrorReason::kQuotaExceeded), 429,
       "insufficient_quota", "quota_exceeded"},
      {absl::UnavailableError("draining"), 503, "service_unavailable_error", ""},
      {absl::DeadlineExceededError("late"), 504, "timeout_error", ""},
      {absl::InternalError("boom"), 500, "server_error", ""},
  };
  for (const Case& c : cases) {
    const HttpError e = ToHttpError(c.status);
    EXPECT_EQ(e.http_status, c.http) << c.status;
    EXPECT_EQ(e.type, c.type) << c.status;
    EXPECT_EQ(e.code, c.code) << c.status;
    EXPECT_EQ(e.message, c.status.message());
  }
}

TEST(OpenAiErrorBodyTest, NullForMissingParamAndCode) {
  const nlohmann::json b = OpenAiErrorBody(ToHttpError(absl::UnavailableError("draining")));
  EXPECT_EQ(b["error"]["message"], "draining");
  EXPECT_TRUE(b["error"]["param"].is_null());
  EXPECT_TRUE(b["error"]["code"].is_null());
  const nlohmann::json p = OpenAiErrorBody(ToHttpError(absl::InvalidArgumentError("n: bad")));
  EXPECT_EQ(p["error"]["param"], "n");
}

}  // namespace
}  // namespace tokenmill
