// Filter functions shared between filters.cc (the table) and filters_seq.cc.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/jinja/builtins.h"

namespace tokenmill::jinja {

// Python's `format % args` for %s %r %d %i %f and %% (a tuple supplies several values).
absl::StatusOr<Value> PercentFormat(const std::string& format, const Value& args);

absl::StatusOr<Value> Batch(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> DictSort(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> First(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Items(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> JoinFilter(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Last(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Length(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> ListFilter(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Map(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Max(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Min(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Reject(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> RejectAttr(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Reverse(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Select(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> SelectAttr(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Sort(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Sum(Renderer& r, const Value& v, CallArgs& args);
absl::StatusOr<Value> Unique(Renderer& r, const Value& v, CallArgs& args);

}  // namespace tokenmill::jinja
