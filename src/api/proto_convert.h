// Wire types (proto/tokenmill/v1/service.proto) <-> front-end types. Pure functions.
#pragma once

#include <span>

#include "absl/status/statusor.h"
#include "tokenmill/api/frontend.h"
#include "tokenmill/v1/service.pb.h"

namespace tokenmill {

// Parses a serialized GenerateRequest. InvalidArgument naming the field when a string field
// holds invalid UTF-8 (which protobuf refuses to parse, and gRPC's generated handler would
// answer with a bare UNIMPLEMENTED), or when the bytes are not a GenerateRequest at all.
absl::StatusOr<v1::GenerateRequest> GenerateRequestFromWire(absl::string_view bytes);

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
