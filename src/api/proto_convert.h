// Wire types (proto/tokenmill/v1/service.proto) <-> front-end types. Pure functions.
#pragma once

#include <span>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "tokenmill/api/frontend.h"
#include "tokenmill/v1/service.pb.h"

namespace tokenmill {

// Parses `bytes`, a serialized message of `request`'s type (any tokenmill.v1 request), into
// `request`. InvalidArgument naming the field when a string field holds invalid UTF-8
// ("chat.messages[1].role: is not valid UTF-8"; protobuf refuses such a message, and gRPC's
// generated handler answers it with a bare UNIMPLEMENTED), or "request: is not a valid
// tokenmill.v1.TokenizeRequest message" when the bytes are not one (truncated, garbage).
// Unknown fields are kept, as protobuf keeps them. Logs nothing.
absl::Status ParseRequestFromWire(absl::string_view bytes, google::protobuf::Message& request);

template <typename Request>
absl::StatusOr<Request> RequestFromWire(absl::string_view bytes) {
  Request request;
  if (absl::Status s = ParseRequestFromWire(bytes, request); !s.ok()) return s;
  return request;
}

// InvalidArgument naming the field: no input, invalid UTF-8, a negative token id.
absl::StatusOr<ClientRequest> ClientRequestFromProto(const v1::GenerateRequest& request);
absl::StatusOr<CompletionInput> TokenizeInputFromProto(const v1::TokenizeRequest& request);

v1::FinishReason FinishReasonToProto(FinishReason reason);

// One streamed delta as a message (log-prob token texts need the tokenizer, may be null).
v1::GenerateResponse DeltaToProto(const std::string& request_id, const CompletionDelta& delta,
                                  const Tokenizer* tokenizer, int top_logprobs);
// Appends `from`'s text, ids, log-probs and finish reason to `into` (same sample).
void MergeDelta(v1::GenerateResponse& into, const v1::GenerateResponse& from);
// The request's closing figures: finish reasons, usage, timings, energy, cost.
void FillFinalInfo(const CompletionResult& result, v1::FinalInfo* final_info);

void FillStats(const EngineStats& stats, int block_size, v1::GetStatsResponse* out);

}  // namespace tokenmill
