// Python methods that templates call on values: str (strip, split, startswith, replace,
// title, format, ...), dict (get, items, keys, values) and list/tuple (index, count).
#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"
#include "utf8proc.h"

namespace tokenmill::jinja {
namespace {

using MethodFn = absl::StatusOr<Value> (*)(Renderer&, const Value& self, CallArgs& args);
using MethodTable = absl::flat_hash_map<std::string, MethodFn>;

absl::StatusOr<std::string> StringArg(const BoundArgs& a, size_t i, const std::string& what) {
  if (!a[i].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " argument must be str, not ", TypeName(a[i])));
  }
  return a[i].as_string();
}

absl::StatusOr<std::optional<std::string>> OptionalChars(const BoundArgs& a, size_t i) {
  if (!a.has(i) || a[i].is_none()) return std::optional<std::string>();
  TM_ASSIGN_OR_RETURN(std::string s, StringArg(a, i, "strip"));
  return std::optional<std::string>(std::move(s));
}

template <StripSide kSide>
absl::StatusOr<Value> Strip(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("strip", args, {"chars"}));
  TM_ASSIGN_OR_RETURN(std::optional<std::string> chars, OptionalChars(a, 0));
  return Value::Str(PyStrip(self.as_string(), chars, kSide));
}

Value StringList(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::Str(std::move(p)));
  return Value::MakeList(std::move(items));
}

template <bool kFromRight>
absl::StatusOr<Value> Split(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("split", args, {"sep", "maxsplit"}));
  std::optional<std::string> sep;
  if (a.has(0) && !a[0].is_none()) {
    TM_ASSIGN_OR_RETURN(sep, StringArg(a, 0, "split"));
    if (sep->empty()) return absl::InvalidArgumentError("empty separator");
  }
  int64_t maxsplit = -1;
  if (a.has(1)) {
    TM_ASSIGN_OR_RETURN(maxsplit, ToInt(a[1], "split"));
  }
  return StringList(PySplit(self.as_string(), sep, maxsplit, kFromRight));
}

absl::StatusOr<Value> SplitLines(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("splitlines", args, {}));
  return StringList(PySplitLines(self.as_string()));
}

template <bool kEnds>
absl::StatusOr<Value> StartsOrEndsWith(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("startswith", args, {"prefix"}));
  std::vector<Value> candidates;
  if (a[0].is_list() && a[0].as_list().is_tuple) {
    candidates = a[0].as_list().items;
  } else {
    candidates.push_back(a[0]);
  }
  const std::string& s = self.as_string();
  for (const Value& c : candidates) {
    if (!c.is_string()) {
      return absl::InvalidArgumentError("startswith/endswith arguments must be str or a tuple");
    }
    const std::string& x = c.as_string();
    if (x.size() > s.size()) continue;
    if (kEnds ? s.compare(s.size() - x.size(), x.size(), x) == 0 : s.compare(0, x.size(), x) == 0) {
      return Value::Bool(true);
    }
  }
  return Value::Bool(false);
}

template <std::string (*kFn)(const std::string&)>
absl::StatusOr<Value> MapString(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("str method", args, {}));
  return Value::Str(kFn(self.as_string()));
}

absl::StatusOr<Value> Replace(Renderer& renderer, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("replace", args, {"old", "new", "count"}));
  TM_ASSIGN_OR_RETURN(std::string old_text, StringArg(a, 0, "replace"));
  TM_ASSIGN_OR_RETURN(std::string new_text, StringArg(a, 1, "replace"));
  int64_t count = -1;
  if (a.has(2)) {
    TM_ASSIGN_OR_RETURN(count, ToInt(a[2], "replace"));
  }
  std::string out = PyReplace(self.as_string(), old_text, new_text, count);
  TM_RETURN_IF_ERROR(renderer.CheckSize(out.size()));
  return Value::Str(std::move(out));
}

