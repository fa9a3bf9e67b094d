// Argument binding, sandboxed attribute / item lookup, iteration, and the globals.
#include "tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

// Methods ImmutableSandboxedEnvironment refuses (jinja2.sandbox._mutable_spec).
bool IsMutatingMethod(const Value& obj, const std::string& name) {
  if (obj.is_list() && !obj.as_list().is_tuple) {
    return name == "append" || name == "clear" || name == "pop" || name == "reverse" ||
           name == "insert" || name == "sort" || name == "extend" || name == "remove";
  }
  if (obj.is_dict()) {
    return name == "clear" || name == "pop" || name == "popitem" || name == "setdefault" ||
           name == "update";
  }
  return false;
}

Value MissingAttribute(const Value& obj, const std::string& name) {
  if (IsMutatingMethod(obj, name)) {
    return Value::Undefined(absl::StrCat("access to attribute '", name, "' of '", TypeName(obj),
                                         "' object is unsafe."));
  }
  return Value::Undefined(
      absl::StrCat("'", TypeName(obj), " object' has no attribute '", name, "'"));
}

// jinja2.utils.Namespace: the one mutable object templates may assign attributes on.
class NamespaceObject : public Object {
 public:
  std::string TypeName() const override { return "Namespace"; }
  std::string Repr() const override {
    return absl::StrCat("<Namespace ", jinja::Repr(Value::MakeDict(attrs_)), ">");
  }
  Value GetAttr(const std::string& name) const override {
    const Value* v = attrs_.FindString(name);
    if (v != nullptr) return *v;
    return Value::Undefined(absl::StrCat("'Namespace object' has no attribute '", name, "'"));
  }
  absl::Status SetAttr(const std::string& name, Value value) override {
    depth_ = std::max(depth_, Depth(value) + 1);
    attrs_.Set(Value::Str(name), std::move(value));
    return absl::OkStatus();
  }
  int depth() const override { return depth_; }

 private:
  Dict attrs_;
  int depth_ = 1;
};

// dict(...) / namespace(...) arguments: an optional mapping or pair list, then keywords.
absl::StatusOr<Dict> DictFromArgs(const std::string& function, const CallArgs& args) {
  if (args.positional.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(function, " expected at most 1 positional argument"));
  }
  Dict dict;
  if (!args.positional.empty()) {
    const Value& init = args.positional[0];
    if (init.is_dict()) {
      for (const auto& [k, v] : init.as_dict().items()) dict.Set(k, v);
    } else {
      TM_ASSIGN_OR_RETURN(std::vector<Value> pairs, Iterate(init));
      for (const Value& pair : pairs) {
        TM_ASSIGN_OR_RETURN(std::vector<Value> kv, Iterate(pair));
        if (kv.size() != 2) {
          return absl::InvalidArgumentError(
              absl::StrCat(function, ": sequence elements must have length 2"));
        }
        dict.Set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [name, value] : args.keyword) dict.Set(Value::Str(name), value);
  return dict;
}

absl::StatusOr<Value> Range(Renderer& renderer, CallArgs& args) {
  if (!args.keyword.empty() || args.positional.empty() || args.positional.size() > 3) {
    return absl::InvalidArgumentError("range expected 1 to 3 integer arguments");
  }
  int64_t bounds[3] = {0, 0, 1};
  for (size_t i = 0; i < args.positional.size(); ++i) {
    TM_ASSIGN_OR_RETURN(bounds[args.positional.size() == 1 ? 1 : i],
                        ToInt(args.positional[i], "range"));
  }
  const int64_t start = bounds[0];
  const int64_t stop = bounds[1];
  const int64_t step = bounds[2];
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  const double count = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) /
                                 static_cast<double>(step));
  if (count > static_cast<double>(renderer.limits().max_loop_iterations)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("range() of more than ", renderer.limits().max_loop_iterations, " items"));
  }
  std::vector<Value> items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    items.push_back(Value::Int(i));
  }
  return Value::MakeList(std::move(items));
}

}  // namespace

absl::StatusOr<BoundArgs> BoundArgs::Bind(const std::string& function, const CallArgs& args,
                                          const std::vector<std::string>& names) {
  BoundArgs bound;
  bound.values_.resize(names.size());
  bound.present_.assign(names.size(), false);
  if (args.positional.size() > names.size()) {
    return absl::InvalidArgumentError(absl::StrCat(function, "() takes at most ", names.size(),
                                                   " argument(s), got ", args.positional.size()));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) {
    bound.values_[i] = args.positional[i];
    bound.present_[i] = true;
  }
  for (const auto& [name, value] : args.keyword) {
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(function, "() got an unexpected keyword argument '", name, "'"));
    }
    const size_t i = static_cast<size_t>(it - names.begin());
    if (bound.present_[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat(function, "() got multiple values for argument '", name, "'"));
    }
    bound.values_[i] = value;
    bound.present_[i] = true;
  }
  return bound;
}

absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name) {
  if (std::optional<Value> method = FindMethod(obj, name)) return *method;
  if (obj.is_dict()) {
    if (!IsMutatingMethod(obj, name)) {
      const Value* v = obj.as_dict().FindString(name);
      if (v != nullptr) return *v;
    }
    return MissingAttribute(obj, name);
  }
  if (obj.is_object()) return obj.as_object().GetAttr(name);
  return MissingAttribute(obj, name);
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_dict()) {
    if (key.is_list() && !key.as_list().is_tuple) {
      return absl::InvalidArgumentError("unhashable type: 'list'");
    }
    const Value* v = obj.as_dict().Find(key);
    if (v != nullptr) return *v;
  } else if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    const std::u32string cps = obj.is_string() ? DecodeUtf8(obj.as_string()) : std::u32string();
    const auto n = static_cast<int64_t>(obj.is_list() ? obj.as_list().items.size() : cps.size());
    int64_t i = key.as_int();
    if (i < 0) i += n;
    if (i >= 0 && i < n) {
      if (obj.is_list()) return obj.as_list().items[static_cast<size_t>(i)];
      std::string ch;
      AppendUtf8(cps[static_cast<size_t>(i)], &ch);
      return Value::Str(std::move(ch));
    }
    return Value::Undefined(
        absl::StrCat("'", TypeName(obj), " object' has no element ", key.as_int()));
  }
  if (key.is_string()) return GetAttr(obj, key.as_string());
  return Value::Undefined(
      absl::StrCat("'", TypeName(obj), " object' has no attribute ", Repr(key)));
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kList:
      return v.as_list().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.as_dict().size());
      for (const auto& [k, item] : v.as_dict().items()) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t cp : DecodeUtf8(v.as_string())) {
        std::string ch;
        AppendUtf8(cp, &ch);
        chars.push_back(Value::Str(std::move(ch)));
      }
      return chars;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("'in <string>' requires string as left operand, not ", TypeName(item)));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.as_list().items) {
        if (Equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      if (item.is_list() || item.is_dict()) {
        return absl::InvalidArgumentError(absl::StrCat("unhashable type: '", TypeName(item), "'"));
      }
      return container.as_dict().Find(item) != nullptr;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("argument of type '", TypeName(container), "' is not iterable"));
  }
}

absl::StatusOr<int64_t> ToInt(const Value& v, const std::string& what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  if (v.is_float()) {
    const double d = v.as_float();
    if (std::isfinite(d) && std::fabs(d) < 9.2e18) return static_cast<int64_t>(d);
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot convert float ", PyFloatRepr(d), " to integer"));
  }
  if (v.is_undefined()) return UndefinedError(v);
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": '", TypeName(v), "' object cannot be interpreted as an integer"));
}

void AddGlobals(Scope& scope, std::function<std::string(const std::string&)> strftime) {
  scope.Set("range", Value::MakeCallable("range", Range));
  scope.Set("dict",
            Value::MakeCallable("dict", [](Renderer&, CallArgs& args) -> absl::StatusOr<Value> {
              TM_ASSIGN_OR_RETURN(Dict dict, DictFromArgs("dict", args));
              return Value::MakeDict(std::move(dict));
            }));
  scope.Set("namespace", Value::MakeCallable(
                             "namespace", [](Renderer&, CallArgs& args) -> absl::StatusOr<Value> {
                               TM_ASSIGN_OR_RETURN(Dict dict, DictFromArgs("namespace", args));
                               auto ns = std::make_shared<NamespaceObject>();
                               for (const auto& [k, v] : dict.items())
                                 TM_RETURN_IF_ERROR(ns->SetAttr(ToStr(k), v));
                               return Value::MakeObject(std::move(ns));
                             }));
  scope.Set("joiner",
            Value::MakeCallable("joiner", [](Renderer&, CallArgs& args) -> absl::StatusOr<Value> {
              TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("joiner", args, {"sep"}));
              const std::string sep = a.has(0) ? ToStr(a[0]) : ", ";
              auto used = std::make_shared<bool>(false);
              return Value::MakeCallable(
                  "joiner", [sep, used](Renderer&, CallArgs&) -> absl::StatusOr<Value> {
                    if (!*used) {
                      *used = true;
                      return Value::Str("");
                    }
                    return Value::Str(sep);
                  });
            }));
  scope.Set("raise_exception",
            Value::MakeCallable(
                "raise_exception", [](Renderer&, CallArgs& args) -> absl::StatusOr<Value> {
                  absl::Status status = absl::InvalidArgumentError(
                      args.positional.empty() ? std::string() : ToStr(args.positional[0]));
                  status.SetPayload(kRaisedPayload, absl::Cord("1"));
                  return status;
                }));
  scope.Set("strftime_now",
            Value::MakeCallable(
                "strftime_now", [strftime](Renderer&, CallArgs& args) -> absl::StatusOr<Value> {
                  TM_ASSIGN_OR_RETURN(BoundArgs a,
                                      BoundArgs::Bind("strftime_now", args, {"format"}));
                  if (!a[0].is_string()) {
                    return absl::InvalidArgumentError("strftime_now() needs a format string");
                  }
                  return Value::Str(strftime(a[0].as_string()));
                }));
}

}  // namespace tokenmill::jinja
