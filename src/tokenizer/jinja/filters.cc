// Jinja's builtin filters on scalars and strings (trim, tojson, default, indent, int,
// round, ...), plus the filter table. Sequence filters are in filters_seq.cc.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/filters_internal.h"
#include "tokenizer/jinja/json_value.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

absl::StatusOr<Value> Trim(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("trim", args, {"chars"}));
  std::optional<std::string> chars;
  if (a.has(0) && !a[0].is_none()) chars = ToStr(a[0]);
  return Value::Str(PyStrip(ToStr(v), chars, StripSide::kBoth));
}

template <std::string (*kFn)(const std::string&)>
absl::StatusOr<Value> StringFilter(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter", args, {}));
  return Value::Str(kFn(ToStr(v)));
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Value> Safe(Renderer&, const Value& v, CallArgs&) { return v; }

absl::StatusOr<Value> Default(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("default", args, {"default_value", "boolean"}));
  const bool use_default = v.is_undefined() || (a.has(1) && Truthy(a[1]) && !Truthy(v));
  if (!use_default) return v;
  return a.has(0) ? a[0] : Value::Str("");
}

absl::StatusOr<Value> ToJson(Renderer& renderer, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(
      BoundArgs a,
      BoundArgs::Bind("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonDumpOptions options;
  options.ensure_ascii = a.has(0) && Truthy(a[0]);
  if (a.has(1) && !a[1].is_none()) {
    if (a[1].is_string()) {
      options.indent = a[1].as_string();
    } else {
      TM_ASSIGN_OR_RETURN(int64_t n, ToInt(a[1], "tojson indent"));
      options.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(n, 0, 64)), ' ');
    }
  }
  if (a.has(2) && !a[2].is_none()) {
    TM_ASSIGN_OR_RETURN(std::vector<Value> seps, Iterate(a[2]));
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string()) {
      return absl::InvalidArgumentError("tojson separators must be two strings");
    }
    options.item_separator = seps[0].as_string();
    options.key_separator = seps[1].as_string();
  }
  options.sort_keys = a.has(3) && Truthy(a[3]);
  TM_ASSIGN_OR_RETURN(std::string json, DumpJson(v, options));
  TM_RETURN_IF_ERROR(renderer.CheckSize(json.size()));
  return Value::Str(std::move(json));
}

absl::StatusOr<Value> Replace(Renderer& renderer, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("replace", args, {"old", "new", "count"}));
  int64_t count = -1;
  if (a.has(2) && !a[2].is_none()) {
    TM_ASSIGN_OR_RETURN(count, ToInt(a[2], "replace"));
  }
  std::string out = PyReplace(ToStr(v), ToStr(a[0]), ToStr(a[1]), count);
  TM_RETURN_IF_ERROR(renderer.CheckSize(out.size()));
  return Value::Str(std::move(out));
}

// jinja2.filters.do_indent.
absl::StatusOr<Value> Indent(Renderer& renderer, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("indent", args, {"width", "first", "blank"}));
  std::string indention(4, ' ');
  if (a.has(0)) {
    if (a[0].is_string()) {
      indention = a[0].as_string();
    } else {
      TM_ASSIGN_OR_RETURN(int64_t width, ToInt(a[0], "indent"));
      TM_RETURN_IF_ERROR(renderer.CheckSize(static_cast<size_t>(std::max<int64_t>(width, 0))));
      indention = std::string(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
    }
  }
  const bool first = a.has(1) && Truthy(a[1]);
  const bool blank = a.has(2) && Truthy(a[2]);
  const std::vector<std::string> lines = PySplitLines(ToStr(v) + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (blank || !lines[i].empty()) out += indention;
    }
    out += lines[i];
    TM_RETURN_IF_ERROR(renderer.CheckSize(out.size()));
  }
  if (first) out = indention + out;
  return Value::Str(std::move(out));
}

// Python int(str, base): optional sign, surrounding whitespace, '_' between digits.
std::optional<int64_t> ParsePyInt(const std::string& text, int base) {
  std::string s = PyStrip(text, std::nullopt, StripSide::kBoth);
  std::string digits;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && std::isalnum(s[i - 1]) &&
        std::isalnum(s[i + 1])) {
      continue;
    }
    digits.push_back(s[i]);
  }
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno != 0 || *end != '\0' || !(std::isdigit(digits.back()) || std::isalpha(digits.back()))) {
    return std::nullopt;
  }
  return v;
}