template <bool kFromRight, bool kRaise>
absl::StatusOr<Value> Find(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("find", args, {"sub"}));
  TM_ASSIGN_OR_RETURN(std::string sub, StringArg(a, 0, "find"));
  const std::string& s = self.as_string();
  const size_t pos = kFromRight ? s.rfind(sub) : s.find(sub);
  if (pos == std::string::npos) {
    if (kRaise) return absl::InvalidArgumentError("substring not found");
    return Value::Int(-1);
  }
  return Value::Int(CodepointLength(s.substr(0, pos)));  // Python counts code points
}

absl::StatusOr<Value> Count(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("count", args, {"x"}));
  int64_t n = 0;
  if (self.is_string()) {
    TM_ASSIGN_OR_RETURN(std::string sub, StringArg(a, 0, "count"));
    const std::string& s = self.as_string();
    if (sub.empty()) return Value::Int(CodepointLength(s) + 1);
    for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size())) {
      ++n;
    }
    return Value::Int(n);
  }
  for (const Value& v : self.as_list().items) n += Equals(v, a[0]) ? 1 : 0;
  return Value::Int(n);
}

absl::StatusOr<Value> Join(Renderer& renderer, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("join", args, {"iterable"}));
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(a[0]));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence item ", i, ": expected str instance, ", TypeName(items[i]), " found"));
    }
    if (i > 0) out += self.as_string();
    out += items[i].as_string();
    TM_RETURN_IF_ERROR(renderer.CheckSize(out.size()));
  }
  return Value::Str(std::move(out));
}

template <bool kPrefix>
absl::StatusOr<Value> RemoveAffix(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("removeprefix", args, {"affix"}));
  TM_ASSIGN_OR_RETURN(std::string affix, StringArg(a, 0, "removeprefix"));
  const std::string& s = self.as_string();
  if (affix.size() > s.size()) return self;
  if (kPrefix && s.compare(0, affix.size(), affix) == 0) return Value::Str(s.substr(affix.size()));
  if (!kPrefix && s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
    return Value::Str(s.substr(0, s.size() - affix.size()));
  }
  return self;
}

// Unicode-category predicates behind isdigit/isalpha/isalnum/isspace/isupper/islower.
template <int kWhich>
absl::StatusOr<Value> IsClass(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("str method", args, {}));
  const std::u32string cps = DecodeUtf8(self.as_string());
  if (cps.empty()) return Value::Bool(false);
  bool any_cased = false;
  for (char32_t cp : cps) {
    const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    const bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    const bool digit = cat == UTF8PROC_CATEGORY_ND;
    const bool numeric = cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
    bool ok = true;
    switch (kWhich) {
      case 0:
        ok = digit;
        break;
      case 1:
        ok = letter;
        break;
      case 2:
        ok = letter || numeric;
        break;
      case 3:
        ok = IsPyWhitespace(cp);
        break;
      case 4:
        ok = cat != UTF8PROC_CATEGORY_LL;
        break;
      case 5:
        ok = cat != UTF8PROC_CATEGORY_LU && cat != UTF8PROC_CATEGORY_LT;
        break;
    }
    if (!ok) return Value::Bool(false);
    any_cased |=
        cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
  }
  return Value::Bool(kWhich < 4 || any_cased);
}

// str.format with {} / {0} / {name} fields and {{ }} escapes (no format specs).
absl::StatusOr<Value> Format(Renderer& renderer, const Value& self, CallArgs& args) {
  const std::string& f = self.as_string();
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '}' && i + 1 < f.size() && f[i + 1] == '}') {
      out.push_back('}');
      ++i;
      continue;
    }
    if (f[i] != '{') {
      out.push_back(f[i]);
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = f.find('}', i);
    if (close == std::string::npos) return absl::InvalidArgumentError("unmatched '{' in format");
    const std::string field = f.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!") != std::string::npos) {
      return absl::InvalidArgumentError("format specs in str.format are not supported");
    }
    const Value* v = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), ::isdigit)) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(field);
      if (index < args.positional.size()) v = &args.positional[index];
    } else {
      for (const auto& [name, value] : args.keyword) {
        if (name == field) v = &value;
      }
    }
    if (v == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("format field '", field, "' not given"));
    }
    out += ToStr(*v);
    TM_RETURN_IF_ERROR(renderer.CheckSize(out.size()));
    i = close;
  }
  return Value::Str(std::move(out));
}

