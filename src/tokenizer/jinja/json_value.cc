#include "tokenizer/jinja/json_value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

void AppendEscapedString(const std::string& s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  char buf[16];
  auto append_u = [&](unsigned cp) {
    std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
    out->append(buf);
  };
  for (char32_t cp : DecodeUtf8(s)) {
    switch (cp) {
      case '"':
        out->append("\\\"");
        continue;
      case '\\':
        out->append("\\\\");
        continue;
      case '\n':
        out->append("\\n");
        continue;
      case '\r':
        out->append("\\r");
        continue;
      case '\t':
        out->append("\\t");
        continue;
      case '\b':
        out->append("\\b");
        continue;
      case '\f':
        out->append("\\f");
        continue;
      default:
        break;
    }
    if (cp < 0x20) {
      append_u(static_cast<unsigned>(cp));
    } else if (ensure_ascii && cp > 0x7E) {
      if (cp >= 0x10000) {
        const unsigned v = static_cast<unsigned>(cp) - 0x10000;
        append_u(0xD800 + (v >> 10));
        append_u(0xDC00 + (v & 0x3FF));
      } else {
        append_u(static_cast<unsigned>(cp));
      }
    } else {
      AppendUtf8(cp, out);
    }
  }
  out->push_back('"');
}

std::string JsonFloat(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return PyFloatRepr(d);
}

class Dumper {
 public:
  explicit Dumper(const JsonDumpOptions& options) : options_(options) {
    item_separator_ = options.item_separator.value_or(options.indent ? "," : ", ");
    key_separator_ = options.key_separator.value_or(": ");
  }

  absl::Status Dump(const Value& v, int depth, std::string* out) {
    if (depth > kMaxJsonDepth) return absl::InvalidArgumentError("tojson: nesting too deep");
    switch (v.kind()) {
      case Value::Kind::kNone:
        out->append("null");
        return absl::OkStatus();
      case Value::Kind::kBool:
        out->append(v.as_bool() ? "true" : "false");
        return absl::OkStatus();
      case Value::Kind::kInt:
        out->append(std::to_string(v.as_int()));
        return absl::OkStatus();
      case Value::Kind::kFloat:
        out->append(JsonFloat(v.as_float()));
        return absl::OkStatus();
      case Value::Kind::kString:
        AppendEscapedString(v.as_string(), options_.ensure_ascii, out);
        return absl::OkStatus();
      case Value::Kind::kList:
        return DumpList(v.as_list(), depth, out);
      case Value::Kind::kDict:
        return DumpDict(v.as_dict(), depth, out);
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("Object of type ", TypeName(v), " is not JSON serializable"));
    }
  }

 private:
  void NewlineIndent(int depth, std::string* out) const {
    if (!options_.indent) return;
    out->push_back('\n');
    for (int i = 0; i < depth; ++i) out->append(*options_.indent);
  }

  absl::Status DumpList(const List& list, int depth, std::string* out) {
    if (list.items.empty()) {
      out->append("[]");
      return absl::OkStatus();
    }
    out->push_back('[');
    for (size_t i = 0; i < list.items.size(); ++i) {
      if (i > 0) out->append(item_separator_);
      NewlineIndent(depth + 1, out);
      TM_RETURN_IF_ERROR(Dump(list.items[i], depth + 1, out));
    }
    NewlineIndent(depth, out);
    out->push_back(']');
    return absl::OkStatus();
  }

  static absl::StatusOr<std::string> KeyString(const Value& key) {
    switch (key.kind()) {
      case Value::Kind::kString:
        return key.as_string();
      case Value::Kind::kNone:
        return std::string("null");
      case Value::Kind::kBool:
        return std::string(key.as_bool() ? "true" : "false");
      case Value::Kind::kInt:
        return std::to_string(key.as_int());
      case Value::Kind::kFloat:
        return JsonFloat(key.as_float());
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("keys must be str, int, float, bool or None, not ", TypeName(key)));
    }
  }

  absl::Status DumpDict(const Dict& dict, int depth, std::string* out) {
    if (dict.size() == 0) {
      out->append("{}");
      return absl::OkStatus();
    }
    std::vector<std::pair<std::string, const Value*>> entries;
    entries.reserve(dict.size());
    for (const auto& [k, v] : dict.items()) {
      TM_ASSIGN_OR_RETURN(std::string key, KeyString(k));
      entries.emplace_back(std::move(key), &v);
    }
    if (options_.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    out->push_back('{');
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i > 0) out->append(item_separator_);
      NewlineIndent(depth + 1, out);
      AppendEscapedString(entries[i].first, options_.ensure_ascii, out);
      out->append(key_separator_);
      TM_RETURN_IF_ERROR(Dump(*entries[i].second, depth + 1, out));
    }
    NewlineIndent(depth, out);
    out->push_back('}');
    return absl::OkStatus();
  }

  const JsonDumpOptions& options_;
  std::string item_separator_;
  std::string key_separator_;
};

absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON input nested deeper than ", kMaxJsonDepth, " levels"));
  }
  using Type = nlohmann::ordered_json::value_t;
  switch (json.type()) {
    case Type::null:
    case Type::discarded:
    case Type::binary:
      return Value::None();
    case Type::boolean:
      return Value::Bool(json.get<bool>());
    case Type::number_integer:
      return Value::Int(json.get<int64_t>());
    case Type::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Value::Int(static_cast<int64_t>(u));
      }
      return Value::Float(static_cast<double>(u));
    }
    case Type::number_float:
      return Value::Float(json.get<double>());
    case Type::string:
      return Value::Str(json.get_ref<const std::string&>());
    case Type::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) {
        TM_ASSIGN_OR_RETURN(Value v, FromJson(item, depth + 1));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items));
    }
    case Type::object: {
      Dict dict;
      for (const auto& [key, item] : json.items()) {
        TM_ASSIGN_OR_RETURN(Value v, FromJson(item, depth + 1));
        dict.Set(Value::Str(key), std::move(v));
      }
      return Value::MakeDict(std::move(dict));
    }
  }
  return Value::None();
}

}  // namespace

absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json) {
  return FromJson(json, 1);
}

absl::StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  Dumper dumper(options);
  TM_RETURN_IF_ERROR(dumper.Dump(value, 0, &out));
  return out;
}

}  // namespace tokenmill::jinja
