// Conversions between nlohmann::ordered_json (the interpreter's inputs) and Values, and
// Python's json.dumps, which HF's `tojson` filter calls with ensure_ascii=False.
// Object key order is preserved in both directions, as Python dicts preserve it.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/value.h"

namespace tokenmill::jinja {

// InvalidArgument when nested deeper than kMaxJsonDepth.
inline constexpr int kMaxJsonDepth = 512;
absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json);

struct JsonDumpOptions {
  bool ensure_ascii = false;
  // Unset: one line. Set: newline plus this string once per nesting level.
  std::optional<std::string> indent;
  // Unset: Python's defaults (", " and ": "; "," and ": " when indenting).
  std::optional<std::string> item_separator;
  std::optional<std::string> key_separator;
  bool sort_keys = false;
};

// json.dumps(value, ...): InvalidArgument (Python's TypeError) for values JSON cannot
// hold (Undefined, callables, namespaces) or keys that are not str/int/float/bool/None.
absl::StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options);

}  // namespace tokenmill::jinja