std::optional<double> ParsePyFloat(const std::string& text) {
  const std::string s = PyStrip(text, std::nullopt, StripSide::kBoth);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return d;
}

absl::StatusOr<Value> Int(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("int", args, {"default", "base"}));
  const Value fallback = a.has(0) ? a[0] : Value::Int(0);
  int64_t base = 10;
  if (a.has(1)) {
    TM_ASSIGN_OR_RETURN(base, ToInt(a[1], "int"));
  }
  if (v.is_int() || v.is_bool()) return Value::Int(v.as_int());
  if (v.is_float()) {
    absl::StatusOr<int64_t> i = ToInt(v, "int");
    return i.ok() ? Value::Int(*i) : fallback;
  }
  if (v.is_string()) {
    if (std::optional<int64_t> i = ParsePyInt(v.as_string(), static_cast<int>(base))) {
      return Value::Int(*i);
    }
    // jinja2 retries through float so "42.23"|int gives 42.
    if (std::optional<double> d = ParsePyFloat(v.as_string())) {
      absl::StatusOr<int64_t> i = ToInt(Value::Float(*d), "int");
      if (i.ok()) return Value::Int(*i);
    }
    return fallback;
  }
  if (v.is_undefined()) return UndefinedError(v);
  return fallback;
}

absl::StatusOr<Value> Float(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("float", args, {"default"}));
  const Value fallback = a.has(0) ? a[0] : Value::Float(0.0);
  if (v.is_number()) return Value::Float(v.as_float());
  if (v.is_string()) {
    if (std::optional<double> d = ParsePyFloat(v.as_string())) return Value::Float(*d);
  }
  if (v.is_undefined()) return UndefinedError(v);
  return fallback;
}

absl::StatusOr<Value> Round(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("round", args, {"precision", "method"}));
  int64_t precision = 0;
  if (a.has(0)) {
    TM_ASSIGN_OR_RETURN(precision, ToInt(a[0], "round"));
  }
  const std::string method = a.has(1) ? ToStr(a[1]) : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (!v.is_number()) {
    if (v.is_undefined()) return UndefinedError(v);
    return absl::InvalidArgumentError(absl::StrCat("round: '", TypeName(v), "' is not a number"));
  }
  if (method == "common" && !v.is_float() && precision >= 0) return Value::Int(v.as_int());
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_float() * scale;
  // nearbyint rounds half to even, like Python's round().
  const double r = method == "common" ? std::nearbyint(x)
                   : method == "ceil" ? std::ceil(x)
                                      : std::floor(x);
  return Value::Float(r / scale);
}

absl::StatusOr<Value> Abs(Renderer&, const Value& v, CallArgs&) {
  if (v.is_float()) return Value::Float(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    if (v.as_int() == std::numeric_limits<int64_t>::min()) {
      return absl::OutOfRangeError("integer overflow");
    }
    return Value::Int(std::abs(v.as_int()));
  }
  if (v.is_undefined()) return UndefinedError(v);
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for abs(): '", TypeName(v), "'"));
}

absl::StatusOr<Value> StringOf(Renderer&, const Value& v, CallArgs&) {
  return v.is_string() ? v : Value::Str(ToStr(v));
}

absl::StatusOr<Value> Pprint(Renderer&, const Value& v, CallArgs&) { return Value::Str(Repr(v)); }

absl::StatusOr<Value> Attr(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("attr", args, {"name"}));
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_dict()) {  // attr() never falls back to items
    if (std::optional<Value> method = FindMethod(v, ToStr(a[0]))) return *method;
    return Value::Undefined(absl::StrCat("'dict object' has no attribute '", ToStr(a[0]), "'"));
  }
  return GetAttr(v, ToStr(a[0]));
}