absl::StatusOr<Value> DictGet(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("get", args, {"key", "default"}));
  const Value* v = self.as_dict().Find(a[0]);
  if (v != nullptr) return *v;
  return a.has(1) ? a[1] : Value::None();
}

template <int kWhich>  // 0 items, 1 keys, 2 values
absl::StatusOr<Value> DictView(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("items", args, {}));
  std::vector<Value> out;
  out.reserve(self.as_dict().size());
  for (const auto& [k, v] : self.as_dict().items()) {
    if (kWhich == 0) {
      out.push_back(Value::MakeList({k, v}, /*is_tuple=*/true));
    } else {
      out.push_back(kWhich == 1 ? k : v);
    }
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> ListIndex(Renderer&, const Value& self, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("index", args, {"x"}));
  const auto& items = self.as_list().items;
  for (size_t i = 0; i < items.size(); ++i) {
    if (Equals(items[i], a[0])) return Value::Int(static_cast<int64_t>(i));
  }
  return absl::InvalidArgumentError(absl::StrCat(Repr(a[0]), " is not in list"));
}

absl::StatusOr<Value> Copy(Renderer&, const Value& self, CallArgs&) { return self; }

const MethodTable& StringMethods() {
  static const auto* table = new MethodTable{
      {"strip", Strip<StripSide::kBoth>},
      {"lstrip", Strip<StripSide::kLeft>},
      {"rstrip", Strip<StripSide::kRight>},
      {"split", Split<false>},
      {"rsplit", Split<true>},
      {"splitlines", SplitLines},
      {"startswith", StartsOrEndsWith<false>},
      {"endswith", StartsOrEndsWith<true>},
      {"upper", MapString<PyUpper>},
      {"lower", MapString<PyLower>},
      {"title", MapString<PyTitle>},
      {"capitalize", MapString<PyCapitalize>},
      {"replace", Replace},
      {"find", Find<false, false>},
      {"rfind", Find<true, false>},
      {"index", Find<false, true>},
      {"rindex", Find<true, true>},
      {"count", Count},
      {"join", Join},
      {"removeprefix", RemoveAffix<true>},
      {"removesuffix", RemoveAffix<false>},
      {"isdigit", IsClass<0>},
      {"isalpha", IsClass<1>},
      {"isalnum", IsClass<2>},
      {"isspace", IsClass<3>},
      {"isupper", IsClass<4>},
      {"islower", IsClass<5>},
      {"format", Format},
  };
  return *table;
}

const MethodTable& DictMethods() {
  static const auto* table = new MethodTable{
      {"get", DictGet},        {"items", DictView<0>}, {"keys", DictView<1>},
      {"values", DictView<2>}, {"copy", Copy},
  };
  return *table;
}

const MethodTable& ListMethods() {
  static const auto* table = new MethodTable{
      {"index", ListIndex},
      {"count", Count},
      {"copy", Copy},
  };
  return *table;
}

}  // namespace

std::optional<Value> FindMethod(const Value& obj, const std::string& name) {
  const MethodTable* table = obj.is_string() ? &StringMethods()
                             : obj.is_dict() ? &DictMethods()
                             : obj.is_list() ? &ListMethods()
                                             : nullptr;
  if (table == nullptr) return std::nullopt;
  const auto it = table->find(name);
  if (it == table->end()) return std::nullopt;
  const MethodFn fn = it->second;
  return Value::MakeCallable(
      name, [obj, fn](Renderer& renderer, CallArgs& args) { return fn(renderer, obj, args); });
}

}  // namespace tokenmill::jinja