absl::StatusOr<Value> Center(Renderer& renderer, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("center", args, {"width"}));
  int64_t width = 80;
  if (a.has(0)) {
    TM_ASSIGN_OR_RETURN(width, ToInt(a[0], "center"));
  }
  const std::string s = ToStr(v);
  const int64_t len = CodepointLength(s);
  if (width <= len) return Value::Str(s);
  TM_RETURN_IF_ERROR(renderer.CheckSize(static_cast<size_t>(width)));
  const int64_t pad = width - len;
  // CPython's centering puts the extra space on the left when both pad and width are odd.
  const int64_t left = pad / 2 + (pad & width & 1);
  return Value::Str(std::string(static_cast<size_t>(left), ' ') + s +
                    std::string(static_cast<size_t>(pad - left), ' '));
}

absl::StatusOr<Value> Truncate(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a,
                      BoundArgs::Bind("truncate", args, {"length", "killwords", "end", "leeway"}));
  int64_t length = 255;
  int64_t leeway = 5;
  if (a.has(0)) {
    TM_ASSIGN_OR_RETURN(length, ToInt(a[0], "truncate"));
  }
  if (a.has(3) && !a[3].is_none()) {
    TM_ASSIGN_OR_RETURN(leeway, ToInt(a[3], "truncate"));
  }
  const std::string end = a.has(2) ? ToStr(a[2]) : "...";
  const std::u32string s = DecodeUtf8(ToStr(v));
  const auto n = static_cast<int64_t>(s.size());
  if (n <= length + leeway) return Value::Str(EncodeUtf8(s));
  const int64_t keep = std::clamp<int64_t>(length - CodepointLength(end), 0, n);
  std::string head = EncodeUtf8(s.substr(0, static_cast<size_t>(keep)));
  if (!(a.has(1) && Truthy(a[1]))) {
    const size_t space = head.rfind(' ');
    if (space != std::string::npos) head.resize(space);
  }
  return Value::Str(head + end);
}

absl::StatusOr<Value> WordCount(Renderer&, const Value& v, CallArgs&) {
  int64_t words = 0;
  bool in_word = false;
  for (char32_t cp : DecodeUtf8(ToStr(v))) {
    const bool word_char =
        cp == '_' || (cp < 0x80 ? std::isalnum(static_cast<int>(cp)) != 0 : !IsPyWhitespace(cp));
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words);
}

absl::StatusOr<Value> FormatFilter(Renderer&, const Value& v, CallArgs& args) {
  if (!args.keyword.empty()) return absl::InvalidArgumentError("format: keywords unsupported");
  return PercentFormat(ToStr(v), Value::MakeList(args.positional, /*is_tuple=*/true));
}

}  // namespace

const FilterFn* FindFilter(const std::string& name) {
  static const auto* table = new absl::flat_hash_map<std::string, FilterFn>{
      {"abs", Abs},
      {"attr", Attr},
      {"capitalize", StringFilter<PyCapitalize>},
      {"center", Center},
      {"d", Default},
      {"default", Default},
      {"e", StringFilter<HtmlEscape>},
      {"escape", StringFilter<HtmlEscape>},
      {"forceescape", StringFilter<HtmlEscape>},
      {"float", Float},
      {"format", FormatFilter},
      {"indent", Indent},
      {"int", Int},
      {"lower", StringFilter<PyLower>},
      {"pprint", Pprint},
      {"replace", Replace},
      {"round", Round},
      {"safe", Safe},
      {"string", StringOf},
      {"title", StringFilter<JinjaTitle>},
      {"tojson", ToJson},
      {"trim", Trim},
      {"truncate", Truncate},
      {"upper", StringFilter<PyUpper>},
      {"wordcount", WordCount},
      // Sequence filters (filters_seq.cc).
      {"batch", Batch},
      {"count", Length},
      {"dictsort", DictSort},
      {"first", First},
      {"items", Items},
      {"join", JoinFilter},
      {"last", Last},
      {"length", Length},
      {"list", ListFilter},
      {"map", Map},
      {"max", Max},
      {"min", Min},
      {"reject", Reject},
      {"rejectattr", RejectAttr},
      {"reverse", Reverse},
      {"select", Select},
      {"selectattr", SelectAttr},
      {"sort", Sort},
      {"sum", Sum},
      {"unique", Unique},
  };
  const auto it = table->find(name);
  return it == table->end() ? nullptr : &it->second;
}

}  // namespace tokenmill::jinja
